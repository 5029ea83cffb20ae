# -*- test-case-name: tests.service.test_supervisor -*-
"""
The supervising parent of C{--workers N}, as nginx's master process: it
serves no request itself, and

  - opened every listening socket before twistd dropped privileges (the
    listening services of the tree, whose ports it stops reading), and
    hands them to N fresh worker processes
    (L{twisted_cgiserve._service.workers});
  - logs what the workers log, wherever its own log goes, naming the
    worker, and copies their standard output (C{--access-log -}) to its
    own one whole line at a time;
  - restarts a worker that dies unexpectedly, at once the first time and
    then with a growing delay while it keeps dying young (logged), while
    the others serve on; a worker killed mid-request loses only its own
    requests;
  - passes C{SIGHUP} and C{SIGUSR1} to every worker, and on C{SIGTERM} or
    C{SIGINT} has every worker drain (each with C{--shutdown-grace}),
    exiting 0 once all have ended;
  - tells systemd C{READY=1} once every worker listens (each worker's own
    readiness service reports to a socket of the parent's in its
    C{NOTIFY_SOCKET}), C{RELOADING=1} and C{READY=1} around a reload, and
    C{STOPPING=1} on the way down.

Server-wide services (the CGI spawner that keeps C{--cgi-max-processes} a
limit of the whole server) run in the parent, as services of the tree
started before this one; what workers need to reach them is given to them
in their environment (C{environment}).
"""

from __future__ import annotations

import contextlib
import os
import shutil
import signal
import tempfile
import time
from collections.abc import Callable, Mapping, Sequence
from typing import Any

from twisted.application.service import Service
from twisted.internet.defer import Deferred
from twisted.internet.error import ProcessDone, ProcessTerminated, ReactorNotRunning
from twisted.internet.protocol import DatagramProtocol, ProcessProtocol
from twisted.internet.task import LoopingCall
from twisted.logger import Logger, LogLevel, eventFromJSON, globalLogPublisher
from twisted.python.failure import Failure

from twisted_cgiserve._cgi.protocol import KILL_GRACE
from twisted_cgiserve._service.exitstatus import exitAfterStop
from twisted_cgiserve._service.signals import installReloadHandlers, installStopHandlers
from twisted_cgiserve._service.systemd import Notifier, monotonicUsec
from twisted_cgiserve._service.workers import (
    CHILD_LOG_FD,
    FIRST_LISTEN_FD,
    workerEnvironment,
)

__all__ = ["Supervisor", "WorkerProtocol", "restartDelay"]

_log = Logger(namespace="cgiserve.workers")

# A worker that served this long before it died is restarted at once; one
# that dies younger waits, twice as long each time, up to the longest.
_STABLE = 10.0
_FIRST_DELAY = 0.5
_LONGEST_DELAY = 30.0
# Seconds a worker gets beyond its own shutdown (grace, ending scripts,
# flushing connections) before it is killed.
_STOP_MARGIN = KILL_GRACE + 10.0
# The most a worker may write on one line before it is cut: a line longer
# than this is not a log line.
_MAX_LINE = 1024 * 1024


def restartDelay(failures: int) -> float:
    """
    Seconds before restarting a worker that died young C{failures} times in
    a row (0 for the first: a crash once in a while costs nothing).
    """
    if failures <= 1:
        return 0.0
    return float(min(_FIRST_DELAY * 2 ** (failures - 2), _LONGEST_DELAY))


class _Lines:
    """
    Whole lines out of a stream of chunks.
    """

    def __init__(self, deliver: Callable[[bytes], object]) -> None:
        self._deliver = deliver
        self._buffer = b""

    def feed(self, data: bytes) -> None:
        self._buffer += data
        *lines, self._buffer = self._buffer.split(b"\n")
        for line in lines:
            self._deliver(line + b"\n")
        if len(self._buffer) > _MAX_LINE:
            self.flush()

    def flush(self) -> None:
        if self._buffer:
            rest, self._buffer = self._buffer, b""
            self._deliver(rest + b"\n")


class WorkerProtocol(ProcessProtocol):
    """
    One worker process, as its parent sees it: its log events, standard
    output and standard error relayed, and its end reported.
    """

    def __init__(
        self,
        index: int,
        ended: Callable[[WorkerProtocol, Failure], object],
        stdout: Callable[[bytes], object],
        publish: Callable[[dict[str, Any]], object] = globalLogPublisher,
    ) -> None:
        self.index = index
        self.pid: int | None = None
        self.startedAt = 0.0
        self._ended = ended
        self._publish = publish
        self._streams = {
            1: _Lines(stdout),
            2: _Lines(self._stderrLine),
            CHILD_LOG_FD: _Lines(self._event),
        }

    @property
    def name(self) -> str:
        return f"worker {self.index}"

    def connectionMade(self) -> None:
        self.pid = self.transport.pid if self.transport is not None else None

    def childDataReceived(self, childFD: int, data: bytes) -> None:
        stream = self._streams.get(childFD)
        if stream is not None:
            stream.feed(data)

    def _event(self, line: bytes) -> None:
        try:
            # Typed as an event, but whatever the JSON holds.
            event: object = eventFromJSON(line.decode("utf-8", "replace"))
        except ValueError:
            self._stderrLine(line)
            return
        if not isinstance(event, dict):
            return
        event["log_system"] = self.name
        # What the worker logged is the worker's; the parent's observers
        # see it as if logged here.
        event.pop("log_logger", None)
        event.pop("log_source", None)
        self._publish(event)

    def _stderrLine(self, line: bytes) -> None:
        self._publish(
            {
                "log_format": "{line}",
                "line": line.decode("utf-8", "replace").rstrip("\n"),
                "log_level": LogLevel.warn,
                "log_namespace": "cgiserve.workers",
                "log_system": self.name,
                "log_time": _now(),
            }
        )

    def processEnded(self, reason: Failure) -> None:
        for stream in self._streams.values():
            stream.flush()
        self._ended(self, reason)


def _now() -> float:
    return time.time()


class _Readiness(DatagramProtocol):
    """
    The notification socket of one worker: what its readiness service
    would have told systemd.
    """

    noisy = False

    def __init__(self, supervisor: Supervisor, index: int) -> None:
        self._supervisor = supervisor
        self._index = index

    def datagramReceived(self, datagram: bytes, addr: Any) -> None:
        fields = datagram.decode("utf-8", "replace").splitlines()
        self._supervisor.notified(self._index, fields)


def _describeEnd(reason: Failure) -> str:
    value = reason.value
    if isinstance(value, ProcessTerminated) and value.signal is not None:
        return f"was killed by signal {value.signal}"
    if isinstance(value, (ProcessDone, ProcessTerminated)):
        return f"exited with status {value.exitCode}"
    return f"ended: {value}"


class Supervisor(Service):
    """
    Start, watch, signal and stop C{count} workers serving the sockets of
    C{listening}.
    """

    def __init__(
        self,
        listening: Sequence[Any],
        count: int,
        arguments: Sequence[str],
        reactor: Any,
        *,
        grace: float,
        environment: Callable[[], Mapping[str, str]] | None = None,
        notifier: Notifier | None = None,
        baseEnvironment: Mapping[str, str] | None = None,
        stdout: Callable[[bytes], object] | None = None,
        exitWith: Callable[[int], object] | None = None,
        workerEnded: Callable[[int | None], object] | None = None,
    ) -> None:
        """
        @param listening: The listening services of the parent, each with
            a C{port} (listening since C{privilegedStartService}) and an
            C{address} method.
        @param arguments: The workers' command line
            (L{twisted_cgiserve._service.workers.workerArguments}).
        @param grace: C{--shutdown-grace}: how long a worker drains.
        @param environment: What workers need from server-wide services
            (variables such as C{CGISERVE_SPAWNER}), asked for at each start.
        @param stdout: Where the workers' standard output lines go (default:
            the parent's descriptor 1).
        @param exitWith: Called with 1 when a worker cannot start
            (default: L{exitAfterStop}).
        @param workerEnded: Told the process ID of each worker that ended
            (C{--metrics}: its live figures no longer count).
        """
        self._workerEnded = workerEnded
        self._listening = list(listening)
        self._count = count
        self._arguments = list(arguments)
        self._reactor = reactor
        self._grace = grace
        self._environment = environment
        self.notifier = notifier or Notifier()
        self._baseEnvironment = baseEnvironment
        self._stdout = stdout or _writeStdout
        self._exitWith = exitWith or (lambda status: exitAfterStop(status, reactor))
        self.workers: dict[int, WorkerProtocol] = {}
        self._failures: dict[int, int] = {}
        self._restarts: dict[int, Any] = {}
        self._ready: set[int] = set()
        self._reloading: set[int] | None = None
        self._allReadyOnce = False
        self._stopping = False
        self._stopped: Deferred[None] | None = None
        self._killer: Any = None
        self._directory: str | None = None
        self._notifyPorts: list[Any] = []
        self._watchdog: LoopingCall | None = None
        self._fds: list[int] = []
        # The workers' program could not be run: nothing more is started.
        self._unrunnable = False

    # Starting

    def startService(self) -> None:
        super().startService()
        self._stopping = False
        self._fds = []
        for service in self._listening:
            port = service.port
            # The parent accepts nothing: the workers do.
            port.stopReading()
            self._fds.append(port.fileno())
        self._directory = tempfile.mkdtemp(prefix="cgiserve-workers-")
        for index in range(1, self._count + 1):
            self._notifyPorts.append(
                self._reactor.listenUNIXDatagram(
                    self._notifyPath(index), _Readiness(self, index)
                )
            )
        installStopHandlers(self._reactor, self._stopRequested)
        installReloadHandlers(self._reactor, self.hangUp, self.user1)
        for index in range(1, self._count + 1):
            self._start(index)

    def _notifyPath(self, index: int) -> str:
        assert self._directory is not None
        return os.path.join(self._directory, f"ready-{index}")

    def _start(self, index: int) -> None:
        self._restarts.pop(index, None)
        if self._stopping or self._unrunnable:
            return
        extra = dict(self._environment()) if self._environment is not None else {}
        env = workerEnvironment(
            os.environ if self._baseEnvironment is None else self._baseEnvironment,
            index,
            len(self._fds),
            self._notifyPath(index),
            extra,
        )
        childFDs: dict[int, int | str] = {0: "w", 1: "r", 2: "r", CHILD_LOG_FD: "r"}
        for i, fd in enumerate(self._fds):
            childFDs[FIRST_LISTEN_FD + i] = fd
        worker = WorkerProtocol(index, self._ended, self._stdout)
        worker.startedAt = self._reactor.seconds()
        try:
            self._reactor.spawnProcess(
                worker, self._arguments[0], self._arguments, env=env, childFDs=childFDs
            )
        except OSError as e:
            # Its program cannot be run at all (say, the server's user may
            # not execute this Python): no restart can help.
            _log.error(
                "Worker {index} cannot be started: {error}; stopping.",
                index=index,
                error=e.strerror or e,
            )
            self._unrunnable = True
            self._exitWith(1)
            return
        self.workers[index] = worker
        _log.info("Started worker {index} (PID {pid}).", index=index, pid=worker.pid)

    # Ending

    def _ended(self, worker: WorkerProtocol, reason: Failure) -> None:
        index = worker.index
        if self._workerEnded is not None:
            self._workerEnded(worker.pid)
        if self.workers.get(index) is worker:
            del self.workers[index]
        self._ready.discard(index)
        if self._reloading is not None:
            self._reloading.discard(index)
        how = _describeEnd(reason)
        if self._stopping:
            _log.info(
                "Worker {index} (PID {pid}) {how}.",
                index=index,
                pid=worker.pid,
                how=how,
            )
            self._checkStopped()
            return
        if not self._allReadyOnce:
            _log.error(
                "Worker {index} (PID {pid}) {how} before it served; stopping.",
                index=index,
                pid=worker.pid,
                how=how,
            )
            self._exitWith(1)
            return
        lived = self._reactor.seconds() - worker.startedAt
        failures = 1 if lived >= _STABLE else self._failures.get(index, 0) + 1
        self._failures[index] = failures
        delay = restartDelay(failures)
        _log.error(
            "Worker {index} (PID {pid}) {how}; restarting it in {delay} s.",
            index=index,
            pid=worker.pid,
            how=how,
            delay=delay,
        )
        self._restarts[index] = self._reactor.callLater(delay, self._start, index)
        self._checkReloaded()

    # Signals

    def _signalAll(self, signum: int) -> None:
        for worker in list(self.workers.values()):
            transport = worker.transport
            if transport is None:
                continue
            try:
                transport.signalProcess(signum)
            except Exception:
                # ProcessExitedAlready: it ended, and _ended was or will be
                # told.
                continue

    def hangUp(self) -> None:
        """
        C{SIGHUP}: every worker reloads its certificates and reopens its
        logs; systemd hears C{RELOADING=1}, then C{READY=1} once every
        worker says it serves again.
        """
        if self._stopping:
            return
        _log.info("Received SIGHUP; passing it to {n} worker(s).", n=len(self.workers))
        if self._allReadyOnce:
            self._reloading = set(self.workers)
            self.notifier.notify("RELOADING=1", monotonicUsec(), "STATUS=Reloading")
        self._signalAll(signal.SIGHUP)

    def user1(self) -> None:
        """
        C{SIGUSR1}: every worker reopens its access log.
        """
        self._signalAll(signal.SIGUSR1)

    def _stopRequested(self, name: str) -> None:
        """
        C{SIGTERM} or C{SIGINT}: stop the reactor, which stops this service,
        which has every worker drain. A second signal changes nothing.
        """
        _log.info("Received {signal}; stopping.", signal=name)
        with contextlib.suppress(ReactorNotRunning):
            self._reactor.stop()

    # Readiness

    def notified(self, index: int, fields: Sequence[str]) -> None:
        """
        Worker C{index} sent C{fields} to its notification socket.
        """
        if "READY=1" not in fields or index not in self.workers:
            return
        self._ready.add(index)
        if self._reloading is not None:
            self._reloading.discard(index)
        if len(self._ready) < self._count or self._stopping:
            return
        if not self._allReadyOnce:
            self._allReadyOnce = True
            _log.info("All {n} workers are serving.", n=self._count)
            self.notifier.notify(
                "READY=1", f"STATUS={self.status()}", f"MAINPID={os.getpid()}"
            )
            self._feedWatchdog()
        self._checkReloaded()

    def _checkReloaded(self) -> None:
        if self._reloading is not None and not self._reloading and not self._stopping:
            self._reloading = None
            self.notifier.notify("READY=1", f"STATUS={self.status()}")

    def status(self) -> str:
        """
        The line C{systemctl status} shows while serving.
        """
        addresses = ", ".join(service.address() for service in self._listening)
        # As a single process says it: the workers are the parent's
        # business, and systemctl shows them as the unit's processes.
        return f"Serving on {addresses}" if addresses else "Serving"

    def _feedWatchdog(self) -> None:
        interval = self.notifier.watchdogInterval
        if interval is not None and self._watchdog is None:
            self._watchdog = LoopingCall(self.notifier.notify, "WATCHDOG=1")
            self._watchdog.clock = self._reactor
            self._watchdog.start(interval / 2, now=True)

    # Stopping

    def stopService(self) -> Deferred[None]:
        super().stopService()
        self._stopping = True
        self.notifier.notify("STOPPING=1", "STATUS=Stopping")
        if self._watchdog is not None and self._watchdog.running:
            self._watchdog.stop()
        self._watchdog = None
        for call in self._restarts.values():
            if call.active():
                call.cancel()
        self._restarts.clear()
        self._stopped = Deferred()
        self._signalAll(signal.SIGTERM)
        self._killer = self._reactor.callLater(
            self._grace + _STOP_MARGIN, self._killAll
        )
        self._checkStopped()
        return self._stopped

    def _killAll(self) -> None:
        _log.warn(
            "{n} worker(s) still running after the grace period; killing them.",
            n=len(self.workers),
        )
        self._signalAll(signal.SIGKILL)

    def _checkStopped(self) -> None:
        if self.workers or self._stopped is None:
            return
        if self._killer is not None and self._killer.active():
            self._killer.cancel()
        self._killer = None
        for port in self._notifyPorts:
            port.stopListening()
        self._notifyPorts = []
        if self._directory is not None:
            shutil.rmtree(self._directory, ignore_errors=True)
            self._directory = None
        stopped, self._stopped = self._stopped, None
        stopped.callback(None)


def _writeStdout(line: bytes) -> None:
    """
    One whole line to the parent's standard output: a worker's access log
    (C{--access-log -}) is never interleaved mid-line with another's.
    """
    data = memoryview(line)
    try:
        while data:
            data = data[os.write(1, data) :]
    except BlockingIOError:
        # A non-blocking standard output that is full: the line is lost,
        # as a single server loses it.
        pass
    except OSError:
        pass
