# -*- test-case-name: tests.cgi.test_spawner -*-
"""
The CGI spawner: a small long-lived process that starts scripts for the
server, as Apache's mod_cgid does.

Why
===

A server running as root must not run scripts as root. Switching user for
each script costs a second exec (C{setpriv}) or a full fork of the server
(the standard library cannot vfork when it changes user). The spawner is
started once, when the server starts, and switches once: it imports what
it needs as root, then drops to the CGI user for good (C{setgroups},
C{setresgid}, C{setresuid}, all three IDs) before it accepts anything.
Every script then starts with one vfork and one exec, from a process far
smaller than the server, on the other core.

What it does
============

The server (and each worker of C{--workers}) connects to the spawner's
abstract-namespace Unix socket; a peer is let in only if C{SO_PEERCRED}
says it runs as root or as one of the users the server named
(C{--allow-uid}: its own, twistd's C{--uid}), never as C{--cgi-user} for
being the spawner's user, so that scripts cannot reach it. The messages are those of
L{twisted_cgiserve._cgi.spawnerwire}. For each C{spawn} request the
spawner starts the script with the three descriptors it received, closes
its copies, and answers with the PID or the exec's error. What it has to
say to a connection in one turn of its reactor (answers, exits, the ends
that one group scan finds) goes at the turn's end in one packet: each
packet wakes the server up, and under load a packet carries several
messages (measured: 1.2 packets per script instead of 3).

Scripts are started in a few threads (L{THREADS}, L{launchInThreads}):
C{subprocess}'s vfork suspends only the calling thread until the child has
exec'd, and releases the GIL meanwhile, so execs overlap on both cores
while the reactor's thread goes on reading requests and reporting exits.
A started child is taken over on the reactor's thread (L{ScriptProcess}
with C{popen}); it cannot be reaped by anyone before (it is never waited
for), so an exit that came first is seen then. Scripts still starting
count against the cap, and the spawner does not exit before they are
known. It is the scripts' parent, so everything
L{ScriptProcess} does about process groups happens here: the leader left
unreaped while its group has members, the group signalled only while so
anchored, C{SIGTERM} then C{SIGKILL} after a grace, one C{/proc} watch for
all groups (L{ProcessGroups}).

It enforces C{--cgi-max-processes} for the whole server: the groups it
started that are not yet gone, over all connections.

When a connection closes (its worker died), every group started for it is
ended. When its standard input (the lifeline: the server keeps the other
end of the pipe) reaches its end, or on C{SIGTERM}, it ends every group
and exits once all are gone: it never outlives the server. It leads a
session of its own, so a signal to the server's process group (a
terminal's Ctrl-C) is the server's alone to handle.
"""

from __future__ import annotations

import argparse
import contextlib
import errno
import os
import signal
import socket
import struct
import sys
from collections.abc import Callable, Sequence
from typing import Any

from zope.interface import implementer

from twisted.internet import error
from twisted.internet.defer import Deferred, maybeDeferred
from twisted.internet.interfaces import IReadDescriptor
from twisted.internet.protocol import ProcessProtocol
from twisted.internet.threads import deferToThreadPool
from twisted.logger import (
    ILogObserver,
    LogEvent,
    Logger,
    LogLevel,
    formatEventAsClassicLogText,
)
from twisted.python.failure import Failure
from twisted.python.threadpool import ThreadPool

from twisted_cgiserve._cgi.process import ScriptProcess, startScript
from twisted_cgiserve._cgi.spawnerwire import (
    MAX_MESSAGE,
    SpawnRequest,
    WireError,
    decode,
    encodeBatch,
    graceOf,
    parseSpawn,
    pidOf,
    receivePacket,
    requireInt,
    sendPacket,
)

__all__ = [
    "THREADS",
    "Spawner",
    "SpawnerConnection",
    "dropPrivileges",
    "launchHere",
    "launchInThreads",
    "main",
    "peerUid",
]

_log = Logger(namespace="cgiserve.spawner")

# Messages handled per readiness of one connection before the others get
# their turn.
_BURST = 32

# Threads that start scripts at once: each waits in vfork until its child
# has exec'd, so a few let the execs overlap (on both cores), while the
# reactor's thread goes on. See docs/performance.md for the measurements.
THREADS = 4


def peerUid(sock: socket.socket) -> int:
    """
    The user ID of the process at the other end of C{sock}, as the kernel
    recorded it when that process connected.
    """
    creds = sock.getsockopt(
        socket.SOL_SOCKET, socket.SO_PEERCRED, struct.calcsize("3i")
    )
    _, uid, _ = struct.unpack("3i", creds)
    uid_: int = uid
    return uid_


def dropPrivileges(uid: int, gid: int) -> None:
    """
    Become C{uid}:C{gid} for good, with no supplementary group: the real,
    effective and saved IDs all change, so nothing can switch back.

    @raise OSError: The switch failed, or did not hold (never run scripts
        then).
    """
    os.setgroups([])
    os.setresgid(gid, gid, gid)
    os.setresuid(uid, uid, uid)
    if os.getresuid() != (uid, uid, uid) or os.getresgid() != (gid, gid, gid):
        raise OSError("the user switch did not hold")


class _ScriptEvents(ProcessProtocol):
    """
    One script as the spawner runs it: its exit and its end, sent to the
    connection it was started for. Events that happen before the answer
    to its C{spawn} has been sent (a script that exits at once) wait.
    """

    transport: ScriptProcess

    def __init__(self, spawner: Spawner, connection: SpawnerConnection) -> None:
        self.spawner = spawner
        self.connection = connection
        self.pid = 0
        self._held: list[dict[str, Any]] | None = []

    def attach(self, pid: int) -> None:
        """
        The answer has been sent: send what happened since.
        """
        self.pid = pid
        held, self._held = self._held or [], None
        for message in held:
            message["pid"] = pid
            self.connection.send(message)

    def _send(self, message: dict[str, Any]) -> None:
        if self._held is not None:
            self._held.append(message)
        else:
            message["pid"] = self.pid
            self.connection.send(message)

    def processExited(self, reason: Failure) -> None:
        self._send({"op": "exited", "status": self.transport.status})

    def processEnded(self, reason: Failure) -> None:
        self._send({"op": "ended", "killed": self.transport.killed})
        self.spawner.forget(self)


class SpawnerConnection:
    """
    One connection from the server or a worker, on the spawner's reactor.

    @ivar scripts: The scripts started for it, by PID, until they are gone.
    """

    def __init__(self, spawner: Spawner, sock: socket.socket) -> None:
        self.spawner = spawner
        self.sock = sock
        sock.setblocking(False)
        self.scripts: dict[int, _ScriptEvents] = {}
        self.closed = False
        self._buffer = bytearray(MAX_MESSAGE)
        self._outgoing: list[bytes] = []
        # Messages of this turn, sent together at its end (flush).
        self._batch: list[dict[str, Any]] = []
        self._flushCall: Any = None

    # IReadDescriptor, IWriteDescriptor

    def fileno(self) -> int:
        return self.sock.fileno() if not self.closed else -1

    def logPrefix(self) -> str:
        return "SpawnerConnection"

    def doRead(self) -> None:
        for _ in range(_BURST):
            if self.closed:
                return
            try:
                received = receivePacket(self.sock, self._buffer)
            except BlockingIOError:
                return
            except WireError as e:
                _log.error("Spawner: dropped a packet: {error}", error=e)
                continue
            except OSError:
                self.close()
                return
            if received is None:
                self.close()
                return
            self.spawner.received(self, *received)

    def doWrite(self) -> None:
        while self._outgoing and not self.closed:
            try:
                sendPacket(self.sock, self._outgoing[0])
            except BlockingIOError:
                return
            except OSError:
                self.close()
                return
            del self._outgoing[0]
        if not self.closed:
            self.spawner.reactor.removeWriter(self)

    def connectionLost(self, reason: Failure) -> None:
        self.close()

    def send(self, message: dict[str, Any]) -> None:
        """
        Send C{message} at the end of this turn of the reactor, with every
        other message of the turn, after whatever waits; a peer too slow
        to read gets it once it does.
        """
        if self.closed:
            return
        self._batch.append(message)
        if self._flushCall is None:
            self._flushCall = self.spawner.reactor.callLater(0, self.flush)

    def flush(self) -> None:
        """
        Send what this turn had to say, in as few packets as fit (see
        L{encodeBatch}): one wake-up of the server for all of it.
        """
        if self._flushCall is not None:
            if self._flushCall.active():
                self._flushCall.cancel()
            self._flushCall = None
        batch, self._batch = self._batch, []
        if self.closed or not batch:
            return
        for packet in encodeBatch(batch):
            self._sendPacket(packet)

    def _sendPacket(self, packet: bytes) -> None:
        if self.closed:
            return
        if not self._outgoing:
            try:
                sendPacket(self.sock, packet)
                return
            except BlockingIOError:
                pass
            except OSError:
                self.close()
                return
            self.spawner.reactor.addWriter(self)
        self._outgoing.append(packet)

    def close(self) -> None:
        """
        The peer is gone (or misbehaved): end every group started for it.
        """
        if self.closed:
            return
        reactor = self.spawner.reactor
        reactor.removeReader(self)
        reactor.removeWriter(self)
        self.closed = True
        self._outgoing = []
        self._batch = []
        if self._flushCall is not None:
            if self._flushCall.active():
                self._flushCall.cancel()
            self._flushCall = None
        self.sock.close()
        self.spawner.connectionClosed(self)


StartScript = Callable[..., ScriptProcess]
Launch = Callable[[SpawnRequest, tuple[int, int, int]], "Deferred[object]"]


def _start(request: SpawnRequest, stdio: tuple[int, int, int]) -> object:
    """
    Start C{request}'s script with C{stdio} (see L{startScript}), on the
    calling thread.
    """
    return startScript(
        request.executable,
        request.argv,
        environment=request.environment,
        directory=request.directory,
        stdio=stdio,
    )


def launchHere(request: SpawnRequest, stdio: tuple[int, int, int]) -> Deferred[object]:
    """
    Start C{request}'s script on the reactor's thread.
    """
    return maybeDeferred(_start, request, stdio)


def launchInThreads(reactor: Any, pool: ThreadPool) -> Launch:
    """
    Start scripts in C{pool}'s threads: while one thread waits for a
    child's exec (vfork suspends only that thread, and the standard
    library releases the GIL meanwhile), others start theirs, and the
    reactor's thread goes on reading requests and reporting exits.
    """

    def launch(request: SpawnRequest, stdio: tuple[int, int, int]) -> Deferred[object]:
        return deferToThreadPool(reactor, pool, _start, request, stdio)

    return launch


class Spawner:
    """
    The spawner's state: its connections, and the scripts it started.

    @ivar live: Every script started and not yet gone, over all
        connections (what C{maxProcesses} counts).
    """

    def __init__(
        self,
        reactor: Any,
        *,
        maxProcesses: int = 0,
        grace: float = 5.0,
        allowedUids: Sequence[int] = (),
        start: StartScript = ScriptProcess,
        launch: Launch | None = None,
        exit: Callable[[], None] | None = None,
    ) -> None:
        """
        @param maxProcesses: The most groups alive at once (C{0}: no
            limit).
        @param grace: Seconds between C{SIGTERM} and C{SIGKILL} when a
            connection or the spawner itself goes away.
        @param allowedUids: Besides root, who may connect: the server's
            users (its own and twistd's C{--uid}). Never the spawner's own
            user for being it: as root, that is C{--cgi-user}, and the
            scripts themselves would then reach the spawner.
        @param launch: What starts a script's process, given the request
            and its three descriptors (which it closes): a L{Deferred}
            firing with the child (a C{Popen}), or failing with the exec's
            L{OSError}. The default starts it on this thread (L{main}
            gives a pool of threads, so that execs overlap).
        @param start: What takes a launched child over on the reactor's
            thread (L{ScriptProcess}, given C{popen}).
        @param exit: Called once everything is gone after L{stop} (default:
            stop C{reactor}).
        """
        self.reactor = reactor
        self.maxProcesses = maxProcesses
        self.grace = grace
        self.allowedUids = {0, *allowedUids}
        self.live: set[_ScriptEvents] = set()
        # Scripts being started (in a launch thread): they count against
        # the cap, and the spawner does not exit before they are known.
        self.launching = 0
        self.connections: set[SpawnerConnection] = set()
        self.stopping = False
        self._start = start
        self._launch = launch if launch is not None else launchHere
        self._exit = exit if exit is not None else reactor.stop

    def accepted(self, sock: socket.socket) -> SpawnerConnection | None:
        """
        A peer connected: let it in if it runs as an allowed user.
        """
        try:
            uid = peerUid(sock)
        except OSError:
            uid = -1
        if uid not in self.allowedUids or self.stopping:
            _log.warn("Spawner: refused a connection from user {uid}", uid=uid)
            sock.close()
            return None
        connection = SpawnerConnection(self, sock)
        self.connections.add(connection)
        self.reactor.addReader(connection)
        connection.send({"op": "hello", "pid": os.getpid(), "uid": os.getuid()})
        return connection

    def received(
        self, connection: SpawnerConnection, packet: bytes, fds: list[int]
    ) -> None:
        """
        Act on one packet from C{connection}; C{fds} are closed or handed
        to the script, never kept.
        """
        try:
            try:
                message = decode(packet)
                op = message["op"]
                if op == "spawn":
                    self._spawn(connection, message, fds)
                    fds = []
                elif op == "terminate":
                    script = connection.scripts.get(pidOf(message))
                    if script is not None:
                        script.transport.terminate(graceOf(message))
                elif op == "signal":
                    self._signal(connection, message)
                else:
                    raise WireError(f"unknown request {op!r}")
            except WireError as e:
                _log.error("Spawner: bad request: {error}", error=e)
        finally:
            for fd in fds:
                os.close(fd)

    def _signal(self, connection: SpawnerConnection, message: dict[str, Any]) -> None:
        script = connection.scripts.get(pidOf(message))
        number = requireInt(message, "signal")
        if script is None:
            return
        with contextlib.suppress(error.ProcessExitedAlready, OSError, ValueError):
            script.transport.signalProcess(number)

    def _spawn(
        self, connection: SpawnerConnection, message: dict[str, Any], fds: list[int]
    ) -> None:
        """
        Start one script with the three descriptors C{fds} (closed here
        whatever happens), and answer.
        """
        ident = message.get("id")
        try:
            request = parseSpawn(message)
        except WireError as e:
            for fd in fds:
                os.close(fd)
            connection.send(
                {"op": "failed", "id": ident, "errno": 22, "message": str(e)}
            )
            return
        if len(fds) != 3:
            for fd in fds:
                os.close(fd)
            connection.send(
                {
                    "op": "failed",
                    "id": ident,
                    "errno": errno.EBADF,
                    "message": "no stdio",
                }
            )
            return
        if self.stopping or (
            self.maxProcesses and len(self.live) + self.launching >= self.maxProcesses
        ):
            for fd in fds:
                os.close(fd)
            connection.send(
                {
                    "op": "refused",
                    "id": ident,
                    "message": "stopping" if self.stopping else "too many scripts",
                }
            )
            return
        self.launching += 1
        launched = self._launch(request, (fds[0], fds[1], fds[2]))
        launched.addCallbacks(
            self._launched,
            self._launchFailed,
            callbackArgs=(connection, request),
            errbackArgs=(connection, ident),
        )

    def _launched(
        self, popen: object, connection: SpawnerConnection, request: SpawnRequest
    ) -> None:
        """
        A script has started (in a launch thread): take it over on this
        thread, and answer. Its group is watched from now on; an exit that
        came first is seen at once (the child was left unreaped).
        """
        self.launching -= 1
        events = _ScriptEvents(self, connection)
        self._start(
            self.reactor,
            events,
            request.executable,
            request.argv,
            environment=request.environment,
            directory=request.directory,
            popen=popen,
        )
        pid = events.transport.pid
        assert pid is not None
        self.live.add(events)
        if connection.closed or self.stopping:
            # Its peer went away (or the spawner is stopping) while it
            # started: it ends now, as the others did.
            events.transport.terminate(self.grace)
            return
        connection.scripts[pid] = events
        connection.send({"op": "spawned", "id": request.id, "pid": pid})
        events.attach(pid)

    def _launchFailed(
        self, reason: Failure, connection: SpawnerConnection, ident: object
    ) -> None:
        """
        A script could not be started: answer with its exec's error.
        """
        self.launching -= 1
        e = reason.value
        if isinstance(e, OSError):
            code, text = e.errno or errno.EIO, e.strerror or str(e)
        else:
            _log.failure("Spawner: cannot start a script", reason)
            code, text = errno.EIO, "internal error"
        connection.send({"op": "failed", "id": ident, "errno": code, "message": text})
        self._maybeExit()

    def forget(self, events: _ScriptEvents) -> None:
        """
        A script's group is gone.
        """
        self.live.discard(events)
        if events.connection.scripts.get(events.pid) is events:
            del events.connection.scripts[events.pid]
        self._maybeExit()

    def connectionClosed(self, connection: SpawnerConnection) -> None:
        """
        A peer went away: end what it started.
        """
        self.connections.discard(connection)
        for script in list(connection.scripts.values()):
            script.transport.terminate(self.grace)

    def stop(self) -> None:
        """
        The server is gone (or asked): end every group, exit once all are
        gone.
        """
        if self.stopping:
            return
        self.stopping = True
        for script in list(self.live):
            script.transport.terminate(self.grace)
        self._maybeExit()

    def _maybeExit(self) -> None:
        if self.stopping and not self.live and not self.launching:
            exit, self._exit = self._exit, lambda: None
            exit()


@implementer(IReadDescriptor)
class _Descriptor:
    """
    A descriptor the spawner's reactor reads, calling C{onReadable}, and
    C{onLost} once the reactor finds it hung up (a pipe whose writer is
    gone is reported so, not as readable).
    """

    def __init__(
        self, fd: int, onReadable: Callable[[], None], onLost: Callable[[], None]
    ) -> None:
        self.fd = fd
        self.onReadable = onReadable
        self.onLost = onLost

    def fileno(self) -> int:
        return self.fd

    def logPrefix(self) -> str:
        return "Spawner"

    def doRead(self) -> None:
        self.onReadable()

    def connectionLost(self, reason: Failure) -> None:
        self.onLost()


def _arguments(argv: Sequence[str]) -> argparse.Namespace:
    parser = argparse.ArgumentParser(prog="cgiserve-spawner")
    parser.add_argument("--listen-fd", type=int, required=True)
    parser.add_argument("--user", default=None, help="uid:gid to switch to")
    parser.add_argument("--max-processes", type=int, default=0)
    parser.add_argument("--grace", type=float, default=5.0)
    parser.add_argument("--allow-uid", type=int, action="append", default=[])
    parser.add_argument("--threads", type=int, default=THREADS)
    return parser.parse_args(argv)


@implementer(ILogObserver)
class _ProblemsToStderr:
    """
    The spawner's log: warnings and errors only, to the standard error it
    shares with the server, one line each (with a traceback if any), so
    that its routine events (Twisted's own "Main loop terminated.") never
    appear among the server's lines. Under systemd (C{JOURNAL_STREAM}), a
    line starts with its syslog priority, as the server's journal lines
    do.
    """

    def __init__(self, journal: bool) -> None:
        self._journal = journal

    def __call__(self, event: LogEvent) -> None:
        level = event.get("log_level", LogLevel.info)
        if level < LogLevel.warn:
            return
        text = formatEventAsClassicLogText(event)
        if not text:
            return
        if self._journal:
            prefix = "<4>" if level == LogLevel.warn else "<3>"
            text = "".join(f"{prefix}{line}\n" for line in text.splitlines())
        with contextlib.suppress(OSError, ValueError):
            sys.stderr.write(text)
            sys.stderr.flush()


def main(argv: Sequence[str] | None = None) -> None:  # pragma: no cover
    """
    Run the spawner: standard input is the lifeline, C{--listen-fd} a
    listening C{SOCK_SEQPACKET} socket. Run by the server (see
    L{twisted_cgiserve._cgi.spawnerclient}), never by hand.
    """
    options = _arguments(sys.argv[1:] if argv is None else argv)
    reactor: Any
    from twisted.internet import reactor as globalReactor  # noqa: PLC0415
    from twisted.logger import globalLogBeginner  # noqa: PLC0415

    reactor = globalReactor
    globalLogBeginner.beginLoggingTo(
        [_ProblemsToStderr(journal="JOURNAL_STREAM" in os.environ)],
        redirectStandardIO=False,
    )

    if options.user is not None:
        uid, gid = (int(part) for part in options.user.split(":"))
        dropPrivileges(uid, gid)
    listener = socket.socket(fileno=options.listen_fd)
    listener.setblocking(False)
    launch: Launch = launchHere
    if options.threads > 0:
        pool = ThreadPool(options.threads, options.threads, "cgiserve-spawner")
        pool.start()
        reactor.addSystemEventTrigger("during", "shutdown", pool.stop)
        launch = launchInThreads(reactor, pool)
    spawner = Spawner(
        reactor,
        maxProcesses=options.max_processes,
        grace=options.grace,
        allowedUids=options.allow_uid,
        launch=launch,
    )

    def accept() -> None:
        for _ in range(_BURST):
            try:
                sock, _ = listener.accept()
            except BlockingIOError:
                return
            except OSError as e:
                _log.error("Spawner: accept failed: {error}", error=e)
                return
            spawner.accepted(sock)

    def lifeline() -> None:
        try:
            data = os.read(0, 512)
        except BlockingIOError:
            return
        except OSError:
            data = b""
        if not data:
            reactor.removeReader(lifelineReader)
            lifelineLost()

    def lifelineLost() -> None:
        reactor.removeReader(listenReader)
        spawner.stop()

    def listenerLost() -> None:
        # Also called as the reactor lets go of every descriptor on its way
        # out.
        if not spawner.stopping:
            _log.error("Spawner: its listening socket failed")
            spawner.stop()

    os.set_blocking(0, False)
    listenReader = _Descriptor(listener.fileno(), accept, listenerLost)
    lifelineReader = _Descriptor(0, lifeline, lifelineLost)
    reactor.addReader(listenReader)
    reactor.addReader(lifelineReader)

    def installTerm() -> None:
        # Not Twisted's handlers, which would stop at once: end the
        # scripts first. (The spawner leads a session of its own, so a
        # terminal's Ctrl-C reaches the server only, which lets it go
        # through the lifeline.)
        for signum in (signal.SIGTERM, signal.SIGINT):
            signal.signal(signum, lambda *_: reactor.callFromThread(spawner.stop))

    reactor.callWhenRunning(installTerm)
    reactor.run()


if __name__ == "__main__":  # pragma: no cover
    main()
