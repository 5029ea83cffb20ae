# -*- test-case-name: tests.e2e.test_deploy -*-
"""
Signals an admin (or logrotate, or certbot's deploy hook) sends a running
server, as nginx and lighttpd take them:

  - C{SIGHUP}: read the TLS certificates and keys again, and reopen the
    access log; connections in progress are not touched.
  - C{SIGUSR1}: reopen the access log (logrotate's C{postrotate}).

Handlers are installed once the reactor runs (it installs its own first) and
only hand the work to the reactor, which does it between two events. They
stay installed while the server stops: a SIGHUP from logrotate during the
shutdown grace period must not kill the server with requests in flight
(the default action of SIGHUP and SIGUSR1 is to terminate).
"""

from __future__ import annotations

import signal
from collections.abc import Callable, Sequence
from types import FrameType
from typing import Any

from twisted.application.service import Service
from twisted.logger import Logger

from twisted_cgiserve._http.accesslog import AccessLog
from twisted_cgiserve._service.systemd import ReadinessService
from twisted_cgiserve._service.tls import ReloadingServerCreator

__all__ = ["ReloadService"]

_log = Logger(namespace="cgiserve.reload")

_Handler = Callable[[int, FrameType | None], Any] | int | None


class ReloadService(Service):
    """
    Reload certificates on SIGHUP, reopen the access log on SIGHUP and
    SIGUSR1.
    """

    def __init__(
        self,
        reactor: Any,
        certificates: Sequence[ReloadingServerCreator],
        accessLog: AccessLog,
        readiness: ReadinessService | None = None,
    ) -> None:
        self._reactor = reactor
        self._certificates = list(certificates)
        self._accessLog = accessLog
        self._readiness = readiness
        self._previous: dict[int, _Handler] = {}

    def startService(self) -> None:
        super().startService()
        self._reactor.callWhenRunning(self._install)

    def _install(self) -> None:
        for signum in (signal.SIGHUP, signal.SIGUSR1):
            self._previous[signum] = signal.signal(signum, self._received)

    def _received(self, signum: int, frame: FrameType | None) -> None:
        self._reactor.callFromThread(self._handle, signum)
        previous = self._previous.get(signum)
        # twistd rotates its own log file on SIGUSR1 when it writes one.
        if callable(previous):
            previous(signum, frame)

    def _handle(self, signum: int) -> None:
        if signum == signal.SIGHUP:
            self.reload()
        else:
            self.reopenLogs()

    def reload(self) -> None:
        """
        What SIGHUP does.
        """
        _log.info("Received SIGHUP; reloading.")
        if self._readiness is not None:
            self._readiness.reloading()
        for certificate in self._certificates:
            certificate.reload()
        self.reopenLogs()
        if self._readiness is not None:
            self._readiness.reloaded()

    def reopenLogs(self) -> None:
        """
        Reopen the access log file, so that after logrotate renamed it the
        server writes to a new file of the same name.
        """
        try:
            reopened = self._accessLog.reopen()
        except OSError as e:
            _log.error(
                "Cannot reopen the access log {path}: {error}; still writing "
                "to the old file.",
                path=self._accessLog.path,
                error=e.strerror,
            )
            return
        if reopened:
            _log.info("Access log {path} reopened.", path=self._accessLog.path)
