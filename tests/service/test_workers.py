"""
Tests for L{twisted_cgiserve._service.workers}: the worker's side of
C{--workers}.
"""

from __future__ import annotations

import contextlib
import os
import subprocess
import sys
from collections.abc import Iterator
from typing import Any

import pytest
from twisted.internet import main as _main
from twisted.internet.testing import MemoryReactor
from twisted.logger import LogLevel, eventFromJSON
from twisted.python.failure import Failure

from twisted_cgiserve._service import workers as _workers
from twisted_cgiserve._service.workers import (
    WORKER_VARIABLES,
    WorkerSetup,
    parseWorkerCount,
    watchParent,
    workerArguments,
    workerEnvironment,
    workerLogObserver,
)


@pytest.mark.parametrize(("value", "count"), [("1", 1), ("2", 2), (" 16 ", 16)])
def test_workerCount(value: str, count: int) -> None:
    assert parseWorkerCount(value) == count


@pytest.mark.parametrize("value", ["auto", "AUTO"])
def test_autoIsOnePerCPU(value: str) -> None:
    assert parseWorkerCount(value, lambda: 6) == 6


def test_autoOnThisMachine() -> None:
    """
    The CPUs this process may use: its affinity.
    """
    assert parseWorkerCount("auto") == len(os.sched_getaffinity(0))


def test_cpuCountWithoutProcessCPUCount(monkeypatch: pytest.MonkeyPatch) -> None:
    """
    Before Python 3.13, the affinity; without one, the machine's count.
    """
    monkeypatch.delattr(os, "process_cpu_count", raising=False)
    assert _workers._cpuCount() == len(os.sched_getaffinity(0))
    monkeypatch.delattr(os, "sched_getaffinity")
    assert _workers._cpuCount() == (os.cpu_count() or 1)


def test_cpuCountWithProcessCPUCount(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setattr(os, "process_cpu_count", lambda: None, raising=False)
    assert _workers._cpuCount() == 1
    monkeypatch.setattr(os, "process_cpu_count", lambda: 3, raising=False)
    assert _workers._cpuCount() == 3


@pytest.mark.parametrize("value", ["0", "-1", "two", "1.5", "", "0x2"])
def test_badWorkerCount(value: str) -> None:
    with pytest.raises(ValueError) as e:
        parseWorkerCount(value)
    assert str(e.value) == f"--workers {value!r} is not a whole number from 1 or 'auto'"


def test_tooManyWorkers() -> None:
    assert parseWorkerCount("1024") == 1024
    with pytest.raises(ValueError, match="at most 1024"):
        parseWorkerCount("1025")


def test_notAWorker() -> None:
    assert WorkerSetup.fromEnviron({"PATH": "/bin"}) is None


def test_setupFromEnvironment() -> None:
    setup = WorkerSetup.fromEnviron(
        {
            "CGISERVE_WORKER": "2",
            "CGISERVE_WORKER_FDS": "4,5",
            "CGISERVE_WORKER_LOG": "3",
        }
    )
    assert setup == WorkerSetup(2, (4, 5), 3)
    assert setup is not None
    assert setup.listenFD(1, 2) == 5


def test_setupFromTheProcessEnvironment(monkeypatch: pytest.MonkeyPatch) -> None:
    for name in WORKER_VARIABLES:
        monkeypatch.delenv(name, raising=False)
    assert WorkerSetup.fromEnviron() is None


@pytest.mark.parametrize(
    "environ",
    [
        {"CGISERVE_WORKER": "1"},
        {
            "CGISERVE_WORKER": "x",
            "CGISERVE_WORKER_FDS": "4",
            "CGISERVE_WORKER_LOG": "3",
        },
        {
            "CGISERVE_WORKER": "1",
            "CGISERVE_WORKER_FDS": "a",
            "CGISERVE_WORKER_LOG": "3",
        },
    ],
)
def test_malformedSetup(environ: dict[str, str]) -> None:
    with pytest.raises(ValueError, match="malformed worker environment"):
        WorkerSetup.fromEnviron(environ)


def test_otherNumberOfSockets() -> None:
    """
    A worker given as many sockets as ports; anything else is an error.
    """
    with pytest.raises(ValueError, match="given 1 listening sockets for 2 ports"):
        WorkerSetup(1, (4,), 3).listenFD(0, 2)


def test_arguments() -> None:
    """
    This interpreter, the launcher, the front (or twistd's), the words.
    """
    args = workerArguments(["--port", "80"], None)
    assert args[:2] == [sys.executable, "-c"]
    assert args[3:] == ["twistd-cgiserve", "--port", "80"]
    assert workerArguments([], "cgiserve")[3:] == ["cgiserve"]


def test_environment() -> None:
    """
    The parent's environment less systemd's messages to the parent alone,
    plus the contract and the server-wide services' variables.
    """
    env = workerEnvironment(
        {
            "PATH": "/bin",
            "NOTIFY_SOCKET": "/run/systemd/notify",
            "WATCHDOG_USEC": "1000",
            "WATCHDOG_PID": "1",
            "LISTEN_FDNAMES": "web",
        },
        2,
        3,
        "/tmp/x/notify-2",
        {"CGISERVE_SPAWNER": "/run/s"},
    )
    assert env == {
        "PATH": "/bin",
        "LISTEN_FDNAMES": "web",
        "NOTIFY_SOCKET": "/tmp/x/notify-2",
        "CGISERVE_WORKER": "2",
        "CGISERVE_WORKER_FDS": "4,5,6",
        "CGISERVE_WORKER_LOG": "3",
        "CGISERVE_SPAWNER": "/run/s",
    }
    assert "NOTIFY_SOCKET" not in workerEnvironment({"NOTIFY_SOCKET": "x"}, 1, 1, None)


@pytest.fixture
def pipe() -> Iterator[tuple[int, int]]:
    read, write = os.pipe()
    yield read, write
    for fd in (read, write):
        with contextlib.suppress(OSError):
            os.close(fd)


def test_logObserverWritesJSONLines(pipe: tuple[int, int]) -> None:
    """
    Each event is one line of JSON the parent turns back into the event.
    """
    read, write = pipe
    observer = workerLogObserver(write)
    observer(
        {
            "log_format": "{a}",
            "a": 1,
            "log_level": LogLevel.info,
            "log_namespace": "x",
            "log_time": 2.0,
        }
    )
    observer({"log_format": "two", "log_level": LogLevel.warn, "log_time": 3.0})
    first, second, rest = os.read(read, 65536).split(b"\n")
    assert rest == b""
    assert eventFromJSON(first.decode())["a"] == 1
    assert eventFromJSON(second.decode())["log_level"] == LogLevel.warn


def test_logObserverWithoutParent(pipe: tuple[int, int]) -> None:
    """
    A parent that is gone makes the worker's log lines vanish, never raise.
    """
    read, write = pipe
    os.close(read)
    workerLogObserver(write)({"log_format": "x", "log_time": 1.0})


class RunningReactor(MemoryReactor):
    def __init__(self) -> None:
        super().__init__()
        self.running = True
        self.stops = 0

    def stop(self) -> None:
        self.stops += 1
        self.running = False


def test_watchParent(pipe: tuple[int, int]) -> None:
    """
    The worker reads its standard input, which the parent never writes to;
    its end means the parent died, and the worker stops (once).
    """
    read, write = pipe
    reactor = RunningReactor()
    watchParent(reactor, read)
    [watch] = reactor.readers
    assert watch.fileno() == read
    assert watch.logPrefix() == "parent"
    assert watch.doRead() is None
    os.write(write, b"x")
    assert watch.doRead() is None
    os.close(write)
    assert watch.doRead() is _main.CONNECTION_DONE
    watch.connectionLost(Failure(_main.CONNECTION_DONE))
    watch.connectionLost(Failure(_main.CONNECTION_DONE))
    assert reactor.stops == 1


def test_watchParentReadError(pipe: tuple[int, int]) -> None:
    read, _ = pipe
    reactor = RunningReactor()
    watchParent(reactor, read)
    [watch] = reactor.readers
    os.close(read)
    assert watch.doRead() is _main.CONNECTION_LOST


def test_mainOutsideAWorker() -> None:
    """
    The worker's entry point refuses to run where no parent set it up.
    """
    env = {k: v for k, v in os.environ.items() if k not in WORKER_VARIABLES}
    result = subprocess.run(
        workerArguments(["--port", "0"], None),
        env=env,
        capture_output=True,
        text=True,
        timeout=30,
        check=False,
    )
    assert result.returncode == 1
    assert "not started as a worker" in result.stderr


def test_launcherClaimsSystemdSockets() -> None:
    """
    The launcher claims as many of systemd's sockets as the parent had
    names for, before Twisted reads them, so that systemd: ports parse.
    """
    env = {
        **os.environ,
        "LISTEN_FDNAMES": "web:admin",
    }
    code = _workers._LAUNCH.split("from twisted_cgiserve")[0] + (
        "from twisted.python.systemd import ListenFDs; "
        "print(ListenFDs.fromEnvironment().inheritedNamedDescriptors())"
    )
    result = subprocess.run(
        [sys.executable, "-c", code],
        env=env,
        capture_output=True,
        text=True,
        timeout=30,
        check=True,
    )
    assert result.stdout.strip() == "{'web': 3, 'admin': 4}"


def test_findMaker() -> None:
    maker: Any = _workers._findMaker()
    assert maker.tapname == "cgiserve"
