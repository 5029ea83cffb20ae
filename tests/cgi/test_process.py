"""
Tests for L{twisted_cgiserve._cgi.process}: a script's process group is
anchored by its unreaped leader until nothing of it is left, and ended as a
whole; and for the ending side of L{twisted_cgiserve._cgi.protocol.ScriptRun}.

Most tests use a fake child and a fake kernel, in simulated time; the
C{Real} ones run real shell scripts with the real system calls.
"""

from __future__ import annotations

import contextlib
import os
import signal
import subprocess
import time
from collections.abc import Callable, Iterator, Sequence
from types import SimpleNamespace
from typing import Any

import pytest
from twisted.internet import error, process
from twisted.internet.defer import Deferred
from twisted.internet.protocol import ProcessProtocol
from twisted.internet.task import Clock
from twisted.internet.testing import MemoryReactorClock
from twisted.logger import LogLevel, globalLogPublisher
from twisted.python.failure import Failure
from twisted.web.test.requesthelper import DummyRequest

from twisted_cgiserve._cgi import process as _cgiprocess
from twisted_cgiserve._cgi import protocol as _cgirun
from twisted_cgiserve._cgi.process import Kernel, ProcessGroups, ScriptProcess
from twisted_cgiserve._cgi.protocol import KILL_GRACE, ScriptRun
from twisted_cgiserve._http import response as _response

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


def test_watcherForgetsAndStops() -> None:
    """
    L{ProcessGroups} has no timer once nothing is watched.
    """
    clock = Clock()
    kernel = FakeKernel()
    groups = ProcessGroups(clock, kernel)
    group = SimpleNamespace(pgid=5, urgent=False, groupEmpty=lambda: None)
    kernel.members[5] = {6}
    groups.watch(group, 0)
    clock.advance(0)
    assert len(groups) == 1
    assert len(clock.getDelayedCalls()) == 1
    groups.forget(group)
    assert not clock.getDelayedCalls()


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
    fields = _cgiprocess._stat(pid)
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


# --------------------------------------------------------------------------
# ScriptRun's ending, with a fake transport


class FakeScript:
    """
    The transport side of L{ScriptRun}: records terminate calls.
    """

    pid = 4242

    def __init__(self) -> None:
        self.terminated: list[float] = []
        self.closed: list[int] = []
        self.done: Deferred[bool] = Deferred()

    def terminate(self, grace: float) -> Any:
        self.terminated.append(grace)
        return self.done

    def closeStdin(self) -> None:
        self.closed.append(0)

    def pauseProducing(self) -> None:
        pass

    def resumeProducing(self) -> None:
        pass


class Request(DummyRequest):
    """
    Enough of a request for L{ScriptRun}: no body, a push producer.
    """

    startedWriting = False
    code = 200
    content = None
    producer: object = None

    def registerProducer(self, producer: object, streaming: bool) -> None:
        self.producer = producer

    def unregisterProducer(self) -> None:
        self.producer = None

    def write(self, data: bytes) -> None:
        self.startedWriting = True
        super().write(data)


@pytest.fixture
def run(monkeypatch: pytest.MonkeyPatch) -> SimpleNamespace:
    cut: list[object] = []
    monkeypatch.setattr(_cgirun, "cutResponse", cut.append)
    monkeypatch.setattr(_response, "cutResponse", cut.append)
    clock = Clock()
    request = Request([b""])
    script = ScriptRun(request, "/cgi-bin/s", lambda *a: None, clock, timeout=2.0)
    transport = FakeScript()
    script.makeConnection(transport)
    return SimpleNamespace(
        clock=clock, request=request, script=script, transport=transport, cut=cut
    )


def test_responseEndsAtEndOfOutput(run: SimpleNamespace) -> None:
    """
    A response without Content-Length ends when the script closes its
    output, though the script has not exited; the script is ended
    --cgi-timeout later if it is still there.
    """
    run.script.childDataReceived(1, b"Content-Type: text/plain\n\nbody\n")
    run.script.childConnectionLost(1)
    assert run.request.finished == 1
    assert b"".join(run.request.written) == b"body\n"
    run.clock.advance(1.9)
    assert run.transport.terminated == []
    run.clock.advance(0.1)
    assert run.transport.terminated == [KILL_GRACE]
    assert run.request.finished == 1
    assert run.cut == []


def test_lingerCountsFromTheEndOfTheResponse(run: SimpleNamespace) -> None:
    """
    A complete Content-Length ends the response at once; what lingers is
    ended --cgi-timeout after that, not after the last output, and not at
    all if the group ends first.
    """
    run.clock.advance(1.5)
    run.script.childDataReceived(1, b"Content-Type: a/b\nContent-Length: 2\n\nok")
    assert run.request.finished == 1
    run.clock.advance(1.9)
    assert run.transport.terminated == []
    run.script.processExited(Failure(error.ProcessDone(0)))
    run.script.processEnded(Failure(error.ProcessDone(0)))
    run.clock.advance(10)
    assert run.transport.terminated == []
    assert run.script.ended.called


def test_shortContentLengthStillCut(run: SimpleNamespace) -> None:
    """
    Output that ends before its Content-Length is a cut response, and the
    script's group is ended at once.
    """
    run.script.childDataReceived(1, b"Content-Type: a/b\nContent-Length: 10\n\nabc")
    run.script.childConnectionLost(1)
    assert run.cut == [run.request]
    assert run.transport.terminated == [KILL_GRACE]


def test_incompleteHeadWaitsForTheExit(run: SimpleNamespace) -> None:
    """
    Output that ends inside the head is judged when the script exits: 502,
    and the group is ended.
    """
    run.script.childDataReceived(1, b"Status: 200")
    run.script.childConnectionLost(1)
    assert run.request.finished == 0
    run.script.processExited(Failure(error.ProcessDone(0)))
    assert run.request.responseCode == 502
    assert run.transport.terminated == [KILL_GRACE]


def test_shutdownBeforeTheHeadIs503(run: SimpleNamespace) -> None:
    """
    A script ended by the shutdown before its head: 503, once it has exited.
    """
    run.script.stop()
    assert run.transport.terminated == [KILL_GRACE]
    run.script.childConnectionLost(1)
    assert run.request.finished == 0
    run.script.processExited(Failure(error.ProcessTerminated(signal=15)))
    assert run.request.responseCode == 503


def test_killLogged(run: SimpleNamespace) -> None:
    """
    A group that needed SIGKILL is logged once, with the script and pid.
    """
    events: list[dict[str, Any]] = []
    globalLogPublisher.addObserver(events.append)
    try:
        run.script.stop()
        run.transport.done.callback(True)
    finally:
        globalLogPublisher.removeObserver(events.append)
    killed = [e for e in events if "did not end" in e.get("log_format", "")]
    assert len(killed) == 1
    assert killed[0]["pid"] == 4242
    assert killed[0]["script"] == "/cgi-bin/s"
