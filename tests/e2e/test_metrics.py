"""
End to end: C{--metrics}, the real C{twistd cgiserve} scraped with curl and
read with prometheus_client's own parser, the figures moving as the tests
drive traffic (static files, 404s, CGI runs, 502, 504, 503 from the
process cap, connections), the page refused to clients outside the allowed
networks (a real client from 127.0.0.2), and C{--workers 2} reporting the
whole server whichever worker answers the scrape.
"""

from __future__ import annotations

import os
import shutil
import signal
import socket
import subprocess
import threading
from collections.abc import Iterator
from pathlib import Path

import pytest
from prometheus_client.parser import text_string_to_metric_families

from tests.support.certs import makeCertificate
from tests.support.server import (
    Server,
    makeDocroot,
    sharedServer,
    startServer,
    staysHealthy,
    waitFor,
)
from tests.support.shell import writeFile

pytestmark = pytest.mark.e2e

CURL = shutil.which("curl")

OK_SCRIPT = b"""#!/bin/sh
printf 'Content-Type: text/plain\\r\\n\\r\\nran\\n'
"""

# Not a CGI head: 502.
BAD_SCRIPT = b"""#!/bin/sh
echo 'this is not a header'
"""

# Silent past --cgi-timeout: 504.
SILENT_SCRIPT = b"""#!/bin/sh
exec sleep 30
"""

# Holds the one process --cgi-max-processes allows, until released.
HOLD_SCRIPT = b"""#!/bin/sh
touch "$STATE/holding"
while [ ! -e "$STATE/release" ]; do sleep 0.05; done
printf 'Content-Type: text/plain\\r\\n\\r\\nheld\\n'
"""

Samples = dict[tuple[str, frozenset[tuple[str, str]]], float]


def _curl(*args: str) -> subprocess.CompletedProcess[bytes]:
    assert CURL is not None
    return subprocess.run(
        [CURL, "-s", "--max-time", "10", *args],
        capture_output=True,
        timeout=20,
        check=False,
    )


def _get(server: Server, path: str, *args: str) -> tuple[int, bytes]:
    """
    The status and body of C{path}, from curl.
    """
    done = _curl("-w", "\n%{http_code}", *args, server.url(path))
    body, _, code = done.stdout.rpartition(b"\n")
    return int(code or 0), body


def scrape(server: Server, path: str = "/metrics") -> Samples:
    """
    Every sample of the server's metrics, as the library's parser reads
    them.
    """
    code, body = _get(server, path)
    assert code == 200, body
    samples: Samples = {}
    for family in text_string_to_metric_families(body.decode("utf-8")):
        for sample in family.samples:
            samples[(sample.name, frozenset(sample.labels.items()))] = sample.value
    return samples


def value(samples: Samples, name: str, **labels: str) -> float:
    return samples.get((name, frozenset(labels.items())), 0.0)


def onlyTheScrapesConnection(server: Server, timeout: float = 5.0) -> Samples | None:
    """
    The first scrape, within C{timeout} seconds, that counts one HTTP/1.1
    connection open, its own: the others have been seen closed.
    """
    found: Samples | None = waitFor(
        lambda: (
            (s := scrape(server))
            and value(s, "cgiserve_http_connections", protocol="http/1.1") == 1
            and s
        ),
        timeout,
    )
    return found or None


def _requests(samples: Samples, code: str) -> float:
    return value(samples, "cgiserve_http_requests_total", code=code, method="GET")


@pytest.fixture(scope="module")
def tree() -> Iterator[Path]:
    root = makeDocroot("cgiserve-metrics-")
    (root / "a.txt").write_bytes(b"0123456789")
    # A file of the page's name: the page wins.
    (root / "metrics").write_bytes(b"the file\n")
    state = root / "state"
    state.mkdir()
    state.chmod(0o1777)
    cgi = root / "cgi-bin"
    cgi.mkdir(mode=0o755)
    writeFile(cgi / "ok.sh", OK_SCRIPT)
    writeFile(cgi / "bad.sh", BAD_SCRIPT)
    writeFile(cgi / "silent.sh", SILENT_SCRIPT)
    writeFile(cgi / "hold.sh", HOLD_SCRIPT)
    yield root
    shutil.rmtree(root, ignore_errors=True)


@pytest.fixture(scope="module")
def shared(tree: Path) -> Iterator[Server]:
    if CURL is None:
        pytest.skip("curl is not installed")
    server = startServer(
        tree,
        [
            "--metrics",
            "/metrics",
            "--cgi-timeout",
            "1",
            "--cgi-max-processes",
            "1",
            "--cgi-set-env",
            f"STATE={tree / 'state'}",
        ],
    )
    with sharedServer(server):
        yield server


@pytest.fixture
def server(shared: Server) -> Iterator[Server]:
    with staysHealthy(shared):
        yield shared


def test_scrapeIsPrometheusText(server: Server) -> None:
    """
    curl from 127.0.0.1 gets Prometheus's text format, which the library's
    parser reads, with every family of the server (the requests' once a
    request was answered); HEAD gets the head.
    """
    assert _get(server, "/a.txt")[0] == 200
    done = _curl("-i", server.url("/metrics"))
    head, _, body = done.stdout.partition(b"\r\n\r\n")
    assert head.startswith(b"HTTP/1.1 200")
    assert b"content-type: text/plain; version=0.0.4" in head.lower()
    names = {f.name for f in text_string_to_metric_families(body.decode("utf-8"))}
    assert {
        "cgiserve_http_requests",
        "cgiserve_http_response_bytes",
        "cgiserve_http_request_duration_seconds",
        "cgiserve_http_connections",
        "cgiserve_http_header_timeouts",
        "cgiserve_http_send_timeouts",
        "cgiserve_cgi_runs",
        "cgiserve_cgi_failures",
        "cgiserve_cgi_timeouts",
        "cgiserve_cgi_refusals",
        "cgiserve_cgi_scripts_running",
        "cgiserve_tls_reloads",
    } <= names
    head = _curl("-I", server.url("/metrics")).stdout
    assert head.startswith(b"HTTP/1.1 200") and b"cgiserve_" not in head


def test_staticRequestsCounted(server: Server) -> None:
    """
    A file (200), a missing one (404): counted by status, their bytes
    added, their durations observed. (The scrape before counts too: it is
    logged once it has answered.)
    """
    before = scrape(server)
    assert _get(server, "/a.txt") == (200, b"0123456789")
    code, page = _get(server, "/missing.txt")
    assert code == 404
    after = scrape(server)
    assert _requests(after, "200") - _requests(before, "200") == 2
    assert _requests(after, "404") - _requests(before, "404") == 1
    sent = value(after, "cgiserve_http_response_bytes_total") - value(
        before, "cgiserve_http_response_bytes_total"
    )
    # The figures of the first scrape are its own body's bytes.
    assert sent > 10 + len(page)
    durations = "cgiserve_http_request_duration_seconds_count"
    assert value(after, durations) - value(before, durations) == 3


def test_cgiRunsFailuresTimeouts(server: Server) -> None:
    """
    A script that answers, one whose output is no CGI response (502), one
    silent past --cgi-timeout (504): runs, failures and timeouts move,
    and no script is left running.
    """
    before = scrape(server)
    assert _get(server, "/cgi-bin/ok.sh") == (200, b"ran\n")
    assert _get(server, "/cgi-bin/bad.sh")[0] == 502
    assert _get(server, "/cgi-bin/silent.sh")[0] == 504
    after = waitFor(
        lambda: (
            (s := scrape(server))
            and value(s, "cgiserve_cgi_scripts_running") == 0
            and s
        )
    )
    assert after, "a script is still counted as running"

    def moved(name: str) -> float:
        return value(after, name) - value(before, name)

    assert moved("cgiserve_cgi_runs_total") == 3
    assert moved("cgiserve_cgi_failures_total") == 1
    assert moved("cgiserve_cgi_timeouts_total") == 1
    assert _requests(after, "502") - _requests(before, "502") == 1
    assert _requests(after, "504") - _requests(before, "504") == 1


def test_connectionRefusalsCountedAndLogged(server: Server) -> None:
    """
    Requests the connection refuses before any resource sees them, a
    request line over 16 KiB (414) and one that is no request line (400):
    counted, and in the access log, their request C{-}.
    """
    before = scrape(server)
    assert _get(server, "/" + "a" * 20000)[0] == 414
    with socket.create_connection((server.host, server.port), timeout=10) as sock:
        sock.sendall(b"NONSENSE\r\n\r\n")
        assert sock.recv(65536).startswith(b"HTTP/1.1 400 ")
    after = scrape(server)
    for code in ("414", "400"):
        counted = value(
            after, "cgiserve_http_requests_total", code=code, method="other"
        ) - value(before, "cgiserve_http_requests_total", code=code, method="other")
        assert counted == 1, code
        assert server.logLines(f'"-" {code} ')


def test_processCapRefusals(server: Server, tree: Path) -> None:
    """
    While one script holds the only process --cgi-max-processes 1 allows,
    the gauge says so and the next script is refused (503), counted as a
    refusal.
    """
    state = tree / "state"
    for name in ("holding", "release"):
        (state / name).unlink(missing_ok=True)
    before = scrape(server)
    held: list[tuple[int, bytes]] = []
    thread = threading.Thread(
        target=lambda: held.append(_get(server, "/cgi-bin/hold.sh"))
    )
    thread.start()
    try:
        assert waitFor((state / "holding").exists, 10)
        during = scrape(server)
        assert value(during, "cgiserve_cgi_scripts_running") == 1
        assert _get(server, "/cgi-bin/ok.sh")[0] == 503
    finally:
        (state / "release").touch()
        thread.join(20)
    assert held == [(200, b"held\n")]
    after = waitFor(
        lambda: (
            (s := scrape(server))
            and value(s, "cgiserve_cgi_scripts_running") == 0
            and s
        )
    )
    assert after
    assert (
        value(after, "cgiserve_cgi_refusals_total")
        - value(before, "cgiserve_cgi_refusals_total")
        == 1
    )
    assert _requests(after, "503") - _requests(before, "503") == 1


def test_connectionsGaugeReleased(server: Server) -> None:
    """
    Connections held open count while open, and no longer once closed:
    what is left is the scrape's own.
    """
    held = [socket.create_connection((server.host, server.port)) for _ in range(3)]
    try:
        during = scrape(server)
        assert value(during, "cgiserve_http_connections", protocol="http/1.1") == 4
    finally:
        for connection in held:
            connection.close()
    after = onlyTheScrapesConnection(server)
    assert after, "closed connections are still counted"
    assert value(after, "cgiserve_http_connections", protocol="h2") == 0


def test_otherLoopbackAddressRefused(server: Server) -> None:
    """
    A client on 127.0.0.2 (loopback, but not 127.0.0.1) gets the ordinary
    404 however it spells the path, HEAD included, never the figures nor
    the file of that name.
    """
    missing = _get(server, "/no-such-file", "--interface", "127.0.0.2")
    assert missing[0] == 404
    for path in ("/metrics", "//metrics", "/%2Fmetrics", "/metrics?x=1", "/./metrics"):
        assert _get(server, path, "--interface", "127.0.0.2") == missing, path
    head = _curl("-I", "--interface", "127.0.0.2", server.url("/metrics")).stdout
    assert head.startswith(b"HTTP/1.1 404")


def test_metricsAllowReplacesLoopback(tree: Path) -> None:
    """
    With --metrics-allow 127.0.0.2/32, 127.0.0.2 may read the page and
    127.0.0.1 may not.
    """
    if CURL is None:
        pytest.skip("curl is not installed")
    server = startServer(
        tree, ["--metrics", "/status/metrics", "--metrics-allow", "127.0.0.2/32"]
    )
    with sharedServer(server):
        code, body = _get(server, "/status/metrics", "--interface", "127.0.0.2")
        assert code == 200 and b"cgiserve_http_connections" in body
        assert _get(server, "/status/metrics")[0] == 404


def _servedBy(server: Server, request: str) -> list[str]:
    """
    Which worker logged each access line of C{request}, in order.
    """
    return [
        line.split("[", 2)[1].split("]")[0]
        for line in server.logLines(f'"{request} HTTP/1.1"')
    ]


def test_workersSumTheirFigures(tree: Path) -> None:
    """
    With --workers 2, every worker counts into the shared directory: after
    40 requests on 40 connections (both workers served some), every scrape,
    whichever worker answers it, reports all of them (and every scrape
    before it), and the connections of both.
    """
    if CURL is None:
        pytest.skip("curl is not installed")
    server = startServer(tree, ["--metrics", "/metrics", "--workers", "2"])
    with sharedServer(server):
        for _ in range(40):
            assert _get(server, "/a.txt")[0] == 200
        assert set(_servedBy(server, "GET /a.txt")) == {"worker 1", "worker 2"}
        for scrapes in range(30):
            samples = scrape(server)
            assert _requests(samples, "200") == 40 + scrapes
            assert value(samples, "cgiserve_http_response_bytes_total") >= 400
            answered = waitFor(
                lambda n=scrapes + 1: (
                    len(_servedBy(server, "GET /metrics")) == n
                    and _servedBy(server, "GET /metrics")
                )
            )
            if scrapes >= 1 and set(answered) == {"worker 1", "worker 2"}:
                break
        else:
            pytest.fail(f"one worker answered every scrape: {answered}")


def test_http2AndTLSReloads(tree: Path, tmp_path: Path) -> None:
    """
    Over TLS: a scrape over HTTP/2 counts its own connection as C{h2}; a
    client on 127.0.0.2 gets 404 over HTTP/2 too; each SIGHUP counts a
    reload, C{ok} or (with a key that does not match) C{failed}.
    """
    if CURL is None:
        pytest.skip("curl is not installed")
    first = makeCertificate(tmp_path / "first")
    other = makeCertificate(tmp_path / "other")
    live = tmp_path / "live"
    live.mkdir()
    (live / "cert.pem").write_bytes(first.cert.read_bytes())
    (live / "key.pem").write_bytes(first.key.read_bytes())
    server = startServer(
        tree,
        [
            "--bind", "127.0.0.1", "--port", "0",
            "--tls-cert", str(live / "cert.pem"), "--tls-key", str(live / "key.pem"),
            "--metrics", "/metrics", "--workers", "1",
        ],
    )  # fmt: skip
    h2 = ("--http2", "--insecure")
    with sharedServer(server):

        def scrapeH2() -> Samples:
            code, body = _get(server, "/metrics", *h2)
            assert code == 200, body
            return {
                (s.name, frozenset(s.labels.items())): s.value
                for f in text_string_to_metric_families(body.decode("utf-8"))
                for s in f.samples
            }

        samples = scrapeH2()
        assert value(samples, "cgiserve_http_connections", protocol="h2") == 1
        assert value(samples, "cgiserve_http_connections", protocol="http/1.1") == 0
        assert _get(server, "/metrics", *h2, "--interface", "127.0.0.2")[0] == 404
        server.process.send_signal(signal.SIGHUP)
        assert waitFor(lambda: "TLS certificate reloaded" in server.log())
        (live / "key.pem").write_bytes(other.key.read_bytes())
        server.process.send_signal(signal.SIGHUP)
        assert waitFor(lambda: "TLS certificate not reloaded" in server.log())
        samples = scrapeH2()
        assert value(samples, "cgiserve_tls_reloads_total", result="ok") == 1
        assert value(samples, "cgiserve_tls_reloads_total", result="failed") == 1
        assert _requests(samples, "404") == 1


def test_deadWorkersConnectionsDropped(tree: Path) -> None:
    """
    With --workers 2, a worker killed while it holds connections no longer
    counts them once the parent has seen it die: after every held
    connection is closed, only the scrape's own is left.
    """
    if CURL is None:
        pytest.skip("curl is not installed")
    server = startServer(tree, ["--metrics", "/metrics", "--workers", "2"])
    with sharedServer(server):
        held = [socket.create_connection((server.host, server.port)) for _ in range(12)]
        try:
            for i, connection in enumerate(held):
                connection.sendall(
                    b"GET /a.txt?c=%d HTTP/1.1\r\nHost: x\r\n\r\n" % (i,)
                )
                assert connection.recv(65536).startswith(b"HTTP/1.1 200")
            served = waitFor(lambda: len(_servedBy(server, "GET /a.txt?c=11")) == 1)
            assert served
            [victim] = _servedBy(server, "GET /a.txt?c=0")
            pids = [
                line.rsplit("PID ", 1)[1].split(")")[0]
                for line in server.logLines(f"Started {victim} (PID")
            ]
            assert (
                value(scrape(server), "cgiserve_http_connections", protocol="http/1.1")
                == 13
            )
            os.kill(int(pids[-1]), signal.SIGKILL)
            assert waitFor(
                lambda: server.logLines(f"{victim.capitalize()} (PID {pids[-1]})"),
                10,
            )
        finally:
            for connection in held:
                connection.close()
        assert onlyTheScrapesConnection(server, 10), scrape(server)


def test_behindATrustedProxyTheClientDecides(tree: Path) -> None:
    """
    Behind --trusted-proxy, the check is on the client the proxy names, not
    on the proxy's (loopback) address: a remote client forwarded by the
    proxy gets 404, a loopback one the page.
    """
    if CURL is None:
        pytest.skip("curl is not installed")
    server = startServer(
        tree, ["--metrics", "/metrics", "--trusted-proxy", "127.0.0.1"]
    )
    with sharedServer(server):
        remote = ("-H", "X-Forwarded-For: 192.0.2.1")
        assert _get(server, "/metrics", *remote)[0] == 404
        local = ("-H", "X-Forwarded-For: 127.0.0.1")
        assert _get(server, "/metrics", *local)[0] == 200
