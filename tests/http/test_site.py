"""
Tests for L{twisted_cgiserve._http.site}: how a draining server closes its
connections (RFC 9112 section 9.3.1 for HTTP/1.x, a GOAWAY notice for
HTTP/2) and which requests it counts as in flight, over real connections of
a real L{CGIServeSite} in simulated time.
"""

from __future__ import annotations

import re
from collections.abc import Iterator
from io import BytesIO
from typing import Any

import h2.config
import h2.connection
import h2.errors
import pytest
from hyperframe.frame import DataFrame, Frame, GoAwayFrame, HeadersFrame
from twisted.internet.address import IPv4Address
from twisted.internet.error import ConnectionDone
from twisted.internet.testing import MemoryReactorClock
from twisted.logger import capturedLogs, formatEvent
from twisted.python.failure import Failure
from twisted.web.resource import Resource
from twisted.web.server import NOT_DONE_YET, Request

from tests.support.fakes import SocketTransport
from twisted_cgiserve._http import channel, site
from twisted_cgiserve._http.clock import SecondClock
from twisted_cgiserve._http.connection import HTTPConnection
from twisted_cgiserve._http.forwarded import TrustedProxies
from twisted_cgiserve._http.h2 import CGIServeH2Connection
from twisted_cgiserve._http.request import trustingRequests
from twisted_cgiserve._http.site import CGIServeSite
from twisted_cgiserve._http.spool import IN_MEMORY, BodySpool

CLIENT = IPv4Address("TCP", "192.0.2.5", 33333)
MAX_STREAM = 2**31 - 1


class _H2Transport(SocketTransport):
    """
    A TLS transport that negotiated C{h2}.
    """

    negotiatedProtocol = b"h2"


class _Pages(Resource):
    """
    C{/hold}: left open for the test; C{/started}: the head and part of
    the body sent, then left open; anything else: C{ok}.
    """

    isLeaf = True

    def __init__(self) -> None:
        super().__init__()
        self.held: list[Request] = []

    def render(self, request: Request) -> bytes | int:  # type: ignore[override]
        if request.path == b"/hold":
            self.held.append(request)
            return NOT_DONE_YET
        if request.path == b"/started":
            request.write(b"part")
            self.held.append(request)
            return NOT_DONE_YET
        return b"ok"


class _Server:
    def __init__(self, **kw: Any) -> None:
        self.clock = MemoryReactorClock()
        self.pages = _Pages()
        self.site = CGIServeSite(self.pages, reactor=self.clock, **kw)
        self.connections: list[tuple[Any, SocketTransport]] = []

    def connect(
        self, transport: SocketTransport | None = None
    ) -> tuple[Any, SocketTransport]:
        connection: Any = self.site.buildProtocol(CLIENT)
        transport = transport or SocketTransport(CLIENT)
        connection.makeConnection(transport)
        self.connections.append((connection, transport))
        return connection, transport

    def settled(self) -> bool:
        return self.site.settled()


_servers: list[_Server] = []


@pytest.fixture(autouse=True)
def _disconnect() -> Iterator[None]:
    yield
    while _servers:
        for connection, _ in _servers.pop().connections:
            if connection._channel.transport is not None:
                connection.connectionLost(Failure(ConnectionDone()))


def _server(**kw: Any) -> _Server:
    server = _Server(**kw)
    _servers.append(server)
    return server


def _get(path: bytes = b"/", host: bytes = b"example.com") -> bytes:
    return b"GET %s HTTP/1.1\r\nHost: %s\r\n\r\n" % (path, host)


def _closesAfter(response: bytes) -> bool:
    head = response.split(b"\r\n\r\n", 1)[0].lower()
    return b"\r\nconnection: close" in head


# HTTP/1.x


def test_connectionRegisteredWhileOpen() -> None:
    """
    The site knows each connection from its start to its end.
    """
    server = _server()
    connection, _ = server.connect()
    assert server.site.channels == {connection}
    assert server.site.connectionsOpen() == 1
    connection.connectionLost(Failure(ConnectionDone()))
    assert server.site.channels == set()
    assert server.site.connectionsOpen() == 0


def test_idleConnectionClosedWhenDraining() -> None:
    """
    A connection between requests is closed as soon as the server drains
    (gently: what was written is still sent).
    """
    server = _server()
    connection, transport = server.connect()
    connection.dataReceived(_get())
    assert b"200 OK" in transport.value()
    assert not transport.disconnecting
    server.site.startDraining()
    assert transport.disconnecting and not transport.disconnected
    assert connection.closing
    assert server.settled()


def test_requestInProgressIsTheConnectionsLast() -> None:
    """
    A connection with a request in progress is left to answer it; the
    response says C{Connection: close} and the connection closes after it.
    """
    server = _server()
    connection, transport = server.connect()
    connection.dataReceived(_get(b"/hold"))
    server.site.startDraining()
    assert not transport.disconnecting
    assert not server.settled()
    server.pages.held[0].finish()
    response = transport.value()
    assert b"200 OK" in response
    assert _closesAfter(response)
    assert transport.disconnecting


def test_startedResponseIsTheConnectionsLast() -> None:
    """
    A response whose head is already sent cannot say C{Connection: close},
    but the connection still closes once it is complete.
    """
    server = _server()
    connection, transport = server.connect()
    connection.dataReceived(_get(b"/started"))
    head = transport.value()
    server.site.startDraining()
    assert not transport.disconnecting
    server.pages.held[0].finish()
    assert transport.value().startswith(head)
    assert not _closesAfter(transport.value())
    assert transport.disconnecting


def test_requestArrivingIsAnswered() -> None:
    """
    A connection whose request's head is still arriving when the server
    drains gets its response (with C{Connection: close}), then is closed.
    """
    server = _server()
    connection, transport = server.connect()
    connection.dataReceived(b"GET / HTTP/1.1\r\n")
    server.site.startDraining()
    assert not transport.disconnecting
    connection.dataReceived(b"Host: example.com\r\n\r\n")
    response = transport.value()
    assert b"200 OK" in response
    assert _closesAfter(response)
    assert transport.disconnecting


def test_newRequestWhileDrainingGetsConnectionClose() -> None:
    """
    A request that arrives on a new connection while the server drains is
    answered as the connection's last.
    """
    server = _server()
    server.site.startDraining()
    connection, transport = server.connect()
    connection.dataReceived(_get())
    assert _closesAfter(transport.value())
    assert transport.disconnecting


def test_silentConnectionGetsPatience() -> None:
    """
    A connection that has sent nothing yet (its request is most likely on
    its way) is left open for a second after it was accepted, then closed.
    """
    server = _server()
    _, transport = server.connect()
    server.clock.advance(0.2)
    server.site.startDraining()
    assert not transport.disconnecting
    assert not server.settled()
    server.clock.advance(0.79)
    server.site.closeIdleConnections()
    assert not transport.disconnecting
    server.clock.advance(0.01)
    server.site.closeIdleConnections()
    assert transport.disconnecting
    assert server.settled()


def test_silentConnectionPatienceBoundedByHeaderTimeout() -> None:
    """
    The patience is no longer than the header timeout.
    """
    server = _server(headerTimeout=0.25)
    _, transport = server.connect()
    server.site.startDraining()
    server.clock.advance(0.24)
    server.site.closeIdleConnections()
    assert not transport.disconnecting
    server.clock.advance(0.01)
    server.site.closeIdleConnections()
    assert transport.disconnecting


def test_oldSilentConnectionClosedAtOnce() -> None:
    """
    A connection that has been silent for longer than the patience is idle.
    """
    server = _server()
    _, transport = server.connect()
    server.clock.advance(5)
    server.site.startDraining()
    assert transport.disconnecting


def test_closeConnections() -> None:
    """
    C{closeConnections} closes every HTTP/1.x connection gently; each
    counts as open until it has finished closing.
    """
    server = _server()
    first, firstTransport = server.connect()
    second, secondTransport = server.connect()
    second.dataReceived(_get(b"/hold"))
    server.site.closeConnections()
    assert firstTransport.disconnecting and not firstTransport.disconnected
    assert secondTransport.disconnecting
    assert server.site.connectionsOpen() == 2
    server.site.closeConnections()
    first.connectionLost(Failure(ConnectionDone()))
    assert server.site.connectionsOpen() == 1


# Requests in flight


def test_requestTrackedFromItsHead() -> None:
    """
    A request is in flight from the end of its head, while its body is
    still arriving (an upload may finish within the shutdown's grace), and
    not before.
    """
    server = _server()
    connection, _ = server.connect()
    connection.dataReceived(b"POST /hold HTTP/1.1\r\nHost: a\r\n")
    assert server.site.inFlight == set()
    connection.dataReceived(b"Content-Length: 10\r\n\r\n12345")
    assert len(server.site.inFlight) == 1
    assert not server.settled()


def test_requestUntrackedWhenFinished() -> None:
    """
    A request leaves the set in flight when its response is finished.
    """
    server = _server()
    connection, _ = server.connect()
    connection.dataReceived(_get(b"/hold"))
    assert len(server.site.inFlight) == 1
    server.pages.held[0].finish()
    assert server.site.inFlight == set()


def test_requestUntrackedWhenConnectionLost() -> None:
    """
    An upload whose client goes away leaves the set in flight.
    """
    server = _server()
    connection, _ = server.connect()
    connection.dataReceived(
        b"POST / HTTP/1.1\r\nHost: a\r\nContent-Length: 10\r\n\r\n12"
    )
    assert len(server.site.inFlight) == 1
    connection.connectionLost(Failure(ConnectionDone()))
    assert server.site.inFlight == set()


# HTTP/2


def _frames(data: bytes) -> list[Frame]:
    frames = []
    view = memoryview(data)
    while view:
        frame, length = Frame.parse_frame_header(view[:9])
        frame.parse_body(view[9 : 9 + length])
        frames.append(frame)
        view = view[9 + length :]
    return frames


class _H2:
    """
    An C{h2} client on a new connection to C{server}.
    """

    def __init__(self, server: _Server) -> None:
        self.server = server
        self.connection, self.transport = server.connect(_H2Transport())
        self.h2 = h2.connection.H2Connection(
            h2.config.H2Configuration(client_side=True)
        )
        self.h2.initiate_connection()
        self.send()
        self.nextStream = 1

    @property
    def channel(self) -> CGIServeH2Connection:
        channel = self.connection._channel
        assert isinstance(channel, CGIServeH2Connection)
        return channel

    def send(self) -> None:
        self.connection.dataReceived(self.h2.data_to_send())

    def read(self) -> list[Frame]:
        data = self.transport.value()
        self.transport.clear()
        return _frames(data)

    def request(self, path: str, method: str = "GET", end: bool = True) -> int:
        stream = self.nextStream
        self.nextStream += 2
        self.h2.send_headers(
            stream,
            [
                (":method", method),
                (":path", path),
                (":scheme", "https"),
                (":authority", "localhost"),
            ],
            end_stream=end,
        )
        self.send()
        self.server.clock.advance(0)
        return stream


def _goaways(frames: list[Frame]) -> list[tuple[int, int]]:
    return [
        (f.last_stream_id, f.error_code) for f in frames if isinstance(f, GoAwayFrame)
    ]


def _ended(frames: list[Frame], stream: int) -> bool:
    return any(
        isinstance(f, DataFrame | HeadersFrame)
        and f.stream_id == stream
        and "END_STREAM" in f.flags
        for f in frames
    )


NO_ERROR = h2.errors.ErrorCodes.NO_ERROR


def test_http2IdleConnectionNoticeFirst() -> None:
    """
    An idle HTTP/2 connection is first told it is going away (GOAWAY with
    the highest stream id), and closed with the final GOAWAY, naming its
    last stream, half a second later: time for the streams the client had
    already begun to arrive.
    """
    server = _server()
    client = _H2(server)
    stream = client.request("/")
    client.read()
    server.site.startDraining()
    assert _goaways(client.read()) == [(MAX_STREAM, NO_ERROR)]
    assert not client.transport.disconnecting
    assert not server.settled()
    server.clock.advance(0.49)
    server.site.closeIdleConnections()
    assert client.read() == []
    assert not client.transport.disconnecting
    server.clock.advance(0.01)
    server.site.closeIdleConnections()
    assert _goaways(client.read()) == [(stream, NO_ERROR)]
    assert client.transport.disconnecting
    assert server.settled()


def test_http2StreamOpenedAfterNoticeIsAnswered() -> None:
    """
    A stream the client opens after the notice (it was on its way) is
    answered, and the connection waits for it.
    """
    server = _server()
    client = _H2(server)
    client.request("/")
    server.site.startDraining()
    client.read()
    late = client.request("/hold")
    server.clock.advance(1)
    server.site.closeIdleConnections()
    assert not client.transport.disconnecting
    server.pages.held[0].finish()
    server.clock.advance(0)
    assert _ended(client.read(), late)
    server.site.closeIdleConnections()
    assert _goaways(client.read()) == [(late, NO_ERROR)]
    assert client.transport.disconnecting


def test_http2ConnectionWithOpenStreamWaits() -> None:
    """
    A connection with a stream open is told, and closed only once the
    stream is done.
    """
    server = _server()
    client = _H2(server)
    stream = client.request("/hold")
    client.read()
    server.site.startDraining()
    assert _goaways(client.read()) == [(MAX_STREAM, NO_ERROR)]
    server.clock.advance(5)
    server.site.closeIdleConnections()
    server.site.closeConnections()
    assert not client.transport.disconnecting
    assert not server.settled()
    server.pages.held[0].finish()
    server.clock.advance(0)
    server.site.closeIdleConnections()
    frames = client.read()
    assert _ended(frames, stream)
    assert _goaways(frames) == [(stream, NO_ERROR)]
    assert client.transport.disconnecting


def test_http2SilentConnectionGetsPatience() -> None:
    """
    An HTTP/2 connection that has opened no stream yet gets the same
    patience as an HTTP/1.x one, then the notice, then the close.
    """
    server = _server()
    client = _H2(server)
    client.read()
    server.site.startDraining()
    assert client.read() == []
    server.clock.advance(1)
    server.site.closeIdleConnections()
    assert _goaways(client.read()) == [(MAX_STREAM, NO_ERROR)]
    server.clock.advance(0.5)
    server.site.closeIdleConnections()
    assert _goaways(client.read()) == [(0, NO_ERROR)]
    assert client.transport.disconnecting


def test_http2UploadTrackedUntilReset() -> None:
    """
    An HTTP/2 request is in flight from its headers, while its body
    arrives, until the client resets it.
    """
    server = _server()
    client = _H2(server)
    stream = client.request("/", method="POST", end=False)
    assert len(server.site.inFlight) == 1
    client.h2.reset_stream(stream)
    client.send()
    assert server.site.inFlight == set()


def test_http2EndedConnectionClosesWithoutAbort() -> None:
    """
    An HTTP/2 connection that ended itself (the client's GOAWAY) is closed,
    and not aborted when it is gone before the two seconds it gets.
    """
    server = _server()
    client = _H2(server)
    client.h2.close_connection()
    client.send()
    assert client.transport.disconnecting
    client.connection.connectionLost(Failure(ConnectionDone()))
    server.clock.advance(5)
    assert not client.transport.disconnected


# The header deadline, the body store and the access log


@pytest.fixture
def now(monkeypatch: pytest.MonkeyPatch) -> list[float]:
    """
    The monotonic clock of the header deadline, moved by the test.
    """
    now = [1000.0]
    monkeypatch.setattr(site, "monotonic", lambda: now[0])
    monkeypatch.setattr(channel, "monotonic", lambda: now[0])
    return now


def _sweeping() -> _Server:
    """
    A server whose header deadline is 2 s, its sweep started.
    """
    server = _server(headerTimeout=2)
    server.site.startFactory()
    return server


def test_headerSweepRefusesOverdueHeads(now: list[float]) -> None:
    """
    Once started, the site sweeps its connections a few times per header
    timeout (at most once a second) on its reactor, and refuses with 408 a
    request whose head is overdue; a connection between requests is left
    alone.
    """
    server = _sweeping()
    slow, slowTransport = server.connect()
    _, idleTransport = server.connect()
    slow.dataReceived(b"GET / HTTP/1.1\r\n")
    now[0] += 2
    server.clock.advance(0.5)
    assert slowTransport.value() == b""
    now[0] += 0.01
    server.clock.advance(0.5)
    assert slowTransport.value().startswith(b"HTTP/1.1 408 ")
    assert idleTransport.value() == b""
    timers = len(server.clock.getDelayedCalls())
    server.site.stopFactory()
    assert len(server.clock.getDelayedCalls()) == timers - 1


def test_noHeaderSweepWithoutTimeout() -> None:
    """
    A header timeout of 0 means no deadline, and no sweep; the site starts
    no other timer (Twisted's own access log, and its clock, are not
    used).
    """
    server = _server(headerTimeout=0)
    server.site.startFactory()
    assert server.clock.getDelayedCalls() == []
    server.site.stopFactory()


def test_sweepPeriodAtMostOneSecond() -> None:
    """
    The sweep runs every quarter of the header timeout, at most once a
    second.
    """
    for timeout, period in ((20.0, 1.0), (2.0, 0.5)):
        server = _server(headerTimeout=timeout)
        server.site.startFactory()
        [call] = server.clock.getDelayedCalls()
        assert call.getTime() == period
        server.site.startFactory()
        assert len(server.clock.getDelayedCalls()) == 1
        server.site.stopFactory()


def test_smallBodiesInMemory() -> None:
    """
    A body announced small enough is kept in memory; a larger one, or one
    whose length is not announced, in a L{BodySpool}.
    """
    server = _server()
    assert isinstance(server.site.getContentFile(IN_MEMORY), BytesIO)
    for length in (IN_MEMORY + 1, None):
        body = server.site.getContentFile(length)
        assert isinstance(body, BodySpool)
        body.close()


def test_accessLogOnTheSitesClock(monkeypatch: pytest.MonkeyPatch) -> None:
    """
    Without an access log of its own, the site logs each request to
    twistd's log, timed by its clock (simulated here), with the request
    line as the client sent it; stopping the site flushes the log.
    """
    server = _server()
    server.clock.advance(1_780_000_000)
    connection, _ = server.connect()
    with capturedLogs() as events:
        connection.dataReceived(_get(b"/x?y"))
    lines = [formatEvent(e) for e in events if e["log_namespace"] == "cgiserve.access"]
    stamp = SecondClock(server.clock.seconds).logTimestamp()
    assert lines == [f'192.0.2.5 - - {stamp} "GET /x?y HTTP/1.1" 200 2 "-" "-"']
    flushed: list[bool] = []
    monkeypatch.setattr(server.site.accessLog, "flush", lambda: flushed.append(True))
    server.site.startFactory()
    server.site.stopFactory()
    assert flushed == [True]


def test_buildsOurConnections() -> None:
    """
    Every connection the site builds is an L{HTTPConnection} of this site.
    """
    server = _server()
    connection = server.site.buildProtocol(CLIENT)
    assert isinstance(connection, HTTPConnection)
    assert connection.site is server.site


# Requests the connection refuses itself


def _refusalLines(server: _Server, data: bytes) -> tuple[list[str], bytes]:
    """
    What the access log says, and what the client gets, for C{data} sent on
    a new connection (with the site's header sweep run once overdue).
    """
    connection, transport = server.connect()
    with capturedLogs() as events:
        connection.dataReceived(data)
    lines = [formatEvent(e) for e in events if e["log_namespace"] == "cgiserve.access"]
    return lines, transport.value()


def _fields(line: str) -> tuple[str, str, str, str]:
    """
    The client, the request line, the status and the length of an access
    log line.
    """
    match = re.fullmatch(r'(\S+) - - \[[^]]+\] "(.*)" (\d+) (\S+) "-" "-"', line)
    assert match is not None, line
    client, request, status, length = match.groups()
    return client, request, status, length


@pytest.mark.parametrize(
    ("data", "line", "status"),
    [
        # Before the request line is whole or parsed: "-", as Apache logs a
        # 408 without one.
        (b"GET /" + b"a" * 20000, "-", "414"),
        (b"NOT A REQUEST LINE AT ALL\r\n", "-", "400"),
        (b"GET / HTTP/1.1\r\nX: " + b"a" * 20000, "GET / HTTP/1.1", "431"),
        (b"GET /x HTTP/1.1\r\nBad Header\r\n\r\n", "GET /x HTTP/1.1", "400"),
        (b"GET /x HTTP/1.1\r\nHost: a b\r\n\r\n", "GET /x HTTP/1.1", "400"),
        (
            b"POST /up HTTP/1.1\r\nHost: a\r\nContent-Length: 11\r\n\r\n",
            "POST /up HTTP/1.1",
            "413",
        ),
    ],
)
def test_refusalsAreLogged(data: bytes, line: str, status: str) -> None:
    """
    A request the HTTP/1.x connection refuses itself is in the access log
    as any answered request is, with its request line once parsed and the
    length of the error page sent.
    """
    server = _server(maxBodySize=10)
    lines, sent = _refusalLines(server, data)
    assert sent.startswith(b"HTTP/1.1 %s " % (status.encode(),))
    body = sent.split(b"\r\n\r\n", 1)[1]
    [logged] = lines
    assert _fields(logged) == ("192.0.2.5", line, status, str(len(body)))


def test_headerTimeoutIsLogged(now: list[float]) -> None:
    """
    A request whose head was overdue is logged with its 408, its request
    line if it had arrived.
    """
    server = _sweeping()
    withLine, _ = server.connect()
    withoutLine, _ = server.connect()
    withLine.dataReceived(b"GET /slow HTTP/1.1\r\nHost: a\r\n")
    withoutLine.dataReceived(b"GET /slo")
    now[0] += 3
    with capturedLogs() as events:
        server.clock.advance(1)
    lines = [formatEvent(e) for e in events if e["log_namespace"] == "cgiserve.access"]
    assert sorted(_fields(line)[1:3] for line in lines) == [
        ("-", "408"),
        ("GET /slow HTTP/1.1", "408"),
    ]
    server.site.stopFactory()


def test_refusalAtTheHeadsEndSeesTheForwardedClient() -> None:
    """
    Behind a trusted proxy, a request refused at the end of its head (here
    for its body's size) is logged with the client the proxy names; one
    refused before its head was complete, with the proxy's own address.
    """
    server = _server(maxBodySize=10)
    server.site.requestFactory = trustingRequests(
        TrustedProxies.parse(["192.0.2.0/24"])
    )
    lines, _ = _refusalLines(
        server,
        b"POST / HTTP/1.1\r\nHost: a\r\nX-Forwarded-For: 198.51.100.9\r\n"
        b"Content-Length: 11\r\n\r\n",
    )
    assert _fields(lines[0])[:3] == ("198.51.100.9", "POST / HTTP/1.1", "413")
    lines, _ = _refusalLines(
        server, b"GET / HTTP/1.1\r\nX-Forwarded-For: 198.51.100.9\r\nBad\r\n\r\n"
    )
    assert _fields(lines[0])[:3] == ("192.0.2.5", "GET / HTTP/1.1", "400")
