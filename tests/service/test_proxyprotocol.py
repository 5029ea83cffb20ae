"""
Tests for L{twisted_cgiserve._service.proxyprotocol}: the PROXY header a
load balancer sends first, v1 and v2, and the connection wrapped around it.
"""

from __future__ import annotations

import ipaddress
import struct
from typing import Any

from zope.interface import implementer

import pytest
from twisted.internet.address import IPv4Address, IPv6Address
from twisted.internet.defer import Deferred, succeed
from twisted.internet.interfaces import (
    IHalfCloseableProtocol,
    IListeningPort,
    IProtocolFactory,
    IStreamServerEndpoint,
)
from twisted.internet.protocol import Factory, Protocol
from twisted.internet.testing import MemoryReactorClock, StringTransport
from twisted.python.failure import Failure
from twisted.web.resource import Resource
from twisted.web.server import Site

from twisted_cgiserve._service.proxyprotocol import (
    ProxyHeaderEndpoint,
    ProxyHeaderError,
    ProxyHeaderFactory,
    parseProxyHeader,
)

PEER = IPv4Address("TCP", "127.0.0.1", 40000)
HOST = IPv4Address("TCP", "127.0.0.1", 8000)
V2 = b"\r\n\r\n\x00\r\nQUIT\n"


def _v2(command: int, family: int, body: bytes) -> bytes:
    return V2 + struct.pack("!BBH", 0x20 | command, family, len(body)) + body


def _v2tcp6(source: str, sport: int) -> bytes:
    return _v2(
        1,
        0x21,
        ipaddress.IPv6Address(source).packed
        + ipaddress.IPv6Address("2001:db8::1").packed
        + struct.pack("!HH", sport, 443),
    )


V1 = b"PROXY TCP4 198.51.100.7 192.0.2.1 4711 80\r\n"
V2TCP4 = _v2(
    1,
    0x11,
    ipaddress.IPv4Address("198.51.100.7").packed
    + ipaddress.IPv4Address("192.0.2.1").packed
    + struct.pack("!HH", 4711, 80)
    + b"\x04\x00\x01x",  # a TLV, skipped
)


# parseProxyHeader


@pytest.mark.parametrize("header", [V1, V2TCP4])
def test_tcp4(header: bytes) -> None:
    """
    v1 and v2 say the same thing the same way: the client, the address it
    connected to, and how long the header was.
    """
    assert parseProxyHeader(header + b"GET") == (
        IPv4Address("TCP", "198.51.100.7", 4711),
        IPv4Address("TCP", "192.0.2.1", 80),
        len(header),
    )


def test_tcp6() -> None:
    """
    IPv6 in both versions; an IPv4-mapped source, in either, is the IPv4
    client it is.
    """
    v1 = b"PROXY TCP6 2001:db8::7 2001:db8::1 4711 443\r\n"
    assert parseProxyHeader(v1) == (
        IPv6Address("TCP", "2001:db8::7", 4711),
        IPv6Address("TCP", "2001:db8::1", 443),
        len(v1),
    )
    v2 = _v2tcp6("2001:db8::7", 4711)
    assert parseProxyHeader(v2) == (
        IPv6Address("TCP", "2001:db8::7", 4711),
        IPv6Address("TCP", "2001:db8::1", 443),
        len(v2),
    )
    client = IPv4Address("TCP", "198.51.100.7", 1)
    source = parseProxyHeader(_v2tcp6("::ffff:198.51.100.7", 1))
    assert source is not None and source[0] == client
    v1 = b"PROXY TCP6 ::ffff:198.51.100.7 2001:db8::1 1 443\r\n"
    source = parseProxyHeader(v1)
    assert source is not None and source[0] == client


@pytest.mark.parametrize(
    "header",
    [
        b"PROXY UNKNOWN\r\n",
        b"PROXY UNKNOWN ffff::1 ffff::2 1 2\r\n",
        _v2(0, 0x11, b"\x00" * 12),  # LOCAL: a health check
        _v2(1, 0x00, b""),  # UNSPEC
        _v2(1, 0x31, b"\x00" * 216),  # UNIX
        _v2(1, 0x12, b"\x00" * 12),  # UDP
    ],
)
def test_connectionsOwnAddresses(header: bytes) -> None:
    """
    C{UNKNOWN}, C{LOCAL} and families other than TCP keep the
    connection's own addresses.
    """
    assert parseProxyHeader(header + b"x") == (None, None, len(header))


@pytest.mark.parametrize(
    "data",
    [b"", b"P", b"PROXY", b"PROXY TCP4 1.2.3.4", V2[:5], V2, V2TCP4[:20]],
)
def test_incomplete(data: bytes) -> None:
    """
    The beginning of a header, however short, waits for more.
    """
    assert parseProxyHeader(data) is None


@pytest.mark.parametrize(
    "data",
    [
        b"GET / HTTP/1.1\r\n",
        b"\x16\x03\x01",  # a TLS ClientHello
        b"PROXY TCP4 198.51.100.7 192.0.2.1 4711\r\n",
        b"PROXY TCP4 2001:db8::7 192.0.2.1 4711 80\r\n",
        b"PROXY TCP4 198.51.100.7 192.0.2.1 4711 65536\r\n",
        b"PROXY TCP4 198.51.100.7 192.0.2.1 -1 80\r\n",
        b"PROXY TCP4 host 192.0.2.1 1 80\r\n",
        b"PROXY TCP5 198.51.100.7 192.0.2.1 4711 80\r\n",
        b"PROXY TCP4 \xff 192.0.2.1 1 80\r\n",
        b"PROXY " + b"1" * 101,
        V2 + b"\x31\x11\x00\x0c",  # version 3
        V2 + b"\x22\x11\x00\x0c",  # command 2
        _v2(1, 0x11, b"\x00" * 8),  # too short for TCP4
        _v2(1, 0x21, b"\x00" * 12),  # too short for TCP6
        V2 + b"\x21\x11\x10\x01",  # 4097 bytes announced
    ],
)
def test_notAHeader(data: bytes) -> None:
    """
    Anything else is refused as soon as it is known not to be a header.
    """
    with pytest.raises(ProxyHeaderError):
        parseProxyHeader(data)


# The wrapped connection


class _Recorder(Protocol):
    def __init__(self) -> None:
        self.received: list[bytes] = []
        self.made = False
        self.lost = False
        self.peer: object = None
        self.host: object = None

    def connectionMade(self) -> None:
        self.made = True
        self.peer = self.transport.getPeer()  # type: ignore[union-attr]
        self.host = self.transport.getHost()  # type: ignore[union-attr]

    def dataReceived(self, data: bytes) -> None:
        self.received.append(data)

    def connectionLost(self, reason: Failure | None = None) -> None:
        self.lost = True


class _Transport(StringTransport):
    aborted = False

    def abortConnection(self) -> None:
        self.aborted = True
        super().abortConnection()


def _connect(timeout: float = 20.0) -> tuple[Any, _Recorder, _Transport, Any]:
    clock = MemoryReactorClock()
    recorder = _Recorder()
    factory = ProxyHeaderFactory(Factory.forProtocol(lambda: recorder), timeout, clock)
    factory.doStart()
    protocol: Any = factory.buildProtocol(PEER)
    transport = _Transport(hostAddress=HOST, peerAddress=PEER)
    protocol.makeConnection(transport)
    return protocol, recorder, transport, clock


def test_headerThenConnection() -> None:
    """
    The wrapped protocol is connected once the header is complete (sent a
    byte at a time), sees its addresses, and gets the bytes after it.
    """
    protocol, recorder, transport, clock = _connect()
    for byte in V1[:-1]:
        protocol.dataReceived(bytes([byte]))
    assert recorder.received == []
    protocol.dataReceived(V1[-1:] + b"GET / HTTP/1.1\r\n")
    assert (recorder.peer, recorder.host) == (
        IPv4Address("TCP", "198.51.100.7", 4711),
        IPv4Address("TCP", "192.0.2.1", 80),
    )
    assert recorder.received == [b"GET / HTTP/1.1\r\n"]
    protocol.dataReceived(b"Host: a\r\n")
    assert recorder.received[-1] == b"Host: a\r\n"
    # The deadline no longer runs.
    clock.advance(3600)
    assert not transport.aborted
    protocol.connectionLost(Failure(Exception("gone")))
    assert recorder.lost
    assert protocol.factory.protocols == {}


@implementer(IHalfCloseableProtocol)
class _HalfCloser(_Recorder):
    def __init__(self) -> None:
        super().__init__()
        self.ends: list[str] = []

    def readConnectionLost(self) -> None:
        self.ends.append("read")

    def writeConnectionLost(self) -> None:
        self.ends.append("write")


def test_halfCloseReachesWrappedProtocol() -> None:
    """
    After the header, a client's half-close reaches a wrapped protocol
    that takes half-closes (the HTTP connection answers what it was
    sent), and the connection stays open.
    """
    protocol, _, transport, _ = _connect()
    halfCloser = _HalfCloser()
    protocol.wrappedProtocol = halfCloser
    assert IHalfCloseableProtocol.providedBy(protocol)
    protocol.dataReceived(V1)
    protocol.readConnectionLost()
    protocol.writeConnectionLost()
    assert halfCloser.ends == ["read", "write"]
    assert not transport.aborted


def test_halfCloseWithoutHalfClosingProtocol() -> None:
    """
    A wrapped protocol that does not take half-closes (TLS) loses the
    connection, as the reactor would make it; so does a half-close before
    the header is whole, which could never be used.
    """
    protocol, recorder, transport, _ = _connect()
    protocol.dataReceived(V1)
    protocol.readConnectionLost()
    assert transport.aborted
    protocol, recorder, transport, clock = _connect()
    protocol.dataReceived(V1[:5])
    protocol.readConnectionLost()
    assert transport.aborted and not recorder.made
    assert clock.getDelayedCalls() == []


def test_nothingAfterRefusedHeader() -> None:
    """
    Bytes arriving after a refused header reach nobody.
    """
    protocol, recorder, transport, _ = _connect()
    protocol.dataReceived(b"GET / HTTP/1.1\r\n")
    protocol.dataReceived(b"Host: a\r\n")
    assert transport.aborted
    assert recorder.received == [] and not recorder.made


def test_localKeepsAddresses() -> None:
    """
    A health check's C{LOCAL} header leaves the connection's addresses.
    """
    protocol, recorder, _, _ = _connect()
    protocol.dataReceived(_v2(0, 0x00, b""))
    assert recorder.made
    assert (recorder.peer, recorder.host) == (PEER, HOST)
    assert recorder.received == []


def test_garbageClosed() -> None:
    """
    A connection that does not begin with a header is closed at once, and
    the wrapped protocol never hears of it.
    """
    protocol, recorder, transport, clock = _connect()
    protocol.dataReceived(b"GET / HTTP/1.1\r\n\r\n")
    assert transport.aborted
    protocol.connectionLost(Failure(Exception("aborted")))
    assert not recorder.made and not recorder.lost
    assert clock.getDelayedCalls() == []
    assert protocol.factory.protocols == {}


@pytest.mark.parametrize("sent", [b"", b"PROXY TCP4 198.51.100.7"])
def test_deadline(sent: bytes) -> None:
    """
    A peer that sends nothing, or half a header, is cut when the header
    deadline passes.
    """
    protocol, recorder, transport, clock = _connect(timeout=5)
    protocol.dataReceived(sent)
    clock.advance(4.9)
    assert transport.disconnecting is False
    clock.advance(0.2)
    assert transport.aborted
    assert not recorder.made


def test_noDeadline() -> None:
    """
    A timeout of 0 sets no deadline (C{--header-timeout 0}: no limit).
    """
    _, _, _transport, clock = _connect(timeout=0)
    assert clock.getDelayedCalls() == []


def test_closedByDataAfterHeader() -> None:
    """
    Bytes after the header are not delivered if the wrapped protocol
    closed the connection as it was made.
    """

    class _Refusing(_Recorder):
        def connectionMade(self) -> None:
            super().connectionMade()
            self.transport.loseConnection()  # type: ignore[union-attr]

    clock = MemoryReactorClock()
    refusing = _Refusing()
    factory = ProxyHeaderFactory(Factory.forProtocol(lambda: refusing), 5, clock)
    protocol: Any = factory.buildProtocol(PEER)
    protocol.makeConnection(_Transport(peerAddress=PEER))
    protocol.dataReceived(V1 + b"GET")
    assert refusing.made and refusing.received == []


def test_logPrefix() -> None:
    """
    The log names the PROXY wrapping.
    """
    factory = ProxyHeaderFactory(Factory.forProtocol(Protocol), 5, MemoryReactorClock())
    assert factory.logPrefix() == "Factory (PROXY)"
    site = Site(Resource())
    factory = ProxyHeaderFactory(site, 5, MemoryReactorClock())
    assert factory.logPrefix() == "Site (PROXY)"


@implementer(IStreamServerEndpoint)
class _Endpoint:
    def __init__(self) -> None:
        self.factories: list[IProtocolFactory] = []

    def listen(self, factory: IProtocolFactory) -> Deferred[IListeningPort]:
        self.factories.append(factory)
        return succeed(None)  # type: ignore[arg-type]


def test_endpoint() -> None:
    """
    L{ProxyHeaderEndpoint} listens with its factory wrapped, with its
    deadline and clock.
    """
    wrapped = _Endpoint()
    clock = MemoryReactorClock()
    site = Factory.forProtocol(Protocol)
    ProxyHeaderEndpoint(wrapped, 7, clock).listen(site)
    [factory] = wrapped.factories
    assert isinstance(factory, ProxyHeaderFactory)
    assert (factory.wrappedFactory, factory.timeout, factory.clock) == (site, 7, clock)
