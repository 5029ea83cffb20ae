# -*- test-case-name: tests.service.test_endpoints -*-
"""
The endpoints a L{ListenSpec} names: a dual-stack wildcard for a bare
number, Twisted's own parsers for a description, and this server's TLS
wrapped around either where the spec says so.

A description is checked twice: while the options are parsed, with no
reactor at all (twistd has not chosen one yet, and importing the global
reactor then would install the default one, so that C{twistd --reactor=...}
fails), and for real in C{makeService}, with the reactor twistd runs.
"""

from __future__ import annotations

import contextlib
import errno
import os
import socket
from typing import Any, NoReturn, cast

from zope.interface import implementer

from twisted.internet import defer, tcp
from twisted.internet.endpoints import (
    TCP4ServerEndpoint,
    TCP6ServerEndpoint,
    serverFromString,
    wrapServerTLS,
)
from twisted.internet.error import CannotListenError
from twisted.internet.interfaces import (
    IListeningPort,
    IOpenSSLServerConnectionCreator,
    IProtocolFactory,
    IStreamServerEndpoint,
)
from twisted.python.failure import Failure

from twisted_cgiserve._service.ports import ListenSpec
from twisted_cgiserve._service.proxyprotocol import ProxyHeaderEndpoint

__all__ = ["AdoptingReactor", "DualStackEndpoint", "checkDescription", "endpointFor"]

# What binding to "::" fails with on a host without IPv6 (or with IPv6
# turned off): then the wildcard is IPv4's alone.
_NO_IPV6 = (errno.EAFNOSUPPORT, errno.EADDRNOTAVAIL, errno.EPROTONOSUPPORT)


@implementer(IStreamServerEndpoint)
class DualStackEndpoint:
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
            cause = error.socketError if isinstance(error, CannotListenError) else None
            if isinstance(cause, OSError) and cause.errno in _NO_IPV6:
                return cast("defer.Deferred[IListeningPort]", ipv4.listen(factory))
            return failure.raiseException()

        ipv6 = TCP6ServerEndpoint(self._reactor, self._port, interface="::")
        d = cast("defer.Deferred[IListeningPort]", ipv6.listen(factory))
        return d.addErrback(fallBack)


class _ReactorNeeded(Exception):
    """
    An endpoint parser used the reactor while parsing, so the description
    can only be checked once there is one.
    """


class _NoReactor:
    """
    What endpoint parsers get while options are checked: Twisted's own (and
    most plugins) only keep the reactor for C{listen}; one that touches it
    at once raises L{_ReactorNeeded} rather than installing the global
    reactor.
    """

    def __getattr__(self, name: str) -> NoReturn:
        raise _ReactorNeeded(name)


def _parse(reactor: object, spec: ListenSpec, description: str) -> Any:
    """
    C{serverFromString}, with its errors as one C{ValueError} fit for the
    command line.
    """
    try:
        return serverFromString(reactor, description)
    except _ReactorNeeded:
        raise
    except Exception as e:
        # serverFromString raises ValueError, KeyError, IndexError or
        # TypeError depending on the parser: all are configuration errors.
        # The systemd parser's lookup errors say nothing useful.
        why: object = e
        if description.startswith("systemd:") and isinstance(e, (KeyError, IndexError)):
            why = (
                "systemd passed no such socket (is the .socket unit "
                "active, and its FileDescriptorName= this name?)"
            )
        raise ValueError(f"bad --port {spec}: {why}") from None


def checkDescription(spec: ListenSpec) -> None:
    """
    Check C{spec}'s description the way L{endpointFor} will read it, without
    a reactor. A description whose parser needs the reactor at once (only a
    third-party endpoint plugin can) is left to L{endpointFor}.

    @raise ValueError: The description is malformed or names an unknown
        endpoint type; the message is fit for the command line.
    """
    if spec.description is None:
        return
    with contextlib.suppress(_ReactorNeeded):
        _parse(_NoReactor(), spec, spec.description)


class AdoptingReactor:
    """
    A reactor whose every way of listening (C{listenTCP}, C{listenUNIX},
    C{adoptStreamPort}) adopts one socket that is already listening
    instead, and which is otherwise the reactor it wraps.

    A worker of C{--workers} builds its endpoints from the same
    descriptions as a single server, with this in place of the reactor:
    whatever an endpoint wraps around the factory (C{haproxy:}'s PROXY
    protocol, TLS) is applied unchanged, and only the socket is the
    parent's.

    @ivar adopted: The port, once adopted.
    """

    def __init__(self, reactor: Any, fd: int) -> None:
        self._reactor = reactor
        self._fd = fd
        self.adopted: IListeningPort | None = None

    def __getattr__(self, name: str) -> Any:
        return getattr(self._reactor, name)

    def adopt(self, factory: IProtocolFactory) -> IListeningPort:
        """
        Listen with C{factory} on the socket, once (its descriptor is
        closed once the reactor holds a copy).
        """
        if self.adopted is not None:
            raise CannotListenError(None, self._fd, "already adopted")
        with socket.socket(fileno=os.dup(self._fd)) as probe:
            family = probe.family
        port: Any = self._reactor.adoptStreamPort(self._fd, family, factory)
        os.close(self._fd)
        # A UNIX port that stops shuts its socket down before closing it
        # (Twisted spares adopted TCP ports that), which for a listening
        # socket ends listening for every process sharing it: a worker
        # that stops alone must only close its copy.
        port._shouldShutdown = False
        # One connection per wake-up, as nginx's workers (multi_accept off):
        # every worker sharing the socket is woken, and one that took all
        # the waiting connections at once (Twisted accepts up to a hundred)
        # would serve a burst of keep-alive clients alone.
        readOne = port.doRead

        def doRead() -> object:
            port.numberAccepts = 1
            return readOne()

        port.doRead = doRead
        if family == socket.AF_UNIX:
            # A UNIX port removes its socket's file when it stops; this one
            # belongs to the parent, and the other workers still use it.
            port.connectionLost = lambda reason: tcp.Port.connectionLost(port, reason)
        self.adopted = port
        return cast(IListeningPort, port)

    def listenTCP(self, port: int, factory: IProtocolFactory, *a: Any, **k: Any) -> Any:
        return self.adopt(factory)

    def listenUNIX(
        self, address: Any, factory: IProtocolFactory, *a: Any, **k: Any
    ) -> Any:
        return self.adopt(factory)

    def adoptStreamPort(self, fd: int, family: Any, factory: IProtocolFactory) -> Any:
        return self.adopt(factory)


@implementer(IStreamServerEndpoint)
class _Adopted:
    """
    The endpoint of a C{systemd:} port in a worker: the socket systemd
    passed the parent, which the parent passed on.
    """

    def __init__(self, reactor: AdoptingReactor) -> None:
        self._reactor = reactor

    def listen(self, factory: IProtocolFactory) -> defer.Deferred[IListeningPort]:
        return defer.execute(self._reactor.adopt, factory)


def endpointFor(
    reactor: object,
    spec: ListenSpec,
    tls: IOpenSSLServerConnectionCreator | None = None,
    adopt: int | None = None,
    proxyTimeout: float = 0,
) -> IStreamServerEndpoint:
    """
    The endpoint for C{spec}.

    @param tls: The TLS settings for a spec with C{tls} files.
    @param adopt: In a worker of C{--workers}, the descriptor of the
        socket the parent opened for C{spec}, listened on instead of a new
        one.
    @param proxyTimeout: Seconds a connection to a C{proxy} spec has to
        send its PROXY header (0 for no limit).

    @raise ValueError: The description is malformed or names an unknown
        endpoint type.
    """
    endpoint: IStreamServerEndpoint
    listener: Any = reactor if adopt is None else AdoptingReactor(reactor, adopt)
    if adopt is not None and (spec.description or "").startswith("systemd:"):
        # systemd's numbers are the parent's; the socket is the one passed.
        endpoint = _Adopted(listener)
    elif spec.description is None:
        endpoint = DualStackEndpoint(listener, spec.port)
    else:
        endpoint = _parse(listener, spec, spec.description)
    if spec.proxy:
        # The PROXY header comes first on the wire, before TLS: the TLS
        # wrapper below wraps the factory this one wraps in turn.
        endpoint = ProxyHeaderEndpoint(endpoint, proxyTimeout, cast(Any, reactor))
    if tls is not None:
        endpoint = wrapServerTLS(tls, endpoint, cast(Any, reactor))
    return endpoint
