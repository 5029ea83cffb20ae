"""
End to end: the response path under hostile clients. A client that stops
reading, over HTTP/1.1 or HTTP/2, costs the server bounded memory, releases
its files and scripts however its requests end, and is cut off after
C{--send-timeout}; an HTTP/2 client cannot make the server buffer a whole
file or flood it with priorities; the graceful shutdown lets uploads and
connections that are just arriving finish.
"""

from __future__ import annotations

import shutil
import signal
import struct
import time
from collections.abc import Callable, Iterator
from pathlib import Path

import h2.errors
import h2.events
import pytest

from tests.support.certs import CertFiles, makeCertificate
from tests.support.h2client import H2Client
from tests.support.probes import RssSampler, fdCount
from tests.support.raw import Conn, request
from tests.support.server import Server, makeDocroot, waitFor
from tests.support.shell import writeFile

pytestmark = pytest.mark.e2e

MiB = 1024 * 1024

BIG_OUTPUT = b"""#!/bin/sh
printf 'Content-Type: application/octet-stream\\r\\n\\r\\n'
exec head -c 1073741824 /dev/zero
"""

SHORT = b"""#!/bin/sh
printf 'Content-Type: text/plain\r\nContent-Length: 100\r\n\r\nonly ten..'
"""

ECHO = b"""#!/bin/sh
printf 'Content-Type: application/octet-stream\\r\\n\\r\\n'
exec cat
"""


@pytest.fixture
def site() -> Iterator[Path]:
    """
    A document root with a sparse 1 GiB file, a 1 MiB file, and scripts,
    readable by the scripts' user.
    """
    root = makeDocroot("cgiserve-responses-")
    with (root / "huge.bin").open("wb") as f:
        f.truncate(1024 * MiB)
    (root / "mib.bin").write_bytes(bytes(range(256)) * 4096)
    cgi = root / "cgi-bin"
    cgi.mkdir(mode=0o755)
    for name, text in [("big.sh", BIG_OUTPUT), ("echo.sh", ECHO), ("short.sh", SHORT)]:
        writeFile(cgi / name, text)
    yield root
    shutil.rmtree(root, ignore_errors=True)


@pytest.fixture
def cert(tmp_path: Path) -> CertFiles:
    return makeCertificate(tmp_path / "tls")


@pytest.fixture
def tlsServer(
    serve: Callable[..., Server], site: Path, cert: CertFiles
) -> Callable[..., Server]:
    """
    Start an HTTPS (and HTTP/2) server on the site with extra options.
    """

    def start(*args: str) -> Server:
        return serve(
            site,
            [
                "--bind", "127.0.0.1", "--port", "0",
                "--tls-cert", str(cert.cert), "--tls-key", str(cert.key),
                "--cgi-user", "nobody", *args,
            ],
        )  # fmt: skip

    return start


def assertServesHTTP2(server: Server) -> None:
    """
    A new HTTP/2 client gets a whole file: the server goes on serving.
    """
    client = H2Client(server.host, server.port)
    try:
        client.get("/mib.bin")
        client.flush()
        events = client.events(until=h2.events.StreamEnded)
        assert any(isinstance(e, h2.events.StreamEnded) for e in events)
    finally:
        client.close()


def fetchStatus(port: int, target: str) -> int:
    with Conn(port) as conn:
        conn.send(request(port, target))
        return conn.readResponse().status


def streamResets(events: list[object]) -> set[int]:
    return {e.stream_id for e in events if isinstance(e, h2.events.StreamReset)}


# --------------------------------------------------------------------------
# HTTP/2 memory


@pytest.mark.parametrize("path", ["/huge.bin", "/cgi-bin/big.sh"])
def test_http2ClientThatDoesNotReadCostsBoundedMemory(
    tlsServer: Callable[..., Server], path: str
) -> None:
    """
    An HTTP/2 client that opens a 2 GiB flow-control window and then reads
    nothing: the server sends what the socket takes and no more, so a 1 GiB
    file or script output costs it well under 64 MiB (Twisted alone would
    queue all of it in memory).
    """
    server = tlsServer()
    client = H2Client(server.host, server.port, window=2**31 - 1)
    try:
        with RssSampler(server.process.pid) as rss:
            client.get(path)
            client.flush()
            time.sleep(4)
        assert rss.growth < 64 * MiB, rss.growth
    finally:
        client.close()
    # The server goes on serving.
    assertServesHTTP2(server)


def test_http2ResetStreamsReleaseTheirFiles(
    tlsServer: Callable[..., Server],
) -> None:
    """
    200 streams, each blocked by its flow-control window in the middle of a
    file, are reset by the client: every file the server opened for them is
    closed again (each used to stay open until the server ran out of
    descriptors).
    """
    server = tlsServer()
    pid = server.process.pid
    baseline = fdCount(pid)
    clients = [H2Client(server.host, server.port) for _ in range(2)]
    try:
        streams: list[list[int]] = []
        for client in clients:
            ids = [client.get("/mib.bin") for _ in range(100)]
            client.flush()
            streams.append(ids)
        # Every stream has started its response and is now waiting for
        # window: its file is open.
        assert waitFor(lambda: fdCount(pid) >= baseline + 2 + 200, 10), fdCount(pid)
        for client, ids in zip(clients, streams, strict=True):
            for stream in ids:
                client.conn.reset_stream(stream)
            client.flush()
        assert waitFor(lambda: fdCount(pid) == baseline + 2, 10), fdCount(pid)
        # The connections themselves are still usable (once the client
        # gives back the connection window that the reset streams' data
        # used: h2 drops such frames without a word).
        for client in clients:
            client.conn.increment_flow_control_window(16 * MiB)
            client.get("/mib.bin")
            client.flush()
            events = client.events(until=h2.events.StreamEnded)
            assert any(isinstance(e, h2.events.StreamEnded) for e in events)
    finally:
        for client in clients:
            client.close()
    assert waitFor(lambda: fdCount(pid) == baseline, 5), fdCount(pid)


def test_http2PriorityFloodEndsWithGoaway(
    tlsServer: Callable[..., Server],
) -> None:
    """
    PRIORITY frames for 1,500 streams that were never opened: the server
    ends the connection with GOAWAY (ENHANCE_YOUR_CALM), logs no traceback,
    and serves other clients.
    """
    server = tlsServer()
    client = H2Client(server.host, server.port)
    try:
        flood = b"".join(
            client.frame(0x2, 0, stream, struct.pack(">IB", 0, 15))
            for stream in range(1, 3001, 2)
        )
        client.sock.sendall(flood)
        events = client.events(until=h2.events.ConnectionTerminated)
    finally:
        client.close()
    ended = [e for e in events if isinstance(e, h2.events.ConnectionTerminated)]
    assert ended, events
    assert ended[0].error_code == h2.errors.ErrorCodes.ENHANCE_YOUR_CALM
    assertServesHTTP2(server)
    log = server.log()
    assert "Unhandled" not in log
    assert "Traceback" not in log


# --------------------------------------------------------------------------
# The send deadline


def test_sendTimeoutCutsHTTP1ClientThatStopsReading(
    serve: Callable[..., Server], site: Path
) -> None:
    """
    A client asks for a 1 GiB file over HTTP/1.1 and never reads: after
    --send-timeout the connection is cut, logged once with the client and
    the URL, and the file is closed.
    """
    server = serve(site, ["--send-timeout", "1"])
    pid = server.process.pid
    baseline = fdCount(pid)
    conn = Conn(server.port, None, receiveBuffer=4096)
    try:
        conn.send(request(server.port, "/huge.bin", close=False))
        assert waitFor(lambda: fdCount(pid) == baseline + 2, 5), fdCount(pid)
        started = time.monotonic()
        assert waitFor(lambda: "--send-timeout" in server.log(), 5), server.log()
        assert time.monotonic() - started >= 0.5
        assert waitFor(lambda: fdCount(pid) == baseline, 5), fdCount(pid)
    finally:
        conn.close()
    lines = [line for line in server.log().splitlines() if "--send-timeout" in line]
    assert len(lines) == 1, lines
    assert "127.0.0.1" in lines[0]
    assert "/huge.bin" in lines[0]


def test_sendTimeoutResetsHTTP2StreamDespitePings(
    tlsServer: Callable[..., Server],
) -> None:
    """
    An HTTP/2 client lets a stream's window run out and keeps its
    connection alive with PINGs: after --send-timeout that stream alone is
    reset; the connection still answers.
    """
    server = tlsServer("--send-timeout", "1")
    client = H2Client(server.host, server.port)
    try:
        stream = client.get("/huge.bin")
        client.flush()
        seen: list[object] = []
        deadline = time.monotonic() + 5
        while time.monotonic() < deadline and stream not in streamResets(seen):
            client.ping()
            seen += client.events(until=h2.events.StreamReset, timeout=0.3, ack=False)
        assert stream in streamResets(seen), seen
        client.ping()
        events = client.events(until=h2.events.PingAckReceived, ack=False)
        assert any(isinstance(e, h2.events.PingAckReceived) for e in events)
    finally:
        client.close()
    assert "--send-timeout" in server.log()


def test_sendTimeoutGivesTheScriptSlotBack(
    serve: Callable[..., Server], site: Path
) -> None:
    """
    With --cgi-max-processes 1, a client that stops reading a script's
    output would hold the only slot for ever: after --send-timeout its
    response is cut, its script ended, and the next client is served.
    """
    limits = ["--send-timeout", "1", "--cgi-max-processes", "1"]
    server = serve(site, [*limits, "--cgi-user", "nobody"])
    conn = Conn(server.port, None, receiveBuffer=4096)
    try:
        conn.send(request(server.port, "/cgi-bin/big.sh"))
        time.sleep(0.3)
        assert fetchStatus(server.port, "/cgi-bin/short.sh") == 503

        def served() -> bool:
            return fetchStatus(server.port, "/cgi-bin/echo.sh") == 200

        assert waitFor(served, 8)
    finally:
        conn.close()
    assert "--send-timeout" in server.log()


def test_http2CutResponseResetsOnlyItsStream(
    tlsServer: Callable[..., Server],
) -> None:
    """
    A script that promises 100 bytes and writes 10: over HTTP/2 the stream
    is reset (the client can tell the response is incomplete), and the
    connection goes on serving; the request is not left open.
    """
    server = tlsServer()
    client = H2Client(server.host, server.port)
    try:
        stream = client.get("/cgi-bin/short.sh")
        client.flush()
        events = client.events(until=h2.events.StreamReset)
        assert stream in streamResets(events), events
        assert not any(isinstance(e, h2.events.StreamEnded) for e in events)
        other = client.get("/mib.bin")
        client.flush()
        ended = client.events(until=h2.events.StreamEnded)
        assert other in {
            e.stream_id for e in ended if isinstance(e, h2.events.StreamEnded)
        }
    finally:
        client.close()
    # Nothing is left in flight: the server stops at once.
    started = time.monotonic()
    assert server.stop() == 0
    assert time.monotonic() - started < 3


# --------------------------------------------------------------------------
# Graceful shutdown


def test_uploadInProgressFinishesWithinGrace(
    serve: Callable[..., Server], site: Path
) -> None:
    """
    SIGTERM while a client is half-way through an upload to a script: the
    upload may finish within --shutdown-grace, and its response arrives
    whole.
    """
    server = serve(site)
    body = bytes(range(256)) * 8192
    head = (
        b"POST /cgi-bin/echo.sh HTTP/1.1\r\nHost: x\r\n"
        b"Content-Length: %d\r\n\r\n" % len(body)
    )
    with Conn(server.port) as conn:
        conn.send(head + body[: len(body) // 2])
        time.sleep(0.3)
        server.process.send_signal(signal.SIGTERM)
        time.sleep(0.5)
        conn.send(body[len(body) // 2 :])
        response = conn.readResponse()
    assert response.status == 200, (response.status, response.body[:300])
    assert response.complete
    assert response.body == body
    assert server.process.wait(10) == 0


def test_connectionAcceptedJustBeforeShutdownIsAnswered(
    serve: Callable[..., Server], site: Path
) -> None:
    """
    A client that connected just before SIGTERM and sends its request right
    after gets its response (and is told the connection closes), instead
    of a closed connection.
    """
    server = serve(site)
    with Conn(server.port) as conn:
        time.sleep(0.2)
        server.process.send_signal(signal.SIGTERM)
        time.sleep(0.1)
        conn.send(request(server.port, "/mib.bin", close=False))
        response = conn.readResponse()
        assert response.status == 200, response.status
        assert response.complete
        assert response.header("connection") == "close"
        assert conn.closedByPeer()
    assert server.process.wait(10) == 0


# --------------------------------------------------------------------------
# HTTP/2 requests that HTTP/1.1 would refuse


@pytest.mark.parametrize(
    ("headers", "status"),
    [
        # An invalid authority: 400, as HTTP/1.1's invalid Host.
        ([(":authority", "a b/c")], 400),
        # What the h2 library itself refuses ends the connection (GOAWAY):
        # two hosts, none at all, a Content-Length no number could hold.
        ([(":authority", "localhost"), ("host", "other")], None),
        ([], None),
        ([(":authority", "localhost"), ("content-length", "9" * 5000)], None),
    ],
)
def test_http2InvalidRequests(
    tlsServer: Callable[..., Server],
    headers: list[tuple[str, str]],
    status: int | None,
) -> None:
    """
    Over HTTP/2, the Host rules hold too: an invalid :authority is refused
    with 400 on its stream; what the h2 library refuses ends the connection
    with GOAWAY; nothing is logged as a traceback, and the server serves on.
    """
    server = tlsServer()
    client = H2Client(server.host, server.port)
    client.conn.config.validate_outbound_headers = False
    client.conn.config.normalize_outbound_headers = False
    try:
        request = [(":method", "GET"), (":path", "/mib.bin"), (":scheme", "https")]
        client.conn.send_headers(1, request + headers, end_stream=True)
        client.flush()
        events = client.events(until=h2.events.StreamEnded)
    finally:
        client.close()
    statuses = [
        int(dict(e.headers)[b":status"])
        for e in events
        if isinstance(e, h2.events.ResponseReceived)
    ]
    if status is None:
        assert statuses == [], statuses
        assert any(isinstance(e, h2.events.ConnectionTerminated) for e in events)
    else:
        assert statuses == [status], events
    assert "Traceback" not in server.log()
    assertServesHTTP2(server)
