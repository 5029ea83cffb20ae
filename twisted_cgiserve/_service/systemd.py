# -*- test-case-name: tests.service.test_systemd -*-
"""
systemd's service notification protocol (sd_notify(3)), in-process: a
datagram of C{KEY=value} lines sent to the socket named by C{NOTIFY_SOCKET}.

It is a few lines of socket code, so it is written here rather than taken
as a dependency (C{systemd-python} needs libsystemd and a compiler; the
C{sdnotify} package is unmaintained). Without C{NOTIFY_SOCKET} every call
does nothing, so the same server runs unchanged outside systemd.
"""

from __future__ import annotations

import os
import socket
import time
from collections.abc import Iterable
from typing import Any

from twisted.application.service import Service
from twisted.internet.defer import Deferred, DeferredList
from twisted.internet.task import LoopingCall
from twisted.logger import Logger

__all__ = ["Notifier", "ReadinessService", "monotonicUsec"]

_log = Logger(namespace="cgiserve.systemd")


class Notifier:
    """
    A connection to the service manager's notification socket, if there is
    one.
    """

    def __init__(self, environ: dict[str, str] | None = None) -> None:
        environ = dict(os.environ if environ is None else environ)
        address = environ.get("NOTIFY_SOCKET", "")
        self.address: str | bytes | None = None
        if address.startswith("@"):
            # The abstract namespace: a leading NUL byte instead of "@".
            self.address = b"\0" + address[1:].encode("utf-8")
        elif address.startswith("/"):
            self.address = address
        self.watchdogInterval: float | None = None
        usec = environ.get("WATCHDOG_USEC", "")
        pid = environ.get("WATCHDOG_PID", "")
        if usec.isdigit() and int(usec) > 0 and (not pid or pid == str(os.getpid())):
            self.watchdogInterval = int(usec) / 1_000_000

    @property
    def enabled(self) -> bool:
        return self.address is not None

    def notify(self, *fields: str) -> bool:
        """
        Send C{fields} (C{"READY=1"}, C{"STATUS=..."}) as one message.

        @return: Whether the message was sent. A service manager that went
            away is no reason to stop serving, so failures are only logged.
        """
        if self.address is None:
            return False
        message = "\n".join(fields).encode("utf-8")
        try:
            with socket.socket(socket.AF_UNIX, socket.SOCK_DGRAM) as sock:
                sock.connect(self.address)
                sock.sendall(message)
        except OSError as e:
            _log.warn(
                "Cannot notify systemd ({address}): {error}",
                address=os.environ.get("NOTIFY_SOCKET"),
                error=e.strerror or e,
            )
            return False
        return True


def monotonicUsec() -> str:
    """
    CLOCK_MONOTONIC in microseconds, the field systemd compares
    C{RELOADING=1} against.
    """
    return f"MONOTONIC_USEC={time.clock_gettime_ns(time.CLOCK_MONOTONIC) // 1000}"


class ReadinessService(Service):
    """
    Tell systemd the server is ready once every port listens
    (C{Type=notify}), what it serves (C{STATUS=}, shown by C{systemctl
    status}), when it reloads and when it stops; and keep its watchdog fed
    when the unit asks for one (C{WatchdogSec=}).

    Added last to the service tree: it starts after every port is bound and
    stops first, so C{STOPPING=1} goes out as soon as shutdown begins.
    """

    def __init__(
        self,
        listening: Iterable[Any],
        reactor: Any,
        notifier: Notifier | None = None,
    ) -> None:
        """
        @param listening: The listening services, each with a C{whenListening}
            method and a C{port} once listening.
        """
        self._listening = list(listening)
        self._reactor = reactor
        self.notifier = notifier or Notifier()
        self._watchdog: LoopingCall | None = None

    def startService(self) -> None:
        super().startService()
        if not self.notifier.enabled:
            return
        self._reactor.callWhenRunning(self._whenListening)

    def _whenListening(self) -> None:
        waiting = DeferredList(
            [service.whenListening() for service in self._listening],
            fireOnOneErrback=True,
            consumeErrors=True,
        )
        waiting.addCallback(lambda _: self._ready())
        # A port that fails ends the process (ListeningService); nothing to
        # tell systemd but the exit.
        waiting.addErrback(lambda _: None)

    def status(self) -> str:
        """
        The one line C{systemctl status} shows while serving.
        """
        addresses = ", ".join(service.address() for service in self._listening)
        return f"Serving on {addresses}" if addresses else "Serving"

    def _ready(self) -> None:
        self.notifier.notify(
            "READY=1", f"STATUS={self.status()}", f"MAINPID={os.getpid()}"
        )
        interval = self.notifier.watchdogInterval
        if interval is not None and self._watchdog is None:
            self._watchdog = LoopingCall(self.notifier.notify, "WATCHDOG=1")
            self._watchdog.clock = self._reactor
            self._watchdog.start(interval / 2, now=True)

    def reloading(self) -> None:
        """
        A reload (SIGHUP) begins; L{reloaded} must follow. Once stopping,
        nothing is said: READY=1 would tell systemd the server serves again.
        """
        if self.running:
            self.notifier.notify("RELOADING=1", monotonicUsec(), "STATUS=Reloading")

    def reloaded(self) -> None:
        if self.running:
            self.notifier.notify("READY=1", f"STATUS={self.status()}")

    def stopService(self) -> Deferred[None] | None:
        super().stopService()
        if self._watchdog is not None and self._watchdog.running:
            self._watchdog.stop()
        self._watchdog = None
        self.notifier.notify("STOPPING=1", "STATUS=Stopping")
        return None
