# -*- test-case-name: tests.service.test_reload -*-
"""
Signals an admin (or logrotate, or certbot's deploy hook) sends a running
server, as nginx and lighttpd take them:

  - C{SIGHUP}: read the TLS certificates and keys and the C{--auth-file}
    again, and reopen the access log; connections in progress are not
    touched.
  - C{SIGUSR1}: reopen the access log (logrotate's C{postrotate}).

L{twisted_cgiserve._service.signals} installs the handlers, once the
reactor runs, and hands the work to the reactor.
"""

from __future__ import annotations

from collections.abc import Sequence
from typing import Any

from twisted.application.service import Service
from twisted.logger import Logger

from twisted_cgiserve._http.accesslog import AccessLog
from twisted_cgiserve._http.credentials import HtpasswdChecker
from twisted_cgiserve._service.signals import installReloadHandlers
from twisted_cgiserve._service.systemd import ReadinessService
from twisted_cgiserve._service.tls import ReloadingServerCreator

__all__ = ["ReloadService"]

_log = Logger(namespace="cgiserve.reload")


class ReloadService(Service):
    """
    Reload certificates and the htpasswd file on SIGHUP, reopen the access
    log on SIGHUP and SIGUSR1.
    """

    def __init__(
        self,
        reactor: Any,
        certificates: Sequence[ReloadingServerCreator],
        accessLog: AccessLog,
        readiness: ReadinessService | None = None,
        *,
        checker: HtpasswdChecker | None = None,
    ) -> None:
        """
        @param checker: The users of C{--auth-file}, if given.
        """
        self._reactor = reactor
        self._certificates = list(certificates)
        self._accessLog = accessLog
        self._readiness = readiness
        self._checker = checker

    def startService(self) -> None:
        super().startService()
        installReloadHandlers(self._reactor, self.reload, self.reopenLogs)

    def reload(self) -> None:
        """
        What SIGHUP does.
        """
        _log.info("Received SIGHUP; reloading.")
        if self._readiness is not None:
            self._readiness.reloading()
        for certificate in self._certificates:
            certificate.reload()
        if self._checker is not None:
            self._checker.reload()
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
