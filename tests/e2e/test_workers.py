"""
End to end: C{--workers 2}, the real C{twistd cgiserve} as a supervising
parent and two worker processes on the same listening sockets.
"""

from __future__ import annotations

import functools
import os
import re
import shutil
import signal
import socket
import subprocess
import threading
from collections.abc import Callable, Iterator
from pathlib import Path

import pytest
import requests

from tests.support.server import (
    TWISTD,
    Server,
    freePort,
    makeDocroot,
    runTwistd,
    serverCommand,
    startServer,
    waitFor,
)
from tests.support.shell import writeFile

pytestmark = pytest.mark.e2e

TIMEOUT = 20
ACTIVATE = shutil.which("systemd-socket-activate")

PPID_SCRIPT = b"""#!/bin/sh
printf 'Content-Type: text/plain\\r\\n\\r\\n'
echo "$PPID"
"""

# Says it started, then takes its time.
SLOW_SCRIPT = b"""#!/bin/sh
echo "$QUERY_STRING" > "$STATE/$$"
sleep 2
printf 'Content-Type: text/plain\\r\\n\\r\\n'
echo "done $QUERY_STRING"
"""

# Apache's combined log format, whole.
COMBINED = re.compile(
    r'^\S+ \S+ \S+ \[[^\]]+\] "GET /a\.txt\?q=(x+)(\d+) HTTP/1\.1" 200 \d+ "-" "[^"]*"$'
)

_STARTED = re.compile(r"Started worker (\d+) \(PID (\d+)\)")


@pytest.fixture
def site() -> Iterator[Path]:
    root = makeDocroot("cgiserve-workers-")
    (root / "a.txt").write_bytes(b"0123456789")
    state = root / "state"
    state.mkdir()
    state.chmod(0o1777)
    cgi = root / "cgi-bin"
    cgi.mkdir(mode=0o755)
    writeFile(cgi / "ppid.sh", PPID_SCRIPT)
    writeFile(cgi / "slow.sh", SLOW_SCRIPT)
    yield root
    shutil.rmtree(root, ignore_errors=True)


@pytest.fixture
def servers(tmp_path: Path) -> Iterator[list[Server]]:
    started: list[Server] = []
    yield started
    for server in started:
        server.stop()


def start(
    servers: list[Server], site: Path, tmp_path: Path, *args: str, **kw: object
) -> Server:
    """
    A server with two workers, once both serve.
    """
    server = startServer(
        site,
        ["--workers", "2", "--cgi-set-env", f"STATE={site / 'state'}", *args],
        logDir=tmp_path,
        **kw,  # type: ignore[arg-type]
    )
    servers.append(server)
    assert server.logLines("All 2 workers are serving.", timeout=TIMEOUT)
    return server


def workerPids(server: Server) -> dict[int, int]:
    """
    The latest PID of each worker, from the parent's log.
    """
    pids: dict[int, int] = {}
    for match in _STARTED.finditer(server.log()):
        pids[int(match.group(1))] = int(match.group(2))
    return pids


def servedBy(log: Callable[[], str], path: str) -> int | None:
    """
    The worker whose access line (in the parent's log) is for C{path}.
    """
    for line in log().splitlines():
        match = re.search(r"\[worker (\d+)\] .*\"GET (\S+) HTTP/1\.1\"", line)
        if match and match.group(2) == path:
            return int(match.group(1))
    return None


def socketInodes(pid: int) -> set[str]:
    inodes = set()
    for fd in os.listdir(f"/proc/{pid}/fd"):
        try:
            target = os.readlink(f"/proc/{pid}/fd/{fd}")
        except OSError:
            continue
        if target.startswith("socket:["):
            inodes.add(target[8:-1])
    return inodes


def holder(client: socket.socket, pids: dict[int, int]) -> int | None:
    """
    The worker that holds the server's end of C{client}'s connection.
    """
    clientPort = client.getsockname()[1]
    inode = None
    for table in ("/proc/net/tcp", "/proc/net/tcp6"):
        with open(table) as f:
            for row in f.readlines()[1:]:
                fields = row.split()
                if int(fields[2].rsplit(":", 1)[1], 16) == clientPort:
                    inode = fields[9]
    for index, pid in pids.items():
        if inode in socketInodes(pid):
            return index
    return None


def alive(pid: int) -> bool:
    try:
        os.kill(pid, 0)
    except ProcessLookupError:
        return False
    return True


def assertClean(log: str) -> None:
    assert "Traceback" not in log, log
    assert "Unhandled" not in log, log


def test_bothWorkersServe(servers: list[Server], site: Path, tmp_path: Path) -> None:
    """
    Requests on new connections are served by both workers, never by the
    parent; each worker's log lines name it.
    """
    server = start(servers, site, tmp_path)
    pids = workerPids(server)
    assert sorted(pids) == [1, 2]
    seen: set[int | None] = set()
    for i in range(200):
        r = requests.get(server.url(f"/a.txt?{i}"), timeout=TIMEOUT)
        assert r.status_code == 200
        seen.add(waitFor(functools.partial(servedBy, server.log, f"/a.txt?{i}")))
        if len(seen) == 2:
            break
    assert seen == {1, 2}
    assert server.logLines("[worker 1]", "Serving HTTP on")
    assert server.logLines("[worker 2]", "Serving HTTP on")
    assert server.stop() == 0
    assert not any(alive(pid) for pid in pids.values())
    assertClean(server.log())


def test_gracefulStopWithRequestInFlight(
    servers: list[Server], site: Path, tmp_path: Path
) -> None:
    """
    SIGTERM to the parent: a request in progress is answered, every worker
    ends, and the parent exits 0.
    """
    server = start(servers, site, tmp_path)
    pids = workerPids(server)
    result: list[requests.Response] = []
    client = threading.Thread(
        target=lambda: result.append(
            requests.get(server.url("/cgi-bin/slow.sh"), timeout=TIMEOUT)
        )
    )
    client.start()
    assert waitFor(lambda: list((site / "state").iterdir()), TIMEOUT)
    server.process.send_signal(signal.SIGTERM)
    client.join(TIMEOUT)
    assert result and result[0].status_code == 200
    assert result[0].text == "done \n"
    assert server.process.wait(TIMEOUT) == 0
    assert not any(alive(pid) for pid in pids.values())
    log = server.log()
    assert "Waiting up to 30.0 s for 1 request(s) in progress." in log
    assertClean(log)


def test_killedWorkerLosesOnlyItsOwnRequests(
    servers: list[Server], site: Path, tmp_path: Path
) -> None:
    """
    SIGKILL to one worker with requests in flight on both: its requests
    fail, the other's are answered; it is restarted (logged) and serves
    again.
    """
    server = start(servers, site, tmp_path)
    pids = workerPids(server)
    clients = []
    for i in range(6):
        client = socket.create_connection(("127.0.0.1", server.port), TIMEOUT)
        client.sendall(
            f"GET /cgi-bin/slow.sh?{i} HTTP/1.1\r\nHost: x\r\n"
            "Connection: close\r\n\r\n".encode()
        )
        clients.append(client)
    state = site / "state"
    assert waitFor(lambda: len(list(state.iterdir())) == 6, TIMEOUT)
    holders = [holder(client, pids) for client in clients]
    assert set(holders) <= {1, 2}, holders
    victim = pids[1]
    os.kill(victim, signal.SIGKILL)
    answers = []
    for client in clients:
        data = b""
        try:
            while chunk := client.recv(65536):
                data += chunk
        except ConnectionResetError:
            pass
        client.close()
        answers.append(data)
    for i, (served, answer) in enumerate(zip(holders, answers, strict=True)):
        if served == 1:
            assert answer == b"", answer
        else:
            assert answer.startswith(b"HTTP/1.1 200 "), answer
            assert f"done {i}\n".encode() in answer, answer
    assert server.logLines(
        f"Worker 1 (PID {victim}) was killed by signal 9; restarting it in 0.0 s."
    )
    assert waitFor(lambda: workerPids(server)[1] != victim, TIMEOUT)
    assert server.logLines("All 2 workers are serving.", timeout=TIMEOUT)
    seen: set[int | None] = set()
    for i in range(200):
        r = requests.get(server.url(f"/a.txt?after{i}"), timeout=TIMEOUT)
        assert r.status_code == 200
        seen.add(waitFor(functools.partial(servedBy, server.log, f"/a.txt?after{i}")))
        if len(seen) == 2:
            break
    assert seen == {1, 2}
    assert server.stop() == 0
    assertClean(server.log())


def reopenedTimes(server: Server, worker: int, times: int) -> bool:
    """
    Whether worker C{worker} said C{times} times that it reopened the
    access log.
    """
    lines = server.log().splitlines()
    said = [line for line in lines if f"[worker {worker}]" in line]
    return sum("reopened" in line for line in said) == times


def test_hangUpReopensEveryWorkersAccessLog(
    servers: list[Server], site: Path, tmp_path: Path
) -> None:
    """
    SIGHUP (and SIGUSR1) to the parent reach every worker: each reopens the
    access log, so that after logrotate renamed it, lines go to the new
    file.
    """
    accessLog = tmp_path / "access.log"
    server = start(servers, site, tmp_path, "--access-log", str(accessLog))
    signals = (("SIGHUP", signal.SIGHUP), ("SIGUSR1", signal.SIGUSR1))
    for times, (name, signum) in enumerate(signals, 1):
        rotated = tmp_path / f"access.log.{name}"
        accessLog.rename(rotated)
        server.process.send_signal(signum)
        for worker in (1, 2):
            reopened = functools.partial(reopenedTimes, server, worker, times)
            assert waitFor(reopened, TIMEOUT), server.log()
        for _ in range(20):
            requests.get(server.url("/a.txt"), timeout=TIMEOUT)
        assert waitFor(
            lambda: accessLog.exists() and accessLog.read_text().count("\n") == 20,
            TIMEOUT,
        ), accessLog.read_text()
        rotated.unlink()
    assert server.stop() == 0
    assertClean(server.log())


@pytest.fixture
def notifySocket(tmp_path: Path) -> Iterator[tuple[socket.socket, str]]:
    sock = socket.socket(socket.AF_UNIX, socket.SOCK_DGRAM)
    path = str(tmp_path / "notify")
    sock.bind(path)
    sock.settimeout(TIMEOUT)
    yield sock, path
    sock.close()


def messages(sock: socket.socket) -> dict[str, str]:
    data = sock.recv(4096).decode()
    return dict(line.split("=", 1) for line in data.splitlines())


def test_readiness(
    servers: list[Server],
    site: Path,
    tmp_path: Path,
    notifySocket: tuple[socket.socket, str],
) -> None:
    """
    Over a real NOTIFY_SOCKET: one READY=1 naming the parent, once both
    workers serve; RELOADING=1 then READY=1 around SIGHUP; STOPPING=1 on
    SIGTERM. Workers never see the parent's NOTIFY_SOCKET's messages, and
    scripts never see NOTIFY_SOCKET.
    """
    sock, path = notifySocket
    server = start(servers, site, tmp_path, env={**os.environ, "NOTIFY_SOCKET": path})
    ready = messages(sock)
    assert ready["READY"] == "1"
    assert ready["MAINPID"] == str(server.process.pid)
    assert ready["STATUS"] == f"Serving on {server.url()}"
    server.process.send_signal(signal.SIGHUP)
    reloading = messages(sock)
    assert reloading["RELOADING"] == "1"
    assert int(reloading["MONOTONIC_USEC"]) > 0
    assert messages(sock) == {"READY": "1", "STATUS": f"Serving on {server.url()}"}
    r = requests.get(server.url("/cgi-bin/ppid.sh"), timeout=TIMEOUT)
    assert r.status_code == 200
    server.process.send_signal(signal.SIGTERM)
    assert messages(sock) == {"STOPPING": "1", "STATUS": "Stopping"}
    assert server.process.wait(TIMEOUT) == 0
    sock.settimeout(0.5)
    with pytest.raises(TimeoutError):
        sock.recv(4096)
    assertClean(server.log())


@pytest.mark.skipif(
    ACTIVATE is None,
    reason="systemd-socket-activate (Debian package systemd) is not installed",
)
def test_socketActivation(
    site: Path, tmp_path: Path, notifySocket: tuple[socket.socket, str]
) -> None:
    """
    A socket systemd passed the parent is served by both workers; the first
    request (which woke the server) is answered.
    """
    assert ACTIVATE is not None
    sock, path = notifySocket
    port = freePort()
    logPath = tmp_path / "log"
    with logPath.open("wb") as log:
        process = subprocess.Popen(
            [
                ACTIVATE, "--listen", f"127.0.0.1:{port}", "--fdname=web",
                "--setenv=NOTIFY_SOCKET",
                TWISTD, "-n", "--pidfile=", "cgiserve", "--directory", str(site),
                "--port", "systemd:domain=INET:name=web", "--workers", "2",
            ],
            stdout=log, stderr=subprocess.STDOUT, stdin=subprocess.DEVNULL,
            env={**os.environ, "NOTIFY_SOCKET": path}, cwd=site,
        )  # fmt: skip
    try:
        assert waitFor(lambda: b"Listening on" in logPath.read_bytes(), TIMEOUT)
        seen: set[int | None] = set()
        for i in range(200):
            r = requests.get(f"http://127.0.0.1:{port}/a.txt?{i}", timeout=TIMEOUT)
            assert r.status_code == 200
            seen.add(
                waitFor(functools.partial(servedBy, logPath.read_text, f"/a.txt?{i}"))
            )
            if len(seen) == 2:
                break
        assert seen == {1, 2}
        assert messages(sock)["READY"] == "1"
    finally:
        process.send_signal(signal.SIGTERM)
        status = process.wait(TIMEOUT)
    assert status == 0
    assertClean(logPath.read_text())


@pytest.mark.parametrize("where", ["file", "stdout"])
def test_accessLogWholeLinesUnderLoad(
    servers: list[Server], site: Path, tmp_path: Path, where: str
) -> None:
    """
    Two workers writing one access log (a file, or the parent's standard
    output) under concurrent load: every request is one whole line.
    """
    accessLog = tmp_path / "access.log"
    target = str(accessLog) if where == "file" else "-"
    server = start(servers, site, tmp_path, "--access-log", target)
    # Long lines: many to a write, and more than a pipe's atomic 4 KiB.
    padding = "x" * 3000
    perThread, threads = 60, 6

    def load(t: int) -> None:
        with requests.Session() as session:
            for i in range(perThread):
                url = server.url(f"/a.txt?q={padding}{t * 1000 + i}")
                assert session.get(url, timeout=TIMEOUT).status_code == 200
                session.close()

    clients = [threading.Thread(target=load, args=(t,)) for t in range(threads)]
    for client in clients:
        client.start()
    for client in clients:
        client.join(60)
    total = perThread * threads

    def lines() -> list[str]:
        text = accessLog.read_text() if where == "file" else server.log()
        return [line for line in text.splitlines() if "GET /a.txt?q=" in line]

    found = waitFor(lambda: len(lines()) >= total and lines(), TIMEOUT)
    assert len(found) == total
    numbers = set()
    for line in found:
        match = COMBINED.match(line)
        assert match, line[:200]
        assert match.group(1) == padding
        numbers.add(int(match.group(2)))
    assert len(numbers) == total
    assert server.stop() == 0


@pytest.mark.parametrize("value", ["0", "-1", "two", "1.5", ""])
def test_badWorkerCount(site: Path, value: str) -> None:
    """
    A --workers that is not a whole number from 1 or 'auto': one line, exit
    status 2.
    """
    result = runTwistd(["--port", "tcp:0", "--workers", value], site)
    assert result.returncode == 2
    lines = result.stderr.strip().splitlines()
    assert len(lines) == 1, result.stderr
    assert f"--workers {value!r} is not a whole number from 1 or 'auto'" in lines[0]


def test_workerThatCannotStartStopsTheServer(site: Path, tmp_path: Path) -> None:
    """
    A worker that ends before it ever served (here: an --auth-file only
    the workers read, and which does not parse) ends the parent with status
    1, its reason in the log, rather than a restart loop.
    """
    bad = tmp_path / "htpasswd"
    bad.write_text("not a htpasswd line\n")
    process = subprocess.run(
        [
            TWISTD, "-n", "--pidfile=", "cgiserve", "--directory", str(site),
            "--port", "tcp:0:interface=127.0.0.1", "--workers", "2",
            "--auth-file", str(bad),
        ],
        capture_output=True, text=True, timeout=TIMEOUT, cwd=site,
    )  # fmt: skip
    assert process.returncode == 1, process.stdout + process.stderr
    assert "before it served; stopping." in process.stdout
    assert "[worker " in process.stdout


def test_parentKilledStopsWorkers(
    servers: list[Server], site: Path, tmp_path: Path
) -> None:
    """
    A parent killed outright (SIGKILL) leaves no worker serving on alone.
    """
    server = start(servers, site, tmp_path)
    pids = workerPids(server)
    server.process.kill()
    server.process.wait(TIMEOUT)
    assert waitFor(lambda: not any(alive(pid) for pid in pids.values()), TIMEOUT)


def test_processCapIsServerWide(
    servers: list[Server], site: Path, tmp_path: Path
) -> None:
    """
    --cgi-max-processes limits the whole server, not each worker: with a
    cap of 1, one of many concurrent script requests (spread over both
    workers) runs, the others get 503.
    """
    server = start(servers, site, tmp_path, "--cgi-max-processes", "1")
    statuses: list[int] = []

    def get() -> None:
        r = requests.get(server.url("/cgi-bin/slow.sh"), timeout=TIMEOUT)
        statuses.append(r.status_code)

    clients = [threading.Thread(target=get) for _ in range(8)]
    for client in clients:
        client.start()
    for client in clients:
        client.join(TIMEOUT)
    assert sorted(statuses) == [200] + [503] * 7
    # Both workers answered some of them.
    assert server.logLines("[worker 1]", '"GET /cgi-bin/slow.sh HTTP/1.1" 503')
    assert server.logLines("[worker 2]", '"GET /cgi-bin/slow.sh HTTP/1.1" 503')
    assert len(server.logLines("CGI spawner started")) == 1
    assert server.stop() == 0
    assertClean(server.log())


@pytest.mark.skipif(shutil.which("curl") is None, reason="curl is not installed")
def test_unixSocket(site: Path, tmp_path: Path) -> None:
    """
    A unix: port is the parent's: the workers serve it, and its file is
    removed once, by the parent, at the end (a worker removing it first
    would make the parent's removal fail, logged as an unhandled error).
    """
    path = tmp_path / "s.sock"
    logPath = tmp_path / "log"
    with logPath.open("wb") as log:
        process = subprocess.Popen(
            serverCommand(site, ["--port", f"unix:{path}", "--workers", "2"]),
            stdout=log, stderr=subprocess.STDOUT, stdin=subprocess.DEVNULL, cwd=site,
        )  # fmt: skip
    try:
        assert waitFor(lambda: b"All 2 workers" in logPath.read_bytes(), TIMEOUT)
        curl = shutil.which("curl")
        assert curl is not None
        for _ in range(5):
            out = subprocess.run(
                [curl, "-sS", "--unix-socket", str(path), "http://x/cgi-bin/ppid.sh"],
                capture_output=True,
                text=True,
                timeout=TIMEOUT,
                check=True,
            )
            assert out.stdout.strip().isdigit()
        # A worker that stops (here: told to, alone) does not remove the
        # parent's socket file; it is restarted and serves on.
        pid = int(
            re.findall(r"Started worker 1 \(PID (\d+)\)", logPath.read_text())[-1]
        )
        os.kill(pid, signal.SIGTERM)
        assert waitFor(
            lambda: len(re.findall(r"Started worker 1 ", logPath.read_text())) == 2,
            TIMEOUT,
        )
        assert path.exists()
        out = subprocess.run(
            [curl, "-sS", "--unix-socket", str(path), "http://x/a.txt"],
            capture_output=True,
            text=True,
            timeout=TIMEOUT,
            check=True,
        )
        assert out.stdout == "0123456789"
    finally:
        process.send_signal(signal.SIGTERM)
        status = process.wait(TIMEOUT)
    assert status == 0
    assert not path.exists()
    assertClean(logPath.read_text())


@pytest.mark.parametrize("where", ["journal", "logfile"])
def test_workerLogsGoWhereTheParentsGo(site: Path, tmp_path: Path, where: str) -> None:
    """
    Under the journal (standard output on JOURNAL_STREAM) the workers' lines
    are in the journal's format, with their priorities; with --logfile they
    are in that file, in twistd's format. Either way each names its worker.
    """
    logPath = tmp_path / "out"
    logFile = tmp_path / "twistd.log"
    twistdArgs = [f"--logfile={logFile}"] if where == "logfile" else []
    with logPath.open("wb") as out:
        st = os.fstat(out.fileno())
        env = {**os.environ, "JOURNAL_STREAM": f"{st.st_dev}:{st.st_ino}"}
        if where == "logfile":
            del env["JOURNAL_STREAM"]
        process = subprocess.Popen(
            serverCommand(site, ["--workers", "2"], twistdArgs=twistdArgs),
            stdout=out, stderr=subprocess.STDOUT, stdin=subprocess.DEVNULL,
            env=env, cwd=site,
        )  # fmt: skip
    log = logPath if where == "journal" else logFile
    try:
        assert waitFor(
            lambda: log.exists() and b"All 2 workers" in log.read_bytes(), TIMEOUT
        )
        port = int(re.findall(r"port (\d+)", log.read_text())[0])
        r = requests.get(f"http://127.0.0.1:{port}/missing", timeout=TIMEOUT)
        assert r.status_code == 404
        assert waitFor(lambda: b"GET /missing" in log.read_bytes(), TIMEOUT)
    finally:
        process.send_signal(signal.SIGTERM)
        status = process.wait(TIMEOUT)
    assert status == 0
    lines = log.read_text().splitlines()
    [access] = [line for line in lines if "GET /missing" in line]
    if where == "journal":
        assert re.match(r"<6>\[worker [12]\] 127\.0\.0\.1 - - \[", access), access
        workers = [line for line in lines if "[worker " in line]
        assert all(re.match(r"<[2-7]>\[worker [12]\] ", line) for line in workers)
    else:
        assert re.match(r"\S+ \[worker [12]\] 127\.0\.0\.1 - - \[", access), access
    assertClean(log.read_text())
