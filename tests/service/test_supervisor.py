"""
Tests for L{twisted_cgiserve._service.supervisor}: the parent of
C{--workers}, with a fake reactor and fake worker processes.
"""

from __future__ import annotations

import json
import os
import signal
from collections.abc import Iterator
from typing import Any, cast

import pytest
from twisted.internet.error import (
    ProcessDone,
    ProcessExitedAlready,
    ProcessTerminated,
    ReactorNotRunning,
)
from twisted.internet.testing import MemoryReactorClock
from twisted.logger import (
    ILogObserver,
    LogLevel,
    eventAsJSON,
    formatEvent,
    globalLogPublisher,
)
from twisted.python.failure import Failure

from twisted_cgiserve._service import supervisor as _supervisor
from twisted_cgiserve._service.supervisor import (
    Supervisor,
    WorkerProtocol,
    restartDelay,
)


class FakePort:
    def __init__(self, fd: int) -> None:
        self.fd = fd
        self.reading = True

    def fileno(self) -> int:
        return self.fd

    def stopReading(self) -> None:
        self.reading = False


class FakeListening:
    def __init__(self, fd: int, address: str) -> None:
        self.port = FakePort(fd)
        self._address = address

    def address(self) -> str:
        return self._address


class FakeProcess:
    """
    The transport of a spawned worker: records signals.
    """

    def __init__(self, pid: int) -> None:
        self.pid = pid
        self.signals: list[int] = []
        self.exited = False

    def signalProcess(self, signum: int) -> None:
        if self.exited:
            raise ProcessExitedAlready()
        self.signals.append(signum)


class FakeDatagramPort:
    def __init__(self, path: str, protocol: Any) -> None:
        self.path = path
        self.protocol = protocol
        self.listening = True

    def stopListening(self) -> None:
        self.listening = False


class FakeReactor(MemoryReactorClock):
    """
    A memory reactor that spawns fake processes and listens on fake
    datagram sockets.
    """

    def __init__(self) -> None:
        super().__init__()
        self.spawned: list[dict[str, Any]] = []
        self.datagramPorts: list[FakeDatagramPort] = []
        self.nextPid = 1000
        self.running = True
        self.stops = 0
        self.refuse: OSError | None = None

    def spawnProcess(self, protocol: Any, executable: str, args: Any, **kw: Any) -> Any:
        if self.refuse is not None:
            raise self.refuse
        self.nextPid += 1
        transport = FakeProcess(self.nextPid)
        protocol.makeConnection(transport)
        self.spawned.append(
            {"protocol": protocol, "executable": executable, "args": args, **kw}
        )
        return transport

    def listenUNIXDatagram(self, path: str, protocol: Any, **kw: Any) -> Any:
        port = FakeDatagramPort(path, protocol)
        self.datagramPorts.append(port)
        return port

    def stop(self) -> None:
        if not self.running:
            raise ReactorNotRunning()
        self.running = False
        self.stops += 1


class FakeNotifier:
    def __init__(self, watchdogInterval: float | None = None) -> None:
        self.sent: list[tuple[str, ...]] = []
        self.watchdogInterval = watchdogInterval

    def notify(self, *fields: str) -> bool:
        self.sent.append(fields)
        return True


class Harness:
    def __init__(self, count: int = 2, **kw: Any) -> None:
        self.reactor = FakeReactor()
        self.listening = [
            FakeListening(7, "http://127.0.0.1:8000/"),
            FakeListening(9, "/run/x.sock"),
        ]
        self.notifier = FakeNotifier(kw.pop("watchdogInterval", None))
        self.exits: list[int] = []
        self.stdout: list[bytes] = []
        self.supervisor = Supervisor(
            self.listening,
            count,
            ["/usr/bin/python3", "-c", "launch", "twistd-cgiserve", "--port", "80"],
            self.reactor,
            grace=5.0,
            notifier=self.notifier,  # type: ignore[arg-type]
            baseEnvironment={
                "PATH": "/bin",
                "WATCHDOG_USEC": "1",
                "NOTIFY_SOCKET": "x",
            },
            stdout=self.stdout.append,
            exitWith=self.exits.append,
            **kw,
        )

    def start(self) -> Harness:
        self.supervisor.startService()
        return self

    def worker(self, index: int) -> WorkerProtocol:
        return self.supervisor.workers[index]

    def process(self, index: int) -> FakeProcess:
        transport: FakeProcess = self.worker(index).transport  # type: ignore[assignment]
        return transport

    def ready(self, *indexes: int) -> None:
        for index in indexes:
            self.supervisor.notified(index, ["READY=1", "STATUS=x", "MAINPID=1"])

    def end(self, index: int, reason: Exception | None = None) -> None:
        worker = self.worker(index)
        self.process(index).exited = True
        worker.processEnded(Failure(reason or ProcessTerminated(signal=9)))


@pytest.fixture
def harness() -> Harness:
    return Harness().start()


@pytest.fixture
def caplogEvents() -> Iterator[list[dict[str, Any]]]:
    """
    The events logged during the test.
    """
    events: list[dict[str, Any]] = []
    observer = cast(ILogObserver, events.append)
    globalLogPublisher.addObserver(observer)
    yield events
    globalLogPublisher.removeObserver(observer)


def test_startsWorkersOnTheParentsSockets(harness: Harness) -> None:
    """
    Each worker is spawned with the command line given, the listening
    descriptors after its log pipe, and the environment contract; the
    parent stops reading its ports.
    """
    assert [s["args"][3:] for s in harness.reactor.spawned] == [
        ["twistd-cgiserve", "--port", "80"]
    ] * 2
    for index, spawned in enumerate(harness.reactor.spawned, 1):
        assert spawned["executable"] == "/usr/bin/python3"
        assert spawned["childFDs"] == {0: "w", 1: "r", 2: "r", 3: "r", 4: 7, 5: 9}
        env = spawned["env"]
        assert env["CGISERVE_WORKER"] == str(index)
        assert env["CGISERVE_WORKER_FDS"] == "4,5"
        assert env["CGISERVE_WORKER_LOG"] == "3"
        assert env["NOTIFY_SOCKET"].endswith(f"ready-{index}")
        assert "WATCHDOG_USEC" not in env
        assert env["PATH"] == "/bin"
    assert not any(s.port.reading for s in harness.listening)
    assert [p.path for p in harness.reactor.datagramPorts] == [
        harness.reactor.spawned[0]["env"]["NOTIFY_SOCKET"],
        harness.reactor.spawned[1]["env"]["NOTIFY_SOCKET"],
    ]


def test_serverWideEnvironment() -> None:
    """
    What server-wide services give workers (the spawner's address) is asked
    for at every start, restarts included.
    """
    calls: list[int] = []

    def environment() -> dict[str, str]:
        calls.append(1)
        return {"CGISERVE_SPAWNER": f"/run/spawner-{len(calls)}"}

    h = Harness(environment=environment).start()
    assert h.reactor.spawned[1]["env"]["CGISERVE_SPAWNER"] == "/run/spawner-2"
    h.ready(1, 2)
    h.end(1)
    h.reactor.advance(0)
    assert h.reactor.spawned[2]["env"]["CGISERVE_SPAWNER"] == "/run/spawner-3"


def test_readyOnceEveryWorkerIs(harness: Harness) -> None:
    """
    READY=1 (with the parent's PID and the addresses) goes to systemd once
    every worker said it serves, once.
    """
    harness.ready(1)
    harness.ready(1)
    assert harness.notifier.sent == []
    harness.ready(2)
    assert harness.notifier.sent == [
        (
            "READY=1",
            "STATUS=Serving on http://127.0.0.1:8000/, /run/x.sock",
            f"MAINPID={os.getpid()}",
        )
    ]
    harness.ready(2)
    assert len(harness.notifier.sent) == 1


def test_otherMessagesAreIgnored(harness: Harness) -> None:
    """
    Only READY=1 from a running worker counts.
    """
    harness.supervisor.notified(1, ["STATUS=Reloading"])
    harness.supervisor.notified(3, ["READY=1"])
    harness.ready(2)
    assert harness.notifier.sent == []


def test_watchdogFedOnceReady() -> None:
    """
    The parent feeds systemd's watchdog itself, at half the interval.
    """
    h = Harness(watchdogInterval=2.0).start()
    h.ready(1, 2)
    assert h.notifier.sent[-1] == ("WATCHDOG=1",)
    h.reactor.advance(1.0)
    assert h.notifier.sent.count(("WATCHDOG=1",)) == 2
    h.supervisor.stopService()
    h.reactor.advance(1.0)
    assert h.notifier.sent.count(("WATCHDOG=1",)) == 2


def test_readinessDatagram(harness: Harness) -> None:
    """
    A datagram on a worker's socket is that worker's message.
    """
    protocol = harness.reactor.datagramPorts[1].protocol
    harness.ready(1)
    protocol.datagramReceived(b"READY=1\nSTATUS=Serving", None)
    assert harness.notifier.sent[0][0] == "READY=1"


def test_restartAtOnceThenWithBackoff(harness: Harness) -> None:
    """
    A worker that dies after serving a while is restarted at once; one
    that keeps dying young waits longer each time; each death is logged.
    """
    harness.ready(1, 2)
    harness.reactor.advance(60)
    pid = harness.process(1).pid
    harness.end(1)
    assert 1 not in harness.supervisor.workers
    harness.reactor.advance(0)
    assert harness.process(1).pid != pid
    delays = []
    for _ in range(4):
        harness.end(1)
        call = harness.supervisor._restarts[1]
        delays.append(call.getTime() - harness.reactor.seconds())
        harness.reactor.advance(delays[-1])
    assert delays == [0.5, 1.0, 2.0, 4.0]
    # Serving long enough forgives the past.
    harness.reactor.advance(30)
    harness.end(1)
    assert harness.supervisor._restarts[1].getTime() == harness.reactor.seconds()
    assert len(harness.reactor.spawned) == 2 + 5


def test_restartDelay() -> None:
    """
    0 the first time, then 0.5 s doubling to 30 s at most.
    """
    assert [restartDelay(n) for n in range(1, 6)] == [0.0, 0.5, 1.0, 2.0, 4.0]
    assert restartDelay(40) == 30.0


def test_deathLogged(harness: Harness, caplogEvents: list[dict[str, Any]]) -> None:
    """
    The log says which worker died, how, and when it restarts.
    """
    harness.ready(1, 2)
    harness.reactor.advance(20)
    pid = harness.process(2).pid
    harness.end(2, ProcessTerminated(exitCode=3))
    [event] = [e for e in caplogEvents if "restarting" in e["log_format"]]
    assert event["log_level"] == LogLevel.error
    assert event["index"] == 2
    assert event["pid"] == pid
    assert event["how"] == "exited with status 3"
    assert event["delay"] == 0.0


def test_workerThatNeverServedStopsTheServer(harness: Harness) -> None:
    """
    A worker that ends before every worker served (a configuration only
    workers read is bad) ends the server with status 1: restarting would
    fail the same way forever.
    """
    harness.ready(2)
    harness.end(1, ProcessTerminated(exitCode=2))
    assert harness.exits == [1]
    assert harness.supervisor._restarts == {}


def test_workerThatCannotBeRunStopsTheServer(
    caplogEvents: list[dict[str, Any]],
) -> None:
    """
    A worker whose program cannot be run at all (the server's user may not
    execute this Python) ends the server with status 1 and one error line,
    instead of a traceback and a server that listens but never answers.
    """
    harness = Harness()
    harness.reactor.refuse = PermissionError(13, "Permission denied")
    harness.start()
    assert harness.exits == [1]
    assert harness.supervisor.workers == {}
    errors = [formatEvent(e) for e in caplogEvents if e["log_level"] == LogLevel.error]
    assert errors == ["Worker 1 cannot be started: Permission denied; stopping."]


def test_hangUpPassedToEveryWorker(harness: Harness) -> None:
    """
    SIGHUP goes to every worker; systemd hears RELOADING=1, then READY=1
    once every worker said it serves again (or died meanwhile).
    """
    harness.ready(1, 2)
    harness.notifier.sent.clear()
    harness.supervisor.hangUp()
    assert harness.process(1).signals == [signal.SIGHUP]
    assert harness.process(2).signals == [signal.SIGHUP]
    assert harness.notifier.sent[0][0] == "RELOADING=1"
    assert harness.notifier.sent[0][1].startswith("MONOTONIC_USEC=")
    harness.ready(1)
    assert len(harness.notifier.sent) == 1
    harness.end(2)
    assert harness.notifier.sent[1] == (
        "READY=1",
        "STATUS=Serving on http://127.0.0.1:8000/, /run/x.sock",
    )


def test_hangUpBeforeReadyIsPassedOnly(harness: Harness) -> None:
    """
    Before the server is ready there is no reload to tell systemd about.
    """
    harness.supervisor.hangUp()
    assert harness.process(1).signals == [signal.SIGHUP]
    assert harness.notifier.sent == []


def test_user1PassedToEveryWorker(harness: Harness) -> None:
    """
    SIGUSR1 goes to every worker (each reopens its access log).
    """
    harness.supervisor.user1()
    assert harness.process(1).signals == [signal.SIGUSR1]
    assert harness.process(2).signals == [signal.SIGUSR1]


def test_signalToAWorkerThatJustExited(harness: Harness) -> None:
    """
    A worker that exited but whose end is not yet known is skipped.
    """
    harness.process(1).exited = True
    harness.supervisor.user1()
    assert harness.process(2).signals == [signal.SIGUSR1]


def test_stopDrainsEveryWorker(harness: Harness) -> None:
    """
    Stopping: STOPPING=1, SIGTERM to every worker, no restart, and the
    service has stopped once every worker ended.
    """
    harness.ready(1, 2)
    harness.end(2)
    assert 2 in harness.supervisor._restarts
    stopped = harness.supervisor.stopService()
    assert harness.notifier.sent[-1] == ("STOPPING=1", "STATUS=Stopping")
    assert harness.process(1).signals == [signal.SIGTERM]
    assert harness.supervisor._restarts == {}
    results: list[object] = []
    stopped.addCallback(results.append)
    assert results == []
    harness.supervisor.hangUp()
    process = harness.process(1)
    assert process.signals == [signal.SIGTERM]
    harness.end(1, ProcessDone(0))
    assert results == [None]
    assert len(harness.reactor.spawned) == 2
    assert not any(p.listening for p in harness.reactor.datagramPorts)
    # Neither restarted nor killed.
    harness.reactor.advance(100)
    assert len(harness.reactor.spawned) == 2
    assert process.signals == [signal.SIGTERM]


def test_stopKillsWorkersThatDoNotDrain(harness: Harness) -> None:
    """
    A worker still running well after the grace period is killed.
    """
    harness.supervisor.stopService()
    harness.reactor.advance(5.0 + _supervisor._STOP_MARGIN - 0.1)
    assert harness.process(1).signals == [signal.SIGTERM]
    harness.reactor.advance(0.2)
    assert harness.process(1).signals == [signal.SIGTERM, signal.SIGKILL]
    assert harness.process(2).signals == [signal.SIGTERM, signal.SIGKILL]


def test_stopRequestedStopsTheReactorOnce(harness: Harness) -> None:
    """
    SIGTERM stops the reactor; a second one changes nothing.
    """
    harness.supervisor._stopRequested("SIGTERM")
    harness.supervisor._stopRequested("SIGTERM")
    assert harness.reactor.stops == 1


def test_noStartWhileStopping(harness: Harness) -> None:
    """
    A restart due while stopping does not happen.
    """
    harness.supervisor._stopping = True
    harness.supervisor._start(1)
    assert len(harness.reactor.spawned) == 2


# WorkerProtocol


def protocol(events: list[dict[str, Any]], out: list[bytes]) -> WorkerProtocol:
    return WorkerProtocol(3, lambda w, r: None, out.append, events.append)


def test_logEventsRepublishedNamingTheWorker() -> None:
    """
    A JSON event from the worker's log pipe is logged in the parent, its
    system the worker, whatever chunks it arrives in.
    """
    events: list[dict[str, Any]] = []
    worker = protocol(events, [])
    line = eventAsJSON(
        {
            "log_format": "hello {who}",
            "who": "world",
            "log_level": LogLevel.warn,
            "log_namespace": "cgiserve.x",
            "log_time": 1.0,
        }
    ).encode()
    worker.childDataReceived(3, line[:10])
    assert events == []
    worker.childDataReceived(3, line[10:] + b"\n")
    [event] = events
    assert event["log_system"] == "worker 3"
    assert event["who"] == "world"
    assert event["log_level"] == LogLevel.warn


def test_garbageOnTheLogPipe() -> None:
    """
    A line that is not an event is logged as text; JSON that is not an
    object is dropped.
    """
    events: list[dict[str, Any]] = []
    worker = protocol(events, [])
    worker.childDataReceived(3, b"not json\n" + json.dumps([1]).encode() + b"\n")
    assert [e["line"] for e in events] == ["not json"]


def test_stderrLinesLoggedAsWarnings() -> None:
    events: list[dict[str, Any]] = []
    worker = protocol(events, [])
    worker.childDataReceived(2, b"Traceback:\n  boom")
    assert [e["line"] for e in events] == ["Traceback:"]
    worker.processEnded(Failure(ProcessDone(0)))
    assert [e["line"] for e in events] == ["Traceback:", "  boom"]
    assert {e["log_level"] for e in events} == {LogLevel.warn}
    assert {e["log_system"] for e in events} == {"worker 3"}


def test_stdoutRelayedWholeLines() -> None:
    """
    Standard output (--access-log -) reaches the parent's one whole line at
    a time; an endless line is cut rather than held.
    """
    out: list[bytes] = []
    worker = protocol([], out)
    worker.childDataReceived(1, b"one\ntw")
    worker.childDataReceived(1, b"o\nthr")
    assert out == [b"one\n", b"two\n"]
    worker.childDataReceived(1, b"e" * _supervisor._MAX_LINE)
    assert out[2] == b"thr" + b"e" * _supervisor._MAX_LINE + b"\n"
    worker.childDataReceived(5, b"ignored")


def test_describeEnd() -> None:
    assert _supervisor._describeEnd(Failure(ProcessDone(0))) == "exited with status 0"
    assert (
        _supervisor._describeEnd(Failure(ProcessTerminated(signal=15)))
        == "was killed by signal 15"
    )
    assert _supervisor._describeEnd(Failure(ValueError("x"))) == "ended: x"


def test_writeStdout() -> None:
    """
    The parent writes a line to its descriptor 1 whole.
    """
    read, write = os.pipe()
    saved = os.dup(1)
    try:
        os.dup2(write, 1)
        _supervisor._writeStdout(b"a line\n")
    finally:
        os.dup2(saved, 1)
        os.close(saved)
        os.close(write)
    assert os.read(read, 100) == b"a line\n"
    os.close(read)
