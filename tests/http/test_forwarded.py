"""
Tests for L{twisted_cgiserve._http.forwarded}: who the client is behind a
trusted proxy, and the site's requests that believe it
(L{twisted_cgiserve._http.request.trustingRequests}) over HTTP/1.1 and
HTTP/2.
"""

from __future__ import annotations

import ipaddress
import time
from typing import Any

import h2.config
import h2.connection
import h2.events
import pytest
from twisted.internet.address import IPv4Address, IPv6Address, UNIXAddress
from twisted.internet.testing import MemoryReactorClock, StringTransport
from twisted.web.http_headers import Headers
from twisted.web.resource import Resource
from twisted.web.server import Request

from twisted_cgiserve._http.forwarded import (
    FORWARDED,
    Forwarded,
    TrustedProxies,
    parseNode,
)
from twisted_cgiserve._http.request import CGIServeRequest, trustingRequests
from twisted_cgiserve._http.site import CGIServeSite

PROXY = IPv4Address("TCP", "10.0.0.5", 40000)
STRANGER = IPv4Address("TCP", "203.0.113.50", 40001)


def _resolve(
    headers: dict[bytes, list[bytes]],
    peer: object = PROXY,
    networks: tuple[str, ...] = ("10.0.0.0/8",),
    header: str = "x-forwarded-for",
) -> Forwarded | None:
    return TrustedProxies.parse(networks, header).resolve(peer, Headers(headers))


def _client(forwarded: Forwarded | None) -> tuple[str, int] | None:
    if forwarded is None:
        return None
    return forwarded.client.host, forwarded.client.port


# parseNode


@pytest.mark.parametrize(
    ("node", "expected"),
    [
        ("192.0.2.1", ("192.0.2.1", 0)),
        (" 192.0.2.1 ", ("192.0.2.1", 0)),
        ("192.0.2.1:4711", ("192.0.2.1", 4711)),
        ("2001:db8::1", ("2001:db8::1", 0)),
        ("[2001:db8::1]", ("2001:db8::1", 0)),
        ("[2001:db8::1]:4711", ("2001:db8::1", 4711)),
        ("[2001:db8::1]:_hidden", ("2001:db8::1", 0)),
        ("192.0.2.1:_hidden", ("192.0.2.1", 0)),
        ("::ffff:192.0.2.1", ("192.0.2.1", 0)),
        ("unknown", None),
        ("_hidden", None),
        ("", None),
        ("example.com", None),
        ("192.0.2.1:65536", None),
        ("192.0.2.1:x", None),
        ("192.0.2.1:123456", None),
        ("[2001:db8::1", None),
        ("[2001:db8::1]x", None),
        ("[fe80::1%eth0]", None),
        ("192.0.2.1:\u0663", None),
    ],
)
def test_parseNode(node: str, expected: tuple[str, int] | None) -> None:
    """
    A hop names an address, with or without a port (RFC 7239 section 6);
    C{unknown}, obfuscated identifiers and anything malformed name none.
    """
    parsed = parseNode(node)
    assert (None if parsed is None else (str(parsed[0]), parsed[1])) == expected


# TrustedProxies.parse


def test_parseNetworksAndAddresses() -> None:
    """
    C{--trusted-proxy} takes a CIDR or a bare address, IPv4 or IPv6.
    """
    proxies = TrustedProxies.parse(["10.0.0.0/8", "192.0.2.7", "2001:db8::/32"])
    assert proxies.trusts(ipaddress.ip_address("10.200.1.1"))
    assert proxies.trusts(ipaddress.ip_address("192.0.2.7"))
    assert not proxies.trusts(ipaddress.ip_address("192.0.2.8"))
    assert proxies.trusts(ipaddress.ip_address("2001:db8::5"))
    assert not proxies.trusts(ipaddress.ip_address("2001:db9::5"))
    # A dual-stack socket's view of an IPv4 peer.
    assert proxies.trusts(ipaddress.ip_address("::ffff:10.1.2.3"))


@pytest.mark.parametrize(
    "value", ["10.0.0.1/8", "nonsense", "", "10.0.0.0/33", "::1/200"]
)
def test_parseRefuses(value: str) -> None:
    """
    A value that is neither an address nor a network (or has host bits
    set, which usually means a typo) is refused with a message naming it.
    """
    with pytest.raises(ValueError, match="--trusted-proxy"):
        TrustedProxies.parse([value])


def test_unknownHeaderRefused() -> None:
    """
    Only the two headers are known.
    """
    with pytest.raises(ValueError, match="x-real-ip"):
        TrustedProxies([], "x-real-ip")


# X-Forwarded-For


def test_untrustedPeerChangesNothing() -> None:
    """
    A peer outside the trusted networks says nothing about the client,
    whatever its headers claim.
    """
    headers = {
        b"x-forwarded-for": [b"127.0.0.1"],
        b"x-forwarded-proto": [b"https"],
    }
    assert _resolve(headers, peer=STRANGER) is None


def test_nonIPPeer() -> None:
    """
    A UNIX socket peer is never a trusted proxy.
    """
    assert _resolve({b"x-forwarded-for": [b"192.0.2.1"]}, UNIXAddress(None)) is None


def test_singleHop() -> None:
    """
    One proxy in front: the client is the address it appended.
    """
    forwarded = _resolve({b"x-forwarded-for": [b"198.51.100.7"]})
    assert forwarded is not None
    assert _client(forwarded) == ("198.51.100.7", 0)
    assert isinstance(forwarded.client, IPv4Address)
    assert forwarded.secure is None


def test_rightmostUntrusted() -> None:
    """
    Hops are read from the right; trusted ones are skipped and the first
    one that is not is the client, whatever the client itself claimed
    further left.
    """
    headers = {
        b"x-forwarded-for": [b"127.0.0.1, 198.51.100.7", b"10.9.9.9,10.1.1.1"],
    }
    assert _client(_resolve(headers)) == ("198.51.100.7", 0)


def test_everyHopTrusted() -> None:
    """
    When every hop is trusted, the leftmost is the client.
    """
    headers = {b"x-forwarded-for": [b"10.3.3.3, 10.2.2.2"]}
    assert _client(_resolve(headers)) == ("10.3.3.3", 0)


@pytest.mark.parametrize("hop", [b"unknown", b"_secret", b"not-an-address", b""])
def test_unknownHopStopsTheWalk(hop: bytes) -> None:
    """
    A hop that names no address ends the walk: the last trusted address
    reached stands for the client, never anything further left.
    """
    headers = {b"x-forwarded-for": [b"198.51.100.7, " + hop + b", 10.2.2.2"]}
    assert _client(_resolve(headers)) == ("10.2.2.2", 0)
    headers = {b"x-forwarded-for": [b"198.51.100.7, " + hop]}
    assert _resolve(headers) is None


def test_forwardedPort() -> None:
    """
    A hop's port becomes the client's; IPv6 clients are IPv6 addresses.
    """
    forwarded = _resolve({b"x-forwarded-for": [b"[2001:db8::9]:4711"]})
    assert forwarded is not None
    assert isinstance(forwarded.client, IPv6Address)
    assert _client(forwarded) == ("2001:db8::9", 4711)


def test_mappedPeer() -> None:
    """
    A trusted proxy seen through a dual-stack socket (IPv4-mapped) is
    trusted as its IPv4 address.
    """
    peer = IPv6Address("TCP", "::ffff:10.0.0.5", 40000)
    assert _client(_resolve({b"x-forwarded-for": [b"192.0.2.1"]}, peer)) == (
        "192.0.2.1",
        0,
    )


@pytest.mark.parametrize(
    ("proto", "secure"),
    [
        ([b"https"], True),
        ([b"HTTP"], False),
        ([b"http, https"], True),
        ([b"ftp"], None),
    ],
)
def test_proto(proto: list[bytes], secure: bool | None) -> None:
    """
    X-Forwarded-Proto's last value (the nearest proxy's) says whether the
    client spoke HTTPS; anything but http and https is ignored.
    """
    forwarded = _resolve(
        {b"x-forwarded-for": [b"192.0.2.1"], b"x-forwarded-proto": proto}
    )
    assert forwarded is not None
    assert forwarded.secure is secure


def test_protoWithoutFor() -> None:
    """
    X-Forwarded-Proto alone changes the scheme; the peer stays the client,
    with its own port.
    """
    forwarded = _resolve({b"x-forwarded-proto": [b"https"]})
    assert forwarded == Forwarded(PROXY, True)
    assert _resolve({}) is None


def test_onlyTheConfiguredHeader() -> None:
    """
    With X-Forwarded-For configured, a Forwarded header (which a proxy
    appending to X-Forwarded-For passes on untouched) is ignored, and the
    other way round.
    """
    headers = {b"forwarded": [b"for=127.0.0.1"]}
    assert _resolve(headers) is None
    headers = {b"x-forwarded-for": [b"127.0.0.1"]}
    assert _resolve(headers, header=FORWARDED) is None


def test_longHeaderLinear() -> None:
    """
    Thousands of hops cost time in proportion to their number: one pass,
    one address parse per hop examined.
    """
    small = {b"x-forwarded-for": [b", ".join([b"10.1.1.1"] * 1000)]}
    large = {b"x-forwarded-for": [b", ".join([b"10.1.1.1"] * 16000)]}

    def timed(headers: dict[bytes, list[bytes]]) -> float:
        start = time.perf_counter()
        assert _client(_resolve(headers)) == ("10.1.1.1", 0)
        return time.perf_counter() - start

    timed(small)
    ratio = min(timed(large) for _ in range(3)) / min(timed(small) for _ in range(3))
    # 16 times the hops: linear is ~16, quadratic ~256.
    assert ratio < 48, ratio


# Forwarded (RFC 7239)


def test_forwardedQuotedIPv6() -> None:
    """
    C{for=} with a quoted IPv6 address and port, parameters in any case
    and order, the element's C{proto=} the scheme.
    """
    forwarded = _resolve(
        {
            b"forwarded": [
                b'For="[2001:db8:cafe::17]:4711";PROTO=https;by=10.0.0.5, '
                b"for=10.1.1.1;proto=http"
            ]
        },
        header=FORWARDED,
    )
    assert forwarded is not None
    assert _client(forwarded) == ("2001:db8:cafe::17", 4711)
    assert forwarded.secure is True


def test_forwardedChain() -> None:
    """
    Elements across several lines are one list, walked from the right.
    """
    headers = {
        b"forwarded": [b"for=127.0.0.1", b'for=198.51.100.2;proto="http", for=10.4.4.4']
    }
    forwarded = _resolve(headers, header=FORWARDED)
    assert _client(forwarded) == ("198.51.100.2", 0)
    assert forwarded is not None and forwarded.secure is False


@pytest.mark.parametrize(
    "value",
    [b"for=unknown", b'for="_hidden"', b"by=10.0.0.5", b"for=198.51.100.2;;"],
)
def test_forwardedNoAddress(value: bytes) -> None:
    """
    An element whose C{for=} names no address (or that has none) ends the
    walk.
    """
    headers = {b"forwarded": [b"for=198.51.100.9, " + value]}
    assert _resolve(headers, header=FORWARDED) is None


@pytest.mark.parametrize(
    "value",
    [b"for", b'for="unterminated', b"for=1.2.3.4 junk", b"for=a=b", b"=x"],
)
def test_forwardedMalformed(value: bytes) -> None:
    """
    A malformed element names no client.
    """
    assert _resolve({b"forwarded": [value]}, header=FORWARDED) is None


@pytest.mark.parametrize(
    "lines",
    [
        [b'for="x, for=203.0.113.5'],
        [b"for=a b, for=203.0.113.5"],
        [b";, for=203.0.113.5"],
        [b'for="x', b"for=203.0.113.5"],
    ],
)
def test_forwardedMalformedByClient(lines: list[bytes]) -> None:
    """
    What a client sent malformed, left of the element its proxy appended,
    spoils only its own element: the proxy's is still read, and the client
    it names is not the trusted proxy itself (which would pass every
    loopback check).
    """
    forwarded = _resolve({b"forwarded": lines}, header=FORWARDED)
    assert _client(forwarded) == ("203.0.113.5", 0)


@pytest.mark.parametrize(
    ("value", "plain"),
    [
        ("::ffff:10.0.0.0/104", "10.0.0.0/8"),
        ("::ffff:192.0.2.7", "192.0.2.7/32"),
        ("2001:db8::/32", "2001:db8::/32"),
        ("10.0.0.0/8", "10.0.0.0/8"),
    ],
)
def test_mappedNetworksArePlainIPv4(value: str, plain: str) -> None:
    """
    An IPv4-mapped network is the IPv4 network it names, so that it matches
    the (plain IPv4) clients it was meant for.
    """
    proxies = TrustedProxies.parse([value])
    assert [str(n) for n in proxies.networks] == [plain]
    headers = {b"x-forwarded-for": [b"198.51.100.2"]}
    if plain.startswith("10."):
        assert _client(proxies.resolve(PROXY, Headers(headers))) == ("198.51.100.2", 0)


@pytest.mark.parametrize("node", [b"unknown", b"_hidden"])
def test_forwardedSchemeWithoutClient(node: bytes) -> None:
    """
    A proxy that hides the client still says its scheme: the rightmost
    element's C{proto=} is taken, and the peer stays the client.
    """
    headers = {b"forwarded": [b"for=" + node + b";proto=https"]}
    forwarded = _resolve(headers, header=FORWARDED)
    assert forwarded is not None
    assert (forwarded.client, forwarded.secure) == (PROXY, True)


def test_forwardedEscapes() -> None:
    """
    A quoted value's escapes are undone.
    """
    headers = {b"forwarded": [b'for="198.51.100.\\3";proto="ht\\tps"']}
    forwarded = _resolve(headers, header=FORWARDED)
    assert _client(forwarded) == ("198.51.100.3", 0)
    assert forwarded is not None and forwarded.secure is True


# The site's requests


CLIENT_PORT = 50000


class _Transport(StringTransport):
    def __init__(self, peer: Any, negotiated: bytes | None = None) -> None:
        super().__init__(peerAddress=peer)
        self.negotiatedProtocol = negotiated

    def unregisterProducer(self) -> None:
        self.producer = None
        self.streaming = None


class _Seen(Resource):
    """
    Answers with what the request says of its client.
    """

    isLeaf = True

    def render(self, request: Request) -> bytes:
        client = request.getClientAddress()
        return b"%s %d %d" % (
            client.host.encode(),
            client.port,
            request.isSecure(),
        )


class _Lines:
    def __init__(self) -> None:
        self.clients: list[str] = []

    def write(self, request: Any) -> None:
        self.clients.append(request.getClientAddress().host)

    def flush(self) -> None:
        pass


def _site(trusted: tuple[str, ...] | None) -> tuple[CGIServeSite, _Lines]:
    lines = _Lines()
    site = CGIServeSite(
        _Seen(),
        reactor=MemoryReactorClock(),
        accessLog=lines,  # type: ignore[arg-type]
    )
    if trusted is not None:
        site.requestFactory = trustingRequests(TrustedProxies.parse(trusted))
    return site, lines


def _http1(site: CGIServeSite, peer: Any, head: bytes) -> bytes:
    connection = site.buildProtocol(peer)
    transport = _Transport(peer)
    connection.makeConnection(transport)
    connection.dataReceived(b"GET / HTTP/1.1\r\nHost: a\r\n%s\r\n" % head)
    value: bytes = transport.value()
    connection.connectionLost(None)  # type: ignore[arg-type]
    return value.rsplit(b"\r\n\r\n", 1)[1]


def test_trustingRequests() -> None:
    """
    L{trustingRequests} makes a L{CGIServeRequest} class believing the
    proxies; the plain class believes no one.
    """
    proxies = TrustedProxies.parse(["10.0.0.0/8"])
    factory = trustingRequests(proxies)
    assert issubclass(factory, CGIServeRequest)
    assert factory.trustedProxies is proxies
    assert CGIServeRequest.trustedProxies is None


def test_http1ClientFromTrustedProxy() -> None:
    """
    Over HTTP/1.1, from a trusted proxy, the resource and the access log
    see the forwarded client (port 0: unknown) and scheme.
    """
    site, lines = _site(("10.0.0.0/8",))
    head = b"X-Forwarded-For: 198.51.100.7\r\nX-Forwarded-Proto: https\r\n"
    assert _http1(site, PROXY, head) == b"198.51.100.7 0 1"
    assert lines.clients == ["198.51.100.7"]


def test_http1Untrusted() -> None:
    """
    From any other peer, or on a site that trusts no proxy, the headers
    change nothing.
    """
    head = b"X-Forwarded-For: 127.0.0.1\r\nX-Forwarded-Proto: https\r\n"
    site, lines = _site(("10.0.0.0/8",))
    assert _http1(site, STRANGER, head) == b"203.0.113.50 40001 0"
    site, lines = _site(None)
    assert _http1(site, PROXY, head) == b"10.0.0.5 40000 0"
    assert lines.clients == ["10.0.0.5"]


def test_http2ClientFromTrustedProxy() -> None:
    """
    Each HTTP/2 stream's request is resolved at the end of its head too.
    """
    site, lines = _site(("10.0.0.0/8",))
    connection = site.buildProtocol(PROXY)
    transport = _Transport(PROXY, b"h2")
    connection.makeConnection(transport)
    client = h2.connection.H2Connection(
        h2.config.H2Configuration(client_side=True, header_encoding=None)
    )
    client.initiate_connection()
    stream = client.get_next_available_stream_id()
    client.send_headers(
        stream,
        [
            (b":method", b"GET"),
            (b":path", b"/"),
            (b":scheme", b"http"),
            (b":authority", b"a"),
            (b"x-forwarded-for", b"198.51.100.8, 10.1.1.1"),
        ],
        end_stream=True,
    )
    connection.dataReceived(client.data_to_send())
    site.reactor.advance(0)  # type: ignore[attr-defined]
    body = b"".join(
        event.data
        for event in client.receive_data(transport.value())
        if isinstance(event, h2.events.DataReceived)
    )
    connection.connectionLost(None)  # type: ignore[arg-type]
    assert body == b"198.51.100.8 0 0"
    assert lines.clients == ["198.51.100.8"]
