"""
Tests for L{twisted_cgiserve._service.reload.ReloadService}: what SIGHUP and
SIGUSR1 do, against fake certificates, access log and readiness, and that
the service has the handlers installed once the reactor runs.
"""

from __future__ import annotations

import signal
from collections.abc import Iterator
from typing import Any

import pytest
from twisted.internet.testing import MemoryReactorClock
from twisted.logger import capturedLogs, formatEvent

from twisted_cgiserve._service.reload import ReloadService


class _Certificate:
    def __init__(self, calls: list[str], name: str) -> None:
        self.calls = calls
        self.name = name

    def reload(self) -> bool:
        self.calls.append(f"reload {self.name}")
        return True


class _AccessLog:
    """
    An access log whose reopen does what the test says.
    """

    path = "/var/log/access.log"

    def __init__(self, calls: list[str]) -> None:
        self.calls = calls
        self.outcome: bool | OSError = True

    def reopen(self) -> bool:
        self.calls.append("reopen")
        if isinstance(self.outcome, OSError):
            raise self.outcome
        return self.outcome


class _Readiness:
    def __init__(self, calls: list[str]) -> None:
        self.calls = calls

    def reloading(self) -> None:
        self.calls.append("reloading")

    def reloaded(self) -> None:
        self.calls.append("reloaded")


class _Clock(MemoryReactorClock):
    def callFromThread(self, f: Any, *args: Any, **kw: Any) -> None:
        self.callLater(0, f, *args, **kw)


def _service(
    clock: Any = None, readiness: bool = True
) -> tuple[ReloadService, list[str], _AccessLog]:
    calls: list[str] = []
    log = _AccessLog(calls)
    service = ReloadService(
        clock or MemoryReactorClock(),
        [_Certificate(calls, "a"), _Certificate(calls, "b")],  # type: ignore[list-item]
        log,  # type: ignore[arg-type]
        _Readiness(calls) if readiness else None,  # type: ignore[arg-type]
    )
    return service, calls, log


def _lines(events: Any) -> list[str]:
    return [formatEvent(e) for e in events if e["log_namespace"] == "cgiserve.reload"]


def test_reload() -> None:
    """
    SIGHUP's work: systemd told of the reload around it, every certificate
    reloaded, then the access log reopened.
    """
    service, calls, _ = _service()
    with capturedLogs() as events:
        service.reload()
    assert calls == ["reloading", "reload a", "reload b", "reopen", "reloaded"]
    assert _lines(events) == [
        "Received SIGHUP; reloading.",
        "Access log /var/log/access.log reopened.",
    ]


def test_reloadWithoutReadiness() -> None:
    service, calls, _ = _service(readiness=False)
    service.reload()
    assert calls == ["reload a", "reload b", "reopen"]


def test_reopenNothingToReopen() -> None:
    """
    An access log that is not a file (standard output, twistd's log) is
    not reopened, and nothing is said.
    """
    service, calls, log = _service()
    log.outcome = False
    with capturedLogs() as events:
        service.reopenLogs()
    assert calls == ["reopen"]
    assert _lines(events) == []


def test_reopenFails() -> None:
    """
    A log that cannot be reopened is logged, and the old file kept.
    """
    service, _, log = _service()
    log.outcome = PermissionError(13, "Permission denied")
    with capturedLogs() as events:
        service.reopenLogs()
    assert _lines(events) == [
        "Cannot reopen the access log /var/log/access.log: Permission denied; "
        "still writing to the old file."
    ]


@pytest.fixture
def _signals() -> Iterator[None]:
    saved = {s: signal.getsignal(s) for s in (signal.SIGHUP, signal.SIGUSR1)}
    try:
        yield
    finally:
        for signum, handler in saved.items():
            signal.signal(signum, handler)


@pytest.mark.usefixtures("_signals")
def test_signals() -> None:
    """
    Once the reactor runs, SIGHUP reloads and SIGUSR1 only reopens the log,
    each in the reactor's thread.
    """
    clock = _Clock()
    service, calls, _ = _service(clock)
    service.startService()
    clock.run()
    hup, usr1 = signal.getsignal(signal.SIGHUP), signal.getsignal(signal.SIGUSR1)
    assert callable(hup) and callable(usr1)
    usr1(signal.SIGUSR1, None)
    clock.advance(0)
    assert calls == ["reopen"]
    hup(signal.SIGHUP, None)
    clock.advance(0)
    assert calls == [
        "reopen", "reloading", "reload a", "reload b", "reopen", "reloaded",
    ]  # fmt: skip


def test_reloadAuthFile() -> None:
    """
    With --auth-file, SIGHUP reads it again, after the certificates and
    before systemd is told the reload is done.
    """
    calls: list[str] = []
    service = ReloadService(
        MemoryReactorClock(),
        [_Certificate(calls, "a")],  # type: ignore[list-item]
        _AccessLog(calls),  # type: ignore[arg-type]
        _Readiness(calls),  # type: ignore[arg-type]
        checker=_Certificate(calls, "htpasswd"),  # type: ignore[arg-type]
    )
    service.reload()
    assert calls == ["reloading", "reload a", "reload htpasswd", "reopen", "reloaded"]
