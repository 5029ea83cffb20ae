# -*- test-case-name: tests.service.test_listen -*-
"""
Where the server listens: C{--port} values turned into endpoints, and the
service that binds them.

A bare number means what it meant to http.server: every interface, IPv6 and
IPv4 alike where the host has IPv6, or the C{--bind} address. Anything else
is a Twisted endpoint description, so C{unix:}, C{tls:}, C{systemd:} and
the rest work unchanged.

With C{--tls-cert}, bare numbers and C{systemd:} sockets speak TLS (a socket
unit says where to listen, not how). C{ssl:} descriptions keep Twisted's
syntax but get this server's TLS settings (TLS 1.2+, HTTP/2, reload on
SIGHUP) instead of Twisted's load-once defaults.
"""

from __future__ import annotations

import atexit
import contextlib
import errno
import ipaddress
import logging
import os
import socket
import sys
from collections.abc import Callable
from dataclasses import dataclass
from typing import Any, cast

from zope.interface import implementer

from twisted.application.service import Service
from twisted.internet import defer
from twisted.internet.endpoints import (
    TCP4ServerEndpoint,
    TCP6ServerEndpoint,
    quoteStringArgument,
    serverFromString,
    wrapServerTLS,
)
from twisted.internet.error import CannotListenError, ReactorNotRunning
from twisted.internet.interfaces import (
    IListeningPort,
    IOpenSSLServerConnectionCreator,
    IProtocolFactory,
    IStreamServerEndpoint,
)
from twisted.logger import Logger
from twisted.python.failure import Failure

from twisted_cgiserve._service.tls import TLSFiles

__all__ = [
    "ListenSpec",
    "ListeningService",
    "endpointFor",
    "exitAfterStop",
    "parsePort",
]

_log = Logger(namespace="cgiserve.listen")


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
    """

    description: str | None
    port: int = 0
    tls: TLSFiles | None = None
    given: str | None = None

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


def _splitDescription(text: str) -> tuple[list[str], dict[str, str]]:
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
    positional, keywords = _splitDescription(value.removeprefix("ssl:"))
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


def parsePort(value: str, bind: str | None, tls: TLSFiles | None = None) -> ListenSpec:
    """
    Interpret one C{--port} value.

    @param tls: The C{--tls-cert} files, if given.

    @raise ValueError: With a message fit for the command line.
    """
    port = _portNumber(value)
    if port is None:
        # --bind only qualifies bare numbers: a description says where.
        if value.startswith("ssl:"):
            return _fromSSL(value)
        if value.startswith("systemd:"):
            return ListenSpec(value, tls=tls)
        return ListenSpec(value)
    if bind is not None:
        return ListenSpec(_bindDescription(port, bind), tls=tls)
    return ListenSpec(None, port, tls=tls)


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
        endpoint = _DualStackEndpoint(reactor, spec.port)
    else:
        try:
            endpoint = serverFromString(reactor, spec.description)
        except Exception as e:
            # serverFromString raises ValueError, KeyError, IndexError or
            # TypeError depending on the parser: all are configuration
            # errors. The systemd parser's lookup errors say nothing useful.
            why: object = e
            if spec.description.startswith("systemd:") and isinstance(
                e, (KeyError, IndexError)
            ):
                why = (
                    "systemd passed no such socket (is the .socket unit "
                    "active, and its FileDescriptorName= this name?)"
                )
            raise ValueError(f"bad --port {spec}: {why}") from None
    if tls is not None:
        endpoint = wrapServerTLS(tls, endpoint, cast(Any, reactor))
    return endpoint


def _address(port: IListeningPort, secure: bool) -> str:
    """
    Where a port listens, as a URL where it has one (or a socket's path).
    """
    address = port.getHost()
    host = getattr(address, "host", None)
    if host is None:
        name = getattr(address, "name", address)
        if isinstance(name, bytes):
            name = name.decode("utf-8", "replace")
        return str(name)
    urlHost = f"[{host}]" if ":" in host else host
    scheme = "https" if secure else "http"
    return f"{scheme}://{urlHost}:{getattr(address, 'port', 0)}/"


def _describe(port: IListeningPort, secure: bool) -> str:
    """
    http.server's start-up line for a listening port.
    """
    scheme = "HTTPS" if secure else "HTTP"
    where = _address(port, secure)
    address = port.getHost()
    host = getattr(address, "host", None)
    if host is None:
        return f"Serving {scheme} on {where}"
    return (
        f"Serving {scheme} on {host} port {getattr(address, 'port', 0)} ({where}) ..."
    )


# The status the process exits with once twistd has finished, if a port
# failed while the reactor ran; and whether the handler that does it is
# installed.
_exitStatus: list[int] = []
_exitHandler: list[bool] = []


def _exitWithStatus() -> None:
    """
    At interpreter exit, after twistd has stopped the reactor, removed its
    pidfile and logged its last line: exit with the status a failed port
    asked for.

    twistd has no way to be told an exit status (it only re-raises the
    signal that stopped the reactor), and the reactor logs and swallows
    every exception, C{SystemExit} included. So the process ends here, the
    last thing it does: the standard streams and the C{logging} handlers
    (whose own exit handler was registered earlier, so runs later) are
    flushed first.
    """
    if not _exitStatus:
        return
    logging.shutdown()
    for stream in (sys.stdout, sys.stderr, sys.__stdout__, sys.__stderr__):
        try:
            if stream is not None:
                stream.flush()
        except (OSError, ValueError):
            pass
    os._exit(_exitStatus[0])


def _prepareExit() -> None:
    """
    Install L{_exitWithStatus}, once, early in the process's life: exit
    handlers run last registered first, and this one must run last.
    """
    if not _exitHandler:
        atexit.register(_exitWithStatus)
        _exitHandler.append(True)


def exitAfterStop(status: int, reactor: Any) -> None:
    """
    Stop the reactor (services stop as on SIGTERM: requests in progress on
    the other ports get the grace period) and make the process exit with
    C{status}. Only the first call counts.
    """
    _prepareExit()
    if _exitStatus:
        return
    _exitStatus.append(status)
    if reactor.running:
        _stop(reactor)
    else:
        reactor.callWhenRunning(_stop, reactor)


def _stop(reactor: Any) -> None:
    # Perhaps stopping already (SIGTERM).
    with contextlib.suppress(ReactorNotRunning):
        reactor.stop()


class ListeningService(Service):
    """
    Listen on one endpoint while running.

    A port that cannot be bound ends the process with a one-line message on
    standard error and exit status 1: twistd would otherwise print a
    traceback or, when the endpoint's L{Deferred} fails later (an endpoint
    that binds asynchronously, as third-party endpoint plugins may: Twisted's
    own bind at once), log an "Unhandled error" and keep running without
    the port, a silent failure under systemd.
    """

    def __init__(
        self,
        spec: ListenSpec,
        endpoint: IStreamServerEndpoint,
        factory: IProtocolFactory,
        reactor: Any = None,
        exitWith: Callable[[int], None] | None = None,
    ) -> None:
        """
        @param reactor: Stopped when the endpoint fails asynchronously
            (default: the global reactor).
        @param exitWith: Called with the exit status when the endpoint fails
            asynchronously (default: L{exitAfterStop}).
        """
        self.spec = spec
        self.endpoint = endpoint
        self.factory = factory
        self.port: IListeningPort | None = None
        self._reactor = reactor
        self._exitWith = exitWith
        self._listening: defer.Deferred[Any] | None = None
        self._outcome: IListeningPort | Failure | None = None
        self._waiting: list[defer.Deferred[IListeningPort]] = []
        self._synchronous = False
        self._stopping = False

    def privilegedStartService(self) -> None:
        super().privilegedStartService()
        if self._exitWith is None:
            _prepareExit()
        self._stopping = False
        self._outcome = None
        self._synchronous = True
        try:
            try:
                listening: defer.Deferred[Any] = self.endpoint.listen(self.factory)
            except Exception:
                listening = defer.fail()
            self._listening = listening.addCallbacks(self._listened, self._failed)
        finally:
            self._synchronous = False
        if isinstance(self._outcome, Failure):
            # Before the reactor runs: twistd lets this end the process with
            # status 1, and nothing has started yet.
            raise SystemExit(1)

    def _listened(self, port: IListeningPort) -> None:
        self.port = port
        self._outcome = port
        # Said one reactor turn after start-up, once every start-up trigger
        # (the graceful SIGTERM handler among them) has run: whoever takes
        # this line as "ready" (tests, an admin's script) may stop the server
        # at once, and must get a graceful stop, not death by the signal.
        reactor = self._reactor
        if reactor is None:
            from twisted.internet import reactor  # noqa: PLC0415
        reactor.callWhenRunning(
            reactor.callLater,
            0,
            _log.info,
            "{line}",
            line=_describe(port, self.spec.secure),
        )
        waiting, self._waiting = self._waiting, []
        for d in waiting:
            d.callback(port)

    def _failed(self, failure: Failure) -> None:
        if self._stopping and failure.check(defer.CancelledError):
            return
        self._outcome = failure
        reason = failure.value
        why: object = reason
        if isinstance(reason, CannotListenError) and reason.socketError:
            why = getattr(reason.socketError, "strerror", None) or reason.socketError
        message = f"twistd cgiserve: cannot listen on {self.spec}: {why}"
        # The real standard error: twistd has redirected sys.stderr into its
        # log by now, and this line is for the person at the terminal.
        stderr = sys.__stderr__ or sys.stderr
        stderr.write(message + "\n")
        stderr.flush()
        waiting, self._waiting = self._waiting, []
        for d in waiting:
            d.errback(failure)
        if self._synchronous:
            return
        # The reactor runs: log it too (the terminal may be long gone), and
        # stop it; the process then exits 1.
        _log.error("{message}; stopping.", message=message)
        if self._exitWith is not None:
            self._exitWith(1)
        else:
            reactor = self._reactor
            if reactor is None:
                from twisted.internet import reactor  # noqa: PLC0415
            exitAfterStop(1, reactor)

    def whenListening(self) -> defer.Deferred[IListeningPort]:
        """
        A L{Deferred} that fires with the port once it listens, or fails
        with the reason it could not.
        """
        if isinstance(self._outcome, Failure):
            return defer.fail(self._outcome)
        if self._outcome is not None:
            return defer.succeed(self._outcome)
        if self._listening is None:
            return defer.fail(RuntimeError("not started"))
        d: defer.Deferred[IListeningPort] = defer.Deferred()
        self._waiting.append(d)
        return d

    def address(self) -> str:
        """
        Where this service listens, for status lines.
        """
        if self.port is None:
            return str(self.spec)
        return _address(self.port, self.spec.secure)

    def startService(self) -> None:
        super().startService()
        if self._listening is None:
            self.privilegedStartService()

    def stopService(self) -> defer.Deferred[None] | None:
        super().stopService()
        self._stopping = True
        if self.port is not None:
            port, self.port = self.port, None
            self._outcome = None
            return port.stopListening()
        if self._listening is not None and self._outcome is None:
            # Still binding: give up on it.
            self._listening.cancel()
        return None
