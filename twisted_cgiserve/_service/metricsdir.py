# -*- test-case-name: tests.service.test_metricsdir -*-
"""
Where the workers of C{--workers N} write their metrics (C{--metrics}), so
that a scrape answered by any one of them reports the whole server.

prometheus_client's multiprocess mode keeps each process's figures in
memory-mapped files in one directory, named by the library's
C{PROMETHEUS_MULTIPROC_DIR}, which must be set before a process first
imports the library. The supervising parent makes the directory (private:
mode 0700, under C{$TMPDIR}, so no other user reads or forges the
figures), hands it to each worker in its environment (the worker contract
of L{twisted_cgiserve._service.workers}, which sets it from the worker's
start), tells the library when a worker has died (its live gauges, open
connections and running scripts, stop counting; its counters stay, as what
it served still happened), and removes the directory when it stops.

The directory is made when the service starts, after twistd has dropped
privileges, so that the parent, which removes it, and its workers, which
write to it, all own it. A parent killed with SIGKILL leaves it behind
(C{cgiserve-metrics-*} in the temporary directory; systemd's C{PrivateTmp}
removes it with the service).
"""

from __future__ import annotations

import shutil
import tempfile
from collections.abc import Callable

from twisted.application.service import MultiService
from twisted.internet.defer import Deferred
from twisted.logger import Logger

__all__ = ["ENVIRONMENT_VARIABLE", "MetricsDirectory"]

# The library's own name for it.
ENVIRONMENT_VARIABLE = "PROMETHEUS_MULTIPROC_DIR"

_log = Logger(namespace="cgiserve.metrics")


def _processEnded(directory: str, pid: int) -> None:
    # Imported here: the parent imports the library only once a worker
    # has ended, and never counts into it.
    from twisted_cgiserve._http.metrics import processEnded  # noqa: PLC0415

    processEnded(directory, pid)


class MetricsDirectory(MultiService):
    """
    The workers' shared metrics directory, for as long as the server runs.

    The supervisor is its child: the directory is made before the workers
    start and removed only once the supervisor's stop is over, every worker
    drained and gone (a parent's C{stopService} does not wait for one
    sibling before the next).

    @ivar path: The directory, while the service runs.
    """

    def __init__(
        self,
        makeDirectory: Callable[[], str] | None = None,
        processEnded: Callable[[str, int], None] = _processEnded,
    ) -> None:
        """
        @param makeDirectory: Makes the private directory and returns its
            path (default: L{tempfile.mkdtemp}, mode 0700).
        @param processEnded: Tells the library that a process which wrote
            to the directory has died.
        """
        super().__init__()
        self._makeDirectory = makeDirectory or (
            lambda: tempfile.mkdtemp(prefix="cgiserve-metrics-")
        )
        self._processEnded = processEnded
        self.path: str | None = None

    def startService(self) -> None:
        self.path = self._makeDirectory()
        super().startService()

    def stopService(self) -> Deferred[None]:
        def remove(result: object) -> None:
            path, self.path = self.path, None
            if path is not None:
                shutil.rmtree(path, ignore_errors=True)

        stopped: Deferred[None] = super().stopService()
        return stopped.addBoth(remove)

    def environment(self) -> dict[str, str]:
        """
        What a worker's environment needs (see L{Supervisor}'s
        C{environment}).
        """
        if self.path is None:
            return {}
        return {ENVIRONMENT_VARIABLE: self.path}

    def workerEnded(self, pid: int | None) -> None:
        """
        The worker with process ID C{pid} has ended.
        """
        if self.path is None or pid is None:
            return
        try:
            self._processEnded(self.path, pid)
        except OSError as e:
            _log.warn(
                "Cannot remove the live metrics of worker PID {pid}: {error}",
                pid=pid,
                error=e.strerror or e,
            )
