"""
What the end-to-end tests measure of a running server process: memory,
descriptors and children, read from /proc.
"""

from __future__ import annotations

import contextlib
import os
import re
import threading
from pathlib import Path

__all__ = [
    "RssSampler",
    "childrenOf",
    "deletedFiles",
    "fdCount",
    "processState",
    "rssOf",
]


def rssOf(pid: int) -> int:
    """
    The resident set size of process C{pid}, in bytes.
    """
    status = Path(f"/proc/{pid}/status").read_text()
    match = re.search(r"^VmRSS:\s+(\d+) kB", status, re.MULTILINE)
    assert match, status
    return int(match.group(1)) * 1024


def fdCount(pid: int) -> int:
    """
    How many descriptors process C{pid} has open.
    """
    return len(os.listdir(f"/proc/{pid}/fd"))


def childrenOf(pid: int) -> list[int]:
    """
    The process IDs of C{pid}'s children (of all its threads).
    """
    children = []
    for task in Path(f"/proc/{pid}/task").iterdir():
        children += [int(c) for c in (task / "children").read_text().split()]
    return children


def deletedFiles(pid: int) -> list[str]:
    """
    The deleted files process C{pid} still holds open (anonymous temporary
    files show as 'TMPDIR/#123 (deleted)').
    """
    found = []
    for fd in Path(f"/proc/{pid}/fd").iterdir():
        with contextlib.suppress(FileNotFoundError):
            target = os.readlink(fd)
            if target.endswith(" (deleted)"):
                found.append(target)
    return found


def processState(pid: int) -> str | None:
    """
    The state letter of a process (C{Z} for a zombie), or L{None} when it is
    gone.
    """
    try:
        data = Path(f"/proc/{pid}/stat").read_text()
    except (FileNotFoundError, ProcessLookupError):
        return None
    return data.rsplit(")", 1)[1].split()[0]


class RssSampler:
    """
    Sample a process's RSS every few milliseconds in a thread; keep the peak.
    """

    def __init__(self, pid: int) -> None:
        self.pid = pid
        self.baseline = rssOf(pid)
        self.peak = self.baseline
        self._stop = threading.Event()
        self._thread = threading.Thread(target=self._run, daemon=True)

    def _run(self) -> None:
        while not self._stop.wait(0.02):
            try:
                self.peak = max(self.peak, rssOf(self.pid))
            except (FileNotFoundError, ProcessLookupError):
                return

    def __enter__(self) -> RssSampler:
        self._thread.start()
        return self

    def __exit__(self, *exc: object) -> None:
        self._stop.set()
        self._thread.join(5)
        self.peak = max(self.peak, rssOf(self.pid))

    @property
    def growth(self) -> int:
        return self.peak - self.baseline
