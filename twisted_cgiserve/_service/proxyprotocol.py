# -*- test-case-name: tests.service.test_proxyprotocol -*-
"""
The PROXY protocol (haproxy's C{send-proxy} and C{send-proxy-v2}) on the
ports C{--proxy-protocol} applies to: every connection starts with a
header, text (v1) or binary (v2), in which the load balancer in front says
who connected to it; the client's address is then the connection's peer
for everything above (the CGI environment, the access log, C{--trusted-proxy}
and C{--cgi-debug}'s loopback check), and the balancer's own address is
forgotten.

Twisted's C{haproxy:} endpoint does the same for a description, and still
serves C{haproxy:tcp:8000}. This one is what bare-number and C{systemd:}
ports get, because it also:

 - bounds the wait for the header (the C{--header-timeout}): the HTTP
   connection, and its timers, only start once the header is complete, so
   without a deadline of its own a peer that sends nothing, or half a
   header, would hold its descriptor for as long as it liked;
 - reads a header that arrives in pieces, however small (Twisted's closes
   a connection whose first read is shorter than 16 bytes);
 - closes at once a connection whose first bytes cannot begin a header, as
   haproxy's own C{accept-proxy} does: on such a port, a client that
   connects directly is refused rather than trusted.

C{LOCAL} (v2, haproxy's health checks), C{UNKNOWN} (v1) and address
families other than TCP over IPv4 and IPv6 keep the connection's own
addresses, as the specification says.
"""

from __future__ import annotations

import ipaddress
import struct
from typing import Any, cast

from zope.interface import directlyProvides, implementer, providedBy

from twisted.internet import defer
from twisted.internet.address import IPv4Address, IPv6Address
from twisted.internet.interfaces import (
    IAddress,
    IDelayedCall,
    IHalfCloseableProtocol,
    IListeningPort,
    ILoggingContext,
    IProtocol,
    IProtocolFactory,
    IReactorTime,
    IStreamServerEndpoint,
)
from twisted.internet.protocol import Protocol, connectionDone
from twisted.protocols.policies import ProtocolWrapper, WrappingFactory
from twisted.python.failure import Failure

__all__ = [
    "ProxyHeaderEndpoint",
    "ProxyHeaderError",
    "ProxyHeaderFactory",
    "parseProxyHeader",
]

_V1 = b"PROXY "
# The longest v1 header the specification allows, CRLF included.
_V1_LONGEST = 107
_V2 = b"\r\n\r\n\x00\r\nQUIT\n"
_V2_FIXED = 16
# The most address and TLV bytes a v2 header may announce here. The format
# allows 64 KiB; what balancers send (addresses, ALPN, authority, TLS
# details) is a few hundred bytes, and a header is reread as it arrives.
_V2_LONGEST = 4096

_Address = IPv4Address | IPv6Address
#: What a complete header says: the source and destination addresses (or
#: L{None} for the connection's own), and how many bytes it took.
Parsed = tuple[_Address | None, _Address | None, int]


class ProxyHeaderError(Exception):
    """
    The bytes are not a PROXY protocol header.
    """


def _port(text: bytes) -> int:
    if not (text.isdigit() and len(text) <= 5) or int(text) > 65535:
        raise ProxyHeaderError(f"bad port {text!r}")
    return int(text)


def _v1(data: bytes) -> Parsed | None:
    end = data.find(b"\r\n", 0, _V1_LONGEST)
    if end < 0:
        if len(data) >= _V1_LONGEST:
            raise ProxyHeaderError("v1 header without CRLF within 107 bytes")
        return None
    fields = data[:end].split(b" ")
    if len(fields) >= 2 and fields[1] == b"UNKNOWN":
        return None, None, end + 2
    if len(fields) != 6 or fields[1] not in (b"TCP4", b"TCP6"):
        raise ProxyHeaderError(f"bad v1 header {data[:end]!r}")
    version = 4 if fields[1] == b"TCP4" else 6
    addresses: list[_Address] = []
    for host, port in ((fields[2], fields[4]), (fields[3], fields[5])):
        try:
            ip = ipaddress.ip_address(host.decode("ascii"))
        except (ValueError, UnicodeDecodeError):
            raise ProxyHeaderError(f"bad v1 address {host!r}") from None
        if ip.version != version:
            raise ProxyHeaderError(f"{host!r} is not {fields[1]!r}")
        addresses.append(_address(ip, _port(port)))
    return addresses[0], addresses[1], end + 2


def _v2(data: bytes) -> Parsed | None:
    if len(data) < _V2_FIXED:
        return None
    versionCommand, family, length = struct.unpack("!BBH", data[12:16])
    if versionCommand >> 4 != 2 or versionCommand & 0xF > 1:
        raise ProxyHeaderError(f"bad v2 version and command {versionCommand:#x}")
    if length > _V2_LONGEST:
        raise ProxyHeaderError(f"v2 header of {length} bytes (at most {_V2_LONGEST})")
    total = _V2_FIXED + length
    if len(data) < total:
        return None
    body = data[_V2_FIXED:total]
    if versionCommand & 0xF == 0:
        # LOCAL: the balancer's own connection (its health checks).
        return None, None, total
    if family == 0x11 and length >= 12:
        source, destination, sport, dport = struct.unpack("!4s4sHH", body[:12])
        return (
            _address(ipaddress.IPv4Address(source), sport),
            _address(ipaddress.IPv4Address(destination), dport),
            total,
        )
    if family == 0x21 and length >= 36:
        source, destination, sport, dport = struct.unpack("!16s16sHH", body[:36])
        return (
            _address(ipaddress.IPv6Address(source), sport),
            _address(ipaddress.IPv6Address(destination), dport),
            total,
        )
    if family in (0x11, 0x21):
        raise ProxyHeaderError(f"v2 addresses too short ({length} bytes)")
    # UNSPEC, UDP, UNIX: nothing this server can use as a TCP client.
    return None, None, total


def _address(ip: ipaddress.IPv4Address | ipaddress.IPv6Address, port: int) -> _Address:
    """
    A header's address as Twisted's: an IPv4-mapped IPv6 one (what haproxy
    sends for an IPv4 client of an IPv6 frontend, in v1 or v2) as the IPv4
    address it is, so that a client is written and matched one way only.
    """
    if isinstance(ip, ipaddress.IPv6Address) and ip.ipv4_mapped is not None:
        ip = ip.ipv4_mapped
    if isinstance(ip, ipaddress.IPv4Address):
        return IPv4Address("TCP", str(ip), port)
    return IPv6Address("TCP", str(ip), port)


def parseProxyHeader(data: bytes) -> Parsed | None:
    """
    The PROXY header at the start of C{data}, v1 or v2.

    @return: The source and destination it names (L{None} for each when
        the connection's own stand) and its length in bytes; L{None} when
        C{data} is the beginning of a header that is not complete yet.

    @raise ProxyHeaderError: C{data} does not begin with a header.
    """
    for signature, parse in ((_V2, _v2), (_V1, _v1)):
        common = min(len(data), len(signature))
        if data[:common] == signature[:common]:
            return parse(data) if len(data) >= len(signature) else None
    raise ProxyHeaderError(f"no PROXY header: {data[:16]!r}")


@implementer(IHalfCloseableProtocol)
class _ProxyHeaderReader(ProtocolWrapper):
    """
    A connection's PROXY header, then the connection itself: the wrapped
    protocol is connected once the header is complete, and sees its
    addresses as the connection's. A client's half-close reaches the
    wrapped protocol as it would without the header (the HTTP channel
    answers what it was sent).
    """

    factory: ProxyHeaderFactory
    _source: _Address | None = None
    _destination: _Address | None = None
    _deadline: IDelayedCall | None = None
    # Whether the wrapped protocol has been connected (the header was read).
    _wrapping = False

    def __init__(self, factory: ProxyHeaderFactory, wrapped: IProtocol) -> None:
        super().__init__(cast(Any, factory), wrapped)
        self._buffer: bytes | None = b""
        # The connection's socket transport, typed for what is used of it.
        self._socket: Any = None

    def makeConnection(self, transport: Any) -> None:
        directlyProvides(self, providedBy(transport))
        Protocol.makeConnection(self, transport)
        self._socket = transport
        self.factory.registerProtocol(self)
        if self.factory.timeout:
            self._deadline = self.factory.clock.callLater(
                self.factory.timeout, self._timedOut
            )

    def _timedOut(self) -> None:
        self._deadline = None
        self._socket.abortConnection()

    def dataReceived(self, data: bytes) -> None:
        if self._buffer is None:
            # After the header; nothing after a refused one.
            if self._wrapping:
                self.wrappedProtocol.dataReceived(data)
            return
        self._buffer += data
        try:
            parsed = parseProxyHeader(self._buffer)
        except ProxyHeaderError:
            self._buffer = None
            self._cancelDeadline()
            self._socket.abortConnection()
            return
        if parsed is None:
            return
        self._source, self._destination, used = parsed
        rest, self._buffer = self._buffer[used:], None
        self._cancelDeadline()
        self._wrapping = True
        self.wrappedProtocol.makeConnection(cast(Any, self))
        if rest and self.connected and not self.disconnecting:
            self.wrappedProtocol.dataReceived(rest)

    def readConnectionLost(self) -> None:
        """
        The client shut down its side: before a whole header, the connection
        can never be used; after it, the wrapped protocol is told if it
        takes half-closes (plain HTTP), else the connection ends, as the
        reactor would end it for that protocol (TLS).
        """
        wrapped = IHalfCloseableProtocol(self.wrappedProtocol, None)
        if self._wrapping and wrapped is not None:
            wrapped.readConnectionLost()
        else:
            self._cancelDeadline()
            self._socket.abortConnection()

    def writeConnectionLost(self) -> None:
        wrapped = IHalfCloseableProtocol(self.wrappedProtocol, None)
        if self._wrapping and wrapped is not None:
            wrapped.writeConnectionLost()
        else:
            self._socket.loseConnection()

    def _cancelDeadline(self) -> None:
        deadline, self._deadline = self._deadline, None
        if deadline is not None and deadline.active():
            deadline.cancel()

    def getPeer(self) -> IAddress:
        return self._source or cast(IAddress, self._socket.getPeer())

    def getHost(self) -> IAddress:
        return self._destination or cast(IAddress, self._socket.getHost())

    def connectionLost(self, reason: Failure = connectionDone) -> None:
        self._cancelDeadline()
        if not self._wrapping:
            # The header never arrived: the wrapped protocol knows nothing.
            self._buffer = None
            self.factory.unregisterProtocol(self)
            return
        super().connectionLost(reason)


class ProxyHeaderFactory(WrappingFactory):
    """
    Wrap every connection of a factory in a PROXY header reader.

    @ivar timeout: Seconds the header may take to arrive (0 for no limit).
    @ivar clock: What times it.
    """

    protocol = _ProxyHeaderReader
    # As the site it wraps: one "Starting factory" line per start is noise.
    noisy = False

    def __init__(
        self, wrappedFactory: IProtocolFactory, timeout: float, clock: IReactorTime
    ) -> None:
        super().__init__(wrappedFactory)
        self.timeout = timeout
        self.clock = clock

    def logPrefix(self) -> str:
        wrapped = self.wrappedFactory
        if ILoggingContext.providedBy(wrapped):
            return f"{wrapped.logPrefix()} (PROXY)"
        return f"{type(wrapped).__name__} (PROXY)"


@implementer(IStreamServerEndpoint)
class ProxyHeaderEndpoint:
    """
    An endpoint whose connections start with a PROXY header.
    """

    def __init__(
        self, wrapped: IStreamServerEndpoint, timeout: float, clock: IReactorTime
    ) -> None:
        self._wrapped = wrapped
        self._timeout = timeout
        self._clock = clock

    def listen(self, factory: IProtocolFactory) -> defer.Deferred[IListeningPort]:
        return self._wrapped.listen(
            ProxyHeaderFactory(factory, self._timeout, self._clock)
        )
