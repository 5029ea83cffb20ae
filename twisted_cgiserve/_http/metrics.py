# -*- test-case-name: tests.http.test_metrics -*-
"""
The server's Prometheus metric families (C{--metrics}), and the one object
through which the HTTP and CGI layers count into them.

Only this module and L{twisted_cgiserve._http.metricspage} import
C{prometheus_client}, and only when C{--metrics} is given: the layers that
count hold a L{ServerMetrics} or L{None}, and with L{None} (metrics off)
the whole cost is one attribute test per event.

With C{--workers N}, every worker writes its figures to files in a
directory the supervising parent made (the library's multiprocess mode,
chosen by C{PROMETHEUS_MULTIPROC_DIR} in the worker's environment before
the library is first imported), and a scrape, answered by whichever worker
accepts it, reads them all: the figures are the server's, not the one
worker's. Gauges then add up the live workers' values (C{livesum}): a dead
worker's open connections and running scripts are gone with it.
"""

from __future__ import annotations

import os
from collections.abc import Callable
from time import monotonic
from typing import Any

from prometheus_client import (
    CollectorRegistry,
    Counter,
    Gauge,
    Histogram,
    disable_created_metrics,
)
from prometheus_client import values as _values
from prometheus_client.multiprocess import MultiProcessCollector, mark_process_dead

__all__ = [
    "DURATION_BUCKETS",
    "HTTP1",
    "HTTP2",
    "ServerMetrics",
    "multiprocessDirectory",
    "processEnded",
]

# The protocol label of open connections: ALPN's names (HTTP/1.0 counts as
# http/1.1, as one channel speaks both).
HTTP1 = "http/1.1"
HTTP2 = "h2"

# Request durations, in seconds: a static file takes milliseconds, a CGI
# script up to --cgi-timeout (60 s by default) of silence, a slow download
# longer; anything over a minute lands in +Inf.
DURATION_BUCKETS = (
    0.001,
    0.005,
    0.01,
    0.025,
    0.05,
    0.1,
    0.25,
    0.5,
    1.0,
    2.5,
    5.0,
    10.0,
    30.0,
    60.0,
)

# The methods counted by name; any other (a client may send any token)
# is "other", so that the label's values stay few.
_METHODS = {
    name.encode("ascii"): name
    for name in (
        "GET",
        "HEAD",
        "POST",
        "PUT",
        "DELETE",
        "OPTIONS",
        "PATCH",
        "CONNECT",
        "TRACE",
    )
}

_ENVIRONMENT_VARIABLE = "PROMETHEUS_MULTIPROC_DIR"


def multiprocessDirectory() -> str | None:
    """
    The directory this process writes its figures to, if the library is in
    multiprocess mode (it was imported with C{PROMETHEUS_MULTIPROC_DIR}
    set), else L{None}.
    """
    if _values.ValueClass is _values.MutexValue:
        return None
    return os.environ.get(_ENVIRONMENT_VARIABLE)


def processEnded(directory: str, pid: int) -> None:
    """
    Process C{pid}, which wrote figures to C{directory}, has ended: its
    live gauges (open connections, running scripts) no longer count. Its
    counters and histograms stay, as what it served still happened.
    """
    mark_process_dead(pid, directory)


def _methodLabel(method: bytes) -> str:
    return _METHODS.get(method, "other")


def _codeLabel(code: object) -> str:
    if isinstance(code, int) and 100 <= code <= 599:
        return str(code)
    return "other"


class ServerMetrics:
    """
    Every metric of the server, and what counts into them.

    @ivar registry: What a scrape reads: the families of this process, or
        with the multiprocess mode every process's figures.
    """

    def __init__(self, now: Callable[[], float] = monotonic) -> None:
        """
        @param now: Seconds on a clock that never goes back (the request
            durations' clock).
        """
        # The library's *_created series (one more per counter and
        # histogram, which the text format shows as gauges of their own)
        # say when a series appeared; this server's restart time is in its
        # log. Off for the whole process, which is the server's.
        disable_created_metrics()
        self._now = now
        self._started: dict[object, float] = {}
        # The series of each (method, status) seen, found without the
        # library's label lookup (and its lock) on every request: at most
        # ten methods by 501 statuses.
        self._requestSeries: dict[tuple[str, object], Any] = {}
        self.registry = CollectorRegistry(auto_describe=True)
        directory = multiprocessDirectory()
        # In multiprocess mode the families write to files and are read
        # back by the collector; registered as well, they would be counted
        # twice.
        families: CollectorRegistry | None = self.registry
        if directory is not None:
            MultiProcessCollector(self.registry, path=directory)
            families = None
        counter: Any = lambda name, doc, *labels: Counter(  # noqa: E731
            name, doc, labels, registry=families
        )
        gauge: Any = lambda name, doc, *labels: Gauge(  # noqa: E731
            name, doc, labels, registry=families, multiprocess_mode="livesum"
        )
        self._requests = counter(
            "cgiserve_http_requests_total",
            "HTTP requests answered, by status code and method.",
            "code",
            "method",
        )
        self._responseBytes = counter(
            "cgiserve_http_response_bytes_total",
            "Response body bytes sent (sendfile included; headers not).",
        )
        self._duration = Histogram(
            "cgiserve_http_request_duration_seconds",
            "Time from a request's complete head to the end of its response.",
            buckets=DURATION_BUCKETS,
            registry=families,
        )
        self._connections = gauge(
            "cgiserve_http_connections",
            "Client connections open, by protocol (http/1.1 or h2).",
            "protocol",
        )
        self._headerTimeouts = counter(
            "cgiserve_http_header_timeouts_total",
            "Connections cut (408) for sending a request's head too slowly "
            "(--header-timeout).",
        )
        self._sendTimeouts = counter(
            "cgiserve_http_send_timeouts_total",
            "Responses cut because the client read nothing for --send-timeout.",
        )
        self._cgiRuns = counter("cgiserve_cgi_runs_total", "CGI scripts started.")
        self._cgiFailures = counter(
            "cgiserve_cgi_failures_total",
            "CGI requests answered 502: the script could not be started, "
            "wrote no valid CGI head, or died before its body.",
        )
        self._cgiTimeouts = counter(
            "cgiserve_cgi_timeouts_total",
            "CGI scripts ended for writing nothing for --cgi-timeout "
            "(504 when nothing was sent yet, else the response cut).",
        )
        self._cgiRefusals = counter(
            "cgiserve_cgi_refusals_total",
            "CGI requests refused (503) by the process cap (--cgi-max-processes).",
        )
        self._cgiRunning = gauge(
            "cgiserve_cgi_scripts_running",
            "CGI scripts running, or whose processes have not all ended yet "
            "(what --cgi-max-processes counts).",
        )
        self._tlsReloads = counter(
            "cgiserve_tls_reloads_total",
            "TLS certificate reloads (SIGHUP), by result (ok or failed).",
            "result",
        )
        # Every labelled series exists from the start, at 0: a rate over a
        # series that appears with its first event misses that event.
        self._connectionSeries = {
            protocol: self._connections.labels(protocol) for protocol in (HTTP1, HTTP2)
        }
        for result in ("ok", "failed"):
            self._tlsReloads.labels(result)

    # HTTP

    def requestStarted(self, request: object, ago: float = 0.0) -> None:
        """
        C{request}'s head is complete: its duration counts from now, or
        from C{ago} seconds before (a request refused as its head arrived
        counts from its first bytes). A request already started keeps its
        start (its body refused).
        """
        self._started.setdefault(request, self._now() - ago)

    def requestForgotten(self, request: object) -> None:
        """
        C{request} ended without a response (its client went away): it is
        not counted.
        """
        self._started.pop(request, None)

    def requestLogged(
        self, request: object, method: bytes, code: object, sentLength: int
    ) -> None:
        """
        C{request}'s response is over (what the access log records): count
        it, its body's bytes and its duration.
        """
        started = self._started.pop(request, None)
        label = _methodLabel(method)
        series = self._requestSeries.get((label, code))
        if series is None:
            series = self._requests.labels(_codeLabel(code), label)
            if isinstance(code, int):
                self._requestSeries[(label, code)] = series
        series.inc()
        if sentLength:
            self._responseBytes.inc(sentLength)
        if started is not None:
            self._duration.observe(max(0.0, self._now() - started))

    def connectionOpened(self, protocol: str = HTTP1) -> None:
        """
        A client connection was accepted (speaking C{protocol}).
        """
        self._connectionSeries[protocol].inc()

    def connectionSwitched(self, old: str, new: str) -> None:
        """
        An open connection now speaks C{new} (TLS negotiated C{h2}).
        """
        self._connectionSeries[old].dec()
        self._connectionSeries[new].inc()

    def connectionClosed(self, protocol: str) -> None:
        """
        A client connection speaking C{protocol} is closed.
        """
        self._connectionSeries[protocol].dec()

    def headerTimedOut(self) -> None:
        """
        A connection was cut for the header deadline.
        """
        self._headerTimeouts.inc()

    def sendTimedOut(self) -> None:
        """
        A response was cut for the send deadline.
        """
        self._sendTimeouts.inc()

    # CGI

    def cgiRunning(self) -> None:
        """
        A script was admitted and handed to be started: it counts as
        running until L{cgiEnded}.
        """
        self._cgiRunning.inc()

    def cgiStarted(self) -> None:
        """
        A script's process was started.
        """
        self._cgiRuns.inc()

    def cgiEnded(self) -> None:
        """
        A started script, and all of its process group, has ended.
        """
        self._cgiRunning.dec()

    def cgiFailed(self) -> None:
        """
        A CGI request was answered 502 by the server.
        """
        self._cgiFailures.inc()

    def cgiTimedOut(self) -> None:
        """
        A running script was ended for its silence.
        """
        self._cgiTimeouts.inc()

    def cgiRefused(self) -> None:
        """
        A CGI request was refused (503) by the process cap.
        """
        self._cgiRefusals.inc()

    # TLS

    def tlsReloaded(self, ok: bool) -> None:
        """
        The TLS files were read again (C{ok}) or could not be (the previous
        ones still serve).
        """
        self._tlsReloads.labels("ok" if ok else "failed").inc()
