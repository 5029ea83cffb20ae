"""
Tests for L{twisted_cgiserve._service.signals}: which handlers are installed
when, what they hand to the reactor, and what they leave alone.
"""

from __future__ import annotations

import os
import signal
from collections.abc import Iterator
from types import FrameType
from typing import Any

import pytest
from twisted.internet.testing import MemoryReactorClock

from twisted_cgiserve._service.signals import (
    installReloadHandlers,
    installStopHandlers,
)

_SIGNALS = (signal.SIGTERM, signal.SIGINT, signal.SIGHUP, signal.SIGUSR1)


class _Clock(MemoryReactorClock):
    """
    A reactor whose calls from a signal handler run on the next advance.
    """

    def callFromThread(self, f: Any, *args: Any, **kw: Any) -> None:
        self.callLater(0, f, *args, **kw)


@pytest.fixture(autouse=True)
def _restore() -> Iterator[None]:
    """
    Leave the test process's handlers as they were.
    """
    saved = {s: signal.getsignal(s) for s in _SIGNALS}
    try:
        yield
    finally:
        for signum, handler in saved.items():
            signal.signal(signum, handler)


def test_stopHandlersOnceRunning() -> None:
    """
    SIGTERM and SIGINT get one handler once the reactor runs (not before:
    the reactor installs its own as it starts), which hands the signal's
    name to the reactor rather than acting in the handler.
    """
    signal.signal(signal.SIGTERM, signal.SIG_DFL)
    clock = _Clock()
    stops: list[str] = []
    installStopHandlers(clock, stops.append)
    assert signal.getsignal(signal.SIGTERM) == signal.SIG_DFL
    clock.run()
    handler = signal.getsignal(signal.SIGTERM)
    assert callable(handler)
    assert signal.getsignal(signal.SIGINT) == handler
    handler(signal.SIGTERM, None)
    assert stops == []
    clock.advance(0)
    assert stops == ["SIGTERM"]
    handler(signal.SIGINT, None)
    clock.advance(0)
    assert stops == ["SIGTERM", "SIGINT"]


@pytest.mark.parametrize("ignored", [signal.SIG_IGN, None])
def test_ignoredStopSignalsLeftAlone(ignored: Any, monkeypatch: Any) -> None:
    """
    A process started with SIGTERM ignored (as under nohup), or whose
    SIGTERM handler Python does not know, keeps SIGTERM and SIGINT so.
    """
    before = signal.getsignal(signal.SIGINT)
    if ignored is None:
        real = signal.getsignal
        monkeypatch.setattr(
            signal,
            "getsignal",
            lambda s: None if s == signal.SIGTERM else real(s),
        )
        installed: list[int] = []
        monkeypatch.setattr(signal, "signal", lambda s, h: installed.append(s))
    else:
        signal.signal(signal.SIGTERM, ignored)
    clock = _Clock()
    installStopHandlers(clock, lambda name: None)
    clock.run()
    if ignored is None:
        assert installed == []
    else:
        assert signal.getsignal(signal.SIGTERM) == signal.SIG_IGN
        assert signal.getsignal(signal.SIGINT) == before


def test_reloadHandlers() -> None:
    """
    Once the reactor runs, SIGHUP and SIGUSR1 each hand their own action to
    the reactor.
    """
    signal.signal(signal.SIGHUP, signal.SIG_DFL)
    signal.signal(signal.SIGUSR1, signal.SIG_DFL)
    clock = _Clock()
    done: list[str] = []
    installReloadHandlers(
        clock, lambda: done.append("hup"), lambda: done.append("usr1")
    )
    assert signal.getsignal(signal.SIGHUP) == signal.SIG_DFL
    clock.run()
    hup, usr1 = signal.getsignal(signal.SIGHUP), signal.getsignal(signal.SIGUSR1)
    assert callable(hup) and callable(usr1)
    hup(signal.SIGHUP, None)
    usr1(signal.SIGUSR1, None)
    assert done == []
    clock.advance(0)
    assert done == ["hup", "usr1"]


def test_reloadHandlersChain() -> None:
    """
    A handler installed before (twistd's log rotation on SIGUSR1) is still
    called, at once, with the signal and frame.
    """
    before: list[tuple[int, FrameType | None]] = []

    def previous(signum: int, frame: FrameType | None) -> None:
        before.append((signum, frame))

    signal.signal(signal.SIGUSR1, previous)
    signal.signal(signal.SIGHUP, signal.SIG_DFL)
    clock = _Clock()
    done: list[str] = []
    installReloadHandlers(
        clock, lambda: done.append("hup"), lambda: done.append("usr1")
    )
    clock.run()
    usr1 = signal.getsignal(signal.SIGUSR1)
    assert callable(usr1) and usr1 is not previous
    usr1(signal.SIGUSR1, None)
    assert before == [(signal.SIGUSR1, None)]
    hup = signal.getsignal(signal.SIGHUP)
    assert callable(hup)
    hup(signal.SIGHUP, None)
    assert before == [(signal.SIGUSR1, None)]
    clock.advance(0)
    assert done == ["usr1", "hup"]


def test_realSignal() -> None:
    """
    Installed for real: a SIGHUP sent to this process reaches the reactor
    instead of ending the process.
    """
    clock = _Clock()
    done: list[str] = []
    installReloadHandlers(clock, lambda: done.append("hup"), lambda: None)
    clock.run()
    os.kill(os.getpid(), signal.SIGHUP)
    clock.advance(0)
    assert done == ["hup"]
