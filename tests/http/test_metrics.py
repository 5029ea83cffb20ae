"""
Tests for L{twisted_cgiserve._http.metrics}: the metric families, their
names and labels as Prometheus users expect them, and what a real
L{CGIServeSite} counts into them (requests, bytes, durations, connections
by protocol, header and send deadlines), in simulated time.
"""

from __future__ import annotations

from collections.abc import Iterator
from pathlib import Path
from typing import Any

import h2.config
import h2.connection
import pytest
from prometheus_client import generate_latest
from prometheus_client.parser import text_string_to_metric_families
from twisted.internet.address import IPv4Address
from twisted.internet.error import ConnectionDone
from twisted.internet.testing import MemoryReactorClock
from twisted.python.failure import Failure
from twisted.web.resource import Resource
from twisted.web.server import NOT_DONE_YET, Request

from tests.support.fakes import RecordingProducer, SocketTransport
from twisted_cgiserve._http import channel
from twisted_cgiserve._http.errors import errorPage
from twisted_cgiserve._http.metrics import (
    DURATION_BUCKETS,
    ServerMetrics,
    multiprocessDirectory,
    processEnded,
)
from twisted_cgiserve._http.response import ResponseSender
from twisted_cgiserve._http.site import CGIServeSite

CLIENT = IPv4Address("TCP", "192.0.2.5", 33333)


class _Time:
    """
    A monotonic clock the test moves.
    """

    def __init__(self) -> None:
        self.now = 100.0

    def __call__(self) -> float:
        return self.now


def _value(metrics: ServerMetrics, name: str, **labels: str) -> float:
    value = metrics.registry.get_sample_value(name, labels)
    assert value is not None, (name, labels)
    return value


# The families


def test_familiesAsPrometheusExpects() -> None:
    """
    Every family has the C{cgiserve_} prefix, counters end in C{_total},
    durations and sizes are in seconds and bytes, and the text the registry
    writes is what the library's own parser reads.
    """
    metrics = ServerMetrics()
    text = generate_latest(metrics.registry).decode("utf-8")
    families = {f.name: f for f in text_string_to_metric_families(text)}
    assert {name: f.type for name, f in families.items()} == {
        "cgiserve_http_requests": "counter",
        "cgiserve_http_response_bytes": "counter",
        "cgiserve_http_request_duration_seconds": "histogram",
        "cgiserve_http_connections": "gauge",
        "cgiserve_http_header_timeouts": "counter",
        "cgiserve_http_send_timeouts": "counter",
        "cgiserve_cgi_runs": "counter",
        "cgiserve_cgi_failures": "counter",
        "cgiserve_cgi_timeouts": "counter",
        "cgiserve_cgi_refusals": "counter",
        "cgiserve_cgi_scripts_running": "gauge",
        "cgiserve_tls_reloads": "counter",
    }
    assert "cgiserve_http_requests_total" in text
    assert all(f.documentation for f in families.values())


def test_labelledSeriesExistFromTheStart() -> None:
    """
    The connections of both protocols and both TLS reload results are
    there, at 0, before anything happened.
    """
    metrics = ServerMetrics()
    assert _value(metrics, "cgiserve_http_connections", protocol="http/1.1") == 0
    assert _value(metrics, "cgiserve_http_connections", protocol="h2") == 0
    assert _value(metrics, "cgiserve_tls_reloads_total", result="ok") == 0
    assert _value(metrics, "cgiserve_tls_reloads_total", result="failed") == 0


def test_instancesAreIndependent() -> None:
    """
    Each L{ServerMetrics} has its own registry: two sites (or two tests)
    in one process do not clash over the names.
    """
    first, second = ServerMetrics(), ServerMetrics()
    first.cgiRefused()
    assert _value(first, "cgiserve_cgi_refusals_total") == 1
    assert _value(second, "cgiserve_cgi_refusals_total") == 0


def test_requestLoggedCountsCodeMethodBytesDuration() -> None:
    """
    A logged request is counted by its status and method, its body bytes
    are added, and its duration is observed from its start.
    """
    time = _Time()
    metrics = ServerMetrics(now=time)
    request = object()
    metrics.requestStarted(request)
    time.now += 0.3
    metrics.requestLogged(request, b"GET", 200, 1234)
    assert _value(metrics, "cgiserve_http_requests_total", code="200", method="GET")
    assert _value(metrics, "cgiserve_http_response_bytes_total") == 1234
    assert _value(metrics, "cgiserve_http_request_duration_seconds_count") == 1
    assert _value(metrics, "cgiserve_http_request_duration_seconds_sum") == (
        pytest.approx(0.3)
    )
    assert (
        _value(metrics, "cgiserve_http_request_duration_seconds_bucket", le="0.25") == 0
    )
    assert (
        _value(metrics, "cgiserve_http_request_duration_seconds_bucket", le="0.5") == 1
    )


def test_labelValuesStayFew() -> None:
    """
    A method nobody registered counts as C{other}, and so does a status
    outside 100-599: a client cannot add series at will.
    """
    metrics = ServerMetrics()
    for method in (b"BREW", b"get", b"X" * 100):
        metrics.requestLogged(object(), method, 200, 0)
    metrics.requestLogged(object(), b"POST", 999, 0)
    assert (
        _value(metrics, "cgiserve_http_requests_total", code="200", method="other") == 3
    )
    assert (
        _value(metrics, "cgiserve_http_requests_total", code="other", method="POST")
        == 1
    )


def test_durationNeverNegative() -> None:
    """
    A request counted without a start (never seen starting) has no
    duration; a clock that went back counts 0, not a negative time.
    """
    time = _Time()
    metrics = ServerMetrics(now=time)
    metrics.requestLogged(object(), b"GET", 404, 0)
    assert _value(metrics, "cgiserve_http_request_duration_seconds_count") == 0
    request = object()
    metrics.requestStarted(request)
    time.now -= 5
    metrics.requestLogged(request, b"GET", 404, 0)
    assert _value(metrics, "cgiserve_http_request_duration_seconds_sum") == 0
    assert _value(metrics, "cgiserve_http_response_bytes_total") == 0


def test_forgottenRequestsAreNotKept() -> None:
    """
    A request whose client left before its response is dropped, so the
    starts kept do not grow.
    """
    metrics = ServerMetrics()
    request = object()
    metrics.requestStarted(request)
    metrics.requestForgotten(request)
    metrics.requestForgotten(request)
    assert metrics._started == {}


def test_bucketsInSecondsUpToAMinute() -> None:
    assert list(DURATION_BUCKETS) == sorted(DURATION_BUCKETS)
    assert DURATION_BUCKETS[-1] == 60.0


def test_cgiAndTLSCounters() -> None:
    """
    What the CGI gateway and the TLS reload count.
    """
    metrics = ServerMetrics()
    metrics.cgiRunning()
    metrics.cgiRunning()
    metrics.cgiStarted()
    metrics.cgiEnded()
    metrics.cgiFailed()
    metrics.cgiTimedOut()
    metrics.cgiRefused()
    metrics.tlsReloaded(True)
    metrics.tlsReloaded(False)
    metrics.tlsReloaded(False)
    assert _value(metrics, "cgiserve_cgi_scripts_running") == 1
    assert _value(metrics, "cgiserve_cgi_runs_total") == 1
    assert _value(metrics, "cgiserve_cgi_failures_total") == 1
    assert _value(metrics, "cgiserve_cgi_timeouts_total") == 1
    assert _value(metrics, "cgiserve_cgi_refusals_total") == 1
    assert _value(metrics, "cgiserve_tls_reloads_total", result="ok") == 1
    assert _value(metrics, "cgiserve_tls_reloads_total", result="failed") == 2


# The multiprocess mode


def test_singleProcessWithoutTheVariable() -> None:
    """
    The test process imported the library without
    C{PROMETHEUS_MULTIPROC_DIR}: figures are in memory, whatever the
    environment says now.
    """
    assert multiprocessDirectory() is None


def test_multiprocessDirectoryWhenTheLibrarySaysSo(
    monkeypatch: pytest.MonkeyPatch, tmp_path: Path
) -> None:
    """
    Once the library's values are the multiprocess ones, the directory is
    the variable's, and a scrape reads the files there (its collector),
    not the families of this process.
    """
    from prometheus_client import values  # noqa: PLC0415

    monkeypatch.setenv("PROMETHEUS_MULTIPROC_DIR", str(tmp_path))
    monkeypatch.setattr(values, "ValueClass", values.MultiProcessValue(lambda: 4242))
    assert multiprocessDirectory() == str(tmp_path)
    metrics = ServerMetrics()
    metrics.cgiRefused()
    metrics.connectionOpened("h2")
    assert any(p.name.startswith("counter_4242") for p in tmp_path.iterdir())
    assert _value(metrics, "cgiserve_cgi_refusals_total") == 1
    assert _value(metrics, "cgiserve_http_connections", protocol="h2") == 1
    # The dead process's live gauges go; its counters stay.
    processEnded(str(tmp_path), 4242)
    assert not list(tmp_path.glob("gauge_livesum_4242.db"))
    assert _value(metrics, "cgiserve_cgi_refusals_total") == 1
    assert metrics.registry.get_sample_value(
        "cgiserve_http_connections", {"protocol": "h2"}
    ) in (None, 0)


# What a real site counts


class _Pages(Resource):
    """
    C{/stream}: a body behind a L{ResponseSender}, left open; C{/missing}:
    404; anything else: C{ok}.
    """

    isLeaf = True

    def __init__(self) -> None:
        super().__init__()
        self.senders: list[ResponseSender] = []

    def render(self, request: Request) -> bytes | int:  # type: ignore[override]
        if request.path == b"/stream":
            sender = ResponseSender(request, RecordingProducer())
            sender.start()
            request.write(b"0123456789")
            self.senders.append(sender)
            return NOT_DONE_YET
        if request.path == b"/missing":
            request.setResponseCode(404)
            return b"not here"
        return b"ok"


class _Served:
    def __init__(self, **kw: Any) -> None:
        self.clock = MemoryReactorClock()
        self.time = _Time()
        self.metrics = ServerMetrics(now=self.time)
        self.pages = _Pages()
        self.site = CGIServeSite(
            self.pages, reactor=self.clock, metrics=self.metrics, **kw
        )
        self.open: list[Any] = []

    def connect(self, transport: SocketTransport | None = None) -> Any:
        connection: Any = self.site.buildProtocol(CLIENT)
        connection.makeConnection(transport or SocketTransport(CLIENT))
        self.open.append(connection)
        return connection

    def value(self, name: str, **labels: str) -> float:
        return _value(self.metrics, name, **labels)


@pytest.fixture
def served() -> Iterator[_Served]:
    served = _Served(sendTimeout=5)
    yield served
    for connection in served.open:
        if connection._channel.transport is not None:
            connection.connectionLost(Failure(ConnectionDone()))


def _get(path: bytes) -> bytes:
    return b"GET %s HTTP/1.1\r\nHost: example.com\r\n\r\n" % (path,)


def test_siteCountsEveryLoggedRequest(served: _Served) -> None:
    """
    Each request the access log records is counted with its status, its
    body bytes and its duration (from the end of its head to its end).
    """
    connection = served.connect()
    connection.dataReceived(_get(b"/") + _get(b"/missing"))
    assert served.value("cgiserve_http_requests_total", code="200", method="GET") == 1
    assert served.value("cgiserve_http_requests_total", code="404", method="GET") == 1
    assert served.value("cgiserve_http_response_bytes_total") == len(b"ok") + len(
        b"not here"
    )
    assert served.value("cgiserve_http_request_duration_seconds_count") == 2
    assert served.metrics._started == {}


def test_durationFromHeadToEnd(served: _Served) -> None:
    """
    A response that takes 2 s is observed as 2 s.
    """
    connection = served.connect()
    connection.dataReceived(_get(b"/stream"))
    served.time.now += 2
    served.pages.senders[0].finish()
    assert served.value("cgiserve_http_request_duration_seconds_sum") == 2
    assert served.value("cgiserve_http_response_bytes_total") == 10


def test_lostRequestIsNotCounted(served: _Served) -> None:
    """
    A request whose client left before its response is not logged, not
    counted, and not kept.
    """
    connection = served.connect()
    connection.dataReceived(_get(b"/stream"))
    connection.connectionLost(Failure(ConnectionDone()))
    assert served.value("cgiserve_http_request_duration_seconds_count") == 0
    assert served.metrics._started == {}


def test_connectionsByProtocol(served: _Served) -> None:
    """
    Open connections are counted while open, HTTP/1.x as C{http/1.1}, and
    released when they end.
    """
    first = served.connect()
    second = served.connect()
    assert served.value("cgiserve_http_connections", protocol="http/1.1") == 2
    first.connectionLost(Failure(ConnectionDone()))
    assert served.value("cgiserve_http_connections", protocol="http/1.1") == 1
    second.close()
    second.connectionLost(Failure(ConnectionDone()))
    assert served.value("cgiserve_http_connections", protocol="http/1.1") == 0


class _H2Transport(SocketTransport):
    negotiatedProtocol = b"h2"


def test_connectionSwitchedToHTTP2(served: _Served) -> None:
    """
    A connection that TLS switched to HTTP/2 counts as C{h2} from its
    first bytes on, and no longer as C{http/1.1}; it is released as C{h2}.
    """
    connection = served.connect(_H2Transport(CLIENT))
    assert served.value("cgiserve_http_connections", protocol="http/1.1") == 1
    client = h2.connection.H2Connection(h2.config.H2Configuration(client_side=True))
    client.initiate_connection()
    connection.dataReceived(client.data_to_send())
    assert connection.protocolName == "h2"
    assert served.value("cgiserve_http_connections", protocol="http/1.1") == 0
    assert served.value("cgiserve_http_connections", protocol="h2") == 1
    connection.connectionLost(Failure(ConnectionDone()))
    assert served.value("cgiserve_http_connections", protocol="h2") == 0


def test_headerTimeoutCounted(served: _Served) -> None:
    """
    A connection cut (408) for its overdue head is counted; one on time is
    not.
    """
    late = served.connect()
    late.dataReceived(b"GET / HTTP/1.1\r\n")
    started = late._channel.headerStarted
    late.checkHeaderDeadline(started - 1)
    assert served.value("cgiserve_http_header_timeouts_total") == 0
    late.checkHeaderDeadline(started + 1)
    assert served.value("cgiserve_http_header_timeouts_total") == 1
    assert b"408" in late._channel.transport.value()


def test_sendTimeoutCounted(served: _Served) -> None:
    """
    A response cut because the client read nothing for the send timeout
    is counted.
    """
    connection = served.connect()
    connection.dataReceived(_get(b"/stream"))
    sender = served.pages.senders[0]
    sender.pauseProducing()
    served.clock.advance(4.9)
    assert served.value("cgiserve_http_send_timeouts_total") == 0
    served.clock.advance(0.2)
    assert served.value("cgiserve_http_send_timeouts_total") == 1


def test_siteWithoutMetricsCountsNothing() -> None:
    """
    Without metrics (the default) the site serves as before.
    """
    site = CGIServeSite(_Pages(), reactor=MemoryReactorClock())
    assert site.metrics is None
    connection: Any = site.buildProtocol(CLIENT)
    transport = SocketTransport(CLIENT)
    connection.makeConnection(transport)
    connection.dataReceived(_get(b"/"))
    assert b"200 OK" in transport.value()
    connection.connectionLost(Failure(ConnectionDone()))


def test_refusalsCounted(served: _Served, monkeypatch: pytest.MonkeyPatch) -> None:
    """
    A request the connection refuses itself is counted as a request, with
    its code and method as far as they are known, its error page's bytes,
    and its duration from its first bytes.
    """
    now = [50.0]
    monkeypatch.setattr(channel, "monotonic", lambda: now[0])
    late = served.connect()
    late.dataReceived(b"POST / HTTP/1.1\r\n")
    now[0] += 3
    late.checkHeaderDeadline(now[0] - 1)
    served.connect().dataReceived(b"GET /" + b"a" * 20000)
    assert served.value("cgiserve_http_requests_total", code="408", method="POST") == 1
    assert served.value("cgiserve_http_requests_total", code="414", method="other") == 1
    assert served.value("cgiserve_http_request_duration_seconds_count") == 2
    assert served.value("cgiserve_http_request_duration_seconds_sum") == 3
    assert served.value("cgiserve_http_response_bytes_total") == sum(
        len(errorPage(code)[1]) for code in (408, 414)
    )
    assert served.metrics._started == {}


def test_refusalsAtAndAfterTheHead() -> None:
    """
    A request refused at the end of its head counts from then, as every
    request does; one refused for its body, from the end of its head.
    """
    served = _Served(maxBodySize=10)
    try:
        served.connect().dataReceived(
            b"POST / HTTP/1.1\r\nHost: a\r\nContent-Length: 11\r\n\r\n"
        )
        assert served.value("cgiserve_http_request_duration_seconds_count") == 1
        assert served.value("cgiserve_http_request_duration_seconds_sum") == 0
        growing = served.connect()
        growing.dataReceived(
            b"PUT / HTTP/1.1\r\nHost: a\r\nTransfer-Encoding: chunked\r\n\r\n"
            b"8\r\n12345678\r\n"
        )
        served.time.now += 2
        growing.dataReceived(b"8\r\n12345678\r\n")
        assert (
            served.value("cgiserve_http_requests_total", code="413", method="PUT") == 1
        )
        assert served.value("cgiserve_http_request_duration_seconds_sum") == 2
        assert served.metrics._started == {}
    finally:
        for connection in served.open:
            if connection._channel.transport is not None:
                connection.connectionLost(Failure(ConnectionDone()))
