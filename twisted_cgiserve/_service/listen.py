# -*- test-case-name: tests.service.test_listen -*-
"""
Listening on one endpoint while the server runs: Twisted's
L{StreamServerEndpointService}, which says where it listens as http.server
did ("Serving HTTP on ... port ..."), and for which a port that cannot be
bound ends the process.

A port that cannot be bound ends the process with a one-line message on
standard error and exit status 1: twistd would otherwise print a traceback
or, when the endpoint's L{Deferred} fails later (an endpoint that binds
asynchronously, as third-party endpoint plugins may: Twisted's own bind at
once), log an "Unhandled error" and keep running without the port, a silent
failure under systemd.
"""

from __future__ import annotations

import sys
from collections.abc import Callable
from typing import Any

from zope.interface import implementer

from twisted.application.internet import StreamServerEndpointService
from twisted.application.service import Service
from twisted.internet import defer
from twisted.internet.error import CannotListenError
from twisted.internet.interfaces import (
    IListeningPort,
    IProtocolFactory,
    IStreamServerEndpoint,
)
from twisted.logger import Logger
from twisted.python.failure import Failure

from twisted_cgiserve._service.exitstatus import exitAfterStop, prepareExit
from twisted_cgiserve._service.ports import ListenSpec

__all__ = ["ListeningService"]

_log = Logger(namespace="cgiserve.listen")


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


def _globalReactor() -> Any:
    from twisted.internet import reactor  # noqa: PLC0415

    return reactor


@implementer(IStreamServerEndpoint)
class _Reporting:
    """
    An endpoint whose C{listen} tells a L{ListeningService} how it went
    before L{StreamServerEndpointService} sees the outcome: the service
    reports a failure itself, so Twisted's errback (which would only log it)
    never gets one.
    """

    def __init__(self, endpoint: IStreamServerEndpoint, service: ListeningService):
        self._endpoint = endpoint
        self._service = service

    def listen(self, factory: IProtocolFactory) -> defer.Deferred[Any]:
        try:
            listening: defer.Deferred[Any] = self._endpoint.listen(factory)
        except Exception:
            listening = defer.fail()
        return self._service._watch(listening)


class ListeningService(StreamServerEndpointService):
    """
    Listen on one endpoint while running, say where once listening, and end
    the process (status 1) when the endpoint cannot listen.

    @ivar spec: Where this service listens, as configured.
    @ivar port: The listening port, once listening.
    """

    def __init__(
        self,
        spec: ListenSpec,
        endpoint: IStreamServerEndpoint,
        factory: IProtocolFactory,
        reactor: Any = None,
        *,
        exitWith: Callable[[int], None] | None = None,
        commandName: str = "twistd cgiserve",
    ) -> None:
        """
        @param reactor: Stopped when the endpoint fails asynchronously
            (default: the global reactor).
        @param commandName: The command the error line names (as the user
            ran it: C{twistd cgiserve}, C{python -m twisted_cgiserve}).
        @param exitWith: Called with the exit status when the endpoint fails
            asynchronously (default: L{exitAfterStop}).
        """
        super().__init__(_Reporting(endpoint, self), factory)
        self.spec = spec
        self._commandName = commandName
        self.port: IListeningPort | None = None
        self._reactor = reactor
        self._exitWith = exitWith
        self._listening: defer.Deferred[Any] | None = None
        self._outcome: IListeningPort | Failure | None = None
        self._waiting: list[defer.Deferred[IListeningPort]] = []
        self._synchronous = False
        self._stopping = False

    def privilegedStartService(self) -> None:
        if self._exitWith is None:
            prepareExit()
        self._stopping = False
        self._outcome = None
        self._synchronous = True
        try:
            super().privilegedStartService()
        finally:
            self._synchronous = False
        if isinstance(self._outcome, Failure):
            # Before the reactor runs: twistd lets this end the process with
            # status 1, and nothing has started yet.
            raise SystemExit(1)

    def _watch(self, listening: defer.Deferred[Any]) -> defer.Deferred[Any]:
        self._listening = listening
        return listening.addCallbacks(self._listened, self._failed)

    def _listened(self, port: IListeningPort) -> IListeningPort:
        self.port = port
        self._outcome = port
        # Said one reactor turn after start-up, once every start-up trigger
        # (the graceful SIGTERM handler among them) has run: whoever takes
        # this line as "ready" (tests, an admin's script) may stop the server
        # at once, and must get a graceful stop, not death by the signal.
        reactor = self._reactor if self._reactor is not None else _globalReactor()
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
        # StreamServerEndpointService stops this port when stopping.
        return port

    def _failed(self, failure: Failure) -> None:
        if self._stopping and failure.check(defer.CancelledError):
            return
        self._outcome = failure
        reason = failure.value
        why: object = reason
        if isinstance(reason, CannotListenError) and reason.socketError:
            socketError = reason.socketError
            if isinstance(socketError, OSError) and socketError.strerror:
                why = socketError.strerror
            else:
                why = socketError
        message = f"{self._commandName}: cannot listen on {self.spec}: {why}"
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
            reactor = self._reactor if self._reactor is not None else _globalReactor()
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

    def stopService(self) -> defer.Deferred[None] | None:
        self._stopping = True
        if self._listening is None:
            # Never started: nothing to stop listening on.
            Service.stopService(self)
            return None
        self.port = None
        self._outcome = None
        # Stops the port, or gives up on an endpoint still binding.
        stopped: defer.Deferred[None] = super().stopService()
        return stopped
