# -*- test-case-name: tests.service.test_signals -*-
"""
Every signal handler the server installs, in one place:

  - C{SIGTERM} and C{SIGINT}: stop gracefully (the shutdown service), and
    exit with status 0;
  - C{SIGHUP}: reload the TLS certificates and reopen the access log (the
    reload service);
  - C{SIGUSR1}: reopen the access log (logrotate's C{postrotate}), then do
    what was done before (twistd rotates its own log file on it).

Handlers are installed once the reactor runs: it installs its own
C{SIGTERM} and C{SIGINT} handlers as it starts, and these replace them. A
handler only hands the work to the reactor, which does it between two
events. The C{SIGHUP} and C{SIGUSR1} handlers stay installed while the
server stops: a C{SIGHUP} from logrotate during the shutdown grace period
must not kill the server with requests in flight (the default action of
both is to terminate).
"""

from __future__ import annotations

import signal
from collections.abc import Callable
from types import FrameType
from typing import Any

__all__ = ["installReloadHandlers", "installStopHandlers"]

_Handler = Callable[[int, FrameType | None], Any] | int | None


def installStopHandlers(reactor: Any, stop: Callable[[str], object]) -> None:
    """
    Once C{reactor} runs, make C{SIGTERM} and C{SIGINT} call C{stop} with
    the signal's name, in the reactor's thread, instead of the reactor's own
    handlers: those stop it the same way but have twistd die of the signal
    at the end, while a stop that was asked for and done in order is a
    success, exit status 0.

    A process started with C{SIGTERM} ignored (as under C{nohup}) keeps
    both signals as they were.
    """

    def install() -> None:
        if signal.getsignal(signal.SIGTERM) in (signal.SIG_IGN, None):
            return

        def received(signum: int, frame: FrameType | None) -> None:
            reactor.callFromThread(stop, signal.Signals(signum).name)

        for signum in (signal.SIGTERM, signal.SIGINT):
            signal.signal(signum, received)

    reactor.callWhenRunning(install)


def installReloadHandlers(
    reactor: Any, hangUp: Callable[[], object], user1: Callable[[], object]
) -> None:
    """
    Once C{reactor} runs, make C{SIGHUP} call C{hangUp} and C{SIGUSR1} call
    C{user1}, in the reactor's thread; a handler that was installed before
    (twistd's log rotation on C{SIGUSR1}) is still called, at once.
    """

    def install() -> None:
        for signum, action in ((signal.SIGHUP, hangUp), (signal.SIGUSR1, user1)):
            _chain(reactor, signum, action)

    reactor.callWhenRunning(install)


def _chain(reactor: Any, signum: signal.Signals, action: Callable[[], object]) -> None:
    previous: _Handler = None

    def received(number: int, frame: FrameType | None) -> None:
        reactor.callFromThread(action)
        if callable(previous):
            previous(number, frame)

    previous = signal.signal(signum, received)
