# -*- test-case-name: tests.service.test_exitstatus -*-
"""
The status the process exits with when the server stops because something
failed while the reactor ran (a port that could not be bound late).

twistd has no way to be told an exit status (it only re-raises the signal
that stopped the reactor), and the reactor logs and swallows every
exception, C{SystemExit} included. So the status is kept here and the
process ends with it at interpreter exit, the last thing it does, after
twistd has stopped the reactor, removed its pidfile and logged its last
line.
"""

from __future__ import annotations

import atexit
import contextlib
import logging
import os
import sys
from typing import Any

from twisted.internet.error import ReactorNotRunning

__all__ = ["exitAfterStop", "prepareExit"]

# The status the process exits with once twistd has finished, if one was
# asked for; and whether the handler that does it is installed.
_exitStatus: list[int] = []
_exitHandler: list[bool] = []


def _exitWithStatus() -> None:
    """
    At interpreter exit: exit with the status asked for, if any, once the
    standard streams and the C{logging} handlers (whose own exit handler
    was registered earlier, so runs later) are flushed.
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


def prepareExit() -> None:
    """
    Install the exit handler, once, early in the process's life (as a port
    starts listening): exit handlers run last registered first, and this
    one must run last.
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
    prepareExit()
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
