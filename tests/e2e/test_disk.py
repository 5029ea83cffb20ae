"""
End-to-end tests of disk and log failures, against the real C{twistd -n
cgiserve}:

  - a C{--logfile} that is a character device (a private copy of
    C{/dev/null} made with mknod, never the machine's own) or a FIFO is
    written to past twistd's 1 MB rotation size, and on SIGUSR1, and is
    never renamed or replaced;
  - a request body the disk cannot hold gets a complete 507 and one log
    line, and leaves nothing on disk;
  - an access log on a full disk: the server keeps serving, warns once, and
    the file holds whole lines only; the lines lost are counted.

The full disk is a 2 MiB tmpfs, mounted for the test: these tests need root
and skip otherwise.
"""

from __future__ import annotations

import contextlib
import os
import re
import select
import signal
import stat
import subprocess
import tempfile
import threading
import time
from collections.abc import Callable, Iterator
from pathlib import Path
from typing import Any

import h2.events
import pytest

from tests.support.certs import makeCertificate
from tests.support.h2client import H2Client
from tests.support.probes import deletedFiles
from tests.support.raw import (
    Conn,
    Response,
    chunked,
    parseResponses,
    request,
    statusOf,
)
from tests.support.server import TWISTD, Server, makeDocroot, waitFor

pytestmark = pytest.mark.e2e

MiB = 1024 * 1024

# Apache's combined log format, each field whole.
_COMBINED = re.compile(
    r"^(?P<host>\S+) (?P<ident>\S+) (?P<user>\S+) \[(?P<time>[^\]]+)\] "
    r'"(?P<request>(?:[^"\\]|\\.)*)" (?P<status>\d{3}) (?P<size>\d+|-) '
    r'"(?P<referer>(?:[^"\\]|\\.)*)" "(?P<agent>(?:[^"\\]|\\.)*)"$'
)

_LENGTH_SCRIPT = b"#!/bin/sh\nprintf 'Content-Type: text/plain\\n\\n'\nwc -c\n"


def _needRoot() -> None:
    if os.geteuid() != 0:
        pytest.skip("needs root (mknod, mount)")


@pytest.fixture
def root() -> Iterator[Path]:
    """
    A document root with a static file and a script that counts the bytes
    of its request body.
    """
    path = makeDocroot("cgiserve-e2e-disk-")
    (path / "a.txt").write_bytes(b"a\n")
    script = path / "cgi-bin" / "len.sh"
    script.parent.mkdir()
    script.parent.chmod(0o755)
    script.write_bytes(_LENGTH_SCRIPT)
    script.chmod(0o755)
    yield path
    subprocess.run(["rm", "-rf", str(path)])


@pytest.fixture
def tmpfs() -> Iterator[Path]:
    """
    A fresh 2 MiB tmpfs, unmounted at the end.
    """
    _needRoot()
    path = Path(tempfile.mkdtemp(prefix="cgiserve-tmpfs-"))
    mounted = subprocess.run(
        ["mount", "-t", "tmpfs", "-o", "size=2m,mode=0755", "tmpfs", str(path)],
        capture_output=True,
        text=True,
    )
    if mounted.returncode != 0:
        path.rmdir()
        pytest.skip(f"cannot mount a tmpfs: {mounted.stderr.strip()}")
    yield path
    if subprocess.run(["umount", str(path)]).returncode != 0:
        subprocess.run(["umount", "-l", str(path)])
    path.rmdir()


def _fill(directory: Path) -> Path:
    """
    Fill the file system of C{directory} to the last byte.
    """
    filler = directory / "filler"
    with filler.open("wb", buffering=0) as f:
        with contextlib.suppress(OSError):
            for _ in range(10_000):
                f.write(b"\0" * 65536)
        with contextlib.suppress(OSError):
            for _ in range(65536):
                f.write(b"\0")
    return filler


def _used(directory: Path) -> int:
    st = os.statvfs(directory)
    return (st.f_blocks - st.f_bfree) * st.f_frsize


def _quietLog(server: Server) -> None:
    log = server.log()
    assert "Traceback" not in log and "Unhandled" not in log, log[-3000:]


# --------------------------------------------------------------------------
# 1. --logfile that is not a regular file


def _startWithLogfile(root: Path, logfile: Path, tmp: Path) -> tuple[Any, Path]:
    """
    Start twistd logging to C{logfile}, on a Unix socket (its log, where
    twistd says where it listens, may be unreadable), and wait until it
    accepts connections.
    """
    sock = tmp / "s.sock"
    output = (tmp / "stdout.log").open("wb")
    process = subprocess.Popen(
        [
            TWISTD, "-n", "--pidfile=", "-l", str(logfile),
            "cgiserve", "--directory", str(root), "--port", f"unix:{sock}",
        ],
        cwd=root,
        stdout=output,
        stderr=subprocess.STDOUT,
        stdin=subprocess.DEVNULL,
    )  # fmt: skip
    output.close()

    def accepting() -> bool:
        if process.poll() is not None:
            return True
        try:
            Conn(sock).close()
        except OSError:
            return False
        return True

    waitFor(accepting, 20)
    if process.poll() is not None:
        raise AssertionError(
            f"twistd exited {process.returncode}: "
            f"{(tmp / 'stdout.log').read_text('utf-8', 'replace')}"
        )
    return process, sock


def _get(sock: Path, agent: bytes) -> int:
    """
    One request over the Unix socket; its status.
    """
    with Conn(sock, 10) as conn:
        conn.send(
            b"GET /a.txt HTTP/1.1\r\nHost: x\r\nUser-Agent: %s\r\n"
            b"Connection: close\r\n\r\n" % agent
        )
        return statusOf(conn.readAll())


def _logPastRotation(sock: Path) -> None:
    """
    Make the server log well over twistd's 1,000,000-byte rotation size:
    each access line carries a 12 KB User-Agent.
    """
    agent = b"a" * 12_000
    statuses = [_get(sock, agent) for _ in range(110)]
    assert statuses == [200] * 110


def _stop(process: Any) -> None:
    if process.poll() is None:
        process.send_signal(signal.SIGTERM)
        try:
            process.wait(10)
        except subprocess.TimeoutExpired:
            process.kill()
            process.wait(5)


def test_characterDeviceLogNeverRotated(root: Path, tmp_path: Path) -> None:
    """
    C{twistd -l DEVICE} with a character device (a private copy of
    /dev/null) writes past the rotation size and receives SIGUSR1, and the
    device stays in place: not renamed to DEVICE.1, not replaced by a
    regular file.
    """
    _needRoot()
    node = tmp_path / "null"
    os.mknod(node, stat.S_IFCHR | 0o666, os.makedev(1, 3))
    process, sock = _startWithLogfile(root, node, tmp_path)
    try:
        _logPastRotation(sock)
        process.send_signal(signal.SIGUSR1)
        time.sleep(0.3)
        assert _get(sock, b"after-usr1") == 200
        assert process.poll() is None
    finally:
        _stop(process)
    st = os.stat(node)
    assert stat.S_ISCHR(st.st_mode) and st.st_rdev == os.makedev(1, 3)
    assert sorted(p.name for p in tmp_path.iterdir() if p.name.startswith("null")) == [
        "null"
    ]
    assert stat.S_ISCHR(os.stat("/dev/null").st_mode)


def test_fifoLogNeverRotated(root: Path, tmp_path: Path) -> None:
    """
    C{twistd -l FIFO} writes everything to the FIFO (its reader gets more
    than the rotation size, access lines whole) and SIGUSR1 does not
    replace it.
    """
    fifo = tmp_path / "log.fifo"
    os.mkfifo(fifo)
    reader = os.open(fifo, os.O_RDONLY | os.O_NONBLOCK)
    received = bytearray()
    stop = threading.Event()

    def read() -> None:
        while not stop.is_set():
            ready, _, _ = select.select([reader], [], [], 0.1)
            if ready:
                with contextlib.suppress(BlockingIOError):
                    received.extend(os.read(reader, 1 << 20))

    thread = threading.Thread(target=read, daemon=True)
    thread.start()
    try:
        process, sock = _startWithLogfile(root, fifo, tmp_path)
        try:
            _logPastRotation(sock)
            process.send_signal(signal.SIGUSR1)
            time.sleep(0.3)
            assert _get(sock, b"after-usr1") == 200
            assert waitFor(lambda: b"after-usr1" in received, 5)
        finally:
            _stop(process)
    finally:
        stop.set()
        thread.join(5)
        os.close(reader)
    assert stat.S_ISFIFO(os.stat(fifo).st_mode)
    assert not (tmp_path / "log.fifo.1").exists()
    assert len(received) > 1_300_000
    access = [
        line
        for line in received.decode("utf-8", "replace").splitlines()
        if "[cgiserve.access]" in line
    ]
    assert len(access) == 111
    expected = '"GET /a.txt HTTP/1.1" 200 2 "-" "' + "a" * 12_000 + '"'
    assert [line.endswith(expected) for line in access[:110]] == [True] * 110


# --------------------------------------------------------------------------
# 2. A request body the disk cannot hold


@pytest.fixture
def spoolServer(
    root: Path, tmpfs: Path, serve: Callable[..., Server]
) -> tuple[Server, Path]:
    """
    A server whose temporary files go to the 2 MiB tmpfs.
    """
    server = serve(root, env={**os.environ, "TMPDIR": str(tmpfs)})
    return server, tmpfs


def _upload(port: int, data: bytes) -> tuple[Response, bool]:
    """
    Send C{data} while reading what the server answers (the answer may come
    before the body is all sent); the response and whether the server then
    closed the connection.
    """
    with Conn(port, 10) as conn:
        received = bytearray()

        def read() -> None:
            with contextlib.suppress(OSError):
                while chunk := conn.sock.recv(1 << 20):
                    received.extend(chunk)

        thread = threading.Thread(target=read, daemon=True)
        thread.start()
        with contextlib.suppress(BrokenPipeError, ConnectionResetError):
            conn.send(data)
        thread.join(10)
        closed = not thread.is_alive()
    (response,) = parseResponses(bytes(received), 1, "POST")
    return response, closed


@pytest.mark.parametrize("framing", ["content-length", "chunked"])
def test_bodyTooLargeForDiskGets507(
    spoolServer: tuple[Server, Path], framing: str
) -> None:
    """
    A body larger than the free space gets a complete 507 error page and
    the connection is closed; the server logs one line naming the client
    and the URL, and no traceback; nothing stays on disk or open, so a body
    that fits is accepted right after. A body with a Content-Length is not
    stored at all (it is streamed to the script), so it is served.
    """
    server, tmpfs = spoolServer
    port = server.port
    pid = server.process.pid
    fits = os.urandom(1_500_000)
    r, _ = _upload(port, request(port, "/cgi-bin/len.sh", "POST", body=fits))
    assert (r.status, r.body.strip()) == (200, b"1500000")

    body = os.urandom(3 * MiB)
    if framing == "content-length":
        # Streamed to the script as it arrives: nothing is stored.
        r, _ = _upload(port, request(port, "/cgi-bin/len.sh?big", "POST", body=body))
        assert (r.status, r.body.strip()) == (200, b"%d" % len(body))
        assert _used(tmpfs) == 0
        return
    if framing == "chunked":
        data = request(
            port, "/cgi-bin/len.sh?big", "POST", [("Transfer-Encoding", "chunked")]
        ) + chunked(body, 256 * 1024, last=True)
    else:
        data = request(port, "/cgi-bin/len.sh?big", "POST", body=body)
    r, closed = _upload(port, data)
    assert r.status == 507, (r.status, r.body[:300])
    assert r.complete and int(r.header("Content-Length") or 0) == len(r.body)
    assert b"Error code: 507" in r.body
    assert closed

    assert waitFor(lambda: _used(tmpfs) == 0 and not deletedFiles(pid), 5), (
        _used(tmpfs),
        deletedFiles(pid),
    )
    assert os.listdir(tmpfs) == []
    lines = [line for line in server.log().splitlines() if "cannot be stored" in line]
    assert len(lines) == 1, lines
    assert lines[0].endswith(
        "507 for 127.0.0.1: the body of POST /cgi-bin/len.sh?big cannot be "
        "stored: No space left on device"
    )
    _quietLog(server)

    r, _ = _upload(port, request(port, "/cgi-bin/len.sh", "POST", body=fits))
    assert (r.status, r.body.strip()) == (200, b"1500000")


def _h2Upload(port: int, size: int) -> tuple[int, bytes]:
    """
    POST C{size} bytes on one HTTP/2 stream, as fast as flow control lets
    the client; the status and body of the answer.
    """
    client = H2Client("127.0.0.1", port)
    try:
        stream = client.nextStream
        client.conn.send_headers(
            stream,
            [
                *client.headers("/cgi-bin/len.sh?h2")[1:],
                (":method", "POST"),
                ("content-length", str(size)),
            ],
        )
        client.flush()
        sent = 0
        seen: list[object] = []
        deadline = time.monotonic() + 30
        while sent < size and time.monotonic() < deadline:
            room = min(
                client.conn.local_flow_control_window(stream),
                client.conn.max_outbound_frame_size,
                size - sent,
            )
            if room:
                client.conn.send_data(
                    stream, b"x" * room, end_stream=sent + room == size
                )
                sent += room
                client.flush()
                continue
            events = client.events(h2.events.WindowUpdated, 5)
            seen += events
            if any(
                isinstance(e, h2.events.StreamReset | h2.events.StreamEnded)
                or e == "EOF"
                for e in events
            ):
                break
        if not any(isinstance(e, h2.events.StreamEnded) for e in seen):
            seen += client.events(h2.events.StreamEnded, 10)
    finally:
        client.close()
    status = [
        dict(e.headers)[b":status"]
        for e in seen
        if isinstance(e, h2.events.ResponseReceived)
    ]
    body = b"".join(e.data for e in seen if isinstance(e, h2.events.DataReceived))
    return int(status[0]) if status else 0, body


def test_bodyTooLargeForDiskOverHTTP2(
    root: Path, tmpfs: Path, serve: Callable[..., Server], tmp_path: Path
) -> None:
    """
    Over HTTP/2 the stream's body is discarded once the disk is full, and
    the answer, when the stream ends, is the same 507, logged once; nothing
    stays on disk and the connection's other streams are not affected.
    """
    cert = makeCertificate(tmp_path / "certs")
    server = serve(
        root,
        ["--port", "0", "--bind", "127.0.0.1", "--tls-cert", str(cert.combined)],
        env={**os.environ, "TMPDIR": str(tmpfs)},
    )
    assert _h2Upload(server.port, 1_500_000) == (200, b"1500000\n")
    status, body = _h2Upload(server.port, 3 * MiB)
    assert waitFor(lambda: _used(tmpfs) == 0, 5)
    lines = [line for line in server.log().splitlines() if "cannot be stored" in line]
    assert len(lines) == 1, lines
    _quietLog(server)
    assert status == 507, (status, body[:300])
    assert b"Error code: 507" in body


# --------------------------------------------------------------------------
# 3. An access log on a full disk


def test_accessLogOnFullDisk(
    root: Path, tmpfs: Path, serve: Callable[..., Server]
) -> None:
    """
    With the access log's disk full the server keeps answering, warns once
    (naming the file and the error), and leaves only whole lines in the
    file; once there is space again, lines are written again and the
    number lost is logged: lines in the file plus lines lost make every
    request.
    """
    logPath = tmpfs / "access.log"
    server = serve(root, ["--access-log", str(logPath)])
    port = server.port
    # Lines of some 400 bytes, so that the disk fills in the middle of one.
    agent = "x" * 300

    def get(count: int) -> list[int]:
        statuses = []
        with Conn(port) as conn:
            for _ in range(count):
                conn.send(
                    request(port, "/a.txt", headers={"User-Agent": agent}, close=False)
                )
                statuses.append(conn.readResponse().status)
        return statuses

    assert get(5) == [200] * 5
    assert waitFor(lambda: len(logPath.read_text().splitlines()) == 5)
    filler = _fill(tmpfs)
    assert get(40) == [200] * 40
    warnings = lambda: [  # noqa: E731
        line for line in server.log().splitlines() if "Cannot write the access" in line
    ]
    assert waitFor(warnings)
    filler.unlink()
    assert get(5) == [200] * 5
    counted = re.compile(r"can be written again; lines lost: (\d+)\.$")
    reports = waitFor(
        lambda: [m for line in server.log().splitlines() if (m := counted.search(line))]
    )
    assert len(reports) == 1, server.log()[-3000:]
    assert warnings() == [warnings()[0]]
    assert warnings()[0].endswith(
        f"Cannot write the access log {str(logPath)!r}: No space left on device; "
        "requests are served but not logged (lines lost so far: 1; said at most "
        "once a minute)"
    )
    _quietLog(server)

    data = logPath.read_text()
    assert data.endswith("\n")
    lines = data.splitlines()
    for line in lines:
        assert _COMBINED.match(line), line
    lost = int(reports[0].group(1))
    assert lost > 0
    assert len(lines) + lost == 5 + 40 + 5
