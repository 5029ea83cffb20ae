"""
End-to-end tests of clients that half-close: they send their requests, shut
down their side of the connection (C{shutdown(SHUT_WR)}, as C{nc -N} and
many scripted clients do) and read the answers until the server closes.
While a script runs for the connection, the end of input is the client gone
(as under nginx and Go): the script is ended.

The real C{twistd -n cgiserve} over loopback with a raw socket client. The
idle timeout is long (60 s) so that a connection closed within seconds was
closed by the end of input, not by the timeout. Scripts run as C{nobody}
and leave their process IDs in a world-writable state directory.
"""

from __future__ import annotations

import shutil
import socket
import ssl
import time
from collections.abc import Iterator
from pathlib import Path

import pytest

from tests.support.certs import makeCertificate
from tests.support.probes import groupGone
from tests.support.raw import Conn, parseResponses, request
from tests.support.server import (
    ScriptTree,
    Server,
    makeScriptTree,
    sharedServer,
    startServer,
    staysHealthy,
    waitFor,
)
from tests.support.shell import sh

pytestmark = pytest.mark.e2e

A_TXT = b"Hello from a.txt\n"

# More than the sockets' buffers hold, so that the response is still being
# written when the server learns that the client's input has ended.
BIG = 2 * 1024 * 1024

# Seconds within which a half-closed connection must be closed: far below
# the idle timeout.
PROMPT = 5.0


def scripts(state: Path) -> dict[str, bytes]:
    return {
        # A large output, begun after a pause (the end of input arrives
        # while the script runs).
        "cgi-bin/big.sh": sh(
            f"""
            sleep 0.3
            printf 'Content-Type: application/octet-stream\\r\\n\\r\\n'
            head -c {BIG} /dev/zero
            printf end
            """
        ),
        # Echoes its input.
        "cgi-bin/echo.sh": sh(
            """
            printf 'Content-Type: text/plain\\r\\n\\r\\n'
            cat
            """
        ),
        # Silent for half a minute, then writes without end.
        "cgi-bin/late.sh": sh(
            f"""
            echo $$ > {state}/late.pid
            sleep 30
            printf 'Content-Type: application/octet-stream\\r\\n\\r\\n'
            exec cat /dev/zero
            """
        ),
        # Reads its input until the end, which never comes for a client
        # whose body is incomplete.
        "cgi-bin/sink.sh": sh(
            f"""
            echo $$ > {state}/sink.pid
            printf 'Content-Type: text/plain\\r\\n\\r\\n'
            cat > /dev/null
            echo done
            """
        ),
    }


@pytest.fixture(scope="module")
def tree(tmp_path_factory: pytest.TempPathFactory) -> Iterator[ScriptTree]:
    tree = makeScriptTree(
        "cgiserve-e2e-halfclose-",
        scripts,
        tmp_path_factory.mktemp("halfclose-logs"),
    )
    (tree.root / "a.txt").write_bytes(A_TXT)
    (tree.root / "big.bin").write_bytes(b"\0" * BIG)
    yield tree
    shutil.rmtree(tree.root, ignore_errors=True)


@pytest.fixture(scope="module")
def server(tree: ScriptTree) -> Iterator[Server]:
    srv = startServer(tree.root, ["--idle-timeout", "60"], logDir=tree.logs)
    with sharedServer(srv) as shared:
        yield shared


@pytest.fixture(autouse=True)
def _serverSurvives(request: pytest.FixtureRequest) -> Iterator[None]:
    """
    Each test checks that the shared server logged no traceback for it.
    """
    if "server" not in request.fixturenames:
        yield
        return
    with staysHealthy(request.getfixturevalue("server")):
        yield


def halfClosed(port: int, data: bytes) -> tuple[bytes, bool, float]:
    """
    Send C{data}, shut down the sending side, read until the server closes
    (within L{PROMPT} seconds): what came back, whether the server closed,
    and how long it took.
    """
    with Conn(port, 10) as conn:
        conn.send(data)
        conn.sock.shutdown(socket.SHUT_WR)
        started = time.monotonic()
        received, closed = conn.readUntilClosed(PROMPT)
        return received, closed, time.monotonic() - started


@pytest.mark.parametrize(
    ("version", "close"),
    [("HTTP/1.0", False), ("HTTP/1.1", False), ("HTTP/1.1", True)],
)
def test_staticAnswered(server: Server, version: str, close: bool) -> None:
    """
    A static file over HTTP/1.0, HTTP/1.1 kept alive, and HTTP/1.1 with
    C{Connection: close}: answered in full, then the connection is closed
    at once.
    """
    data = request(server.port, "/a.txt", version=version, close=close)
    received, closed, took = halfClosed(server.port, data)
    assert closed and took < PROMPT
    [r] = parseResponses(received, 1)
    assert (r.version, r.status, r.body) == (version.encode(), 200, A_TXT)
    assert r.complete


def test_bigFileAnswered(server: Server) -> None:
    """
    A file larger than the sockets hold, still being sent when the end of
    input arrives: all of it arrives, then the connection is closed.
    """
    data = request(server.port, "/big.bin", close=False)
    received, closed, _ = halfClosed(server.port, data)
    assert closed
    [r] = parseResponses(received, 1)
    assert (r.status, r.complete) == (200, True)
    assert r.body == b"\0" * BIG


def test_pipelinedRequestsAnswered(server: Server) -> None:
    """
    Three pipelined requests, a large file between two small ones: all
    answered in order, then the connection is closed.
    """
    data = b"".join(
        request(server.port, path, close=False)
        for path in ("/a.txt", "/big.bin", "/a.txt")
    )
    received, closed, _ = halfClosed(server.port, data)
    assert closed
    first, second, third = parseResponses(received, 3)
    assert (first.status, first.body) == (200, A_TXT)
    assert (second.status, len(second.body)) == (200, BIG)
    assert (third.status, third.body) == (200, A_TXT)


def test_runningScriptEnded(server: Server) -> None:
    """
    The end of input while a script runs for the request (whose body, if
    any, was sent whole) is the client gone, as under nginx and Go: the
    connection is closed at once and no answer is sent.
    """
    data = request(
        server.port, "/cgi-bin/big.sh", "POST", body=b"x" * 1000, close=False
    )
    received, closed, took = halfClosed(server.port, data)
    assert closed and took < PROMPT
    assert b"end" not in received
    assert len(received) < BIG


@pytest.mark.parametrize(
    "data",
    [b"GET /a.txt HTTP/1.1\r\nHost: x", b"GET /a.txt HT"],
    ids=["head", "request-line"],
)
def test_incompleteHeadClosed(server: Server, data: bytes) -> None:
    """
    A request head that the end of input leaves incomplete: the connection
    is closed at once, without an answer.
    """
    received, closed, took = halfClosed(server.port, data)
    assert closed and took < PROMPT
    assert received == b""


def test_incompleteBodyEndsScript(server: Server, tree: ScriptTree) -> None:
    """
    A body that the end of input leaves incomplete, streamed to a script:
    the connection is closed at once, and the script is ended as when the
    client disconnects.
    """
    pidFile = tree.state / "sink.pid"
    pidFile.unlink(missing_ok=True)
    with Conn(server.port, 10) as conn:
        conn.send(
            request(server.port, "/cgi-bin/sink.sh", "POST", body=b"x" * 1000)[:-500]
        )
        text = waitFor(lambda: pidFile.exists() and pidFile.read_text().strip())
        assert text
        conn.sock.shutdown(socket.SHUT_WR)
        received, closed = conn.readUntilClosed(PROMPT)
    assert closed
    assert b"done" not in received
    assert waitFor(lambda: groupGone(int(text)), 5)


def test_closedClientEndsSilentScript(server: Server, tree: ScriptTree) -> None:
    """
    A client that closes its socket while its script is silent (for 30 s)
    gets the script ended at once, not when it would first write.
    """
    pidFile = tree.state / "late.pid"
    pidFile.unlink(missing_ok=True)
    with Conn(server.port, 10) as conn:
        conn.send(request(server.port, "/cgi-bin/late.sh", close=False))
        text = waitFor(lambda: pidFile.exists() and pidFile.read_text().strip())
        assert text
    assert waitFor(lambda: groupGone(int(text)), 5)


def test_servesOn(server: Server) -> None:
    """
    After all that, an ordinary client is served as before.
    """
    with Conn(server.port, 10) as conn:
        conn.send(request(server.port, "/a.txt"))
        assert conn.readResponse().body == A_TXT


# TLS: Twisted's TLS layer (TLSMemoryBIOProtocol) is no
# IHalfCloseableProtocol; the end of the client's TCP input ends the TLS
# connection, whatever is left to write.


@pytest.fixture(scope="module")
def tlsServer(tree: ScriptTree) -> Iterator[Server]:
    cert = makeCertificate(tree.logs / "tls")
    args = ["--idle-timeout", "60", "--bind", "127.0.0.1", "--port", "0"]
    args += ["--tls-cert", str(cert.cert), "--tls-key", str(cert.key)]
    srv = startServer(tree.root, args, logDir=tree.logs)
    with sharedServer(srv) as shared:
        yield shared


def _tlsHalfClosed(server: Server) -> tuple[bytes, bool]:
    context = ssl.SSLContext(ssl.PROTOCOL_TLS_CLIENT)
    context.check_hostname = False
    context.verify_mode = ssl.CERT_NONE
    sock = Conn(server.port, 10, host=server.host).sock
    with context.wrap_socket(sock, server_hostname="localhost") as tls:
        tls.sendall(request(server.port, "/cgi-bin/big.sh", close=False))
        # The TCP connection's sending side, under TLS (SSLSocket's own
        # shutdown would drop the TLS session).
        socket.socket.shutdown(tls, socket.SHUT_WR)
        received = b""
        deadline = time.monotonic() + PROMPT
        while time.monotonic() < deadline:
            try:
                chunk = tls.recv(1 << 20)
            except (ssl.SSLError, ConnectionError):
                return received, True
            if not chunk:
                return received, True
            received += chunk
        return received, False


def test_tlsHalfCloseClosesAndServesOn(tlsServer: Server) -> None:
    """
    A TLS client that half-closes its TCP connection: the connection is
    closed at once (nothing left open, no traceback), and the server
    serves on.
    """
    with staysHealthy(tlsServer):
        _, closed = _tlsHalfClosed(tlsServer)
        assert closed


@pytest.mark.xfail(
    strict=True,
    reason="Twisted's TLS layer treats the end of TCP input as the end of "
    "the connection: what is still to be written is dropped",
)
def test_tlsHalfCloseAnswered(tlsServer: Server) -> None:
    """
    Over TLS, a half-closed client's request would be answered in full.
    """
    received, _ = _tlsHalfClosed(tlsServer)
    [r] = parseResponses(received, 1)
    assert r.complete and len(r.body) == BIG + 3
