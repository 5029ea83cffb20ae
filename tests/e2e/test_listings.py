"""
End-to-end tests of large directory listings through the real C{twistd -n
cgiserve}: they are built off the reactor thread, so other clients are not
kept waiting; HEAD builds none; a client that leaves while its listing is
built costs nothing afterwards; a listing in progress at shutdown is still
sent whole.

A directory of 100,000 entries took the reactor 0.35 s to list, and eight
clients listing it at once delayed every other client's 1 KiB file by up to
2.4 s.
"""

from __future__ import annotations

import os
import re
import shutil
import signal
import statistics
import threading
import time
from collections.abc import Callable, Iterator
from pathlib import Path

import h2.events
import pytest

from tests.support.certs import makeCertificate
from tests.support.h2client import H2Client
from tests.support.probes import fdCount
from tests.support.raw import Conn, Response, fetch, request
from tests.support.server import Server, makeDocroot, startServer, waitFor

pytestmark = pytest.mark.e2e

ENTRIES = 100_000
SMALL = b"x" * 1024


@pytest.fixture(scope="module")
def root() -> Iterator[Path]:
    root = makeDocroot("cgiserve-listings-")
    big = root / "big"
    big.mkdir()
    for i in range(ENTRIES):
        os.close(os.open(big / f"entry-{i:06d}.txt", os.O_CREAT | os.O_WRONLY, 0o644))
    (root / "small.bin").write_bytes(SMALL)
    yield root
    shutil.rmtree(root, ignore_errors=True)


@pytest.fixture(scope="module")
def server(root: Path, tmp_path_factory: pytest.TempPathFactory) -> Iterator[Server]:
    server = startServer(root, logDir=tmp_path_factory.mktemp("log"))
    yield server
    server.stop()


def slowFetch(port: int, target: str) -> Response:
    """
    L{fetch}, patient enough for a listing that waits behind seven others
    on a busy machine.
    """
    with Conn(port, timeout=60) as conn:
        conn.send(request(port, target))
        return conn.readResponse()


def checkListing(body: bytes) -> None:
    assert body.startswith(b"<!DOCTYPE HTML>\n")
    assert body.endswith(b"</ul>\n<hr>\n</body>\n</html>\n")
    assert body.count(b"<li>") == ENTRIES
    assert b'<li><a href="entry-000000.txt">entry-000000.txt</a></li>\n' in body


def test_listingsDoNotStallOtherClients(server: Server) -> None:
    """
    While eight clients list 100,000 entries over and over, another client's
    1 KiB file keeps coming back quickly (before: median 1.2 s, worst
    2.4 s), and every listing is complete and the same.
    """
    stop = time.monotonic() + 8
    bodies: list[bytes] = []
    errors: list[BaseException] = []

    def lister() -> None:
        try:
            for _ in range(4):
                if time.monotonic() > stop:
                    break
                r = slowFetch(server.port, "/big/")
                assert r.status == 200 and r.complete
                bodies.append(r.body)
        except BaseException as e:
            errors.append(e)

    threads = [threading.Thread(target=lister) for _ in range(8)]
    for thread in threads:
        thread.start()
    # Let the listings start before measuring.
    time.sleep(0.5)
    latencies = []
    while time.monotonic() < stop and any(t.is_alive() for t in threads):
        started = time.monotonic()
        r = fetch(server.port, "/small.bin")
        latencies.append(time.monotonic() - started)
        assert r.status == 200 and r.body == SMALL
        time.sleep(0.01)
    for thread in threads:
        thread.join(60)
    assert not errors, errors
    assert statistics.median(latencies) < 0.2, sorted(latencies)[-10:]
    assert max(latencies) < 1.2, sorted(latencies)[-10:]
    assert len(latencies) >= 20
    assert len(bodies) >= 8
    checkListing(bodies[0])
    assert all(b == bodies[0] for b in bodies)


def test_headBuildsNoListing(server: Server) -> None:
    """
    HEAD on a large directory answers at once with GET's status and type and
    no Content-Length (knowing it would cost the whole listing), and the
    connection carries on.
    """
    with Conn(server.port) as conn:
        started = time.monotonic()
        conn.send(request(server.port, "/big/", "HEAD", close=False))
        head = conn.readResponse("HEAD")
        elapsed = time.monotonic() - started
        conn.send(request(server.port, "/small.bin"))
        after = conn.readResponse()
    assert head.status == 200
    assert head.header("Content-Type") == "text/html; charset=utf-8"
    assert head.header("Content-Length") is None
    assert head.header("Transfer-Encoding") is None
    assert (after.status, after.body) == (200, SMALL)
    assert elapsed < 0.3


def test_clientGoneWhileListing(server: Server) -> None:
    """
    Clients that leave while their listing is being built leave no
    descriptor behind and nothing in the log: the listing is not written to
    a closed connection.
    """
    fetch(server.port, "/small.bin")
    pid = server.process.pid
    baseline = fdCount(pid)
    for _ in range(5):
        conn = Conn(server.port)
        conn.send(request(server.port, "/big/"))
        time.sleep(0.05)
        # Reset rather than close: the server sees the client gone at once.
        conn.reset()
    r = slowFetch(server.port, "/big/")
    checkListing(r.body)
    assert waitFor(lambda: fdCount(pid) <= baseline, 10)
    log = server.log()
    for bad in ("Traceback", "Unhandled", "connection was lost", "Error"):
        assert bad not in log, log[-3000:]


def test_listingInProgressAtShutdown(root: Path, tmp_path: Path) -> None:
    """
    SIGTERM while a listing is being built: the client still gets the whole
    listing, and the server exits 0.
    """
    server = startServer(root, logDir=tmp_path)
    try:
        with Conn(server.port, timeout=30) as conn:
            conn.send(request(server.port, "/big/"))
            time.sleep(0.05)
            server.process.send_signal(signal.SIGTERM)
            r = conn.readResponse()
        assert r.status == 200 and r.complete
        checkListing(r.body)
        assert server.process.wait(30) == 0
    finally:
        server.stop()


def test_http2StreamResetWhileListing(
    root: Path, tmp_path: Path, serve: Callable[..., Server]
) -> None:
    """
    Over HTTP/2, a stream reset while its listing is built is not written
    to; the connection and its other streams carry on.
    """
    cert = makeCertificate(tmp_path / "tls")
    tls = ["--tls-cert", str(cert.cert), "--tls-key", str(cert.key)]
    server = serve(root, ["--port", "0", "--bind", "127.0.0.1", *tls])
    client = H2Client("127.0.0.1", server.port)
    try:
        gone = client.get("/big/")
        client.flush()
        time.sleep(0.05)
        client.reset(gone)
        small = client.get("/small.bin")
        whole = client.get("/big/")
        client.flush()
        received: dict[int, bytearray] = {small: bytearray(), whole: bytearray()}
        ended: set[int] = set()
        deadline = time.monotonic() + 30
        while ended != {small, whole} and time.monotonic() < deadline:
            for event in client.events(h2.events.StreamEnded, timeout=5):
                assert event != "EOF"
                assert not isinstance(event, h2.events.ConnectionTerminated)
                if (
                    isinstance(event, h2.events.DataReceived)
                    and event.stream_id in received
                ):
                    received[event.stream_id] += event.data
                if isinstance(event, h2.events.StreamEnded):
                    ended.add(event.stream_id)
        assert ended == {small, whole}
        assert bytes(received[small]) == SMALL
        checkListing(bytes(received[whole]))
    finally:
        client.close()
    log = server.log()
    assert "Traceback" not in log and "Unhandled" not in log, log[-3000:]
    assert re.search(r"Serving HTTPS", log)
