"""
The journal's log format: priorities journald understands, no timestamps.
"""

from __future__ import annotations

import io
import os
from pathlib import Path

from twisted.logger import LogLevel
from twisted.python.failure import Failure

from twisted_cgiserve import journaldLogObserver
from twisted_cgiserve._service.journald import formatForJournal, logsToJournal


def event(level: LogLevel, text: str, **kw: object) -> dict[str, object]:
    return {
        "log_format": text,
        "log_level": level,
        "log_time": 1e9,
        "log_system": "cgiserve.cgi",
        **kw,
    }


def test_priorities() -> None:
    """
    Each level becomes the syslog priority journald files it under.
    """
    for level, priority in [
        (LogLevel.debug, 7),
        (LogLevel.info, 6),
        (LogLevel.warn, 4),
        (LogLevel.error, 3),
        (LogLevel.critical, 2),
    ]:
        assert formatForJournal(event(level, "x")) == f"<{priority}>[cgiserve.cgi] x\n"


def test_noTimestamp() -> None:
    line = formatForJournal(event(LogLevel.info, "Serving"))
    assert line is not None
    assert "2001" not in line


def test_tracebackLinesKeepPriority() -> None:
    """
    Every line of a traceback carries the error priority, so none of them
    shows up as an info message of its own.
    """
    try:
        1 / 0  # noqa: B018
    except ZeroDivisionError:
        failure = Failure()
    text = formatForJournal(event(LogLevel.critical, "Boom", log_failure=failure))
    assert text is not None
    lines = text.splitlines()
    assert len(lines) > 3
    assert all(line.startswith("<2>") for line in lines)
    assert "ZeroDivisionError" in text


def test_unformattableEventWritesNothing() -> None:
    assert formatForJournal({"log_level": LogLevel.info}) is None


def test_observerWrites() -> None:
    out = io.StringIO()
    journaldLogObserver(out)(event(LogLevel.warn, "{n} left", n=3))
    assert out.getvalue() == "<4>[cgiserve.cgi] 3 left\n"


def test_detectsJournalStream(tmp_path: Path) -> None:
    """
    JOURNAL_STREAM names the device and inode of the journal's socket; only
    a standard output that is that very file counts.
    """
    target = tmp_path / "out"
    with target.open("w") as f:
        st = os.fstat(f.fileno())
        here = {"JOURNAL_STREAM": f"{st.st_dev}:{st.st_ino}"}
        assert logsToJournal(here, f.fileno())
        assert not logsToJournal({"JOURNAL_STREAM": "1:2"}, f.fileno())
        assert not logsToJournal({"JOURNAL_STREAM": "junk"}, f.fileno())
        assert not logsToJournal({}, f.fileno())
