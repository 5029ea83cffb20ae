"""
End-to-end tests of the CGI spawner: the real C{twistd -n cgiserve} starts
one spawner process, which runs every script as C{--cgi-user} with one
exec (no C{setpriv}), turns exec errors into the same 403/502 as before,
enforces C{--cgi-max-processes}, ends what a timed-out script left, is
restarted when it dies, and goes with the server.

The server runs as root here (CI too); the tests that need a user switch
skip otherwise. C{strace} is needed to watch the execs.
"""

from __future__ import annotations

import contextlib
import os
import pwd
import shutil
import signal
import socket
import subprocess
import threading
import time
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest

from tests.support.probes import alive, statusField
from tests.support.raw import Conn, fetch, request
from tests.support.server import (
    ScriptTree,
    Server,
    makeScriptTree,
    startServer,
    waitFor,
)
from tests.support.shell import sh
from tests.support.spawner import scriptProcessesOf, spawnerOf

pytestmark = pytest.mark.e2e

IS_ROOT = os.geteuid() == 0
needsRoot = pytest.mark.skipif(
    not IS_ROOT, reason="only a server running as root switches scripts' user"
)
STRACE = shutil.which("strace")
needsStrace = pytest.mark.skipif(STRACE is None, reason="strace is not installed")
NOBODY = pwd.getpwnam("nobody").pw_uid


def scripts(state: Path) -> dict[str, bytes]:
    return {
        "cgi-bin/id.sh": sh("""
            printf 'Content-Type: text/plain\\n\\n'
            id -u
            cat /proc/$PPID/cmdline | tr '\\0' ' '
        """),
        "cgi-bin/hello.sh": sh("""
            printf 'Content-Type: text/plain\\n\\nhello\\n'
        """),
        "cgi-bin/badshebang.sh": b"#!/nonexistent/interpreter\n",
        "plain.txt": b"plain\n",
        # Its directory is root's alone: the spawner, as nobody, cannot
        # enter it to start the script (EACCES from chdir: 403).
        "cgi-bin/private/locked.sh": sh("""
            printf 'Content-Type: text/plain\\n\\nunreachable\\n'
        """),
        "cgi-bin/slow.sh": sh("""
            sleep 2
            printf 'Content-Type: text/plain\\n\\nslow\\n'
        """),
        # Leaves a child behind, then stays silent past --cgi-timeout.
        "cgi-bin/hang.sh": sh(f"""
            sleep 300 >/dev/null 2>&1 &
            echo $! > {state}/$QUERY_STRING.tmp
            mv {state}/$QUERY_STRING.tmp {state}/$QUERY_STRING.pid
            sleep 300
        """),
    }


@pytest.fixture(scope="module")
def tree(tmp_path_factory: pytest.TempPathFactory) -> Iterator[ScriptTree]:
    tree = makeScriptTree(
        "cgiserve-e2e-spawner-", scripts, tmp_path_factory.mktemp("logs")
    )
    (tree.root / "cgi-bin" / "private").chmod(0o700)
    yield tree
    shutil.rmtree(tree.root, ignore_errors=True)


@pytest.fixture(scope="module")
def server(tree: ScriptTree) -> Iterator[Server]:
    server = startServer(tree.root, ["--cgi-timeout", "1"], tree.logs)
    yield server
    server.stop()


def groupsOf(pid: int) -> list[str]:
    """
    The supplementary groups of process C{pid}.
    """
    for line in Path(f"/proc/{pid}/status").read_text().splitlines():
        if line.startswith("Groups:"):
            return line.split()[1:]
    raise AssertionError("no Groups line")


def quietly(port: int, target: str) -> None:
    """
    Fetch C{target}, whatever comes of it (the server may stop first).
    """
    with contextlib.suppress(OSError):
        fetch(port, target)


@pytest.fixture
def strays() -> Iterator[list[int]]:
    pids: list[int] = []
    yield pids
    for pid in pids:
        if alive(pid):
            with contextlib.suppress(ProcessLookupError):
                os.kill(pid, signal.SIGKILL)


def spawnerPid(server: Server) -> int:
    pid = waitFor(lambda: spawnerOf(server.process.pid), 10)
    assert pid, "the server has no spawner"
    return int(pid)


@needsRoot
def test_spawnerRunsAsTheCGIUser(server: Server) -> None:
    """
    The spawner is the server's child and runs as C{--cgi-user} (nobody by
    default) for good: real, effective, saved and file-system IDs, and no
    supplementary group.
    """
    spawner = spawnerPid(server)
    assert statusField(spawner, "Uid") == [str(NOBODY)] * 4
    assert groupsOf(spawner) == []


def test_scriptsRunAsTheCGIUserFromTheSpawner(server: Server) -> None:
    """
    A script runs as the CGI user, and its parent is the spawner: no
    C{setpriv} stands between them.
    """
    response = fetch(server.port, "/cgi-bin/id.sh")
    assert response.status == 200
    uid, parent = response.body.decode().split("\n", 1)
    assert int(uid) == (NOBODY if IS_ROOT else os.geteuid())
    assert "twisted_cgiserve._cgi.spawner" in parent
    assert "setpriv" not in parent


@needsStrace
def test_oneExecPerScriptAndNoForkInTheServer(server: Server) -> None:
    """
    Traced while it serves scripts: the server process neither forks nor
    execs anything, and the spawner's children exec the script itself and
    nothing else (no C{setpriv}).
    """
    assert STRACE is not None
    spawner = spawnerPid(server)
    traces = server.root.parent / f"strace-{time.monotonic_ns()}"
    traces.mkdir()
    tracers = [
        subprocess.Popen(
            [
                STRACE,
                "-f",
                "-qq",
                "-e",
                "trace=execve,fork,vfork,clone,clone3",
                "-o",
                str(traces / name),
                "-p",
                str(pid),
            ],
            stderr=subprocess.DEVNULL,
        )
        for name, pid in (("server", server.process.pid), ("spawner", spawner))
    ]
    try:
        # strace says nothing once attached: give it a moment.
        time.sleep(1.0)
        for _ in range(3):
            assert fetch(server.port, "/cgi-bin/hello.sh").status == 200
    finally:
        for tracer in tracers:
            tracer.send_signal(signal.SIGINT)
            tracer.wait(10)
    serverTrace = (traces / "server").read_text()
    spawnerTrace = (traces / "spawner").read_text()
    assert "execve(" not in serverTrace and "clone" not in serverTrace, serverTrace
    execs = [line for line in spawnerTrace.splitlines() if "execve(" in line]
    assert len(execs) >= 3, spawnerTrace
    assert all("hello.sh" in line for line in execs), execs
    assert "setpriv" not in spawnerTrace


def test_execErrorsAreAnsweredAsBefore(server: Server) -> None:
    """
    An interpreter that does not exist is C{502}, as when the server
    started scripts itself; the server goes on serving.
    """
    response = fetch(server.port, "/cgi-bin/badshebang.sh")
    assert response.status == 502
    assert fetch(server.port, "/cgi-bin/hello.sh").status == 200


@needsRoot
def test_permissionErrorIs403(server: Server) -> None:
    """
    A script the spawner's user may not reach (its directory is root's
    alone) is C{403}, from the spawner's C{EACCES}.
    """
    response = fetch(server.port, "/cgi-bin/private/locked.sh")
    assert response.status == 403
    assert b"unreachable" not in response.body


def test_processCapIsEnforced(
    tree: ScriptTree, tmp_path: Path, request: pytest.FixtureRequest
) -> None:
    """
    With C{--cgi-max-processes 1}, a second script while one runs is
    C{503} with C{Retry-After}; once the first is gone, scripts run again.
    """
    server = startServer(tree.root, ["--cgi-max-processes", "1"], tmp_path)
    request.addfinalizer(server.stop)
    results: list[int] = []
    first = threading.Thread(
        target=lambda: results.append(fetch(server.port, "/cgi-bin/slow.sh").status)
    )
    first.start()
    try:
        assert waitFor(lambda: scriptProcessesOf(server.process.pid), 5)
        refused = fetch(server.port, "/cgi-bin/hello.sh")
        assert refused.status == 503
        assert refused.header("retry-after") == "1"
    finally:
        first.join(10)
    assert results == [200]
    assert waitFor(lambda: fetch(server.port, "/cgi-bin/hello.sh").status == 200, 5)


def test_timedOutScriptsChildIsKilled(
    server: Server, tree: ScriptTree, strays: list[int]
) -> None:
    """
    A script silent past C{--cgi-timeout} is ended with what it started
    (the spawner signals its whole group): the client gets C{504}.
    """
    token = f"hang{time.monotonic_ns()}"
    response = fetch(server.port, f"/cgi-bin/hang.sh?{token}")
    assert response.status == 504
    marker = tree.state / f"{token}.pid"
    assert waitFor(marker.exists, 5)
    child = int(marker.read_text())
    strays.append(child)
    assert waitFor(lambda: not alive(child), 10), child


@needsRoot
def test_killedSpawnerIsRestarted(tree: ScriptTree, tmp_path: Path) -> None:
    """
    A spawner killed with C{SIGKILL} is logged and started again: requests
    meanwhile get a quick C{503}, never a hang, and scripts run again
    within seconds, still as the CGI user.
    """
    server = startServer(tree.root, [], tmp_path)
    try:
        first = spawnerPid(server)
        assert fetch(server.port, "/cgi-bin/hello.sh").status == 200
        os.kill(first, signal.SIGKILL)

        def restarted() -> bool:
            started = time.monotonic()
            status = fetch(server.port, "/cgi-bin/hello.sh").status
            assert time.monotonic() - started < 3
            assert status in (200, 503), status
            return status == 200

        assert waitFor(restarted, 15)
        second = spawnerPid(server)
        assert second != first
        assert statusField(second, "Uid") == [str(NOBODY)] * 4
        assert "CGI spawner lost" in server.log()
    finally:
        assert server.stop() == 0


def test_stoppingTheServerLeavesNothingBehind(
    tree: ScriptTree, tmp_path: Path, strays: list[int]
) -> None:
    """
    Stopped while a script runs, the server ends it and what it started,
    and the spawner exits too: no process of the server is left.
    """
    server = startServer(tree.root, [], tmp_path)
    spawner = spawnerPid(server)
    token = f"stop{time.monotonic_ns()}"
    hanging = threading.Thread(
        target=quietly, args=(server.port, f"/cgi-bin/hang.sh?{token}")
    )
    hanging.start()
    marker = tree.state / f"{token}.pid"
    assert waitFor(marker.exists, 5)
    child = int(marker.read_text())
    strays.append(child)
    scripts = scriptProcessesOf(server.process.pid)
    assert scripts
    server.stop()
    hanging.join(10)
    for pid in [spawner, child, *scripts]:
        assert waitFor(lambda p=pid: not alive(p), 10), pid


def stalled(pid: int) -> contextlib.AbstractContextManager[None]:
    """
    The spawner C{pid} stopped (C{SIGSTOP}) for the block: it answers
    nothing meanwhile, as a spawner whose execs take long.
    """

    @contextlib.contextmanager
    def stopped() -> Iterator[None]:
        os.kill(pid, signal.SIGSTOP)
        try:
            yield
        finally:
            with contextlib.suppress(ProcessLookupError):
                os.kill(pid, signal.SIGCONT)

    return stopped()


def test_aStalledSpawnerDoesNotStallTheServer(tree: ScriptTree, tmp_path: Path) -> None:
    """
    While the spawner has not answered a request to start a script, the
    server goes on serving (it never waits for the spawner); a spawner
    that stays silent past the deadline is replaced, and the waiting
    client gets a C{503} with C{Retry-After}, not a hang.
    """
    server = startServer(tree.root, [], tmp_path)
    try:
        first = spawnerPid(server)
        assert fetch(server.port, "/cgi-bin/hello.sh").status == 200
        results: list[Any] = []
        with stalled(first):
            waiting = threading.Thread(
                target=lambda: results.append(fetch(server.port, "/cgi-bin/hello.sh"))
            )
            waiting.start()
            time.sleep(0.3)
            started = time.monotonic()
            assert fetch(server.port, "/plain.txt").body == b"plain\n"
            assert time.monotonic() - started < 0.5
            waiting.join(10)
        [refused] = results
        assert refused.status == 503
        assert refused.header("retry-after") == "1"
        assert "did not answer in time" in server.log()
        assert waitFor(
            lambda: fetch(server.port, "/cgi-bin/hello.sh").status == 200, 15
        )
        assert spawnerPid(server) != first
    finally:
        assert server.stop() == 0


def test_clientGoneWhileItsScriptStartsLeavesNothing(
    tree: ScriptTree, tmp_path: Path, strays: list[int]
) -> None:
    """
    A client that goes away while its script is still being started (the
    spawner stopped meanwhile): the script, once started, is ended with
    whatever it started, nothing is left, and the server serves on.
    """
    server = startServer(tree.root, [], tmp_path)
    try:
        spawner = spawnerPid(server)
        token = f"gone{time.monotonic_ns()}"
        with stalled(spawner):
            with Conn(server.port) as conn:
                conn.send(request(server.port, f"/cgi-bin/hang.sh?{token}"))
                time.sleep(0.3)
            time.sleep(0.3)
        # Started once the spawner runs again, and ended at once: by the
        # time it could leave a child behind, its group is signalled.
        assert waitFor(lambda: not scriptProcessesOf(server.process.pid), 10)
        marker = tree.state / f"{token}.pid"
        if marker.exists():
            child = int(marker.read_text())
            strays.append(child)
            assert waitFor(lambda: not alive(child), 10), child
        assert fetch(server.port, "/cgi-bin/hello.sh").status == 200
    finally:
        assert server.stop() == 0


def spawnerAddress(server: Server) -> str:
    """
    The spawner's abstract socket name, as any local process can read it
    in C{/proc/net/unix}.
    """
    prefix = f"@cgiserve-spawner-{server.process.pid}-"
    for line in Path("/proc/net/unix").read_text().splitlines():
        name = line.split()[-1]
        if name.startswith(prefix):
            return "\0" + name[1:]
    raise AssertionError("no spawner socket in /proc/net/unix")


@needsRoot
def test_scriptsUserCannotReachTheSpawner(server: Server) -> None:
    """
    A process running as --cgi-user (what every script runs as) that finds
    the spawner's socket is refused: it could otherwise start processes
    outside the process cap, or end other scripts.
    """
    address = spawnerAddress(server)
    fetch(server.port, "/cgi-bin/hello.sh")
    child = os.fork()
    if child == 0:  # pragma: no cover (the child)
        status = 1
        try:
            os.setgroups([])
            os.setgid(NOBODY)
            os.setuid(NOBODY)
            sock = socket.socket(socket.AF_UNIX, socket.SOCK_SEQPACKET)
            sock.settimeout(5)
            sock.connect(address)
            status = 0 if sock.recv(4096) == b"" else 2
        finally:
            os._exit(status)
    _, status = os.waitpid(child, 0)
    assert os.waitstatus_to_exitcode(status) == 0, "nobody was let in"
    # The server's own connection still works.
    assert fetch(server.port, "/cgi-bin/hello.sh").body == b"hello\n"
