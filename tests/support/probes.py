"""
What the end-to-end tests measure of processes: memory, descriptors,
children, states and process groups, read from /proc. The one place tests
read /proc about a process (scripts under test read their own).
"""

from __future__ import annotations

import contextlib
import os
import re
import subprocess
import threading
from pathlib import Path

__all__ = [
    "RssSampler",
    "alive",
    "childrenOf",
    "deletedFiles",
    "fdCount",
    "gone",
    "groupGone",
    "groupMembers",
    "openFiles",
    "processStat",
    "processState",
    "processesIn",
    "rssOf",
    "scriptRunning",
    "statusField",
]


def statusField(pid: int, name: str) -> list[str]:
    """
    The values of the line C{name} of C{/proc/PID/status} (C{"Uid"}:
    real, effective, saved and filesystem user IDs).
    """
    status = Path(f"/proc/{pid}/status").read_text()
    match = re.search(rf"^{re.escape(name)}:\s+(.*)$", status, re.MULTILINE)
    assert match, status
    return match.group(1).split()


def rssOf(pid: int) -> int:
    """
    The resident set size of process C{pid}, in bytes.
    """
    value, unit = statusField(pid, "VmRSS")
    assert unit == "kB", unit
    return int(value) * 1024


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


def openFiles(pid: int) -> list[str]:
    """
    What process C{pid} has open (the targets of its descriptors), sorted.
    """
    found = []
    for fd in Path(f"/proc/{pid}/fd").iterdir():
        with contextlib.suppress(FileNotFoundError):
            found.append(os.readlink(fd))
    return sorted(found)


def processStat(pid: int) -> list[str] | None:
    """
    The fields of C{/proc/PID/stat} after the command name (state, parent
    pid, process group, ...), or L{None} when the process is gone.
    """
    try:
        data = Path(f"/proc/{pid}/stat").read_text()
    except (FileNotFoundError, ProcessLookupError):
        return None
    return data.rsplit(")", 1)[1].split()


def processState(pid: int) -> str | None:
    """
    The state letter of a process (C{Z} for a zombie), or L{None} when it is
    gone.
    """
    fields = processStat(pid)
    return None if fields is None else fields[0]


def alive(pid: int) -> bool:
    """
    Whether C{pid} runs (exists and is no zombie).
    """
    return processState(pid) not in (None, "Z")


def gone(pid: int, reaper: int | None = None) -> bool:
    """
    Whether C{pid} has ended. An orphan's zombie waits for init (here a
    sandbox supervisor that can take a moment): it counts as gone unless
    its parent is C{reaper} (the server), whose job reaping it is.
    """
    fields = processStat(pid)
    return fields is None or (fields[0] == "Z" and int(fields[1]) != reaper)


def groupMembers(pgid: int) -> list[tuple[int, str, int]]:
    """
    The processes of process group C{pgid}: (pid, state, parent pid).
    """
    members = []
    for entry in Path("/proc").iterdir():
        if not entry.name.isdigit():
            continue
        fields = processStat(int(entry.name))
        if fields is not None and int(fields[2]) == pgid:
            members.append((int(entry.name), fields[0], int(fields[1])))
    return members


def groupGone(pgid: int, reaper: int | None = None) -> bool:
    """
    Whether no process is left in process group C{pgid}; zombies count as
    gone as in L{gone}.
    """
    try:
        os.killpg(pgid, 0)
    except ProcessLookupError:
        return True
    return all(
        state == "Z" and parent != reaper for _, state, parent in groupMembers(pgid)
    )


def processesIn(directory: Path) -> list[tuple[int, str | None]]:
    """
    Processes anywhere whose working directory is C{directory} (scripts run
    in theirs), zombies aside: (pid, state).
    """
    found: list[tuple[int, str | None]] = []
    for entry in Path("/proc").iterdir():
        if not entry.name.isdigit():
            continue
        with contextlib.suppress(OSError):
            if os.readlink(entry / "cwd") == str(directory):
                state = processState(int(entry.name))
                if state not in (None, "Z"):
                    found.append((int(entry.name), state))
    return found


def scriptRunning(path: Path) -> bool:
    """
    Whether a process runs the script at C{path} (its command line names it).
    """
    found = subprocess.run(["pgrep", "-f", str(path)], capture_output=True)
    return found.returncode == 0


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
