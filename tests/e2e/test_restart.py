"""
End to end: restarting the server while clients keep using it fails no
request, when the listening socket is held by a parent across the restart
as systemd holds a socket unit's (here a small stand-in parent passes it
the way systemd does: descriptor 3, C{LISTEN_FDS}, C{LISTEN_PID},
C{LISTEN_FDNAMES}).

The old process stops accepting, answers what it has accepted (requests in
progress, requests still arriving, connections just accepted), closes the
connections that are idle between requests (clients retry those), and
exits; connections that arrive meanwhile wait in the socket's queue for
the new process.
"""

from __future__ import annotations

import os
import shutil
import signal
import socket
import subprocess
import sys
import threading
import time
from collections import Counter
from collections.abc import Iterator
from pathlib import Path

import pytest

from tests.support.certs import CertFiles, makeCertificate
from tests.support.server import TWISTD, makeDocroot, waitFor
from tests.support.shell import writeFile

pytestmark = pytest.mark.e2e

CURL = shutil.which("curl")

# What systemd does between fork and exec: the socket becomes descriptor 3,
# and LISTEN_PID names the process that execs the server.
_EXEC_WITH_SOCKET = """
import os, sys
os.dup2(int(sys.argv[1]), 3)
os.environ["LISTEN_PID"] = str(os.getpid())
os.execv(sys.argv[2], sys.argv[2:])
"""

QUICK = b"""#!/bin/sh
sleep 0.05
printf 'Content-Type: text/plain\\r\\n\\r\\nscript\\n'
"""


@pytest.fixture
def site() -> Iterator[Path]:
    root = makeDocroot("cgiserve-restart-")
    (root / "a.txt").write_bytes(b"static\n")
    cgi = root / "cgi-bin"
    cgi.mkdir(mode=0o755)
    writeFile(cgi / "quick.sh", QUICK)
    yield root
    shutil.rmtree(root, ignore_errors=True)


class SocketParent:
    """
    Hold a listening socket and start servers on it one after another, as
    systemd does for a socket-activated service.
    """

    def __init__(self, site: Path, cert: CertFiles, logDir: Path) -> None:
        self.listener = socket.socket()
        self.listener.bind(("127.0.0.1", 0))
        self.listener.listen(128)
        self.port = self.listener.getsockname()[1]
        self.site = site
        self.cert = cert
        self.logDir = logDir
        self.process: subprocess.Popen[bytes] | None = None
        self.logs: list[Path] = []

    def start(self) -> None:
        fd = self.listener.fileno()
        log = self.logDir / f"twistd-{len(self.logs)}.log"
        self.logs.append(log)
        env = {**os.environ, "LISTEN_FDS": "1", "LISTEN_FDNAMES": "web"}
        with log.open("wb") as out:
            self.process = subprocess.Popen(
                [
                    sys.executable, "-c", _EXEC_WITH_SOCKET, str(fd),
                    TWISTD, "-n", "--pidfile=", "cgiserve",
                    "--directory", str(self.site),
                    "--port", "systemd:domain=INET:name=web",
                    "--tls-cert", str(self.cert.cert),
                    "--tls-key", str(self.cert.key),
                    "--cgi-user", "nobody",
                ],
                pass_fds=[fd], env=env, stdout=out, stderr=subprocess.STDOUT,
                stdin=subprocess.DEVNULL, cwd=self.site,
            )  # fmt: skip
        assert waitFor(lambda: b"Serving HTTPS" in log.read_bytes(), 20), (
            log.read_text()
        )

    def stop(self) -> int:
        assert self.process is not None
        self.process.send_signal(signal.SIGTERM)
        try:
            return self.process.wait(30)
        finally:
            if self.process.poll() is None:
                self.process.kill()

    def close(self) -> None:
        if self.process is not None and self.process.poll() is None:
            self.stop()
        self.listener.close()


class Clients:
    """
    Clients that fetch URLs over and over with curl, HTTP/1.1 and HTTP/2,
    several per connection, until told to stop; every status and every
    curl failure is kept.
    """

    def __init__(self, port: int, count: int) -> None:
        self.port = port
        self.codes: Counter[str] = Counter()
        self.failures: list[str] = []
        self._stop = threading.Event()
        self._threads = [
            threading.Thread(
                target=self._run, args=("--http2" if i % 2 else "--http1.1",)
            )
            for i in range(count)
        ]

    def _run(self, protocol: str) -> None:
        assert CURL is not None
        base = f"https://127.0.0.1:{self.port}"
        urls = [f"{base}/a.txt", f"{base}/cgi-bin/quick.sh"] * 5
        fetches = [arg for url in urls for arg in ("-o", "/dev/null", url)]
        while not self._stop.is_set():
            result = subprocess.run(
                [CURL, "-sk", protocol, "--max-time", "30",
                 "-w", "%{http_code}:%{exitcode}:%{http_version}\\n", *fetches],
                capture_output=True, text=True,
            )  # fmt: skip
            outcomes = result.stdout.split()
            codes = [outcome.split(":")[0] for outcome in outcomes]
            self.codes.update(codes)
            if result.returncode != 0 or codes != ["200"] * len(urls):
                self.failures.append(
                    f"{protocol}: curl exit {result.returncode}, {outcomes}, "
                    f"{result.stderr.strip()}"
                )

    def __enter__(self) -> Clients:
        for thread in self._threads:
            thread.start()
        return self

    def __exit__(self, *exc: object) -> None:
        self._stop.set()
        for thread in self._threads:
            thread.join(60)


@pytest.mark.skipif(CURL is None, reason="curl is not installed")
def test_restartsUnderLoadFailNoRequest(site: Path, tmp_path: Path) -> None:
    """
    8 clients over HTTPS, half of them HTTP/2, while the server is
    restarted 4 times: every request is answered 200, and every old server
    exits with status 0.
    """
    cert: CertFiles = makeCertificate(tmp_path / "tls")
    parent = SocketParent(site, cert, tmp_path)
    try:
        parent.start()
        with Clients(parent.port, 8) as clients:
            for _ in range(4):
                time.sleep(1.0)
                assert parent.stop() == 0
                parent.start()
            time.sleep(1.0)
    finally:
        parent.close()
    assert not clients.failures, clients.failures[:10]
    assert set(clients.codes) == {"200"}, clients.codes
    assert clients.codes["200"] > 100, clients.codes
    for log in parent.logs:
        text = log.read_text()
        assert "Traceback" not in text, text[-3000:]
