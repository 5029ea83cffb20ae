"""
Tests for L{twisted_cgiserve._http.channel}: the HTTP/1.x channel against an
in-memory transport that, like a socket's, pauses its producer when more
than its buffer size waits to be sent.
"""

from __future__ import annotations

import re
from collections.abc import Iterator
from typing import Any

import pytest
from twisted.internet.abstract import FileDescriptor
from twisted.internet.error import ConnectionDone
from twisted.internet.interfaces import IHalfCloseableProtocol
from twisted.internet.testing import MemoryReactorClock, StringTransport
from twisted.python.failure import Failure
from twisted.web import http
from twisted.web.http import HTTPChannel
from twisted.web.resource import Resource
from twisted.web.server import NOT_DONE_YET, Request, Site

from twisted_cgiserve._http.bodystream import BodyStream
from twisted_cgiserve._http.channel import (
    LINGER,
    MAX_CONTENT_LENGTH_DIGITS,
    STREAM_CHUNK,
    CGIServeChannel,
    endsAtClientEOF,
    receivedRequestLine,
)


class _Transport(StringTransport):
    """
    A transport that pauses its producer (the channel) while more than
    C{bufferSize} bytes are unsent, as Twisted's C{FileDescriptor} does, and
    resumes it when the client has read them all (L{drain}).
    """

    def __init__(self, bufferSize: int) -> None:
        super().__init__()
        self.bufferSize = bufferSize
        self.producerPaused = False

    def write(self, data: bytes) -> None:
        super().write(data)
        self._maybePause()

    def writeSequence(self, data: list[bytes]) -> None:  # type: ignore[override]
        super().writeSequence(data)
        self._maybePause()

    def _maybePause(self) -> None:
        if self.producer is not None and len(self.value()) > self.bufferSize:
            self.producerPaused = True
            self.producer.pauseProducing()

    def drain(self) -> bytes:
        """
        The client reads everything sent so far.
        """
        data = self.value()
        self.clear()
        if self.producer is not None and self.producerPaused:
            self.producerPaused = False
            self.producer.resumeProducing()
        return data

    @property
    def reading(self) -> bool:
        return self.producerState == "producing"


class _Echo(Resource):
    """
    Answer each request with its path padded to C{size} bytes.
    """

    isLeaf = True

    def __init__(self, size: int = 1000) -> None:
        super().__init__()
        self.size = size

    def render(self, request: Request) -> bytes:  # type: ignore[override]
        body = request.path.ljust(self.size, b".")
        request.setHeader(b"content-type", b"text/plain")
        return body


class _Slow(Resource):
    """
    Answer C{/slow} with C{size} bytes and leave it unfinished (the test
    finishes it); other paths as L{_Echo}.
    """

    isLeaf = True

    def __init__(self, size: int) -> None:
        super().__init__()
        self.size = size
        self.pending: list[Request] = []

    def render(self, request: Request) -> bytes | int:  # type: ignore[override]
        if request.path != b"/slow":
            return request.path
        request.setHeader(b"content-length", b"%d" % (self.size,))
        request.write(b"s" * self.size)
        self.pending.append(request)
        return NOT_DONE_YET


_connected: list[CGIServeChannel] = []


@pytest.fixture(autouse=True)
def _disconnect() -> Iterator[None]:
    """
    End every connection a test made, so the requests' body files close.
    """
    yield
    while _connected:
        _connected.pop().connectionLost(Failure(ConnectionDone()))


def _connect(
    resource: Resource, bufferSize: int = 1 << 30
) -> tuple[CGIServeChannel, _Transport]:
    site = Site(resource)
    site.log = lambda request: None  # type: ignore[method-assign]
    channel = CGIServeChannel()
    channel.site = site
    channel.requestFactory = Request
    channel.callLater = MemoryReactorClock().callLater
    transport = _Transport(bufferSize)
    channel.makeConnection(transport)
    _connected.append(channel)
    return channel, transport


def _get(path: bytes, extra: bytes = b"") -> bytes:
    return b"GET %s HTTP/1.1\r\nHost: example.com\r\n%s\r\n" % (path, extra)


def _statuses(data: bytes) -> list[int]:
    return [int(code) for code in re.findall(rb"HTTP/1\.[01] ([0-9]{3}) ", data)]


# Pipelining


def test_pipelinedRequestsWaitForTheClientToRead() -> None:
    """
    While the transport holds more than its buffer size, the next pipelined
    request is neither parsed nor answered and the socket is not read; each
    drain lets the next ones through, in order, and reading resumes.
    """
    channel, transport = _connect(_Echo(1000), bufferSize=4000)
    paths = [b"/%d" % (i,) for i in range(20)]
    channel.dataReceived(b"".join(_get(p) for p in paths))
    first = transport.value()
    assert 1 <= len(_statuses(first)) <= 5
    assert not transport.reading
    received = b""
    for _ in range(len(paths)):
        pending = transport.value()
        # Never more than the buffer plus the one response that filled it.
        assert len(pending) <= 4000 + 1300
        received += transport.drain()
        if received.count(b"HTTP/1.1 200 OK") == len(paths):
            break
    assert _statuses(received) == [200] * len(paths)
    bodies = [p.ljust(1000, b".") for p in paths]
    positions = [received.index(body) for body in bodies]
    assert positions == sorted(positions)
    assert transport.reading


def test_clientThatReadsIsNotHeldBack() -> None:
    """
    A pipelining client that reads as it goes (the transport never fills)
    gets every answer at once, as before.
    """
    channel, transport = _connect(_Echo(1000))
    channel.dataReceived(b"".join(_get(b"/%d" % (i,)) for i in range(50)))
    assert _statuses(transport.value()) == [200] * 50
    assert transport.reading


def test_stopsReadingWhileResponseBlocked() -> None:
    """
    A client that sends more while the response in progress waits for it to
    read is not read from any further (Twisted would buffer all it sends),
    and the request it sent is answered only once the response before it
    has been sent.
    """
    resource = _Slow(10_000)
    channel, transport = _connect(resource, bufferSize=4000)
    channel.dataReceived(_get(b"/slow"))
    assert resource.pending
    assert transport.reading
    channel.dataReceived(_get(b"/next"))
    assert not transport.reading
    resource.pending[0].finish()
    assert b"/next" not in transport.value()
    received = transport.drain()
    received += transport.drain()
    assert _statuses(received) == [200, 200]
    assert received.endswith(b"/next")
    assert transport.reading


def test_headerDeadlineWaitsForDrain() -> None:
    """
    A request head held unparsed while the transport is full does not run
    the header deadline (the wait is the server's); it starts once the
    channel takes the held bytes up again.
    """
    channel, transport = _connect(_Echo(1000), bufferSize=500)
    channel.dataReceived(_get(b"/a") + b"GET /x")
    assert not transport.reading
    assert channel.headerStarted is None
    transport.drain()
    assert transport.reading
    assert channel.headerStarted is not None
    channel.dataReceived(b" HTTP/1.1\r\nHost: a\r\n\r\n")
    assert channel.headerStarted is None
    assert transport.value().endswith(b"/x".ljust(1000, b"."))


def test_lastRequestClosesWhileBlocked() -> None:
    """
    A blocked transport does not keep a non-persistent connection open: its
    last response ends it as usual.
    """
    channel, transport = _connect(_Echo(1000), bufferSize=500)
    channel.dataReceived(_get(b"/a", b"Connection: close\r\n"))
    assert transport.disconnecting


# Refusals: each a complete response with the error page, then a close.


def _refusal(data: bytes) -> tuple[int, bytes, _Transport]:
    channel, transport = _connect(_Echo(10))
    channel.dataReceived(data)
    sent = transport.value()
    return _statuses(sent)[0], sent, transport


def _assertRefused(data: bytes, code: int = 400) -> None:
    status, sent, transport = _refusal(data)
    assert status == code
    assert b"Error code: %d" % (code,) in sent
    assert b"Connection: close" in sent
    assert transport.disconnecting
    assert len(_statuses(sent)) == 1


@pytest.mark.parametrize(
    "head",
    [
        pytest.param(b"GET / HTTP/1.1\r\n", id="http11WithoutHost"),
        pytest.param(b"GET http://a/ HTTP/1.1\r\n", id="absoluteFormWithoutHost"),
        pytest.param(b"GET / HTTP/1.1\r\nHost: a\r\nHost: a\r\n", id="twoHosts"),
        pytest.param(b"GET / HTTP/1.1\r\nHost: a\r\nhOsT: b\r\n", id="twoHostsCase"),
        pytest.param(b"GET / HTTP/1.0\r\nHost: a\r\nHost: b\r\n", id="http10TwoHosts"),
        pytest.param(b"GET / HTTP/1.1\r\nHost: a b/c\r\n", id="invalid"),
        pytest.param(b"GET / HTTP/1.1\r\nHost: a\r\n b\r\n", id="folded"),
        pytest.param(b"GET / HTTP/1.1\r\nHost: u@a\r\n", id="userinfo"),
        pytest.param(b"GET / HTTP/1.1\r\nHost: a:123456\r\n", id="longPort"),
        pytest.param(b"GET / HTTP/1.0\r\nHost: [::1\r\n", id="http10Invalid"),
    ],
)
def test_hostRefused(head: bytes) -> None:
    """
    RFC 9112 section 3.2: an HTTP/1.1 request without Host, any request
    with more than one Host field line or an invalid one, is answered 400.
    """
    _assertRefused(head + b"\r\n")


@pytest.mark.parametrize(
    "head",
    [
        pytest.param(b"GET / HTTP/1.0\r\n", id="http10WithoutHost"),
        pytest.param(b"GET / HTTP/1.1\r\nHost: \r\n", id="empty"),
        pytest.param(b"GET / HTTP/1.1\r\nHost: [::1]:8080\r\n", id="ipv6"),
        pytest.param(b"GET / HTTP/1.1\r\nHost: 127.0.0.1:80\r\n", id="ipv4"),
        pytest.param(
            b"GET http://b/ HTTP/1.1\r\nHost: a\r\n", id="absoluteFormWithHost"
        ),
    ],
)
def test_hostAccepted(head: bytes) -> None:
    """
    HTTP/1.0 may omit Host; an empty one, an address and a name with a
    port are valid.
    """
    status, _sent, _transport = _refusal(head + b"\r\n")
    assert status == 200


def test_noContinueForRefusedHost() -> None:
    """
    A request refused for its Host is not invited to send its body.
    """
    status, sent, _transport = _refusal(
        b"POST / HTTP/1.1\r\nExpect: 100-continue\r\nContent-Length: 5\r\n\r\n"
    )
    assert status == 400
    assert b"100 Continue" not in sent


@pytest.mark.parametrize(
    "value",
    [
        pytest.param(b"9" * 5000, id="5000digits"),
        pytest.param(b"1" * (MAX_CONTENT_LENGTH_DIGITS + 1), id="19digits"),
        pytest.param(b"0" * 5000 + b"1", id="leadingZeros"),
    ],
)
@pytest.mark.parametrize("name", [b"Content-Length", b"content-LENGTH"])
def test_longContentLengthRefused(name: bytes, value: bytes) -> None:
    """
    A Content-Length with more digits than any real body needs is answered
    400 with the error page (Twisted's conversion fails past 4300 digits:
    a traceback and a silent close).
    """
    _assertRefused(_get(b"/", name + b": " + value + b"\r\n"))


def test_longestContentLengthAccepted() -> None:
    """
    A Content-Length of L{MAX_CONTENT_LENGTH_DIGITS} digits is a length
    (the site's body size limit, if any, decides on it).
    """
    channel, transport = _connect(_Echo(10))
    channel.dataReceived(
        _get(b"/", b"Content-Length: %s\r\n" % (b"0" * MAX_CONTENT_LENGTH_DIGITS,))
    )
    assert _statuses(transport.value()) == [200]
    channel, transport = _connect(_Echo(10))
    channel._maxBodySize = 100
    channel.dataReceived(
        _get(b"/", b"Content-Length: %s\r\n" % (b"9" * MAX_CONTENT_LENGTH_DIGITS,))
    )
    assert _statuses(transport.value()) == [413]


@pytest.mark.parametrize(
    "body",
    [
        pytest.param(b"f" * 5000 + b"\r\n", id="5000hexDigits"),
        pytest.param(b"1" * 3000, id="lineNeverEnds"),
        pytest.param(b"zz\r\n", id="notHex"),
    ],
)
def test_badChunkSizeRefused(body: bytes) -> None:
    """
    A chunk size that is too long, or a chunk-size line that never ends
    (Twisted stops at 1024 bytes), is answered 400 with the error page.
    """
    _assertRefused(
        b"POST / HTTP/1.1\r\nHost: a\r\nTransfer-Encoding: chunked\r\n\r\n" + body
    )


# Canaries: the private parts of Twisted's HTTP/1.x channel this module
# relies on (see its docstring). Each fails with a message naming the part
# when a Twisted release changes it.


def _changed(name: str, why: str) -> str:
    return (
        f"Twisted changed HTTPChannel.{name}, which {why}. Adapt "
        f"twisted_cgiserve._http.channel to this Twisted release."
    )


class _Spy(HTTPChannel):
    """
    Twisted's own channel, noting its private state when a request's head
    is complete and whenever it refuses a request.
    """

    def __init__(self) -> None:
        super().__init__()
        self.heads: list[tuple[bytes, int, int | None]] = []
        self.refused = 0

    def allHeadersReceived(self) -> None:
        self.heads.append((self._version, len(self.requests), self.length))
        super().allHeadersReceived()

    def _respondToBadRequestAndDisconnect(self) -> None:
        self.refused += 1
        super()._respondToBadRequestAndDisconnect()


def _spy(resource: Resource | None = None) -> tuple[_Spy, StringTransport]:
    site = Site(resource if resource is not None else _Echo(10))
    site.log = lambda request: None  # type: ignore[method-assign]
    channel = _Spy()
    channel.site = site
    channel.requestFactory = Request
    channel.callLater = MemoryReactorClock().callLater
    transport = StringTransport()
    channel.makeConnection(transport)
    _connected.append(channel)  # type: ignore[arg-type]
    return channel, transport


@pytest.mark.parametrize("version", [b"HTTP/1.0", b"HTTP/1.1"])
def test_canaryVersion(version: bytes) -> None:
    """
    C{_version} holds the request line's version when the head is complete
    (L{CGIServeChannel._hostAcceptable} reads it to require C{Host} of
    HTTP/1.1 only).
    """
    channel, _transport = _spy()
    channel.dataReceived(b"GET / %s\r\nHost: a\r\nContent-Length: 0\r\n\r\n" % version)
    assert channel.heads[:1] == [(version, 1, 0)], _changed(
        "_version, requests or length", "allHeadersReceived reads"
    )


def test_canaryReceivedHeaderSizeAndCount() -> None:
    """
    C{_receivedHeaderSize} counts the bytes of the head's lines (without
    their CRLF) and C{_receivedHeaderCount} the header lines parsed, both
    zero again once the head is complete: L{CGIServeChannel} tells a long
    request line from a long header line, and too many headers from a
    malformed request, by them.
    """
    channel, _transport = _spy()
    assert (channel._receivedHeaderSize, channel._receivedHeaderCount) == (0, 0)
    channel.dataReceived(b"GET / HTTP/1.1\r\nHost: a\r\nX: 1\r\nY: 2\r\n")
    # Twisted parses a header line when the next one starts (folding).
    assert channel._receivedHeaderCount == 2, _changed(
        "_receivedHeaderCount", "_respondToBadRequestAndDisconnect reads"
    )
    assert channel._receivedHeaderSize == len(b"GET / HTTP/1.1Host: aX: 1Y: 2"), (
        _changed("_receivedHeaderSize", "lineLengthExceeded reads")
    )
    channel.dataReceived(b"\r\n")
    assert (channel._receivedHeaderSize, channel._receivedHeaderCount) == (0, 0)


@pytest.mark.parametrize(
    "data",
    [
        pytest.param(b"NONSENSE\r\n", id="requestLine"),
        pytest.param(
            b"GET / HTTP/1.1\r\n"
            + b"X: 1\r\n" * (HTTPChannel.maxHeaders + 1)
            + b"\r\n",
            id="tooManyHeaders",
        ),
        pytest.param(
            b"GET / HTTP/1.1\r\n" + (b"X: " + b"a" * 8000 + b"\r\n") * 3 + b"\r\n",
            id="headTooLarge",
        ),
        pytest.param(
            b"POST / HTTP/1.1\r\nHost: a\r\nTransfer-Encoding: chunked\r\n\r\nzz\r\n",
            id="badChunk",
        ),
    ],
)
def test_canaryRespondToBadRequest(data: bytes) -> None:
    """
    Twisted refuses every request it cannot take through
    C{_respondToBadRequestAndDisconnect}, which L{CGIServeChannel}
    overrides to answer with a complete response (Twisted's has no body).
    """
    channel, transport = _spy()
    channel.dataReceived(data)
    assert channel.refused == 1, _changed(
        "_respondToBadRequestAndDisconnect", "CGIServeChannel overrides"
    )
    assert transport.disconnecting


def test_canaryTotalHeadersSizeExceeded() -> None:
    """
    A head larger than C{totalHeadersSize} leaves C{_receivedHeaderSize}
    above it when Twisted refuses the request (L{CGIServeChannel} then
    answers 431, not 400).
    """
    channel, _transport = _spy()
    line = b"X: " + b"a" * 8000 + b"\r\n"
    channel.dataReceived(b"GET / HTTP/1.1\r\n" + line * 3)
    assert channel.refused == 1
    assert channel._receivedHeaderSize > channel.totalHeadersSize


def test_canaryPausedStopsParsing() -> None:
    """
    While C{paused} is set, Twisted's line parser leaves what arrives in
    its buffer; L{clearLineBuffer} hands it back: how L{CGIServeChannel}
    holds pipelined requests back while the client does not read.
    """
    channel, transport = _spy()
    channel.paused = True
    channel.dataReceived(_get(b"/a"))
    assert channel.heads == [], _changed("paused", "requestDone sets")
    assert transport.value() == b""
    channel.paused = False
    channel.dataReceived(channel.clearLineBuffer())
    assert [head[0] for head in channel.heads] == [b"HTTP/1.1"]
    assert _statuses(transport.value()) == [200]


@pytest.mark.parametrize(
    ("head", "persistent"),
    [
        pytest.param(b"GET / HTTP/1.1\r\nHost: a\r\n", True, id="http11"),
        pytest.param(
            b"GET / HTTP/1.1\r\nHost: a\r\nConnection: close\r\n", False, id="close"
        ),
        pytest.param(b"GET / HTTP/1.0\r\n", False, id="http10"),
    ],
)
def test_canaryPersistent(head: bytes, persistent: bool) -> None:
    """
    C{persistent} says whether the connection is kept after the request
    (L{CGIServeChannel.requestDone} holds pipelined requests only then).
    """
    channel, _transport = _spy(_Slow(5))
    channel.dataReceived(head.replace(b"/ ", b"/slow ") + b"\r\n")
    assert channel.persistent is persistent, _changed("persistent", "is read")


def test_canarySiteSetByBuildProtocol() -> None:
    """
    Twisted's L{Site} sets C{site} on the channel it builds, before the
    connection is made: L{CGIServeChannel} reads its body size limit from
    it.
    """
    site = Site(Resource())
    site.protocol = CGIServeChannel  # type: ignore[assignment]
    channel = site.buildProtocol(None)
    assert isinstance(channel, CGIServeChannel)
    assert channel.site is site


def test_bodyLimitFromTheSite() -> None:
    """
    A site with a C{maxBodySize} (this server's) sets the channel's limit:
    a body announced larger is refused with 413 before it is read.
    """
    site = Site(_Echo(10))
    site.maxBodySize = 4  # type: ignore[attr-defined]
    channel = CGIServeChannel()
    channel.site = site
    channel.requestFactory = Request
    channel.callLater = MemoryReactorClock().callLater
    transport = _Transport(1 << 30)
    channel.makeConnection(transport)
    _connected.append(channel)
    channel.dataReceived(_get(b"/", b"Content-Length: 5\r\n"))
    assert _statuses(transport.value()) == [413]


def test_canaryHTTP1RequestLine() -> None:
    """
    Twisted's HTTP/1.x channel keeps the request line it parsed in
    C{_command}, C{_path} and C{_version} while the request's body
    arrives, which L{receivedRequestLine} reads.
    """
    channel = HTTPChannel()
    channel.requestFactory = http.Request
    channel.makeConnection(StringTransport())
    channel.dataReceived(
        b"POST /up?x HTTP/1.1\r\nHost: a\r\nContent-Length: 5\r\n\r\n12"
    )
    assert (channel._command, channel._path, channel._version) == (  # type: ignore[attr-defined]
        b"POST",
        b"/up?x",
        b"HTTP/1.1",
    ), "Twisted's HTTPChannel changed: adapt receivedRequestLine"
    assert receivedRequestLine(channel) == b"POST /up?x HTTP/1.1"
    channel.connectionLost(Failure(ConnectionDone()))


def test_canaryHTTP1RequestLineLifetime() -> None:
    """
    C{_command} is there from the parse of a request line to the end of
    its body only: not before a request's first line is whole, nor after
    the request was received (L{CGIServeChannel.refuse} logs the line of
    the request it refuses by it).
    """
    channel = HTTPChannel()
    channel.requestFactory = http.Request
    channel.makeConnection(StringTransport())
    why = "is there only from a request line's parse to the end of its body"
    channel.dataReceived(b"POST /up HTTP/1.")
    assert not hasattr(channel, "_command"), _changed("_command", why)
    channel.dataReceived(b"1\r\nHost: a\r\n")
    assert hasattr(channel, "_command"), _changed("_command", why)
    channel.dataReceived(b"Content-Length: 2\r\n\r\n12")
    assert not hasattr(channel, "_command"), _changed("_command", why)
    channel.connectionLost(Failure(ConnectionDone()))


# The idle timer


def _timed(
    resource: Resource, timeout: float = 10.0
) -> tuple[CGIServeChannel, _Transport, MemoryReactorClock]:
    """
    A channel with an idle timeout of C{timeout} seconds on a simulated
    clock.
    """
    site = Site(resource)
    site.log = lambda request: None  # type: ignore[method-assign]
    clock = MemoryReactorClock()
    channel = CGIServeChannel()
    channel.site = site
    channel.requestFactory = Request
    channel.callLater = clock.callLater
    channel.timeOut = timeout  # type: ignore[assignment]
    transport = _Transport(1 << 30)
    channel.makeConnection(transport)
    _connected.append(channel)
    return channel, transport, clock


def test_idleTimerKeptAcrossRequests() -> None:
    """
    Requests answered at once leave the one idle timer queued and push it
    back: no timer is created or cancelled per request, and the connection
    is closed the idle timeout after the last request.
    """
    channel, transport, clock = _timed(_Echo(10))
    [timer] = clock.getDelayedCalls()
    for _ in range(3):
        clock.advance(6)
        channel.dataReceived(_get(b"/a"))
        assert clock.getDelayedCalls() == [timer]
        assert timer.getTime() == clock.seconds() + 10
    assert _statuses(transport.value()) == [200, 200, 200]
    clock.advance(9.9)
    assert not transport.disconnecting
    clock.advance(0.1)
    assert transport.disconnecting


def test_idleTimerIdleWhileRequestProcessed() -> None:
    """
    The idle timeout does not run out while a request is being processed,
    however long it takes (Twisted's rule, kept); once it is answered, the
    connection has the whole idle timeout again.
    """
    resource = _Slow(10)
    channel, transport, clock = _timed(resource)
    channel.dataReceived(_get(b"/slow"))
    clock.advance(25)
    assert not transport.disconnecting
    assert clock.getDelayedCalls() == []
    resource.pending.pop().finish()
    clock.advance(9.9)
    assert not transport.disconnecting
    clock.advance(0.1)
    assert transport.disconnecting


def test_idleTimerCancelledWhenLost() -> None:
    """
    A connection that is lost, even while a request is being processed,
    leaves no timer behind.
    """
    resource = _Slow(10)
    channel, _, clock = _timed(resource)
    channel.dataReceived(_get(b"/a"))
    channel.dataReceived(_get(b"/slow"))
    assert len(clock.getDelayedCalls()) == 1
    _connected.remove(channel)
    channel.connectionLost(Failure(ConnectionDone()))
    assert clock.getDelayedCalls() == []


def test_idleTimerOffOutsideRequests() -> None:
    """
    Turned off between requests (as for a switch to HTTP/2), the idle timer
    is cancelled; turned on again, it runs the new period.
    """
    channel, transport, clock = _timed(_Echo(10))
    assert channel.setTimeout(None) == 10
    assert clock.getDelayedCalls() == []
    channel.resetTimeout()
    assert clock.getDelayedCalls() == []
    assert channel.setTimeout(5) is None
    clock.advance(4)
    channel.resetTimeout()
    clock.advance(4.9)
    assert not transport.disconnecting
    clock.advance(0.1)
    assert transport.disconnecting


# Request bodies streamed to what serves the request


class _EarlyRequest(Request):
    """
    A request started at the end of its head when its path starts with
    C{/stream} (as this server's request does for a CGI script), its body
    going to a L{BodyStream} that a test attaches a consumer to.
    C{/stream/refuse} is answered at once, before its body.
    """

    stream: BodyStream | None = None
    completed = False

    def startEarly(self, command: bytes, path: bytes, version: bytes) -> bool:
        if not path.startswith(b"/stream"):
            return False
        self.method, self.uri, self.path = command, path, path
        self.clientproto = version
        channel = self.channel
        assert isinstance(channel, CGIServeChannel) and channel.length
        self.stream = BodyStream(channel.length, channel)
        _early.append(self)
        if path == b"/stream/refuse":
            self.setResponseCode(404)
            self.setHeader(b"content-length", b"2")
            self.write(b"no")
            self.finish()
        return True

    def handleContentChunk(self, data: bytes) -> None:
        if self.stream is None:
            super().handleContentChunk(data)
        else:
            self.stream.feed(data)

    def requestReceived(self, command: bytes, path: bytes, version: bytes) -> None:
        if self.stream is None:
            super().requestReceived(command, path, version)
        else:
            self.completed = True

    def finish(self) -> None:
        super().finish()
        if self.stream is not None:
            self.stream.discard()


_early: list[_EarlyRequest] = []


class _Pipe:
    """
    A script's standard input holding C{capacity} bytes.
    """

    def __init__(self, capacity: int) -> None:
        self.capacity = capacity
        self.held = b""
        self.producer: Any = None
        self.closed = False

    def registerProducer(self, producer: Any, streaming: bool) -> None:
        self.producer = producer

    def unregisterProducer(self) -> None:
        self.producer = None

    def write(self, data: bytes) -> None:
        self.held += data
        if len(self.held) >= self.capacity:
            self.producer.pauseProducing()

    def drain(self) -> bytes:
        data, self.held = self.held, b""
        if self.producer is not None:
            self.producer.resumeProducing()
        return data

    def close(self) -> None:
        self.closed = True


def _streaming(
    timeout: float = 10.0,
) -> tuple[CGIServeChannel, _Transport, MemoryReactorClock]:
    _early.clear()
    channel, transport, clock = _timed(_Echo(10), timeout)
    channel.requestFactory = _EarlyRequest
    return channel, transport, clock


def _post(path: bytes, length: int, extra: bytes = b"") -> bytes:
    return b"POST %s HTTP/1.1\r\nHost: a\r\nContent-Length: %d\r\n%s\r\n" % (
        path,
        length,
        extra,
    )


def test_startedAtTheEndOfTheHead() -> None:
    """
    A request whose body is streamed is processed before its body arrives;
    the body goes to its consumer as it comes, and once it is complete and
    answered the connection takes up the next request.
    """
    channel, transport, _ = _streaming()
    channel.dataReceived(_post(b"/stream", 10) + b"abc")
    [request] = _early
    pipe = _Pipe(1000)
    assert request.stream is not None
    request.stream.attach(pipe, pipe.close)
    assert pipe.held == b"abc"
    channel.dataReceived(b"defghij" + _get(b"/next"))
    assert pipe.held == b"abcdefghij"
    assert pipe.closed
    assert request.completed
    assert b"/next" not in transport.value()
    request.write(b"done")
    request.finish()
    assert _statuses(transport.value()) == [200, 200]
    assert transport.value().endswith(b"/next".ljust(10, b"."))


def test_otherRequestsKeptWhole() -> None:
    """
    Requests the request does not start early, and chunked bodies (their
    length unknown), are processed once their body is complete, as always.
    """
    channel, transport, _ = _streaming()
    channel.dataReceived(_post(b"/other", 3) + b"ab")
    assert _early == []
    assert transport.value() == b""
    channel.dataReceived(b"c")
    assert _statuses(transport.value()) == [200]
    chunked = b"Transfer-Encoding: chunked\r\n"
    channel.dataReceived(
        b"POST /stream HTTP/1.1\r\nHost: a\r\n%s\r\n3\r\nabc\r\n" % (chunked,)
    )
    assert _early == []
    channel.dataReceived(b"0\r\n\r\n")
    assert _statuses(transport.value()) == [200, 200]


def test_fullConsumerPausesTheConnection() -> None:
    """
    Backpressure: while the consumer is full, the transport is not read and
    the idle timeout does not run (the wait is the server's); the consumer
    taking more reads the connection again, with the idle timeout back.
    """
    channel, transport, clock = _streaming(timeout=10)
    channel.dataReceived(_post(b"/stream", 100))
    [request] = _early
    pipe = _Pipe(10)
    assert request.stream is not None
    request.stream.attach(pipe, pipe.close)
    channel.dataReceived(b"x" * 10)
    assert not transport.reading
    clock.advance(100)
    assert not transport.disconnecting
    assert pipe.drain() == b"x" * 10
    assert transport.reading
    clock.advance(9.9)
    assert not transport.disconnecting
    clock.advance(0.1)
    assert transport.disconnecting


def test_stalledClientTimesOut() -> None:
    """
    A client that stops sending in the middle of a streamed body is cut by
    the idle timeout, and the request learns its connection is gone.
    """
    channel, transport, clock = _streaming(timeout=10)
    channel.dataReceived(_post(b"/stream", 100))
    [request] = _early
    pipe = _Pipe(1000)
    assert request.stream is not None
    request.stream.attach(pipe, pipe.close)
    clock.advance(9)
    channel.dataReceived(b"x" * 10)
    clock.advance(9)
    assert not transport.disconnecting
    lost: list[Failure] = []
    request.notifyFinish().addErrback(lost.append)
    clock.advance(1)
    assert transport.disconnecting
    _connected.remove(channel)
    channel.connectionLost(Failure(ConnectionDone()))
    assert len(lost) == 1
    assert clock.getDelayedCalls() == []


def test_answeredBeforeTheBody() -> None:
    """
    A response that ends before its body (a script answering without
    reading it): the rest of the body is read and dropped, never parsed as
    a request, and the connection then serves the next request.
    """
    channel, transport, _ = _streaming()
    evil = _get(b"/evil")
    channel.dataReceived(_post(b"/stream/refuse", len(evil)))
    assert _statuses(transport.value()) == [404]
    channel.dataReceived(evil[:5])
    channel.dataReceived(evil[5:] + _get(b"/next"))
    assert _statuses(transport.value()) == [404, 200]
    assert b"/evil" not in transport.value()
    assert b"/next" in transport.value()
    assert not transport.disconnecting


def test_lingerBounded() -> None:
    """
    A client still sending (or stalled) LINGER seconds after the response
    ended before its body is disconnected; nothing more is parsed.
    """
    channel, transport, clock = _streaming(timeout=1000)
    channel.dataReceived(_post(b"/stream/refuse", 1 << 20) + b"x" * 100)
    assert _statuses(transport.value()) == [404]
    clock.advance(LINGER - 0.1)
    channel.dataReceived(b"x" * 100)
    assert not transport.disconnecting
    clock.advance(0.1)
    assert transport.disconnecting
    channel.dataReceived(_get(b"/more"))
    assert _statuses(transport.value()) == [404]


def test_lostWhileLingering() -> None:
    """
    The connection lost while the rest of a body is discarded leaves no
    timer behind.
    """
    channel, _, clock = _streaming()
    channel.dataReceived(_post(b"/stream/refuse", 1000))
    assert len(clock.getDelayedCalls()) == 2
    _connected.remove(channel)
    channel.connectionLost(Failure(ConnectionDone()))
    assert clock.getDelayedCalls() == []


def test_consumerGoneReadsOn() -> None:
    """
    A consumer that goes away (a script closing its input) while the
    connection is paused lets the connection read, and drop, the rest.
    """
    channel, transport, _ = _streaming()
    channel.dataReceived(_post(b"/stream", 30))
    [request] = _early
    pipe = _Pipe(10)
    assert request.stream is not None
    request.stream.attach(pipe, pipe.close)
    channel.dataReceived(b"x" * 10)
    assert not transport.reading
    pipe.producer.stopProducing()
    assert transport.reading
    channel.dataReceived(b"y" * 20)
    assert request.completed
    assert pipe.held == b"x" * 10


class _SocketTransport(_Transport, FileDescriptor):  # type: ignore[misc]
    """
    The in-memory transport, seen as a socket's (a L{FileDescriptor}, whose
    read size and send limit the channel may change).
    """


def _streamingOnSocket() -> tuple[CGIServeChannel, _SocketTransport]:
    channel, _, _ = _streaming()
    transport = _SocketTransport(64 * 1024)
    channel.transport = transport
    transport.registerProducer(channel, True)
    return channel, transport


def _sizes(transport: FileDescriptor) -> tuple[int, int]:
    return (transport.bufferSize, transport.SEND_LIMIT)


def test_streamedBodyReadInLargePieces() -> None:
    """
    While a body is streamed, a socket transport reads and writes
    L{STREAM_CHUNK} at a time; once its request is done it has its own sizes
    back, and other requests never change them.
    """
    channel, transport = _streamingOnSocket()
    own = _sizes(transport)
    assert own == (64 * 1024, FileDescriptor.SEND_LIMIT)
    channel.dataReceived(_post(b"/other", 3) + b"abc")
    assert _sizes(transport) == own
    channel.dataReceived(_post(b"/stream", 10) + b"abc")
    [request] = _early
    assert _sizes(transport) == (STREAM_CHUNK, STREAM_CHUNK)
    pipe = _Pipe(1000)
    assert request.stream is not None
    request.stream.attach(pipe, pipe.close)
    channel.dataReceived(b"defghij")
    assert _sizes(transport) == (STREAM_CHUNK, STREAM_CHUNK)
    request.finish()
    assert _sizes(transport) == own
    assert _statuses(transport.value()) == [200, 200]


def test_largePiecesUntilTheDiscardedBodyEnds() -> None:
    """
    A response over before its body: the sizes stay large while the rest of
    the body is read and dropped, and are given back at its end, or when
    the linger runs out.
    """
    for ending in (b"x" * 10, None):
        channel, transport = _streamingOnSocket()
        channel.dataReceived(_post(b"/stream/refuse", 10))
        assert _sizes(transport) == (STREAM_CHUNK, STREAM_CHUNK)
        if ending is None:
            channel.connectionLost(Failure(ConnectionDone()))
        else:
            channel.dataReceived(ending)
        assert _sizes(transport) == (64 * 1024, FileDescriptor.SEND_LIMIT)


def test_tlsKeepsItsSizes() -> None:
    """
    A transport that is not a socket's (TLS, a test's) is left alone.
    """
    channel, transport, _ = _streaming()
    channel.dataReceived(_post(b"/stream", 10) + b"abc")
    assert transport.bufferSize == 1 << 30
    assert not hasattr(transport, "SEND_LIMIT")


def test_canarySocketTransportSizes() -> None:
    """
    Canary: a streamed body widens the socket transport's C{bufferSize}
    (how much one C{doRead} reads) and C{SEND_LIMIT} (how much one
    C{doWrite} sends), undocumented attributes of Twisted's
    C{FileDescriptor} that its TCP connection reads on every call.
    """
    import inspect  # noqa: PLC0415

    from twisted.internet import abstract, tcp  # noqa: PLC0415

    assert isinstance(abstract.FileDescriptor.bufferSize, int)
    assert isinstance(abstract.FileDescriptor.SEND_LIMIT, int)
    assert "self.bufferSize" in inspect.getsource(tcp.Connection.doRead)
    assert "self.SEND_LIMIT" in inspect.getsource(abstract.FileDescriptor.doWrite)


# A client that half-closes: it shuts down its side once its requests are
# sent (shutdown(SHUT_WR), nc -N) and reads on.


def _halfClosed(
    channel: CGIServeChannel, clock: MemoryReactorClock, data: bytes = b""
) -> None:
    """
    The client sends C{data}, then the end of its input; the reactor turns.
    """
    if data:
        channel.dataReceived(data)
    channel.readConnectionLost()
    clock.advance(0)


def test_canaryHandlingRequest() -> None:
    """
    Canary: Twisted's C{_handlingRequest} is set while a request received
    whole awaits the end of its response, and unset once it has ended on a
    connection kept open (the half-close reads it).
    """
    resource = _Slow(10)
    channel, _, _ = _timed(resource)
    assert channel._handlingRequest is False
    channel.dataReceived(_get(b"/slow"))
    assert channel._handlingRequest is True
    resource.pending.pop().finish()
    assert channel._handlingRequest is False


@pytest.mark.parametrize("marked", [True, False])
def test_halfCloseWhileScriptRunsIsClientGone(marked: bool) -> None:
    """
    The end of input while the request in progress is answered by a running
    script (L{endsAtClientEOF}) aborts the connection at once, so that the
    request learns its client is gone; an unmarked request in progress is
    answered first.
    """
    resource = _Slow(10)
    channel, transport, clock = _timed(resource)
    finished: list[object] = []
    channel.dataReceived(_get(b"/slow"))
    [request] = resource.pending
    request.notifyFinish().addBoth(finished.append)
    if marked:
        endsAtClientEOF(request)
    _halfClosed(channel, clock)
    # StringTransport marks an abort "disconnected" (a plain close does not).
    assert transport.disconnected is marked
    if marked:
        channel.connectionLost(Failure(ConnectionDone()))
        assert [type(f) for f in finished] == [Failure]
    else:
        assert not transport.disconnecting
        request.finish()
        clock.advance(0)
        assert transport.disconnecting
        assert finished == [None]


def test_halfCloseAfterScriptAnsweredKeepsTheAnswer() -> None:
    """
    A script's request whose response is over while the rest of its body
    is read and dropped: the end of input then closes the connection
    after what was written, the answer included, rather than aborting it.
    """
    channel, transport, clock = _streaming()
    channel.dataReceived(_post(b"/stream/refuse", 1000) + b"x" * 10)
    [request] = _early
    endsAtClientEOF(request)
    assert _statuses(transport.value()) == [404]
    _halfClosed(channel, clock)
    assert transport.disconnecting
    assert not transport.disconnected


def test_halfCloseWhileIdleClosesAtOnce() -> None:
    """
    The end of input with no request in progress closes the connection in
    the same reactor turn, without waiting for the idle timeout.
    """
    channel, transport, clock = _timed(_Echo(10))
    assert IHalfCloseableProtocol.providedBy(channel)
    channel.readConnectionLost()
    assert not transport.disconnecting
    clock.advance(0)
    assert transport.disconnecting
    assert transport.value() == b""


@pytest.mark.parametrize("version", [b"HTTP/1.0", b"HTTP/1.1"])
def test_halfCloseAnswersTheRequest(version: bytes) -> None:
    """
    A request sent whole before the end of input is answered in full, over
    HTTP/1.0 and HTTP/1.1, and the connection is closed after its response
    (not left for the idle timeout).
    """
    resource = _Slow(10)
    channel, transport, clock = _timed(resource)
    _halfClosed(channel, clock, b"GET /slow %s\r\nHost: a\r\n\r\n" % (version,))
    clock.advance(100)
    assert not transport.disconnecting
    resource.pending.pop().finish()
    clock.advance(0)
    assert transport.disconnecting
    assert transport.value().startswith(version + b" 200 OK")
    assert transport.value().endswith(b"\r\n\r\n" + b"s" * 10)


def test_halfCloseAnswersPipelinedRequests() -> None:
    """
    Requests pipelined behind a slow one, already received when the input
    ends, are all answered in order, then the connection is closed: even
    those answered at once while Twisted hands the buffered ones on.
    """
    resource = _Slow(10)
    channel, transport, clock = _timed(resource)
    data = _get(b"/slow") + _get(b"/a") + _get(b"/b") + _get(b"/c")
    _halfClosed(channel, clock, data)
    assert not transport.disconnecting
    resource.pending.pop().finish()
    assert not transport.disconnecting
    clock.advance(0)
    assert _statuses(transport.value()) == [200] * 4
    assert transport.value().endswith(b"/c")
    assert transport.disconnecting


def test_halfCloseAnswersHeldRequests() -> None:
    """
    Requests held unparsed while the transport is full (the client not
    reading yet) are answered as the client reads, then the connection is
    closed.
    """
    channel, transport, clock = _timed(_Echo(1000))
    transport.bufferSize = 1500
    paths = [b"/%d" % (i,) for i in range(6)]
    _halfClosed(channel, clock, b"".join(_get(p) for p in paths))
    assert channel.paused
    assert not transport.disconnecting
    received = b""
    for _ in range(len(paths)):
        received += transport.drain()
        clock.advance(0)
    assert transport.disconnecting
    received += transport.value()
    assert _statuses(received) == [200] * len(paths)
    assert received.endswith(b"/5".ljust(1000, b"."))


def test_halfClosedClientThatNeverReadsIsCut() -> None:
    """
    A half-closed client that does not read its responses is still cut,
    by the idle timeout, once what it pipelined is held behind them.
    """
    channel, transport, clock = _timed(_Echo(1000), timeout=10)
    transport.bufferSize = 500
    _halfClosed(channel, clock, _get(b"/a") + _get(b"/b"))
    clock.advance(9.9)
    assert not transport.disconnecting
    clock.advance(0.1)
    assert transport.disconnecting


@pytest.mark.parametrize(
    ("data", "answered"),
    [
        (b"GET /a HTTP/1.1\r\nHost: a", 0),
        (_get(b"/a") + b"GET /b HTTP/1.1\r\n", 1),
        (_post(b"/other", 10) + b"abc", 0),
    ],
)
def test_halfCloseIncompleteRequestCloses(data: bytes, answered: int) -> None:
    """
    A request whose head or body is incomplete when the input ends never
    will be complete: the connection is closed at once, after the answers
    to the requests before it, and the request learns that its connection
    is gone.
    """
    channel, transport, clock = _timed(_Echo(10))
    _halfClosed(channel, clock, data)
    assert transport.disconnecting
    assert _statuses(transport.value()) == [200] * answered
    assert channel.headerStarted is None
    [request] = channel.requests
    lost: list[Failure] = []
    request.notifyFinish().addErrback(lost.append)
    _connected.remove(channel)
    channel.connectionLost(Failure(ConnectionDone()))
    assert len(lost) == 1
    assert clock.getDelayedCalls() == []


def test_halfCloseInsideTheRequestLine() -> None:
    """
    The input ending inside a request line (no request yet): the
    connection is closed at once, with no answer.
    """
    channel, transport, clock = _timed(_Echo(10))
    _halfClosed(channel, clock, b"GET /a HT")
    assert transport.disconnecting
    assert transport.value() == b""
    assert channel.headerStarted is None


def test_halfCloseEndsStreamedBody() -> None:
    """
    A body streamed to its consumer (a CGI script) and incomplete when the
    input ends: the connection is closed at once, and its request (so its
    script) ended as when the client disconnects.
    """
    channel, transport, clock = _streaming()
    channel.dataReceived(_post(b"/stream", 100) + b"x" * 10)
    [request] = _early
    pipe = _Pipe(1000)
    assert request.stream is not None
    request.stream.attach(pipe, pipe.close)
    lost: list[Failure] = []
    request.notifyFinish().addErrback(lost.append)
    _halfClosed(channel, clock)
    assert transport.disconnecting
    _connected.remove(channel)
    channel.connectionLost(Failure(ConnectionDone()))
    assert len(lost) == 1
    assert not request.completed
    assert clock.getDelayedCalls() == []


def test_halfCloseWhileStreamedBodyComplete() -> None:
    """
    A streamed body received whole before the end of input: its response
    is awaited, sent, and the connection then closed.
    """
    channel, transport, clock = _streaming()
    channel.dataReceived(_post(b"/stream", 3) + b"abc")
    [request] = _early
    _halfClosed(channel, clock)
    assert not transport.disconnecting
    request.write(b"done")
    request.finish()
    clock.advance(0)
    assert transport.disconnecting
    assert transport.value().endswith(b"done\r\n0\r\n\r\n")


def test_halfCloseEndsTheLinger() -> None:
    """
    A response that ended before its body: the rest of the body will not
    come, so the connection is closed at once rather than after L{LINGER}.
    """
    for before in (True, False):
        channel, transport, clock = _streaming(timeout=1000)
        head = _post(b"/stream/refuse", 100) + b"x" * 10
        if before:
            channel.dataReceived(head)
            _halfClosed(channel, clock)
        else:
            # The end of input noticed between the head and its answer.
            channel.readConnectionLost()
            channel.dataReceived(head)
            clock.advance(0)
        assert _statuses(transport.value()) == [404]
        assert transport.disconnecting
        _connected.remove(channel)
        channel.connectionLost(Failure(ConnectionDone()))
        assert clock.getDelayedCalls() == []


def test_halfCloseToldAgain() -> None:
    """
    A transport resumed after the end of input reads the end again: told
    again, the channel changes nothing (no new look at whether to close).
    """
    resource = _Slow(10)
    channel, transport, clock = _timed(resource)
    _halfClosed(channel, clock, _get(b"/slow"))
    timers = list(clock.getDelayedCalls())
    channel.readConnectionLost()
    assert clock.getDelayedCalls() == timers
    clock.advance(0)
    assert not transport.disconnecting


def test_lostBeforeTheLookAtClosing() -> None:
    """
    A connection lost before the look at whether to close (due in the
    reactor's next turn) leaves no timer behind.
    """
    channel, _, clock = _timed(_Slow(10))
    channel.setTimeout(None)
    channel.readConnectionLost()
    assert len(clock.getDelayedCalls()) == 1
    _connected.remove(channel)
    channel.connectionLost(Failure(ConnectionDone()))
    assert clock.getDelayedCalls() == []


def test_halfCloseAfterRefusal() -> None:
    """
    A refused request's connection is closing already: the end of input
    changes nothing.
    """
    channel, transport, clock = _timed(_Echo(10))
    channel.dataReceived(b"GET / HTTP/1.1\r\n\r\n")
    assert _statuses(transport.value()) == [400]
    _halfClosed(channel, clock)
    assert _statuses(transport.value()) == [400]


def test_writeSideLostCloses() -> None:
    """
    This side's output closed (never asked for): nothing can be answered,
    the connection is closed.
    """
    channel, transport, _ = _timed(_Echo(10))
    channel.writeConnectionLost()
    assert transport.disconnecting
