"""
End-to-end tests of what a hostile client (or script) can put in front of
the real C{twistd -n cgiserve}: numbers longer than Python parses (4300
digits) in a Range, a request's Content-Length or chunk sizes, a script's
Content-Length or Status; missing, repeated and invalid Host fields (RFC
9112 section 3.2); and a client that pipelines requests without reading
the responses.

Each number gets the answer its RFC prescribes, never a 500, a hang, a
traceback or a leaked descriptor; each Host case a 400 or its answer; and a
connection's response backlog stays bounded whatever the client sends.
"""

from __future__ import annotations

import time
from collections.abc import Iterator

import pytest

from tests.support.probes import fdCount, rssOf
from tests.support.raw import Conn, Response, fetch, request
from tests.support.server import (
    Server,
    assertHealthy,
    makeDocroot,
    startServer,
    waitFor,
)
from tests.support.shell import sh, writeFile

pytestmark = pytest.mark.e2e

MiB = 1024 * 1024
HUGE = b"9" * 5000
K1 = bytes(range(256)) * 4
BIG_SIZE = 200_000
LISTED = 3000
# How much a connection's unanswered pipeline may grow the server: the
# transport's buffer (64 KiB) and one response, with room for allocator
# noise; unbounded, 10 s of pipelining grows it by 50 MB and more.
RSS_BOUND = 16 * MiB


SCRIPTS = {
    "cgi-bin/hugelength.sh": sh(r"""
        printf 'Content-Type: text/plain\nContent-Length: '
        head -c 5000 /dev/zero | tr '\0' 9
        printf '\n\nhello'
    """),
    "cgi-bin/hugestatus.sh": sh(r"""
        printf 'Content-Type: text/plain\nStatus: '
        head -c 5000 /dev/zero | tr '\0' 2
        printf ' OK\n\nhello'
    """),
    "cgi-bin/nph-huge.sh": sh(r"""
        printf 'HTTP/1.1 '
        head -c 5000 /dev/zero | tr '\0' 2
        printf ' OK\r\nContent-Type: text/plain\r\n\r\nraw'
    """),
    "cgi-bin/name.sh": sh(r"""
        printf 'Content-Type: text/plain\n\n%s' "$SERVER_NAME"
    """),
}


@pytest.fixture(scope="module")
def server(tmp_path_factory: pytest.TempPathFactory) -> Iterator[Server]:
    root = makeDocroot("cgiserve-e2e-hostile-")
    (root / "k1.txt").write_bytes(K1)
    (root / "big.bin").write_bytes(b"b" * BIG_SIZE)
    listed = root / "many"
    listed.mkdir()
    for i in range(LISTED):
        (listed / f"{i:06d}-{'x' * 90}.txt").touch()
    for name, data in SCRIPTS.items():
        writeFile(root / name, data)
    srv = startServer(root, logDir=tmp_path_factory.mktemp("hostile"))
    yield srv
    srv.stop()


@pytest.fixture(scope="module")
def port(server: Server) -> int:
    return server.port


def _exchange(port: int, data: bytes) -> tuple[Response, bool]:
    """
    Send C{data}; the response and whether the server then closed.
    """
    with Conn(port) as conn:
        conn.send(data)
        response = conn.readResponse()
        return response, conn.closedByPeer(wait=3.0)


def _assertRefused(port: int, data: bytes, code: int = 400) -> None:
    """
    A complete error response with the error page, then a close.
    """
    response, closed = _exchange(port, data)
    assert response.status == code, (response.status, response.body[:200])
    assert b"Error code: %d" % (code,) in response.body
    assert response.complete
    assert closed


# --------------------------------------------------------------------------
# Numbers


@pytest.mark.parametrize(
    ("spec", "status", "length"),
    [
        # A first position past the end: unsatisfiable.
        pytest.param(HUGE + b"-", 416, 0, id="firstHuge"),
        pytest.param(HUGE + b"-" + HUGE + b"9", 416, 0, id="bothHuge"),
        # A last position or a suffix past the end: clamped to the file.
        pytest.param(b"0-" + HUGE, 206, BIG_SIZE, id="lastHuge"),
        pytest.param(b"10-" + HUGE, 206, BIG_SIZE - 10, id="lastHugeFrom10"),
        pytest.param(b"-" + HUGE, 206, BIG_SIZE, id="suffixHuge"),
        pytest.param(b"-" + b"0" * 5000 + b"5", 206, 5, id="suffixZeros"),
        # Last before first: malformed, the Range is ignored.
        pytest.param(HUGE + b"-5", 200, BIG_SIZE, id="inverted"),
    ],
)
def test_hugeRangePositions(
    server: Server, port: int, spec: bytes, status: int, length: int
) -> None:
    """
    Range positions of 5000 digits are taken for what they mean: 416 past
    the end, clamped to the file's end, or the header ignored (200) when the
    range is inverted; never a 500, and the file opened for the request is
    closed (it leaked one descriptor per request).
    """
    pid = server.process.pid
    before = fdCount(pid)
    with Conn(port) as conn:
        for _ in range(10):
            rangeHeader = ("Range", "bytes=" + spec.decode())
            conn.send(request(port, "/big.bin", headers=[rangeHeader], close=False))
            response = conn.readResponse()
            assert response.status == status
            assert len(response.body) == length
    assert waitFor(lambda: fdCount(pid) <= before + 2), (before, fdCount(pid))
    assertHealthy(server)


def test_hugeRequestContentLength(server: Server, port: int) -> None:
    """
    A request Content-Length of 5000 digits is answered 400 with the error
    page (it was a silent close and a traceback).
    """
    _assertRefused(
        port,
        b"POST /cgi-bin/name.sh HTTP/1.1\r\nHost: a\r\nContent-Length: "
        + HUGE
        + b"\r\n\r\n",
    )
    _assertRefused(
        port,
        b"GET /k1.txt HTTP/1.1\r\nHost: a\r\nContent-Length: "
        + b"1" * 19
        + b"\r\n\r\n",
    )
    assertHealthy(server)


@pytest.mark.parametrize(
    "body",
    [
        pytest.param(b"f" * 5000 + b"\r\n", id="5000hexDigits"),
        pytest.param(b"1" * 3000, id="lineNeverEnds"),
    ],
)
def test_badChunkSize(server: Server, port: int, body: bytes) -> None:
    """
    A 5000-hex-digit chunk size, and a chunk-size line that never ends, get
    400 with the error page.
    """
    _assertRefused(
        port,
        b"POST /cgi-bin/name.sh HTTP/1.1\r\nHost: a\r\n"
        b"Transfer-Encoding: chunked\r\n\r\n" + body,
    )
    assertHealthy(server)


@pytest.mark.parametrize("script", ["hugelength.sh", "hugestatus.sh"])
def test_scriptHugeNumbers(server: Server, port: int, script: str) -> None:
    """
    A script whose Content-Length or Status has 5000 digits gets 502 at
    once (the Content-Length made the request hang forever).
    """
    started = time.monotonic()
    response = fetch(port, f"/cgi-bin/{script}")
    assert response.status == 502
    assert time.monotonic() - started < 5
    assertHealthy(server)


def test_nphScriptHugeStatus(server: Server, port: int) -> None:
    """
    An NPH script whose status line has a 5000-digit code: its output still
    reaches the client as it is (NPH output is not parsed), and reading the
    code for the access log makes no traceback (it used to end the response
    with an empty reply).
    """
    with Conn(port) as conn:
        conn.send(request(port, "/cgi-bin/nph-huge.sh"))
        data = conn.readAll()
    assert data.startswith(b"HTTP/1.1 222"), data[:40]
    assert data.endswith(b"\r\n\r\nraw"), data[-40:]
    assertHealthy(server)


# --------------------------------------------------------------------------
# Host


@pytest.mark.parametrize(
    "head",
    [
        pytest.param(b"GET /k1.txt HTTP/1.1\r\n", id="missing"),
        pytest.param(b"GET http://a/k1.txt HTTP/1.1\r\n", id="absoluteFormMissing"),
        pytest.param(b"GET /k1.txt HTTP/1.1\r\nHost: a\r\nHost: b\r\n", id="two"),
        pytest.param(b"GET /k1.txt HTTP/1.0\r\nHost: a\r\nHost: a\r\n", id="two10"),
        pytest.param(b"GET /k1.txt HTTP/1.1\r\nHost: a b/c\r\n", id="invalid"),
        pytest.param(b"GET /k1.txt HTTP/1.1\r\nHost: [::1\r\n", id="badLiteral"),
    ],
)
def test_hostRefused(server: Server, port: int, head: bytes) -> None:
    """
    RFC 9112 section 3.2: 400 for an HTTP/1.1 request without Host (even
    with an absolute-form target), and for any request with two Host lines
    or an invalid one.
    """
    _assertRefused(port, head + b"\r\n")


@pytest.mark.parametrize(
    "head",
    [
        pytest.param(b"GET /k1.txt HTTP/1.0\r\n", id="http10Missing"),
        pytest.param(b"GET /k1.txt HTTP/1.1\r\nHost: \r\n", id="empty"),
        pytest.param(b"GET /k1.txt HTTP/1.1\r\nHost: [::1]:80\r\n", id="ipv6"),
        pytest.param(
            b"GET http://other.example/k1.txt HTTP/1.1\r\nHost: a\r\n",
            id="absoluteForm",
        ),
    ],
)
def test_hostAccepted(port: int, head: bytes) -> None:
    """
    HTTP/1.0 may omit Host; an empty one and an IPv6 literal are valid; an
    absolute-form target is served by its path.
    """
    response, _closed = _exchange(port, head + b"Connection: close\r\n\r\n")
    assert response.status == 200
    assert response.body == K1


def test_serverNameFromTheOnlyHost(port: int) -> None:
    """
    A script's SERVER_NAME comes from the one Host there may be; with two
    (a proxy routes on the first, the script saw the last) the request is
    refused before the script runs.
    """
    response = fetch(port, "/cgi-bin/name.sh", host="one.example:81")
    assert response.body == b"one.example"
    _assertRefused(
        port,
        b"GET /cgi-bin/name.sh HTTP/1.1\r\nHost: one.example\r\n"
        b"Host: two.example\r\n\r\n",
    )


# --------------------------------------------------------------------------
# Pipelining


def _pipelineWithoutReading(port: int, target: bytes, count: int) -> Conn:
    """
    Send up to C{count} pipelined GETs of C{target} and read nothing, for
    at most 10 s or until the server stops taking them for 1 s. The connection
    is returned open (the caller closes it).
    """
    conn = Conn(port, receiveBuffer=4096)
    sock = conn.sock
    sock.setblocking(False)
    one = b"GET %s HTTP/1.1\r\nHost: a\r\n\r\n" % (target,)
    batch = min(count, 100)
    pending = b""
    sent = 0
    deadline = time.monotonic() + 10
    stalledSince: float | None = None
    while (sent < count or pending) and time.monotonic() < deadline:
        if not pending:
            pending = one * batch
            sent += batch
        try:
            pending = pending[sock.send(pending) :]
            stalledSince = None
        except BlockingIOError:
            now = time.monotonic()
            if stalledSince is None:
                stalledSince = now
            elif now - stalledSince > 1:
                break
            time.sleep(0.01)
    return conn


@pytest.mark.parametrize(
    ("target", "count"),
    [
        pytest.param(b"/k1.txt", 200_000, id="smallFiles"),
        pytest.param(b"/many/", 40, id="largeListings"),
    ],
)
def test_pipelineBounded(server: Server, port: int, target: bytes, count: int) -> None:
    """
    A client that pipelines requests (200,000 GETs of a 1 KiB file, or 40
    listings of a large directory) and never reads grows the server by at
    most one response and the transport's buffer, not by every answer; the
    server goes on serving others meanwhile.
    """
    pid = server.process.pid
    for _ in range(3):
        assert fetch(port, target.decode()).status == 200
    before = rssOf(pid)
    conn = _pipelineWithoutReading(port, target, count)
    try:
        time.sleep(2)
        grown = rssOf(pid) - before
        assert grown < RSS_BOUND, f"{grown / MiB:.1f} MiB"
        assert fetch(port, "/k1.txt").body == K1
    finally:
        conn.close()


def test_pipelineReadAsItGoes(port: int) -> None:
    """
    A client that reads while it pipelines gets every answer, in order,
    however many it sends at once.
    """
    targets = [f"/k1.txt?{i}" for i in range(300)]
    with Conn(port) as conn:
        conn.send(b"".join(request(port, t, close=False) for t in targets))
        for _ in targets:
            response = conn.readResponse()
            assert response.status == 200
            assert response.body == K1
        conn.send(request(port, "/many/", close=False))
        assert conn.readResponse().body.count(b"<li>") == LISTED


def test_pipelinedListingsReadAsTheyGo(port: int) -> None:
    """
    Large pipelined responses are all delivered to a client that reads.
    """
    with Conn(port) as conn:
        conn.send(request(port, "/many/", close=False) * 10)
        for _ in range(10):
            assert conn.readResponse().body.count(b"<li>") == LISTED
