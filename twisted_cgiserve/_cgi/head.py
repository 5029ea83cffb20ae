# -*- test-case-name: tests.cgi.test_head -*-
"""
Parsing what a CGI script writes before its body (RFC 3875 section 6).

The parser is fed the script's output as it arrives and says when the
header block is complete; it never sees a socket or a process, so hostile
output can be tested exhaustively. What it lets through is safe to put in an
HTTP response: names are tokens, values have no CR, LF or NUL, framing and
hop-by-hop headers are the server's, and a malformed block is an error the
server answers with C{502 Bad Gateway}.
"""

from __future__ import annotations

import re
from dataclasses import dataclass, field
from enum import Enum

from twisted_cgiserve._http.grammar import HOP_BY_HOP, TOKEN

__all__ = [
    "MAX_CONTENT_LENGTH_DIGITS",
    "MAX_HEAD",
    "CGIHead",
    "HeadParser",
    "MalformedHead",
    "ResponseKind",
]

# The most a script may write before its blank line; more is a 502, as in
# lighttpd, so a script that never ends its headers cannot fill memory.
MAX_HEAD = 64 * 1024

# The most digits a script's Content-Length may have (up to about 10**18
# bytes, as a 64-bit length allows): a longer one is no real length, and
# past 4300 digits Python refuses to convert it at all.
MAX_CONTENT_LENGTH_DIGITS = 18

# A final status: an interim (1xx) one cannot end a response, and codes
# from 600 are not HTTP.
_STATUS = re.compile(rb"([2-5][0-9]{2})(?:[ \t]+(.*))?")

# What a header value may not hold: control characters other than the tab
# (CR, LF and NUL among them) and DEL. One search in C, not a pass per byte
# in Python (a 4 KiB cookie is 4,096 steps).
_FORBIDDEN_IN_VALUE = re.compile(rb"[\x00-\x08\x0a-\x1f\x7f]")

# Headers the server sets itself.
_SERVER_OWNED = frozenset({b"date", b"server"})


class MalformedHead(ValueError):
    """
    The script's header block is not valid CGI; the reason is for the log,
    never for the client.
    """


class ResponseKind(Enum):
    """
    The RFC 3875 section 6.2 response types.
    """

    DOCUMENT = "document"
    LOCAL_REDIRECT = "local redirect"
    CLIENT_REDIRECT = "client redirect"


@dataclass
class CGIHead:
    """
    A parsed CGI header block.

    @ivar status: The HTTP status to send.
    @ivar reason: The reason phrase the script gave, or L{None}.
    @ivar headers: The headers to pass on, in order, names as written.
    @ivar contentLength: The script's C{Content-Length}, if it gave one.
    @ivar location: The C{Location} value, if any.
    @ivar dropped: Lines that were not passed on, for the log.
    """

    status: int = 200
    reason: bytes | None = None
    headers: list[tuple[bytes, bytes]] = field(default_factory=list)
    contentLength: int | None = None
    location: bytes | None = None
    kind: ResponseKind = ResponseKind.DOCUMENT
    dropped: list[bytes] = field(default_factory=list)


def _isAbsoluteURL(value: bytes) -> bool:
    """
    Whether a C{Location} names a scheme (a client redirect) rather than a
    local path.
    """
    match = re.match(rb"[A-Za-z][A-Za-z0-9+.\-]*:", value)
    return match is not None


class HeadParser:
    """
    Accumulate a script's output until its header block ends.

    Feed output with L{feed}; it returns L{None} until the block is complete,
    then the parsed head and whatever body bytes followed it.
    """

    def __init__(self, maxHead: int = MAX_HEAD) -> None:
        self._buffer = b""
        self._maxHead = maxHead
        self.done = False

    def feed(self, data: bytes) -> tuple[CGIHead, bytes] | None:
        """
        Take more output.

        @raise MalformedHead: The block is invalid or too large.
        """
        if self.done:
            raise RuntimeError("head already parsed")
        self._buffer += data
        end, separator = self._findEnd()
        if end == -1:
            if len(self._buffer) > self._maxHead:
                raise MalformedHead(f"header block longer than {self._maxHead} bytes")
            return None
        if end > self._maxHead:
            raise MalformedHead(f"header block longer than {self._maxHead} bytes")
        block = self._buffer[:end]
        body = self._buffer[end + separator :]
        self._buffer = b""
        self.done = True
        return parseHead(block), body

    def _findEnd(self) -> tuple[int, int]:
        """
        Where the header block ends: the first empty line, with LF or CRLF
        line ends (RFC 3875 section 7.2 asks servers to accept both).
        """
        buffer = self._buffer
        if buffer.startswith(b"\r\n"):
            return 0, 2
        if buffer.startswith(b"\n"):
            return 0, 1
        lf = buffer.find(b"\n\n")
        crlf = buffer.find(b"\n\r\n")
        candidates = [(lf, 2), (crlf, 3)]
        found = [(i + 1, n - 1) for i, n in candidates if i != -1]
        if not found:
            return -1, 0
        return min(found)

    def finish(self) -> None:
        """
        The script ended its output.

        @raise MalformedHead: Before its header block was complete.
        """
        if not self.done:
            if not self._buffer:
                raise MalformedHead("script exited without writing anything")
            raise MalformedHead("script output ended before the end of its headers")


def parseHead(block: bytes) -> CGIHead:
    """
    Parse a complete header block (without the blank line that ends it).

    @raise MalformedHead: See L{HeadParser.feed}.
    """
    head = CGIHead()
    sawStatus = sawType = False
    if not block.strip(b"\r\n"):
        raise MalformedHead("empty header block (output starts with a blank line)")
    for raw in block.split(b"\n"):
        line = raw[:-1] if raw.endswith(b"\r") else raw
        if not line:
            continue
        if line[:1] in (b" ", b"\t"):
            raise MalformedHead(f"continuation line in headers: {line[:80]!r}")
        name, colon, value = line.partition(b":")
        if not colon:
            raise MalformedHead(f"header line without a colon: {line[:80]!r}")
        if not TOKEN.fullmatch(name):
            head.dropped.append(line)
            continue
        value = value.strip(b" \t")
        if _FORBIDDEN_IN_VALUE.search(value) is not None:
            head.dropped.append(line)
            continue
        lowered = name.lower()
        if lowered == b"status":
            if sawStatus:
                raise MalformedHead("more than one Status header")
            sawStatus = True
            match = _STATUS.fullmatch(value)
            if match is None:
                raise MalformedHead(f"invalid Status: {value[:80]!r}")
            head.status = int(match.group(1))
            head.reason = match.group(2) or None
        elif lowered == b"location":
            if head.location is not None:
                raise MalformedHead("more than one Location header")
            if not value:
                raise MalformedHead("empty Location header")
            head.location = value
        elif lowered == b"content-length":
            if (
                head.contentLength is not None
                or not value.isdigit()
                or len(value) > MAX_CONTENT_LENGTH_DIGITS
            ):
                raise MalformedHead(f"invalid Content-Length: {value[:80]!r}")
            head.contentLength = int(value)
        elif lowered in HOP_BY_HOP or lowered in _SERVER_OWNED:
            head.dropped.append(line)
        else:
            if lowered == b"content-type":
                if sawType:
                    raise MalformedHead("more than one Content-Type header")
                sawType = True
            head.headers.append((name, value))
    if not (sawStatus or sawType or head.location is not None):
        raise MalformedHead("no Content-Type, Location or Status header")
    if head.location is not None:
        if _isAbsoluteURL(head.location):
            head.kind = ResponseKind.CLIENT_REDIRECT
            if not sawStatus:
                head.status = 302
            head.headers.append((b"Location", head.location))
        elif head.location.startswith(b"/") and not sawStatus and not head.headers:
            head.kind = ResponseKind.LOCAL_REDIRECT
        else:
            # A relative reference with a status or a document: sent to the
            # client as is (RFC 9110 allows relative Location values).
            if not sawStatus:
                head.status = 302
            head.kind = ResponseKind.CLIENT_REDIRECT
            head.headers.append((b"Location", head.location))
    return head
