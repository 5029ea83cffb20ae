"""
Tests for L{twisted_cgiserve._cgi.spawner}: the spawner's side of the
protocol, over real C{SOCK_SEQPACKET} socket pairs, with a fake script
starter and Twisted's memory reactor in simulated time.

The spawner's own process (L{main}) is run by the end-to-end suite
(C{tests/e2e/test_spawner.py}) and by the real-process tests of
L{tests.cgi.test_spawnerclient}.
"""

from __future__ import annotations

import errno
import os
import socket
import threading
import time
from collections.abc import Iterator, Sequence
from typing import Any

import pytest
from twisted.internet import error
from twisted.internet.defer import Deferred, fail, succeed
from twisted.internet.testing import MemoryReactorClock
from twisted.logger import globalLogPublisher
from twisted.python.failure import Failure
from twisted.python.threadpool import ThreadPool

from twisted_cgiserve._cgi import spawner as _spawner
from twisted_cgiserve._cgi.process import startScript
from twisted_cgiserve._cgi.spawner import (
    Spawner,
    SpawnerConnection,
    _arguments,
    _Descriptor,
    dropPrivileges,
    launchHere,
    launchInThreads,
    peerUid,
)
from twisted_cgiserve._cgi.spawnerwire import (
    SpawnRequest,
    decodeAll,
    encode,
    receivePacket,
    sendPacket,
)


class FakeLaunch:
    """
    What starts a script's process for the spawner (L{launchInThreads} in
    the real one): the descriptors closed as L{startScript} closes them,
    C{/missing} fails with C{ENOENT}; with C{held}, each launch waits for
    the test to fire it (a launch thread still waiting for an exec).
    """

    def __init__(self) -> None:
        self.held = False
        self.waiting: list[Deferred[object]] = []

    def __call__(
        self, request: SpawnRequest, stdio: tuple[int, int, int]
    ) -> Deferred[object]:
        for fd in stdio:
            os.close(fd)
        if request.executable == "/missing":
            return fail(FileNotFoundError(errno.ENOENT, "No such file or directory"))
        if self.held:
            waiting: Deferred[object] = Deferred()
            self.waiting.append(waiting)
            return waiting
        return succeed(("popen", request.executable))


class FakeScript:
    """
    What L{ScriptProcess} gives the spawner: a PID, an exit status, a kill
    flag, and terminate/signalProcess calls recorded.
    """

    nextPid = 1000

    def __init__(
        self,
        reactor: Any,
        protocol: Any,
        executable: str,
        args: Sequence[str],
        *,
        environment: dict[str, str],
        directory: str,
        popen: object,
    ) -> None:
        FakeScript.nextPid += 1
        self.pid: int | None = FakeScript.nextPid
        self.status: int | None = None
        self.killed = False
        self.args = list(args)
        self.environment = environment
        self.directory = directory
        self.popen = popen
        self.terminated: list[float] = []
        self.signals: list[int] = []
        self.proto = protocol
        protocol.makeConnection(self)
        if executable == "/exits-at-once":
            self.exit(0)

    def exit(self, status: int) -> None:
        self.status = status
        self.proto.processExited(Failure(error.ProcessDone(0)))

    def end(self, killed: bool = False) -> None:
        self.killed = killed
        self.pid = None
        self.proto.processEnded(Failure(error.ProcessDone(0)))

    def terminate(self, grace: float) -> Deferred[bool]:
        self.terminated.append(grace)
        return Deferred()

    def signalProcess(self, number: int) -> None:
        if number == 0:
            raise error.ProcessExitedAlready()
        self.signals.append(number)


class Peer:
    """
    The server's end of a connection to the spawner.
    """

    def __init__(self, sock: socket.socket, reactor: MemoryReactorClock) -> None:
        self.sock = sock
        self.reactor = reactor
        sock.setblocking(False)
        self.buffer = bytearray(1 << 16)
        self.packets = 0

    def send(self, message: dict[str, Any], fds: Sequence[int] = ()) -> None:
        sendPacket(self.sock, encode(message), fds)

    def sendRaw(self, packet: bytes, fds: Sequence[int] = ()) -> None:
        sendPacket(self.sock, packet, fds)

    def received(self) -> list[dict[str, Any]]:
        """
        What the spawner sent, once its reactor's turn is over (it sends
        what a turn had to say at the turn's end).
        """
        self.reactor.advance(0)
        messages: list[dict[str, Any]] = []
        while True:
            try:
                got = receivePacket(self.sock, self.buffer)
            except BlockingIOError:
                return messages
            if got is None:
                messages.append({"op": "<closed>"})
                return messages
            self.packets += 1
            messages.extend(decodeAll(got[0]))


@pytest.fixture
def logged() -> Iterator[list[dict[str, Any]]]:
    events: list[dict[str, Any]] = []
    globalLogPublisher.addObserver(events.append)
    yield events
    globalLogPublisher.removeObserver(events.append)


class World:
    def __init__(self, maxProcesses: int = 0) -> None:
        self.reactor = MemoryReactorClock()
        self.exits: list[bool] = []
        self.launch = FakeLaunch()
        self.spawner = Spawner(
            self.reactor,
            maxProcesses=maxProcesses,
            grace=2.5,
            start=FakeScript,
            launch=self.launch,
            exit=lambda: self.exits.append(True),
        )
        self.sockets: list[socket.socket] = []
        self.after: list[dict[str, Any]] = []

    def connect(self) -> tuple[SpawnerConnection, Peer]:
        ours, theirs = socket.socketpair(socket.AF_UNIX, socket.SOCK_SEQPACKET)
        self.sockets.append(theirs)
        connection = self.spawner.accepted(ours)
        assert connection is not None
        peer = Peer(theirs, self.reactor)
        assert peer.received()[0]["op"] == "hello"
        return connection, peer

    def spawn(
        self,
        connection: SpawnerConnection,
        peer: Peer,
        executable: str = "/bin/true",
        ident: int = 1,
    ) -> dict[str, Any]:
        fds = [fd for _ in range(2) for fd in os.pipe()]
        try:
            request = SpawnRequest(ident, executable, ["x"], {"A": "1"}, "/tmp")
            peer.send(request.message(), fds[:3])
        finally:
            for fd in fds:
                os.close(fd)
        connection.doRead()
        if self.launch.held:
            return {}
        answer, *self.after = peer.received()
        return answer

    def close(self) -> None:
        for sock in self.sockets:
            sock.close()
        for connection in list(self.spawner.connections):
            connection.close()


@pytest.fixture
def world() -> Iterator[World]:
    w = World()
    yield w
    w.close()


def openFds() -> set[str]:
    return set(os.listdir("/proc/self/fd"))


# --------------------------------------------------------------------------
# Connections


def test_peerUid() -> None:
    a, b = socket.socketpair(socket.AF_UNIX, socket.SOCK_SEQPACKET)
    with a, b:
        assert peerUid(a) == os.getuid()


def test_refusesOtherUsers(world: World, logged: list[dict[str, Any]]) -> None:
    """
    A peer running as a user the spawner does not allow is disconnected at
    once, and the refusal logged.
    """
    world.spawner.allowedUids = {12345}
    ours, theirs = socket.socketpair(socket.AF_UNIX, socket.SOCK_SEQPACKET)
    with theirs:
        assert world.spawner.accepted(ours) is None
        assert theirs.recv(10) == b""
    assert any("refused a connection" in e.get("log_format", "") for e in logged)


def test_allowsRootAndNamedUsersOnly() -> None:
    """
    Root and the users the server names may connect; the spawner's own user
    may not for being it (as root, that is --cgi-user: the scripts').
    """
    spawner = Spawner(MemoryReactorClock(), allowedUids=[1234])
    assert spawner.allowedUids == {0, 1234}


def test_greets(world: World) -> None:
    ours, theirs = socket.socketpair(socket.AF_UNIX, socket.SOCK_SEQPACKET)
    with theirs:
        connection = world.spawner.accepted(ours)
        assert connection is not None
        assert connection in world.reactor.readers
        hello = Peer(theirs, world.reactor).received()[0]
        assert hello == {"op": "hello", "pid": os.getpid(), "uid": os.getuid()}


# --------------------------------------------------------------------------
# Spawning


def test_spawnAnswersWithThePid(world: World) -> None:
    """
    A C{spawn} request starts the script with the request's fields and
    its three descriptors (closed in the spawner once handed over), and is
    answered with its PID; the script counts as live.
    """
    connection, peer = world.connect()
    before = openFds()
    answer = world.spawn(connection, peer)
    assert answer["op"] == "spawned" and answer["id"] == 1
    pid = answer["pid"]
    script = connection.scripts[pid].transport
    assert isinstance(script, FakeScript)
    assert script.args == ["x"]
    assert script.environment == {"A": "1"}
    assert script.directory == "/tmp"
    assert openFds() == before
    assert len(world.spawner.live) == 1


def test_eventsFollowTheAnswer(world: World) -> None:
    """
    The script's exit and end reach the peer after the answer, even when
    the script exits before the answer is sent; once ended it is
    forgotten.
    """
    connection, peer = world.connect()
    answer = world.spawn(connection, peer, "/exits-at-once")
    pid = answer["pid"]
    assert world.after == [{"op": "exited", "status": 0, "pid": pid}]
    connection.scripts[pid].transport.end(killed=True)
    assert peer.received() == [{"op": "ended", "killed": True, "pid": pid}]
    assert connection.scripts == {}
    assert world.spawner.live == set()


def test_oneTurnIsOnePacket(world: World) -> None:
    """
    What the spawner has to say in one turn of its reactor (answers to
    the requests it read, exits, ends) goes at the turn's end in one
    packet, in order: one wake-up of the server for all of it.
    """
    connection, peer = world.connect()
    fds = [fd for _ in range(4) for fd in os.pipe()]
    try:
        for ident, executable in ((1, "/bin/true"), (2, "/exits-at-once")):
            request = SpawnRequest(ident, executable, ["x"], {}, "/tmp")
            peer.send(request.message(), fds[:3])
    finally:
        for fd in fds:
            os.close(fd)
    connection.doRead()
    first, second = sorted(connection.scripts)
    connection.scripts[first].transport.exit(0)
    connection.scripts[first].transport.end()
    peer.packets = 0
    assert peer.received() == [
        {"op": "spawned", "id": 1, "pid": first},
        {"op": "spawned", "id": 2, "pid": second},
        {"op": "exited", "status": 0, "pid": second},
        {"op": "exited", "status": 0, "pid": first},
        {"op": "ended", "killed": False, "pid": first},
    ]
    assert peer.packets == 1


def test_closedConnectionSendsNothingMore(world: World) -> None:
    """
    Messages of a turn whose connection closes before its end are dropped
    with it, and a flush then sends nothing.
    """
    connection, peer = world.connect()
    connection.send({"op": "note"})
    connection.close()
    connection.flush()
    world.reactor.advance(0)
    assert peer.received() == [{"op": "<closed>"}]


def test_execErrorIsAnswered(world: World) -> None:
    """
    An exec error is answered with its errno and message; nothing counts
    as live.
    """
    connection, peer = world.connect()
    before = openFds()
    answer = world.spawn(connection, peer, "/missing")
    assert answer["op"] == "failed"
    assert answer["errno"] == errno.ENOENT
    assert answer["message"] == "No such file or directory"
    assert world.spawner.live == set()
    assert openFds() == before


def test_capRefuses() -> None:
    """
    With C{maxProcesses}, a request beyond the live scripts of all
    connections is refused (its descriptors closed); once one is gone,
    scripts start again.
    """
    world = World(maxProcesses=2)
    try:
        first, firstPeer = world.connect()
        second, secondPeer = world.connect()
        one = world.spawn(first, firstPeer)
        world.spawn(second, secondPeer)
        before = openFds()
        refused = world.spawn(first, firstPeer, ident=2)
        assert refused == {"op": "refused", "id": 2, "message": "too many scripts"}
        assert openFds() == before
        first.scripts[one["pid"]].transport.end()
        assert firstPeer.received()[0]["op"] == "ended"
        assert world.spawn(first, firstPeer, ident=3)["op"] == "spawned"
    finally:
        world.close()


def test_malformedSpawnIsAnswered(world: World) -> None:
    """
    A malformed C{spawn} request is answered C{EINVAL}, its descriptors
    closed.
    """
    connection, peer = world.connect()
    before = openFds()
    r, w = os.pipe()
    peer.send({"op": "spawn", "id": 4, "argv": []}, [r, w, r])
    os.close(r)
    os.close(w)
    connection.doRead()
    answer = peer.received()[0]
    assert answer["op"] == "failed" and answer["id"] == 4
    assert answer["errno"] == errno.EINVAL
    assert openFds() == before


def test_spawnWithoutThreeDescriptors(world: World) -> None:
    connection, peer = world.connect()
    before = openFds()
    r, w = os.pipe()
    message = SpawnRequest(5, "/bin/true", ["x"], {}, "/").message()
    peer.send(message, [r])
    os.close(r)
    os.close(w)
    connection.doRead()
    answer = peer.received()[0]
    assert answer["op"] == "failed" and answer["errno"] == errno.EBADF
    assert openFds() == before


def test_badRequestsAreLoggedAndDescriptorsClosed(
    world: World, logged: list[dict[str, Any]]
) -> None:
    """
    Packets that are not requests are logged and dropped, with whatever
    descriptors they carried; the connection stays.
    """
    connection, peer = world.connect()
    before = openFds()
    r, w = os.pipe()
    peer.sendRaw(b"not json", [r])
    peer.send({"op": "dance"}, [w])
    peer.send({"op": "terminate", "pid": "x", "grace": 1})
    os.close(r)
    os.close(w)
    connection.doRead()
    assert openFds() == before
    bad = [e for e in logged if "bad request" in e.get("log_format", "")]
    assert len(bad) == 3
    assert not connection.closed


def test_terminateAndSignal(world: World) -> None:
    """
    C{terminate} and C{signal} reach the script started for this
    connection; unknown PIDs (gone already) are ignored.
    """
    connection, peer = world.connect()
    pid = world.spawn(connection, peer)["pid"]
    script = connection.scripts[pid].transport
    peer.send({"op": "terminate", "pid": pid, "grace": 1.5})
    peer.send({"op": "terminate", "pid": 99999, "grace": 1.5})
    peer.send({"op": "signal", "pid": pid, "signal": 10})
    peer.send({"op": "signal", "pid": pid, "signal": 0})
    peer.send({"op": "signal", "pid": 99999, "signal": 10})
    connection.doRead()
    assert script.terminated == [1.5]
    assert script.signals == [10]


def test_otherConnectionsScriptsAreOutOfReach(world: World) -> None:
    first, firstPeer = world.connect()
    second, secondPeer = world.connect()
    pid = world.spawn(first, firstPeer)["pid"]
    secondPeer.send({"op": "terminate", "pid": pid, "grace": 1})
    second.doRead()
    assert first.scripts[pid].transport.terminated == []


def test_lostConnectionEndsItsScripts(world: World) -> None:
    """
    When a peer goes away, every script started for it is terminated with
    the spawner's grace; the others' are not.
    """
    first, firstPeer = world.connect()
    second, secondPeer = world.connect()
    mine = world.spawn(first, firstPeer)["pid"]
    theirs = world.spawn(second, secondPeer)["pid"]
    firstPeer.sock.close()
    first.doRead()
    assert first.closed
    assert first not in world.spawner.connections
    assert first.scripts[mine].transport.terminated == [2.5]
    assert second.scripts[theirs].transport.terminated == []
    # Its events go nowhere now.
    first.scripts[mine].transport.end()
    assert world.spawner.live == {second.scripts[theirs]}


def test_stopEndsEverythingThenExits(world: World) -> None:
    """
    L{Spawner.stop} terminates every live script and exits once all are
    gone; it refuses new scripts and connections meanwhile.
    """
    connection, peer = world.connect()
    pid = world.spawn(connection, peer)["pid"]
    world.spawner.stop()
    world.spawner.stop()
    script = connection.scripts[pid].transport
    assert script.terminated == [2.5]
    assert world.exits == []
    refused = world.spawn(connection, peer, ident=9)
    assert refused == {"op": "refused", "id": 9, "message": "stopping"}
    ours, theirs = socket.socketpair(socket.AF_UNIX, socket.SOCK_SEQPACKET)
    with theirs:
        assert world.spawner.accepted(ours) is None
    script.end()
    assert world.exits == [True]


# --------------------------------------------------------------------------
# Launches that overlap


def test_launchesOverlapAndAnswerAsTheyFinish(world: World) -> None:
    """
    While one script is still starting (its launch thread waits for the
    exec), the next request is taken: each is answered when its own
    launch finishes, in that order, and its events follow its answer.
    """
    connection, peer = world.connect()
    world.launch.held = True
    world.spawn(connection, peer, ident=1)
    world.spawn(connection, peer, "/exits-at-once", ident=2)
    assert peer.received() == []
    assert world.spawner.launching == 2
    first, second = world.launch.waiting
    second.callback("popen")
    [answer, exited] = peer.received()
    assert answer["op"] == "spawned" and answer["id"] == 2
    assert exited == {"op": "exited", "status": 0, "pid": answer["pid"]}
    first.callback("popen")
    [answer] = peer.received()
    assert answer["op"] == "spawned" and answer["id"] == 1
    assert world.spawner.launching == 0
    assert len(world.spawner.live) == 2


def test_launchesCountAgainstTheCap() -> None:
    """
    Scripts still starting count against C{maxProcesses}: a burst cannot
    start more than the cap by arriving before the first exec is done.
    """
    world = World(maxProcesses=1)
    try:
        connection, peer = world.connect()
        world.launch.held = True
        world.spawn(connection, peer, ident=1)
        world.spawn(connection, peer, ident=2)
        assert peer.received() == [
            {"op": "refused", "id": 2, "message": "too many scripts"}
        ]
        world.launch.waiting[0].callback("popen")
        assert peer.received()[0]["op"] == "spawned"
    finally:
        world.close()


def test_scriptOfAPeerGoneWhileItStartedIsEnded(world: World) -> None:
    """
    A script whose peer went away while it started is ended as soon as it
    has started (nobody can ask for it any more); nothing is sent.
    """
    connection, peer = world.connect()
    world.launch.held = True
    world.spawn(connection, peer)
    peer.sock.close()
    connection.doRead()
    assert connection.closed
    world.launch.waiting[0].callback("popen")
    [events] = world.spawner.live
    assert events.transport.terminated == [2.5]
    assert connection.scripts == {}


def test_stopWaitsForLaunches(world: World) -> None:
    """
    The spawner does not exit while a script is starting: once started it
    is ended, and the spawner exits when it is gone; a launch that fails
    then lets it exit at once.
    """
    connection, peer = world.connect()
    world.launch.held = True
    world.spawn(connection, peer, ident=1)
    world.spawn(connection, peer, ident=2)
    world.spawner.stop()
    assert world.exits == []
    first, second = world.launch.waiting
    first.callback("popen")
    [events] = world.spawner.live
    assert events.transport.terminated == [2.5]
    events.transport.end()
    assert world.exits == []
    second.errback(Failure(FileNotFoundError(errno.ENOENT, "gone")))
    assert world.exits == [True]


def test_unexpectedLaunchErrorIsEIO(world: World, logged: list[dict[str, Any]]) -> None:
    """
    A launch that fails with something else than an exec error is answered
    C{EIO}, and the error logged.
    """
    connection, peer = world.connect()
    world.launch.held = True
    world.spawn(connection, peer, ident=7)
    world.launch.waiting[0].errback(Failure(RuntimeError("bug")))
    assert peer.received() == [
        {"op": "failed", "id": 7, "errno": errno.EIO, "message": "internal error"}
    ]
    assert any(e.get("log_failure") is not None for e in logged)


def test_launchHereStartsTheScript(tmp_path: Any) -> None:
    """
    L{launchHere} starts the script on this thread, with its descriptors
    (closed here); an exec error fails its L{Deferred}.
    """
    outRead, outWrite = os.pipe()
    devnull = os.open(os.devnull, os.O_RDONLY)
    request = SpawnRequest(1, "/bin/sh", ["sh", "-c", "echo $A"], {"A": "hi"}, "/")
    results: list[Any] = []
    launchHere(request, (devnull, outWrite, os.dup(outWrite))).addBoth(results.append)
    [popen] = results
    assert os.read(outRead, 10) == b"hi\n"
    os.close(outRead)
    assert popen.wait() == 0
    missing = SpawnRequest(2, str(tmp_path / "none"), ["x"], {}, "/")
    r, w = os.pipe()
    launchHere(missing, (r, w, os.dup(w))).addBoth(results.append)
    assert isinstance(results[1], Failure)
    assert results[1].check(FileNotFoundError)


class ThreadReactor:
    """
    Just what L{deferToThreadPool} needs of a reactor: calls from the pool's
    threads, kept for the test's thread to run.
    """

    def __init__(self) -> None:
        self.calls: list[tuple[Any, Any, Any]] = []
        self.lock = threading.Lock()

    def callFromThread(self, f: Any, *args: Any, **kwargs: Any) -> None:
        with self.lock:
            self.calls.append((f, args, kwargs))

    def runUntil(self, done: Any, timeout: float = 10) -> None:
        deadline = time.monotonic() + timeout
        while not done():
            assert time.monotonic() < deadline, "timed out"
            with self.lock:
                calls, self.calls = self.calls, []
            for f, args, kwargs in calls:
                f(*args, **kwargs)
            time.sleep(0.001)


def test_launchInThreadsStartsInThePoolAndAnswersOnTheReactor(
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    """
    L{launchInThreads} starts each script on one of the pool's threads
    (never the reactor's), and hands the result back through the reactor's
    thread.
    """
    threads: list[threading.Thread] = []
    real = startScript

    def recording(*args: Any, **kwargs: Any) -> Any:
        threads.append(threading.current_thread())
        return real(*args, **kwargs)

    monkeypatch.setattr(_spawner, "startScript", recording)
    reactor = ThreadReactor()
    pool = ThreadPool(2, 2, "test")
    pool.start()
    try:
        launch = launchInThreads(reactor, pool)
        results: list[Any] = []
        for ident in (1, 2):
            devnull = os.open(os.devnull, os.O_RDWR)
            request = SpawnRequest(ident, "/bin/sh", ["sh", "-c", "exit 3"], {}, "/")
            launch(request, (devnull, os.dup(devnull), os.dup(devnull))).addBoth(
                results.append
            )
        reactor.runUntil(lambda: len(results) == 2)
        assert threading.current_thread() not in threads
        assert len(threads) == 2
        for popen in results:
            assert popen.wait(10) == 3
    finally:
        pool.stop()


def test_stopWithNothingRunningExitsAtOnce(world: World) -> None:
    world.spawner.stop()
    assert world.exits == [True]


def test_defaultExitStopsTheReactor() -> None:
    reactor = MemoryReactorClock()
    reactor.running = True
    Spawner(reactor).stop()
    assert reactor.hasStopped


# --------------------------------------------------------------------------
# Sending


def test_slowPeerGetsItsMessagesInOrder(world: World) -> None:
    """
    When the peer's socket buffer is full, messages wait (the spawner
    writes once it may), in order.
    """
    connection, peer = world.connect()
    connection.sock.setsockopt(socket.SOL_SOCKET, socket.SO_SNDBUF, 4096)
    big = "x" * 2000
    count = 0
    while connection not in world.reactor.writers:
        connection.send({"op": "note", "n": count, "pad": big})
        connection.flush()
        count += 1
        assert count < 10_000
    connection.send({"op": "note", "n": count, "pad": big})
    connection.flush()
    got = peer.received()
    connection.doWrite()
    got += peer.received()
    while connection in world.reactor.writers:
        connection.doWrite()
        got += peer.received()
    assert [m["n"] for m in got] == list(range(count + 1))


def test_sendingToAGonePeerCloses(world: World) -> None:
    connection, peer = world.connect()
    peer.sock.close()
    connection.send({"op": "note"})
    world.reactor.advance(0)
    assert connection.closed
    assert connection.fileno() == -1
    connection.send({"op": "ignored"})


def test_connectionLostCloses(world: World) -> None:
    connection, _ = world.connect()
    connection.connectionLost(Failure(Exception()))
    assert connection.closed
    assert connection.logPrefix() == "SpawnerConnection"
    connection.doRead()
    connection.doWrite()


def test_doWriteToAGonePeerCloses(world: World) -> None:
    connection, peer = world.connect()
    connection._outgoing.append(b"{}")
    peer.sock.close()
    connection.doWrite()
    assert connection.closed


def test_tooLargePacketIsDropped(world: World, logged: list[dict[str, Any]]) -> None:
    connection, peer = world.connect()
    connection._buffer = bytearray(8)
    peer.send({"op": "terminate", "pid": 1, "grace": 1})
    connection.doRead()
    assert any("dropped a packet" in e.get("log_format", "") for e in logged)
    assert not connection.closed


def test_readErrorCloses(world: World, monkeypatch: pytest.MonkeyPatch) -> None:
    connection, _ = world.connect()

    def broken(sock: socket.socket, buffer: bytearray) -> None:
        raise ConnectionResetError()

    monkeypatch.setattr(_spawner, "receivePacket", broken)
    connection.doRead()
    assert connection.closed


# --------------------------------------------------------------------------
# The process


def test_dropPrivileges(monkeypatch: pytest.MonkeyPatch) -> None:
    """
    All three user and group IDs change, and the supplementary groups are
    cleared, in the order that keeps the right to do so.
    """
    calls: list[tuple[str, Any]] = []
    monkeypatch.setattr(os, "setgroups", lambda g: calls.append(("groups", g)))
    monkeypatch.setattr(os, "setresgid", lambda *a: calls.append(("gid", a)))
    monkeypatch.setattr(os, "setresuid", lambda *a: calls.append(("uid", a)))
    monkeypatch.setattr(os, "getresuid", lambda: (5, 5, 5))
    monkeypatch.setattr(os, "getresgid", lambda: (6, 6, 6))
    dropPrivileges(5, 6)
    assert calls == [("groups", []), ("gid", (6, 6, 6)), ("uid", (5, 5, 5))]


def test_dropPrivilegesThatDidNotHold(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setattr(os, "setgroups", lambda g: None)
    monkeypatch.setattr(os, "setresgid", lambda *a: None)
    monkeypatch.setattr(os, "setresuid", lambda *a: None)
    monkeypatch.setattr(os, "getresuid", lambda: (5, 0, 5))
    monkeypatch.setattr(os, "getresgid", lambda: (6, 6, 6))
    with pytest.raises(OSError, match="did not hold"):
        dropPrivileges(5, 6)


def test_arguments() -> None:
    options = _arguments(
        ["--listen-fd=5", "--user=1:2", "--max-processes=3", "--allow-uid=7"]
    )
    assert options.listen_fd == 5
    assert options.user == "1:2"
    assert options.max_processes == 3
    assert options.grace == 5.0
    assert options.allow_uid == [7]
    assert options.threads == _spawner.THREADS


def test_descriptor() -> None:
    seen: list[str] = []
    d = _Descriptor(3, lambda: seen.append("read"), lambda: seen.append("lost"))
    assert d.fileno() == 3
    assert d.logPrefix() == "Spawner"
    d.doRead()
    d.connectionLost(Failure(Exception()))
    assert seen == ["read", "lost"]
