"""
Tests for L{twisted_cgiserve._service.metricsdir}: the private directory
the workers of C{--workers} write their metrics to, from the parent's
start to its stop.
"""

from __future__ import annotations

import os
import stat
from pathlib import Path

from twisted.application.service import Service
from twisted.internet.defer import Deferred
from twisted.logger import capturedLogs

from twisted_cgiserve._service.metricsdir import ENVIRONMENT_VARIABLE, MetricsDirectory


def test_privateDirectoryForTheServersLife() -> None:
    """
    Started, the service makes a directory only its user may enter, names
    it in the workers' environment, and removes it (whatever the workers
    wrote) when it stops.
    """
    service = MetricsDirectory()
    assert service.environment() == {}
    service.startService()
    path = service.path
    assert path is not None
    try:
        mode = os.stat(path).st_mode
        assert stat.S_IMODE(mode) == 0o700
        assert os.path.basename(path).startswith("cgiserve-metrics-")
        assert service.environment() == {ENVIRONMENT_VARIABLE: path}
        Path(path, "counter_123.db").write_bytes(b"x")
    finally:
        service.stopService()
    assert not os.path.exists(path)
    assert service.path is None
    assert service.environment() == {}


def test_removedAfterItsChildrenStopped(tmp_path: Path) -> None:
    """
    The directory outlives the stop of its children (the supervisor, whose
    workers drain first): it is removed when their stop is over, and it
    exists when they start.
    """
    seen: list[bool] = []
    done: Deferred[None] = Deferred()

    class Child(Service):
        def startService(self) -> None:
            super().startService()
            seen.append(os.path.isdir(tmp_path / "m"))

        def stopService(self) -> Deferred[None]:
            super().stopService()
            return done

    def make() -> str:
        (tmp_path / "m").mkdir()
        return str(tmp_path / "m")

    service = MetricsDirectory(make)
    Child().setServiceParent(service)
    service.startService()
    stopped = service.stopService()
    assert seen == [True]
    assert (tmp_path / "m").is_dir()
    done.callback(None)
    assert not (tmp_path / "m").exists()
    assert _result(stopped) is None


def _result(d: Deferred[None]) -> object:
    results: list[object] = []
    d.addBoth(results.append)
    return results[0]


def test_deadWorkerTold(tmp_path: Path) -> None:
    """
    A worker's end is passed on, with the directory, for the library to
    drop its live gauges; the real bookkeeping removes its live gauge
    files and keeps its counters.
    """
    told: list[tuple[str, int]] = []
    service = MetricsDirectory(lambda: str(tmp_path), lambda d, p: told.append((d, p)))
    service.startService()
    service.workerEnded(4321)
    service.workerEnded(None)
    assert told == [(str(tmp_path), 4321)]
    service.stopService()
    service.workerEnded(99)
    assert told == [(str(tmp_path), 4321)]


def test_realBookkeeping(tmp_path: Path) -> None:
    (tmp_path / "gauge_livesum_77.db").write_bytes(b"")
    (tmp_path / "counter_77.db").write_bytes(b"")
    service = MetricsDirectory(lambda: str(tmp_path))
    service.startService()
    service.workerEnded(77)
    assert sorted(p.name for p in tmp_path.iterdir()) == ["counter_77.db"]
    service.stopService()


def test_bookkeepingFailureIsAWarning(tmp_path: Path) -> None:
    """
    A file that cannot be removed is a warning, not a crash of the parent.
    """

    def fails(directory: str, pid: int) -> None:
        raise PermissionError(13, "Permission denied")

    service = MetricsDirectory(lambda: str(tmp_path), fails)
    service.startService()
    with capturedLogs() as events:
        service.workerEnded(5)
    assert [e["log_level"].name for e in events] == ["warn"]
    service.stopService()
