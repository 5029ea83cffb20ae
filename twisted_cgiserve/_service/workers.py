# -*- test-case-name: tests.service.test_workers -*-
"""
The worker's side of C{--workers N}: how a supervising parent starts a
worker process, and what the worker reads back.

A worker is a fresh interpreter (a running reactor is never forked), which
rebuilds the very service C{twistd cgiserve} builds from the same words of
the command line, with three differences the environment tells it:

  - it listens on the sockets the parent opened (and passes as
    descriptors) instead of opening its own (see
    L{twisted_cgiserve._service.endpoints.endpointFor}'s C{adopt});
  - it runs in the foreground with no pidfile, and its log events go, one
    JSON line each, to a pipe the parent reads and logs wherever its own
    log goes (terminal, C{--logfile}, the journal), naming the worker;
  - it tells systemd's readiness protocol (C{NOTIFY_SOCKET}) to the
    parent, which tells systemd once every worker serves.

The contract, in the worker's environment:

  - C{CGISERVE_WORKER}: the worker's number, from 1;
  - C{CGISERVE_WORKER_FDS}: the listening descriptors, comma-separated, in
    the order of the C{--port} options;
  - C{CGISERVE_WORKER_LOG}: the descriptor log events go to;
  - with C{--metrics}, C{PROMETHEUS_MULTIPROC_DIR}: the directory every
    worker writes its figures to (see
    L{twisted_cgiserve._service.metricsdir}); set from the start, since
    prometheus_client reads it when first imported, and kept, since it
    reads it again for every new series;
  - standard input: a pipe from the parent that is never written to; its
    end of file means the parent died, and the worker stops gracefully.
"""

from __future__ import annotations

import contextlib
import os
import sys
from collections.abc import Callable, Mapping, Sequence
from dataclasses import dataclass
from typing import Any, cast

from zope.interface import implementer

from twisted.internet import main as _main
from twisted.internet.error import ReactorNotRunning
from twisted.internet.interfaces import IReadDescriptor
from twisted.logger import ILogObserver, LogEvent, Logger, eventAsJSON
from twisted.python.failure import Failure

__all__ = [
    "CHILD_LOG_FD",
    "FIRST_LISTEN_FD",
    "WORKER_VARIABLES",
    "WorkerSetup",
    "main",
    "parseWorkerCount",
    "watchParent",
    "workerArguments",
    "workerEnvironment",
    "workerLogObserver",
]

_INDEX = "CGISERVE_WORKER"
_FDS = "CGISERVE_WORKER_FDS"
_LOG = "CGISERVE_WORKER_LOG"

_log = Logger(namespace="cgiserve.workers")

# Every variable of the contract: a worker removes them once read, so that
# no script (--cgi-inherit-env) and no process it starts sees them.
WORKER_VARIABLES = (_INDEX, _FDS, _LOG)

# Where the parent puts the log pipe and the listening sockets in a worker.
CHILD_LOG_FD = 3
FIRST_LISTEN_FD = 4

# What the worker interpreter runs first. Twisted reads systemd's
# LISTEN_FDS and LISTEN_PID (which must name the process that reads them)
# once, when twisted.internet.endpoints is imported, and removes them from
# the parent's environment; LISTEN_FDNAMES stays. The worker claims as
# many sockets as there are names before that import, so that systemd:
# ports parse as they did in the parent (the worker then listens on the
# descriptors the parent passed, never on systemd's numbers).
_LAUNCH = (
    "import os, sys; e = os.environ; 'LISTEN_FDNAMES' in e and e.update("
    "LISTEN_FDS=str(len(e['LISTEN_FDNAMES'].split(':'))), "
    "LISTEN_PID=str(os.getpid())); "
    "from twisted_cgiserve._service.workers import main; sys.exit(main(sys.argv[1:]))"
)


def _cpuCount() -> int:
    """
    The CPUs this process may run on (its affinity, as C{taskset} or a
    container's cpuset limits it), at least 1.
    """
    count = getattr(os, "process_cpu_count", None)
    if count is not None:
        return int(count() or 1)
    try:
        return len(os.sched_getaffinity(0)) or 1
    except (AttributeError, OSError):
        return os.cpu_count() or 1


# More processes than any machine this serves has cores for, yet few
# enough that a typo (--workers 1000000) is an error, not a fork bomb.
_MOST_WORKERS = 1024


def parseWorkerCount(value: str, cpus: Callable[[], int] = _cpuCount) -> int:
    """
    C{--workers}: a whole number from 1, or C{auto} for one per CPU.

    @raise ValueError: With a message fit for the command line.
    """
    if value.strip().lower() == "auto":
        return cpus()
    if not value.strip().isdigit() or int(value) < 1:
        raise ValueError(f"--workers {value!r} is not a whole number from 1 or 'auto'")
    count = int(value)
    if count > _MOST_WORKERS:
        raise ValueError(f"--workers {value!r}: at most {_MOST_WORKERS}")
    return count


# The first word of a worker's arguments when the parent is twistd's
# cgiserve (otherwise the program name of python -m twisted_cgiserve).
_TWISTD = "twistd-cgiserve"


@dataclass(frozen=True)
class WorkerSetup:
    """
    What the parent told a worker.

    @ivar index: The worker's number, from 1.
    @ivar listenFDs: The listening descriptors, one per C{--port}, in order.
    @ivar logFD: Where log events go.
    """

    index: int
    listenFDs: tuple[int, ...]
    logFD: int

    @classmethod
    def fromEnviron(
        cls, environ: Mapping[str, str] | None = None
    ) -> WorkerSetup | None:
        """
        The setup the environment describes, or L{None} outside a worker.

        @raise ValueError: The variables are malformed (never from a parent
            of this version).
        """
        environ = os.environ if environ is None else environ
        if _INDEX not in environ:
            return None
        try:
            fds = tuple(int(fd) for fd in environ[_FDS].split(",") if fd)
            return cls(int(environ[_INDEX]), fds, int(environ[_LOG]))
        except (KeyError, ValueError):
            raise ValueError(
                f"malformed worker environment: {_INDEX}, {_FDS}, {_LOG}"
            ) from None

    def listenFD(self, position: int, count: int) -> int:
        """
        The descriptor for the C{position}th of C{count} ports.

        @raise ValueError: The parent passed another number of sockets
            (it was started with other options).
        """
        if len(self.listenFDs) != count:
            raise ValueError(
                f"worker {self.index} was given {len(self.listenFDs)} "
                f"listening sockets for {count} ports"
            )
        return self.listenFDs[position]


def workerArguments(words: Sequence[str], front: str | None) -> list[str]:
    """
    The command line of a worker: this interpreter, the launcher, and the
    words the server's options were parsed from.

    @param front: The program name of C{python -m twisted_cgiserve}'s
        http.server-like options, or L{None} for C{twistd cgiserve}'s.
    """
    return [sys.executable, "-c", _LAUNCH, front or _TWISTD, *words]


def workerEnvironment(
    base: Mapping[str, str],
    index: int,
    listenCount: int,
    notifySocket: str | None,
    extra: Mapping[str, str] | None = None,
) -> dict[str, str]:
    """
    The environment of worker C{index}: the parent's, less what belongs to
    the parent alone (systemd's watchdog and notification socket), plus
    the contract and C{extra} (server-wide services' addresses).
    """
    env = {
        k: v
        for k, v in base.items()
        if k not in ("NOTIFY_SOCKET", "WATCHDOG_USEC", "WATCHDOG_PID")
    }
    env[_INDEX] = str(index)
    env[_FDS] = ",".join(str(FIRST_LISTEN_FD + i) for i in range(listenCount))
    env[_LOG] = str(CHILD_LOG_FD)
    if notifySocket is not None:
        env["NOTIFY_SOCKET"] = notifySocket
    env.update(extra or {})
    return env


@implementer(ILogObserver)
class _JSONLines:
    """
    Every event as one line of JSON, written with one C{write} so that the
    parent never reads half an event from one worker glued to another's.
    """

    def __init__(self, fd: int) -> None:
        self._fd = fd

    def __call__(self, event: LogEvent) -> None:
        data = memoryview((eventAsJSON(event) + "\n").encode("utf-8", "replace"))
        try:
            while data:
                data = data[os.write(self._fd, data) :]
        except OSError:
            # The parent is gone: watchParent stops this worker.
            pass


def workerLogObserver(fd: int) -> ILogObserver:
    """
    The log observer of a worker: events to the parent, as JSON lines.
    """
    return _JSONLines(fd)


@implementer(IReadDescriptor)
class _ParentWatch:
    """
    The read end of a pipe the parent holds open while it lives.
    """

    def __init__(self, fd: int, gone: Callable[[], object]) -> None:
        self._fd = fd
        self._gone = gone

    def fileno(self) -> int:
        return self._fd

    def logPrefix(self) -> str:
        return "parent"

    def doRead(self) -> Failure | None:
        try:
            data = os.read(self._fd, 4096)
        except BlockingIOError:
            return None
        except OSError:
            return cast(Failure, _main.CONNECTION_LOST)
        return None if data else cast(Failure, _main.CONNECTION_DONE)

    def connectionLost(self, reason: Failure) -> None:
        self._gone()


def watchParent(reactor: Any, fd: int = 0) -> None:
    """
    Stop C{reactor} (gracefully: the services drain as on C{SIGTERM}) once
    the parent's end of C{fd} closes: the parent died (a SIGKILL leaves it
    no chance to stop its workers), and a worker must not serve on alone.
    """

    def gone() -> None:
        if reactor.running:
            _log.warn("The supervising parent is gone; stopping.")
            with contextlib.suppress(ReactorNotRunning):
                reactor.stop()

    os.set_blocking(fd, False)
    reactor.addReader(_ParentWatch(fd, gone))


def _findMaker() -> Any:
    from twisted.application.service import IServiceMaker  # noqa: PLC0415
    from twisted.plugin import getPlugins  # noqa: PLC0415

    for maker in getPlugins(IServiceMaker):
        if maker.tapname == "cgiserve":
            return maker
    raise SystemExit("twisted-cgiserve: twistd's cgiserve plugin is not installed")


def main(argv: Sequence[str]) -> int:
    """
    Run one worker: C{argv} is the front's program name (empty for C{twistd
    cgiserve}) and the words of the server's options.
    """
    from twisted.scripts.twistd import runApp  # noqa: PLC0415

    from twisted_cgiserve._service.cli import frontOptions  # noqa: PLC0415
    from twisted_cgiserve._service.twistdoptions import twistdOptions  # noqa: PLC0415

    setup = WorkerSetup.fromEnviron()
    if setup is None:
        raise SystemExit("twisted-cgiserve: not started as a worker")
    front, *words = argv
    maker = _findMaker()
    options = maker.options if front == _TWISTD else frontOptions(maker.options, front)
    config = twistdOptions(maker, options)
    config.parseOptions(["--nodaemon", "--pidfile=", maker.tapname, *words])
    config["logger"] = lambda: workerLogObserver(setup.logFD)
    runApp(config)
    return 0
