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
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest
from twisted.logger import Logger
from twisted.scripts.twistd import ServerOptions

from twisted_cgiserve._service import logfile as _logfile
from twisted_cgiserve._service.logfile import nodeLogObserver, openNodeLog


@pytest.fixture(autouse=True)
def _closeOpened() -> Iterator[None]:
    """
    Close what a test opened, and leave the module as it found it.
    """
    before = _logfile._opened
    _logfile._opened = None
    yield
    if _logfile._opened is not None:
        _logfile._opened.close()
    _logfile._opened = before


@pytest.fixture
def fifo(tmp_path: Path) -> Iterator[tuple[Path, int]]:
    """
    A FIFO, and a descriptor reading it.
    """
    path = tmp_path / "log.fifo"
    os.mkfifo(path)
    reader = os.open(path, os.O_RDONLY | os.O_NONBLOCK)
    yield path, reader
    os.close(reader)


def _parseTwistd(*args: str) -> ServerOptions:
    """
    twistd's own command line parsed, with this plugin's options after it.
    """
    config = ServerOptions()
    config.parseOptions(list(args))
    return config


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


# Through twistd's own option parsing, which resolves the logger by name after
# the plugin's options are checked.


def test_twistdUsesNodeLogger(fifo: tuple[Path, int], tmp_path: Path) -> None:
    """
    C{twistd -l FIFO cgiserve} gets this module's observer instead of its
    rotating log file.
    """
    path, _ = fifo
    config = _parseTwistd(
        "-n", "--pidfile=", "-l", str(path), "cgiserve", "--directory", str(tmp_path)
    )
    assert config["logger"] is nodeLogObserver


@pytest.mark.parametrize(
    "extra",
    [["--logger", "twisted_cgiserve.journaldLogObserver"], ["--syslog"]],
)
def test_explicitChoiceWins(
    fifo: tuple[Path, int], tmp_path: Path, extra: list[str]
) -> None:
    """
    A logger or syslog asked for explicitly is left alone.
    """
    path, _ = fifo
    config = _parseTwistd(
        "-n", "--pidfile=", *extra, "-l", str(path),
        "cgiserve", "--directory", str(tmp_path),
    )  # fmt: skip
    assert config["logger"] is not nodeLogObserver
    assert _logfile._opened is None


def test_regularLogFileUnchanged(tmp_path: Path) -> None:
    config = _parseTwistd(
        "-n", "--pidfile=", "-l", str(tmp_path / "twistd.log"),
        "cgiserve", "--directory", str(tmp_path),
    )  # fmt: skip
    assert config["logger"] is None


def test_unwritableLogFileIsUsageError(
    tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    """
    A C{--logfile} that is a directory ends twistd with one line and exit
    status 2, not a traceback once it starts.
    """
    with pytest.raises(SystemExit) as exited:
        _parseTwistd(
            "-n", "--pidfile=", "-l", str(tmp_path),
            "cgiserve", "--directory", str(tmp_path),
        )  # fmt: skip
    assert exited.value.code == 2
    err: Any = capsys.readouterr().err
    assert err.splitlines() == [
        f"twistd cgiserve: error: --logfile {str(tmp_path)!r} is a directory; give "
        "a file, a character device or a FIFO (see 'twistd cgiserve --help')"
    ]
