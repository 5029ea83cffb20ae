"""
Tests for L{twisted_cgiserve._service.logfile}: a C{--logfile} that is a character
device or a FIFO is written to as it is, never rotated; one that cannot be
a log is a one-line usage error.

The end-to-end tests (a real twistd writing more than twistd's rotation
size) are in test_e2e_disk.
"""

from __future__ import annotations

import os
import socket
import stat
from pathlib import Path

import pytest
from twisted.logger import Logger

from twisted_cgiserve._service import logfile as _logfile
from twisted_cgiserve._service.logfile import nodeLogObserver, openNodeLog

pytestmark = pytest.mark.usefixtures("closeOpenedLog")


def test_regularOrMissingFileLeftToTwistd(tmp_path: Path) -> None:
    """
    A regular file, or a name that does not exist yet, is twistd's own log
    file (rotated as usual).
    """
    existing = tmp_path / "twistd.log"
    existing.write_text("")
    assert openNodeLog(str(existing)) is False
    assert openNodeLog(str(tmp_path / "new.log")) is False
    assert _logfile._opened is None


def test_fifoWrittenWithoutRotation(fifo: tuple[Path, int]) -> None:
    """
    A FIFO is opened, and the observer writes twistd's log format to it.
    """
    path, reader = fifo
    assert openNodeLog(str(path)) is True
    observer = nodeLogObserver()
    Logger(namespace="test", observer=observer).info("hello {who}", who="world")
    data = os.read(reader, 65536).decode()
    assert data.endswith(" [test#info] hello world\n"), data
    assert stat.S_ISFIFO(os.stat(path).st_mode)


def test_systemNameNeverRotated(tmp_path: Path) -> None:
    """
    A name in /proc (or /dev, as /dev/stdout) is written to as it is even
    when it leads to a regular file: rotating would rename the link.
    """
    with (tmp_path / "out.log").open("wb") as f:
        path = f"/proc/self/fd/{f.fileno()}"
        assert openNodeLog(path) is True
        Logger(namespace="test", observer=nodeLogObserver()).info("to the file")
    assert (tmp_path / "out.log").read_text().endswith(" [test#info] to the file\n")


def test_fifoWithoutReader(tmp_path: Path) -> None:
    """
    A FIFO nobody reads is an error at once, rather than a server that
    hangs at start-up waiting for a reader.
    """
    path = tmp_path / "log.fifo"
    os.mkfifo(path)
    with pytest.raises(ValueError) as raised:
        openNodeLog(str(path))
    assert str(raised.value) == (
        f"--logfile {str(path)!r}: cannot open it: no process is reading the FIFO"
    )


def test_unwritableNodes(tmp_path: Path) -> None:
    """
    A directory or a socket cannot be a log; a block device must not be.
    """
    with pytest.raises(ValueError, match="is a directory; give a file"):
        openNodeLog(str(tmp_path))
    path = tmp_path / "log.sock"
    with socket.socket(socket.AF_UNIX) as sock:
        sock.bind(str(path))
        with pytest.raises(ValueError, match="is a socket; give a file"):
            openNodeLog(str(path))


def test_writeErrorsDropLines(tmp_path: Path) -> None:
    """
    A line the node refuses (here a FIFO whose reader left) is dropped
    without an exception: the observer must not fail for every event.
    """
    path = tmp_path / "log.fifo"
    os.mkfifo(path)
    reader = os.open(path, os.O_RDONLY | os.O_NONBLOCK)
    assert openNodeLog(str(path))
    os.close(reader)
    observer = nodeLogObserver()
    Logger(namespace="test", observer=observer).info("lost")


def test_observerNeedsOpenNode() -> None:
    with pytest.raises(RuntimeError):
        nodeLogObserver()
