"""
Soak test: one C{twistd -n cgiserve} with short limits takes a few thousand
mixed requests from sixteen clients at once (scripts that answer, hang,
crash or lose their client, static files, oversized and spooled bodies,
clients that stop reading over HTTP/1.1 and HTTP/2, HTTP/2 streams reset in
the middle of their response), and must end up as it started: no child
processes, no extra descriptors, no temporary files, and about the same
memory.

Slow (up to two minutes), so marked C{slow}, which the project's pytest
configuration deselects unless asked for: run it with C{pytest -m slow}.
"""

from __future__ import annotations

import collections
import contextlib
import os
import random
import re
import shutil
import socket
import tempfile
import threading
import time
from collections.abc import Callable, Iterator
from concurrent.futures import ThreadPoolExecutor
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import h2.events
import pytest

from tests.support.certs import makeCertificate
from tests.support.h2client import H2Client
from tests.support.probes import (
    deletedFiles,
    fdCount,
    processesIn,
    processState,
    rssOf,
)
from tests.support.raw import Conn, request
from tests.support.server import Server, makeDocroot, startServer, waitFor
from tests.support.shell import sh, writeFile
from tests.support.spawner import scriptProcessesOf

pytestmark = [pytest.mark.e2e, pytest.mark.slow]

REQUESTS = 5000
WARMUP = 500
WORKERS = 16
DEADLINE = 120.0
BODY_LIMIT = 2_000_000
SPOOLED = 1_500_000
MiB = 1024 * 1024
STATIC = b"static file contents\n"
BIG_STATIC = 300_000


SCRIPTS = {
    "cgi-bin/hello.sh": sh(r"""
        printf 'Content-Type: text/plain\n\nHello World\n'
    """),
    # Silent for ever (until the 1 s timeout), with a child in its group.
    "cgi-bin/hang.sh": sh("""
        sleep 30 &
        wait
    """),
    # Endless output, for clients that leave in the middle.
    "cgi-bin/forever.sh": sh(r"""
        printf 'Content-Type: text/plain\n\n'
        exec yes
    """),
    "cgi-bin/cat.sh": sh(r"""
        printf 'Content-Type: application/octet-stream\n\n'
        exec cat
    """),
    # Dies without reading its input or writing anything.
    "cgi-bin/crash.sh": sh("""
        kill -9 $$
    """),
    # Dies in the middle of its body.
    "cgi-bin/crashlate.sh": sh(r"""
        printf 'Content-Type: text/plain\n\npartial'
        kill -9 $$
    """),
}


@dataclass
class Soak:
    server: Server
    root: Path
    tmpdir: Path
    # The port that speaks HTTPS (and HTTP/2).
    tlsPort: int


@pytest.fixture
def soak(tmp_path: Path) -> Iterator[Soak]:
    root = makeDocroot("cgiserve-soak-")
    for name, data in SCRIPTS.items():
        writeFile(root / name, data)
    (root / "cgi-bin").chmod(0o755)
    (root / "static.txt").write_bytes(STATIC)
    (root / "big.bin").write_bytes(os.urandom(BIG_STATIC))
    tmpdir = Path(tempfile.mkdtemp(prefix="cgiserve-soak-tmp-"))
    cert = makeCertificate(tmp_path / "tls")
    args = [
        "--port", "tcp:0:interface=127.0.0.1",
        "--bind", "127.0.0.1", "--port", "0",
        "--tls-cert", str(cert.cert), "--tls-key", str(cert.key),
        "--cgi-timeout", "1",
        "--send-timeout", "1",
        "--max-body-size", str(BODY_LIMIT),
        "--cgi-max-processes", "16",
    ]  # fmt: skip
    server = startServer(
        root, args, logDir=tmp_path, env={**os.environ, "TMPDIR": str(tmpdir)}
    )
    found = re.search(r"Serving HTTPS on \S+ port (\d+)", server.log())
    assert found, server.log()
    try:
        yield Soak(server, root, tmpdir, int(found.group(1)))
    finally:
        server.stop()
        shutil.rmtree(root, ignore_errors=True)
        shutil.rmtree(tmpdir, ignore_errors=True)


# --------------------------------------------------------------------------
# The kinds of request. Each returns an outcome label ("200", "413",
# "disconnected", ...) and raises AssertionError for a wrong answer.


BODY = os.urandom(SPOOLED)
# 503 is always a possible answer for a script: sixteen clients against a
# cap of sixteen, and scripts just killed still count for a moment.
BUSY = 503


def send(port: int, target: str, method: str = "GET", **kw: Any) -> Conn:
    """
    A connection on which one request was sent.
    """
    conn = Conn(port, 15)
    conn.send(request(port, target, method, **kw))
    return conn


def cgiGet(port: int) -> str:
    with send(port, "/cgi-bin/hello.sh") as conn:
        r = conn.readResponse()
    assert r.status in (200, BUSY), r.status
    if r.status == 200:
        assert r.body == b"Hello World\n"
    return str(r.status)


def staticGet(port: int) -> str:
    with send(port, "/static.txt") as conn:
        r = conn.readResponse()
    assert (r.status, r.body) == (200, STATIC)
    return "200"


def bigStaticGet(port: int) -> str:
    with send(port, "/big.bin") as conn:
        r = conn.readResponse()
    assert r.status == 200
    assert r.complete
    assert len(r.body) == BIG_STATIC
    return "200"


def hung(port: int) -> str:
    with send(port, "/cgi-bin/hang.sh") as conn:
        r = conn.readResponse()
    assert r.status in (504, BUSY), r.status
    return str(r.status)


def disconnectMidResponse(port: int) -> str:
    began = time.monotonic()
    with send(port, "/cgi-bin/forever.sh", close=False) as conn:
        received = b""
        while len(received) < 100_000:
            try:
                chunk = conn.sock.recv(65536)
            except TimeoutError:
                raise AssertionError(
                    f"nothing more after {time.monotonic() - began:.1f} s and "
                    f"{len(received)} bytes: {received[:200]!r}"
                ) from None
            if not chunk:
                break
            received += chunk
            if received.startswith(b"HTTP/1.1 503 ") and b"\r\n\r\n" in received:
                return "503"
    assert received.startswith(b"HTTP/1.1 200 "), received[:200]
    return "disconnected"


def oversized(port: int) -> str:
    with send(
        port,
        "/cgi-bin/cat.sh",
        "POST",
        headers=[("Content-Length", str(BODY_LIMIT + 1))],
        close=False,
    ) as conn:
        r = conn.readResponse()
    assert r.status == 413, r.status
    return "413"


def chunkedOversized(port: int) -> str:
    data = BODY + BODY[: BODY_LIMIT + 1 - SPOOLED]
    body = b"".join(
        b"%x\r\n%s\r\n" % (len(data[i : i + 500_000]), data[i : i + 500_000])
        for i in range(0, len(data), 500_000)
    )
    with Conn(port, 15) as conn:
        with contextlib.suppress(BrokenPipeError, ConnectionResetError):
            conn.send(
                request(
                    port,
                    "/cgi-bin/cat.sh",
                    "POST",
                    [("Transfer-Encoding", "chunked")],
                    close=False,
                )
                + body
            )
        r = conn.readResponse()
    assert r.status == 413, r.status
    return "413"


def spooledEcho(port: int) -> str:
    with send(port, "/cgi-bin/cat.sh", "POST", body=BODY) as conn:
        r = conn.readResponse()
    assert r.status in (200, BUSY), r.status
    if r.status == 200:
        assert r.complete
        assert r.body == BODY
    return str(r.status)


def disconnectMidUpload(port: int) -> str:
    with Conn(port, 15) as conn:
        conn.send(
            request(
                port,
                "/cgi-bin/cat.sh",
                "POST",
                [("Content-Length", str(BODY_LIMIT - 100_000))],
            )
            + BODY[:1_200_000]
        )
    return "upload abandoned"


def crash(port: int) -> str:
    with send(port, "/cgi-bin/crash.sh") as conn:
        r = conn.readResponse()
    assert r.status in (502, BUSY), r.status
    return str(r.status)


def crashWithBody(port: int) -> str:
    with send(port, "/cgi-bin/crash.sh", "POST", body=BODY) as conn:
        r = conn.readResponse()
    assert r.status in (502, BUSY), r.status
    return str(r.status)


def crashLate(port: int) -> str:
    with send(port, "/cgi-bin/crashlate.sh") as conn:
        r = conn.readResponse()
    assert r.status in (200, BUSY), r.status
    if r.status == 200:
        assert not r.complete
    return f"{r.status} cut" if r.status == 200 else str(r.status)


def stallUntilCut(port: int) -> str:
    """
    Ask for an endless script output over HTTP/1.1 and read none of it: the
    server cuts the connection (a reset: it does not wait for the client to
    read what is queued) after --send-timeout (1 s). The client only peeks,
    so that reading cannot count as progress.
    """
    with Conn(port, 10, receiveBuffer=4096) as conn:
        sock = conn.sock
        conn.send(request(port, "/cgi-bin/forever.sh"))
        deadline = time.monotonic() + 8
        while time.monotonic() < deadline:
            # The reset shows as the socket's pending error; what was
            # received before it still waits to be read.
            if sock.getsockopt(socket.SOL_SOCKET, socket.SO_ERROR):
                return "cut"
            peeked = sock.recv(16, socket.MSG_PEEK | socket.MSG_DONTWAIT)
            if peeked.startswith(b"HTTP/1.1 503 "):
                return "503"
            time.sleep(0.1)
    raise AssertionError("not cut within 8 s")


def _h2(kind: Callable[[H2Client], str]) -> Callable[[int], str]:
    """
    A kind of request made over HTTP/2: it is given the TLS port.
    """

    def run(port: int) -> str:
        client = H2Client("127.0.0.1", port)
        try:
            return kind(client)
        finally:
            client.close()

    run.__name__ = kind.__name__
    OVER_TLS.add(run)
    return run


# The kinds of request made on the TLS port.
OVER_TLS: set[Callable[[int], str]] = set()


@_h2
def h2ResetMidBody(client: H2Client) -> str:
    """
    Reset a stream once part of a large file arrived (the rest is blocked
    by the stream's window).
    """
    stream = client.get("/big.bin")
    client.flush()
    events = client.events(until=h2.events.DataReceived, ack=False)
    assert any(isinstance(e, h2.events.DataReceived) for e in events), events
    client.reset(stream)
    return "reset"


@_h2
def h2StopsReading(client: H2Client) -> str:
    """
    Open a 2 GiB window, ask for an endless script output and a large
    file, read nothing, and close the connection.
    """
    client.conn.increment_flow_control_window(2**31 - 1 - 65535)
    client.get("/cgi-bin/forever.sh")
    client.get("/big.bin")
    client.flush()
    time.sleep(0.3)
    return "closed"


@_h2
def h2StallUntilReset(client: H2Client) -> str:
    """
    Let a stream's window run out on an endless script output and keep the
    connection alive: the stream is reset after --send-timeout.
    """
    stream = client.get("/cgi-bin/forever.sh")
    client.flush()
    seen: list[object] = []
    deadline = time.monotonic() + 8
    while time.monotonic() < deadline:
        client.ping()
        seen += client.events(until=h2.events.StreamReset, timeout=0.5, ack=False)
        for event in seen:
            if isinstance(event, h2.events.ResponseReceived):
                status = dict(event.headers)[b":status"]
                if status == b"503":
                    return "503"
            if isinstance(event, h2.events.StreamReset) and event.stream_id == stream:
                return "reset"
    raise AssertionError(f"stream not reset: {seen[-5:]}")


KINDS: list[tuple[Callable[[int], str], int]] = [
    (cgiGet, 30),
    (staticGet, 15),
    (bigStaticGet, 5),
    (hung, 5),
    (disconnectMidResponse, 7),
    (oversized, 6),
    (chunkedOversized, 3),
    (spooledEcho, 10),
    (disconnectMidUpload, 4),
    (crash, 5),
    (crashWithBody, 5),
    (crashLate, 5),
    (stallUntilCut, 2),
    (h2ResetMidBody, 6),
    (h2StopsReading, 3),
    (h2StallUntilReset, 2),
]


# --------------------------------------------------------------------------
# What the server holds


@dataclass
class Snapshot:
    fds: int
    rss: int
    children: list[int]
    tmpFiles: list[str]
    deleted: list[str]


def snapshot(soak: Soak) -> Snapshot:
    pid = soak.server.process.pid
    return Snapshot(
        fdCount(pid),
        rssOf(pid),
        scriptProcessesOf(pid),
        os.listdir(soak.tmpdir),
        deletedFiles(pid),
    )


def test_soak(soak: Soak) -> None:
    """
    Several thousand mixed requests from sixteen clients (scripts that
    answer, hang past the 1 s timeout, crash, or lose their client; static
    files; bodies refused as too large (announced or chunked), spooled to
    disk, or abandoned half sent) leave the server as it started: no
    children (zombie or not), no script process anywhere, its descriptor
    count within 2 of the start, no temporary file on disk or held open,
    and its memory within 10 MiB; no more than 16 scripts ran at once,
    every answer is one the spec allows, and nothing is logged as a
    traceback.
    """
    pid = soak.server.process.pid

    def portFor(kind: Callable[[int], str]) -> int:
        return soak.tlsPort if kind in OVER_TLS else soak.server.port

    # One of each first, so that lazily opened files and imports are in
    # the baseline; then a short burst at full concurrency, so that it also
    # holds what a busy server keeps anyway (the allocator's pools, TLS
    # state): the soak measures what requests leave behind.
    for kind, _ in KINDS:
        kind(portFor(kind))
    warmup = random.Random(1).choices(
        [kind for kind, _ in KINDS], [weight for _, weight in KINDS], k=WARMUP
    )
    with ThreadPoolExecutor(WORKERS) as pool:
        list(pool.map(lambda kind: kind(portFor(kind)), warmup))
    assert waitFor(lambda: not scriptProcessesOf(pid), 10), scriptProcessesOf(pid)
    time.sleep(1.5)
    before = snapshot(soak)
    assert before.children == []
    assert before.tmpFiles == []
    assert before.deleted == []

    rng = random.Random(20261122)
    plan = rng.choices(
        [kind for kind, _ in KINDS], [weight for _, weight in KINDS], k=REQUESTS
    )
    outcomes: collections.Counter[str] = collections.Counter()
    failures: list[str] = []
    lock = threading.Lock()
    deadline = time.monotonic() + DEADLINE
    peak = {"rss": before.rss, "children": 0}

    def run(kind: Callable[[int], str]) -> None:
        if time.monotonic() > deadline:
            with lock:
                outcomes["not run (deadline)"] += 1
            return
        try:
            label = kind(portFor(kind))
        except (AssertionError, OSError) as e:
            with lock:
                failures.append(f"{kind.__name__}: {type(e).__name__}: {e}")
                outcomes[f"{kind.__name__} FAILED"] += 1
            return
        with lock:
            outcomes[f"{kind.__name__} {label}"] += 1

    stop = threading.Event()

    def sample() -> None:
        while not stop.wait(0.25):
            with contextlib.suppress(OSError, AssertionError):
                peak["rss"] = max(peak["rss"], rssOf(pid))
                running = [c for c in scriptProcessesOf(pid) if processState(c) != "Z"]
                peak["children"] = max(peak["children"], len(running))

    sampler = threading.Thread(target=sample, daemon=True)
    sampler.start()
    began = time.monotonic()
    try:
        with ThreadPoolExecutor(WORKERS) as pool:
            list(pool.map(run, plan))
    finally:
        stop.set()
        sampler.join(5)
    elapsed = time.monotonic() - began

    def settled() -> bool:
        now = snapshot(soak)
        return (
            not now.children
            and not now.tmpFiles
            and not now.deleted
            and abs(now.fds - before.fds) <= 2
        )

    waitFor(settled, 10)
    time.sleep(1)
    after = snapshot(soak)
    leftovers = processesIn(soak.root / "cgi-bin")

    print(f"\nsoak: {sum(outcomes.values())} requests in {elapsed:.1f} s")
    for label, count in sorted(outcomes.items()):
        print(f"  {count:6d}  {label}")
    print(
        f"  fds {before.fds} -> {after.fds}; RSS {before.rss // 1024} kB -> "
        f"{after.rss // 1024} kB (peak {peak['rss'] // 1024} kB); "
        f"peak children {peak['children']}"
    )
    for failure in failures[:20]:
        print("  FAILURE", failure)

    zombies = [c for c in after.children if processState(c) == "Z"]
    assert zombies == [], zombies
    assert after.children == [], [(c, processState(c)) for c in after.children]
    assert leftovers == [], leftovers
    assert abs(after.fds - before.fds) <= 2, (before.fds, after.fds)
    assert after.tmpFiles == [], after.tmpFiles
    assert after.deleted == [], after.deleted
    assert after.rss <= before.rss + 10 * MiB, (before.rss, after.rss)
    assert peak["children"] <= 16, peak["children"]
    assert failures == [], failures[:20]
    assert outcomes["not run (deadline)"] < REQUESTS // 2, outcomes
    log = soak.server.log()
    assert "Traceback" not in log, re.findall(r".*Traceback.*", log)[:5]
    # The server still answers.
    assert staticGet(soak.server.port) == "200"
    Conn(soak.server.port, 5).close()
