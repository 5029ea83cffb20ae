# -*- test-case-name: tests.http.test_forwarded -*-
"""
Who the client is behind a trusted proxy (C{--trusted-proxy}): the client
address a load balancer or reverse proxy reports in C{X-Forwarded-For} or
RFC 7239's C{Forwarded}, and the scheme the client used
(C{X-Forwarded-Proto}, C{Forwarded}'s C{proto=}).

A header is believed only from a peer inside a trusted network, as nginx's
C{real_ip} module with C{real_ip_recursive on} does: its hops are read from
the right (the nearest proxy's entry last), every hop that is itself a
trusted proxy is skipped, and the first that is not is the client. If every
hop is trusted, the leftmost is the client. A hop that names no address
(C{unknown}, an obfuscated identifier such as C{_hidden}, an element
without C{for=}, anything malformed) ends the walk: the client cannot be
known, and the last trusted address reached (the proxy that forwarded for
an unknown client) stands for it. Nothing a client sends can make a
trusted proxy's address appear unless a trusted proxy vouched for it.

One header is read, never both: a proxy that appends to
C{X-Forwarded-For} usually passes a client's C{Forwarded} through untouched
(and the other way round), so reading whichever is present would let any
client name itself. C{X-Forwarded-For} is the default, since it is what
haproxy's C{option forwardfor}, nginx and the cloud balancers send.

The work is one pass over the header's bytes, already bounded by the
channel's header size limit, and one address parse per hop examined.
"""

from __future__ import annotations

import ipaddress
import re
from collections.abc import Iterable, Sequence
from dataclasses import dataclass

from twisted.internet.address import IPv4Address, IPv6Address
from twisted.web.http_headers import Headers

__all__ = [
    "FORWARDED",
    "HEADERS",
    "X_FORWARDED_FOR",
    "Forwarded",
    "TrustedProxies",
    "optionNetwork",
    "parseNode",
    "plainNetwork",
]

X_FORWARDED_FOR = "x-forwarded-for"
FORWARDED = "forwarded"
#: The headers C{--forwarded-header} may name.
HEADERS = (X_FORWARDED_FOR, FORWARDED)

_Network = ipaddress.IPv4Network | ipaddress.IPv6Network
_IP = ipaddress.IPv4Address | ipaddress.IPv6Address

# One Forwarded pair: a token name, then a token or a quoted string.
_PAIR = re.compile(
    rb'\s*([!#$%&\'*+.^_`|~0-9A-Za-z-]+)\s*=\s*("(?:[^"\\]|\\.)*"|[^;,\s"]*)\s*'
)


@dataclass(frozen=True)
class Forwarded:
    """
    What a trusted proxy said about a request.

    @ivar client: The client's address; port 0 when the proxy did not say
        (the proxy's own port would be wrong for the client).
    @ivar secure: Whether the client spoke HTTPS to the proxy, or L{None}
        when the proxy did not say.
    """

    client: IPv4Address | IPv6Address
    secure: bool | None


def _plain(ip: _IP) -> _IP:
    """
    C{ip}, an IPv4-mapped IPv6 address as plain IPv4 (what a dual-stack
    socket reports for an IPv4 peer).
    """
    if isinstance(ip, ipaddress.IPv6Address) and ip.ipv4_mapped is not None:
        return ip.ipv4_mapped
    return ip


def plainNetwork(
    network: ipaddress.IPv4Network | ipaddress.IPv6Network,
) -> ipaddress.IPv4Network | ipaddress.IPv6Network:
    """
    C{network}, an IPv4-mapped IPv6 one (C{::ffff:10.0.0.0/104}) as the
    IPv4 network it is: addresses are matched as plain IPv4 (L{_plain}),
    so a mapped network would otherwise never match anything.
    """
    mapped = getattr(network.network_address, "ipv4_mapped", None)
    if mapped is not None and network.prefixlen >= 96:
        return ipaddress.IPv4Network((mapped, network.prefixlen - 96))
    return network


def optionNetwork(option: str, value: str) -> _Network:
    """
    A network as a command-line C{option} takes it: a CIDR (C{10.0.0.0/8},
    C{2001:db8::/32}) or a bare address (one host), a mapped one as plain
    IPv4 (L{plainNetwork}).

    @raise ValueError: With a message naming C{option}, fit for the command
        line; a network with host bits set (C{10.1.2.3/8}) is refused
        rather than guessed.
    """
    try:
        network = ipaddress.ip_network(value.strip(), strict=True)
    except ValueError as e:
        raise ValueError(
            f"{option} {value!r} is not an address or network "
            f"(as 10.0.0.0/8, 192.0.2.7 or 2001:db8::/32): {e}"
        ) from None
    return plainNetwork(network)


def parseNode(node: str) -> tuple[_IP, int] | None:
    """
    An address as a hop names it: C{192.0.2.1}, C{192.0.2.1:4711},
    C{2001:db8::1}, C{[2001:db8::1]} or C{[2001:db8::1]:4711} (RFC 7239
    section 6), with the port 0 when none is given or it is obfuscated.

    @return: The address and port, or L{None} for C{unknown}, an
        obfuscated identifier, or anything malformed.
    """
    node = node.strip()
    port = ""
    if node.startswith("["):
        host, bracket, port = node[1:].partition("]")
        if not bracket or (port and not port.startswith(":")):
            return None
        port = port[1:]
    elif node.count(":") == 1:
        host, _, port = node.partition(":")
    else:
        host = node
    try:
        ip = ipaddress.ip_address(host)
    except ValueError:
        return None
    if isinstance(ip, ipaddress.IPv6Address) and ip.scope_id:
        return None
    number = 0
    if port and not port.startswith("_"):
        if not (port.isascii() and port.isdigit() and len(port) <= 5):
            return None
        number = int(port)
        if number > 65535:
            return None
    return _plain(ip), number


def _unquote(value: bytes) -> str:
    """
    A Forwarded value, its quotes and escapes removed.
    """
    if value.startswith(b'"'):
        value = re.sub(rb"\\(.)", rb"\1", value[1:-1])
    return value.decode("latin-1")


def _forwardedElement(text: bytes) -> dict[str, str] | None:
    """
    One C{Forwarded} element (C{for=...;proto=...}) as its lower-cased
    parameter names and values; L{None} when it does not parse.
    """
    element: dict[str, str] = {}
    position = 0
    while position < len(text):
        match = _PAIR.match(text, position)
        if match is None:
            return None
        element.setdefault(match[1].decode("ascii").lower(), _unquote(match[2]))
        position = match.end()
        if position < len(text):
            if text[position : position + 1] != b";":
                return None
            position += 1
    return element


def _forwardedElements(values: Sequence[bytes]) -> list[dict[str, str] | None]:
    """
    The elements of C{Forwarded} header lines, in order; L{None} for each
    that does not parse.

    Each element is parsed on its own, split at every comma (a quoted
    comma, which no address contains, only makes its element unparseable):
    text a client sent malformed spoils its own elements, never the ones a
    proxy appended to its right, which are the ones believed.
    """
    return [
        _forwardedElement(piece.strip(b" \t"))
        for line in values
        for piece in line.split(b",")
    ]


def _scheme(value: str | None) -> bool | None:
    """
    Whether a forwarded scheme is HTTPS; L{None} when it is neither
    C{http} nor C{https}.
    """
    if value is None:
        return None
    value = value.strip().lower()
    return {"https": True, "http": False}.get(value)


class TrustedProxies:
    """
    The networks whose forwarding headers are believed.
    """

    def __init__(self, networks: Iterable[_Network], header: str = X_FORWARDED_FOR):
        """
        @param header: Which header names the client: L{X_FORWARDED_FOR}
            (with C{X-Forwarded-Proto}) or L{FORWARDED}.
        """
        if header not in HEADERS:
            raise ValueError(
                f"the forwarded header {header!r} must be one of {', '.join(HEADERS)}"
            )
        self.networks = tuple(networks)
        self.header = header
        self._v4 = [n for n in self.networks if n.version == 4]
        self._v6 = [n for n in self.networks if n.version == 6]

    @classmethod
    def parse(
        cls, values: Iterable[str], header: str = X_FORWARDED_FOR
    ) -> TrustedProxies:
        """
        Networks as C{--trusted-proxy} takes them: a CIDR (C{10.0.0.0/8},
        C{2001:db8::/32}) or a bare address (one host).

        @raise ValueError: A value is neither, or has host bits set; the
            message names it.
        """
        return cls(
            [optionNetwork("--trusted-proxy", value) for value in values], header
        )

    def trusts(self, ip: _IP) -> bool:
        """
        Whether C{ip} is inside a trusted network.
        """
        ip = _plain(ip)
        networks = self._v4 if ip.version == 4 else self._v6
        return any(ip in network for network in networks)

    def _peer(self, peer: object) -> _IP | None:
        """
        The address of an immediate peer, if it is an IP address.
        """
        if not isinstance(peer, IPv4Address | IPv6Address):
            return None
        try:
            return _plain(ipaddress.ip_address(peer.host.partition("%")[0]))
        except ValueError:
            return None

    def resolve(self, peer: object, headers: Headers) -> Forwarded | None:
        """
        Who the client of a request from C{peer} with C{headers} is.

        @return: L{None} when C{peer} is not trusted or sent no usable
            header: the request is then what the connection says it is.
        """
        ip = self._peer(peer)
        if ip is None or not self.trusts(ip):
            return None
        assert isinstance(peer, IPv4Address | IPv6Address)
        raw = headers.getRawHeaders(self.header.encode("ascii")) or []
        if self.header == FORWARDED:
            elements = _forwardedElements(raw)
            hops = [element.get("for") if element else None for element in elements]
            client, port, index = self._walk(ip, hops)
            # The scheme the client used, said by the element that named it;
            # when none did, by the peer's own (the rightmost) element.
            named = elements[index if index is not None else -1] if elements else None
            secure = _scheme(named.get("proto") if named else None)
        else:
            entries = b",".join(raw).split(b",") if raw else []
            client, port, index = self._walk(ip, [e.decode("latin-1") for e in entries])
            protos = headers.getRawHeaders(b"x-forwarded-proto")
            # The nearest proxy's word: with a chain of proxies, the first
            # one sets it and the others pass it on.
            last = b",".join(protos).rsplit(b",", 1)[-1] if protos else b""
            secure = _scheme(last.decode("latin-1")) if protos else None
        if index is None:
            # No hop named an address: the peer stands, with its own port.
            return None if secure is None else Forwarded(peer, secure)
        address: IPv4Address | IPv6Address
        if client.version == 4:
            address = IPv4Address("TCP", str(client), port)
        else:
            address = IPv6Address("TCP", str(client), port)
        return Forwarded(address, secure)

    def _walk(
        self, peer: _IP, hops: Sequence[str | None]
    ) -> tuple[_IP, int, int | None]:
        """
        Walk C{hops} from the right while they are trusted.

        @return: The client's address and port, and the index of the hop
            that named it (L{None} if none did: the peer stands).
        """
        client, port, index = peer, 0, None
        for position in range(len(hops) - 1, -1, -1):
            if not self.trusts(client):
                break
            hop = hops[position]
            node = parseNode(hop) if hop is not None else None
            if node is None:
                break
            (client, port), index = node, position
        return client, port, index
