# -*- test-case-name: tests.cgi.test_groups -*-
"""
Knowing when nothing is left of a script's process group, for every script
at once.

Whether a group still has members once its leader has exited cannot be
asked of the kernel directly (C{kill(-pgid, 0)} succeeds because of the
zombie leader itself), so L{ProcessGroups} scans C{/proc}: its numeric
entries and one C{getpgid} call each, no file read (only a process found in
a watched group has its state read, to tell a zombie from a live process).
One scan answers for every watched group at once. Measured here: about
250 us with 90 processes, 3 to 5 ms with 1,100 (2.5 to 5 us per process). A
scan runs only for groups whose leader has exited: once right after the
exit, then every second while members linger (every tenth of a second while
the group is being terminated). Scans are at least a hundredth of a second
apart, so under load one scan answers for every script that exited since
the last.

L{Kernel} holds the system calls behind the scan and behind the anchor that
L{twisted_cgiserve._cgi.process.ScriptProcess} keeps (its unreaped leader),
so tests can substitute a fake.
"""

from __future__ import annotations

import os
from typing import Any, Protocol
from weakref import WeakKeyDictionary

from twisted.logger import Logger

__all__ = ["Kernel", "ProcessGroups", "WatchedGroup"]

_log = Logger(namespace="cgiserve.cgi")

# The kernel's flag for a task that has begun to exit (include/linux/sched.h),
# field 9 of /proc/PID/stat.
_PF_EXITING = 0x4


def _stat(pid: int) -> list[bytes] | None:
    """
    The fields of C{/proc/PID/stat} after the command name (state first),
    or L{None} when there is no such process.
    """
    try:
        with open(f"/proc/{pid}/stat", "rb") as f:
            data = f.read()
    except OSError:
        return None
    return data[data.rfind(b")") + 1 :].split()


class Kernel:
    """
    The system calls behind the anchor and the group scan (tests substitute
    a fake).
    """

    _noProc = False

    def exitStatus(self, pid: int) -> int | None:
        """
        The child's return code (negative: killed by that signal) if it has
        exited, L{None} if it runs; it is left unreaped.

        @raise ChildProcessError: It is no child of ours (any more).
        """
        result = os.waitid(os.P_PID, pid, os.WEXITED | os.WNOHANG | os.WNOWAIT)
        if result is None:
            return None
        if result.si_code == os.CLD_EXITED:
            return result.si_status
        return -result.si_status

    def exiting(self, pid: int) -> bool:
        """
        Whether the child is on its way out (or already a zombie): its exit
        may have closed its output before it could be waited for.
        """
        fields = _stat(pid)
        if fields is None or len(fields) < 7:
            return True
        return fields[0] in (b"Z", b"X") or bool(int(fields[6]) & _PF_EXITING)

    def reap(self, pid: int) -> None:
        """
        Reap a child known to have exited.
        """
        os.waitpid(pid, 0)

    def killGroup(self, pgid: int, signum: int) -> None:
        os.killpg(pgid, signum)

    def occupied(self, pgids: set[int]) -> set[int]:
        """
        Those of C{pgids} (groups whose leader has exited, and is left
        unreaped) that still have a live process other than their leader.
        """
        found: set[int] = set()
        try:
            names = os.listdir("/proc")
        except OSError as e:
            # Without /proc nothing can be known: reap at once, as if empty
            # (what is left then runs on, but is never signalled blindly).
            if not self._noProc:
                self._noProc = True
                _log.error(
                    "Cannot list /proc ({error}): what CGI scripts leave "
                    "running cannot be found or ended",
                    error=e.strerror or e,
                )
            return found
        for name in names:
            if not name.isdigit():
                continue
            pid = int(name)
            if pid in pgids:
                # A leader: the anchor itself.
                continue
            try:
                pgid = os.getpgid(pid)
            except OSError:
                continue
            if pgid in pgids and pgid not in found:
                # A zombie holds nothing and waits for its own parent.
                fields = _stat(pid)
                if fields is not None and fields[0] not in (b"Z", b"X"):
                    found.add(pgid)
                    if len(found) == len(pgids):
                        break
        return found


class WatchedGroup(Protocol):
    """
    A process group as L{ProcessGroups} watches it.
    """

    @property
    def pgid(self) -> int:
        """
        The group's ID (its leader's PID, left unreaped).
        """

    @property
    def urgent(self) -> bool:
        """
        Whether the group is being terminated (looked at more often).
        """

    def groupEmpty(self) -> None:
        """
        Nothing but the leader is left of the group: it may be reaped.
        """


_byReactor: WeakKeyDictionary[Any, ProcessGroups] = WeakKeyDictionary()


class ProcessGroups:
    """
    The process groups whose leader has exited but may still have members,
    watched until they have none: one scan of C{/proc} per look answers for
    all of them.

    @cvar interval: Seconds between two looks while members linger.
    @cvar urgentInterval: The same while a group is being terminated.
    @cvar spacing: The least time between two scans. Under a steady load
        scripts exit one after the other, each asking for a look at once:
        spaced, one scan answers for all that exited meanwhile (a scan
        costs a tenth of a trivial CGI request's server time or more), and
        a group is reaped at most this much later.
    @ivar kernel: The system calls to use.
    """

    interval = 1.0
    urgentInterval = 0.1
    spacing = 0.01

    def __init__(self, clock: Any, kernel: Kernel | None = None) -> None:
        self.clock = clock
        self.kernel = kernel if kernel is not None else Kernel()
        self._watched: dict[int, WatchedGroup] = {}
        self._call: Any = None
        self._lastLook = float("-inf")

    @classmethod
    def forReactor(cls, reactor: Any) -> ProcessGroups:
        """
        The watcher shared by every script of C{reactor}.
        """
        groups = _byReactor.get(reactor)
        if groups is None:
            groups = _byReactor[reactor] = cls(reactor)
        return groups

    def watch(self, group: WatchedGroup, delay: float) -> None:
        """
        Look at C{group} within C{delay} seconds, then until it is empty;
        C{group.groupEmpty()} is called when it is.
        """
        self._watched[group.pgid] = group
        self._lookWithin(delay)

    def forget(self, group: WatchedGroup) -> None:
        if self._watched.get(group.pgid) is group:
            del self._watched[group.pgid]
        if not self._watched and self._call is not None:
            self._call.cancel()
            self._call = None

    def __len__(self) -> int:
        return len(self._watched)

    def _lookWithin(self, delay: float) -> None:
        # Never more than the spacing, should the clock go back.
        wait = min(self.spacing, self._lastLook + self.spacing - self.clock.seconds())
        delay = max(delay, wait)
        if self._call is not None:
            if self._call.getTime() <= self.clock.seconds() + delay:
                return
            self._call.cancel()
        self._call = self.clock.callLater(delay, self._look)

    def _look(self) -> None:
        self._call = None
        self._lastLook = self.clock.seconds()
        groups = list(self._watched.values())
        occupied = self.kernel.occupied({group.pgid for group in groups})
        for group in groups:
            if group.pgid not in occupied and self._watched.get(group.pgid) is group:
                del self._watched[group.pgid]
                group.groupEmpty()
        if self._watched:
            urgent = any(group.urgent for group in self._watched.values())
            self._lookWithin(self.urgentInterval if urgent else self.interval)
