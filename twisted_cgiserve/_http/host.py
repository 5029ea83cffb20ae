# -*- test-case-name: tests.http.test_host -*-
"""
The C{Host} header's grammar (RFC 9110 section 7.2, RFC 3986 section 3.2.2).

A server must refuse a request whose C{Host} is not C{uri-host [":" port]}
(RFC 9112 section 3.2): a proxy in front may route on a value this server
would read differently, and scripts get the host as C{SERVER_NAME}. The
check is pure so that HTTP/1.x and HTTP/2 (C{:authority}) share it.
"""

from __future__ import annotations

import re
from ipaddress import IPv6Address

__all__ = ["MAX_PORT_DIGITS", "isValidHost"]

# RFC 3986 allows any number of digits in a port; no port has more than
# five, and a longer one is a number nobody can mean.
MAX_PORT_DIGITS = 5

_UNRESERVED_OR_SUB_DELIM = rb"A-Za-z0-9\-._~!$&'()*+,;="
_REG_NAME = rb"(?:[" + _UNRESERVED_OR_SUB_DELIM + rb"]|%[0-9A-Fa-f]{2})*"
# What can appear in an IPv6 address; the address itself is checked by
# ipaddress (which would also take a zone such as "%eth0": not here).
_IPV6 = rb"[0-9A-Fa-f:.]+"
_IPV_FUTURE = rb"[vV][0-9A-Fa-f]+\.[" + _UNRESERVED_OR_SUB_DELIM + rb":]+"
_PORT = rb"[0-9]{0,%d}" % (MAX_PORT_DIGITS,)
_HOST = re.compile(
    rb"(?:\[(?:(?P<ipv6>" + _IPV6 + rb")|" + _IPV_FUTURE + rb")\]|" + _REG_NAME + rb")"
    rb"(?::" + _PORT + rb")?"
)


def isValidHost(value: bytes) -> bool:
    """
    Whether C{value} is a valid C{Host} field value: a registered name (an
    IPv4 address is one syntactically), a bracketed IPv6 address or
    C{IPvFuture} literal, or nothing, each optionally followed by C{:} and
    a port of at most L{MAX_PORT_DIGITS} digits.

    The value is taken as received, without surrounding whitespace (which
    the HTTP parser removes); an empty value is valid (RFC 9110 section
    7.2: sent when the target URI has no authority).
    """
    match = _HOST.fullmatch(value)
    if match is None:
        return False
    literal = match.group("ipv6")
    if literal is None:
        return True
    try:
        IPv6Address(literal.decode("ascii"))
    except ValueError:
        return False
    return True
