# -*- test-case-name: tests.service.test_shutdown -*-
"""
Stopping gracefully: on SIGTERM the server stops accepting connections at
once and closes the idle ones, lets requests in progress or arriving (and
their scripts) finish for a grace period, then ends the scripts still
running, and exits with status 0.

Twisted stops the reactor only when every service's C{stopService}
L{Deferred} has fired, so this service's waiting keeps the server serving
what it already accepted, while the listening services have already
closed their ports.
"""

from __future__ import annotations

import contextlib
from typing import Any, Protocol

from twisted.application.service import Service
from twisted.internet.defer import Deferred, TimeoutError
from twisted.internet.error import ReactorNotRunning
from twisted.logger import Logger
from twisted.python.failure import Failure

from twisted_cgiserve._cgi.protocol import KILL_GRACE
from twisted_cgiserve._service.signals import installStopHandlers

__all__ = ["ShutdownService"]

_log = Logger(namespace="cgiserve.shutdown")

# Seconds connections get to send what was written to them before the
# server exits.
_FLUSH_TIME = 5.0
# Seconds between two looks at connections and requests while draining.
_POLL = 0.02


class _Drainable(Protocol):
    inFlight: set[Any]

    def startDraining(self) -> None: ...

    def closeIdleConnections(self) -> None: ...

    def settled(self) -> bool: ...

    def closeConnections(self) -> None: ...

    def connectionsOpen(self) -> int: ...


class _ScriptOwner(Protocol):
    def stopScripts(self) -> Deferred[object]: ...


class ShutdownService(Service):
    """
    Drain a site on shutdown, then end its scripts.
    """

    def __init__(
        self, site: _Drainable, root: _ScriptOwner | None, grace: float, reactor: Any
    ) -> None:
        self._site = site
        self._root = root
        self._grace = grace
        self._reactor = reactor

    def startService(self) -> None:
        super().startService()
        installStopHandlers(self._reactor, self._stopRequested)

    def _stopRequested(self, name: str) -> None:
        """
        C{SIGTERM} or C{SIGINT}: stop the reactor, which stops the services,
        this one draining the site.
        """
        _log.info("Received {signal}; stopping.", signal=name)
        # A second signal while stopping already changes nothing.
        with contextlib.suppress(ReactorNotRunning):
            self._reactor.stop()

    def stopService(self) -> Deferred[None]:
        super().stopService()
        pending = len(self._site.inFlight)
        if pending:
            _log.info(
                "Waiting up to {grace} s for {n} request(s) in progress.",
                grace=self._grace,
                n=pending,
            )
        self._site.startDraining()
        drained = self._settle()
        drained.addErrback(self._graceOver)
        drained.addCallback(lambda _: self._endScripts())
        drained.addCallback(lambda _: self._closeConnections())
        return drained

    def _settle(self) -> Deferred[None]:
        """
        Fire once the site has answered every request in progress or
        arriving and closed its idle connections, or fail with
        L{TimeoutError} when the grace period is over first.
        """
        done: Deferred[None] = Deferred()
        deadline = self._reactor.seconds() + self._grace

        def check() -> None:
            self._site.closeIdleConnections()
            if self._site.settled():
                done.callback(None)
            elif self._reactor.seconds() >= deadline:
                done.errback(TimeoutError())
            else:
                self._reactor.callLater(_POLL, check)

        check()
        return done

    def _graceOver(self, failure: Failure) -> None:
        failure.trap(TimeoutError)
        _log.warn(
            "{n} request(s) still in progress after the grace period; ending them.",
            n=len(self._site.inFlight),
        )

    def _closeConnections(self) -> Deferred[None]:
        """
        Close the connections gracefully and wait (a few seconds at most)
        until their last bytes are sent.
        """
        done: Deferred[None] = Deferred()
        deadline = self._reactor.seconds() + _FLUSH_TIME

        def check() -> None:
            self._site.closeConnections()
            if self._site.connectionsOpen() and self._reactor.seconds() < deadline:
                self._reactor.callLater(_POLL, check)
            else:
                done.callback(None)

        check()
        return done

    def _endScripts(self) -> Deferred[None] | None:
        """
        End whatever scripts still run (SIGTERM, then SIGKILL), so that no
        script outlives the server.
        """
        if self._root is None:
            return None
        ended = self._root.stopScripts()
        ended.addTimeout(KILL_GRACE + 2, self._reactor)
        ended.addErrback(lambda f: f.trap(TimeoutError))
        return ended.addCallback(lambda _: None)
