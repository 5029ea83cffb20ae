"""
End-to-end tests of request bodies streamed to CGI scripts: with a
C{Content-Length}, a script starts as soon as the request's head is
complete and reads the body as it arrives, at its own pace, and nothing of
the body is kept by the server.

The real C{twistd -n cgiserve} over loopback, with raw-socket clients that
send a body piece by piece and watch what comes back meanwhile, and curl
for C{Expect: 100-continue}. Scripts run as C{nobody} (the server runs as
root) and leave their process IDs in a world-writable state directory.
"""

from __future__ import annotations

import shutil
import subprocess
import threading
import time
from collections.abc import Iterator
from pathlib import Path

import pytest

from tests.support.probes import RssSampler, deletedFiles, groupGone
from tests.support.raw import Conn, request
from tests.support.server import (
    ScriptTree,
    Server,
    makeScriptTree,
    startServer,
    waitFor,
)
from tests.support.shell import sh

pytestmark = pytest.mark.e2e

MiB = 1024 * 1024


def scripts(state: Path) -> dict[str, bytes]:
    return {
        # Answers before it reads anything, then echoes its input.
        "cgi-bin/started.sh": sh(
            """
            printf 'Content-Type: text/plain\\r\\n\\r\\nstarted\\n'
            cat
            """
        ),
        # Counts its input.
        "cgi-bin/count.sh": sh(
            """
            printf 'Content-Type: text/plain\\r\\n\\r\\n'
            wc -c
            """
        ),
        # Waits for its go-ahead (a file) before it reads its input.
        "cgi-bin/slow.sh": sh(
            f"""
            echo $$ > {state}/slow.pid
            while [ ! -e {state}/slow.go ]; do sleep 0.05; done
            printf 'Content-Type: text/plain\\r\\n\\r\\n'
            wc -c
            """
        ),
        # Reads its input until the end, which never comes for a client
        # that leaves.
        "cgi-bin/sink.sh": sh(
            f"""
            echo $$ > {state}/sink.pid
            printf 'Content-Type: text/plain\\r\\n\\r\\n'
            cat > /dev/null
            echo done
            """
        ),
        # Answers without reading its input.
        "cgi-bin/early.sh": sh(
            """
            printf 'Content-Type: text/plain\\r\\nContent-Length: 3\\r\\n\\r\\nno\\n'
            """
        ),
        # A local redirect, without reading its input.
        "cgi-bin/redirect.sh": sh(
            """
            printf 'Location: /static.txt\\r\\n\\r\\n'
            """
        ),
    }


@pytest.fixture(scope="module")
def tree(tmp_path_factory: pytest.TempPathFactory) -> Iterator[ScriptTree]:
    tree = makeScriptTree(
        "cgiserve-e2e-streaming-",
        scripts,
        tmp_path_factory.mktemp("streaming-logs"),
    )
    (tree.root / "static.txt").write_bytes(b"static file contents\n")
    yield tree
    shutil.rmtree(tree.root, ignore_errors=True)


@pytest.fixture(scope="module")
def server(tree: ScriptTree) -> Iterator[Server]:
    srv = startServer(tree.root, ["--idle-timeout", "3"], logDir=tree.logs)
    yield srv
    srv.stop()


def head(server: Server, target: str, length: int, extra: str = "") -> bytes:
    return (
        f"POST {target} HTTP/1.1\r\nHost: 127.0.0.1:{server.port}\r\n"
        f"Content-Length: {length}\r\n{extra}\r\n"
    ).encode()


def pidFrom(path: Path) -> int:
    text: str = waitFor(lambda: path.exists() and path.read_text().strip(), 5)
    return int(text)


class _Sender(threading.Thread):
    """
    Send C{total} bytes of body on C{conn} in 64 KiB pieces, counting what
    the kernel took.
    """

    def __init__(self, conn: Conn, total: int, piece: bytes = b"x" * 65536) -> None:
        super().__init__(daemon=True)
        self.conn = conn
        self.total = total
        self.piece = piece
        self.sent = 0
        self.error: BaseException | None = None

    def run(self) -> None:
        try:
            while self.sent < self.total:
                data = self.piece[: self.total - self.sent]
                self.conn.sock.sendall(data)
                self.sent += len(data)
        except OSError as e:
            self.error = e


def test_firstOutputBeforeTheUploadEnds(server: Server) -> None:
    """
    The script starts once the head is complete: its first output reaches
    the client while half of the body has yet to be sent; the rest is then
    echoed whole.
    """
    body = bytes(range(256)) * 4096
    half = len(body) // 2
    with Conn(server.port, 10) as conn:
        conn.send(head(server, "/cgi-bin/started.sh", len(body)) + body[:half])
        seen = b""
        while b"started\n" not in seen:
            chunk = conn.recv()
            assert chunk, seen
            seen += chunk
        conn.send(body[half:])
        conn.buffer[:0] = seen
        r = conn.readResponse()
    assert r.status == 200
    assert r.body == b"started\n" + body


def test_countingUploadKeepsNothing(server: Server) -> None:
    """
    A 256 MiB upload to a counting script: the server's memory does not
    grow with the body (under 32 MiB, the bench's target for 100 MiB), and
    nothing is spooled to disk.
    """
    total = 256 * MiB
    pid = server.process.pid
    spooled: list[list[str]] = []
    with RssSampler(pid) as rss, Conn(server.port, 60) as conn:
        conn.send(head(server, "/cgi-bin/count.sh", total))
        sender = _Sender(conn, total, b"\0" * MiB)
        sender.start()
        while sender.is_alive():
            spooled.append(deletedFiles(pid))
            sender.join(0.1)
        assert sender.error is None
        r = conn.readResponse()
    assert (r.status, r.body.strip()) == (200, str(total).encode())
    assert rss.growth < 32 * MiB, rss.growth
    assert not any(spooled), spooled


def test_slowScriptSlowsTheClient(server: Server, tree: ScriptTree) -> None:
    """
    While the script does not read, the client can send no more than the
    pipe and the sockets' buffers hold (the server stops reading it); once
    the script reads, the upload completes.
    """
    (tree.state / "slow.go").unlink(missing_ok=True)
    total = 64 * MiB
    with Conn(server.port, 30) as conn:
        conn.send(head(server, "/cgi-bin/slow.sh", total))
        sender = _Sender(conn, total)
        sender.start()
        pidFrom(tree.state / "slow.pid")
        time.sleep(1.5)
        held = sender.sent
        assert held < 24 * MiB, held
        (tree.state / "slow.go").touch()
        sender.join(30)
        assert sender.sent == total
        r = conn.readResponse()
    assert (r.status, r.body.strip()) == (200, str(total).encode())


def test_disconnectMidBody(server: Server, tree: ScriptTree) -> None:
    """
    A client that leaves in the middle of its body: the script reading it
    is ended, and the server serves on.
    """
    (tree.state / "sink.pid").unlink(missing_ok=True)
    with Conn(server.port, 10) as conn:
        conn.send(head(server, "/cgi-bin/sink.sh", 10 * MiB) + b"x" * MiB)
        pid = pidFrom(tree.state / "sink.pid")
    assert waitFor(lambda: groupGone(pid), 5)
    with Conn(server.port, 10) as conn:
        conn.send(request(server.port, "/static.txt"))
        assert conn.readResponse().status == 200


def test_stalledClientTimedOut(server: Server, tree: ScriptTree) -> None:
    """
    A client that stops sending in the middle of its body is cut by the
    idle timeout (3 s here), and the script reading it is ended.
    """
    (tree.state / "sink.pid").unlink(missing_ok=True)
    with Conn(server.port, 10) as conn:
        conn.send(head(server, "/cgi-bin/sink.sh", MiB) + b"x" * 1000)
        pid = pidFrom(tree.state / "sink.pid")
        data, closed = conn.readUntilClosed(8)
        assert closed, data
    assert waitFor(lambda: groupGone(pid), 5)


def test_answerBeforeTheBody(server: Server) -> None:
    """
    A script that answers without reading its body: its response is sent,
    the rest of the body is read and dropped (never parsed as a request,
    even when it looks like one), and the connection serves on.
    """
    fake = b"GET /cgi-bin/started.sh?smuggled HTTP/1.1\r\nHost: a\r\n\r\n"
    body = fake * (2 * MiB // len(fake))
    with Conn(server.port, 10) as conn:
        conn.send(head(server, "/cgi-bin/early.sh", len(body)))
        r = conn.readResponse()
        assert (r.status, r.body) == (200, b"no\n")
        conn.send(body)
        conn.send(request(server.port, "/static.txt"))
        r = conn.readResponse()
    assert (r.status, r.body) == (200, b"static file contents\n")
    assert "smuggled" not in server.log()


def test_localRedirectGetsNoBody(server: Server) -> None:
    """
    A script's local redirect serves its target in its place, without the
    body, which is dropped.
    """
    body = b"y" * (3 * MiB)
    with Conn(server.port, 10) as conn:
        conn.send(head(server, "/cgi-bin/redirect.sh", len(body)) + body)
        r = conn.readResponse()
    assert (r.status, r.body) == (200, b"static file contents\n")


@pytest.mark.skipif(shutil.which("curl") is None, reason="needs curl")
def test_expectContinueWithCurl(server: Server, tmp_path: Path) -> None:
    """
    curl's C{Expect: 100-continue} (sent for large uploads) is answered,
    and the body streamed to the script.
    """
    upload = tmp_path / "upload.bin"
    upload.write_bytes(b"z" * (5 * MiB))
    out = subprocess.run(
        [
            "curl",
            "-sS",
            "--max-time",
            "20",
            "-H",
            "Expect: 100-continue",
            "--data-binary",
            f"@{upload}",
            server.url("/cgi-bin/count.sh"),
        ],
        capture_output=True,
        check=True,
    )
    assert out.stdout.strip() == str(5 * MiB).encode()
