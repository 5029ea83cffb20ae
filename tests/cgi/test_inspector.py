"""
Tests for L{twisted_cgiserve._cgi.inspector}: the --cgi-debug page, who
may see it, and that nothing a script or a client wrote can break out of
it.
"""

from __future__ import annotations

from html.parser import HTMLParser
from typing import Any

import pytest
from hypothesis import given
from hypothesis import strategies as st
from twisted.internet import error
from twisted.internet.address import IPv4Address, IPv6Address, UNIXAddress
from twisted.python.failure import Failure
from twisted.web.test.requesthelper import DummyRequest

from twisted_cgiserve._cgi.inspector import (
    ALWAYS_HIDDEN,
    DEBUG_ALL,
    DEBUG_LOCAL,
    HIDDEN,
    OutputFailure,
    ScriptContext,
    debugApplies,
    describeExit,
    isLoopback,
    renderPage,
    sendDebugPage,
)


def v4(host: str) -> IPv4Address:
    return IPv4Address("TCP", host, 1234)


def v6(host: str) -> IPv6Address:
    return IPv6Address("TCP", host, 1234)


def context(**kw: Any) -> ScriptContext:
    values: dict[str, Any] = {
        "mode": DEBUG_LOCAL,
        "scriptName": "/cgi-bin/s.sh",
        "filename": "/srv/cgi-bin/s.sh",
        "argv": ("/srv/cgi-bin/s.sh",),
        "environment": {"PATH": "/usr/bin", "QUERY_STRING": ""},
    }
    values.update(kw)
    return ScriptContext(**values)


FAILURE = OutputFailure(code=502, message="Bad Gateway", why="It broke.")


def page(ctx: ScriptContext | None = None, **kw: Any) -> str:
    failure = kw.pop("failure", FAILURE)
    kw.setdefault("ended", "exited with status 1")
    kw.setdefault("stderr", b"")
    return renderPage(ctx or context(), failure, **kw).decode("utf-8")


# --------------------------------------------------------------------------
# Who sees it


@pytest.mark.parametrize(
    "address",
    [
        v4("127.0.0.1"),
        v4("127.1.2.3"),
        v6("::1"),
        v6("::ffff:127.0.0.1"),
        v6("::ffff:127.9.9.9"),
    ],
)
def test_loopback(address: object) -> None:
    """
    127.0.0.0/8, ::1, and IPv4 loopback mapped into IPv6 (a dual-stack
    socket's view of an IPv4 client) are loopback.
    """
    assert isLoopback(address)


@pytest.mark.parametrize(
    "address",
    [
        v4("192.0.2.2"),
        v4("10.0.0.1"),
        v4("0.0.0.0"),
        v6("fd00::2"),
        v6("::ffff:192.0.2.2"),
        v6("fe80::1%lo"),
        v6("::"),
        v4("localhost"),
        UNIXAddress(b"/run/cgiserve.sock"),
        None,
    ],
)
def test_notLoopback(address: object) -> None:
    """
    Other addresses, names, UNIX sockets (a reverse proxy's clients may be
    anywhere) and no address at all are not loopback.
    """
    assert not isLoopback(address)


def requestFrom(address: object) -> DummyRequest:
    request = DummyRequest([b""])
    request.client = address
    return request


def test_whoSeesIt() -> None:
    """
    Never without --cgi-debug; loopback clients only with it; everyone with
    --cgi-debug=all.
    """
    local, remote = requestFrom(v4("127.0.0.1")), requestFrom(v4("192.0.2.9"))
    assert not debugApplies(None, local)
    assert not debugApplies(None, remote)
    assert debugApplies(DEBUG_LOCAL, local)
    assert not debugApplies(DEBUG_LOCAL, remote)
    assert debugApplies(DEBUG_ALL, local)
    assert debugApplies(DEBUG_ALL, remote)
    assert not debugApplies(DEBUG_LOCAL, requestFrom(None))


# --------------------------------------------------------------------------
# How the script ended


@pytest.mark.parametrize(
    ("reason", "text"),
    [
        (None, "still running: the server is ending it (SIGTERM, then SIGKILL)"),
        (error.ProcessDone(0), "exited with status 0"),
        (error.ProcessTerminated(exitCode=3), "exited with status 3"),
        (error.ProcessTerminated(signal=9), "killed by signal 9 (SIGKILL)"),
        (error.ProcessTerminated(signal=200), "killed by signal 200"),
        (error.ProcessTerminated(exitCode=None), "ended; its exit status is unknown"),
    ],
)
def test_describeExit(reason: BaseException | None, text: str) -> None:
    assert describeExit(None if reason is None else Failure(reason)) == text


# --------------------------------------------------------------------------
# The page


def test_pageShowsEverything() -> None:
    """
    The page shows the script's path, file and command line, what went
    wrong and how it ended, its standard error and what it printed, and its
    environment sorted by name.
    """
    ctx = context(
        argv=("/srv/cgi-bin/s.sh", "word"),
        environment={"Z_LAST": "z", "A_FIRST": "a", "PATH": "/usr/bin"},
    )
    failure = OutputFailure(
        code=504,
        message="Gateway Timeout",
        why="Too slow.",
        printed=b"Status: 200\n",
        printedDropped=7,
    )
    text = page(ctx, failure=failure, ended="timed out", stderr=b"err", stderrDropped=5)
    assert "<title>504 Gateway Timeout: CGI script failed</title>" in text
    for shown in (
        "/cgi-bin/s.sh",
        "/srv/cgi-bin/s.sh",
        "<li><code>word</code></li>",
        "Too slow.",
        "timed out",
        "<pre>err</pre>",
        "(5 earlier bytes not shown)",
        "<pre>Status: 200\n</pre>",
        "(7 more bytes not shown)",
    ):
        assert shown in text
    assert text.index("A_FIRST") < text.index("PATH") < text.index("Z_LAST")


def test_pageSaysWhatItIsAndHowToTurnItOff() -> None:
    """
    The page names itself --cgi-debug output, says who sees it, and how to
    turn it off.
    """
    local = page(context(mode=DEBUG_LOCAL))
    everyone = page(context(mode=DEBUG_ALL))
    for text in (local, everyone):
        assert "<strong>--cgi-debug</strong> output" in text
        assert "restart the server without <code>--cgi-debug</code>" in text
        assert "Settings(cgiDebug=None)" in text
    assert "loopback" in local
    assert "every client (<code>--cgi-debug=all</code>)" in everyone


def test_nothingWritten() -> None:
    """
    Empty standard error and output are said to be empty.
    """
    text = page()
    assert "(nothing: it wrote nothing to its standard error)" in text
    assert "(nothing: it wrote nothing to its standard output)" in text


def test_hiddenValues() -> None:
    """
    Credentials (Authorization, cookies) and the administrator's
    --cgi-set-env values are hidden; their names are still listed.
    """
    ctx = context(
        environment={
            "HTTP_AUTHORIZATION": "Basic dXNlcjpodW50ZXIy",
            "HTTP_COOKIE": "session=cookie-secret",
            "HTTP_PROXY_AUTHORIZATION": "Basic proxy-secret",
            "API_TOKEN": "set-env-secret",
            "HTTP_USER_AGENT": "curl/8",
        },
        hidden=frozenset({"API_TOKEN"}),
    )
    text = page(ctx)
    for secret in ("dXNlcjpodW50ZXIy", "cookie-secret", "proxy-secret", "set-env-"):
        assert secret not in text
    for name in (*ALWAYS_HIDDEN, "API_TOKEN"):
        assert f'<tr><td>{name}</td><td><span class="none">{HIDDEN}</span>' in text
    assert "curl/8" in text
    assert ctx.isHidden("HTTP_COOKIE")
    assert not ctx.isHidden("HTTP_USER_AGENT")


def test_hostileValuesEscaped() -> None:
    """
    Markup in anything the script or the client wrote is shown, not
    interpreted; bytes that are not UTF-8 are shown as \\xNN, controls and
    invisible formatting characters as escapes; CRLF as a line end.
    """
    hostile = "<script>alert('x')</script>&\"'"
    ctx = context(
        scriptName="/cgi-bin/" + hostile,
        filename="/srv/" + hostile,
        argv=(hostile,),
        environment={"HTTP_X_" + hostile: hostile, "BIDI": "a\u202eb\u200bc\x1b[31m"},
    )
    failure = OutputFailure(
        code=502, message="Bad Gateway", why=hostile, printed=b"<b>\xff\xfe\r\n"
    )
    text = page(ctx, failure=failure, ended=hostile, stderr=b"</pre><script>\x00\xc3")
    assert "<script" not in text
    assert "</pre><" not in text
    assert "&lt;script&gt;alert(&#x27;x&#x27;)&lt;/script&gt;&amp;&quot;&#x27;" in text
    assert "<pre>&lt;b&gt;\\xff\\xfe\n</pre>" in text
    assert "&lt;/pre&gt;&lt;script&gt;\\x00\\xc3" in text
    assert "a\\u202eb\\u200bc\\x1b[31m" in text


def test_surrogateEscapedEnvironment() -> None:
    """
    Environment values decoded from bytes that are not UTF-8 (as
    C{os.fsdecode} does) show those bytes; lone surrogates from elsewhere
    are escapes.
    """
    text = page(context(environment={"A": "caf\udce9", "B": "\ud800x"}))
    assert "caf\\xe9" in text
    assert "\\ud800x" in text


class _Tags(HTMLParser):
    """
    Every tag and attribute of a page, in order.
    """

    def __init__(self) -> None:
        super().__init__(convert_charrefs=True)
        self.tags: list[tuple[str, tuple[tuple[str, str | None], ...]]] = []

    def handle_starttag(self, tag: str, attrs: list[tuple[str, str | None]]) -> None:
        self.tags.append((tag, tuple(attrs)))

    def handle_endtag(self, tag: str) -> None:
        self.tags.append(("/" + tag, ()))


def tagsOf(text: str) -> list[tuple[str, tuple[tuple[str, str | None], ...]]]:
    parser = _Tags()
    parser.feed(text)
    parser.close()
    return parser.tags


_names = st.text(min_size=1, max_size=12).map(lambda name: "X_" + name)


@given(
    stderr=st.binary(max_size=200),
    printed=st.binary(max_size=200),
    words=st.lists(st.text(max_size=20), min_size=1, max_size=4),
    environment=st.dictionaries(_names, st.text(max_size=20), max_size=5),
    why=st.text(max_size=40),
)
def test_noInputChangesThePagesMarkup(
    stderr: bytes,
    printed: bytes,
    words: list[str],
    environment: dict[str, str],
    why: str,
) -> None:
    """
    Whatever a script writes and whatever it was given, the page is valid
    UTF-8 and its markup is exactly that of a page of harmless values: no
    input adds, removes or changes a tag or an attribute.
    """
    failure = OutputFailure(
        code=502, message="Bad Gateway", why=why, printed=printed or b"x"
    )
    hostile = renderPage(
        context(argv=tuple(words), environment=environment),
        failure,
        ended=why,
        stderr=stderr or b"x",
    ).decode("utf-8")
    harmless = renderPage(
        context(
            argv=tuple("w" for _ in words),
            environment={f"X_{i}": "v" for i in range(len(environment))},
        ),
        OutputFailure(code=502, message="Bad Gateway", why="w", printed=b"x"),
        ended="w",
        stderr=b"x",
    ).decode("utf-8")
    assert tagsOf(hostile) == tagsOf(harmless)


# --------------------------------------------------------------------------
# Sending it


class Request(DummyRequest):
    startedWriting = False

    def __init__(self, method: bytes = b"GET") -> None:
        super().__init__([b""])
        self.method = method
        self.client = v4("127.0.0.1")

    def write(self, data: bytes) -> None:
        self.startedWriting = True
        super().write(data)


def test_sendDebugPage() -> None:
    """
    The page goes out with the error's status, as UTF-8 HTML with its
    length, never stored, never sniffed, allowed to run or load nothing; a
    length or tag left from the script's head is gone.
    """
    request = Request()
    request.responseHeaders.setRawHeaders(b"content-length", [b"99"])
    request.responseHeaders.setRawHeaders(b"etag", [b'"x"'])
    sendDebugPage(request, context(), FAILURE, ended="x", stderr=b"boom")
    body = b"".join(request.written)
    assert (request.responseCode, request.responseMessage) == (502, b"Bad Gateway")
    assert request.finished == 1
    headers = request.responseHeaders
    assert headers.getRawHeaders(b"content-type") == [b"text/html; charset=utf-8"]
    assert headers.getRawHeaders(b"content-length") == [b"%d" % len(body)]
    assert headers.getRawHeaders(b"cache-control") == [b"no-store"]
    assert headers.getRawHeaders(b"x-content-type-options") == [b"nosniff"]
    assert headers.getRawHeaders(b"etag") is None
    (policy,) = headers.getRawHeaders(b"content-security-policy") or []
    assert policy.startswith(b"default-src 'none'")
    assert b"<pre>boom</pre>" in body


def test_headRequestGetsNoBody() -> None:
    """
    A HEAD request gets the page's headers and length, not the page.
    """
    request = Request(b"HEAD")
    sendDebugPage(request, context(), FAILURE, ended="x", stderr=b"")
    assert request.written == []
    assert request.finished == 1
    (length,) = request.responseHeaders.getRawHeaders(b"content-length") or []
    assert int(length) > 1000
