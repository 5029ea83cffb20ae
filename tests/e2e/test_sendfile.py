"""
End-to-end tests of zero-copy file bodies (L{twisted_cgiserve._http.sendfile})
with the real server and real clients: files byte for byte, ranges, HEAD,
the send deadline, descriptors released, the graceful shutdown, TLS still
copying, and C{sendfile(2)} seen being called (with strace, where
installed).
"""

from __future__ import annotations

import hashlib
import re
import shutil
import signal
import socket
import subprocess
import time
from collections.abc import Callable, Iterator
from pathlib import Path

import pytest

from tests.support.certs import makeCertificate
from tests.support.probes import fdCount, openFiles
from tests.support.server import Server, makeDocroot, waitFor

pytestmark = pytest.mark.e2e

MiB = 1024 * 1024
CURL = shutil.which("curl")


@pytest.fixture(scope="module")
def site() -> Iterator[Path]:
    """
    A docroot with a 10 MiB and a 100 MiB file of random bytes.
    """
    root = makeDocroot("cgiserve-sendfile-")
    with (root / "10m.bin").open("wb") as f:
        f.write(_random(10 * MiB))
    with (root / "100m.bin").open("wb") as f:
        for _ in range(10):
            f.write(_random(10 * MiB))
    yield root
    shutil.rmtree(root, ignore_errors=True)


def _random(n: int) -> bytes:
    import os  # noqa: PLC0415

    return os.urandom(n)


def _digest(data: bytes) -> str:
    return hashlib.sha256(data).hexdigest()


def _curl(*args: str, timeout: float = 60) -> subprocess.CompletedProcess[bytes]:
    if CURL is None:
        pytest.skip("curl is not installed")
    return subprocess.run(
        [CURL, "-sS", *args], capture_output=True, timeout=timeout, check=False
    )


class _Strace:
    """
    strace attached to the server, recording its sendfile(2) calls.
    """

    def __init__(self, pid: int, out: Path) -> None:
        strace = shutil.which("strace")
        if strace is None:
            pytest.skip("strace is not installed: cannot see sendfile(2) calls")
        self.out = out
        self.process = subprocess.Popen(
            [strace, "-f", "-e", "trace=sendfile", "-p", str(pid), "-o", str(out)],
            stdout=subprocess.DEVNULL,
            stderr=subprocess.DEVNULL,
        )
        # strace says nothing until it is attached; give it a moment, and
        # skip where ptrace is not allowed.
        time.sleep(0.5)
        if self.process.poll() is not None:
            pytest.skip("strace cannot attach to the server (ptrace refused)")

    def calls(self) -> list[str]:
        if not self.out.exists():
            return []
        return [
            line
            for line in self.out.read_text().splitlines()
            if "sendfile(" in line and "resumed" not in line
        ]

    def stop(self) -> None:
        self.process.terminate()
        self.process.wait(10)


def test_largeFilesByteForByteWithSendfile(
    serve: Callable[..., Server], site: Path, tmp_path: Path
) -> None:
    """
    A 10 MiB and a 100 MiB file arrive byte for byte, sent with
    sendfile(2) (strace sees it called); a single range is sent with
    sendfile too, a multi-range response is copied (no sendfile call), and
    all of it on one kept-alive connection where curl reuses it.
    """
    server = serve(site)
    trace = _Strace(server.process.pid, tmp_path / "strace.txt")
    try:
        small = _curl(server.url("/10m.bin"))
        assert small.returncode == 0, small.stderr
        assert _digest(small.stdout) == _digest((site / "10m.bin").read_bytes())
        big = _curl(server.url("/100m.bin"))
        assert big.returncode == 0, big.stderr
        assert _digest(big.stdout) == _digest((site / "100m.bin").read_bytes())
        assert waitFor(lambda: len(trace.calls()) >= 2, 5), trace.calls()

        before = len(trace.calls())
        ranged = _curl("-r", "1000-5000000", server.url("/100m.bin"))
        assert ranged.stdout == (site / "100m.bin").read_bytes()[1000:5000001]
        assert waitFor(lambda: len(trace.calls()) > before, 5)

        time.sleep(0.3)
        before = len(trace.calls())
        multi = _curl("-r", "0-99999,200000-399999", server.url("/10m.bin"))
        assert multi.returncode == 0
        data = (site / "10m.bin").read_bytes()
        assert b"multipart/byteranges" not in multi.stdout[:0]
        assert data[:100000] in multi.stdout
        assert data[200000:400000] in multi.stdout
        time.sleep(0.5)
        assert len(trace.calls()) == before, trace.calls()[before:]
    finally:
        trace.stop()
    lines = server.logLines('"GET /100m.bin HTTP/1.1" 200')
    assert f" {100 * MiB} " in lines[0]


# What one sendfile(2) call asked for, in strace's line for it.
_ASKED = re.compile(rb"sendfile\(\d+, \d+, \[\d+\](?: => \[\d+\])?, (\d+)\)")


def test_oneModerateSendfilePerTurn(
    serve: Callable[..., Server], site: Path, tmp_path: Path
) -> None:
    """
    A fast client is sent the file a moderate share per sendfile(2) call
    (at most 512 KiB, as lighttpd sends 256 KiB), never the socket's whole
    buffer at once: a 10 MiB file takes at least 20 calls.
    """
    server = serve(site)
    trace = _Strace(server.process.pid, tmp_path / "strace.txt")
    try:
        result = _curl(server.url("/10m.bin"))
        assert result.returncode == 0, result.stderr
        assert _digest(result.stdout) == _digest((site / "10m.bin").read_bytes())
        assert waitFor(lambda: len(trace.calls()) >= 20, 5), trace.calls()
    finally:
        trace.stop()
    asked = [
        int(match.group(1))
        for line in trace.calls()
        if (match := _ASKED.search(line.encode()))
    ]
    assert len(asked) >= 20, trace.calls()
    assert max(asked) <= 512 * 1024, asked


def test_head(serve: Callable[..., Server], site: Path) -> None:
    """
    HEAD on a large file gives its length and no body.
    """
    server = serve(site)
    result = _curl("-I", server.url("/100m.bin"))
    assert result.returncode == 0
    assert f"Content-Length: {100 * MiB}".encode() in result.stdout
    assert result.stdout.endswith(b"\r\n\r\n")


def test_slowReaderCutBySendTimeout(serve: Callable[..., Server], site: Path) -> None:
    """
    A client reading at 1 KiB/s (curl --limit-rate) leaves the socket full
    for longer than --send-timeout: it is cut, logged once, and the file
    and socket released. (curl itself only notices once it has read what
    its socket already holds.)
    """
    if CURL is None:
        pytest.skip("curl is not installed")
    server = serve(site, ["--send-timeout", "1"])
    pid = server.process.pid
    baseline = fdCount(pid)
    client = subprocess.Popen(
        [CURL, "-sS", "--limit-rate", "1K", "-o", "/dev/null", server.url("/100m.bin")],
        stderr=subprocess.DEVNULL,
    )
    try:
        started = time.monotonic()
        lines = server.logLines("--send-timeout", timeout=10)
        assert time.monotonic() - started >= 0.9
        assert len(lines) == 1
        assert "/100m.bin" in lines[0]
        assert waitFor(lambda: fdCount(pid) <= baseline, 5), openFiles(pid)
    finally:
        client.kill()
        client.wait()


def test_disconnectMidFileReleasesTheFile(
    serve: Callable[..., Server], site: Path
) -> None:
    """
    A client that reads a little of a 100 MiB file and hangs up: the
    server closes the file and the socket.
    """
    server = serve(site)
    pid = server.process.pid
    baseline = fdCount(pid)
    conn = socket.create_connection((server.host, server.port))
    conn.setsockopt(socket.SOL_SOCKET, socket.SO_RCVBUF, 4096)
    conn.sendall(b"GET /100m.bin HTTP/1.1\r\nHost: x\r\n\r\n")
    assert conn.recv(4096)
    assert waitFor(lambda: any(f.endswith("100m.bin") for f in openFiles(pid)), 5), (
        openFiles(pid)
    )
    conn.close()
    assert waitFor(
        lambda: not any(f.endswith("100m.bin") for f in openFiles(pid)), 5
    ), openFiles(pid)
    assert waitFor(lambda: fdCount(pid) <= baseline, 5), openFiles(pid)
    # Still serving.
    assert _curl("-o", "/dev/null", server.url("/10m.bin")).returncode == 0


def test_gracefulShutdownFinishesADownload(
    serve: Callable[..., Server], site: Path, tmp_path: Path
) -> None:
    """
    SIGTERM while a 100 MiB download is in flight (curl reading at
    40 MB/s): the download completes byte for byte, then the server exits
    with status 0.
    """
    server = serve(site, ["--shutdown-grace", "30"])
    out = tmp_path / "download"
    if CURL is None:
        pytest.skip("curl is not installed")
    client = subprocess.Popen(
        [CURL, "-sS", "--limit-rate", "40M", "-o", str(out), server.url("/100m.bin")]
    )
    assert waitFor(lambda: out.exists() and out.stat().st_size > MiB, 10)
    server.process.send_signal(signal.SIGTERM)
    assert client.wait(60) == 0
    assert _digest(out.read_bytes()) == _digest((site / "100m.bin").read_bytes())
    assert server.process.wait(15) == 0, server.log()[-2000:]


def test_tlsStillCopies(
    serve: Callable[..., Server], site: Path, tmp_path: Path
) -> None:
    """
    Over TLS the file is copied (encrypted in user space), byte for byte,
    and sendfile(2) is not called.
    """
    certs = makeCertificate(tmp_path / "tls")
    server = serve(
        site,
        [
            "--bind", "127.0.0.1", "--port", "0",
            "--tls-cert", str(certs.cert), "--tls-key", str(certs.key),
        ],
    )  # fmt: skip
    trace = _Strace(server.process.pid, tmp_path / "strace.txt")
    try:
        result = _curl("-k", "--http1.1", server.url("/10m.bin"))
        assert result.returncode == 0, result.stderr
        assert _digest(result.stdout) == _digest((site / "10m.bin").read_bytes())
        result = _curl("-k", "--http2", "-r", "5-300000", server.url("/10m.bin"))
        assert result.stdout == (site / "10m.bin").read_bytes()[5:300001]
        time.sleep(0.5)
        assert trace.calls() == []
    finally:
        trace.stop()
