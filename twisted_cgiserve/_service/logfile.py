# -*- test-case-name: tests.service.test_logfile -*-
"""
twistd's log written to a C{--logfile} that is not a regular file: a
character device such as C{/dev/null} or a terminal, or a FIFO another
process reads.

twistd writes C{--logfile} through Twisted's C{LogFile}, which rotates by
renaming the file once it has written 1 MB, and again on C{SIGUSR1}. Given
C{/dev/null}, that renames the machine's C{/dev/null} to C{/dev/null.1} and
puts a regular file in its place, which every process on the machine then
writes into. A device or a FIFO is not ours to rename, and it cannot fill a
disk, so there is nothing to rotate: it is opened once and written to as it
is, for as long as the server runs. The same goes for any name in C{/dev} or
C{/proc}, such as C{/dev/stdout}: even when it leads to a regular file,
rotating would rename the link in C{/dev}, not the file.

twistd takes its log observer by name (C{--logger}) and calls it without
arguments, so the node is opened while the options are checked (before
twistd drops privileges, as it opens its own log file) and handed over
here.
"""

from __future__ import annotations

import errno
import os
import stat
from typing import IO, cast

from twisted.logger import ILogObserver, textFileLogObserver

__all__ = ["NODE_LOGGER", "nodeLogObserver", "openNodeLog"]

# What Options hands twistd as its logger (twistd imports it by this name).
NODE_LOGGER = "twisted_cgiserve._service.logfile.nodeLogObserver"


class _NodeFile:
    """
    The text-file interface twistd's log observer writes to, on a descriptor
    open on a device or FIFO.

    A line that cannot be written is dropped: there is nowhere else to say
    so (C{/dev/full} always refuses, a FIFO whose reader left refuses until
    one comes back), and an observer that raises would have Twisted log the
    failure to the same observer again.
    """

    def __init__(self, fd: int) -> None:
        self._fd = fd

    def write(self, text: str) -> None:
        data = memoryview(text.encode("utf-8", "replace"))
        try:
            while data:
                data = data[os.write(self._fd, data) :]
        except OSError:
            pass

    def flush(self) -> None:
        pass

    def close(self) -> None:
        if self._fd >= 0:
            os.close(self._fd)
            self._fd = -1


_opened: _NodeFile | None = None

# Where every name belongs to the system, not to the log's owner.
_SYSTEM = ("/dev/", "/proc/")

# Nodes that are no place for a log: a block device is a disk (appending a
# log onto it destroys what it holds), and a socket cannot be opened.
_UNWRITABLE = {
    stat.S_IFDIR: "a directory",
    stat.S_IFBLK: "a block device",
    stat.S_IFSOCK: "a socket",
}


def _open(path: str) -> int:
    """
    Open a device or FIFO for writing without waiting: a FIFO nobody reads
    is an error now rather than a server that hangs at start-up. Writes then
    block as they would on standard output: log lines are not dropped
    because a reader is briefly slow.
    """
    fd = os.open(
        path,
        os.O_WRONLY | os.O_APPEND | os.O_NOCTTY | os.O_NONBLOCK | os.O_CLOEXEC,
    )
    os.set_blocking(fd, True)
    return fd


def openNodeLog(path: str) -> bool:
    """
    If C{path} names a character device or a FIFO, or is a name in
    C{/dev} or C{/proc}, open it for L{nodeLogObserver}.

    @return: Whether it did: L{False} when C{path} is a regular file (that
        is not in C{/dev} or C{/proc}) or does not exist, which twistd's
        own log file handles.

    @raise ValueError: C{path} names something no log can be written to (a
        directory, a block device, a socket), or the device or FIFO cannot
        be opened; the message names the option and the reason.
    """
    global _opened
    try:
        mode = os.stat(path).st_mode
    except FileNotFoundError:
        return False
    except OSError as e:
        raise ValueError(f"--logfile {path!r}: {e.strerror}") from None
    if stat.S_ISREG(mode) and not os.path.abspath(path).startswith(_SYSTEM):
        return False
    kind = _UNWRITABLE.get(stat.S_IFMT(mode))
    if kind is not None:
        raise ValueError(
            f"--logfile {path!r} is {kind}; give a file, a character device or a FIFO"
        )
    try:
        fd = _open(path)
    except OSError as e:
        reason = (
            "no process is reading the FIFO"
            if e.errno == errno.ENXIO and stat.S_ISFIFO(mode)
            else e.strerror
        )
        raise ValueError(f"--logfile {path!r}: cannot open it: {reason}") from None
    if _opened is not None:
        _opened.close()
    _opened = _NodeFile(fd)
    return True


def nodeLogObserver() -> ILogObserver:
    """
    twistd's log observer for the device or FIFO L{openNodeLog} opened:
    twistd's own format, never rotated.

    @raise RuntimeError: L{openNodeLog} opened nothing.
    """
    if _opened is None:
        raise RuntimeError("no --logfile device or FIFO was opened")
    return textFileLogObserver(cast(IO[str], _opened))
