"""
End to end, what a systemd deployment relies on: readiness notification on
a real datagram socket, socket activation through C{systemd-socket-activate},
the journal's log format, the access log (parsed field by field, reopened
for logrotate), C{--header}, and connections closed in order at shutdown.
"""

from __future__ import annotations

import os
import re
import shutil
import signal
import socket
import subprocess
import time
from collections.abc import Callable, Iterator
from datetime import datetime
from pathlib import Path

import pytest
import requests

from tests.support.certs import makeCertificate
from tests.support.probes import scriptRunning
from tests.support.raw import Conn, exchange
from tests.support.server import TWISTD, Server, freePort, makeDocroot, waitFor
from tests.support.shell import writeFile

pytestmark = pytest.mark.e2e

TIMEOUT = 10
ACTIVATE = shutil.which("systemd-socket-activate")
needsActivate = pytest.mark.skipif(
    ACTIVATE is None,
    reason="systemd-socket-activate (Debian package systemd) is not installed",
)

ENV_SCRIPT = """#!/bin/sh
printf 'Content-Type: text/plain\\r\\n\\r\\n'
env | sort
"""

HEADER_SCRIPT = """#!/bin/sh
printf 'Content-Type: text/plain\\r\\nX-Frame-Options: SAMEORIGIN\\r\\n\\r\\n'
echo ok
"""

SLOW_SCRIPT = """#!/bin/sh
sleep 1
printf 'Content-Type: text/plain\\r\\n\\r\\n'
echo finished
"""

NOISY_SCRIPT = """#!/bin/sh
echo "disk almost full" >&2
printf 'Content-Type: text/plain\\r\\n\\r\\n'
echo ok
"""

# Apache's combined log format, field by field.
COMBINED = re.compile(
    r"^(?P<host>\S+) (?P<ident>\S+) (?P<user>\S+) \[(?P<time>[^\]]+)\] "
    r'"(?P<request>(?:[^"\\]|\\.)*)" (?P<status>\d{3}) (?P<size>\d+|-) '
    r'"(?P<referer>(?:[^"\\]|\\.)*)" "(?P<agent>(?:[^"\\]|\\.)*)"$'
)


@pytest.fixture
def site() -> Iterator[Path]:
    """
    A document root scripts run as nobody can reach (under /tmp, 0755).
    """
    root = makeDocroot("cgiserve-deploy-")
    (root / "a.txt").write_bytes(b"0123456789")
    cgi = root / "cgi-bin"
    cgi.mkdir(mode=0o755)
    for name, text in [
        ("env.sh", ENV_SCRIPT),
        ("header.sh", HEADER_SCRIPT),
        ("noisy.sh", NOISY_SCRIPT),
        ("slow.sh", SLOW_SCRIPT),
    ]:
        writeFile(cgi / name, text.encode())
    yield root
    shutil.rmtree(root, ignore_errors=True)


@pytest.fixture
def notifySocket(tmp_path: Path) -> Iterator[tuple[socket.socket, str]]:
    """
    A datagram socket standing in for systemd's notification socket.
    """
    sock = socket.socket(socket.AF_UNIX, socket.SOCK_DGRAM)
    path = str(tmp_path / "notify")
    sock.bind(path)
    sock.settimeout(TIMEOUT)
    yield sock, path
    sock.close()


def messages(sock: socket.socket) -> dict[str, str]:
    """
    One sd_notify datagram as a dictionary.
    """
    data = sock.recv(4096).decode()
    return dict(line.split("=", 1) for line in data.splitlines())


# Readiness


def test_readyStatusStopping(
    serve: Callable[..., Server],
    site: Path,
    notifySocket: tuple[socket.socket, str],
) -> None:
    """
    READY=1 comes once the port accepts connections, with the address in
    STATUS= and the main PID; SIGTERM sends STOPPING=1 and the server exits
    0. Scripts never see NOTIFY_SOCKET.
    """
    sock, path = notifySocket
    server = serve(
        site,
        ["--cgi-user", "nobody"],
        env={**os.environ, "NOTIFY_SOCKET": path},
    )
    ready = messages(sock)
    assert ready["READY"] == "1"
    assert ready["MAINPID"] == str(server.process.pid)
    assert ready["STATUS"] == f"Serving on http://127.0.0.1:{server.port}/"
    Conn(server.port, TIMEOUT).close()

    r = requests.get(server.url("/cgi-bin/env.sh"), timeout=TIMEOUT)
    assert r.status_code == 200
    assert "NOTIFY_SOCKET" not in r.text
    assert "PATH=" in r.text

    server.process.send_signal(signal.SIGHUP)
    assert messages(sock)["RELOADING"] == "1"
    assert messages(sock)["READY"] == "1"

    server.process.send_signal(signal.SIGTERM)
    assert messages(sock)["STOPPING"] == "1"
    assert server.process.wait(TIMEOUT) == 0


def test_readyAfterEveryPort(
    serve: Callable[..., Server],
    site: Path,
    notifySocket: tuple[socket.socket, str],
    tmp_path: Path,
) -> None:
    """
    With several ports, READY=1 is sent once, after all of them listen, and
    STATUS= lists them all.
    """
    sock, path = notifySocket
    unix = tmp_path / "http.sock"
    server = serve(
        site,
        [
            "--port", "tcp:0:interface=127.0.0.1",
            "--port", "tcp6:0:interface=\\:\\:1",
            "--port", f"unix:{unix}",
        ],
        env={**os.environ, "NOTIFY_SOCKET": path},
    )  # fmt: skip
    ready = messages(sock)
    status = ready["STATUS"]
    assert status.startswith(
        f"Serving on http://127.0.0.1:{server.port}/, http://[::1]:"
    )
    assert status.endswith(f", {unix}")
    assert unix.exists()
    sock.settimeout(0.5)
    with pytest.raises(TimeoutError):
        sock.recv(4096)


def test_noNotifySocket(serve: Callable[..., Server], site: Path) -> None:
    """
    Outside systemd nothing is sent and nothing is said about it.
    """
    env = {k: v for k, v in os.environ.items() if k != "NOTIFY_SOCKET"}
    server = serve(site, env=env)
    assert requests.get(server.url("/a.txt"), timeout=TIMEOUT).status_code == 200
    assert server.stop() == 0
    assert "notify" not in server.log().lower()


# Socket activation


def activate(  # noqa: PLR0917
    site: Path,
    port: int,
    serverArgs: list[str],
    activateArgs: list[str],
    logPath: Path,
    env: dict[str, str] | None = None,
) -> subprocess.Popen[bytes]:
    """
    Start the server the way systemd does: C{systemd-socket-activate}
    listens on a loopback port and hands the socket over when the first
    client connects.
    """
    assert ACTIVATE is not None
    with logPath.open("wb") as log:
        process = subprocess.Popen(
            [
                ACTIVATE, "--listen", f"127.0.0.1:{port}", *activateArgs,
                TWISTD, "-n", "--pidfile=", "cgiserve",
                "--directory", str(site), "--cgi-user", "nobody", *serverArgs,
            ],
            stdout=log, stderr=subprocess.STDOUT, stdin=subprocess.DEVNULL,
            env=env, cwd=site,
        )  # fmt: skip
    assert waitFor(lambda: b"Listening on" in logPath.read_bytes(), TIMEOUT)
    return process


def stop(process: subprocess.Popen[bytes]) -> int:
    process.send_signal(signal.SIGTERM)
    try:
        return process.wait(TIMEOUT)
    finally:
        if process.poll() is None:
            process.kill()


@needsActivate
@pytest.mark.parametrize(
    ("activateArgs", "description"),
    [
        (["--fdname=web"], "systemd:domain=INET:name=web"),
        # systemd always names its sockets (the unit's name by default);
        # Twisted relies on that even for index=.
        (["--fdname=http"], "systemd:domain=INET:index=0"),
    ],
)
def test_socketActivation(
    site: Path,
    tmp_path: Path,
    notifySocket: tuple[socket.socket, str],
    activateArgs: list[str],
    description: str,
) -> None:
    """
    The inherited socket is served, by name or by index; the first request
    (which woke the server) is answered; scripts see neither LISTEN_* nor
    NOTIFY_SOCKET.
    """
    sock, path = notifySocket
    port = freePort()
    process = activate(
        site,
        port,
        ["--port", description],
        [*activateArgs, "--setenv=NOTIFY_SOCKET"],
        tmp_path / "log",
        env={**os.environ, "NOTIFY_SOCKET": path},
    )
    try:
        r = requests.get(f"http://127.0.0.1:{port}/cgi-bin/env.sh", timeout=TIMEOUT)
        assert r.status_code == 200
        assert "LISTEN_" not in r.text
        assert "NOTIFY_SOCKET" not in r.text
        ready = messages(sock)
        assert ready["STATUS"] == f"Serving on http://127.0.0.1:{port}/"
        r = requests.get(f"http://127.0.0.1:{port}/a.txt", timeout=TIMEOUT)
        assert r.content == b"0123456789"
    finally:
        assert stop(process) == 0
    log = (tmp_path / "log").read_text()
    assert f"Serving HTTP on 127.0.0.1 port {port}" in log
    assert "Traceback" not in log


@needsActivate
def test_socketActivationWithTLS(site: Path, tmp_path: Path) -> None:
    """
    With --tls-cert, an inherited socket speaks HTTPS (and HTTP/2).
    """
    curl = shutil.which("curl")
    if curl is None:
        pytest.skip("curl is not installed")
    cert = makeCertificate(tmp_path / "tls")
    port = freePort()
    process = activate(
        site,
        port,
        ["--port", "systemd:domain=INET:name=https", "--tls-cert", str(cert.combined)],
        ["--fdname=https"],
        tmp_path / "log",
    )
    try:
        result = subprocess.run(
            [curl, "-sk", "--http2", "-w", " %{http_version}",
             f"https://127.0.0.1:{port}/a.txt"],
            capture_output=True, timeout=TIMEOUT,
        )  # fmt: skip
        assert result.stdout == b"0123456789 2"
    finally:
        assert stop(process) == 0


def test_badSystemdDescription(site: Path) -> None:
    """
    A systemd: port without an inherited socket of that name is one line and
    exit status 2 that says what to check, not a traceback.
    """
    result = subprocess.run(
        [TWISTD, "-n", "--pidfile=", "cgiserve", "--port",
         "systemd:domain=INET:name=nope"],
        cwd=site, capture_output=True, text=True, timeout=20,
    )  # fmt: skip
    assert result.returncode == 2
    assert len(result.stderr.strip().splitlines()) == 1
    assert "systemd:domain=INET:name=nope" in result.stderr
    assert "systemd passed no such socket" in result.stderr


# The journal's format


def startJournaled(
    site: Path, tmp_path: Path, args: list[str]
) -> tuple[subprocess.Popen[bytes], Path, int]:
    """
    Start the server with standard output on a file that JOURNAL_STREAM
    names, as systemd does with the journal's socket.
    """
    logPath = tmp_path / "journal"
    with logPath.open("wb") as out:
        st = os.fstat(out.fileno())
        env = {**os.environ, "JOURNAL_STREAM": f"{st.st_dev}:{st.st_ino}"}
        process = subprocess.Popen(
            [TWISTD, "-n", "--pidfile=", "cgiserve", "--directory", str(site),
             "--port", "tcp:0:interface=127.0.0.1", "--cgi-user", "nobody", *args],
            stdout=out, stderr=subprocess.STDOUT, stdin=subprocess.DEVNULL,
            env=env, cwd=site,
        )  # fmt: skip
    pattern = re.compile(rb"Serving HTTP on 127.0.0.1 port (\d+)")
    assert waitFor(lambda: pattern.search(logPath.read_bytes()) is not None, TIMEOUT)
    match = pattern.search(logPath.read_bytes())
    assert match is not None
    return process, logPath, int(match.group(1))


def test_journalFormat(site: Path, tmp_path: Path) -> None:
    """
    Under the journal every line starts with its priority and carries no
    timestamp: access lines are info (6), a script's standard error a
    warning (4).
    """
    process, logPath, port = startJournaled(site, tmp_path, [])
    try:
        r = requests.get(f"http://127.0.0.1:{port}/cgi-bin/noisy.sh", timeout=TIMEOUT)
        assert r.status_code == 200
        assert waitFor(lambda: b"disk almost full" in logPath.read_bytes(), TIMEOUT)
        assert waitFor(lambda: b"noisy.sh HTTP/1.1" in logPath.read_bytes(), TIMEOUT)
    finally:
        assert stop(process) == 0
    lines = logPath.read_text().splitlines()
    assert lines
    for line in lines:
        assert re.match(r"<[2-7]>\[", line), line
        assert not re.search(r"\d{4}-\d\d-\d\dT\d\d:\d\d:\d\d", line), line
    warning = next(line for line in lines if "disk almost full" in line)
    assert warning.startswith("<4>[cgiserve.cgi] /cgi-bin/noisy.sh [")
    access = next(line for line in lines if "noisy.sh HTTP/1.1" in line)
    assert access.startswith("<6>[cgiserve.access] 127.0.0.1 - - [")
    assert any(line.startswith("<6>[") and "Serving HTTP" in line for line in lines)


def test_explicitLoggerWins(site: Path, tmp_path: Path) -> None:
    """
    Outside the journal, twistd's usual format; --logger picks the journal's
    format explicitly.
    """
    logPath = tmp_path / "plain"
    for args, journal in (
        ([], False),
        (["--logger=twisted_cgiserve.journaldLogObserver"], True),
    ):
        with logPath.open("wb") as out:
            process = subprocess.Popen(
                [TWISTD, "-n", "--pidfile=", *args, "cgiserve", "--directory",
                 str(site), "--port", "tcp:0:interface=127.0.0.1"],
                stdout=out, stderr=subprocess.STDOUT, stdin=subprocess.DEVNULL,
                env={k: v for k, v in os.environ.items() if k != "JOURNAL_STREAM"},
            )  # fmt: skip
        assert waitFor(lambda: b"Serving HTTP" in logPath.read_bytes(), TIMEOUT)
        assert stop(process) == 0
        first = logPath.read_text().splitlines()[0]
        assert first.startswith("<6>[") is journal, first


# The access log


def accessEntries(text: str) -> list[dict[str, str]]:
    entries = []
    for line in text.splitlines():
        match = COMBINED.match(line)
        assert match, f"not combined log format: {line!r}"
        entries.append(match.groupdict())
    return entries


def test_accessLogFields(
    serve: Callable[..., Server], site: Path, tmp_path: Path
) -> None:
    """
    Every field of the combined format, as a log analyser reads it.
    """
    log = tmp_path / "access.log"
    server = serve(site, ["--access-log", str(log), "--cgi-user", "nobody"])
    headers = {"Referer": "http://example.test/from", "User-Agent": 'agent "x"'}
    assert requests.get(server.url("/a.txt"), headers=headers, timeout=TIMEOUT).ok
    assert requests.head(server.url("/a.txt"), timeout=TIMEOUT).ok
    assert requests.get(server.url("/missing"), timeout=TIMEOUT).status_code == 404
    r = requests.get(
        server.url("/a.txt"), headers={"Range": "bytes=2-4"}, timeout=TIMEOUT
    )
    assert r.status_code == 206
    assert requests.get(server.url("/cgi-bin/env.sh?q=1"), timeout=TIMEOUT).ok
    assert waitFor(lambda: log.exists() and log.read_text().count("\n") == 5, TIMEOUT)

    get, head, missing, partial, script = accessEntries(log.read_text())
    assert get["host"] == "127.0.0.1"
    assert (get["ident"], get["user"]) == ("-", "-")
    when = datetime.strptime(get["time"], "%d/%b/%Y:%H:%M:%S %z")
    assert abs(when.timestamp() - time.time()) < 60
    assert get["request"] == "GET /a.txt HTTP/1.1"
    assert (get["status"], get["size"]) == ("200", "10")
    assert get["referer"] == "http://example.test/from"
    assert get["agent"] == 'agent \\"x\\"'
    assert (head["request"], head["status"], head["size"]) == (
        "HEAD /a.txt HTTP/1.1", "200", "-",
    )  # fmt: skip
    assert missing["status"] == "404"
    assert int(missing["size"]) > 0
    assert (partial["status"], partial["size"]) == ("206", "3")
    assert script["request"] == "GET /cgi-bin/env.sh?q=1 HTTP/1.1"
    assert script["referer"] == "-"


def test_accessLogReopen(
    serve: Callable[..., Server], site: Path, tmp_path: Path
) -> None:
    """
    logrotate renames the file and sends SIGUSR1 (or the admin runs
    'systemctl reload', SIGHUP): later lines go to a new file of the old
    name, none are lost.
    """
    log = tmp_path / "access.log"
    server = serve(site, ["--access-log", str(log)])
    get = lambda: requests.get(server.url("/a.txt"), timeout=TIMEOUT)  # noqa: E731
    assert get().ok
    assert waitFor(lambda: log.exists() and log.read_text().count("\n") == 1, TIMEOUT)

    for n, signum in enumerate((signal.SIGUSR1, signal.SIGHUP), 1):
        rotated = tmp_path / f"access.log.{n}"
        log.rename(rotated)
        # Written after the rename, before the signal: still the old file.
        assert get().ok
        server.process.send_signal(signum)
        # Each worker of --workers (in CI's second run) reopens its own.
        reopened = n * int(os.environ.get("CGISERVE_TEST_WORKERS") or 1)
        assert waitFor(
            lambda r=reopened: server.log().count("reopened") == r and log.exists(),
            TIMEOUT,
        )
        assert get().ok
        assert waitFor(lambda: log.read_text().count("\n") == 1, TIMEOUT)
        assert rotated.read_text().count("\n") == 2
    assert server.process.poll() is None


def test_accessLogToStdout(serve: Callable[..., Server], site: Path) -> None:
    """
    --access-log - writes bare combined-format lines to standard output
    (no timestamp prefix of twistd's).
    """
    server = serve(site, ["--access-log", "-"])
    assert requests.get(server.url("/a.txt?x"), timeout=TIMEOUT).ok
    assert waitFor(lambda: "GET /a.txt?x" in server.log(), TIMEOUT)
    line = next(x for x in server.log().splitlines() if "GET /a.txt?x" in x)
    assert COMBINED.match(line), line


# --header


def test_extraHeaders(serve: Callable[..., Server], site: Path) -> None:
    """
    --header values go on successful responses (a 200, a 206, a 304, a
    script's 200) but not on errors, and never replace a header the
    response already has.
    """
    server = serve(
        site,
        [
            "--cgi-user", "nobody",
            "--header", "Strict-Transport-Security: max-age=63072000",
            "-H", "X-Frame-Options: DENY",
        ],
    )  # fmt: skip
    hsts = "strict-transport-security"
    r = requests.get(server.url("/a.txt"), timeout=TIMEOUT)
    assert r.headers[hsts] == "max-age=63072000"
    assert r.headers["x-frame-options"] == "DENY"
    r2 = requests.get(
        server.url("/a.txt"), headers={"Range": "bytes=0-1"}, timeout=TIMEOUT
    )
    assert (r2.status_code, r2.headers[hsts]) == (206, "max-age=63072000")
    r3 = requests.get(
        server.url("/a.txt"),
        headers={"If-None-Match": r.headers["etag"]},
        timeout=TIMEOUT,
    )
    assert (r3.status_code, r3.headers[hsts]) == (304, "max-age=63072000")
    r4 = requests.get(server.url("/cgi-bin/header.sh"), timeout=TIMEOUT)
    assert r4.headers[hsts] == "max-age=63072000"
    assert r4.headers["x-frame-options"] == "SAMEORIGIN"
    missing = requests.get(server.url("/missing"), timeout=TIMEOUT)
    assert missing.status_code == 404
    assert hsts not in missing.headers
    # A directory redirect is not a success either.
    redirect = exchange(server.port, b"GET /cgi-bin HTTP/1.0\r\n\r\n")
    assert redirect.startswith(b"HTTP/1.0 301 ")
    assert b"Strict-Transport-Security" not in redirect


# Shutdown


def test_idleConnectionsClosedAtShutdown(
    serve: Callable[..., Server], site: Path
) -> None:
    """
    SIGTERM with idle keep-alive connections open: they are closed (the
    client reads end of file), and the server exits 0 without waiting.
    """
    server = serve(site)
    connections = []
    for _ in range(3):
        conn = Conn(server.port, TIMEOUT)
        conn.send(b"GET /a.txt HTTP/1.1\r\nHost: x\r\n\r\n")
        assert conn.recv().startswith(b"HTTP/1.1 200 ")
        connections.append(conn)
    started = time.monotonic()
    server.process.send_signal(signal.SIGTERM)
    for conn in connections:
        assert conn.recv() == b""
        conn.close()
    assert server.process.wait(TIMEOUT) == 0
    assert time.monotonic() - started < 3
    assert "Unhandled" not in server.log()
    assert "Traceback" not in server.log()


def test_signalsDuringShutdown(serve: Callable[..., Server], site: Path) -> None:
    """
    logrotate's SIGUSR1 or a reload's SIGHUP arriving while the server
    drains requests at shutdown does not kill it: the request in progress is
    answered and the exit status is still 0.
    """
    server = serve(site, ["--cgi-user", "nobody"])
    conn = Conn(server.port, TIMEOUT)
    conn.send(b"GET /cgi-bin/slow.sh HTTP/1.0\r\n\r\n")
    assert waitFor(lambda: scriptRunning(site / "cgi-bin" / "slow.sh"), TIMEOUT)
    server.process.send_signal(signal.SIGTERM)
    assert waitFor(lambda: "request(s) in progress" in server.log(), TIMEOUT)
    server.process.send_signal(signal.SIGHUP)
    server.process.send_signal(signal.SIGUSR1)
    response = conn.readAll()
    conn.close()
    assert response.startswith(b"HTTP/1.0 200 ")
    assert response.endswith(b"\r\n\r\nfinished\n")
    assert server.process.wait(TIMEOUT) == 0


def test_stopRightAfterServingLineIsGraceful(site: Path, tmp_path: Path) -> None:
    """
    SIGTERM the instant the "Serving HTTP on" line appears (what tests and
    scripts take as ready): the stop is graceful, exit status 0, every time
    (the line used to be logged before the server's SIGTERM handler was in
    place, so the signal could kill it).
    """
    for attempt in range(10):
        log = tmp_path / f"ready-{attempt}.log"
        with log.open("wb") as out:
            process = subprocess.Popen(
                [TWISTD, "-n", "--pidfile=", "cgiserve", "--directory", str(site),
                 "--port", "tcp:0:interface=127.0.0.1"],
                stdout=out, stderr=subprocess.STDOUT, stdin=subprocess.DEVNULL,
                cwd=site,
            )  # fmt: skip
        try:
            deadline = time.monotonic() + TIMEOUT
            while b"Serving HTTP on" not in log.read_bytes():
                assert time.monotonic() < deadline, log.read_text()
                time.sleep(0.001)
            process.send_signal(signal.SIGTERM)
            assert process.wait(TIMEOUT) == 0, (attempt, log.read_text())
        finally:
            if process.poll() is None:
                process.kill()
                process.wait()
