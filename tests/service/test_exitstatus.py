"""
Tests for L{twisted_cgiserve._service.exitstatus}: the status the process
exits with after twistd stops, when a port failed while the reactor ran.
"""

from __future__ import annotations

import atexit
import os
from collections.abc import Callable

import pytest
from twisted.internet.testing import MemoryReactorClock

from twisted_cgiserve._service import exitstatus as _exitstatus
from twisted_cgiserve._service.exitstatus import exitAfterStop, prepareExit


@pytest.fixture
def status(monkeypatch: pytest.MonkeyPatch) -> list[int]:
    """
    The module's exit status, fresh, with its handler counted as installed
    so that no test installs the real one in the test process.
    """
    status: list[int] = []
    monkeypatch.setattr(_exitstatus, "_exitHandler", [True])
    monkeypatch.setattr(_exitstatus, "_exitStatus", status)
    return status


def test_exitAfterStop(monkeypatch: pytest.MonkeyPatch, status: list[int]) -> None:
    """
    L{exitAfterStop} stops a running reactor (or one once it runs) and, at
    interpreter exit, ends the process with the status after flushing.
    """
    clock = MemoryReactorClock()
    exitAfterStop(1, clock)
    assert status == [1] and not clock.hasStopped
    clock.run()
    assert clock.hasStopped
    exited: list[int] = []
    monkeypatch.setattr(os, "_exit", exited.append)
    _exitstatus._exitWithStatus()
    assert exited == [1]
    status.clear()
    _exitstatus._exitWithStatus()
    assert exited == [1]


def test_runningReactorStoppedAtOnce(status: list[int]) -> None:
    """
    A running reactor is stopped at once; a second call (a second failing
    port) neither changes the status nor stops it again.
    """
    clock = MemoryReactorClock()
    clock.run()
    exitAfterStop(3, clock)
    assert clock.hasStopped and status == [3]
    exitAfterStop(1, clock)
    assert status == [3]


def test_stoppingAlready(status: list[int]) -> None:
    """
    A reactor already stopping (SIGTERM came first) is no error.
    """
    clock = MemoryReactorClock()
    clock.run()
    clock.stop()
    clock.running = True
    exitAfterStop(1, clock)
    assert status == [1]


def test_prepareExitOnce(monkeypatch: pytest.MonkeyPatch) -> None:
    """
    The exit handler is registered once however often it is asked for.
    """
    registered: list[Callable[[], None]] = []
    monkeypatch.setattr(_exitstatus, "_exitHandler", [])
    monkeypatch.setattr(atexit, "register", registered.append)
    prepareExit()
    prepareExit()
    assert registered == [_exitstatus._exitWithStatus]
