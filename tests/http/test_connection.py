"""
Tests for L{twisted_cgiserve._http.connection}: one client connection of a
L{CGIServeSite}, set up as Twisted's factories would set up a protocol,
switched to this server's HTTP/2 when TLS negotiates C{h2}, and closed
gently, on in-memory transports in simulated time.
"""

from __future__ import annotations

from collections.abc import Iterator
from typing import Any

import h2.config
import h2.connection
import pytest
from twisted.internet.address import IPv4Address
from twisted.internet.error import ConnectionDone
from twisted.internet.interfaces import IHalfCloseableProtocol
from twisted.internet.testing import MemoryReactorClock
from twisted.python.failure import Failure
from twisted.web.resource import Resource
from twisted.web.server import NOT_DONE_YET, Request

from tests.support.fakes import SocketTransport
from twisted_cgiserve._http.channel import CGIServeChannel
from twisted_cgiserve._http.connection import HTTPConnection
from twisted_cgiserve._http.h2 import CGIServeH2Connection
from twisted_cgiserve._http.request import CGIServeRequest
from twisted_cgiserve._http.site import CGIServeSite
from twisted_cgiserve._version import SERVER_SOFTWARE

CLIENT = IPv4Address("TCP", "192.0.2.8", 44444)


class _TLSTransport(SocketTransport):
    """
    A TLS transport, as far as the connection can tell: it says which
    protocol ALPN negotiated.
    """

    def __init__(self, negotiated: bytes | None) -> None:
        super().__init__()
        self.negotiatedProtocol = negotiated


class _Pages(Resource):
    """
    C{/hold}: left open for the test; anything else: C{ok}.
    """

    isLeaf = True

    def __init__(self) -> None:
        super().__init__()
        self.held: list[Request] = []

    def render(self, request: Request) -> bytes | int:  # type: ignore[override]
        if request.path == b"/hold":
            self.held.append(request)
            return NOT_DONE_YET
        return b"ok"


_open: list[HTTPConnection] = []


@pytest.fixture(autouse=True)
def _disconnect() -> Iterator[None]:
    yield
    while _open:
        connection = _open.pop()
        if connection._channel.transport is not None:
            connection.connectionLost(Failure(ConnectionDone()))


def _connect(
    transport: SocketTransport | None = None, **kw: Any
) -> tuple[HTTPConnection, SocketTransport, CGIServeSite, MemoryReactorClock]:
    clock = MemoryReactorClock()
    site = CGIServeSite(_Pages(), reactor=clock, **kw)
    connection = site.buildProtocol(CLIENT)
    transport = transport or SocketTransport()
    connection.makeConnection(transport)
    _open.append(connection)
    return connection, transport, site, clock


def _h2Client() -> h2.connection.H2Connection:
    client = h2.connection.H2Connection(h2.config.H2Configuration(client_side=True))
    client.initiate_connection()
    return client


# HTTP/1.x


def test_channelSetUpAsTwistedWould() -> None:
    """
    The HTTP/1.x channel gets what Twisted's factories give a protocol:
    its factory and site, the site's request class and idle timeout, and
    the site's clock; and this server's name for the responses it writes
    itself.
    """
    connection, transport, site, clock = _connect(timeout=77)
    channel = connection._channel
    assert isinstance(channel, CGIServeChannel)
    assert connection.factory is site and connection.site is site
    assert channel.factory is site
    assert channel.site is site
    assert channel.requestFactory is CGIServeRequest
    assert channel.timeOut == 77
    assert channel.callLater == clock.callLater
    assert channel.serverSoftware == SERVER_SOFTWARE.encode("ascii")
    assert channel.transport is transport
    assert transport.producer is channel


def test_idleTimeoutInSimulatedTime() -> None:
    """
    The site's idle timeout closes a connection that sends nothing, timed
    by the site's reactor.
    """
    connection, transport, _, clock = _connect(timeout=5)
    connection.dataReceived(b"GET / HTTP/1.1\r\nHost: a\r\n\r\n")
    assert b"200 OK" in transport.value()
    clock.advance(4.9)
    assert not transport.disconnecting
    clock.advance(0.1)
    assert transport.disconnecting


def test_registeredWithTheSite() -> None:
    """
    The site knows the connection from its start to its end, and when it
    was accepted.
    """
    clock = MemoryReactorClock()
    clock.advance(12)
    site = CGIServeSite(_Pages(), reactor=clock)
    connection = site.buildProtocol(CLIENT)
    assert site.channels == set()
    connection.makeConnection(SocketTransport())
    assert site.channels == {connection}
    assert connection.openedAt == 12
    connection.connectionLost(Failure(ConnectionDone()))
    assert site.channels == set()


def test_plainConnectionStaysHTTP1() -> None:
    """
    A connection without TLS, or whose TLS negotiated C{http/1.1} or no
    protocol, speaks HTTP/1.x.
    """
    for transport in (
        SocketTransport(),
        _TLSTransport(b"http/1.1"),
        _TLSTransport(None),
    ):
        connection, _, _, _ = _connect(transport)
        connection.dataReceived(b"GET / HTTP/1.1\r\nHost: a\r\n\r\n")
        assert isinstance(connection._channel, CGIServeChannel)
        assert transport.value().startswith(b"HTTP/1.1 200 OK")


def test_closeIsGentleAndOnce() -> None:
    """
    C{close} closes the transport once what was written is sent; a second
    call does nothing; the connection then counts as closing.
    """
    connection, transport, _, _ = _connect()
    assert not connection.closing
    connection.close()
    assert connection.closing
    assert transport.disconnecting and not transport.disconnected
    connection.close()
    assert transport.disconnecting


def test_headerDeadline() -> None:
    """
    A request whose head began before the deadline and is still arriving
    is refused with 408; one that began after it is left alone.
    """
    connection, transport, _, _ = _connect()
    connection.dataReceived(b"GET / HTTP/1.1\r\n")
    channel = connection._channel
    assert isinstance(channel, CGIServeChannel)
    started = channel.headerStarted
    assert started is not None
    connection.checkHeaderDeadline(started)
    assert transport.value() == b""
    connection.checkHeaderDeadline(started + 0.001)
    assert transport.value().startswith(b"HTTP/1.1 408 ")
    assert transport.disconnecting


def test_noHeaderDeadlineBetweenRequests() -> None:
    """
    A connection between requests has no head arriving: no deadline.
    """
    connection, transport, _, _ = _connect()
    connection.checkHeaderDeadline(float("inf"))
    assert transport.value() == b""
    assert not connection.sending


# HTTP/2


def _h2(**kw: Any) -> tuple[HTTPConnection, SocketTransport, CGIServeSite, Any]:
    transport = _TLSTransport(b"h2")
    connection, transport, site, clock = _connect(transport, **kw)
    return connection, transport, site, clock


def test_switchToHTTP2() -> None:
    """
    When TLS negotiated C{h2}, the first bytes go to a
    L{CGIServeH2Connection} set up as the HTTP/1.x channel was, which is
    now the transport's producer; the HTTP/1.x channel's idle timer is
    cancelled.
    """
    connection, transport, site, clock = _h2(timeout=30)
    old = connection._channel
    assert isinstance(old, CGIServeChannel)
    client = _h2Client()
    connection.dataReceived(client.data_to_send())
    channel = connection._channel
    assert isinstance(channel, CGIServeH2Connection)
    assert channel.site is site
    assert channel.factory is site
    assert channel.requestFactory is CGIServeRequest
    assert channel.timeOut == 30
    assert channel.callLater == clock.callLater
    assert channel.transport is transport
    assert transport.producer is channel
    # Only the HTTP/2 connection's own idle timer is left (beside its send
    # loop, due now).
    timers = [call.getTime() for call in clock.getDelayedCalls() if call.getTime()]
    assert timers == [30]
    assert old.transport is transport
    # The server's preface (SETTINGS) was written.
    assert transport.value()


def test_http2Answers() -> None:
    """
    A request on the switched connection is answered over HTTP/2.
    """
    connection, transport, _, clock = _h2()
    client = _h2Client()
    client.send_headers(
        1,
        [(":method", "GET"), (":path", "/"), (":scheme", "https"), (":authority", "a")],
        end_stream=True,
    )
    connection.dataReceived(client.data_to_send())
    clock.advance(0)
    events = client.receive_data(transport.value())
    names = [type(e).__name__ for e in events]
    assert "ResponseReceived" in names
    assert "StreamEnded" in names
    assert not connection.sending


def test_http2SendingWhileStreamsOpen() -> None:
    """
    An HTTP/2 connection with a stream open is still sending.
    """
    connection, _, site, clock = _h2()
    client = _h2Client()
    client.send_headers(
        1,
        [
            (":method", "GET"),
            (":path", "/hold"),
            (":scheme", "https"),
            (":authority", "a"),
        ],
        end_stream=True,
    )
    connection.dataReceived(client.data_to_send())
    clock.advance(0)
    assert connection.sending
    held = site.resource.held  # type: ignore[attr-defined]
    held[0].finish()
    clock.advance(0)
    assert not connection.sending


def test_http2NoHeaderDeadline() -> None:
    """
    HTTP/2 has no header deadline.
    """
    connection, transport, _, _ = _h2()
    connection.dataReceived(_h2Client().data_to_send())
    written = transport.value()
    connection.checkHeaderDeadline(float("inf"))
    assert transport.value() == written
    assert not transport.disconnecting


def test_endedHTTP2ClosedThenAborted() -> None:
    """
    An HTTP/2 connection that ended itself (the client's GOAWAY) is closed
    at once; what the client still sends is ignored, and if it has not
    gone two seconds later, it is cut off.
    """
    connection, transport, _, clock = _h2()
    client = _h2Client()
    client.close_connection()
    connection.dataReceived(client.data_to_send())
    assert transport.disconnecting and not transport.disconnected
    assert connection.closing
    written = transport.value()
    connection.dataReceived(b"\x00" * 100)
    assert transport.value() == written
    clock.advance(1.99)
    assert not transport.disconnected
    clock.advance(0.01)
    assert transport.disconnected


def test_endedHTTP2GoneBeforeAbort() -> None:
    """
    An ended HTTP/2 connection lost before its two seconds is not aborted
    afterwards.
    """
    connection, transport, _, clock = _h2()
    client = _h2Client()
    client.close_connection()
    connection.dataReceived(client.data_to_send())
    connection.connectionLost(Failure(ConnectionDone()))
    assert [call for call in clock.getDelayedCalls() if call.getTime()] == []
    clock.advance(5)
    assert not transport.disconnected


def test_abortAfterTransportGone() -> None:
    """
    The cut-off finds nothing to cut when the HTTP/2 connection has
    already let go of its transport.
    """
    connection, transport, _, clock = _h2()
    client = _h2Client()
    client.close_connection()
    connection.dataReceived(client.data_to_send())
    connection._channel.transport = None
    clock.advance(2)
    assert not transport.disconnected


def test_closeHTTP2SaysGoAway() -> None:
    """
    Closing an HTTP/2 connection tells the client first (C{GOAWAY}).
    """
    connection, transport, _, _ = _h2()
    client = _h2Client()
    connection.dataReceived(client.data_to_send())
    client.receive_data(transport.value())
    transport.clear()
    connection.close()
    events = client.receive_data(transport.value())
    assert [type(e).__name__ for e in events] == ["ConnectionTerminated"]
    assert transport.disconnecting


# A client's half-close


def test_halfCloseGoesToTheChannel() -> None:
    """
    The transport's protocol is told of a client's half-close (it is an
    L{IHalfCloseableProtocol}): the HTTP/1.x channel answers the request in
    progress, then closes, without waiting for the idle timeout.
    """
    connection, transport, _, clock = _connect(timeout=60)
    assert IHalfCloseableProtocol.providedBy(connection)
    pages = connection.site.resource
    assert isinstance(pages, _Pages)
    connection.dataReceived(b"GET /hold HTTP/1.1\r\nHost: a\r\n\r\n")
    connection.readConnectionLost()
    clock.advance(0)
    assert not transport.disconnecting
    request = pages.held.pop()
    request.write(b"late")
    request.finish()
    clock.advance(0)
    assert transport.disconnecting
    assert transport.value().startswith(b"HTTP/1.1 200 OK")
    assert b"late" in transport.value()


def test_halfCloseOfHTTP2Closes() -> None:
    """
    An HTTP/2 connection (never told: TLS does not pass a half-close on) is
    closed, saying C{GOAWAY} first.
    """
    connection, transport, _, _ = _h2()
    connection.dataReceived(_h2Client().data_to_send())
    connection.readConnectionLost()
    assert transport.disconnecting


def test_writeSideLostCloses() -> None:
    """
    This side's output closed (never asked for): the connection is closed,
    HTTP/1.x or HTTP/2.
    """
    connection, transport, _, _ = _connect()
    connection.writeConnectionLost()
    assert transport.disconnecting
    connection, transport, _, _ = _h2()
    connection.dataReceived(_h2Client().data_to_send())
    connection.writeConnectionLost()
    assert transport.disconnecting
