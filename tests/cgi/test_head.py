"""
Tests for L{twisted_cgiserve._cgi.head}: what a script may write before
its body.
"""

from __future__ import annotations

import contextlib

import pytest
from hypothesis import given
from hypothesis import strategies as st

from twisted_cgiserve._cgi.head import (
    MAX_CONTENT_LENGTH_DIGITS,
    MAX_HEAD,
    HeadParser,
    MalformedHead,
    ResponseKind,
    parseHead,
)


def _parse(output: bytes) -> tuple[object, bytes]:
    result = HeadParser().feed(output)
    assert result is not None
    return result


def test_document() -> None:
    """
    A document response: status 200, headers in order, the body after the
    blank line untouched.
    """
    head, body = _parse(b"Content-Type: text/plain\nX-A: 1\n\nhello\n\nworld")
    assert head.status == 200
    assert head.headers == [(b"Content-Type", b"text/plain"), (b"X-A", b"1")]
    assert body == b"hello\n\nworld"
    assert head.kind is ResponseKind.DOCUMENT


def test_crlf() -> None:
    """
    CRLF line ends are accepted as well as LF (RFC 3875 section 7.2).
    """
    head, body = _parse(b"Content-type:text/html\r\nStatus:404 Nope\r\n\r\nx")
    assert (head.status, head.reason, body) == (404, b"Nope", b"x")
    assert head.headers == [(b"Content-type", b"text/html")]


def test_caseInsensitiveNamesNoSpace() -> None:
    """
    CGI header names are case-insensitive and the space after the colon is
    optional (twisted.web's CGI required ': ').
    """
    head, _ = _parse(b"STATUS:201\ncontent-TYPE:a/b\n\n")
    assert head.status == 201
    assert head.reason is None


def test_incremental() -> None:
    """
    The head may arrive a byte at a time: it is complete at the blank line,
    and nothing before that is mistaken for the end.
    """
    parser = HeadParser()
    output = b"Content-Type: text/plain\r\nX: y\r\n\r\n"
    for i in range(len(output) - 1):
        assert parser.feed(output[i : i + 1]) is None
    head, body = parser.feed(output[-1:])
    assert head.headers == [(b"Content-Type", b"text/plain"), (b"X", b"y")]
    assert body == b""


def test_incrementalBody() -> None:
    """
    Body bytes that arrive with the end of the head are returned.
    """
    parser = HeadParser()
    assert parser.feed(b"Content-Type: a/b\n") is None
    head, body = parser.feed(b"\nbody bytes")
    assert head.headers == [(b"Content-Type", b"a/b")]
    assert body == b"body bytes"


@pytest.mark.parametrize(
    ("location", "kind", "status"),
    [
        (b"http://example.com/x", ResponseKind.CLIENT_REDIRECT, 302),
        (b"https://example.com/x#frag", ResponseKind.CLIENT_REDIRECT, 302),
        (b"/other/path?q=1", ResponseKind.LOCAL_REDIRECT, 200),
    ],
)
def test_redirects(location: bytes, kind: ResponseKind, status: int) -> None:
    """
    An absolute Location is a client redirect, 302 unless a Status is
    given; a path alone is a local redirect.
    """
    head, _ = _parse(b"Location: " + location + b"\n\n")
    assert head.kind is kind
    assert head.status == status
    assert head.location == location


def test_redirectStatusKept() -> None:
    """
    A Status given with an absolute Location wins, whatever the order of the
    two lines (twisted.web's CGI turned Status-then-Location into 302).
    """
    for block in (
        b"Status: 301 Moved\nLocation: http://e/\n\n",
        b"Location: http://e/\nStatus: 301 Moved\n\n",
    ):
        head, _ = _parse(block)
        assert (head.status, head.reason) == (301, b"Moved")
        assert (b"Location", b"http://e/") in head.headers


def test_pathLocationWithDocument() -> None:
    """
    A path Location with other headers is not a local redirect (RFC 3875
    allows only the Location line there): it goes to the client.
    """
    head, _ = _parse(b"Location: /x\nContent-Type: text/html\n\n<a href=/x>x</a>")
    assert head.kind is ResponseKind.CLIENT_REDIRECT
    assert head.status == 302


def test_setCookieRepeated() -> None:
    """
    Repeated headers such as Set-Cookie are all kept.
    """
    head, _ = _parse(b"Content-Type: a/b\nSet-Cookie: a=1\nSet-Cookie: b=2\n\n")
    assert head.headers.count((b"Set-Cookie", b"a=1")) == 1
    assert head.headers.count((b"Set-Cookie", b"b=2")) == 1


def test_framingAndHopByHopDropped() -> None:
    """
    Framing, hop-by-hop and server-owned headers never reach the client;
    Content-Length is taken for the server to enforce.
    """
    head, _ = _parse(
        b"Content-Type: a/b\nContent-Length: 5\nTransfer-Encoding: chunked\n"
        b"Connection: close\nKeep-Alive: x\nUpgrade: h2c\nServer: evil\nDate: x\n\n"
    )
    assert head.headers == [(b"Content-Type", b"a/b")]
    assert head.contentLength == 5
    assert len(head.dropped) == 6


@pytest.mark.parametrize(
    "line",
    [
        b"X-Bad\x00: y",
        b"X Bad: y",
        b"X-Bad: a\x00b",
        b"X-Bad: a\rb",
        b"X-Bad: a\x1bb",
        b"X-Bad: a\x7fb",
        b"X-Bad: a\x08b",
        b"X-Bad: a\x1fb",
        b"(x): y",
    ],
)
def test_unsafeLinesDropped(line: bytes) -> None:
    """
    Lines with invalid names or control characters in values are dropped,
    never sent.
    """
    head, _ = _parse(b"Content-Type: a/b\n" + line + b"\n\n")
    assert head.headers == [(b"Content-Type", b"a/b")]
    assert head.dropped == [line]


def test_everyByteInAValue() -> None:
    """
    A value is passed on unless it holds a control character other than the
    tab, or DEL: every byte, one at a time, inside a value.
    """
    for byte in range(256):
        if byte in b"\n":
            continue
        value = b"a" + bytes([byte]) + b"b"
        result = HeadParser().feed(b"Content-Type: a/b\nX-Value: " + value + b"\n\n")
        assert result is not None
        head = result[0]
        forbidden = (byte < 0x20 and byte != 0x09) or byte == 0x7F
        assert (head.headers[1:] == []) is forbidden, byte
        if not forbidden:
            assert head.headers[1] == (b"X-Value", value)


@pytest.mark.parametrize(
    "block",
    [
        b"Hello world\n\n",
        b"X-Only: 1\n\n",
        b"Status: abc\n\n",
        b"Status: 99\n\n",
        b"Status: 1000\n\n",
        b"Status: 100 Continue\n\n",
        b"Status: 101\nContent-Type: a/b\n\n",
        b"Status: 600 Nope\n\n",
        b"Status: 200\nStatus: 404\n\n",
        b"Content-Type: a\nContent-Type: b\n\n",
        b"Content-Type: a\nContent-Length: -1\n\n",
        b"Content-Type: a\nContent-Length: 1\nContent-Length: 2\n\n",
        b"Content-Type: a\n folded\n\n",
        b"Location:\n\n",
        b"\nContent-Type: a\n\n",
    ],
)
def test_malformed(block: bytes) -> None:
    """
    Output that is not a valid CGI header block is refused (the server
    answers 502).
    """
    with pytest.raises(MalformedHead):
        HeadParser().feed(block)


def test_tooLong() -> None:
    """
    A script that never ends its headers cannot grow the server's memory.
    """
    parser = HeadParser()
    with pytest.raises(MalformedHead):
        for _ in range(MAX_HEAD // 1000 + 2):
            parser.feed(b"X-Filler: " + b"a" * 990 + b"\n")


def test_finishEarly() -> None:
    """
    Output that ends before the blank line, or no output at all, is refused.
    """
    parser = HeadParser()
    with pytest.raises(MalformedHead, match="without writing"):
        parser.finish()
    parser = HeadParser()
    parser.feed(b"Content-Type: a/b\n")
    with pytest.raises(MalformedHead, match="before the end"):
        parser.finish()


@given(st.binary(max_size=300))
def test_hostileOutput(output: bytes) -> None:
    """
    Whatever a script writes, the parser either waits, refuses it, or gives
    headers that are safe to send: token names, values without CR, LF, NUL
    or other control characters, and no framing headers.
    """
    try:
        result = HeadParser().feed(output)
    except MalformedHead:
        return
    if result is None:
        return
    head, _body = result
    assert 100 <= head.status <= 999
    for name, value in head.headers:
        assert name and all(
            33 <= c < 127 and c not in b'"(),/:;<=>?@[\\]{}' for c in name
        )
        assert not any(c < 0x20 and c != 0x09 for c in value)
        assert b"\x7f" not in value
        assert name.lower() not in (
            b"content-length",
            b"transfer-encoding",
            b"connection",
        )
    if head.reason is not None:
        assert b"\r" not in head.reason and b"\n" not in head.reason


def test_parseHeadDirect() -> None:
    """
    L{parseHead} parses a block without its terminating blank line.
    """
    assert parseHead(b"Status: 204").status == 204


@pytest.mark.parametrize(
    "value",
    [
        b"9" * 5000,
        b"0" * 5000 + b"1",
        b"1" * (MAX_CONTENT_LENGTH_DIGITS + 1),
    ],
)
def test_longContentLength(value: bytes) -> None:
    """
    A Content-Length longer than any real length (past 4300 digits Python
    cannot even convert it, and the request hung) is a malformed head: 502.
    """
    with pytest.raises(MalformedHead, match="Content-Length"):
        HeadParser().feed(b"Content-Type: a/b\nContent-Length: " + value + b"\n\n")


def test_longestContentLength() -> None:
    """
    A Content-Length of L{MAX_CONTENT_LENGTH_DIGITS} digits is a length.
    """
    head, _ = _parse(
        b"Content-Type: a/b\nContent-Length: "
        + b"9" * MAX_CONTENT_LENGTH_DIGITS
        + b"\n\n"
    )
    assert head.contentLength == 10**MAX_CONTENT_LENGTH_DIGITS - 1


@pytest.mark.parametrize("value", [b"2" * 5000, b"200" + b"0" * 5000, b"0" * 5000])
def test_longStatus(value: bytes) -> None:
    """
    A Status that is not three digits is malformed, however long.
    """
    with pytest.raises(MalformedHead, match="Status"):
        HeadParser().feed(b"Status: " + value + b" OK\nContent-Type: a/b\n\n")


_number = st.one_of(
    st.integers(0, 10**25).map(lambda n: b"%d" % n),
    st.integers(1, 6000).map(lambda n: b"9" * n),
    st.binary(max_size=10),
)


@given(
    st.lists(
        st.tuples(
            st.sampled_from([b"Status", b"Content-Length", b"Content-Type", b"X"]),
            _number,
        ),
        max_size=4,
    )
)
def test_numbersNeverCrash(fields: list[tuple[bytes, bytes]]) -> None:
    """
    Whatever numbers a script writes in its head, parsing gives a head or
    refuses it (502): it never raises anything else (a ValueError left the
    request hanging).
    """
    block = b"".join(name + b": " + value + b"\n" for name, value in fields)
    with contextlib.suppress(MalformedHead):
        HeadParser().feed(block + b"Content-Type: a/b\n\n")


def test_twoLocations() -> None:
    """
    Two Location headers leave the redirect ambiguous: refused.
    """
    with pytest.raises(MalformedHead, match="more than one Location"):
        HeadParser().feed(b"Location: /a\nLocation: /b\n\n")


def test_blankLineFirstCRLF() -> None:
    """
    Output that starts with a blank line ends an empty header block, with
    either line end.
    """
    for output in (b"\r\nbody", b"\nbody"):
        with pytest.raises(MalformedHead, match="empty header block"):
            HeadParser().feed(output)


def test_blockEndsBeyondLimit() -> None:
    """
    A header block that is complete but longer than the limit, arriving in
    one piece, is refused like one that never ends.
    """
    parser = HeadParser(maxHead=20)
    with pytest.raises(MalformedHead, match="longer than 20 bytes"):
        parser.feed(b"Content-Type: text/plain\nX-A: b\n\nbody")


def test_nothingAfterTheHead() -> None:
    """
    Once the head is parsed the parser takes no more output: the rest is
    body, and feeding it here is a bug.
    """
    parser = HeadParser()
    assert parser.feed(b"Content-Type: a/b\n\n") is not None
    with pytest.raises(RuntimeError):
        parser.feed(b"more")
