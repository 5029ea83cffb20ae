"""
The real C{twistd -n cgiserve} on a loopback port, for the end-to-end suites.
"""

from __future__ import annotations

import re
import signal
import socket
import subprocess
import sys
import tempfile
import time
from collections.abc import Callable
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

__all__ = [
    "TWISTD",
    "Server",
    "makeDocroot",
    "rawRequest",
    "runTwistd",
    "scriptRunning",
    "startServer",
    "statusOf",
    "waitFor",
]

TWISTD = str(Path(sys.executable).with_name("twistd"))

_SERVING = re.compile(rb"Serving (HTTPS?) on (\S+) port (\d+)")


@dataclass
class Server:
    """
    A running C{twistd -n cgiserve}.
    """

    process: subprocess.Popen[bytes]
    host: str
    port: int
    logPath: Path
    root: Path
    args: list[str] = field(default_factory=list)
    scheme: str = "http"

    def url(self, path: str = "/") -> str:
        host = f"[{self.host}]" if ":" in self.host else self.host
        return f"{self.scheme}://{host}:{self.port}{path}"

    def log(self) -> str:
        return self.logPath.read_text("utf-8", "replace")

    def stop(self) -> int:
        """
        Stop the server with SIGTERM and return its exit status.
        """
        if self.process.poll() is None:
            self.process.send_signal(signal.SIGTERM)
            try:
                self.process.wait(10)
            except subprocess.TimeoutExpired:
                self.process.kill()
                self.process.wait(5)
        return self.process.returncode


def runTwistd(
    args: list[str], cwd: Path, timeout: float = 20
) -> subprocess.CompletedProcess[str]:
    """
    Run C{twistd -n --pidfile= cgiserve ARGS} to completion (for commands
    that must exit, such as bad configuration).
    """
    return subprocess.run(
        [TWISTD, "-n", "--pidfile=", "cgiserve", *args],
        cwd=cwd,
        capture_output=True,
        text=True,
        timeout=timeout,
        stdin=subprocess.DEVNULL,
    )


def startServer(
    root: Path,
    args: list[str] | None = None,
    logDir: Path | None = None,
    env: dict[str, str] | None = None,
    *,
    timeout: float = 20,
    twistdArgs: list[str] | None = None,
) -> Server:
    """
    Start C{twistd -n cgiserve} serving C{root} on an ephemeral loopback
    port and wait until it says where it listens.
    """
    args = list(args or [])
    if not any(a == "--port" or a.startswith("--port=") for a in args):
        args = ["--port", "tcp:0:interface=127.0.0.1", *args]
    logPath = (logDir or root.parent) / f"twistd-{time.monotonic_ns()}.log"
    logFile = logPath.open("wb")
    process = subprocess.Popen(
        [
            TWISTD,
            "-n",
            "--pidfile=",
            *(twistdArgs or []),
            "cgiserve",
            "--directory",
            str(root),
            *args,
        ],
        cwd=root,
        stdout=logFile,
        stderr=subprocess.STDOUT,
        stdin=subprocess.DEVNULL,
        env=env,
    )
    logFile.close()
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        match = _SERVING.search(logPath.read_bytes())
        if match:
            return Server(
                process,
                match.group(2).decode(),
                int(match.group(3)),
                logPath,
                root,
                args,
                match.group(1).decode().lower(),
            )
        if process.poll() is not None:
            break
        time.sleep(0.05)
    process.kill()
    process.wait()
    raise RuntimeError(f"twistd cgiserve did not start:\n{logPath.read_text()}")


def makeDocroot(prefix: str) -> Path:
    """
    A fresh document root that nobody can reach (under /tmp, mode 0755).
    """
    root = Path(tempfile.mkdtemp(prefix=prefix, dir="/tmp"))
    root.chmod(0o755)
    return root


def waitFor(predicate: Callable[[], Any], timeout: float = 5.0) -> Any:
    """
    Poll until C{predicate} returns something true; return it (or the last
    false value after C{timeout}).
    """
    deadline = time.monotonic() + timeout
    while True:
        value = predicate()
        if value or time.monotonic() > deadline:
            return value
        time.sleep(0.05)


def scriptRunning(path: Path) -> bool:
    """
    Whether a process runs the script at C{path} (its command line names it).
    """
    found = subprocess.run(["pgrep", "-f", str(path)], capture_output=True)
    return found.returncode == 0


def rawRequest(
    port: int, data: bytes, host: str = "127.0.0.1", timeout: float = 5
) -> bytes:
    """
    Send C{data} as is and return everything the server sends until it
    closes the connection or goes quiet for C{timeout} seconds.
    """
    with socket.create_connection((host, port), timeout=timeout) as sock:
        sock.sendall(data)
        chunks = []
        try:
            while chunk := sock.recv(65536):
                chunks.append(chunk)
        except TimeoutError:
            pass
    return b"".join(chunks)


def statusOf(response: bytes) -> int:
    """
    The status code of a raw response.
    """
    return int(response.split(b" ", 2)[1])
