"""
End-to-end tests of C{python -m twisted_cgiserve} and the C{cgiserve}
script: http.server's command line, run as a README says to run it, with
real clients on loopback.
"""

from __future__ import annotations

import re
import shutil
import signal
import subprocess
import sys
import threading
from collections.abc import Callable, Iterator
from dataclasses import dataclass
from pathlib import Path

import pytest
import requests

from tests.support.certs import makeCertificate
from tests.support.raw import fetch
from tests.support.server import freePort, makeDocroot, waitFor

pytestmark = pytest.mark.e2e

TIMEOUT = 10.0
A_TXT = b"Hello from a.txt\n"
SOURCE_MARKER = b"SCRIPT-SOURCE-MUST-NOT-LEAK"
SCRIPT = (
    b"#!/bin/sh\n# " + SOURCE_MARKER + b"\n"
    b"echo 'Content-Type: text/plain'\necho\necho cgi-output\n"
)
# Answers after a second: a request in flight when the server is stopped.
SLOW = b"#!/bin/sh\nsleep 1\necho 'Content-Type: text/plain'\necho\necho slow-done\n"

CGISERVE = str(Path(sys.executable).with_name("cgiserve"))
COMMANDS = {
    "python -m": [sys.executable, "-m", "twisted_cgiserve"],
    "cgiserve": [CGISERVE],
}

_SERVING = re.compile(
    r"^Serving (HTTPS?) on (\S+) port (\d+) \((https?)://(\S+):(\d+)/\) \.\.\.$"
)


@pytest.fixture
def root() -> Iterator[Path]:
    """
    A document root with a file and scripts in /cgi-bin, where nobody can
    reach it (scripts run as nobody when the tests run as root; pytest's
    tmp_path is in a 0700 directory).
    """
    root = makeDocroot("cgiserve-e2e-main-")
    (root / "a.txt").write_bytes(A_TXT)
    (root / "cgi-bin").mkdir(mode=0o755)
    for name, data in (("script.sh", SCRIPT), ("slow.sh", SLOW)):
        (root / "cgi-bin" / name).write_bytes(data)
        (root / "cgi-bin" / name).chmod(0o755)
    yield root
    shutil.rmtree(root, ignore_errors=True)


@dataclass
class Running:
    process: subprocess.Popen[bytes]
    out: Path
    err: Path

    def stdout(self) -> str:
        return self.out.read_text("utf-8", "replace")

    def stderr(self) -> str:
        return self.err.read_text("utf-8", "replace")

    def serving(self) -> re.Match[str]:
        def found() -> re.Match[str] | None:
            lines = self.stdout().splitlines()
            return _SERVING.match(lines[0]) if lines else None

        match: re.Match[str] | None = waitFor(
            lambda: found() or self.process.poll() is not None, 20
        )
        assert isinstance(match, re.Match), (self.stdout(), self.stderr())
        return match

    @property
    def port(self) -> int:
        return int(self.serving()[3])

    def interrupt(self) -> int:
        self.process.send_signal(signal.SIGINT)
        return self.process.wait(TIMEOUT)


@pytest.fixture(params=list(COMMANDS))
def start(
    request: pytest.FixtureRequest, tmp_path: Path
) -> Iterator[Callable[..., Running]]:
    """
    Start the command (C{python -m twisted_cgiserve}, then the C{cgiserve}
    script) with the given arguments, in an empty working directory; every
    process is ended at the end of the test.
    """
    started: list[Running] = []
    cwd = tmp_path / "cwd"
    cwd.mkdir()

    def run(*args: str) -> Running:
        n = len(started)
        out, err = tmp_path / f"out-{n}.txt", tmp_path / f"err-{n}.txt"
        with out.open("wb") as o, err.open("wb") as e:
            process = subprocess.Popen(
                [*COMMANDS[request.param], *args],
                cwd=cwd,
                stdin=subprocess.DEVNULL,
                stdout=o,
                stderr=e,
            )
        running = Running(process, out, err)
        started.append(running)
        return running

    yield run
    for running in started:
        if running.process.poll() is None:
            running.process.kill()
            running.process.wait()


def complete(command: str, *args: str) -> subprocess.CompletedProcess[str]:
    return subprocess.run(
        [*COMMANDS[command], *args],
        capture_output=True,
        text=True,
        timeout=30,
        stdin=subprocess.DEVNULL,
    )


def test_cgiRunsScripts(start: Callable[..., Running], root: Path) -> None:
    """
    C{--cgi -b 127.0.0.1 -d ROOT PORT}, as READMEs say for http.server:
    the script runs; standard output holds exactly http.server's start-up
    line, and standard error one line per request.
    """
    server = start("--cgi", "-b", "127.0.0.1", "-d", str(root), "0")
    port = server.port
    r = fetch(port, "/cgi-bin/script.sh")
    assert (r.status, r.body) == (200, b"cgi-output\n")
    assert fetch(port, "/a.txt").body == A_TXT
    assert server.stdout() == (
        f"Serving HTTP on 127.0.0.1 port {port} (http://127.0.0.1:{port}/) ...\n"
    )
    lines = waitFor(
        lambda: server.stderr().splitlines() if "a.txt" in server.stderr() else None
    )
    assert len(lines) == 2, lines
    assert re.match(
        r'^127\.0\.0\.1 - - \[[^]]+\] "GET /cgi-bin/script\.sh HTTP/1\.1" 200 ',
        lines[0],
    )
    assert '"GET /a.txt HTTP/1.1" 200 ' in lines[1]
    assert server.interrupt() == 0


def test_withoutCGIScriptsAreFiles(start: Callable[..., Running], root: Path) -> None:
    """
    Without C{--cgi}, /cgi-bin is an ordinary directory, as in http.server:
    the script's bytes are served and it does not run.
    """
    server = start("-b", "127.0.0.1", "-d", str(root), "0")
    r = fetch(server.port, "/cgi-bin/script.sh")
    assert r.status == 200
    # Its bytes, not its output.
    assert r.body == SCRIPT


def test_positionalPortAndBind(start: Callable[..., Running], root: Path) -> None:
    """
    The port is http.server's positional argument, on the C{--bind}
    address; the served directory is C{-d}'s, not the working directory.
    """
    port = freePort()
    server = start("--bind", "127.0.0.1", "--directory", str(root), str(port))
    match = server.serving()
    assert match[2] == "127.0.0.1"
    assert int(match[3]) == port
    assert fetch(port, "/a.txt").body == A_TXT


def test_headers(start: Callable[..., Running], root: Path) -> None:
    """
    C{-H NAME VALUE} (Python 3.15) and C{-H "Name: value"} both add a
    header to successful responses.
    """
    server = start(
        "-b", "127.0.0.1", "-d", str(root), "-H", "X-One", "first value",
        "--header", "X-Two: second", "0",
    )  # fmt: skip
    r = requests.get(f"http://127.0.0.1:{server.port}/a.txt", timeout=TIMEOUT)
    assert r.headers["X-One"] == "first value"
    assert r.headers["X-Two"] == "second"


def test_tls(start: Callable[..., Running], root: Path, tmp_path: Path) -> None:
    """
    C{--tls-cert} and C{--tls-key}, as Python 3.14's http.server: HTTPS,
    said so in the start-up line.
    """
    certs = makeCertificate(tmp_path / "certs")
    server = start(
        "-b", "127.0.0.1", "-d", str(root), "--tls-cert", str(certs.cert),
        "--tls-key", str(certs.key), "0",
    )  # fmt: skip
    match = server.serving()
    assert (match[1], match[4]) == ("HTTPS", "https")
    r = requests.get(
        f"https://127.0.0.1:{match[3]}/a.txt", verify=str(certs.cert), timeout=TIMEOUT
    )
    assert r.content == A_TXT


def test_twistdOptions(start: Callable[..., Running], root: Path) -> None:
    """
    Every option of C{twistd cgiserve} is accepted too: here
    C{--cgi-timeout} ends a script that stays silent (504).
    """
    (root / "cgi-bin" / "silent.sh").write_bytes(b"#!/bin/sh\nsleep 30\n")
    (root / "cgi-bin" / "silent.sh").chmod(0o755)
    server = start(
        "--cgi", "-b", "127.0.0.1", "-d", str(root), "--cgi-timeout", "0.5", "0"
    )
    assert fetch(server.port, "/cgi-bin/silent.sh").status == 504


@pytest.mark.parametrize("command", list(COMMANDS))
def test_help(command: str) -> None:
    """
    C{--help} lists http.server's options and those of C{twistd cgiserve},
    on standard output, exit status 0.
    """
    done = complete(command, "--help")
    assert done.returncode == 0
    assert done.stderr == ""
    for option in ("--cgi ", "-b, --bind", "-d, --directory", "-p, --protocol"):
        assert option in done.stdout, option
    for option in ("-H, --header", "--tls-cert", "--tls-password-file"):
        assert option in done.stdout, option
    for option in ("--cgi-timeout", "--cgi-dir", "--access-log", "--port"):
        assert option in done.stdout, option


@pytest.mark.parametrize("command", list(COMMANDS))
@pytest.mark.parametrize(
    "args, message",
    [
        (["--bogus"], "option --bogus not recognized"),
        (["-p", "HTTP/2.0"], "--protocol 'HTTP/2.0' is not HTTP/1.0 or HTTP/1.1"),
        (["--cgi-timeout", "soon"], "--cgi-timeout 'soon' is not a number"),
        (["--tls-key", "k.pem"], "--tls-key requires --tls-cert"),
        (["--cgi", "--no-cgi"], "--cgi and --no-cgi contradict each other"),
        # Found while the service is made, after parsing: named alike.
        (["--auth-file", "/nonexistent-users"], "cannot read --auth-file"),
        (["--tls-cert", "/nonexistent.pem"], "cannot read --tls-cert"),
        # --cgi-debug takes its scope as a separate word, not as the port.
        (["--cgi-debug", "all", "x"], "bad --port x: "),
    ],
)
def test_badOptions(command: str, args: list[str], message: str) -> None:
    """
    A bad option is one line on standard error naming the command, no
    traceback, exit status 2.
    """
    done = complete(command, *args)
    assert done.returncode == 2
    assert done.stdout == ""
    assert done.stderr.count("\n") == 1, done.stderr
    name = "python -m twisted_cgiserve" if command == "python -m" else "cgiserve"
    assert done.stderr.startswith(f"{name}: error: {message}"), done.stderr


def test_portInUse(start: Callable[..., Running], root: Path) -> None:
    """
    A port that cannot be bound: one line, exit status 1.
    """
    first = start("-b", "127.0.0.1", "-d", str(root), "0")
    second = start("-b", "127.0.0.1", "-d", str(root), str(first.port))
    assert second.process.wait(TIMEOUT) == 1
    assert "cannot listen on" in second.stderr()
    assert "Traceback" not in second.stderr()


def test_interruptStopsGracefully(start: Callable[..., Running], root: Path) -> None:
    """
    Ctrl-C (SIGINT) stops the server with exit status 0 and http.server's
    words, after the request in progress got its whole response.
    """
    server = start("--cgi", "-b", "127.0.0.1", "-d", str(root), "0")
    port = server.port
    responses = []

    def slow() -> None:
        responses.append(fetch(port, "/cgi-bin/slow.sh"))

    client = threading.Thread(target=slow)
    client.start()
    waitFor(lambda: "slow.sh" in subprocess.run(
        ["ps", "-eo", "args"], capture_output=True, text=True
    ).stdout)  # fmt: skip
    assert server.interrupt() == 0
    client.join(TIMEOUT)
    [response] = responses
    assert (response.status, response.body) == (200, b"slow-done\n")
    assert server.stdout().endswith("\nKeyboard interrupt received, exiting.\n")
    assert "Traceback" not in server.stderr()
