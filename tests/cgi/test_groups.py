"""
Tests for L{twisted_cgiserve._cgi.groups}: the process groups whose leader
has exited are watched, with one scan of C{/proc} for all of them, until
they are empty; and the system calls behind that scan.
"""

from __future__ import annotations

import contextlib
import os
import signal
import subprocess
import time
from collections.abc import Iterator
from types import SimpleNamespace
from typing import Any

import pytest
from twisted.internet.task import Clock
from twisted.logger import LogLevel, globalLogPublisher

from twisted_cgiserve._cgi import groups as _groups
from twisted_cgiserve._cgi.groups import Kernel, ProcessGroups


class ScanKernel(Kernel):
    """
    A kernel whose groups have the members the test says, counting scans.
    """

    def __init__(self) -> None:
        self.members: dict[int, set[int]] = {}
        self.scans: list[set[int]] = []

    def occupied(self, pgids: set[int]) -> set[int]:
        self.scans.append(set(pgids))
        return {pgid for pgid in pgids if self.members.get(pgid)}


class Group:
    """
    A watched group that records when it is found empty.
    """

    def __init__(self, pgid: int, urgent: bool = False) -> None:
        self.pgid = pgid
        self.urgent = urgent
        self.emptied = 0

    def groupEmpty(self) -> None:
        self.emptied += 1


def state(pid: int) -> str | None:
    fields = _groups._stat(pid)
    return None if fields is None else fields[0].decode()


@pytest.fixture
def cleanup() -> Iterator[list[int]]:
    """
    Process groups to kill, whatever the test did.
    """
    pgids: list[int] = []
    yield pgids
    for pgid in pgids:
        with contextlib.suppress(ProcessLookupError):
            os.killpg(pgid, signal.SIGKILL)
        with contextlib.suppress(ChildProcessError):
            os.waitpid(pgid, 0)


def test_watcherForgetsAndStops() -> None:
    """
    L{ProcessGroups} has no timer once nothing is watched.
    """
    clock = Clock()
    kernel = ScanKernel()
    groups = ProcessGroups(clock, kernel)
    group = SimpleNamespace(pgid=5, urgent=False, groupEmpty=lambda: None)
    kernel.members[5] = {6}
    groups.watch(group, 0)
    clock.advance(0)
    assert len(groups) == 1
    assert len(clock.getDelayedCalls()) == 1
    groups.forget(group)
    assert not clock.getDelayedCalls()


def test_oneScanForAllThenEverySecond() -> None:
    """
    Groups watched in the same turn share one scan; an empty group is told
    so and dropped, an occupied one is looked at again a second later.
    """
    clock = Clock()
    kernel = ScanKernel()
    groups = ProcessGroups(clock, kernel)
    busy, idle = Group(10), Group(20)
    kernel.members[10] = {11}
    groups.watch(busy, 0)
    groups.watch(idle, 0)
    clock.advance(0)
    assert kernel.scans == [{10, 20}]
    assert (busy.emptied, idle.emptied) == (0, 1)
    assert len(groups) == 1
    clock.advance(ProcessGroups.interval - 0.01)
    assert len(kernel.scans) == 1
    kernel.members.clear()
    clock.advance(0.01)
    assert kernel.scans[-1] == {10}
    assert busy.emptied == 1
    assert len(groups) == 0
    assert not clock.getDelayedCalls()


def test_urgentGroupLookedAtSooner() -> None:
    """
    While a group is being terminated it is looked at every tenth of a
    second; a nearer look replaces a later one, a later one never delays a
    nearer one.
    """
    clock = Clock()
    kernel = ScanKernel()
    groups = ProcessGroups(clock, kernel)
    calm, urgent = Group(10), Group(20, urgent=True)
    kernel.members.update({10: {11}, 20: {21}})
    groups.watch(calm, 5)
    (call,) = clock.getDelayedCalls()
    assert call.getTime() == 5
    groups.watch(urgent, ProcessGroups.urgentInterval)
    (call,) = clock.getDelayedCalls()
    assert call.getTime() == ProcessGroups.urgentInterval
    groups.watch(calm, 3)
    (call,) = clock.getDelayedCalls()
    assert call.getTime() == ProcessGroups.urgentInterval
    clock.advance(ProcessGroups.urgentInterval)
    assert len(kernel.scans) == 1
    (call,) = clock.getDelayedCalls()
    assert call.getTime() == pytest.approx(2 * ProcessGroups.urgentInterval)


def test_forgetOnlyTheWatchedOne() -> None:
    """
    Forgetting a group that was replaced under the same ID keeps the new
    one watched.
    """
    clock = Clock()
    groups = ProcessGroups(clock, ScanKernel())
    old, new = Group(7), Group(7)
    groups.watch(old, 1)
    groups.watch(new, 1)
    groups.forget(old)
    assert len(groups) == 1
    assert clock.getDelayedCalls()


def test_sharedPerReactor() -> None:
    """
    Every script of one reactor shares one watcher, with the real kernel.
    """
    first, second = Clock(), Clock()
    groups = ProcessGroups.forReactor(first)
    assert ProcessGroups.forReactor(first) is groups
    assert ProcessGroups.forReactor(second) is not groups
    assert groups.clock is first
    assert type(groups.kernel) is Kernel


def test_kernelExitStatusLeavesTheChildUnreaped(cleanup: list[int]) -> None:
    """
    L{Kernel.exitStatus} says L{None} while a child runs, its status once it
    has exited (negative for a signal), and leaves it a zombie until
    L{Kernel.reap}; a PID that is no child of ours raises.
    """
    kernel = Kernel()
    child = subprocess.Popen(["sh", "-c", "read x; exit 4"], stdin=subprocess.PIPE)
    cleanup.append(child.pid)
    assert kernel.exitStatus(child.pid) is None
    assert not kernel.exiting(child.pid)
    assert child.stdin is not None
    child.stdin.close()
    deadline = time.monotonic() + 5
    while (status := kernel.exitStatus(child.pid)) is None:
        assert time.monotonic() < deadline
        time.sleep(0.01)
    assert status == 4
    assert state(child.pid) == "Z"
    assert kernel.exiting(child.pid)
    kernel.reap(child.pid)
    child.returncode = 4
    assert state(child.pid) is None
    assert kernel.exiting(child.pid)
    with pytest.raises(ChildProcessError):
        kernel.exitStatus(child.pid)

    killed = subprocess.Popen(["sleep", "30"], start_new_session=True)
    cleanup.append(killed.pid)
    kernel.killGroup(killed.pid, signal.SIGKILL)
    while (status := kernel.exitStatus(killed.pid)) is None:
        assert time.monotonic() < deadline
        time.sleep(0.01)
    assert status == -signal.SIGKILL
    kernel.reap(killed.pid)
    killed.returncode = status


def test_kernelWithoutProc(monkeypatch: pytest.MonkeyPatch) -> None:
    """
    Without C{/proc} nothing can be found: every group reads as empty, and
    the error is logged once.
    """
    events: list[dict[str, Any]] = []

    def refuse(path: str) -> list[str]:
        raise PermissionError(13, "Permission denied")

    monkeypatch.setattr(_groups.os, "listdir", refuse)
    kernel = Kernel()
    globalLogPublisher.addObserver(events.append)
    try:
        assert kernel.occupied({os.getpid()}) == set()
        assert kernel.occupied({os.getpid()}) == set()
    finally:
        globalLogPublisher.removeObserver(events.append)
    errors = [e for e in events if e.get("log_level") == LogLevel.error]
    assert len(errors) == 1


def test_realScanIgnoresZombiesAndLeaders(cleanup: list[int]) -> None:
    """
    L{Kernel.occupied} finds a group with a live member besides its leader,
    and not one whose only other member is a zombie.
    """
    busy = subprocess.Popen(["sh", "-c", "sleep 30 & wait"], start_new_session=True)
    cleanup.append(busy.pid)
    idle = subprocess.Popen(
        ["sh", "-c", "true & exec sleep 30"], start_new_session=True
    )
    cleanup.append(idle.pid)

    def children(pid: int) -> list[int]:
        path = f"/proc/{pid}/task/{pid}/children"
        with open(path) as f:
            return [int(c) for c in f.read().split()]

    def settled() -> bool:
        zombies = [c for c in children(idle.pid) if state(c) == "Z"]
        return len(children(busy.pid)) == 1 and len(zombies) == 1

    deadline = time.monotonic() + 5
    while not settled():
        assert time.monotonic() < deadline
        time.sleep(0.01)
    kernel = Kernel()
    assert kernel.occupied({busy.pid, idle.pid}) == {busy.pid}
    assert kernel.occupied({idle.pid}) == set()
    assert not kernel.exiting(idle.pid)
    (zombie,) = children(idle.pid)
    assert kernel.exiting(zombie)
    for child in (busy, idle):
        child.kill()
        child.wait()


def test_scansSpacedUnderLoad() -> None:
    """
    Scripts exiting one after the other share scans: a look asked for
    within L{ProcessGroups.spacing} of the last scan waits until that much
    time has passed, and then answers for every group that exited meanwhile.
    """
    clock = Clock()
    kernel = ScanKernel()
    groups = ProcessGroups(clock, kernel)
    first, second, third = Group(10), Group(20), Group(30)
    groups.watch(first, 0)
    clock.advance(0)
    assert kernel.scans == [{10}]
    assert first.emptied == 1
    clock.advance(ProcessGroups.spacing / 4)
    groups.watch(second, 0)
    clock.advance(0)
    clock.advance(ProcessGroups.spacing / 4)
    groups.watch(third, 0)
    clock.advance(0)
    assert kernel.scans == [{10}]
    assert (second.emptied, third.emptied) == (0, 0)
    clock.advance(ProcessGroups.spacing / 2)
    assert kernel.scans == [{10}, {20, 30}]
    assert (second.emptied, third.emptied) == (1, 1)
    assert not clock.getDelayedCalls()
    # Once a quiet spell is longer than the spacing, a look is immediate.
    clock.advance(ProcessGroups.spacing)
    groups.watch(first, 0)
    clock.advance(0)
    assert kernel.scans[-1] == {10}


def test_spacingBoundedWhenTheClockGoesBack() -> None:
    """
    A clock set back after a scan delays the next look by the spacing at
    most, not by how far it went back.
    """
    clock = Clock()
    clock.advance(1000)
    kernel = ScanKernel()
    groups = ProcessGroups(clock, kernel)
    groups.watch(Group(10), 0)
    clock.advance(0)
    clock.rightNow -= 500
    groups.watch(Group(20), 0)
    clock.advance(ProcessGroups.spacing)
    assert kernel.scans == [{10}, {20}]
