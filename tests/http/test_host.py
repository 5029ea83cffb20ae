"""
Tests for L{twisted_cgiserve._http.host}: the C{Host} field value's grammar.
"""

from __future__ import annotations

import pytest
from hypothesis import given
from hypothesis import strategies as st

from twisted_cgiserve._http.host import MAX_PORT_DIGITS, isValidHost


@pytest.mark.parametrize(
    "value",
    [
        b"",
        b"example.com",
        b"example.com.",
        b"EXAMPLE.com:8080",
        b"localhost:",
        b":80",
        b"127.0.0.1",
        b"127.0.0.1:8000",
        b"999.999.999.999",  # a registered name, syntactically
        b"xn--caf-dma.example",
        b"a_b~c-d",
        b"!$&'()*+,;=",
        b"%41%7e",
        b"[::1]",
        b"[::1]:8000",
        b"[2001:db8::1]:443",
        b"[::ffff:192.0.2.1]",
        b"[1:2:3:4:5:6:7:8]",
        b"[v1.fe80::a+en1]",
        b"[V7.x:y]",
        b"a:12345",
    ],
)
def test_valid(value: bytes) -> None:
    """
    uri-host [":" port]: a registered name (IPv4 addresses are ones), a
    bracketed IPv6 or IPvFuture literal, or nothing; a port of up to five
    digits, possibly empty.
    """
    assert isValidHost(value)


@pytest.mark.parametrize(
    "value",
    [
        b"a b/c",
        b"a b",
        b"a/b",
        b"a?b",
        b"a#b",
        b"user@host",
        b"a\\b",
        b'"a"',
        b"a\tb",
        b"a\x00b",
        b"a\x7fb",
        b"caf\xc3\xa9.example",
        b"%4",
        b"%zz",
        b"a:b",
        b"a:80:80",
        b"a:" + b"1" * (MAX_PORT_DIGITS + 1),
        b"a:" + b"9" * 5000,
        b"[::1",
        b"::1]",
        b"::1",
        b"[::1]x",
        b"[::1]:x",
        b"[1:2:3]",
        b"[:::]",
        b"[12345::]",
        b"[::1.2.3]",
        b"[fe80::1%eth0]",
        b"[fe80::1%25eth0]",
        b"[v.x]",
        b"[v1.]",
        b"[127.0.0.1]",
        b"a,b c",
    ],
)
def test_invalid(value: bytes) -> None:
    """
    Anything else is refused: characters outside the grammar (RFC 9112's
    example 'a b/c'), userinfo, broken percent-escapes and literals, zone
    identifiers, ports that are not digits or are longer than any port.
    """
    assert not isValidHost(value)


_UNRESERVED = "ABCDEFGHIJKLMNOPQRSTUVWXYZabcdefghijklmnopqrstuvwxyz0123456789-._~"
_SUB_DELIMS = "!$&'()*+,;="
_pctEncoded = st.tuples(
    st.sampled_from("0123456789abcdefABCDEF"), st.sampled_from("0123456789abcdefABCDEF")
).map(lambda t: "%" + t[0] + t[1])
_regName = st.lists(
    st.one_of(st.sampled_from(_UNRESERVED + _SUB_DELIMS), _pctEncoded), max_size=30
).map("".join)
_ipv4 = st.ip_addresses(v=4).map(str)
_ipv6 = st.ip_addresses(v=6).map(lambda a: f"[{a}]")
_ipv6Exploded = st.ip_addresses(v=6).map(lambda a: f"[{a.exploded}]")
_ipvFuture = st.tuples(
    st.text("0123456789abcdefABCDEF", min_size=1, max_size=4),
    st.text(_UNRESERVED + _SUB_DELIMS + ":", min_size=1, max_size=10),
).map(lambda t: f"[v{t[0]}.{t[1]}]")
_port = st.text("0123456789", max_size=MAX_PORT_DIGITS)
_hosts = st.tuples(
    st.one_of(_regName, _ipv4, _ipv6, _ipv6Exploded, _ipvFuture),
    st.one_of(st.none(), _port),
).map(lambda t: (t[0] if t[1] is None else f"{t[0]}:{t[1]}").encode("ascii"))


@given(_hosts)
def test_grammarAccepted(value: bytes) -> None:
    """
    Every value the RFC 3986 grammar generates is valid.
    """
    assert isValidHost(value)


# Bytes that can appear nowhere in a Host value.
_FORBIDDEN = [bytes([b]) for b in range(256) if b < 0x21 or b >= 0x7F] + [
    bytes([c]) for c in b'"#/<>?@\\^`{|}'
]


@given(_regName, st.sampled_from(_FORBIDDEN), st.integers(0, 40))
def test_forbiddenRefused(name: str, forbidden: bytes, position: int) -> None:
    """
    A registered name with a character the grammar never allows, anywhere
    in it, is invalid.
    """
    value = name.encode("ascii")
    position = min(position, len(value))
    assert not isValidHost(value[:position] + forbidden + value[position:])


@given(st.binary(max_size=100))
def test_neverRaises(value: bytes) -> None:
    """
    Any bytes at all get an answer, never an exception; a valid value is
    printable ASCII.
    """
    if isValidHost(value):
        assert all(0x21 <= b < 0x7F for b in value)
