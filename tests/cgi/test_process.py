"""
Tests for L{twisted_cgiserve._cgi.process}: a script's process group is
anchored by its unreaped leader until nothing of it is left, and ended as a
whole; and canaries for the Twisted internals that module relies on.

Most tests use a fake child and a fake kernel, in simulated time; the
C{Real} ones run real shell scripts with the real system calls.
"""

from __future__ import annotations

import contextlib
import fcntl
import inspect
import os
import signal
import subprocess
import threading
import time
from collections.abc import Callable, Iterator, Sequence
from types import SimpleNamespace
from typing import Any, cast

import pytest
from twisted.internet import error, main, process
from twisted.internet.protocol import ProcessProtocol
from twisted.internet.testing import MemoryReactorClock
from twisted.logger import LogLevel, globalLogPublisher
from twisted.python.failure import Failure

from twisted_cgiserve._cgi import groups as _groups
from twisted_cgiserve._cgi import privileges
from twisted_cgiserve._cgi import process as _cgiprocess
from twisted_cgiserve._cgi.groups import Kernel, ProcessGroups
from twisted_cgiserve._cgi.process import ScriptProcess, startScript

# --------------------------------------------------------------------------
# Fakes


class FakeKernel(Kernel):
    """
    A kernel of fake processes: leaders that exit when told, groups whose
    members come and go when told. It fails the test if a group is
    signalled after its leader was reaped, or a leader is reaped before it
    exited.
    """

    def __init__(self) -> None:
        self.statuses: dict[int, int] = {}
        self.members: dict[int, set[int]] = {}
        self.exitingLeaders: set[int] = set()
        self.lost: set[int] = set()
        self.reaped: list[int] = []
        self.signals: list[tuple[int, int]] = []
        self.scans: list[set[int]] = []
        self.ignoreTerm: set[int] = set()

    def exitStatus(self, pid: int) -> int | None:
        if pid in self.lost:
            raise ChildProcessError(pid)
        return self.statuses.get(pid)

    def exiting(self, pid: int) -> bool:
        return pid in self.exitingLeaders

    def reap(self, pid: int) -> None:
        assert pid in self.statuses, f"{pid} reaped while it runs"
        assert pid not in self.reaped, f"{pid} reaped twice"
        self.reaped.append(pid)

    def killGroup(self, pgid: int, signum: int) -> None:
        assert pgid not in self.reaped, f"group {pgid} signalled after its reaping"
        self.signals.append((pgid, signum))
        if signum == signal.SIGKILL or (
            signum == signal.SIGTERM and pgid not in self.ignoreTerm
        ):
            self.statuses.setdefault(pgid, -signum)
            self.members.pop(pgid, None)

    def occupied(self, pgids: set[int]) -> set[int]:
        self.scans.append(set(pgids))
        return {pgid for pgid in pgids if self.members.get(pgid)}


class FakePopen:
    """
    Stands for C{subprocess.Popen}: no process, but the child's ends of the
    pipes stay open (duplicated) until the test closes them.
    """

    nextPid = 40000
    last: FakePopen
    made: list[FakePopen] = []

    def __init__(self, args: Sequence[str], **kw: Any) -> None:
        FakePopen.nextPid += 1
        self.pid = FakePopen.nextPid
        self.args = args
        self.returncode: int | None = None
        self.stdout = os.dup(kw["stdout"])
        self.stderr = os.dup(kw["stderr"])
        self.stdin = os.dup(kw["stdin"])
        FakePopen.last = self
        FakePopen.made.append(self)

    def close(self, *names: str) -> None:
        for name in names:
            fd = getattr(self, name)
            if fd is not None:
                os.close(fd)
                setattr(self, name, None)


class Recorder(ProcessProtocol):
    """
    Records what the transport tells its protocol, in order.
    """

    def __init__(self, closeStdin: bool = True) -> None:
        self.events: list[tuple[str, object]] = []
        self._closeStdin = closeStdin

    def connectionMade(self) -> None:
        if self._closeStdin:
            assert self.transport is not None
            self.transport.closeStdin()

    def outReceived(self, data: bytes) -> None:
        self.events.append(("out", data))

    def errReceived(self, data: bytes) -> None:
        self.events.append(("err", data))

    def outConnectionLost(self) -> None:
        self.events.append(("outLost", None))

    def errConnectionLost(self) -> None:
        self.events.append(("errLost", None))

    def processExited(self, reason: Failure) -> None:
        self.events.append(("exited", reason.value))

    def processEnded(self, reason: Failure) -> None:
        self.events.append(("ended", reason.value))

    def names(self) -> list[str]:
        return [name for name, _ in self.events if name not in ("out", "err")]

    def reason(self, name: str) -> Any:
        (value,) = [v for n, v in self.events if n == name]
        return value


def pump(reactor: MemoryReactorClock) -> None:
    """
    Do what a real reactor would with the pipes that are ready: read the
    output pipes, finish closing the input pipe, run what is due now.
    """
    for _ in range(3):
        reactor.advance(0)
        for reader in list(reactor.getReaders()):
            if isinstance(reader, process.ProcessReader) and reader.connected:
                why = reader.doRead()
                if why:
                    reader.connectionLost(Failure(why))
        for writer in list(reactor.getWriters()):
            why = writer.doWrite()
            if why:
                writer.connectionLost(Failure(why))


@pytest.fixture
def fake(monkeypatch: pytest.MonkeyPatch) -> Iterator[SimpleNamespace]:
    """
    A simulated reactor, a fake kernel and fake children.
    """
    monkeypatch.setattr(_cgiprocess, "subprocess", SimpleNamespace(Popen=FakePopen))
    reactor = MemoryReactorClock()
    kernel = FakeKernel()
    groups = ProcessGroups(reactor, kernel)
    started: list[ScriptProcess] = []

    def start(protocol: ProcessProtocol | None = None) -> tuple[ScriptProcess, Any]:
        proto = protocol if protocol is not None else Recorder()
        transport = ScriptProcess(
            reactor,
            proto,
            "/x",
            ["/x"],
            environment={},
            directory="/",
            groups=groups,
        )
        started.append(transport)
        return transport, proto

    yield SimpleNamespace(reactor=reactor, kernel=kernel, groups=groups, start=start)
    for transport in started:
        if transport.pid is not None and transport.pid in process.reapProcessHandlers:
            del process.reapProcessHandlers[transport.pid]
        for pipe in list(transport.pipes.values()):
            os.close(pipe.fileno())
        transport.pipes.clear()
    for child in FakePopen.made:
        child.close("stdout", "stderr", "stdin")
    FakePopen.made.clear()


def closeOutput(child: FakePopen) -> None:
    child.close("stdout", "stderr", "stdin")


# --------------------------------------------------------------------------
# The anchor, with a fake kernel


def test_exitKnownWithoutReaping(fake: SimpleNamespace) -> None:
    """
    When the leader exits, the protocol hears processExited at once, but the
    leader is not reaped while its group has a member: the group can still
    be signalled, and its pid still names it.
    """
    transport, proto = fake.start()
    child = FakePopen.last
    pid = child.pid
    assert process.reapProcessHandlers[pid] is transport
    fake.kernel.members[pid] = {pid + 100}
    fake.kernel.statuses[pid] = 3
    process.reapAllProcesses()
    assert proto.names() == ["exited"]
    assert proto.reason("exited").exitCode == 3
    assert child.returncode == 3
    assert pid not in process.reapProcessHandlers
    closeOutput(child)
    pump(fake.reactor)
    assert fake.kernel.scans == [{pid}]
    assert fake.kernel.reaped == []
    assert transport.pid == pid
    transport.signalProcess("HUP")
    assert fake.kernel.signals == [(pid, signal.SIGHUP)]
    assert sorted(proto.names()) == ["errLost", "exited", "outLost"]
    assert proto.names()[0] == "exited"


def test_lingeringGroupLookedAtEverySecond(fake: SimpleNamespace) -> None:
    """
    While members linger after the leader, the group is looked at again
    every second; once it is empty the leader is reaped and the protocol
    hears processEnded; after that the group is never signalled again.
    """
    transport, proto = fake.start()
    child = FakePopen.last
    pid = child.pid
    fake.kernel.members[pid] = {pid + 1}
    fake.kernel.statuses[pid] = 0
    transport.reapProcess()
    closeOutput(child)
    pump(fake.reactor)
    fake.reactor.advance(0.9)
    assert len(fake.kernel.scans) == 1
    fake.reactor.advance(0.1)
    assert len(fake.kernel.scans) == 2
    del fake.kernel.members[pid]
    assert fake.kernel.reaped == []
    fake.reactor.advance(1.0)
    assert fake.kernel.reaped == [pid]
    assert transport.pid is None
    names = proto.names()
    assert (names[0], sorted(names[1:3]), names[3:]) == (
        "exited",
        ["errLost", "outLost"],
        ["ended"],
    )
    assert isinstance(proto.reason("ended"), error.ProcessDone)
    with pytest.raises(error.ProcessExitedAlready):
        transport.signalProcess("TERM")
    fake.reactor.advance(10)
    assert len(fake.kernel.scans) == 3
    assert not fake.reactor.getDelayedCalls()


def test_emptyGroupReapedOnNextTurnWithOneScanForAll(fake: SimpleNamespace) -> None:
    """
    A leader whose group is empty is reaped on the reactor's next turn; the
    groups of leaders that exited in the same turn share one scan.
    """
    transports = [fake.start()[0] for _ in range(5)]
    pids = {t.pid for t in transports}
    for transport in transports:
        fake.kernel.statuses[transport.pid] = 0
        transport.reapProcess()
    assert fake.kernel.reaped == []
    fake.reactor.advance(0)
    assert fake.kernel.scans == [pids]
    assert set(fake.kernel.reaped) == pids


def test_processEndedWaitsForThePipes(fake: SimpleNamespace) -> None:
    """
    processEnded needs the leader reaped and every pipe closed: a process
    outside the group holding standard error delays it.
    """
    transport, proto = fake.start()
    child = FakePopen.last
    fake.kernel.statuses[child.pid] = 0
    transport.reapProcess()
    child.close("stdout", "stdin")
    pump(fake.reactor)
    assert fake.kernel.reaped == [child.pid]
    assert "ended" not in proto.names()
    child.close("stderr")
    pump(fake.reactor)
    assert proto.names()[-1] == "ended"


def test_exitBeforeRegistration(fake: SimpleNamespace) -> None:
    """
    A script that exits before its transport looks is reported exited from
    the start, and still not reaped until its group is seen empty.
    """

    class Early(Recorder):
        def connectionMade(self) -> None:
            super().connectionMade()
            fake.kernel.statuses[FakePopen.last.pid] = 7

    transport, proto = fake.start(Early())
    assert proto.names() == ["exited"]
    assert transport.pid not in process.reapProcessHandlers
    assert fake.kernel.reaped == []
    fake.reactor.advance(0)
    assert fake.kernel.reaped == [FakePopen.last.pid]


def test_terminateRunningScript(fake: SimpleNamespace) -> None:
    """
    terminate: pipes closed and SIGTERM to the group at once; SIGKILL after
    the grace when the leader is still there; the leader is reaped as soon
    as it has died, without waiting for a scan; the Deferred says SIGKILL
    was needed.
    """
    transport, proto = fake.start()
    pid = FakePopen.last.pid
    fake.kernel.ignoreTerm.add(pid)
    done = transport.terminate(3.0)
    pump(fake.reactor)
    assert fake.kernel.signals == [(pid, signal.SIGTERM)]
    assert proto.names() == ["outLost", "errLost"]
    fake.reactor.advance(2.9)
    assert fake.kernel.signals == [(pid, signal.SIGTERM)]
    fake.reactor.advance(0.1)
    assert fake.kernel.signals == [(pid, signal.SIGTERM), (pid, signal.SIGKILL)]
    assert not done.called
    transport.reapProcess()
    assert fake.kernel.reaped == [pid]
    assert fake.kernel.scans == []
    assert done.result is True
    assert proto.names() == ["outLost", "errLost", "exited", "ended"]
    assert proto.reason("exited").signal == signal.SIGKILL


def test_terminateLingeringGroupThatObeys(fake: SimpleNamespace) -> None:
    """
    terminate after the leader exited: the group gets SIGTERM, is looked at
    every tenth of a second, and is reaped once empty, without SIGKILL.
    """
    transport, proto = fake.start()
    pid = FakePopen.last.pid
    fake.kernel.members[pid] = {pid + 1}
    fake.kernel.statuses[pid] = 0
    transport.reapProcess()
    fake.reactor.advance(0)
    fake.kernel.ignoreTerm.add(pid)
    done = transport.terminate(3.0)
    pump(fake.reactor)
    assert fake.kernel.signals == [(pid, signal.SIGTERM)]
    fake.reactor.advance(0.1)
    assert not done.called
    fake.kernel.members.pop(pid)
    fake.reactor.advance(0.1)
    assert done.result is False
    assert fake.kernel.reaped == [pid]
    assert fake.kernel.signals == [(pid, signal.SIGTERM)]
    assert proto.names()[-1] == "ended"
    assert not fake.reactor.getDelayedCalls()


def test_terminateLingeringGroupThatResists(fake: SimpleNamespace) -> None:
    """
    A member that survives SIGTERM gets SIGKILL with its group after the
    grace, and the leader is reaped right after.
    """
    transport, _ = fake.start()
    pid = FakePopen.last.pid
    fake.kernel.members[pid] = {pid + 1}
    fake.kernel.statuses[pid] = 0
    fake.kernel.ignoreTerm.add(pid)
    transport.reapProcess()
    done = transport.terminate(1.5)
    fake.reactor.advance(1.5)
    assert fake.kernel.signals == [(pid, signal.SIGTERM), (pid, signal.SIGKILL)]
    assert fake.kernel.reaped == [pid]
    assert done.result is True


def test_terminateTwiceAndAfterTheEnd(fake: SimpleNamespace) -> None:
    """
    terminate may be called again, and after the group is gone: one
    SIGTERM, one SIGKILL at most, every Deferred fires, and nothing is
    signalled once the leader has been reaped.
    """
    transport, _ = fake.start()
    pid = FakePopen.last.pid
    fake.kernel.ignoreTerm.add(pid)
    first = transport.terminate(3.0)
    second = transport.terminate(1.0)
    fake.reactor.advance(1.0)
    assert fake.kernel.signals == [(pid, signal.SIGTERM)]
    fake.reactor.advance(2.0)
    transport.reapProcess()
    assert (first.result, second.result) == (True, True)
    third = transport.terminate(3.0)
    assert third.result is True
    assert fake.kernel.signals == [(pid, signal.SIGTERM), (pid, signal.SIGKILL)]
    with pytest.raises(error.ProcessExitedAlready):
        transport.signalProcess("KILL")


def test_leaderExitClosingOutputReportsExitFirst(fake: SimpleNamespace) -> None:
    """
    When the leader's own exit closed its output (it is exiting when the
    end of the output is read), the protocol hears processExited before
    outConnectionLost, even when SIGCHLD is handled later.
    """
    _, proto = fake.start()
    child = FakePopen.last
    fake.kernel.exitingLeaders.add(child.pid)
    child.close("stdout")
    pump(fake.reactor)
    assert proto.names() == []
    fake.kernel.statuses[child.pid] = -9
    fake.reactor.advance(_cgiprocess._EXIT_POLL)
    assert proto.names() == ["exited", "outLost"]
    assert proto.reason("exited").signal == 9


def test_outputClosedByLiveLeader(fake: SimpleNamespace) -> None:
    """
    A leader that closes its output and goes on: outConnectionLost at once.
    """
    _, proto = fake.start()
    FakePopen.last.close("stdout")
    pump(fake.reactor)
    assert proto.names() == ["outLost"]


def test_anchorLost(fake: SimpleNamespace) -> None:
    """
    If something else reaped the leader, the group is never signalled
    again and the protocol still gets its two events.
    """
    events: list[dict[str, Any]] = []
    globalLogPublisher.addObserver(events.append)
    try:
        transport, proto = fake.start()
        child = FakePopen.last
        fake.kernel.lost.add(child.pid)
        transport.reapProcess()
    finally:
        globalLogPublisher.removeObserver(events.append)
    assert transport.pid is None
    assert [e for e in events if e.get("log_level") == LogLevel.error]
    done = transport.terminate(1.0)
    closeOutput(child)
    pump(fake.reactor)
    assert done.called
    assert fake.kernel.signals == []
    assert proto.names()[0] == "exited"
    assert proto.names()[-1] == "ended"


# --------------------------------------------------------------------------
# Real scripts, real system calls, simulated time


def realStart(
    script: str, proto: ProcessProtocol | None = None
) -> tuple[ScriptProcess, Any, MemoryReactorClock]:
    reactor = MemoryReactorClock()
    recorder = proto if proto is not None else Recorder()
    transport = ScriptProcess(
        reactor,
        recorder,
        "/bin/sh",
        ["/bin/sh", "-c", script],
        environment={"PATH": "/usr/bin:/bin"},
        directory="/",
        groups=ProcessGroups(reactor),
    )
    return transport, recorder, reactor


def runUntil(
    transport: ScriptProcess,
    reactor: MemoryReactorClock,
    done: Callable[[], object],
    timeout: float = 5.0,
) -> None:
    """
    Drive the pipes, SIGCHLD handling and simulated time along with real
    time until C{done()}.
    """
    deadline = time.monotonic() + timeout
    last = time.monotonic()
    while not done():
        assert time.monotonic() < deadline, "timed out"
        pump(reactor)
        transport.reapProcess()
        now = time.monotonic()
        reactor.advance(now - last)
        last = now
        time.sleep(0.005)


def state(pid: int) -> str | None:
    fields = _groups._stat(pid)
    return None if fields is None else fields[0].decode()


def output(proto: Recorder) -> bytes:
    return b"".join(v for n, v in proto.events if n == "out" and isinstance(v, bytes))


@pytest.fixture
def cleanup() -> Iterator[list[int]]:
    """
    Process groups to kill, whatever the test did.
    """
    groups: list[int] = []
    yield groups
    for pgid in groups:
        with contextlib.suppress(ProcessLookupError):
            os.killpg(pgid, signal.SIGKILL)
        with contextlib.suppress(ChildProcessError):
            os.waitpid(pgid, 0)


def test_realLeaderAnchorsItsGroup(cleanup: list[int]) -> None:
    """
    A real script that leaves a child behind and exits 3: it is reported
    exited with status 3 but stays a zombie (C{Popen.poll} and
    C{subprocess._cleanup} do not reap it), so its group can be signalled;
    terminate ends the child and then reaps the leader.
    """
    transport, proto, reactor = realStart("sleep 30 >/dev/null 2>&1 & echo $!; exit 3")
    pid = transport.pid
    assert pid is not None
    cleanup.append(pid)
    runUntil(transport, reactor, lambda: "outLost" in proto.names())
    assert proto.reason("exited").exitCode == 3
    child = int(output(proto))
    assert os.getpgid(child) == pid
    popen = transport._popen
    assert popen.poll() == 3
    subprocess._cleanup()  # type: ignore[attr-defined]
    runUntil(transport, reactor, lambda: "errLost" in proto.names())
    reactor.advance(1.5)
    assert state(pid) == "Z"
    assert transport.pid == pid
    transport.signalProcess(0)
    done = transport.terminate(5.0)
    runUntil(transport, reactor, lambda: done.called)
    assert done.result is False
    assert state(child) in (None, "Z")
    assert state(pid) is None
    assert proto.names()[-1] == "ended"
    with pytest.raises(error.ProcessExitedAlready):
        transport.signalProcess(0)


def test_realSurvivorIsKilled(cleanup: list[int]) -> None:
    """
    A real child that ignores SIGTERM is killed with SIGKILL after the
    grace, though its leader exited long before.
    """
    transport, proto, reactor = realStart(
        "trap '' TERM; sleep 30 >/dev/null 2>&1 & echo $!"
    )
    assert transport.pid is not None
    cleanup.append(transport.pid)
    runUntil(transport, reactor, lambda: "errLost" in proto.names())
    child = int(output(proto))
    done = transport.terminate(0.5)
    runUntil(transport, reactor, lambda: done.called)
    assert done.result is True
    assert state(child) in (None, "Z")
    assert transport.pid is None


def test_realExitClosingOutputReportsExitFirst(cleanup: list[int]) -> None:
    """
    A real script killed right after its output: processExited always comes
    before outConnectionLost (the end of the output races SIGCHLD).
    """
    for _ in range(10):
        transport, proto, reactor = realStart("printf x; kill -9 $$")
        assert transport.pid is not None
        cleanup.append(transport.pid)
        runUntil(transport, reactor, lambda p=proto: "ended" in p.names())
        names = proto.names()
        assert names.index("exited") < names.index("outLost"), names


def test_realOutputClosedByLiveScript(cleanup: list[int]) -> None:
    """
    A real script that closes its output and goes on working: the end of
    its output is reported while it runs.
    """
    transport, proto, reactor = realStart("printf x; exec >&-; exec sleep 30")
    assert transport.pid is not None
    cleanup.append(transport.pid)
    runUntil(transport, reactor, lambda: "outLost" in proto.names())
    assert "exited" not in proto.names()
    done = transport.terminate(5.0)
    runUntil(transport, reactor, lambda: done.called)
    assert proto.reason("exited").signal == signal.SIGTERM


# --------------------------------------------------------------------------
# Canaries: what twisted_cgiserve._cgi.process relies on in Twisted's
# undocumented twisted.internet.process. Each fails when Twisted changes it.


class ChildRecorder:
    """
    Stands for the process a pipe reports to.
    """

    def __init__(self) -> None:
        self.data: list[tuple[int, bytes]] = []
        self.lost: list[tuple[int, object]] = []

    def childDataReceived(self, name: int, data: bytes) -> None:
        self.data.append((name, data))

    def childConnectionLost(self, name: int, reason: Failure) -> None:
        self.lost.append((name, reason.value))


@pytest.fixture
def pipe() -> Iterator[tuple[int, int]]:
    readEnd, writeEnd = os.pipe()
    yield readEnd, writeEnd
    for fd in (readEnd, writeEnd):
        with contextlib.suppress(OSError):
            os.close(fd)


def test_canaryProcessReader(pipe: tuple[int, int]) -> None:
    """
    C{ProcessReader(reactor, proc, name, fileno)} reads from construction
    on, keeps the descriptor as C{fd}, gives what it reads to
    C{proc.childDataReceived(name, data)}, stops and starts reading on
    demand, and reports its end to C{proc.childConnectionLost(name, reason)}
    without closing the descriptor (L{ScriptProcess} closes it). Its
    C{doRead} is the method L{_cgiprocess._PipeReader} replaces.
    """
    assert list(inspect.signature(process.ProcessReader).parameters) == [
        "reactor",
        "proc",
        "name",
        "fileno",
    ]
    assert "doRead" in vars(process.ProcessReader)
    assert issubclass(_cgiprocess._PipeReader, process.ProcessReader)
    readEnd, writeEnd = pipe
    reactor = MemoryReactorClock()
    proc = ChildRecorder()
    reader = _cgiprocess._PipeReader(reactor, proc, 2, readEnd)
    assert reader.fd == readEnd == reader.fileno()
    assert reader in reactor.getReaders()
    reader.stopReading()
    assert reader not in reactor.getReaders()
    reader.startReading()
    assert reader in reactor.getReaders()
    os.write(writeEnd, b"abc")
    assert reader.doRead() is None
    assert proc.data == [(2, b"abc")]
    reader.loseConnection()
    reactor.advance(0)
    assert [name for name, _ in proc.lost] == [2]
    assert reader not in reactor.getReaders()
    os.fstat(readEnd)


def test_canaryPipeReaderEnd(pipe: tuple[int, int]) -> None:
    """
    At the end of the pipe, the reader's C{doRead} says so the way the
    reactor expects (C{CONNECTION_DONE}), and C{connectionLost} reports it.
    """
    readEnd, writeEnd = pipe
    reactor = MemoryReactorClock()
    proc = ChildRecorder()
    reader = _cgiprocess._PipeReader(reactor, proc, 1, readEnd)
    os.close(writeEnd)
    why = reader.doRead()
    assert why is main.CONNECTION_DONE
    reader.connectionLost(Failure(why))
    assert proc.lost == [(1, main.CONNECTION_DONE)]


def test_canaryProcessWriter(pipe: tuple[int, int]) -> None:
    """
    C{ProcessWriter(reactor, proc, name, fileno)} writes to the descriptor
    through the reactor, takes a producer, and once closed reports to
    C{proc.childConnectionLost(name, reason)} without closing the
    descriptor.
    """
    params = list(inspect.signature(process.ProcessWriter).parameters)
    assert params[:4] == ["reactor", "proc", "name", "fileno"]
    readEnd, writeEnd = pipe
    reactor = MemoryReactorClock()
    proc = ChildRecorder()
    writer = process.ProcessWriter(reactor, proc, 0, writeEnd)
    assert writer.fileno() == writeEnd
    writer.write(b"input")
    assert writer in reactor.getWriters()
    assert writer.doWrite() is None
    assert os.read(readEnd, 100) == b"input"
    producer = SimpleNamespace(
        pauseProducing=lambda: None,
        resumeProducing=lambda: None,
        stopProducing=lambda: None,
    )
    writer.registerProducer(producer, True)
    assert writer.producer is producer
    writer.unregisterProducer()
    assert writer.producer is None
    writer.loseConnection()
    why = writer.doWrite()
    assert why
    writer.connectionLost(Failure(why))
    assert [name for name, _ in proc.lost] == [0]
    os.fstat(writeEnd)


def test_canaryReapProcessHandlers() -> None:
    """
    C{reapProcessHandlers} maps a PID to its handler, C{reapAllProcesses}
    (Twisted's C{SIGCHLD} handling) calls each handler's C{reapProcess},
    and C{unregisterReapProcessHandler(pid, handler)} removes it, refusing
    a handler that is not the registered one.
    """
    calls: list[int] = []
    handler = SimpleNamespace(reapProcess=lambda: calls.append(1))
    pid = 2**22 + 12345
    assert isinstance(process.reapProcessHandlers, dict)
    process.reapProcessHandlers[pid] = handler  # type: ignore[assignment]
    try:
        process.reapAllProcesses()
        assert calls == [1]
        with pytest.raises(RuntimeError):
            process.unregisterReapProcessHandler(pid, object())
        process.unregisterReapProcessHandler(pid, handler)
        assert pid not in process.reapProcessHandlers
    finally:
        process.reapProcessHandlers.pop(pid, None)


# --------------------------------------------------------------------------
# The transport's other duties, with fake children


def test_startAsAnotherUser(
    fake: SimpleNamespace, monkeypatch: pytest.MonkeyPatch
) -> None:
    """
    A script run as another user is started through setpriv when there is
    one (changing user after the vfork), else by C{Popen} itself.
    """
    monkeypatch.setattr(privileges, "SETPRIV", "/usr/bin/setpriv")
    captured: list[dict[str, Any]] = []

    class Capturing(FakePopen):
        def __init__(self, args: Sequence[str], **kw: Any) -> None:
            super().__init__(args, **kw)
            captured.append({"args": list(args), **kw})

    monkeypatch.setattr(_cgiprocess, "subprocess", SimpleNamespace(Popen=Capturing))

    def start() -> None:
        transport = ScriptProcess(
            fake.reactor,
            Recorder(),
            "/x",
            ["/x", "arg"],
            environment={},
            directory="/",
            user=(1000, 100),
            groups=fake.groups,
        )
        del process.reapProcessHandlers[transport.pid]  # type: ignore[arg-type]
        for pipe in list(transport.pipes.values()):
            os.close(pipe.fileno())

    start()
    assert captured[0]["args"] == [
        "/usr/bin/setpriv",
        "--reuid=1000",
        "--regid=100",
        "--clear-groups",
        "--",
        "/x",
        "arg",
    ]
    assert captured[0]["executable"] == "/usr/bin/setpriv"
    assert "user" not in captured[0]
    monkeypatch.setattr(privileges, "SETPRIV", None)
    start()
    assert captured[1]["args"] == ["/x", "arg"]
    assert (captured[1]["user"], captured[1]["group"]) == (1000, 100)
    assert captured[1]["extra_groups"] == []


def test_startFailureClosesThePipes(monkeypatch: pytest.MonkeyPatch) -> None:
    """
    A script that cannot be started leaves no descriptor open.
    """

    def refuse(args: Sequence[str], **kw: Any) -> None:
        raise PermissionError(13, "Permission denied")

    monkeypatch.setattr(_cgiprocess, "subprocess", SimpleNamespace(Popen=refuse))
    before = set(os.listdir("/proc/self/fd"))
    with pytest.raises(PermissionError):
        ScriptProcess(
            MemoryReactorClock(),
            Recorder(),
            "/x",
            ["/x"],
            environment={},
            directory="/",
        )
    assert set(os.listdir("/proc/self/fd")) == before


def test_standardInput(fake: SimpleNamespace) -> None:
    """
    What is written goes to the script's standard input, from a producer
    too; only standard input can be written to.
    """
    transport, _ = fake.start(Recorder(closeStdin=False))
    child = FakePopen.last
    transport.write(b"a")
    transport.writeToChild(0, b"b")
    transport.writeSequence([b"c", b"d"])
    with pytest.raises(KeyError):
        transport.writeToChild(1, b"x")
    producer = SimpleNamespace(
        pauseProducing=lambda: None,
        resumeProducing=lambda: None,
        stopProducing=lambda: None,
    )
    transport.registerProducer(producer, True)
    assert transport.pipes[0].producer is producer
    transport.unregisterProducer()
    assert transport.pipes[0].producer is None
    pump(fake.reactor)
    assert os.read(child.stdin, 100) == b"abcd"
    transport.closeStdin()
    pump(fake.reactor)
    assert 0 not in transport.pipes
    transport.write(b"lost")
    transport.unregisterProducer()


def test_pauseStopsReadingTheOutput(fake: SimpleNamespace) -> None:
    """
    While the client is slow the script's output is not read, so its pipe
    fills and the script blocks.
    """
    transport, proto = fake.start()
    child = FakePopen.last
    transport.pauseProducing()
    os.write(child.stdout, b"data")
    assert transport.pipes[1] not in fake.reactor.getReaders()
    transport.resumeProducing()
    pump(fake.reactor)
    assert ("out", b"data") in proto.events
    transport.closeStdout()
    transport.closeStderr()
    pump(fake.reactor)
    assert transport.pipes == {}
    transport.pauseProducing()
    transport.resumeProducing()
    transport.stopProducing()


def test_signalProcess(fake: SimpleNamespace) -> None:
    """
    Signals, by name or number, go to the whole group; a group the kernel
    no longer has reads as already exited.
    """
    transport, _ = fake.start()
    pid = FakePopen.last.pid
    transport.signalProcess("HUP")
    transport.signalProcess(signal.SIGUSR1)
    assert fake.kernel.signals == [(pid, signal.SIGHUP), (pid, signal.SIGUSR1)]

    def gone(pgid: int, signum: int) -> None:
        raise ProcessLookupError(pgid)

    fake.kernel.killGroup = gone
    with pytest.raises(error.ProcessExitedAlready):
        transport.signalProcess("TERM")
    assert transport.getPeer() is None
    assert transport.getHost() is None


def test_signalFailureLogged(fake: SimpleNamespace) -> None:
    """
    A group that cannot be signalled is logged, and terminate goes on.
    """
    transport, _ = fake.start()

    def refuse(pgid: int, signum: int) -> None:
        raise PermissionError(1, "Operation not permitted")

    fake.kernel.killGroup = refuse
    events: list[dict[str, Any]] = []
    globalLogPublisher.addObserver(events.append)
    try:
        transport.terminate(1.0)
    finally:
        globalLogPublisher.removeObserver(events.append)
    assert [e for e in events if "Cannot signal" in e.get("log_format", "")]


def test_pipeReadErrors(pipe: tuple[int, int], monkeypatch: pytest.MonkeyPatch) -> None:
    """
    A read that would block is no end; a failed read is a lost pipe.
    """
    readEnd, _ = pipe
    reader = _cgiprocess._PipeReader(MemoryReactorClock(), ChildRecorder(), 1, readEnd)
    assert reader.doRead() is None

    def broken(fd: int, size: int) -> bytes:
        raise OSError(5, "I/O error")

    monkeypatch.setattr(_cgiprocess.os, "read", broken)
    assert reader.doRead() is main.CONNECTION_LOST


# --------------------------------------------------------------------------
# Given descriptors (the spawner's way)


def test_realGivenStdio(
    cleanup: list[int], monkeypatch: pytest.MonkeyPatch, tmp_path: Any
) -> None:
    """
    With C{stdio}, the script is started in its
    directory, a session leader of its own, on the descriptors given
    (closed here once it runs); the transport holds no pipe, and reports
    its exit and end once its group is gone, as always.
    """
    monkeypatch.chdir(tmp_path)
    reactor = MemoryReactorClock()
    proto = Recorder()
    outRead, outWrite = os.pipe()
    inRead, inWrite = os.pipe()
    os.close(inWrite)
    transport = ScriptProcess(
        reactor,
        proto,
        "sh",
        ["sh", "-c", 'echo "$A $(pwd) $(ps -o sid= -p $$)"; exit 4'],
        environment={"A": "given", "PATH": "/usr/bin:/bin"},
        directory="/usr",
        groups=ProcessGroups(reactor),
        stdio=(inRead, outWrite, outWrite),
    )
    pid = transport.pid
    assert pid is not None
    cleanup.append(pid)
    assert transport.pipes == {}
    with pytest.raises(OSError):
        os.fstat(inRead)
    data = b""
    while chunk := os.read(outRead, 100):
        data += chunk
    os.close(outRead)
    assert data.split() == [b"given", b"/usr", str(pid).encode()]
    runUntil(transport, reactor, lambda: "ended" in proto.names())
    assert proto.reason("exited").exitCode == 4
    assert transport.killed is False


def test_givenStdioErrors(monkeypatch: pytest.MonkeyPatch, tmp_path: Any) -> None:
    """
    A directory or executable that does not exist is the L{OSError}
    C{Popen} would raise; the given descriptors are closed anyway.
    """
    monkeypatch.chdir(tmp_path)
    for executable, directory in (
        ("/bin/true", "/nonexistent"),
        ("/nonexistent", "/"),
        ("no-such-command", "/"),
    ):
        fds = os.pipe()
        extra = os.dup(fds[1])
        with pytest.raises(FileNotFoundError):
            ScriptProcess(
                MemoryReactorClock(),
                Recorder(),
                executable,
                [executable],
                environment={"PATH": "/usr/bin:/bin"},
                directory=directory,
                stdio=(fds[0], fds[1], extra),
            )
        for fd in (*fds, extra):
            with pytest.raises(OSError):
                os.fstat(fd)


def test_makePipesCleansUpOnFailure(monkeypatch: pytest.MonkeyPatch) -> None:
    """
    When the third pipe cannot be made (out of descriptors), the first two
    are closed and the error raised.
    """
    made: list[int] = []
    real = os.pipe

    def pipe() -> tuple[int, int]:
        if len(made) == 4:
            raise OSError(24, "Too many open files")
        fds = real()
        made.extend(fds)
        return fds

    monkeypatch.setattr(os, "pipe", pipe)
    with pytest.raises(OSError):
        _cgiprocess.makePipes()
    for fd in made:
        with pytest.raises(OSError):
            os.fstat(fd)


def test_scriptPipesHooks() -> None:
    """
    The base of every script transport leaves its hooks to subclasses, and
    reports the end once: when the group is gone and every pipe closed.
    """
    protocol = Recorder()
    pipes = _cgiprocess.ScriptPipes(MemoryReactorClock(), protocol, None)
    assert pipes.pipes == {}
    with pytest.raises(NotImplementedError):
        pipes._leaderExiting()
    pipes.pid, pipes._reason, pipes._endedSent = 7, error.ProcessDone(0), False
    pipes._maybeEnded()
    assert protocol.names() == []
    pipes.pid = None
    pipes._maybeEnded()
    pipes._maybeEnded()
    assert protocol.names() == ["ended"]
    pipes._lookAtLeader()
    assert pipes.getPeer() is None and pipes.getHost() is None


def test_signalNumber() -> None:
    assert _cgiprocess.signalNumber("TERM") == signal.SIGTERM
    assert _cgiprocess.signalNumber(9) == 9


def test_realTakeOverAChildStartedInAThread(cleanup: list[int], tmp_path: Any) -> None:
    """
    A script started by L{startScript} in another thread (as the spawner's
    launch threads do) and taken over with C{popen} after it has already
    exited, leaving a child in its group, is still seen exiting (it was
    left unreaped), anchors its group, and is reaped once it is ended.
    """
    devnull = os.open(os.devnull, os.O_RDWR)
    stdio = (devnull, os.dup(devnull), os.dup(devnull))
    started: list[Any] = []
    thread = threading.Thread(
        target=lambda: started.append(
            startScript(
                "/bin/sh",
                ["sh", "-c", "sleep 30 & exit 5"],
                environment={"PATH": "/usr/bin:/bin"},
                directory=str(tmp_path),
                stdio=stdio,
            )
        )
    )
    thread.start()
    thread.join()
    [popen] = started
    cleanup.append(popen.pid)
    for fd in stdio:
        with pytest.raises(OSError):
            os.fstat(fd)
    # It has exited before anything watches it.
    os.waitid(os.P_PID, popen.pid, os.WEXITED | os.WNOWAIT)
    reactor = MemoryReactorClock()
    proto = Recorder()
    transport = ScriptProcess(
        reactor,
        proto,
        "/bin/sh",
        [],
        environment={},
        directory="/",
        groups=ProcessGroups(reactor),
        popen=popen,
    )
    assert proto.reason("exited").exitCode == 5
    assert transport.pid == popen.pid
    assert state(popen.pid) == "Z"
    assert transport.pipes == {}
    transport.terminate(0.1)
    runUntil(transport, reactor, lambda: "ended" in proto.names())
    assert transport.pid is None
    with pytest.raises(ChildProcessError):
        os.waitpid(popen.pid, os.WNOHANG)


# Bulk data through the pipes


def _pipeSize(fd: int) -> int:
    size: int = fcntl.fcntl(fd, fcntl.F_GETPIPE_SZ)
    return size


def test_bulkPipesEnlarged() -> None:
    """
    Standard input and output, which carry the request body and the
    response, get a capacity of C{_PIPE_SIZE}; standard error keeps the
    default.
    """
    with open("/proc/sys/fs/pipe-max-size") as f:
        if int(f.read()) < _cgiprocess._PIPE_SIZE and os.geteuid() != 0:
            pytest.skip("pipe-max-size is below the size asked for")
    child, ours = _cgiprocess.makePipes()
    try:
        assert _pipeSize(ours[0]) == _cgiprocess._PIPE_SIZE
        assert _pipeSize(ours[1]) == _cgiprocess._PIPE_SIZE
        assert _pipeSize(ours[2]) < _cgiprocess._PIPE_SIZE
    finally:
        for fd in child + ours:
            os.close(fd)


def test_pipeKeptWhenEnlargingRefused(monkeypatch: pytest.MonkeyPatch) -> None:
    """
    A refused capacity (a user over its pipe pages) leaves the pipes usable.
    """

    def refuse(fd: int, cmd: int, arg: int = 0) -> int:
        raise PermissionError(1, "Operation not permitted")

    monkeypatch.setattr(fcntl, "fcntl", refuse)
    child, ours = _cgiprocess.makePipes()
    try:
        os.write(ours[0], b"x")
        assert os.read(child[0], 1) == b"x"
    finally:
        for fd in child + ours:
            os.close(fd)


class _Pipes(SimpleNamespace):
    """
    What a pipe reader or writer reports to (a L{ScriptPipes}).
    """

    def childDataReceived(self, name: int, data: bytes) -> None:
        self.received.append(data)

    def childConnectionLost(self, name: int, reason: Failure) -> None:
        self.lost.append(reason)


@contextlib.contextmanager
def _pipe(capacity: int) -> Iterator[tuple[int, int]]:
    readEnd, writeEnd = os.pipe()
    fcntl.fcntl(writeEnd, fcntl.F_SETPIPE_SZ, capacity)
    try:
        yield readEnd, writeEnd
    finally:
        for fd in (readEnd, writeEnd):
            with contextlib.suppress(OSError):
                os.close(fd)


def test_writerWritesAtOnce() -> None:
    """
    Standard input's writer hands a chunk to a pipe with room at once,
    without waiting for the reactor (no writer registered); what the pipe
    does not take is buffered and follows, in order, when it is writable.
    """
    reactor = MemoryReactorClock()
    owner = _Pipes(received=[], lost=[])
    with _pipe(4096) as (readEnd, writeEnd):
        writer = _cgiprocess._PipeWriter(reactor, owner, 0, writeEnd)
        writer.write(b"abc")
        assert reactor.getWriters() == []
        assert os.read(readEnd, 100) == b"abc"
        writer.write(b"x" * 5000)
        assert reactor.getWriters() == [writer]
        writer.write(b"yz")
        assert os.read(readEnd, 10000) == b"x" * 4096
        writer.doWrite()
        assert reactor.getWriters() == []
        assert os.read(readEnd, 10000) == b"x" * 904 + b"yz"


def test_writerToClosedPipe() -> None:
    """
    A pipe whose reader is gone (the script closed its input) fails the
    buffered way: the writer learns it when the reactor writes.
    """
    reactor = MemoryReactorClock()
    owner = _Pipes(received=[], lost=[])
    with _pipe(4096) as (readEnd, writeEnd):
        os.close(readEnd)
        writer = _cgiprocess._PipeWriter(reactor, owner, 0, writeEnd)
        writer.write(b"abc")
        assert reactor.getWriters() == [writer]
        assert writer.doWrite() is not None


def test_outputReadWholePipeAtOnce() -> None:
    """
    Standard output is read up to a whole enlarged pipe at once.
    """
    reactor = MemoryReactorClock()
    owner = _Pipes(received=[], lost=[])
    with _pipe(_cgiprocess._PIPE_SIZE) as (readEnd, writeEnd):
        reader = _cgiprocess._OutputReader(reactor, owner, 1, readEnd)
        os.write(writeEnd, b"o" * (512 * 1024))
        reader.doRead()
        assert owner.received == [b"o" * (512 * 1024)]


def test_pullProducerKeptBuffered() -> None:
    """
    A pull producer feeding standard input (a spooled body's C{FileSender})
    is asked for more each time its chunk has been written: its chunks are
    buffered and written by the reactor, never at once.
    """
    reactor = MemoryReactorClock()
    owner = _Pipes(received=[], lost=[])
    with _pipe(4096) as (readEnd, writeEnd):
        writer = _cgiprocess._PipeWriter(reactor, owner, 0, writeEnd)
        asked: list[int] = []

        class Pull:
            def resumeProducing(self) -> None:
                asked.append(1)
                writer.write(b"chunk")

            def stopProducing(self) -> None:
                pass

        writer.registerProducer(cast(Any, Pull()), False)
        assert asked == [1]
        assert reactor.getWriters() == [writer]
        writer.doWrite()
        assert asked == [1, 1]
        assert os.read(readEnd, 100) == b"chunk"
        assert reactor.getWriters() == [writer]
