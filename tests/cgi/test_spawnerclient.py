"""
Tests for L{twisted_cgiserve._cgi.spawnerclient}: the scripts the spawner
started as transports (L{RemoteScript}), the client's round trips against a
fake spawner at the other end of a real socket pair, in simulated time; and,
in the C{Real} tests, the real spawner process.
"""

from __future__ import annotations

import errno
import os
import select
import signal
import socket
import time
from collections.abc import Iterator, Sequence
from typing import Any

import pytest
from twisted.internet import error
from twisted.internet.protocol import ProcessProtocol
from twisted.internet.testing import MemoryReactorClock
from twisted.python.failure import Failure
from twisted.web.resource import Resource

from tests.support.requests import body, header, makeRequest
from twisted_cgiserve._cgi import spawnerclient as _client
from twisted_cgiserve._cgi.environ import CGIEnvironmentSettings
from twisted_cgiserve._cgi.gateway import ScriptGateway
from twisted_cgiserve._cgi.groups import Kernel
from twisted_cgiserve._cgi.process import ScriptProcess, SpawnRefused
from twisted_cgiserve._cgi.spawnerclient import (
    MAX_BACKOFF,
    REPLY_TIMEOUT,
    RemoteScript,
    SpawnerClient,
    SpawnerService,
    spawnerService,
)
from twisted_cgiserve._cgi.spawnerwire import (
    ENVIRONMENT_VARIABLE,
    decode,
    encode,
    encodeBatch,
    receivePacket,
    sendPacket,
)
from twisted_cgiserve._http.paths import resolvePath


class Recorder(ProcessProtocol):
    """
    A process protocol that records what its transport tells it.
    """

    def __init__(self) -> None:
        self.events: list[Any] = []
        self.data: dict[int, bytes] = {}

    def connectionMade(self) -> None:
        self.events.append("connected")

    def childDataReceived(self, childFD: int, data: bytes) -> None:
        self.data[childFD] = self.data.get(childFD, b"") + data

    def childConnectionLost(self, childFD: int) -> None:
        self.events.append(("lost", childFD))

    def processExited(self, reason: Failure) -> None:
        self.events.append(("exited", reason.value))

    def processEnded(self, reason: Failure) -> None:
        self.events.append(("ended", reason.value))


class FakeKernel(Kernel):
    def __init__(self) -> None:
        self.exitingPids: set[int] = set()

    def exiting(self, pid: int) -> bool:
        return pid in self.exitingPids


class FakeClient:
    def __init__(self) -> None:
        self.requests: list[dict[str, Any]] = []

    def request(self, message: dict[str, Any]) -> None:
        self.requests.append(message)


def pipes() -> tuple[tuple[int, int, int], list[int]]:
    """
    Three pipes: the server's ends (as a RemoteScript takes them), and the
    child's ends (for the test to close).
    """
    made = [os.pipe() for _ in range(3)]
    ours = (made[0][1], made[1][0], made[2][0])
    theirs = [made[0][0], made[1][1], made[2][1]]
    return ours, theirs


def pump(reactor: MemoryReactorClock) -> None:
    """
    What the reactor would do for the pipes being closed: their writes
    flushed, their delayed ends run.
    """
    for _ in range(10):
        for writer in list(reactor.writers):
            why = writer.doWrite()
            if why:
                reactor.removeWriter(writer)
                writer.connectionLost(Failure(why))
        reactor.advance(0)


class ScriptWorld:
    def __init__(self, pid: int | None = 4242) -> None:
        self.reactor = MemoryReactorClock()
        self.client = FakeClient()
        self.kernel = FakeKernel()
        self.proto = Recorder()
        ours, self.theirs = pipes()
        self.script = RemoteScript(
            self.client,  # type: ignore[arg-type]
            self.reactor,
            self.proto,
            ours,
            pid,
            self.kernel,
        )
        self.proto.makeConnection(self.script)

    def close(self) -> None:
        self.script.loseConnection()
        for pipe in list(self.script.pipes.values()):
            self.script.childConnectionLost(pipe.name, Failure(Exception()))
        for fd in self.theirs:
            os.close(fd)

    def closePipes(self) -> None:
        for name in (0, 1, 2):
            if name in self.script.pipes:
                self.script.childConnectionLost(name, Failure(Exception()))


@pytest.fixture
def sw() -> Iterator[ScriptWorld]:
    w = ScriptWorld()
    yield w
    w.close()


# --------------------------------------------------------------------------
# RemoteScript


def test_exitedThenEnded(sw: ScriptWorld) -> None:
    """
    The spawner's C{exited} is the protocol's C{processExited}; its
    C{ended} the protocol's C{processEnded}, once the pipes are closed too;
    the PID is dropped then.
    """
    sw.script.exited(3)
    assert sw.script.status == 3
    assert isinstance(sw.proto.events[-1][1], error.ProcessTerminated)
    assert sw.proto.events[-1][1].exitCode == 3
    sw.script.ended(False)
    assert sw.script.pid is None
    assert sw.proto.events[-1][0] == "exited"
    sw.closePipes()
    assert sw.proto.events[-1][0] == "ended"
    assert [e for e in sw.proto.events if e[0] == "ended"] == [sw.proto.events[-1]]


def test_exitStatuses(sw: ScriptWorld) -> None:
    sw.script.exited(-9)
    assert sw.proto.events[-1][1].signal == 9
    sw.script.exited(0)
    assert len([e for e in sw.proto.events if e[0] == "exited"]) == 1


def test_exitedCleanly(sw: ScriptWorld) -> None:
    sw.script.exited(0)
    assert isinstance(sw.proto.events[-1][1], error.ProcessDone)


def test_endedWithoutExitIsUnknown(sw: ScriptWorld) -> None:
    """
    An end without an exit (the spawner lost its anchor) reports an exit of
    unknown status first.
    """
    sw.closePipes()
    sw.script.ended(True)
    kinds = [e[0] for e in sw.proto.events if isinstance(e, tuple)]
    assert kinds[-2:] == ["exited", "ended"]
    assert sw.proto.events[-1][1].exitCode is None
    sw.script.ended(True)


def test_heldEndOfOutput(sw: ScriptWorld) -> None:
    """
    When the script's exit closed its output, the end of output is held
    until the spawner reports the exit, so the protocol learns how it
    ended first.
    """
    sw.kernel.exitingPids.add(4242)
    sw.script.childConnectionLost(1, Failure(Exception()))
    assert ("lost", 1) not in sw.proto.events
    sw.reactor.advance(0.05)
    assert ("lost", 1) not in sw.proto.events
    sw.script.exited(0)
    assert sw.proto.events[-2][0] == "exited"
    assert sw.proto.events[-1] == ("lost", 1)


def test_endOfOutputOfALiveScriptIsNotHeld(sw: ScriptWorld) -> None:
    sw.script.childConnectionLost(1, Failure(Exception()))
    assert sw.proto.events[-1] == ("lost", 1)


def test_terminate(sw: ScriptWorld) -> None:
    """
    C{terminate} closes the pipes and asks the spawner once; every caller
    learns when the group is gone, and whether it was killed.
    """
    first = sw.script.terminate(2.0)
    second = sw.script.terminate(5.0)
    assert sw.client.requests == [{"op": "terminate", "pid": 4242, "grace": 2.0}]
    assert sw.script.pipes == {} or all(
        p.disconnecting for p in sw.script.pipes.values()
    )
    results: list[bool] = []
    first.addCallback(results.append)
    second.addCallback(results.append)
    sw.script.ended(True)
    assert results == [True, True]
    third = sw.script.terminate(1.0)
    third.addCallback(results.append)
    assert results == [True, True, True]


def test_signalProcess(sw: ScriptWorld) -> None:
    sw.script.signalProcess("HUP")
    sw.script.signalProcess(10)
    assert sw.client.requests == [
        {"op": "signal", "pid": 4242, "signal": signal.SIGHUP},
        {"op": "signal", "pid": 4242, "signal": 10},
    ]
    sw.script.ended(False)
    with pytest.raises(error.ProcessExitedAlready):
        sw.script.signalProcess("TERM")


def test_lost(sw: ScriptWorld) -> None:
    """
    When the spawner is lost, the pipes are closed and the end reported.
    """
    sw.script.lost()
    for name in list(sw.script.pipes):
        sw.script.childConnectionLost(name, Failure(Exception()))
    assert sw.script.pid is None
    assert sw.proto.events[-1][0] == "ended"


def test_writeAndRead(sw: ScriptWorld) -> None:
    """
    The pipes are the server's: what the protocol writes reaches the
    script's standard input, and what is pending on its standard error can
    be read at once.
    """
    sw.script.write(b"body")
    sw.script.pipes[0].doWrite()  # type: ignore[union-attr]
    assert os.read(sw.theirs[0], 10) == b"body"
    os.write(sw.theirs[2], b"oops\n")
    sw.script.readPendingStderr()
    assert sw.proto.data[2] == b"oops\n"


# --------------------------------------------------------------------------
# RemoteScript before the spawner's answer


@pytest.fixture
def pending() -> Iterator[ScriptWorld]:
    w = ScriptWorld(pid=None)
    yield w
    w.close()


def test_pendingTerminateIsSentWithThePid(pending: ScriptWorld) -> None:
    """
    Ending a script before its PID is known closes the pipes at once, and
    asks the spawner to end it as soon as the PID arrives; the callers
    learn when it is gone.
    """
    results: list[bool] = []
    pending.script.terminate(1.5).addCallback(results.append)
    pending.script.terminate(3.0).addCallback(results.append)
    assert pending.client.requests == []
    assert all(p.disconnecting for p in pending.script.pipes.values())
    pending.script.spawned(31)
    assert pending.client.requests == [{"op": "terminate", "pid": 31, "grace": 1.5}]
    pending.script.spawned(32)
    pending.script.ended(True)
    assert results == [True, True]


def test_pendingSignalsAreSentWithThePid(pending: ScriptWorld) -> None:
    pending.script.signalProcess("USR1")
    pending.script.signalProcess(10)
    assert pending.client.requests == []
    pending.script.spawned(31)
    assert pending.client.requests == [
        {"op": "signal", "pid": 31, "signal": signal.SIGUSR1},
        {"op": "signal", "pid": 31, "signal": 10},
    ]


def test_pendingTerminateOfAScriptNeverStarted(pending: ScriptWorld) -> None:
    """
    A script ended before the spawner answered that it could not start it
    is gone then, never killed; nothing is sent.
    """
    results: list[bool] = []
    pending.script.terminate(1.5).addCallback(results.append)
    pending.script.started.addErrback(lambda _: None)
    pending.script.failed(OSError(errno.ENOENT, "gone"))
    pending.script.failed(OSError(errno.ENOENT, "twice"))
    assert results == [False]
    assert pending.client.requests == []
    pending.closePipes()
    assert [e[0] for e in pending.proto.events if e[0] == "ended"] == ["ended"]
    assert not [e for e in pending.proto.events if e[0] == "exited"]


def test_pendingEndOfOutputIsHeldUntilTheAnswer(pending: ScriptWorld) -> None:
    """
    Output that ends before the answer is held: a script that exited at
    once has its exit reported first; one never started has its end of
    output come after the failure (which the gateway has answered).
    """
    pending.script.childConnectionLost(1, Failure(Exception()))
    assert ("lost", 1) not in pending.proto.events
    pending.reactor.advance(0.05)
    pending.kernel.exitingPids.add(31)
    pending.script.spawned(31)
    pending.reactor.advance(0.05)
    assert ("lost", 1) not in pending.proto.events
    pending.script.exited(0)
    assert pending.proto.events[-2][0] == "exited"
    assert pending.proto.events[-1] == ("lost", 1)

    other = ScriptWorld(pid=None)
    try:
        order: list[str] = []
        other.script.started.addErrback(lambda _: order.append("failed"))
        other.script.childConnectionLost(1, Failure(Exception()))
        setattr(  # noqa: B010
            other.proto,
            "childConnectionLost",
            lambda name: order.append(f"lost {name}"),
        )
        other.script.failed(SpawnRefused("too many scripts"))
        assert order[:2] == ["failed", "lost 1"]
    finally:
        other.close()


def test_pendingEndOfOutputOfALiveScriptIsLetGoAtTheAnswer(
    pending: ScriptWorld,
) -> None:
    """
    A script that closes its output before the spawner answers, and works
    on (a complete response, then a slow clean-up): the end of output is
    let go as soon as the answer shows it alive, so the response ends then,
    not when the script exits or times out.
    """
    pending.script.childConnectionLost(1, Failure(Exception()))
    pending.reactor.advance(0.05)
    assert ("lost", 1) not in pending.proto.events
    pending.script.spawned(31)
    assert pending.proto.events[-1] == ("lost", 1)
    assert not [e for e in pending.proto.events if e[0] == "exited"]
    pending.script.exited(0)
    assert [e for e in pending.proto.events if e == ("lost", 1)] == [("lost", 1)]


def test_pendingLostIsRefused(pending: ScriptWorld) -> None:
    failures: list[Failure] = []
    pending.script.started.addErrback(failures.append)
    pending.script.lost()
    assert failures[0].check(SpawnRefused)
    assert pending.script.pid is None
    pending.script.spawned(31)
    assert pending.script.pid is None


# --------------------------------------------------------------------------
# SpawnerClient against a fake spawner


class FakeSpawner:
    """
    The spawner's end of a socket pair: answers queued before the client
    asks, requests read back.
    """

    def __init__(self, sock: socket.socket) -> None:
        self.sock = sock
        sock.setblocking(False)
        self.buffer = bytearray(1 << 20)

    def answer(self, **message: Any) -> None:
        sendPacket(self.sock, encode(message))

    def requests(self) -> list[tuple[dict[str, Any], list[int]]]:
        found = []
        while True:
            try:
                got = receivePacket(self.sock, self.buffer)
            except BlockingIOError:
                return found
            assert got is not None
            found.append((decode(got[0]), got[1]))


class ClientWorld:
    def __init__(self) -> None:
        self.reactor = MemoryReactorClock()
        self.now = 100.0
        self.client = SpawnerClient(
            self.reactor, kernel=FakeKernel(), now=lambda: self.now
        )
        ours, theirs = socket.socketpair(socket.AF_UNIX, socket.SOCK_SEQPACKET)
        ours.setblocking(False)
        self.client._sock = ours
        self.client.address = "fake"
        self.spawner = FakeSpawner(theirs)

    def spawn(self, executable: str = "/bin/true") -> Any:
        proto = Recorder()
        return self.client.spawn(
            self.reactor,
            proto,
            executable,
            ["x", "y"],
            environment={"A": "1"},
            directory="/tmp",
            user=None,
        )

    def close(self) -> None:
        for script in list(self.client._scripts.values()):
            script.lost()
            for name in list(script.pipes):
                script.childConnectionLost(name, Failure(Exception()))
        self.client._stopped = True
        self.client._disconnect()
        self.spawner.sock.close()


@pytest.fixture
def cw() -> Iterator[ClientWorld]:
    w = ClientWorld()
    yield w
    w.close()


def test_spawnSendsTheRequestWithTheChildsEnds(cw: ClientWorld) -> None:
    """
    C{spawn} sends the request with the child's three descriptors (closed
    here once sent), and returns the script at once, its protocol
    connected and its pipes usable before the spawner has answered; the
    answer, read by the reactor, gives it its PID.
    """
    script = cw.spawn()
    assert isinstance(script, RemoteScript)
    assert script.pid is None
    assert script.pending
    assert script.proto.events == ["connected"]  # type: ignore[attr-defined]
    [(request, fds)] = cw.spawner.requests()
    assert request == {
        "op": "spawn",
        "id": 1,
        "executable": "/bin/true",
        "argv": ["x", "y"],
        "environment": {"A": "1"},
        "directory": "/tmp",
    }
    assert len(fds) == 3
    # The body can be written, and the output read, already.
    script.write(b"body")
    script.pipes[0].doWrite()
    assert os.read(fds[0], 10) == b"body"
    os.write(fds[1], b"out")
    assert os.read(script.pipes[1].fileno(), 10) == b"out"
    # Its standard error waits for its PID (each line is logged with it).
    assert script.pipes[1] in cw.reactor.readers
    assert script.pipes[2] not in cw.reactor.readers
    started: list[object] = []
    script.started.addCallback(started.append)
    assert started == []
    cw.spawner.answer(op="spawned", id=1, pid=777)
    cw.client.doRead()
    assert script.pid == 777
    assert not script.pending
    assert started == [None]
    assert script.pipes[2] in cw.reactor.readers
    assert cw.client._scripts == {777: script}
    assert cw.client._spawning == {}
    # The deadline check finds nothing left waiting.
    cw.now += REPLY_TIMEOUT
    cw.reactor.advance(REPLY_TIMEOUT)
    assert cw.client._sock is not None
    assert not cw.reactor.getDelayedCalls()
    for fd in fds:
        os.close(fd)


def test_execErrorFailsStarted(cw: ClientWorld) -> None:
    """
    The exec's error fails L{RemoteScript.started} with the L{OSError}
    subclass of its errno (the gateway answers 403 for
    L{PermissionError}); then the pipes close (no descriptor is left) and
    the protocol's C{processEnded} comes, without C{processExited}: nothing
    ran.
    """
    before = set(os.listdir("/proc/self/fd"))
    script = cw.spawn()
    for _, fds in cw.spawner.requests():
        for fd in fds:
            os.close(fd)
    failures: list[Failure] = []
    script.started.addErrback(failures.append)
    cw.spawner.answer(op="failed", id=1, errno=errno.EACCES, message="Permission")
    cw.client.doRead()
    [failure] = failures
    assert failure.check(PermissionError)
    assert str(failure.value) == "[Errno 13] Permission"
    pump(cw.reactor)
    events = script.proto.events
    assert [e for e in events if e[0] in ("exited", "ended")] == [
        ("ended", failure.value)
    ]
    assert set(os.listdir("/proc/self/fd")) == before
    assert cw.client._spawning == {} and cw.client._scripts == {}


def test_malformedFailureIsEIO(cw: ClientWorld) -> None:
    """
    A failure without a usable errno, or a C{spawned} without a usable
    PID, is C{EIO}; answers to nothing sent are ignored.
    """
    failures: list[Failure] = []
    for _ in range(2):
        cw.spawn().started.addErrback(failures.append)
    cw.spawner.answer(op="failed", id=1, errno="x")
    cw.spawner.answer(op="spawned", id=2, pid=-1)
    cw.spawner.answer(op="spawned", id=99, pid=5)
    cw.spawner.answer(op="failed", id="x")
    cw.client.doRead()
    assert [getattr(f.value, "errno", None) for f in failures] == [
        errno.EIO,
        errno.EIO,
    ]
    assert cw.client._scripts == {}
    for _, fds in cw.spawner.requests():
        for fd in fds:
            os.close(fd)


def test_refusedFailsStartedWithSpawnRefused(cw: ClientWorld) -> None:
    script = cw.spawn()
    failures: list[Failure] = []
    script.started.addErrback(failures.append)
    cw.spawner.answer(op="refused", id=1, message="too many scripts")
    cw.client.doRead()
    [failure] = failures
    assert failure.check(SpawnRefused)
    assert str(failure.value) == "too many scripts"
    for _, fds in cw.spawner.requests():
        for fd in fds:
            os.close(fd)


def test_eventsBeforeTheGreetingWaitForTheReactor(cw: ClientWorld) -> None:
    """
    Events that arrive while the client waits (blocking) for a greeting
    are handled on the reactor's next turn, in order, never inside the
    wait.
    """
    first = cw.spawn()
    cw.spawner.answer(op="spawned", id=1, pid=10)
    cw.client.doRead()
    cw.spawner.answer(op="exited", pid=10, status=0)
    cw.spawner.answer(op="ended", pid=10, killed=False)
    sendPacket(cw.spawner.sock, b"garbage")
    cw.spawner.answer(op="hello", pid=1)
    sock = cw.client._sock
    assert sock is not None
    hello = cw.client._await(sock, lambda m: m["op"] == "hello", 1)
    assert hello["pid"] == 1
    assert first.status is None
    cw.reactor.advance(0)
    assert first.status == 0
    assert first.pid is None
    for _, fds in cw.spawner.requests():
        for fd in fds:
            os.close(fd)


def test_doReadDispatches(cw: ClientWorld) -> None:
    script = cw.spawn()
    cw.spawner.answer(op="spawned", id=1, pid=10)
    cw.spawner.answer(op="exited", pid=10, status=-15)
    cw.spawner.answer(op="exited", pid=99, status=0)
    sendPacket(cw.spawner.sock, b"garbage")
    cw.spawner.answer(op="ended", pid=10, killed=True)
    cw.client.doRead()
    assert script.status == -15
    assert script.pid is None
    assert cw.client._scripts == {}
    for _, fds in cw.spawner.requests():
        for fd in fds:
            os.close(fd)


def test_batchesAreDispatchedInOrder(cw: ClientWorld) -> None:
    """
    A packet holding several messages (the spawner sends a turn's worth at
    once) is acted on message by message, in order; a bad one is logged
    and dropped whole.
    """
    script = cw.spawn()
    [packet] = encodeBatch(
        [
            {"op": "spawned", "id": 1, "pid": 10},
            {"op": "exited", "pid": 10, "status": 3},
            {"op": "ended", "pid": 10, "killed": False},
        ]
    )
    sendPacket(cw.spawner.sock, b'[{"op": "exited", "pid": 10}, 7]')
    sendPacket(cw.spawner.sock, packet)
    cw.client.doRead()
    assert script.status == 3
    assert script.pid is None
    assert cw.client._scripts == {}
    for _, fds in cw.spawner.requests():
        for fd in fds:
            os.close(fd)


def test_answerAmidABatch(cw: ClientWorld) -> None:
    """
    The message waited for may come amid others in one packet: those
    before and after it wait for the reactor, in order.
    """
    first = cw.spawn()
    [packet] = encodeBatch(
        [
            {"op": "spawned", "id": 1, "pid": 10},
            {"op": "hello", "pid": 1},
            {"op": "exited", "pid": 10, "status": 0},
        ]
    )
    sendPacket(cw.spawner.sock, packet)
    sock = cw.client._sock
    assert sock is not None
    assert cw.client._await(sock, lambda m: m["op"] == "hello", 1)["pid"] == 1
    assert first.pid is None
    cw.reactor.advance(0)
    assert first.pid == 10
    assert first.status == 0
    for _, fds in cw.spawner.requests():
        for fd in fds:
            os.close(fd)


def test_batchBeforeAHangUp(cw: ClientWorld) -> None:
    """
    A last batch read as the connection is let go is acted on before the
    scripts are lost.
    """
    script = cw.spawn()
    for _, fds in cw.spawner.requests():
        for fd in fds:
            os.close(fd)
    [packet] = encodeBatch(
        [
            {"op": "spawned", "id": 1, "pid": 10},
            {"op": "exited", "pid": 10, "status": 4},
        ]
    )
    sendPacket(cw.spawner.sock, packet)
    cw.spawner.sock.close()
    cw.client.connectionLost(Failure(Exception()))
    assert script.status == 4
    assert script.pid is None


def test_spawnerGoneMeansRefusedAndScriptsLost(cw: ClientWorld) -> None:
    """
    When the spawner hangs up, every script it had started is reported
    ended, and every one it had not answered for fails with
    L{SpawnRefused} (C{503}); a request then is refused until the backoff
    is over.
    """
    script = cw.spawn()
    cw.spawner.answer(op="spawned", id=1, pid=10)
    cw.client.doRead()
    waiting = cw.spawn()
    failures: list[Failure] = []
    waiting.started.addErrback(failures.append)
    for _, fds in cw.spawner.requests():
        for fd in fds:
            os.close(fd)
    cw.spawner.sock.close()
    cw.client.doRead()
    assert script.pid is None
    assert failures[0].check(SpawnRefused)
    assert cw.client._sock is None
    with pytest.raises(SpawnRefused, match="restarting"):
        cw.spawn()


def test_spawnToAGoneSpawnerIsRefused(cw: ClientWorld) -> None:
    cw.spawner.sock.close()
    with pytest.raises(SpawnRefused, match="gone"):
        cw.spawn()


def test_noAnswerInTimeIsRefused(cw: ClientWorld) -> None:
    """
    A spawner that leaves a request without an answer for
    L{REPLY_TIMEOUT} is given up on: the request is refused, not left
    waiting; one deadline check at a time, for the oldest request.
    """
    first = cw.spawn()
    failures: list[Failure] = []
    first.started.addErrback(failures.append)
    cw.now += 1.5
    cw.reactor.advance(1.5)
    second = cw.spawn()
    second.started.addErrback(failures.append)
    assert len(cw.reactor.getDelayedCalls()) == 1
    cw.spawner.answer(op="spawned", id=1, pid=10)
    cw.client.doRead()
    cw.now += REPLY_TIMEOUT - 1.5
    cw.reactor.advance(REPLY_TIMEOUT - 1.5)
    # The first was answered; the second has time left.
    assert failures == []
    assert cw.client._sock is not None
    for _, fds in cw.spawner.requests():
        for fd in fds:
            os.close(fd)
    cw.now += 1.5
    cw.reactor.advance(1.5)
    assert [f.check(SpawnRefused) for f in failures] == [SpawnRefused]
    assert cw.client._sock is None


def test_tooLargeIsE2BIG(cw: ClientWorld, monkeypatch: pytest.MonkeyPatch) -> None:
    def tooLarge(sock: socket.socket, packet: bytes, fds: Sequence[int] = ()) -> None:
        raise OSError(errno.EMSGSIZE, "Message too long")

    monkeypatch.setattr(_client, "sendPacket", tooLarge)
    with pytest.raises(OSError) as caught:
        cw.spawn()
    assert caught.value.errno == errno.E2BIG
    assert cw.client._sock is not None


def test_fallback(cw: ClientWorld) -> None:
    """
    With a fallback (the spawner could not be started), scripts are started
    by it.
    """
    calls: list[tuple[Any, ...]] = []
    cw.client.fallback = lambda *a, **k: calls.append((a, k)) or "started"
    assert cw.spawn() == "started"
    assert calls[0][0][2] == "/bin/true"
    assert calls[0][1]["directory"] == "/tmp"


def test_requestWithoutSpawnerIsDropped(cw: ClientWorld) -> None:
    cw.client._disconnect()
    cw.client.request({"op": "terminate", "pid": 1, "grace": 1})


def test_requestToAGoneSpawnerLosesIt(cw: ClientWorld) -> None:
    cw.spawner.sock.close()
    cw.client.request({"op": "terminate", "pid": 1, "grace": 1})
    assert cw.client._sock is None


def test_connectionLostWhileRunningIsAStop(cw: ClientWorld) -> None:
    """
    The reactor lets go of the connection while the spawner is still there
    (it is stopping): the client stops, gently.
    """
    cw.client.connectionLost(Failure(Exception()))
    assert cw.client._stopped
    assert cw.client._sock is None
    cw.client.connectionLost(Failure(Exception()))


def test_connectionLostAfterAHangUp(cw: ClientWorld) -> None:
    script = cw.spawn()
    for _, fds in cw.spawner.requests():
        for fd in fds:
            os.close(fd)
    cw.spawner.answer(op="spawned", id=1, pid=10)
    cw.client.doRead()
    cw.spawner.answer(op="exited", pid=10, status=0)
    cw.spawner.sock.close()
    cw.client.connectionLost(Failure(Exception()))
    assert script.status == 0
    assert script.pid is None
    assert not cw.client._stopped


def test_ensureRefusesWhenItCannotRestart(
    cw: ClientWorld, monkeypatch: pytest.MonkeyPatch
) -> None:
    """
    A spawner meant to run as the CGI user is never restarted by a server
    that is no longer root: requests are refused instead.
    """
    cw.client._disconnect()
    cw.client.owner = True
    cw.client.user = (65534, 65534)
    monkeypatch.setattr(os, "geteuid", lambda: 1000)
    with pytest.raises(SpawnRefused, match="no longer runs as root"):
        cw.spawn()


def test_ensureRefusesWhenStopped(cw: ClientWorld) -> None:
    cw.client._disconnect()
    cw.client._stopped = True
    with pytest.raises(SpawnRefused, match="stopping"):
        cw.spawn()


def test_connectOnlyClientReconnects(cw: ClientWorld) -> None:
    """
    A worker's client (not the spawner's owner) tries to reach the address
    again, refusing meanwhile, with a growing backoff.
    """
    cw.client._disconnect()
    cw.client.owner = False
    cw.client.address = f"cgiserve-test-nothing-{os.getpid()}"
    with pytest.raises(SpawnRefused, match="cannot be reached"):
        cw.spawn()
    with pytest.raises(SpawnRefused, match="restarting"):
        cw.spawn()
    cw.now += MAX_BACKOFF
    with pytest.raises(SpawnRefused, match="cannot be reached"):
        cw.spawn()


def test_ownerThatCannotStartIsRefused(cw: ClientWorld) -> None:
    cw.client._disconnect()
    cw.client.owner = True
    cw.client._command = ["/nonexistent/python"]
    with pytest.raises(SpawnRefused, match="cannot be started"):
        cw.spawn()
    assert cw.client.process is None


def test_descriptorFace(cw: ClientWorld) -> None:
    assert cw.client.fileno() == cw.client._sock.fileno()  # type: ignore[union-attr]
    assert cw.client.logPrefix() == "SpawnerClient"
    cw.client._disconnect()
    assert cw.client.fileno() == -1


# --------------------------------------------------------------------------
# The service


def test_serviceFallsBackWhenTheSpawnerCannotStart() -> None:
    reactor = MemoryReactorClock()
    client = SpawnerClient(reactor, command=["/nonexistent/python"])
    service = SpawnerService(client)
    service.privilegedStartService()
    service.startService()
    assert client.fallback is ScriptProcess
    service.stopService()
    assert client.draining


def test_spawnerServiceTakesTheAddressFromTheEnvironment(
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    """
    A worker's service connects to the address its supervisor gave it in
    C{CGISERVE_SPAWNER}, which is then removed from its environment (its
    scripts never see it).
    """
    monkeypatch.setenv(ENVIRONMENT_VARIABLE, "cgiserve-spawner-x")
    service = spawnerService(
        MemoryReactorClock(), user=(1, 1), maxProcesses=3, grace=2.0
    )
    assert service.client.address == "cgiserve-spawner-x"
    assert service.client.maxProcesses == 3
    assert ENVIRONMENT_VARIABLE not in os.environ


# --------------------------------------------------------------------------
# The real spawner


def waitGone(pid: int, timeout: float = 10) -> bool:
    """
    Whether C{pid} is gone (or a zombie waiting for init) within
    C{timeout} seconds.
    """
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        try:
            with open(f"/proc/{pid}/stat", "rb") as f:
                state = f.read().rsplit(b")", 1)[1].split()[0]
        except OSError:
            return True
        if state in (b"Z", b"X"):
            return True
        time.sleep(0.02)
    return False


def waitReadable(fd: int, timeout: float = 10) -> None:
    assert select.select([fd], [], [], timeout)[0], "nothing to read"


def readAll(fd: int) -> bytes:
    data = b""
    while True:
        waitReadable(fd)
        chunk = os.read(fd, 65536)
        if not chunk:
            return data
        data += chunk


def test_RealSpawnerRunsScripts() -> None:
    """
    The real spawner process starts scripts in their directory with their
    environment, reports exec errors, their exit and their end, and exits
    when let go, within the wait.
    """
    reactor = MemoryReactorClock()
    client = SpawnerClient(reactor, maxProcesses=5)
    client.start()
    try:
        assert client.process is not None
        assert client.address is not None
        assert os.environ[ENVIRONMENT_VARIABLE] == client.address
        proto = Recorder()
        script = client.spawn(
            reactor,
            proto,
            "sh",
            ["sh", "-c", 'echo "$A $(pwd)"; echo err >&2; exit 3'],
            environment={"A": "hello", "PATH": "/usr/bin:/bin"},
            directory="/tmp",
        )
        assert isinstance(script, RemoteScript)
        out = readAll(script.pipes[1].fileno())
        assert out == b"hello /tmp\n"
        sock = client._sock
        assert sock is not None
        deadline = time.monotonic() + 10
        while (script.pending or script.pid is not None) and (
            time.monotonic() < deadline
        ):
            waitReadable(sock.fileno())
            client.doRead()
            reactor.advance(0)
        assert script.status == 3
        failures: list[Failure] = []
        for executable, directory in (("/nonexistent", "/"), ("/bin/true", "/no")):
            failing = client.spawn(
                reactor,
                Recorder(),
                executable,
                ["x"],
                environment={},
                directory=directory,
            )
            assert isinstance(failing, RemoteScript)
            failing.started.addErrback(failures.append)
        while len(failures) < 2 and time.monotonic() < deadline:
            waitReadable(sock.fileno())
            client.doRead()
        assert [f.check(FileNotFoundError) for f in failures] == [
            FileNotFoundError,
            FileNotFoundError,
        ]
        script.loseConnection()
        for name in list(script.pipes):
            script.childConnectionLost(name, Failure(Exception()))
    finally:
        process = client.process
        client.stop()
        os.environ.pop(ENVIRONMENT_VARIABLE, None)
    assert process is not None and process.returncode is not None


def test_RealSpawnerEndsGroupsOnTerminate() -> None:
    """
    C{terminate} through the real spawner ends the script's whole group,
    a background child included.
    """
    reactor = MemoryReactorClock()
    client = SpawnerClient(reactor)
    client.start()
    try:
        script = client.spawn(
            reactor,
            Recorder(),
            "/bin/sh",
            ["sh", "-c", "sleep 300 & echo $!; exec sleep 300"],
            environment={},
            directory="/",
        )
        assert isinstance(script, RemoteScript)
        waitReadable(script.pipes[1].fileno())
        child = int(os.read(script.pipes[1].fileno(), 100))
        results: list[bool] = []
        script.terminate(1.0).addCallback(results.append)
        sock = client._sock
        assert sock is not None
        deadline = time.monotonic() + 10
        while not results and time.monotonic() < deadline:
            select.select([sock.fileno()], [], [], 0.5)
            client.doRead()
        assert results == [False]
        assert waitGone(child)
    finally:
        client.stop()
        os.environ.pop(ENVIRONMENT_VARIABLE, None)


def test_RealSpawnerIsRestartedAtItsAddress() -> None:
    """
    A spawner that dies is started again after the backoff, at the same
    address (workers find it there).
    """
    reactor = MemoryReactorClock()
    client = SpawnerClient(reactor)
    client.start()
    try:
        first = client.process
        address = client.address
        assert first is not None
        first.kill()
        sock = client._sock
        assert sock is not None
        waitReadable(sock.fileno())
        client.doRead()
        assert client._sock is None
        reactor.advance(MAX_BACKOFF)
        assert client.process is not None
        assert client.process.pid != first.pid
        assert client.address == address
    finally:
        client.stop()
        os.environ.pop(ENVIRONMENT_VARIABLE, None)


def test_RealServiceStartsAndStops() -> None:
    reactor = MemoryReactorClock()
    client = SpawnerClient(reactor)
    service = SpawnerService(client)
    service.privilegedStartService()
    service.startService()
    try:
        assert client.process is not None
        assert client.fallback is None
        [trigger] = reactor.triggers["after"]["shutdown"]
        assert trigger[0] == client.stop
    finally:
        client.stop()
        os.environ.pop(ENVIRONMENT_VARIABLE, None)


# --------------------------------------------------------------------------
# The gateway with the spawner


def test_gatewayAnswers503WhenTheSpawnerRefuses(
    cw: ClientWorld, tmp_path: Any, monkeypatch: pytest.MonkeyPatch
) -> None:
    """
    The spawner's refusal (the server-wide cap) reaches the client as the
    gateway's own cap does: C{503} with C{Retry-After}, nothing running.
    """
    monkeypatch.setattr(os, "geteuid", lambda: 1000)
    root = tmp_path / "root"
    (root / "cgi-bin").mkdir(parents=True)
    (root / "cgi-bin" / "x.sh").write_text("#!/bin/sh\n")
    (root / "cgi-bin" / "x.sh").chmod(0o755)
    cgi = ScriptGateway(
        str(root),
        CGIEnvironmentSettings(),
        None,
        Resource(),
        cw.reactor,
        spawn=cw.client.spawn,
    )
    cw.spawner.answer(op="refused", id=1, message="too many scripts")
    request = makeRequest(b"/cgi-bin/x.sh")
    request.isSecure = lambda: False  # type: ignore[method-assign]
    cgi.serve(request, resolvePath(b"/cgi-bin/x.sh"), "/cgi-bin")
    cw.client.doRead()
    pump(cw.reactor)
    assert request.finished == 1
    assert request.responseCode == 503
    assert header(request, b"retry-after") == b"1"
    assert b"try again" in body(request)
    assert cgi.running == set()
    for _, fds in cw.spawner.requests():
        for fd in fds:
            os.close(fd)
