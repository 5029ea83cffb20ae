# -*- test-case-name: tests.test_listen -*-
"""
Where the server listens: C{--port} values turned into endpoints, and the
service that binds them.

A bare number means what it meant to http.server: every interface, IPv6 and
IPv4 alike where the host has IPv6, or the C{--bind} address. Anything else
is a Twisted endpoint description, so C{unix:}, C{ssl:}, C{systemd:} and
the rest work unchanged.
"""

from __future__ import annotations

import errno
import ipaddress
import socket
import sys
from dataclasses import dataclass
from typing import cast

from zope.interface import implementer

from twisted.application.service import Service
from twisted.internet import defer
from twisted.internet.endpoints import (
    TCP4ServerEndpoint,
    TCP6ServerEndpoint,
    quoteStringArgument,
    serverFromString,
)
from twisted.internet.error import CannotListenError
from twisted.internet.interfaces import (
    IListeningPort,
    IProtocolFactory,
    IStreamServerEndpoint,
)
from twisted.logger import Logger
from twisted.python.failure import Failure

__all__ = ["ListenSpec", "ListeningService", "endpointFor", "parsePort"]

_log = Logger()


@dataclass(frozen=True)
class ListenSpec:
    """
    One place to listen.

    @ivar description: A Twisted endpoint description, or L{None} for the
        dual-stack wildcard on C{port}.
    @ivar port: The port of a bare number without C{--bind}.
    """

    description: str | None
    port: int = 0

    def __str__(self) -> str:
        return self.description or f"[::]:{self.port} (and 0.0.0.0:{self.port})"


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


def parsePort(value: str, bind: str | None) -> ListenSpec:
    """
    Interpret one C{--port} value.

    @raise ValueError: With a message fit for the command line.
    """
    port = _portNumber(value)
    if port is None:
        # --bind only qualifies bare numbers: a description says where.
        return ListenSpec(value)
    if bind is not None:
        return ListenSpec(_bindDescription(port, bind))
    return ListenSpec(None, port)


@implementer(IStreamServerEndpoint)
class _DualStackEndpoint:
    """
    Listen on every interface: C{::} with IPv4-mapped addresses where the
    host has IPv6, C{0.0.0.0} where it does not.
    """

    def __init__(self, reactor: object, port: int) -> None:
        self._reactor = reactor
        self._port = port

    def listen(self, factory: IProtocolFactory) -> defer.Deferred[IListeningPort]:
        ipv4 = TCP4ServerEndpoint(self._reactor, self._port)
        if not socket.has_ipv6:
            return cast("defer.Deferred[IListeningPort]", ipv4.listen(factory))

        def fallBack(failure: Failure) -> defer.Deferred[IListeningPort]:
            error = failure.value
            if isinstance(error, CannotListenError) and getattr(
                error.socketError, "errno", None
            ) in (errno.EAFNOSUPPORT, errno.EADDRNOTAVAIL, errno.EPROTONOSUPPORT):
                return cast("defer.Deferred[IListeningPort]", ipv4.listen(factory))
            return failure.raiseException()

        ipv6 = TCP6ServerEndpoint(self._reactor, self._port, interface="::")
        d = cast("defer.Deferred[IListeningPort]", ipv6.listen(factory))
        return d.addErrback(fallBack)


def endpointFor(reactor: object, spec: ListenSpec) -> IStreamServerEndpoint:
    """
    The endpoint for C{spec}.

    @raise ValueError: The description is malformed or names an unknown
        endpoint type.
    """
    if spec.description is None:
        return _DualStackEndpoint(reactor, spec.port)
    try:
        endpoint = serverFromString(reactor, spec.description)
    except Exception as e:
        # serverFromString raises ValueError, KeyError, IndexError or
        # TypeError depending on the parser: all are configuration errors.
        raise ValueError(f"bad --port {spec.description!r}: {e}") from None
    return cast(IStreamServerEndpoint, endpoint)


def _describe(port: IListeningPort, secure: bool) -> str:
    """
    http.server's start-up line for a listening port.
    """
    address = port.getHost()
    scheme = "HTTPS" if secure else "HTTP"
    host = getattr(address, "host", None)
    if host is None:
        name = getattr(address, "name", address)
        if isinstance(name, bytes):
            name = name.decode("utf-8", "replace")
        return f"Serving {scheme} on {name}"
    number = getattr(address, "port", 0)
    urlHost = f"[{host}]" if ":" in host else host
    return (
        f"Serving {scheme} on {host} port {number} "
        f"({scheme.lower()}://{urlHost}:{number}/) ..."
    )


class ListeningService(Service):
    """
    Listen on one endpoint while running.

    A port that cannot be bound ends the process with a one-line message and
    exit status 1 (twistd would otherwise print a traceback, or with a bare
    endpoint service keep running without the port: a silent failure under
    systemd).
    """

    def __init__(
        self,
        spec: ListenSpec,
        endpoint: IStreamServerEndpoint,
        factory: IProtocolFactory,
    ) -> None:
        self.spec = spec
        self.endpoint = endpoint
        self.factory = factory
        self.port: IListeningPort | None = None
        self._listening: defer.Deferred[IListeningPort] | None = None

    def privilegedStartService(self) -> None:
        super().privilegedStartService()
        outcome: list[IListeningPort | Failure] = []
        self._listening = self.endpoint.listen(self.factory)
        self._listening.addBoth(outcome.append)
        if not outcome:
            # An endpoint that binds asynchronously: report when it does.
            self._listening.addCallbacks(self._listened, self._failed)
        elif isinstance(outcome[0], Failure):
            self._failed(outcome[0])
        else:
            self._listened(outcome[0])

    def _listened(self, port: IListeningPort) -> None:
        self.port = port
        secure = (self.spec.description or "").startswith(("ssl:", "tls:"))
        _log.info("{line}", line=_describe(port, secure))

    def _failed(self, failure: Failure) -> None:
        reason = failure.value
        why: object = reason
        if isinstance(reason, CannotListenError) and reason.socketError:
            why = getattr(reason.socketError, "strerror", None) or reason.socketError
        # The real standard error: twistd has redirected sys.stderr into its
        # log by now, and this line is for the person at the terminal.
        stderr = sys.__stderr__ or sys.stderr
        stderr.write(f"twistd cgiserve: cannot listen on {self.spec}: {why}\n")
        stderr.flush()
        raise SystemExit(1)

    def startService(self) -> None:
        super().startService()
        if self._listening is None:
            self.privilegedStartService()

    def stopService(self) -> defer.Deferred[None] | None:
        super().stopService()
        if self.port is not None:
            port, self.port = self.port, None
            return port.stopListening()
        return None
