# -*- test-case-name: tests.cgi.test_spawnerclient -*-
"""
The server's side of the CGI spawner (L{twisted_cgiserve._cgi.spawner}):
starting it, asking it to start scripts, and the scripts it started as
L{IScriptTransport}s.

A script's pipes are made here and their server ends stay here, on this
reactor, exactly as L{ScriptProcess} keeps them (the shared
L{ScriptPipes}): the spawner receives only the child's ends.
L{SpawnerClient.spawn} never waits for the spawner: it sends the request
and returns the script's transport at once, its pipes already usable (the
request body goes into the script's input while it starts; its output is
read as soon as it writes). The server goes on serving meanwhile, however
long the exec takes. The answer comes later, read by the reactor: the PID
(L{RemoteScript.started} fires), or the exec's error or the server-wide
cap's refusal (L{RemoteScript.started} fails with L{OSError} or
L{SpawnRefused}, which the gateway answers exactly as a failure that
L{ScriptProcess} raises, and the run ends without a word to the client
of its own). Ending or signalling a script before its PID is known waits
for the PID, and is sent then. A spawner that leaves a request without
an answer for L{REPLY_TIMEOUT} is killed.

If the spawner dies, every script it had started is reported ended (its
pipes closed: the scripts see the end of their input and a broken output
pipe), and it is started again at the next request, after a backoff that
doubles up to L{MAX_BACKOFF}. Until then, and when it cannot be started
again as the same user (the server has dropped root since), requests get
C{503}: a script never runs as another user than the one configured, and
no request waits for a spawner that is not there.
"""

from __future__ import annotations

import contextlib
import errno
import os
import secrets
import select
import socket
import subprocess
import sys
import time
import weakref
from collections.abc import Callable, Mapping, Sequence
from typing import Any, cast

from zope.interface import implementer

from twisted.application.service import Service
from twisted.internet import error
from twisted.internet.defer import Deferred
from twisted.internet.interfaces import IProcessProtocol
from twisted.logger import Logger
from twisted.python.failure import Failure

from twisted_cgiserve._cgi.groups import Kernel
from twisted_cgiserve._cgi.privileges import runAs
from twisted_cgiserve._cgi.process import (
    IScriptTransport,
    ScriptPipes,
    ScriptProcess,
    SpawnRefused,
    makePipes,
    reasonFor,
    signalNumber,
)
from twisted_cgiserve._cgi.spawnerwire import (
    ENVIRONMENT_VARIABLE,
    SpawnRequest,
    WireError,
    decodeAll,
    encode,
    receivePacket,
    sendPacket,
)

__all__ = [
    "MAX_BACKOFF",
    "REPLY_TIMEOUT",
    "RemoteScript",
    "SpawnerClient",
    "SpawnerService",
    "spawnerService",
]

_log = Logger(namespace="cgiserve.cgi")

# Seconds to wait for the spawner's answer to a request (it answers within
# milliseconds), and for its greeting when it starts (it imports Twisted).
REPLY_TIMEOUT = 2.0
START_TIMEOUT = 15.0

# Seconds before the first restart of a dead spawner, doubled each time it
# dies again without having started a script, up to MAX_BACKOFF.
MIN_BACKOFF = 0.5
MAX_BACKOFF = 30.0


@implementer(IScriptTransport)
class RemoteScript(ScriptPipes):
    """
    A script the spawner started, as an L{IScriptTransport}: the pipes are
    ours, the process group is the spawner's, and what happens to it comes
    as messages.

    @ivar pid: The leader's PID until the spawner reports the group gone.
    @ivar status: Its return code once it has exited.
    """

    def __init__(  # noqa: PLR0917
        self,
        client: SpawnerClient,
        reactor: Any,
        protocol: IProcessProtocol,
        fds: tuple[int, int, int],
        pid: int | None,
        kernel: Kernel,
        *,
        sentAt: float = 0.0,
    ) -> None:
        """
        @param pid: The leader's PID, or L{None} while the spawner has not
            answered yet (see L{started}).
        @param sentAt: When the C{spawn} request was sent (the client's
            clock), for its answer's deadline.
        """
        super().__init__(reactor, protocol, fds)
        self._client = client
        self._kernel = kernel
        self.pid: int | None = pid
        self.sentAt = sentAt
        # Waiting for the spawner's answer.
        self.pending = pid is None
        self.started: Deferred[None] = Deferred()
        if not self.pending:
            self.started.callback(None)
        elif 2 in self.pipes:
            # Its standard error is read once its PID is known, so that each
            # line is logged with it (the script waits on a full pipe for
            # the few milliseconds that may take).
            self.pipes[2].stopReading()
        self._signals: list[int] = []
        self.status: int | None = None
        self._reason: BaseException | None = None
        self._terminating = False
        self._grace = 0.0
        self._killed = False
        self._endedSent = False
        self._waiting: list[Deferred[bool]] = []

    # What the spawner reports

    def spawned(self, pid: int) -> None:
        """
        The spawner answered with the leader's PID: send what was asked of
        the script meanwhile (its end, a signal).
        """
        if not self.pending:
            return
        self.pending = False
        self.pid = pid
        if 2 in self.pipes:
            self.pipes[2].startReading()
        self.started.callback(None)
        if self._heldEOF:
            # Its output ended before the answer: held in case the script
            # had exited at once; one that lives on closed it itself.
            self._lookAtLeader()
        if self._terminating:
            self._client.request({"op": "terminate", "pid": pid, "grace": self._grace})
        signals, self._signals = self._signals, []
        for number in signals:
            self._client.request({"op": "signal", "pid": pid, "signal": number})

    def failed(self, reason: Exception) -> None:
        """
        The script was not started (C{reason}: the exec's L{OSError}, or
        L{SpawnRefused}): L{started} fails with it first (the gateway
        answers the client), then the pipes close and the protocol's
        C{processEnded} comes, with no C{processExited} (nothing ran).
        """
        if not self.pending:
            return
        self.pending = False
        self._reason = reason
        self.started.errback(Failure(reason))
        waiting, self._waiting = self._waiting, []
        for done in waiting:
            done.callback(False)
        self.loseConnection()
        if self._heldEOF:
            self._releaseEOF()
        self._maybeEnded()

    def exited(self, status: int | None) -> None:
        """
        The leader has exited with C{status} (L{None}: unknown).
        """
        if self._reason is not None:
            return
        self.status = status
        self._reason = (
            reasonFor(status)
            if status is not None
            else error.ProcessTerminated(exitCode=None)
        )
        self.proto.processExited(Failure(self._reason))
        if self._heldEOF:
            self._releaseEOF()

    def ended(self, killed: bool) -> None:
        """
        Nothing of the group is left and its leader is reaped (or the
        spawner is gone): the PID means nothing any more.
        """
        if self.pid is None:
            return
        if self._reason is None:
            self.exited(None)
        self._killed = killed
        self.pid = None
        waiting, self._waiting = self._waiting, []
        for done in waiting:
            done.callback(killed)
        self._maybeEnded()

    def lost(self) -> None:
        """
        The spawner is gone: nobody can end the group now; close the pipes
        (the script sees its input end, and its output break) and report
        the end. A script it had not answered for was not started.
        """
        if self.pending:
            self.failed(SpawnRefused("the CGI spawner is gone"))
            return
        self.loseConnection()
        self.ended(False)

    # ScriptPipes

    def _leaderExiting(self) -> bool:
        if self.pending:
            # Output that ends before the answer: the script exited at once,
            # or never started (the spawner closed its ends); the answer
            # says which.
            return True
        if self._reason is not None or self.pid is None:
            return False
        return self._kernel.exiting(self.pid)

    def _lookAtLeader(self) -> None:
        """
        An end of output held while the spawner had not answered is let go
        once the answer shows the leader alive: it closed its output and
        works on (its exit, if it comes later, is reported then).
        """
        if self._heldEOF and not self._leaderExiting():
            self._releaseEOF()

    # IScriptTransport

    def terminate(self, grace: float) -> Deferred[bool]:
        """
        See L{IScriptTransport.terminate}: the spawner signals the group.
        """
        done: Deferred[bool] = Deferred()
        self.loseConnection()
        if self.pid is None and not self.pending:
            done.callback(self._killed)
            return done
        self._waiting.append(done)
        if not self._terminating:
            self._terminating = True
            self._grace = grace
            if self.pid is not None:
                self._client.request(
                    {"op": "terminate", "pid": self.pid, "grace": grace}
                )
        return done

    def signalProcess(self, signalID: str | int) -> None:
        """
        Signal the group, through the spawner, which holds its anchor.

        @raise ProcessExitedAlready: The group is gone.
        """
        number = signalNumber(signalID)
        if self.pending:
            self._signals.append(number)
            return
        if self.pid is None:
            raise error.ProcessExitedAlready()
        self._client.request({"op": "signal", "pid": self.pid, "signal": number})


class SpawnerClient:
    """
    The spawner, as the server uses it: L{spawn} is a C{SpawnScript} for
    the gateway.

    @ivar address: The spawner's abstract socket name (without its leading
        NUL) while one runs; also in the environment as
        C{CGISERVE_SPAWNER}, for worker processes.
    """

    def __init__(
        self,
        reactor: Any,
        *,
        user: tuple[int, int] | None = None,
        maxProcesses: int = 0,
        grace: float = 5.0,
        allowUids: Sequence[int] = (),
        kernel: Kernel | None = None,
        command: Sequence[str] | None = None,
        now: Callable[[], float] = time.monotonic,
    ) -> None:
        """
        @param user: The user (uid, gid) the spawner becomes, or L{None}
            for the server's own (see L{runAs}).
        @param maxProcesses: C{--cgi-max-processes}, for the whole server.
        @param grace: Seconds from C{SIGTERM} to C{SIGKILL} when the
            spawner ends groups itself (its peer or the server gone).
        @param allowUids: Users, besides root and the spawner's own, that
            may connect (the user the server drops to).
        @param command: How to run the spawner's program (tests).
        """
        self.reactor = reactor
        self.user = user
        self.maxProcesses = maxProcesses
        self.grace = grace
        self.allowUids = tuple(allowUids)
        self._resources: dict[str, Any] = {}
        self.address: str | None = None
        self.spawnerPid: object = None
        self.owner = False
        # The server is stopping: a spawner that goes is not restarted.
        self.draining = False
        self.fallback: Callable[..., object] | None = None
        self._kernel = kernel if kernel is not None else Kernel()
        self._command = (
            list(command)
            if command is not None
            else [sys.executable, "-m", "twisted_cgiserve._cgi.spawner"]
        )
        self._now = now
        self._sock = None
        self._lifeline: int | None = None
        self._buffer = bytearray(64 * 1024)
        self._scripts: dict[int, RemoteScript] = {}
        # Scripts sent and not answered yet, by request ID, oldest first.
        self._spawning: dict[int, RemoteScript] = {}
        self._replyCall: Any = None
        self._pending: list[dict[str, Any]] = []
        self._flushCall: Any = None
        self._nextId = 0
        self._backoff = MIN_BACKOFF
        self._notBefore = 0.0
        self._stopped = False
        self._restartCall: Any = None
        # A client dropped without being stopped (an embedder's, a test's)
        # still lets its spawner go.
        self._finalizer = weakref.finalize(self, _letGo, self._resources)

    # What a dropped client lets go of (see _letGo)

    @property
    def _sock(self) -> socket.socket | None:
        sock: socket.socket | None = self._resources.get("sock")
        return sock

    @_sock.setter
    def _sock(self, sock: socket.socket | None) -> None:
        self._resources["sock"] = sock

    @property
    def process(self) -> subprocess.Popen[bytes] | None:
        """
        The spawner's process, when this client started it.
        """
        process: subprocess.Popen[bytes] | None = self._resources.get("process")
        return process

    @process.setter
    def process(self, process: subprocess.Popen[bytes] | None) -> None:
        self._resources["process"] = process

    @property
    def _lifeline(self) -> int | None:
        lifeline: int | None = self._resources.get("lifeline")
        return lifeline

    @_lifeline.setter
    def _lifeline(self, fd: int | None) -> None:
        self._resources["lifeline"] = fd

    # Starting and stopping the spawner

    def start(self) -> None:
        """
        Start the spawner and connect to it; blocks until it greets (it
        imports Twisted: a fraction of a second). A restarted spawner
        listens on the same address, so workers find it again.

        @raise OSError: It could not be started, or did not greet.
        """
        name = self.address or f"cgiserve-spawner-{os.getpid()}-{secrets.token_hex(8)}"
        self.owner = True
        listener = socket.socket(socket.AF_UNIX, socket.SOCK_SEQPACKET)
        lifelineRead, lifelineWrite = os.pipe()
        try:
            listener.bind("\0" + name)
            listener.listen(64)
            command = [
                *self._command,
                f"--listen-fd={listener.fileno()}",
                f"--max-processes={self.maxProcesses}",
                f"--grace={self.grace}",
                *(f"--allow-uid={uid}" for uid in {os.geteuid(), *self.allowUids}),
            ]
            if self.user is not None:
                command.append(f"--user={self.user[0]}:{self.user[1]}")
            self.process = subprocess.Popen(
                command,
                stdin=lifelineRead,
                pass_fds=(listener.fileno(),),
                close_fds=True,
                # Out of the server's process group: a signal to the group
                # (a terminal's Ctrl-C, timeout(1)) is the server's to
                # handle; the spawner follows through the lifeline.
                start_new_session=True,
            )
        except BaseException:
            os.close(lifelineWrite)
            raise
        finally:
            os.close(lifelineRead)
            listener.close()
        os.set_inheritable(lifelineWrite, False)
        self._lifeline = lifelineWrite
        try:
            self._connect(name, START_TIMEOUT)
        except OSError:
            self._reapSpawner(kill=True)
            raise
        os.environ[ENVIRONMENT_VARIABLE] = name
        # Debug: the server's log (and http.server's terminal output, under
        # python -m twisted_cgiserve) has nothing to say about it unless it
        # fails.
        _log.debug(
            "CGI spawner started (pid {pid}, user {uid})",
            pid=self.process.pid,
            uid=self.user[0] if self.user is not None else os.geteuid(),
        )

    def _connect(self, name: str, timeout: float) -> None:
        sock = socket.socket(socket.AF_UNIX, socket.SOCK_SEQPACKET)
        try:
            sock.connect("\0" + name)
            sock.setblocking(False)
            hello = self._await(sock, lambda m: m.get("op") == "hello", timeout)
        except BaseException:
            sock.close()
            raise
        self._sock = sock
        self.address = name
        self.spawnerPid = hello.get("pid")
        self.reactor.addReader(self)

    def connect(self, address: str) -> None:
        """
        Use the spawner another process started (a worker of C{--workers}
        uses its supervisor's), at C{address}; reconnect there if the
        connection is lost.

        @raise OSError: Nothing greets there.
        """
        self.address = address
        self.owner = False
        self._connect(address, REPLY_TIMEOUT)

    def stop(self, timeout: float = 10.0) -> None:
        """
        Let the spawner go (it ends whatever is left and exits), and wait
        up to C{timeout} seconds for it: the server leaves nothing behind.
        """
        self._stopped = True
        if self._restartCall is not None:
            self._restartCall.cancel()
            self._restartCall = None
        self._disconnect()
        if self._lifeline is not None:
            os.close(self._lifeline)
            self._lifeline = None
        if self.process is not None:
            try:
                self.process.wait(timeout)
            except subprocess.TimeoutExpired:
                _log.error("CGI spawner did not exit: killed")
                self._reapSpawner(kill=True)
        self._loseScripts()

    def _loseScripts(self) -> None:
        """
        Every script is lost with the spawner: those it had not answered
        for first (they were not started).
        """
        spawning, self._spawning = self._spawning, {}
        scripts, self._scripts = self._scripts, {}
        for script in [*spawning.values(), *scripts.values()]:
            script.lost()

    def _disconnect(self) -> None:
        if self._replyCall is not None:
            if self._replyCall.active():
                self._replyCall.cancel()
            self._replyCall = None
        if self._sock is not None:
            self.reactor.removeReader(self)
            self._sock.close()
            self._sock = None

    def _reapSpawner(self, kill: bool) -> int | None:
        process, self.process = self.process, None
        if self._lifeline is not None:
            os.close(self._lifeline)
            self._lifeline = None
        if process is None:
            return None
        if kill:
            process.kill()
        try:
            return process.wait(2)
        except subprocess.TimeoutExpired:
            return None

    def _lost(self, why: str) -> None:
        """
        The spawner is gone (or hung): report its scripts ended, and start
        it again at the next request, after the backoff.
        """
        self._disconnect()
        status = self._reapSpawner(kill=True)
        if self.draining:
            _log.info("CGI spawner exited ({why})", why=why)
        elif not self._stopped:
            _log.error(
                "CGI spawner lost ({why}, exit status {status}); "
                "restarting it in {backoff} s",
                why=why,
                status=status,
                backoff=self._backoff,
            )
        self._notBefore = self._now() + self._backoff
        if (
            self.owner
            and not (self._stopped or self.draining)
            and self._restartCall is None
        ):
            # Workers reconnect to it: start it again without waiting for
            # a request of this process.
            self._restartCall = self.reactor.callLater(self._backoff, self._restart)
        self._backoff = min(self._backoff * 2, MAX_BACKOFF)
        self._loseScripts()

    def _restart(self) -> None:
        self._restartCall = None
        self._notBefore = 0.0
        try:
            self._ensure()
        except SpawnRefused as e:
            _log.error("CGI spawner not restarted: {why}", why=e)

    def _ensure(self) -> socket.socket:
        """
        The connection to a live spawner, restarted if it died and may be.

        @raise SpawnRefused: There is none now.
        """
        if self._sock is not None:
            return self._sock
        if self._stopped:
            raise SpawnRefused("the server is stopping")
        if self._now() < self._notBefore:
            raise SpawnRefused("the CGI spawner is restarting")
        if not self.owner:
            try:
                self._connect(self.address or "", REPLY_TIMEOUT)
            except OSError:
                self._notBefore = self._now() + self._backoff
                self._backoff = min(self._backoff * 2, MAX_BACKOFF)
                raise SpawnRefused("the CGI spawner cannot be reached") from None
            return cast(socket.socket, self._sock)
        if self.user is not None and os.geteuid() != 0:
            raise SpawnRefused(
                "the CGI spawner cannot be restarted as the CGI user: the server "
                "no longer runs as root"
            )
        try:
            self.start()
        except OSError as e:
            self._lost(f"cannot start: {e}")
            raise SpawnRefused("the CGI spawner cannot be started") from None
        return cast(socket.socket, self._sock)

    # Round trips

    def _await(
        self,
        sock: socket.socket,
        isAnswer: Callable[[dict[str, Any]], bool],
        timeout: float,
    ) -> dict[str, Any]:
        """
        Wait (blocking) for the message C{isAnswer} accepts; others wait in
        order for the reactor.

        @raise OSError: The spawner closed the connection, or did not
            answer within C{timeout} seconds.
        """
        deadline = self._now() + timeout
        poller = select.poll()
        poller.register(sock.fileno(), select.POLLIN)
        while True:
            try:
                received = receivePacket(sock, self._buffer)
            except BlockingIOError:
                remaining = deadline - self._now()
                if remaining <= 0:
                    raise TimeoutError("the CGI spawner did not answer") from None
                poller.poll(remaining * 1000)
                continue
            except WireError:
                continue
            if received is None:
                raise ConnectionResetError("the CGI spawner closed the connection")
            packet, fds = received
            for fd in fds:
                os.close(fd)
            try:
                messages = decodeAll(packet)
            except WireError:
                continue
            answer = None
            for message in messages:
                if answer is None and isAnswer(message):
                    answer = message
                else:
                    self._queue(message)
            if answer is not None:
                return answer

    def request(self, message: dict[str, Any]) -> None:
        """
        Send a request that needs no answer (a lost spawner has ended what
        it concerns).
        """
        if self._sock is None:
            return
        try:
            self._sendBlocking(self._sock, encode(message), ())
        except OSError as e:
            self._lost(str(e))

    def _sendBlocking(
        self, sock: socket.socket, packet: bytes, fds: Sequence[int]
    ) -> None:
        deadline = self._now() + REPLY_TIMEOUT
        while True:
            try:
                sendPacket(sock, packet, fds)
                return
            except BlockingIOError:
                remaining = deadline - self._now()
                if remaining <= 0:
                    raise TimeoutError("the CGI spawner does not read") from None
                poller = select.poll()
                poller.register(sock.fileno(), select.POLLOUT)
                poller.poll(remaining * 1000)

    def spawn(
        self,
        reactor: Any,
        protocol: IProcessProtocol,
        executable: str,
        args: Sequence[str],
        *,
        environment: Mapping[str, str],
        directory: str,
        user: tuple[int, int] | None = None,
    ) -> object:
        """
        Start a script through the spawner, as L{ScriptProcess} would start
        it (the spawner's user is the one it runs as: C{user} is not
        consulted).

        @raise OSError: The script could not be started (its exec's error).
        @raise SpawnRefused: The server-wide cap is reached, or there is no
            spawner now.
        """
        if self.fallback is not None:
            return self.fallback(
                reactor,
                protocol,
                executable,
                args,
                environment=environment,
                directory=directory,
                user=user,
            )
        sock = self._ensure()
        self._nextId += 1
        ident = self._nextId
        packet = encode(
            SpawnRequest(
                ident, executable, list(args), dict(environment), directory
            ).message()
        )
        childFds, ours = makePipes()
        try:
            try:
                self._sendBlocking(sock, packet, childFds)
            finally:
                for fd in childFds:
                    os.close(fd)
        except OSError as e:
            for fd in ours:
                os.close(fd)
            if e.errno == errno.EMSGSIZE:
                raise OSError(errno.E2BIG, os.strerror(errno.E2BIG)) from None
            self._lost(str(e))
            raise SpawnRefused("the CGI spawner is gone") from None
        script = RemoteScript(
            self, reactor, protocol, ours, None, self._kernel, sentAt=self._now()
        )
        self._spawning[ident] = script
        if self._replyCall is None:
            self._replyCall = self.reactor.callLater(REPLY_TIMEOUT, self._checkReplies)
        protocol.makeConnection(script)
        return script

    def _checkReplies(self) -> None:
        """
        The spawner must answer every request within L{REPLY_TIMEOUT}; one
        that does not is hung, and is killed (its scripts are lost, the
        requests waiting get C{503}).
        """
        self._replyCall = None
        if not self._spawning:
            return
        oldest = next(iter(self._spawning.values()))
        late = self._now() - oldest.sentAt
        if late >= REPLY_TIMEOUT:
            self._lost("it did not answer in time")
            return
        self._replyCall = self.reactor.callLater(
            REPLY_TIMEOUT - late, self._checkReplies
        )

    # Events, on the reactor

    def fileno(self) -> int:
        return self._sock.fileno() if self._sock is not None else -1

    def logPrefix(self) -> str:
        return "SpawnerClient"

    def connectionLost(self, reason: Failure) -> None:
        """
        The reactor lets go of the connection: the spawner hung up, or the
        reactor is stopping (it lets go of every descriptor once the
        services have stopped), and then the spawner is let go gently.
        """
        sock = self._sock
        if sock is None:
            return
        try:
            received = receivePacket(sock, self._buffer)
        except BlockingIOError:
            self.stop()
            return
        except (OSError, WireError):
            received = None
        if received is None:
            self._lost("it closed the connection")
            return
        # A last message, then the hang-up the reactor saw.
        packet, fds = received
        for fd in fds:
            os.close(fd)
        with contextlib.suppress(WireError):
            for message in decodeAll(packet):
                self._dispatch(message)
        self._lost("it closed the connection")

    def doRead(self) -> None:
        self._flush()
        for _ in range(32):
            sock = self._sock
            if sock is None:
                return
            try:
                received = receivePacket(sock, self._buffer)
            except BlockingIOError:
                return
            except WireError:
                continue
            except OSError as e:
                self._lost(str(e))
                return
            if received is None:
                self._lost("it closed the connection")
                return
            packet, fds = received
            for fd in fds:
                os.close(fd)
            try:
                messages = decodeAll(packet)
            except WireError as e:
                _log.error("CGI spawner sent a bad message: {error}", error=e)
                continue
            for message in messages:
                self._dispatch(message)

    def _queue(self, message: dict[str, Any]) -> None:
        self._pending.append(message)
        if self._flushCall is None:
            self._flushCall = self.reactor.callLater(0, self._flush)

    def _flush(self) -> None:
        if self._flushCall is not None:
            if self._flushCall.active():
                self._flushCall.cancel()
            self._flushCall = None
        pending, self._pending = self._pending, []
        for message in pending:
            self._dispatch(message)

    def _dispatch(self, message: dict[str, Any]) -> None:
        op = message.get("op")
        if op in _ANSWERS:
            self._answered(op, message)
            return
        pid = message.get("pid")
        script = self._scripts.get(pid) if isinstance(pid, int) else None
        if script is None:
            return
        if op == "exited":
            status = message.get("status")
            script.exited(status if isinstance(status, int) else None)
        elif op == "ended":
            del self._scripts[script.pid or 0]
            script.ended(bool(message.get("killed")))

    def _answered(self, op: str, message: dict[str, Any]) -> None:
        """
        The spawner answered a C{spawn} request.
        """
        ident = message.get("id")
        script = self._spawning.pop(ident, None) if isinstance(ident, int) else None
        if script is None:
            return
        pid = message.get("pid")
        if op == "spawned" and isinstance(pid, int) and pid > 0:
            self._backoff = MIN_BACKOFF
            self._scripts[pid] = script
            script.spawned(pid)
        elif op == "refused":
            script.failed(SpawnRefused(str(message.get("message", ""))))
        else:
            code = message.get("errno")
            code = code if isinstance(code, int) and code > 0 else errno.EIO
            script.failed(
                OSError(code, str(message.get("message") or os.strerror(code)))
            )


# The spawner's answers to a spawn request.
_ANSWERS = frozenset({"spawned", "failed", "refused"})


def _letGo(resources: dict[str, Any]) -> None:
    """
    Close what a client that was dropped without L{SpawnerClient.stop}
    still held: its spawner sees its lifeline end and exits.
    """
    sock = resources.get("sock")
    if sock is not None:
        sock.close()
    lifeline = resources.get("lifeline")
    if lifeline is not None:
        with contextlib.suppress(OSError):
            os.close(lifeline)
    process = resources.get("process")
    if process is not None:
        try:
            process.wait(2)
        except subprocess.TimeoutExpired:
            process.kill()
            process.wait()


class SpawnerService(Service):
    """
    The spawner's life as a part of the server: started before twistd
    drops privileges (L{privilegedStartService}), let go once everything
    else has stopped (after the reactor's shutdown, when the scripts have
    been ended by the gateway), waited for so nothing is left behind.

    If it cannot be started, the server logs why and starts each script
    itself (L{ScriptProcess}), as an embedded gateway does.
    """

    def __init__(self, client: SpawnerClient) -> None:
        self.client = client
        self._began = False

    def privilegedStartService(self) -> None:
        self._begin()
        super().privilegedStartService()

    def startService(self) -> None:
        self._begin()
        super().startService()

    def stopService(self) -> None:
        # The spawner itself is let go after the reactor's shutdown, once
        # the gateway has ended every script.
        self.client.draining = True
        super().stopService()

    def _begin(self) -> None:
        if self._began:
            return
        self._began = True
        client = self.client
        try:
            if client.address is not None:
                client.connect(client.address)
            else:
                client.start()
        except OSError as e:
            _log.error(
                "Cannot start the CGI spawner ({error}): each script is "
                "started by the server itself",
                error=e,
            )
            client.fallback = ScriptProcess
            return
        client.reactor.addSystemEventTrigger("after", "shutdown", client.stop)


def spawnerService(
    reactor: Any,
    *,
    user: tuple[int, int] | None,
    maxProcesses: int,
    grace: float,
    allowUids: Sequence[int] = (),
) -> SpawnerService:
    """
    The spawner for a server: started now if this process is the server
    (or the supervisor of its workers), reached at the address in
    C{CGISERVE_SPAWNER} if it is a worker started with one.

    @param user: C{--cgi-user} as looked up (see L{scriptUser}): the
        spawner becomes that user if the server runs as root.
    """
    client = SpawnerClient(
        reactor,
        user=runAs(user, os.geteuid()),
        maxProcesses=maxProcesses,
        grace=grace,
        allowUids=allowUids,
    )
    # Read once, and kept from whatever this process starts later.
    client.address = os.environ.pop(ENVIRONMENT_VARIABLE, None) or None
    return SpawnerService(client)
