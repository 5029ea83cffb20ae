# -*- test-case-name: tests.service.test_journald -*-
"""
Log lines for the systemd journal: no timestamp (the journal stamps every
line itself, more precisely), and each line prefixed with its syslog
priority as C{<N>}, which journald reads from a service's standard output
(sd-daemon(3)), so C{journalctl -p warning} finds the warnings.

Under systemd, with standard output connected to the journal
(C{JOURNAL_STREAM} names it) and no other logger asked for, C{twistd -n
cgiserve} uses this format by itself; C{twistd
--logger=twisted_cgiserve.journaldLogObserver} asks for it explicitly.
"""

from __future__ import annotations

import os
import sys
from typing import IO

from twisted.logger import (
    FileLogObserver,
    ILogObserver,
    LogEvent,
    LogLevel,
    eventAsText,
)

__all__ = [
    "JOURNALD_LOGGER",
    "formatForJournal",
    "journaldLogObserver",
    "logsToJournal",
]

# What twistd's --logger takes, by name (twistd imports it itself).
JOURNALD_LOGGER = "twisted_cgiserve.journaldLogObserver"

_PRIORITIES = {
    LogLevel.debug: 7,
    LogLevel.info: 6,
    LogLevel.warn: 4,
    LogLevel.error: 3,
    LogLevel.critical: 2,
}


def formatForJournal(event: LogEvent) -> str | None:
    """
    An event as journal lines: C{<priority>[system] text}, one prefix per
    line so that a traceback stays one entry per line at the event's
    priority.
    """
    text = eventAsText(event, includeTimestamp=False, includeSystem=False)
    if not text:
        return None
    priority = _PRIORITIES.get(event.get("log_level", LogLevel.info), 6)
    # The priority says the level, so the system is just the name (twistd's
    # text format appends "#level" to it).
    system = event.get("log_system") or event.get("log_namespace") or "-"
    prefix = f"<{priority}>[{system}] "
    return "".join(f"{prefix}{line}\n" for line in text.splitlines())


def journaldLogObserver(outFile: IO[str] | None = None) -> ILogObserver:
    """
    A log observer writing journal-friendly lines to standard output (the
    factory twistd's C{--logger} calls).
    """
    return FileLogObserver(outFile or sys.stdout, formatForJournal)


def logsToJournal(environ: dict[str, str] | None = None, fd: int = 1) -> bool:
    """
    Whether C{fd} is the journal's stream: systemd sets C{JOURNAL_STREAM} to
    C{DEVICE:INODE} of the socket it connects standard output and error to.
    A redirect (C{> file}) or pipe in between makes this false.
    """
    environ = dict(os.environ if environ is None else environ)
    device, _, inode = environ.get("JOURNAL_STREAM", "").partition(":")
    if not (device.isdigit() and inode.isdigit()):
        return False
    try:
        st = os.fstat(fd)
    except OSError:
        return False
    return (st.st_dev, st.st_ino) == (int(device), int(inode))
