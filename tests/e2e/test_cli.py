"""
End-to-end tests of C{twistd -n cgiserve} as a command: its options, its
configuration errors, where it listens, its access log and its shutdown.
Every test runs the real process; servers listen on loopback or on
ephemeral ports only and are stopped at the end of the test.
"""

from __future__ import annotations

import datetime
import os
import re
import shutil
import signal
import socket
import subprocess
import tempfile
import time
from collections.abc import Callable, Iterator
from pathlib import Path

import pytest
import requests

from tests.support.raw import Conn, exchange, fetch, refused, statusOf
from tests.support.server import TWISTD, Server, freePort, makeDocroot, runTwistd

pytestmark = pytest.mark.e2e

TIMEOUT = 10.0
A_TXT = b"Hello from a.txt\n"
# A CGI script whose source and output share nothing: the marker and the
# word "echo" only appear if its bytes are served as a file.
SOURCE_MARKER = b"SCRIPT-SOURCE-MUST-NOT-LEAK"
SCRIPT = (
    b"#!/bin/sh\n# " + SOURCE_MARKER + b"\n"
    b"echo 'Content-Type: text/plain'\necho\necho cgi-output\n"
)

_SERVING = re.compile(rb"Serving HTTP on (\S+?)(?: port (\d+) \(|$| )", re.MULTILINE)


@pytest.fixture
def root(tmp_path: Path) -> Path:
    """
    A small document root: a file, a subdirectory, and scripts in the
    default CGI directories and in /scripts.
    """
    root = tmp_path / "root"
    root.mkdir()
    (root / "a.txt").write_bytes(A_TXT)
    (root / "sub").mkdir()
    (root / "sub" / "b.txt").write_bytes(b"b\n")
    for directory in ("cgi-bin", "htbin", "scripts"):
        (root / directory).mkdir()
        script = root / directory / "script.sh"
        script.write_bytes(SCRIPT)
        script.chmod(0o755)
    return root


class Launched:
    """
    A C{twistd -n cgiserve} started by these tests (without the
    C{--directory} that conftest's C{startServer} always adds), with every
    address it announced.
    """

    def __init__(
        self, process: subprocess.Popen[bytes], logPath: Path, root: Path
    ) -> None:
        self.process = process
        self.logPath = logPath
        self.root = root
        self.addresses: list[tuple[str, int | None]] = []

    @property
    def port(self) -> int:
        """
        The first announced TCP port.
        """
        port = self.addresses[0][1]
        assert port is not None, self.addresses
        return port

    def log(self) -> str:
        return self.logPath.read_text("utf-8", "replace")

    def stop(self) -> int:
        return Server(self.process, "", 0, self.logPath, self.root).stop()


@pytest.fixture
def launch(tmp_path: Path) -> Iterator[Callable[..., Launched]]:
    """
    Start C{twistd -n --pidfile= cgiserve ARGS} in C{cwd} and wait until it
    announces C{count} listening addresses; stopped at the end of the test.
    """
    started: list[Launched] = []

    def start(
        args: list[str], cwd: Path, count: int = 1, timeout: float = 20
    ) -> Launched:
        logPath = tmp_path / f"launch-{len(started)}.log"
        with logPath.open("wb") as logFile:
            process = subprocess.Popen(
                [TWISTD, "-n", "--pidfile=", "cgiserve", *args],
                cwd=cwd,
                stdout=logFile,
                stderr=subprocess.STDOUT,
                stdin=subprocess.DEVNULL,
            )
        launched = Launched(process, logPath, cwd)
        started.append(launched)
        deadline = time.monotonic() + timeout
        while time.monotonic() < deadline:
            found = _SERVING.findall(logPath.read_bytes())
            if len(found) >= count:
                launched.addresses = [
                    (host.decode(), int(port) if port else None) for host, port in found
                ]
                return launched
            if process.poll() is not None:
                break
            time.sleep(0.05)
        raise AssertionError(f"twistd cgiserve did not start:\n{launched.log()}")

    yield start
    for launched in started:
        launched.stop()


def hasIPv6Loopback() -> bool:
    if not socket.has_ipv6:
        return False
    try:
        with socket.socket(socket.AF_INET6) as s:
            s.bind(("::1", 0))
        return True
    except OSError:
        return False


def get(host: str, port: int, path: str = "/a.txt") -> requests.Response:
    url = (
        f"http://[{host}]:{port}{path}"
        if ":" in host
        else f"http://{host}:{port}{path}"
    )
    return requests.get(url, timeout=TIMEOUT, allow_redirects=False)


def assertOneLineError(result: subprocess.CompletedProcess[str]) -> str:
    """
    A configuration error: non-zero exit, exactly one line on standard
    error, no traceback anywhere. Returns the line.
    """
    assert result.returncode != 0, result
    assert "Traceback" not in result.stdout + result.stderr
    lines = result.stderr.strip().splitlines()
    assert len(lines) == 1, result.stderr
    return lines[0]


# --------------------------------------------------------------------------
# 1, 2. Help and version


def test_helpDocumentsEveryOption(tmp_path: Path) -> None:
    """
    'twistd cgiserve --help' exits 0 and documents every option.
    """
    result = runTwistd(["--help"], cwd=tmp_path)
    assert result.returncode == 0
    assert "Traceback" not in result.stdout + result.stderr
    for option in (
        "--port",
        "--bind",
        "--directory",
        "--path",
        "--cgi-dir",
        "--no-cgi",
        "--access-log",
        "--version",
    ):
        assert re.search(rf"(^|\s){re.escape(option)}\b", result.stdout), option
    for short in ("-p,", "-b,", "-d,"):
        assert short in result.stdout


def test_version(tmp_path: Path) -> None:
    """
    '--version' prints 'twisted-cgiserve' and a version number, and exits
    0 without starting a server.
    """
    result = runTwistd(["--version"], cwd=tmp_path)
    assert result.returncode == 0
    assert re.search(r"^twisted-cgiserve \d+\.\d+", result.stdout, re.MULTILINE)
    assert "Serving" not in result.stdout


# --------------------------------------------------------------------------
# 3. Configuration errors


@pytest.mark.parametrize(
    "args, mentions",
    [
        (["--directory", "{tmp}/does-not-exist"], "does-not-exist"),
        (["--directory", "{tmp}/plain-file"], "plain-file"),
        (["-d", "{tmp}/does-not-exist"], "does-not-exist"),
        (["--path", "{tmp}/does-not-exist"], "does-not-exist"),
        (["--bogus-option"], "--bogus-option"),
        (["--directory"], "directory"),
        (["--port", "bogus:1"], "bogus:1"),
        (["--port", "tcp:notaport"], "notaport"),
        (["--port", "70000"], "70000"),
        (["--port", "99999999999"], "99999999999"),
        (["--cgi-dir", "cgi-bin"], "cgi-bin"),
        (["--cgi-dir", "/a/../b"], "/a/../b"),
        (["--cgi-dir", "//"], "'//'"),
        (["--cgi-dir", "/a//b"], "/a//b"),
        (["--bind", "no-such-host.invalid", "--port", "0"], "no-such-host.invalid"),
        (
            [
                "--access-log",
                "{tmp}/no-such-dir/access.log",
                "--port",
                "tcp:0:interface=127.0.0.1",
            ],
            "no-such-dir",
        ),
    ],
)
def test_badConfiguration(tmp_path: Path, args: list[str], mentions: str) -> None:
    """
    Each configuration error exits non-zero with exactly one line on
    standard error, naming what was wrong, and no traceback.
    """
    (tmp_path / "plain-file").write_bytes(b"not a directory\n")
    args = [a.replace("{tmp}", str(tmp_path)) for a in args]
    result = runTwistd(args, cwd=tmp_path)
    line = assertOneLineError(result)
    assert mentions in line
    assert "Serving HTTP" not in result.stdout


# --------------------------------------------------------------------------
# 4. Port in use


def test_portInUse(serve: Callable[..., Server], root: Path) -> None:
    """
    A second server on a port already taken exits with status 1 and one
    line saying the address is in use; the first keeps serving.
    """
    first = serve(root)
    result = runTwistd(
        ["--directory", str(root), "--port", f"tcp:{first.port}:interface=127.0.0.1"],
        cwd=root,
    )
    assert result.returncode == 1
    line = assertOneLineError(result)
    assert "in use" in line.lower()
    assert str(first.port) in line
    assert get("127.0.0.1", first.port).content == A_TXT


def test_portInUseBareNumber(serve: Callable[..., Server], root: Path) -> None:
    """
    The same for a bare port number with --bind.
    """
    first = serve(root)
    result = runTwistd(
        ["--directory", str(root), "--bind", "127.0.0.1", "--port", str(first.port)],
        cwd=root,
    )
    assert result.returncode == 1
    assert "in use" in assertOneLineError(result).lower()


# --------------------------------------------------------------------------
# 5. Which directory


@pytest.mark.parametrize("option", ["--directory", "-d", "--path"])
def test_directoryOption(
    launch: Callable[..., Launched], root: Path, tmp_path: Path, option: str
) -> None:
    """
    --directory, -d and --path each choose the served directory, whatever
    the current directory is.
    """
    other = tmp_path / "elsewhere"
    other.mkdir()
    server = launch(
        [option, str(root), "--port", "tcp:0:interface=127.0.0.1"], cwd=other
    )
    port = server.port
    assert get("127.0.0.1", port).content == A_TXT


def test_directoryRelative(
    launch: Callable[..., Launched], root: Path, tmp_path: Path
) -> None:
    """
    A relative --directory is taken relative to the current directory.
    """
    server = launch(
        ["-d", "root/sub", "--port", "tcp:0:interface=127.0.0.1"], cwd=tmp_path
    )
    port = server.port
    assert get("127.0.0.1", port, "/b.txt").content == b"b\n"


def test_defaultDirectoryIsCwd(launch: Callable[..., Launched], root: Path) -> None:
    """
    Without --directory the current directory is served.
    """
    server = launch(["--port", "tcp:0:interface=127.0.0.1"], cwd=root / "sub")
    port = server.port
    r = get("127.0.0.1", port, "/b.txt")
    assert r.status_code == 200 and r.content == b"b\n"
    assert get("127.0.0.1", port, "/a.txt").status_code == 404


# --------------------------------------------------------------------------
# 6. Where it listens


def test_bareNumberListensEverywhere(
    launch: Callable[..., Launched], root: Path
) -> None:
    """
    A bare --port number listens on all interfaces: reachable on 127.0.0.1
    and, where the host has IPv6 loopback, on ::1.
    """
    port = freePort()
    server = launch(["--port", str(port)], cwd=root)
    assert [p for _, p in server.addresses] == [port]
    assert get("127.0.0.1", port).content == A_TXT
    if hasIPv6Loopback():
        assert get("::1", port).content == A_TXT


def test_bindRestrictsToAddress(launch: Callable[..., Launched], root: Path) -> None:
    """
    --bind 127.0.0.1 with a bare port listens on 127.0.0.1 only.
    """
    port = freePort()
    server = launch(["--bind", "127.0.0.1", "--port", str(port)], cwd=root)
    assert server.addresses == [("127.0.0.1", port)]
    assert get("127.0.0.1", port).content == A_TXT
    if hasIPv6Loopback():
        assert refused(port, "::1")


def test_bindIPv6Loopback(launch: Callable[..., Launched], root: Path) -> None:
    """
    --bind ::1 listens on the IPv6 loopback only.
    """
    if not hasIPv6Loopback():
        pytest.skip("no IPv6 loopback on this host")
    server = launch(["-b", "::1", "--port", "0"], cwd=root)
    host, port = server.addresses[0]
    assert host == "::1" and port is not None
    assert get("::1", port).content == A_TXT
    assert refused(port)


def test_repeatedPortListensTwice(launch: Callable[..., Launched], root: Path) -> None:
    """
    --port given twice listens on both, serving the same tree.
    """
    server = launch(
        ["--port", "tcp:0:interface=127.0.0.1", "-p", "tcp:0:interface=127.0.0.1"],
        cwd=root,
        count=2,
    )
    ports = [p for _, p in server.addresses if p is not None]
    assert len(set(ports)) == 2
    for port in ports:
        assert get("127.0.0.1", port).content == A_TXT


def test_startupLine(serve: Callable[..., Server], root: Path) -> None:
    """
    The log announces each listening address the way http.server does.
    """
    server = serve(root)
    assert (
        f"Serving HTTP on 127.0.0.1 port {server.port} "
        f"(http://127.0.0.1:{server.port}/) ..." in server.log()
    )


# --------------------------------------------------------------------------
# 7. UNIX socket


def _curlUnix(path: str, url: str, *extra: str) -> bytes:
    return subprocess.run(
        [
            "/usr/bin/curl",
            "-sS",
            "--max-time",
            "10",
            "--unix-socket",
            path,
            *extra,
            url,
        ],
        capture_output=True,
        timeout=20,
        check=True,
    ).stdout


def test_unixSocket(launch: Callable[..., Launched], root: Path) -> None:
    """
    --port unix:PATH serves over a UNIX socket (fetched with curl
    --unix-socket): files and listings.
    """
    with tempfile.TemporaryDirectory(prefix="cgs", dir="/tmp") as short:
        path = os.path.join(short, "s.sock")
        server = launch(["--port", f"unix:{path}"], cwd=root)
        out = _curlUnix(path, "http://localhost/a.txt", "-D", "-")
        assert out.startswith(b"HTTP/1.1 200")
        assert out.endswith(b"\r\n\r\n" + A_TXT)
        listing = _curlUnix(path, "http://localhost/sub/")
        assert b'<a href="b.txt">b.txt</a>' in listing
        server.stop()
        assert "Traceback" not in server.log()


def test_unixSocketStartupLine(launch: Callable[..., Launched], root: Path) -> None:
    """
    The start-up line names the UNIX socket's path as a plain path (as
    'Serving HTTP on /run/x.sock'), not a Python bytes repr.
    """
    with tempfile.TemporaryDirectory(prefix="cgs", dir="/tmp") as short:
        path = os.path.join(short, "s.sock")
        server = launch(["--port", f"unix:{path}"], cwd=root)
        assert server.addresses[0][0] == path, server.log()


# --------------------------------------------------------------------------
# 8. Access log

# host ident user [time] "request" status size "referer" "agent"
_QUOTED = r'"((?:[^"\\]|\\.)*)"'
COMBINED = re.compile(
    r"(?P<host>\S+) (?P<ident>\S+) (?P<user>\S+) \[(?P<time>[^\]]+)\] "
    + _QUOTED.replace("(", "(?P<request>", 1)
    + r" (?P<status>\d{3}) (?P<size>\d+|-) "
    + _QUOTED.replace("(", "(?P<referer>", 1)
    + " "
    + _QUOTED.replace("(", "(?P<agent>", 1)
)


def _makeRequests(port: int) -> list[tuple[str, int, str, str, str]]:
    """
    A few requests; returns what each log line must say: (request line,
    status, size, referer, agent).
    """
    base = f"http://127.0.0.1:{port}"
    requests.get(
        base + "/a.txt?x=1",
        headers={"User-Agent": "agent/1.0", "Referer": "http://ref.example/"},
        timeout=TIMEOUT,
    )
    requests.get(
        base + "/missing", headers={"User-Agent": "agent/2.0"}, timeout=TIMEOUT
    )
    requests.get(
        base + "/sub",
        headers={"User-Agent": 'quote"agent'},
        allow_redirects=False,
        timeout=TIMEOUT,
    )
    requests.head(base + "/a.txt", headers={"User-Agent": "agent/3.0"}, timeout=TIMEOUT)
    return [
        (
            "GET /a.txt?x=1 HTTP/1.1",
            200,
            str(len(A_TXT)),
            "http://ref.example/",
            "agent/1.0",
        ),
        ("GET /missing HTTP/1.1", 404, r"\d+", "-", "agent/2.0"),
        ("GET /sub HTTP/1.1", 301, "-", "-", r"quote\"agent"),
        ("HEAD /a.txt HTTP/1.1", 200, "-", "-", "agent/3.0"),
    ]


def _waitForLines(read: Callable[[], list[str]], count: int) -> list[str]:
    deadline = time.monotonic() + TIMEOUT
    while True:
        lines = read()
        if len(lines) >= count or time.monotonic() > deadline:
            return lines
        time.sleep(0.05)


def _checkLines(
    lines: list[str], expected: list[tuple[str, int, str, str, str]]
) -> None:
    assert len(lines) == len(expected), lines
    now = datetime.datetime.now(datetime.UTC)
    for line, (requestLine, status, size, referer, agent) in zip(
        lines, expected, strict=True
    ):
        match = COMBINED.fullmatch(line)
        assert match, line
        assert match["host"] == "127.0.0.1"
        assert match["ident"] == "-"
        assert match["user"] == "-"
        stamp = datetime.datetime.strptime(match["time"], "%d/%b/%Y:%H:%M:%S %z")
        assert abs((now - stamp).total_seconds()) < 120
        assert match["request"] == requestLine
        assert int(match["status"]) == status
        assert re.fullmatch(size, match["size"]), (line, size)
        assert match["referer"] == referer
        assert match["agent"] == agent


def test_accessLogFile(
    serve: Callable[..., Server], root: Path, tmp_path: Path
) -> None:
    """
    --access-log FILE gets one Apache combined-format line per request:
    client address, '-', '-', [time], "request line", status, bytes sent
    (or '-'), "referer", "user agent", with quotes escaped; the access
    lines do not also go to twistd's log.
    """
    logFile = tmp_path / "access.log"
    server = serve(root, ["--access-log", str(logFile)])
    expected = _makeRequests(server.port)
    lines = _waitForLines(
        lambda: logFile.read_text("utf-8").splitlines() if logFile.exists() else [],
        len(expected),
    )
    _checkLines(lines, expected)
    assert "GET /missing" not in server.log()


def test_accessLogStdout(serve: Callable[..., Server], root: Path) -> None:
    """
    --access-log - writes the bare combined-format lines to standard
    output.
    """
    server = serve(root, ["--access-log", "-"])
    expected = _makeRequests(server.port)
    lines = _waitForLines(
        lambda: [
            line
            for line in server.log().splitlines()
            if line.startswith("127.0.0.1 - - [")
        ],
        len(expected),
    )
    _checkLines(lines, expected)


def test_accessLogDefaultIsTwistdLog(serve: Callable[..., Server], root: Path) -> None:
    """
    By default the combined-format lines appear in twistd's log (after its
    own timestamp prefix).
    """
    server = serve(root)
    expected = _makeRequests(server.port)

    def read() -> list[str]:
        found = []
        for line in server.log().splitlines():
            match = re.search(r"\] (127\.0\.0\.1 - - \[.*)$", line)
            if match:
                found.append(match.group(1))
        return found

    _checkLines(_waitForLines(read, len(expected)), expected)


def test_accessLogEscapesControlCharacters(
    serve: Callable[..., Server], root: Path, tmp_path: Path
) -> None:
    """
    A request cannot forge a log line: a newline in the user agent is
    escaped, so each request stays one line.
    """
    logFile = tmp_path / "access.log"
    server = serve(root, ["--access-log", str(logFile)])
    exchange(
        server.port,
        b"GET /a.txt HTTP/1.1\r\nHost: x\r\nUser-Agent: a\x1b[31mb\\c\r\n"
        b"Connection: close\r\n\r\n",
        timeout=TIMEOUT,
    )
    lines = _waitForLines(
        lambda: logFile.read_text("utf-8").splitlines() if logFile.exists() else [], 1
    )
    assert len(lines) == 1
    match = COMBINED.fullmatch(lines[0])
    assert match, lines
    assert "\x1b" not in lines[0]
    assert match["agent"] == r"a\x1b[31mb\\c"


# --------------------------------------------------------------------------
# 9. Shutdown


# A stop that was asked for and done in order exits 0 (twistd alone would
# die of the signal again at the end).
_CLEAN_SIGTERM = (0,)


def test_sigtermExitsCleanly(serve: Callable[..., Server], root: Path) -> None:
    """
    SIGTERM stops the server cleanly (its log says it shut down, with no
    traceback), and the port is closed afterwards.
    """
    server = serve(root)
    assert get("127.0.0.1", server.port).status_code == 200
    server.process.send_signal(signal.SIGTERM)
    status = server.process.wait(TIMEOUT)
    assert refused(server.port)
    log = server.log()
    assert "Traceback" not in log
    assert "Server Shut Down." in log
    assert status in _CLEAN_SIGTERM


def test_sigtermDuringDownload(serve: Callable[..., Server], root: Path) -> None:
    """
    SIGTERM while a client is connected still stops the server cleanly.
    """
    server = serve(root)
    with Conn(server.port, TIMEOUT) as conn:
        conn.send(b"GET /a.txt HTTP/1.1\r\nHost: x\r\n\r\n")
        assert conn.recv().startswith(b"HTTP/1.1 200")
        status = server.stop()
    assert "Traceback" not in server.log()
    assert "Server Shut Down." in server.log()
    assert status in _CLEAN_SIGTERM


# --------------------------------------------------------------------------
# 10. CGI directories and --no-cgi

CGI_SPELLINGS = [
    "/cgi-bin/script.sh",
    "/cgi-bin%2fscript.sh",
    "/cgi-bin%2Fscript.sh",
    "//cgi-bin/script.sh",
    "/sub/../cgi-bin/script.sh",
    "/./cgi-bin/script.sh",
    "/cgi-bin/./script.sh",
    "/cgi-bin//script.sh",
    "/%63gi-bin/script.sh",
    "/htbin/script.sh",
    "/cgi-bin/script.sh?x=1",
]


@pytest.fixture
def scriptRoot(root: Path) -> Iterator[Path]:
    """
    L{root}'s contents where the account scripts run as can reach them
    (pytest's temporary directories are private to their owner), so a
    script in a CGI directory is run, not failed.
    """
    reachable = makeDocroot("cgiserve-e2e-cli-")
    shutil.copytree(root, reachable, symlinks=True, dirs_exist_ok=True)
    for directory, _, _ in os.walk(reachable):
        os.chmod(directory, 0o755)
    yield reachable
    shutil.rmtree(reachable, ignore_errors=True)


def assertRunNotServed(port: int, target: str) -> None:
    """
    The script at C{target} was run: the response is exactly its output,
    and none of its bytes (its source) were sent.
    """
    r = fetch(port, target)
    assert (r.status, r.body) == (200, b"cgi-output\n"), (target, r.status, r.body)
    assert SOURCE_MARKER not in r.head + r.body, target
    assert b"echo" not in r.head + r.body, target


def test_cgiDirectoryNeverServesScriptSource(
    serve: Callable[..., Server], scriptRoot: Path
) -> None:
    """
    With CGI on (the default), a file under /cgi-bin or /htbin is never
    served as its bytes, however the path is spelt: it is run.
    """
    server = serve(scriptRoot)
    for target in CGI_SPELLINGS:
        assertRunNotServed(server.port, target)


def test_cgiDirectoryWithoutSlashRedirects(
    serve: Callable[..., Server], root: Path
) -> None:
    """
    The CGI directory itself asked for without its slash is redirected
    like any directory.
    """
    server = serve(root)
    data = exchange(
        server.port, b"GET /cgi-bin HTTP/1.1\r\nHost: x\r\nConnection: close\r\n\r\n"
    )
    assert statusOf(data) == 301
    assert b"\r\nLocation: /cgi-bin/\r\n" in data


def test_noCgiServesScriptsAsFiles(serve: Callable[..., Server], root: Path) -> None:
    """
    --no-cgi turns the CGI directories into ordinary directories: their
    files are served as they are on disk, and listed.
    """
    server = serve(root, ["--no-cgi"])
    r = get("127.0.0.1", server.port, "/cgi-bin/script.sh")
    assert r.status_code == 200
    assert r.content == SCRIPT
    assert get("127.0.0.1", server.port, "/htbin/script.sh").content == SCRIPT
    listing = get("127.0.0.1", server.port, "/cgi-bin/")
    assert listing.status_code == 200
    assert '<a href="script.sh">script.sh</a>' in listing.text


def test_cgiDirOptionReplacesDefaults(
    serve: Callable[..., Server], scriptRoot: Path
) -> None:
    """
    --cgi-dir /scripts makes /scripts the CGI directory instead of the
    defaults: /scripts files are run, not served as bytes; /cgi-bin files
    are served as bytes.
    """
    server = serve(scriptRoot, ["--cgi-dir", "/scripts"])
    for target in ("/scripts/script.sh", "/scripts%2fscript.sh"):
        assertRunNotServed(server.port, target)
    assert get("127.0.0.1", server.port, "/cgi-bin/script.sh").content == SCRIPT
