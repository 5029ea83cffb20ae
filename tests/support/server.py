"""
The real C{twistd -n cgiserve} on a loopback port, for the end-to-end suites.
"""

from __future__ import annotations

import contextlib
import os
import re
import signal
import socket
import subprocess
import sys
import tempfile
import time
from collections.abc import Callable, Iterator
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from tests.support.shell import writeFile

__all__ = [
    "ENTRY_POINTS",
    "TWISTD",
    "ScriptTree",
    "Server",
    "assertHealthy",
    "freePort",
    "makeDocroot",
    "makeScriptTree",
    "runTwistd",
    "serverCommand",
    "sharedServer",
    "startServer",
    "staysHealthy",
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

    def logLines(self, *needles: str, timeout: float = 5.0) -> list[str]:
        """
        The log lines that contain all of C{needles}, waiting up to
        C{timeout} seconds for at least one to be written.
        """

        def find() -> list[str]:
            return [
                line
                for line in self.log().splitlines()
                if all(needle in line for needle in needles)
            ]

        found: list[str] = waitFor(find, timeout)
        return found

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


# The commands startServer can start the server with (ENTRY_POINTS[0] is
# the default): twistd's plugin, and http.server's command line as
# python -m http.server --cgi users run it.
ENTRY_POINTS = ("twistd", "python -m")


def serverCommand(
    root: Path,
    args: list[str],
    entryPoint: str = "twistd",
    twistdArgs: list[str] | None = None,
) -> list[str]:
    """
    The command that serves C{root} with C{args} on an ephemeral loopback
    port: C{twistd -n cgiserve --port tcp:0:interface=127.0.0.1 ...}, or
    C{python -m twisted_cgiserve --cgi -b 127.0.0.1 -d ROOT ... 0} (with
    C{--cgi} unless C{args} say C{--no-cgi}: CGI is on in both by default).
    """
    hasPort = any(a == "--port" or a.startswith("--port=") for a in args)
    if entryPoint == "twistd":
        if not hasPort:
            args = ["--port", "tcp:0:interface=127.0.0.1", *args]
        return [
            TWISTD,
            "-n",
            "--pidfile=",
            *(twistdArgs or []),
            "cgiserve",
            "--directory",
            str(root),
            *args,
        ]
    assert entryPoint == "python -m", entryPoint
    assert not twistdArgs, "python -m takes no twistd options"
    cgi = [] if "--no-cgi" in args else ["--cgi"]
    return [
        sys.executable,
        "-m",
        "twisted_cgiserve",
        *cgi,
        "-b",
        "127.0.0.1",
        "-d",
        str(root),
        *args,
        *([] if hasPort else ["0"]),
    ]


def _workerCount(args: list[str]) -> str | None:
    """
    The value of a C{--workers} option in C{args}, if there is one.
    """
    for i, arg in enumerate(args):
        if arg == "--workers" and i + 1 < len(args):
            return args[i + 1]
        if arg.startswith("--workers="):
            return arg.partition("=")[2]
    return None


def startServer(
    root: Path,
    args: list[str] | None = None,
    logDir: Path | None = None,
    env: dict[str, str] | None = None,
    *,
    timeout: float = 20,
    twistdArgs: list[str] | None = None,
    entryPoint: str = "twistd",
) -> Server:
    """
    Start C{twistd -n cgiserve} (or, with C{entryPoint="python -m"},
    C{python -m twisted_cgiserve --cgi}) serving C{root} on an ephemeral
    loopback port and wait until it says where it listens.

    With C{CGISERVE_TEST_WORKERS=N} in the environment, the server runs
    with C{--workers=N} (unless C{args} say how many).
    """
    args = list(args or [])
    testWorkers = os.environ.get("CGISERVE_TEST_WORKERS")
    if testWorkers and _workerCount(args) is None:
        # CI's second run of the suites about processes and signals: every
        # server they start is a supervisor and its workers.
        args.append(f"--workers={testWorkers}")
    command = serverCommand(root, args, entryPoint, twistdArgs)
    logPath = (logDir or root.parent) / f"twistd-{time.monotonic_ns()}.log"
    logFile = logPath.open("wb")
    process = subprocess.Popen(
        command,
        cwd=root,
        stdout=logFile,
        stderr=subprocess.STDOUT,
        stdin=subprocess.DEVNULL,
        env=env,
    )
    logFile.close()
    deadline = time.monotonic() + timeout
    # A supervisor says where it listens before its workers serve: wait
    # for them too, so that timings start with a server that answers.
    workers = _workerCount(args) not in (None, "1")
    while time.monotonic() < deadline:
        log = logPath.read_bytes()
        match = _SERVING.search(log)
        if match and workers and b"workers are serving." not in log:
            match = None
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


def assertHealthy(server: Server, since: int = 0) -> None:
    """
    The server still runs and its log (from character C{since} on) holds
    no traceback: what every test against a shared server checks after
    it, so that no check depends on which tests ran before.
    """
    assert server.process.poll() is None, server.log()[since:]
    log = server.log()[since:]
    assert "Traceback" not in log, log
    assert "Unhandled" not in log, log


@contextlib.contextmanager
def staysHealthy(server: Server) -> Iterator[Server]:
    """
    Check L{assertHealthy} over what the server logged within the block;
    for a server that outlives the block, every test that uses it checks
    its own part of the log (no test is left to check it last).
    """
    since = len(server.log())
    yield server
    assertHealthy(server, since)


@contextlib.contextmanager
def sharedServer(server: Server) -> Iterator[Server]:
    """
    A server several tests share: healthy over its whole life (checked
    when the block ends, for what was logged after the last test), and
    stopped whatever happened.
    """
    try:
        yield server
        assertHealthy(server)
    finally:
        server.stop()


def freePort() -> int:
    """
    A TCP port number that was free a moment ago (bind 127.0.0.1:0, close).
    """
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        port: int = s.getsockname()[1]
        return port


@dataclass
class ScriptTree:
    """
    A document root of scripts that record what they did in C{state}.

    @ivar state: A world-writable directory: scripts run as nobody (or
        C{--cgi-user}) leave their markers here.
    @ivar logs: Where the servers' logs go.
    """

    root: Path
    state: Path
    logs: Path


def makeScriptTree(
    prefix: str, scripts: Callable[[Path], dict[str, bytes]], logs: Path
) -> ScriptTree:
    """
    A fresh L{makeDocroot} holding C{scripts(state)} (relative path:
    content, mode 0755), every directory but C{state} mode 0755.
    """
    root = makeDocroot(prefix)
    state = root / "state"
    state.mkdir()
    state.chmod(0o1777)
    for name, data in scripts(state).items():
        writeFile(root / name, data)
    for directory, _, _ in os.walk(root):
        if directory != str(state):
            os.chmod(directory, 0o755)
    return ScriptTree(root, state, logs)
