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
import socket
from typing import Any, NoReturn, cast

from zope.interface import implementer

from twisted.internet import defer
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

__all__ = ["DualStackEndpoint", "checkDescription", "endpointFor"]

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


def endpointFor(
    reactor: object,
    spec: ListenSpec,
    tls: IOpenSSLServerConnectionCreator | None = None,
) -> IStreamServerEndpoint:
    """
    The endpoint for C{spec}.

    @param tls: The TLS settings for a spec with C{tls} files.

    @raise ValueError: The description is malformed or names an unknown
        endpoint type.
    """
    endpoint: IStreamServerEndpoint
    if spec.description is None:
        endpoint = DualStackEndpoint(reactor, spec.port)
    else:
        endpoint = _parse(reactor, spec, spec.description)
    if tls is not None:
        endpoint = wrapServerTLS(tls, endpoint, cast(Any, reactor))
    return endpoint
