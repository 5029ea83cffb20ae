# -*- test-case-name: tests.test_cgiprocess -*-
"""
Starting a CGI script and connecting its pipes to the reactor.

Twisted's C{spawnProcess} forks the whole server whenever a working
directory is given (posix_spawn cannot change directory), and CGI scripts
must run in their own directory. Measured on this project's machines, with
a server-sized process: fork and exec 3.5 ms per run of a trivial shell
script, Twisted's posix_spawn path through a C{setsid}/C{env -C} helper
2.7 ms, the standard library's vfork path (C{subprocess}, which changes
directory and starts a new session in the child before exec) 1.1 ms.

So scripts are started through C{subprocess.Popen} with pipes this module
creates, and the pipes are handed to Twisted's own L{ProcessReader} and
L{ProcessWriter}: the reactor does all the I/O, with its flow control. The
child is reaped from the reactor's C{SIGCHLD} handling through
L{registerReapProcessHandler}, which calls C{Popen.poll}, so C{Popen} never
waits for the child behind the reactor's back.

Each script leads a new session (its own process group), so it and
everything it starts can be signalled together.
"""

from __future__ import annotations

import errno
import os
import shutil
import signal
import subprocess
from collections.abc import Iterable, Mapping, Sequence
from typing import Any

from zope.interface import implementer

from twisted.internet import error
from twisted.internet.interfaces import IProcessProtocol, IProcessTransport
from twisted.internet.main import CONNECTION_DONE, CONNECTION_LOST
from twisted.internet.process import (
    ProcessReader,
    ProcessWriter,
    registerReapProcessHandler,
    unregisterReapProcessHandler,
)
from twisted.python.failure import Failure

__all__ = ["ScriptProcess"]

# util-linux's setpriv, to change user between vfork and the script's exec.
_SETPRIV = shutil.which("setpriv", path="/usr/bin:/bin:/usr/sbin:/sbin")


# A pipe's capacity on Linux: reading it in one call halves the calls (and
# the chunks sent to the client) of Twisted's 8 KiB reads.
_READ_SIZE = 64 * 1024


class _PipeReader(ProcessReader):
    """
    Twisted's process output reader, reading a whole pipe's worth at once.
    """

    def doRead(self) -> object:
        try:
            output = os.read(self.fd, _READ_SIZE)
        except OSError as e:
            if e.errno in (errno.EAGAIN, errno.EINTR):
                return None
            return CONNECTION_LOST
        if not output:
            return CONNECTION_DONE
        self.dataReceived(output)
        return None


@implementer(IProcessTransport)
class ScriptProcess:
    """
    A running script, as an L{IProcessTransport} for its protocol.

    @ivar pid: The script's process ID (and process group ID), L{None} once
        it has been reaped.
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
    ) -> None:
        """
        Start the script, as C{user} (uid, gid) if given.

        @raise OSError: It could not be started (the error of its exec).
        """
        args = list(args)
        switch: dict[str, Any] = {}
        if user is not None:
            if _SETPRIV is not None:
                # The standard library forks the whole server when it must
                # change user in the child; setpriv changes it after a vfork.
                uid, gid = user
                args = [_SETPRIV, f"--reuid={uid}", f"--regid={gid}",
                        "--clear-groups", "--", executable, *args[1:]]  # fmt: skip
                executable = _SETPRIV
            else:
                switch = {"user": user[0], "group": user[1], "extra_groups": []}
        self.proto = protocol
        self.status: int | None = None
        self._exited = False
        stdinRead, stdinWrite = os.pipe()
        stdoutRead, stdoutWrite = os.pipe()
        stderrRead, stderrWrite = os.pipe()
        try:
            self._popen = subprocess.Popen(
                args,
                executable=executable,
                stdin=stdinRead,
                stdout=stdoutWrite,
                stderr=stderrWrite,
                cwd=directory,
                env=dict(environment),
                close_fds=True,
                restore_signals=True,
                start_new_session=True,
                **switch,
            )
        except BaseException:
            for fd in (stdinWrite, stdoutRead, stderrRead):
                os.close(fd)
            raise
        finally:
            for fd in (stdinRead, stdoutWrite, stderrWrite):
                os.close(fd)
        self.pid: int | None = self._popen.pid
        self.pipes: dict[int, ProcessReader | ProcessWriter] = {
            0: ProcessWriter(reactor, self, 0, stdinWrite),
            1: _PipeReader(reactor, self, 1, stdoutRead),
            2: _PipeReader(reactor, self, 2, stderrRead),
        }
        protocol.makeConnection(self)
        # Registering also reaps a child that has already exited.
        registerReapProcessHandler(self.pid, self)

    # Reaping, called from the reactor's SIGCHLD handling.

    def reapProcess(self) -> None:
        """
        Collect the script's exit status if it has exited.
        """
        pid = self.pid
        if pid is None:
            return
        try:
            status = self._popen.poll()
        except OSError:
            status = None
        if status is None:
            return
        unregisterReapProcessHandler(pid, self)
        self._ended(status)

    def processEnded(self, status: int) -> None:
        """
        Called by L{registerReapProcessHandler} with a raw wait status when
        the child had already exited on registration.
        """
        if os.WIFEXITED(status):
            self._popen.returncode = os.WEXITSTATUS(status)
        else:
            self._popen.returncode = -os.WTERMSIG(status)
        self._ended(self._popen.returncode)

    def _ended(self, returncode: int) -> None:
        self.status = returncode
        self.pid = None
        self._exited = True
        reason: BaseException
        if returncode == 0:
            reason = error.ProcessDone(0)
        elif returncode > 0:
            reason = error.ProcessTerminated(exitCode=returncode)
        else:
            reason = error.ProcessTerminated(signal=-returncode)
        self._reason = reason
        self.proto.processExited(Failure(reason))
        self._maybeEnded()

    def _maybeEnded(self) -> None:
        if self._exited and not self.pipes:
            self._exited = False
            self.proto.processEnded(Failure(self._reason))

    # The pipes, called by ProcessReader and ProcessWriter.

    def childDataReceived(self, name: int, data: bytes) -> None:
        self.proto.childDataReceived(name, data)

    def childConnectionLost(self, name: int, reason: Failure) -> None:
        pipe = self.pipes.pop(name, None)
        if pipe is not None:
            os.close(pipe.fileno())
        self.proto.childConnectionLost(name)
        if name == 1:
            # Output closed: the script is probably gone; a missed SIGCHLD
            # must not leave it unreaped.
            self.reapProcess()
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

    def signalProcess(self, signalID: str | int) -> None:
        """
        Signal the script's whole process group: the script and whatever it
        started.
        """
        number = (
            getattr(signal, f"SIG{signalID}") if isinstance(signalID, str) else signalID
        )
        if self.pid is None:
            raise error.ProcessExitedAlready()
        try:
            os.killpg(self.pid, number)
        except OSError as e:
            if e.errno != errno.ESRCH:
                raise
            raise error.ProcessExitedAlready() from None

    def getPeer(self) -> Any:
        return None

    def getHost(self) -> Any:
        return None
