# -*- test-case-name: tests.cgi.test_process -*-
"""
Starting a CGI script, connecting its pipes to the reactor, and ending it
together with everything it started.

Twisted's C{spawnProcess} forks the whole server whenever a working
directory is given (posix_spawn cannot change directory), and CGI scripts
must run in their own directory. Measured on this project's machines, with
a server-sized process: fork and exec 3.5 ms per run of a trivial shell
script, Twisted's posix_spawn path through a C{setsid}/C{env -C} helper
2.7 ms, the standard library's vfork path (C{subprocess}, which changes
directory and starts a new session in the child before exec) 1.1 ms.

So scripts are started through C{subprocess.Popen} with pipes this module
creates, and the pipes are handed to Twisted's own L{ProcessReader} and
L{ProcessWriter}: the reactor does all the I/O, with its flow control.

The CGI spawner (L{twisted_cgiserve._cgi.spawner}) starts scripts with this
same class, given the child's ends of pipes the server made (C{stdio}): it
holds no pipe then, only the process group. The server's ends, and the
transport methods that act on them, are L{ScriptPipes}, which the server's
L{twisted_cgiserve._cgi.spawnerclient.RemoteScript} shares.

Process groups, and why a group ID is never stale when it is signalled
======================================================================

Each script leads a new session, so it has its own process group, whose ID
is the script's PID, and everything it starts stays in that group unless it
leaves on purpose (C{setsid}, C{setpgid}). Ending a script means signalling
the whole group: a C{sleep 300 &} left behind must not outlive a timeout, a
client that went away, or the server.

A group ID is a PID, and PIDs are recycled: once the last member of a group
is gone and its leader has been reaped, the number can be given to an
unrelated process, which may then lead a group of its own with that ID. So
this module signals a group only while it holds an I{anchor}: the script's
own process, left unreaped. A zombie keeps its PID allocated in the kernel,
no other process can get that number, and since a group's ID is always the
PID of the process that created it, no other group can have that ID.

 - The leader's exit is learnt without reaping it: C{waitid} with
   C{WNOWAIT}, from Twisted's C{SIGCHLD} handling (L{reapProcessHandlers};
   not L{registerReapProcessHandler}, which would reap a child that had
   already exited). The protocol's C{processExited} is called then.
 - The leader is reaped (C{waitpid}) only once its group has no live
   member left, or after the group was sent C{SIGKILL}; the protocol's
   C{processEnded} is called once it is reaped and the pipes are closed.
   After that the group is never signalled again: L{signalProcess} raises
   L{ProcessExitedAlready}, which it never does while the anchor is held.
 - C{Popen} never reaps it behind our back: its C{returncode} is set as
   soon as the exit status is known (so C{Popen.poll} and
   C{subprocess._cleanup} never call C{waitpid} for it), and the C{Popen}
   object is kept until the anchor is reaped (so it never lands on
   C{subprocess}'s list of children to reap later).

Whether a group still has members once its leader has exited is learnt by
L{ProcessGroups} (L{twisted_cgiserve._cgi.groups}), which watches the
groups of every script at once.

Twisted's process internals
===========================

The pipes are Twisted's own L{ProcessReader} and L{ProcessWriter}, and the
exit is learnt through L{reapProcessHandlers}: undocumented parts of
L{twisted.internet.process}. (The writer also reads its L{FileDescriptor}'s
buffer, C{dataBuffer}, C{offset} and C{_tempDataLen}, to write at once only
behind nothing.) This is the only module that uses them; they
are imported by name (a rename fails at import, it never silently turns a
behaviour off), and each has a canary in L{tests.cgi.test_process} that
fails when Twisted changes what this module relies on.
"""

from __future__ import annotations

import contextlib
import errno
import fcntl
import os
import signal
import subprocess
from collections.abc import Iterable, Mapping, Sequence
from typing import Any

from zope.interface import implementer

from twisted.internet import error
from twisted.internet.defer import Deferred
from twisted.internet.interfaces import IProcessProtocol, IProcessTransport
from twisted.internet.main import CONNECTION_DONE, CONNECTION_LOST
from twisted.internet.process import (
    ProcessReader,
    ProcessWriter,
    reapProcessHandlers,
    unregisterReapProcessHandler,
)
from twisted.logger import Logger
from twisted.python.failure import Failure

from twisted_cgiserve._cgi.groups import ProcessGroups
from twisted_cgiserve._cgi.privileges import switchUserCommand

__all__ = [
    "IScriptTransport",
    "ScriptPipes",
    "ScriptProcess",
    "SpawnRefused",
    "makePipes",
    "reasonFor",
    "signalNumber",
    "startScript",
]

_log = Logger(namespace="cgiserve.cgi")


# The most of a script's standard error read at once when it is asked for
# (readPendingStderr): four pipe buffers, twice what the debug page shows.
_PENDING_STDERR = 256 * 1024

# A default pipe's capacity on Linux: reading it in one call halves the calls
# of Twisted's 8 KiB reads (standard error, and the pending-stderr bound).
_READ_SIZE = 64 * 1024

# The capacity asked for the pipes that carry bulk data (the request body into
# standard input, the response out of standard output; Linux's default
# pipe-max-size for unprivileged users). With 64 KiB pipes a script such as
# cat(1), which moves 128 KiB per call, blocks on every write, and the server
# and script take turns on every 64 KiB: a 100 MiB echo measured 3.5 times as
# many system calls. The kernel fills a pipe's pages only as data waits in
# it, so an idle pipe costs nothing more.
_PIPE_SIZE = 1024 * 1024

# Standard output is read a whole enlarged pipe at once: fewer, larger chunks
# for the response.
_OUTPUT_READ_SIZE = _PIPE_SIZE

# Seconds between two looks at a leader whose exit closed its output but
# whose SIGCHLD has not been handled yet (it is a matter of microseconds).
_EXIT_POLL = 0.01


class _PipeReader(ProcessReader):
    """
    Twisted's process output reader, reading a whole pipe's worth at once.
    """

    readSize = _READ_SIZE

    def doRead(self) -> object:
        try:
            output = os.read(self.fd, self.readSize)
        except OSError as e:
            if e.errno in (errno.EAGAIN, errno.EINTR):
                return None
            return CONNECTION_LOST
        if not output:
            return CONNECTION_DONE
        self.dataReceived(output)
        return None


class _OutputReader(_PipeReader):
    """
    The reader of a script's standard output, an enlarged pipe.
    """

    readSize = _OUTPUT_READ_SIZE


class _PipeWriter(ProcessWriter):
    """
    Twisted's process input writer, writing at once what the pipe takes.

    Twisted's writer only buffers, and writes on the reactor's next turn once
    the pipe is reported writable, registering and unregistering the pipe
    with the reactor around every chunk (two C{epoll_ctl} calls, a turn, and
    often a pause and resume of the client's connection for the request
    body). A pipe with room takes the chunk now; only what it does not take
    is buffered the usual way, in order, behind nothing.

    A pull producer (the C{FileSender} of a spooled body) is asked for more
    only when the buffer has been written out, so its chunks keep the
    buffered way: written at once, they would leave it never asked again.
    """

    def write(self, data: bytes) -> None:
        if (
            data
            and (self.producer is None or self.streamingProducer)
            and self.connected
            and not self._writeDisconnected
            and not self.disconnecting
            and not self._tempDataLen
            and self.offset >= len(self.dataBuffer)
        ):
            try:
                written = os.write(self.fd, data)
            except OSError:
                # Full (EAGAIN), or closed: the buffered path finds out which.
                written = 0
            if written == len(data):
                return
            data = data[written:]
        super().write(data)


def _enlargePipe(fd: int) -> None:
    """
    Ask for a capacity of L{_PIPE_SIZE} for the pipe C{fd} is an end of. A
    refusal (a user over its pipe-user-pages-soft, a kernel without
    C{F_SETPIPE_SZ}) leaves the pipe as it was: only slower.
    """
    setSize = getattr(fcntl, "F_SETPIPE_SZ", None)
    if setSize is None:
        return
    with contextlib.suppress(OSError):
        fcntl.fcntl(fd, setSize, _PIPE_SIZE)


class SpawnRefused(Exception):
    """
    The script was not started, and not because of the script: the
    server-wide C{--cgi-max-processes} is reached, or the spawner cannot be
    reached. The client should try again later (C{503}).
    """


def makePipes() -> tuple[tuple[int, int, int], tuple[int, int, int]]:
    """
    A script's three standard pipes: the child's ends (stdin's read end,
    stdout's and stderr's write ends), and the server's.
    """
    made: list[int] = []
    try:
        for _ in range(3):
            made.extend(os.pipe())
    except BaseException:
        for fd in made:
            os.close(fd)
        raise
    stdinRead, stdinWrite, stdoutRead, stdoutWrite, stderrRead, stderrWrite = made
    _enlargePipe(stdinWrite)
    _enlargePipe(stdoutRead)
    return (stdinRead, stdoutWrite, stderrWrite), (stdinWrite, stdoutRead, stderrRead)


class IScriptTransport(IProcessTransport):
    """
    A script's process group, as its protocol sees it.

    C{pid} is the leader's PID (and the group's ID) until the group has been
    reaped, L{None} after. The protocol's C{processExited} is called when
    the leader exits, C{processEnded} once nothing of the group is left (or
    it was killed) and its pipes are closed. When the leader's own exit
    closes its standard output, C{processExited} comes first, so the
    protocol knows how the script ended when its output ends.
    """

    def terminate(grace: float) -> Deferred[bool]:
        """
        End the whole group: close the pipes, C{SIGTERM} to the group now,
        C{SIGKILL} after C{grace} seconds if any member is left. Safe at any
        time and more than once (the first grace counts).

        @return: Fires once the group is gone (at once if it already was),
            with whether C{SIGKILL} was needed.
        """

    def readPendingStderr() -> None:
        """
        Hand the protocol what the script's standard error pipe already
        holds, without waiting for more: a failure judged at the script's
        exit may be decided before the reactor has read the last lines it
        wrote, and ending the script closes the pipe.
        """


class ScriptPipes:
    """
    The server's ends of a script's three pipes, on the reactor, and the
    transport methods that act on them: the half of L{IScriptTransport}
    shared by L{ScriptProcess} (the server's own child) and the spawner's
    remote script (L{twisted_cgiserve._cgi.spawnerclient}).

    Subclasses say whether the leader is on its way out
    (L{_leaderExiting}), look again while an end of output is held
    (L{_lookAtLeader}), and report the end (L{_maybeEnded}).

    @ivar pipes: The pipes still open, by child file descriptor.
    """

    # Set by the subclasses: the leader's PID until it is reaped, why the
    # group ended once it has, and whether processEnded was called.
    pid: int | None
    _reason: BaseException | None
    _endedSent: bool

    def __init__(
        self,
        reactor: Any,
        protocol: IProcessProtocol,
        fds: tuple[int, int, int] | None,
    ) -> None:
        """
        @param fds: The server's ends of stdin, stdout and stderr (owned
            from now on), or L{None} for none at all (the spawner holds no
            pipe of the scripts it starts).
        """
        self.proto = protocol
        self._clock = reactor
        self._heldEOF = False
        self._eofCall: Any = None
        self.pipes: dict[int, ProcessReader | ProcessWriter] = {}
        if fds is not None:
            self.pipes = {
                0: _PipeWriter(reactor, self, 0, fds[0]),
                1: _OutputReader(reactor, self, 1, fds[1]),
                2: _PipeReader(reactor, self, 2, fds[2]),
            }

    # For subclasses

    def _leaderExiting(self) -> bool:
        """
        Whether the leader has begun to exit, its exit not yet reported.
        """
        raise NotImplementedError()

    def _lookAtLeader(self) -> None:
        """
        Look again whether the leader has exited (an end of its output is
        held until it has).
        """

    def _maybeEnded(self) -> None:
        """
        Report the end to the protocol, once: when the group is gone (no
        PID any more, a reason known), every pipe is closed and no end of
        output is held back.
        """
        if (
            self.pid is None
            and self._reason is not None
            and not self.pipes
            and not self._heldEOF
            and not self._endedSent
        ):
            self._endedSent = True
            self.proto.processEnded(Failure(self._reason))

    # The pipes, called by ProcessReader and ProcessWriter.

    def childDataReceived(self, name: int, data: bytes) -> None:
        self.proto.childDataReceived(name, data)

    def childConnectionLost(self, name: int, reason: Failure) -> None:
        pipe = self.pipes.pop(name, None)
        if pipe is not None:
            os.close(pipe.fileno())
        if name == 1 and self._leaderExiting():
            # Its exit closed its output: how it ended (a signal?) decides
            # what the client gets, so processExited must come first.
            self._heldEOF = True
            self._eofCall = self._clock.callLater(_EXIT_POLL, self._pollExit)
            return
        self.proto.childConnectionLost(name)
        self._maybeEnded()

    def _pollExit(self) -> None:
        self._eofCall = None
        self._lookAtLeader()
        if self._heldEOF:
            self._eofCall = self._clock.callLater(_EXIT_POLL, self._pollExit)

    def _releaseEOF(self) -> None:
        self._heldEOF = False
        if self._eofCall is not None:
            self._eofCall.cancel()
            self._eofCall = None
        self.proto.childConnectionLost(1)
        self._maybeEnded()

    # IProcessTransport

    def writeToChild(self, childFD: int, data: bytes) -> None:
        if childFD != 0:
            raise KeyError(childFD)
        self.write(data)

    def write(self, data: bytes) -> None:
        if 0 in self.pipes:
            self.pipes[0].write(data)

    def writeSequence(self, seq: Iterable[bytes]) -> None:
        for data in seq:
            self.write(data)

    def readPendingStderr(self) -> None:
        """
        See L{IScriptTransport.readPendingStderr}: read the non-blocking
        pipe until it is empty, at its end, or a bound is reached (a script
        still writing cannot keep the reactor here).
        """
        pipe = self.pipes.get(2)
        if pipe is None:
            return
        remaining = _PENDING_STDERR
        while remaining > 0:
            try:
                data = os.read(pipe.fileno(), min(_READ_SIZE, remaining))
            except OSError:
                # Empty for now (EAGAIN), or gone: the reader learns which.
                return
            if not data:
                return
            remaining -= len(data)
            self.proto.childDataReceived(2, data)

    def closeChildFD(self, childFD: int) -> None:
        if childFD in self.pipes:
            self.pipes[childFD].loseConnection()

    def closeStdin(self) -> None:
        self.closeChildFD(0)

    def closeStdout(self) -> None:
        self.closeChildFD(1)

    def closeStderr(self) -> None:
        self.closeChildFD(2)

    def loseConnection(self) -> None:
        for childFD in (0, 1, 2):
            self.closeChildFD(childFD)

    def pauseProducing(self) -> None:
        """
        Stop reading the script's output (the client is slow): the pipe
        fills and the script blocks in write, so memory stays bounded.
        """
        if 1 in self.pipes:
            self.pipes[1].stopReading()

    def resumeProducing(self) -> None:
        if 1 in self.pipes:
            self.pipes[1].startReading()

    def stopProducing(self) -> None:
        self.loseConnection()

    def registerProducer(self, producer: Any, streaming: bool) -> None:
        """
        Feed the script's standard input from C{producer}, with flow control.
        """
        self.pipes[0].registerProducer(producer, streaming)

    def unregisterProducer(self) -> None:
        if 0 in self.pipes:
            self.pipes[0].unregisterProducer()

    def getPeer(self) -> Any:
        return None

    def getHost(self) -> Any:
        return None


@implementer(IScriptTransport)
class ScriptProcess(ScriptPipes):
    """
    A running script and its process group, as an L{IScriptTransport} for
    its protocol.

    @ivar pid: The script's process ID (and process group ID) while it is
        anchored: until it has been reaped, L{None} after.
    @ivar status: Its return code once it has exited (negative: killed by
        that signal).
    """

    def __init__(
        self,
        reactor: Any,
        protocol: IProcessProtocol,
        executable: str,
        args: Sequence[str],
        *,
        environment: Mapping[str, str],
        directory: str,
        user: tuple[int, int] | None = None,
        groups: ProcessGroups | None = None,
        stdio: tuple[int, int, int] | None = None,
        popen: subprocess.Popen[bytes] | None = None,
    ) -> None:
        """
        Start the script, as C{user} (uid, gid) if given.

        @param groups: Who watches the group once the script has exited; by
            default the one shared by all scripts of C{reactor}.
        @param stdio: The script's standard input, output and error, made
            elsewhere (the spawner receives them from the server); closed
            once the script has started (or failed to), and the protocol
            gets no pipe. By default this makes the pipes and keeps its
            ends.
        @param popen: The script, already started by L{startScript} (the
            spawner starts scripts in threads, so that their execs overlap,
            and takes them over on the reactor's thread): the protocol gets
            no pipe, and nothing is started here.
        @raise OSError: It could not be started (the error of its exec).
        """
        args = list(args)
        switch: dict[str, Any] = {}
        if user is not None:
            executable, args, switch = switchUserCommand(executable, args, user)
        self.status: int | None = None
        self._groups = (
            groups if groups is not None else ProcessGroups.forReactor(reactor)
        )
        self._kernel = self._groups.kernel
        self._reason: BaseException | None = None
        self._registered = False
        self._terminating = False
        self._killed = False
        self._killCall: Any = None
        self._endedSent = False
        self._waiting: list[Deferred[bool]] = []
        ours: tuple[int, int, int] | None = None
        if popen is None:
            if stdio is None:
                stdio, ours = makePipes()
            try:
                popen = startScript(
                    executable,
                    args,
                    environment=environment,
                    directory=directory,
                    stdio=stdio,
                    **switch,
                )
            except BaseException:
                for fd in ours or ():
                    os.close(fd)
                raise
        self._popen = popen
        super().__init__(reactor, protocol, ours)
        self.pid: int | None = self._popen.pid
        self._pgid: int = self._popen.pid
        protocol.makeConnection(self)
        # Twisted's registerReapProcessHandler would reap a child that has
        # already exited, dropping the anchor: register directly, then look.
        reapProcessHandlers[self._pgid] = self  # type: ignore[assignment]
        self._registered = True
        self.reapProcess()

    # The leader's exit, learnt from the reactor's SIGCHLD handling.

    def reapProcess(self) -> None:
        """
        Learn whether the script has exited, leaving it unreaped (the
        anchor); called by Twisted's C{reapAllProcesses} on C{SIGCHLD}.
        """
        if self.status is not None or self._reason is not None or self.pid is None:
            return
        try:
            status = self._kernel.exitStatus(self.pid)
        except ChildProcessError:
            self._anchorLost()
            return
        if status is None:
            return
        self._unregister()
        self.status = status
        self._popen.returncode = status
        self._exited(reasonFor(status))

    def _unregister(self) -> None:
        if self._registered:
            self._registered = False
            unregisterReapProcessHandler(self._pgid, self)

    def _anchorLost(self) -> None:
        """
        Something reaped the script behind the server's back: its group ID
        may be recycled from now on, so it is never signalled again.
        """
        _log.error(
            "CGI process {pid} was reaped by someone else; "
            "its process group can no longer be ended",
            pid=self.pid,
        )
        self._unregister()
        self.pid = None
        self._popen.returncode = self._popen.returncode or 255
        self._exited(error.ProcessTerminated(exitCode=None))
        self._anchorGone()

    def _exited(self, reason: BaseException) -> None:
        self._reason = reason
        self.proto.processExited(Failure(reason))
        if self._heldEOF:
            self._releaseEOF()
        self._checkGroup()

    def _checkGroup(self) -> None:
        """
        The leader has exited: reap it now if its group was killed, else as
        soon as the group is seen empty.
        """
        if self.pid is None or self._reason is None:
            return
        if self._killed:
            self._reapAnchor()
        else:
            self._groups.watch(self, 0)

    # For ProcessGroups

    @property
    def pgid(self) -> int:
        return self._pgid

    @property
    def urgent(self) -> bool:
        return self._terminating

    def groupEmpty(self) -> None:
        self._reapAnchor()

    def _reapAnchor(self) -> None:
        """
        Nothing of the group is left (or it was killed): reap the leader,
        after which the group is never signalled again.
        """
        pid = self.pid
        if pid is None:
            return
        self._groups.forget(self)
        if self._killCall is not None:
            self._killCall.cancel()
            self._killCall = None
        try:
            self._kernel.reap(pid)
        except ChildProcessError:
            _log.error("CGI process {pid} was reaped by someone else", pid=pid)
        self.pid = None
        self._anchorGone()

    def _anchorGone(self) -> None:
        waiting, self._waiting = self._waiting, []
        for done in waiting:
            done.callback(self._killed)
        self._maybeEnded()

    @property
    def killed(self) -> bool:
        """
        Whether the group was sent C{SIGKILL}.
        """
        return self._killed

    # Ending the group

    def terminate(self, grace: float) -> Deferred[bool]:
        """
        See L{IScriptTransport.terminate}.
        """
        done: Deferred[bool] = Deferred()
        self.loseConnection()
        if self.pid is None:
            done.callback(self._killed)
            return done
        self._waiting.append(done)
        if not self._terminating:
            self._terminating = True
            self._signalGroup(signal.SIGTERM)
            self._killCall = self._clock.callLater(grace, self._killGroup)
            if self._reason is not None:
                self._groups.watch(self, self._groups.urgentInterval)
        return done

    def _killGroup(self) -> None:
        """
        The grace is over: C{SIGKILL} to whatever is left of the group, then
        reap the leader (once it has exited).
        """
        self._killCall = None
        pid = self.pid
        if pid is None:
            return
        if self._reason is None or pid in self._kernel.occupied({pid}):
            self._signalGroup(signal.SIGKILL)
            self._killed = True
        if self._reason is not None:
            self._reapAnchor()
        # Else the leader dies of the SIGKILL, and reapProcess reaps it.

    def _signalGroup(self, signum: int) -> None:
        if self.pid is None:
            return
        try:
            self._kernel.killGroup(self.pid, signum)
        except OSError as e:
            _log.error(
                "Cannot signal CGI process group {pgid}: {error}",
                pgid=self.pid,
                error=e.strerror or e,
            )

    # The leader's exit as the pipes need it

    def _leaderExiting(self) -> bool:
        if self._reason is not None or self.pid is None:
            return False
        self.reapProcess()
        return self._reason is None and self._kernel.exiting(self._pgid)

    def _lookAtLeader(self) -> None:
        self.reapProcess()

    def signalProcess(self, signalID: str | int) -> None:
        """
        Signal the script's whole process group: the script and whatever it
        started, even after the script itself has exited.

        @raise ProcessExitedAlready: The group is gone and has been reaped
            (never while its ID cannot have been recycled).
        """
        number = signalNumber(signalID)
        if self.pid is None:
            raise error.ProcessExitedAlready()
        try:
            self._kernel.killGroup(self.pid, number)
        except ProcessLookupError:
            raise error.ProcessExitedAlready() from None


def startScript(
    executable: str,
    args: Sequence[str],
    *,
    environment: Mapping[str, str],
    directory: str,
    stdio: tuple[int, int, int],
    **switch: Any,
) -> subprocess.Popen[bytes]:
    """
    Start a script in a session of its own, with C{stdio} as its standard
    input, output and error (closed here once it has started, or failed
    to), and nothing else open.

    Safe in any thread: it touches no reactor, and the standard library's
    vfork suspends only the calling thread until the exec (the spawner
    overlaps execs so). The child is not watched yet: whoever takes it over
    (L{ScriptProcess} with C{popen}) learns of an exit that came first
    (it is never reaped by anyone else meanwhile).

    @raise OSError: The error of its exec.
    """
    try:
        return subprocess.Popen(
            list(args),
            executable=executable,
            stdin=stdio[0],
            stdout=stdio[1],
            stderr=stdio[2],
            cwd=directory,
            env=dict(environment),
            close_fds=True,
            restore_signals=True,
            start_new_session=True,
            **switch,
        )
    finally:
        for fd in set(stdio):
            os.close(fd)


def signalNumber(signalID: str | int) -> int:
    """
    A signal's number from C{IProcessTransport.signalProcess}'s argument
    (C{"TERM"} or C{15}).
    """
    if isinstance(signalID, str):
        number: int = getattr(signal, f"SIG{signalID}")
        return number
    return signalID


def reasonFor(returncode: int) -> BaseException:
    if returncode == 0:
        return error.ProcessDone(0)
    if returncode > 0:
        return error.ProcessTerminated(exitCode=returncode)
    return error.ProcessTerminated(signal=-returncode)
