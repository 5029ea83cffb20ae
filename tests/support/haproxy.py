"""
A real haproxy (Debian's package) in front of servers started by
L{tests.support.server}, for the end-to-end suites: the shipped
C{contrib/haproxy/haproxy.cfg}, its example addresses replaced by loopback
ones.
"""

from __future__ import annotations

import shutil
import signal
import socket
import subprocess
import time
from collections.abc import Mapping
from dataclasses import dataclass
from pathlib import Path

__all__ = ["CONTRIB", "HAPROXY", "HAProxy", "configure", "startHAProxy"]

HAPROXY = shutil.which("haproxy")
CONTRIB = Path(__file__).parents[2] / "contrib" / "haproxy" / "haproxy.cfg"


def configure(text: str, replacements: Mapping[str, str]) -> str:
    """
    C{text} with each key of C{replacements} replaced by its value; each
    must occur exactly once, so that the test fails loudly when the shipped
    configuration changes under it.
    """
    for old, new in replacements.items():
        count = text.count(old)
        if count != 1:
            raise AssertionError(f"{old!r} occurs {count} times in the configuration")
        text = text.replace(old, new)
    return text


@dataclass
class HAProxy:
    """
    A running C{haproxy -db}.
    """

    process: subprocess.Popen[bytes]
    statsSocket: Path
    logPath: Path

    def log(self) -> str:
        return self.logPath.read_text("utf-8", "replace")

    def command(self, line: str) -> str:
        """
        The answer to one command on the stats socket.
        """
        with socket.socket(socket.AF_UNIX) as s:
            s.settimeout(5)
            s.connect(str(self.statsSocket))
            s.sendall(line.encode() + b"\n")
            chunks = []
            while chunk := s.recv(65536):
                chunks.append(chunk)
        return b"".join(chunks).decode()

    def serverStatus(self) -> dict[tuple[str, str], str]:
        """
        Each server's status (C{UP}, C{DOWN}, ...) by backend and name.
        """
        lines = self.command("show stat").splitlines()
        names = lines[0].lstrip("# ").split(",")
        status = {}
        for line in lines[1:]:
            row = dict(zip(names, line.split(","), strict=False))
            if row.get("svname") not in (None, "FRONTEND", "BACKEND"):
                status[(row["pxname"], row["svname"])] = row["status"]
        return status

    def stop(self) -> None:
        if self.process.poll() is None:
            self.process.send_signal(signal.SIGUSR1)  # soft stop
            try:
                self.process.wait(5)
            except subprocess.TimeoutExpired:
                self.process.kill()
                self.process.wait(5)


def startHAProxy(config: str, directory: Path, ports: list[int]) -> HAProxy:
    """
    Run haproxy with C{config} (whose C{stats socket} path is replaced by
    one in C{directory}) until each of C{ports} on 127.0.0.1 accepts.
    """
    assert HAPROXY is not None
    stats = directory / "haproxy.sock"
    config = configure(config, {"/run/haproxy/cgiserve.sock": str(stats)})
    path = directory / "haproxy.cfg"
    path.write_text(config)
    logPath = directory / "haproxy.log"
    with logPath.open("wb") as log:
        process = subprocess.Popen(
            [HAPROXY, "-db", "-f", str(path)],
            stdout=log,
            stderr=subprocess.STDOUT,
            stdin=subprocess.DEVNULL,
        )
    haproxy = HAProxy(process, stats, logPath)
    deadline = time.monotonic() + 10
    waiting = list(ports)
    while waiting and time.monotonic() < deadline:
        if process.poll() is not None:
            raise RuntimeError(f"haproxy exited:\n{haproxy.log()}")
        try:
            socket.create_connection(("127.0.0.1", waiting[0]), 1).close()
            waiting.pop(0)
        except OSError:
            time.sleep(0.05)
    if waiting or not stats.exists():
        haproxy.stop()
        raise RuntimeError(f"haproxy did not listen:\n{haproxy.log()}")
    return haproxy
