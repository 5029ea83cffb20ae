# -*- test-case-name: tests.service.test_ports -*-
"""
What a C{--port} value means, checked without a reactor: a bare number is
what it was to http.server (every interface, IPv6 and IPv4 alike where the
host has IPv6, or the C{--bind} address); anything else is a Twisted
endpoint description, so C{unix:}, C{systemd:} and the rest work unchanged.

With C{--tls-cert}, bare numbers and C{systemd:} sockets speak TLS (a socket
unit says where to listen, not how). C{ssl:} descriptions keep Twisted's
syntax but get this server's TLS settings (TLS 1.2+, HTTP/2, reload on
SIGHUP) instead of Twisted's load-once defaults: they are rewritten here
into a C{tcp:} description and the files to load.

Only text is produced here; L{twisted_cgiserve._service.endpoints} turns it
into endpoints once the reactor is chosen.
"""

from __future__ import annotations

import ipaddress
import socket
from dataclasses import dataclass

from twisted.internet.endpoints import quoteStringArgument

from twisted_cgiserve._service.tls import TLSFiles

__all__ = ["ListenSpec", "parsePort", "splitDescription"]


@dataclass(frozen=True)
class ListenSpec:
    """
    One place to listen.

    @ivar description: A Twisted endpoint description, or L{None} for the
        dual-stack wildcard on C{port}.
    @ivar port: The port of a bare number without C{--bind}.
    @ivar tls: The certificate and key this port speaks TLS with, or
        L{None} for plain HTTP (or TLS the description sets up itself).
    @ivar given: The C{--port} value as written, for messages.
    @ivar proxy: Whether every connection starts with a PROXY protocol
        header (C{--proxy-protocol}), before TLS if any.
    """

    description: str | None
    port: int = 0
    tls: TLSFiles | None = None
    given: str | None = None
    proxy: bool = False

    @property
    def secure(self) -> bool:
        """
        Whether clients speak HTTPS to this port.
        """
        return self.tls is not None or (self.description or "").startswith(
            ("ssl:", "tls:")
        )

    def __str__(self) -> str:
        return (
            self.given
            or self.description
            or f"[::]:{self.port} (and 0.0.0.0:{self.port})"
        )


def _portNumber(value: str) -> int | None:
    """
    The port a bare number names, L{None} if C{value} is not a bare number.

    @raise ValueError: The number is out of range.
    """
    if not value.isdigit():
        return None
    port = int(value)
    if port > 65535:
        raise ValueError(f"port {value} is out of range (0-65535)")
    return port


def _bindDescription(port: int, bind: str) -> str:
    """
    The endpoint description for a bare port on the C{--bind} address: a
    literal address as given, a host name as its first address (as
    http.server picks it).

    @raise ValueError: The name does not resolve.
    """
    try:
        address = ipaddress.ip_address(bind.strip("[]"))
    except ValueError:
        try:
            infos = socket.getaddrinfo(
                bind, port, type=socket.SOCK_STREAM, flags=socket.AI_PASSIVE
            )
        except socket.gaierror as e:
            raise ValueError(f"cannot resolve --bind {bind!r}: {e.strerror}") from None
        address = ipaddress.ip_address(infos[0][4][0])
    kind = "tcp6" if address.version == 6 else "tcp"
    return f"{kind}:{port}:interface={quoteStringArgument(str(address))}"


def splitDescription(text: str) -> tuple[list[str], dict[str, str]]:
    """
    An endpoint description's arguments, as Twisted reads them: fields
    separated by C{:}, C{name=value} for keyword arguments, a backslash
    escaping the next character.
    """
    fields: list[tuple[str, str | None]] = []
    current: list[str] = []
    name: str | None = None
    escaped = False
    for c in text:
        if escaped:
            current.append(c)
            escaped = False
        elif c == "\\":
            escaped = True
        elif c == ":":
            fields.append(("".join(current), name))
            current, name = [], None
        elif c == "=" and name is None:
            name, current = "".join(current), []
        else:
            current.append(c)
    fields.append(("".join(current), name))
    positional = [value for value, key in fields if key is None]
    keywords = {key: value for value, key in fields if key is not None}
    return positional, keywords


def _fromSSL(value: str) -> ListenSpec:
    """
    An C{ssl:PORT:privateKey=KEY[:certKey=CERT][:extraCertChain=CHAIN]
    [:interface=ADDR][:backlog=N]} description, served with this server's
    TLS settings.

    @raise ValueError: An argument Twisted's C{ssl:} takes that makes no
        sense here, or one it does not take.
    """
    positional, keywords = splitDescription(value.removeprefix("ssl:"))
    if len(positional) != 1 or not positional[0].isdigit():
        raise ValueError(f"bad --port {value!r}: ssl: needs a port number")
    for legacy in ("sslmethod", "dhParameters"):
        if legacy in keywords:
            raise ValueError(
                f"bad --port {value!r}: {legacy} is not supported (TLS 1.2 and "
                "1.3 with ECDHE ciphers are always used)"
            )
    key = keywords.pop("privateKey", "server.pem")
    files = TLSFiles(
        certificate=keywords.pop("certKey", key),
        key=key,
        chain=keywords.pop("extraCertChain", None),
        fromDescription=True,
    )
    tcp = f"tcp:{positional[0]}"
    for name in ("interface", "backlog"):
        if name in keywords:
            tcp += f":{name}={quoteStringArgument(keywords.pop(name))}"
    if keywords:
        raise ValueError(
            f"bad --port {value!r}: unknown argument {', '.join(sorted(keywords))}"
        )
    return ListenSpec(tcp, tls=files, given=value)


def parsePort(
    value: str, bind: str | None, tls: TLSFiles | None = None, proxy: bool = False
) -> ListenSpec:
    """
    Interpret one C{--port} value.

    @param tls: The C{--tls-cert} files, if given.
    @param proxy: C{--proxy-protocol}: bare numbers and C{systemd:} sockets
        (the ports C{--tls-cert} applies to) expect a PROXY header; a
        description says for itself (C{haproxy:tcp:8000}).

    @raise ValueError: With a message fit for the command line.
    """
    port = _portNumber(value)
    if port is None:
        # --bind only qualifies bare numbers: a description says where.
        if value.startswith("ssl:"):
            return _fromSSL(value)
        if value.startswith("systemd:"):
            return ListenSpec(value, tls=tls, proxy=proxy)
        return ListenSpec(value)
    if bind is not None:
        return ListenSpec(_bindDescription(port, bind), tls=tls, proxy=proxy)
    return ListenSpec(None, port, tls=tls, proxy=proxy)
