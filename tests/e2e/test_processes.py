"""
End-to-end tests of a script's process group: what a script leaves running
(C{sleep 300 &}, with its output redirected or still on the script's
standard output) is ended on --cgi-timeout, when the client goes away, on
an error and at shutdown, even after the script itself has exited; it
counts against --cgi-max-processes until it is gone; the response ends
when the script closes its standard output, not when it exits; and no
child of the server is left behind, zombie or not.

Everything runs against the real C{twistd -n cgiserve} over loopback, with
real shell scripts that leave the process IDs of what they start in a
world-writable state directory (scripts run as C{nobody} when the tests run
as root).
"""

from __future__ import annotations

import contextlib
import os
import shutil
import signal
import subprocess
import time
from collections.abc import Callable, Iterator
from pathlib import Path

import pytest

from tests.support.probes import alive, gone, processStat
from tests.support.raw import Conn, fetch, request
from tests.support.server import (
    ScriptTree,
    Server,
    makeScriptTree,
    startServer,
    waitFor,
)
from tests.support.shell import sh
from tests.support.spawner import scriptProcessesOf

pytestmark = pytest.mark.e2e

# --cgi-timeout of the short-timeout server, in seconds.
CGI_TIMEOUT = 1.0
# Seconds between SIGTERM and SIGKILL (twisted_cgiserve._cgi.protocol.KILL_GRACE).
KILL_GRACE = 3.0


def scripts(state: Path) -> dict[str, bytes]:
    """
    The scripts, by path below the document root. C{$QUERY_STRING} is a
    token naming the file a script leaves its process IDs in (written under
    a temporary name and renamed, so a test never reads half a file).
    """

    def record(pids: str) -> str:
        return (
            f"echo {pids} > {state}/$QUERY_STRING.tmp\n"
            f"mv {state}/$QUERY_STRING.tmp {state}/$QUERY_STRING.pid"
        )

    return {
        "cgi-bin/hello.sh": sh("""
            printf 'Content-Type: text/plain\\n\\nhello\\n'
        """),
        # A child on the script's standard output: the response stays open
        # after the script has exited.
        "cgi-bin/inherit.sh": sh(f"""
            sleep 300 &
            {record("$!")}
            printf 'Content-Type: text/plain\\n\\npartial\\n'
            exit 0
        """),
        # A child with its output redirected: the response is complete when
        # the script exits, the child lingers.
        "cgi-bin/redirect.sh": sh(f"""
            sleep 300 >/dev/null 2>&1 &
            {record("$!")}
            printf 'Content-Type: text/plain\\n\\ndone\\n'
        """),
        # The same, and a second child holding the response open.
        "cgi-bin/redirecthold.sh": sh(f"""
            sleep 300 >/dev/null 2>&1 &
            first=$!
            sleep 301 2>/dev/null &
            {record("$first $!")}
            printf 'Content-Type: text/plain\\n\\npartial\\n'
        """),
        # Exits; its child writes an invalid head later: 502.
        "cgi-bin/badlater.sh": sh(f"""
            (sleep 0.5; printf 'not a header\\n\\n'; exec sleep 300) &
            {record("$!")}
            exit 0
        """),
        # A redirected child, and a head cut short: 502.
        "cgi-bin/badhead.sh": sh(f"""
            sleep 300 >/dev/null 2>&1 &
            {record("$!")}
            printf 'Status: 200'
        """),
        # A complete response (no Content-Length), then goes on working with
        # its standard output closed.
        "cgi-bin/closeout.sh": sh(f"""
            {record("$$")}
            printf 'Content-Type: text/plain\\n\\nthe whole body\\n'
            exec >&-
            sleep 30
        """),
    }


@pytest.fixture(scope="module")
def tree(tmp_path_factory: pytest.TempPathFactory) -> Iterator[ScriptTree]:
    tree = makeScriptTree(
        "cgiserve-e2e-processes-", scripts, tmp_path_factory.mktemp("logs")
    )
    yield tree
    shutil.rmtree(tree.root, ignore_errors=True)


@pytest.fixture(scope="module")
def short(
    tree: ScriptTree, tmp_path_factory: pytest.TempPathFactory
) -> Iterator[Server]:
    """
    --cgi-timeout 1.
    """
    server = startServer(
        tree.root,
        ["--cgi-timeout", str(CGI_TIMEOUT)],
        logDir=tmp_path_factory.mktemp("short"),
    )
    yield server
    server.stop()


@pytest.fixture(scope="module")
def defaults(
    tree: ScriptTree, tmp_path_factory: pytest.TempPathFactory
) -> Iterator[Server]:
    """
    The default options: a 60 s --cgi-timeout, far away.
    """
    server = startServer(tree.root, logDir=tmp_path_factory.mktemp("defaults"))
    yield server
    server.stop()


@pytest.fixture
def strays() -> Iterator[list[int]]:
    """
    Process IDs a test's scripts left; killed at the end whatever happened,
    so a failing test leaves no sleep behind.
    """
    pids: list[int] = []
    yield pids
    for pid in pids:
        if alive(pid):
            with contextlib.suppress(ProcessLookupError):
                os.kill(pid, signal.SIGKILL)


# --------------------------------------------------------------------------
# Helpers


def noChildren(server: Server) -> None:
    """
    No script process is left, zombie or not (the CGI spawner and the
    workers of --workers are the server's, not the scripts').
    """
    pid = server.process.pid
    assert waitFor(lambda: not scriptProcessesOf(pid), 5), [
        (c, processStat(c)) for c in scriptProcessesOf(pid)
    ]


def pidsOf(
    tree: ScriptTree, token: str, strays: list[int], *, running: bool = True
) -> list[int]:
    """
    The process IDs the script run with C{token} recorded (and checks they
    still run, if C{running}).
    """
    path = tree.state / f"{token}.pid"
    assert waitFor(path.exists, 5), "the script never recorded its children"
    pids = [int(p) for p in path.read_text().split()]
    strays += pids
    for pid in pids:
        assert alive(pid) or not running, pid
    return pids


def assertEnded(pids: list[int], server: Server, within: float) -> float:
    """
    Every one of C{pids} ends within C{within} seconds; how long it took.
    """
    started = time.monotonic()
    for pid in pids:
        assert waitFor(lambda p=pid: gone(p, server.process.pid), within), (
            pid,
            processStat(pid),
        )
    return time.monotonic() - started


# --------------------------------------------------------------------------
# --cgi-timeout


def test_timeoutEndsChildOnOutputAfterScriptExited(
    short: Server, tree: ScriptTree, token: str, strays: list[int]
) -> None:
    """
    A script exits, leaving a child that holds its standard output and says
    nothing: after --cgi-timeout the response is cut and the child ended.
    """
    port = short.port
    with Conn(port) as conn:
        conn.send(request(port, f"/cgi-bin/inherit.sh?{token}"))
        (child,) = pidsOf(tree, token, strays)
        r = conn.readResponse()
    assert r.status == 200
    assert r.body == b"partial\n"
    assert not r.complete
    assertEnded([child], short, 3)
    noChildren(short)


def test_timeoutEndsRedirectedChildAfterResponse(
    short: Server, tree: ScriptTree, token: str, strays: list[int]
) -> None:
    """
    A script answers and exits, leaving a child with its output redirected:
    the client has its complete response at once; the child is ended
    --cgi-timeout after the response, and that is logged once, with the
    script and its process ID.
    """
    r = fetch(short.port, f"/cgi-bin/redirect.sh?{token}")
    answered = time.monotonic()
    assert (r.status, r.body, r.complete) == (200, b"done\n", True)
    (child,) = pidsOf(tree, token, strays)
    time.sleep(CGI_TIMEOUT / 2)
    assert alive(child)
    assertEnded([child], short, 3)
    assert time.monotonic() - answered >= CGI_TIMEOUT * 0.9
    noChildren(short)
    assert short.logLines("/cgi-bin/redirect.sh", "after its response ended")
    # The script's own process ID names it in that line.
    lines = [
        line
        for line in short.log().splitlines()
        if "/cgi-bin/redirect.sh [" in line and "after its response ended" in line
    ]
    assert len(lines) == 1, lines


# --------------------------------------------------------------------------
# The client goes away


@pytest.mark.parametrize("script", ["inherit.sh", "redirecthold.sh"])
def test_disconnectEndsChildrenAfterScriptExited(
    defaults: Server, tree: ScriptTree, token: str, strays: list[int], script: str
) -> None:
    """
    A client that goes away after part of the response gets the script's
    children ended within a few seconds, though the script itself has
    already exited and --cgi-timeout is a minute away.
    """
    port = defaults.port
    with Conn(port) as conn:
        conn.send(request(port, f"/cgi-bin/{script}?{token}", close=False))
        pids = pidsOf(tree, token, strays)
        assert conn.sock.recv(65536).startswith(b"HTTP/1.1 200 ")
    assertEnded(pids, defaults, 5)
    noChildren(defaults)


# --------------------------------------------------------------------------
# Errors


@pytest.mark.parametrize("script", ["badlater.sh", "badhead.sh"])
def test_badGatewayEndsChildAfterScriptExited(
    defaults: Server, tree: ScriptTree, token: str, strays: list[int], script: str
) -> None:
    """
    An invalid response (written by a child after the script exited, or a
    head cut short by the script's exit) is a 502, and what the script
    left running is ended.
    """
    r = fetch(defaults.port, f"/cgi-bin/{script}?{token}")
    assert r.status == 502
    (child,) = pidsOf(tree, token, strays, running=False)
    assertEnded([child], defaults, 5)
    noChildren(defaults)


# --------------------------------------------------------------------------
# Shutdown


@pytest.mark.parametrize("script", ["inherit.sh", "redirect.sh"])
def test_shutdownEndsChildrenAfterScriptExited(
    serve: Callable[..., Server],
    tree: ScriptTree,
    token: str,
    strays: list[int],
    script: str,
) -> None:
    """
    SIGTERM to the server while a script's child lingers (holding a
    response in flight, or after a complete response): the server exits
    with status 0 within the grace and a few seconds, and the child does
    not outlive it.
    """
    server = serve(tree.root, ["--shutdown-grace", "1"])
    port = server.port
    with Conn(port) as conn:
        conn.send(request(port, f"/cgi-bin/{script}?{token}"))
        (child,) = pidsOf(tree, token, strays)
        assert conn.sock.recv(65536).startswith(b"HTTP/1.1 200 ")
        server.process.send_signal(signal.SIGTERM)
        signalled = time.monotonic()
        try:
            status = server.process.wait(1 + KILL_GRACE + 3)
        except subprocess.TimeoutExpired:
            status = None
    assert status == 0, (status, server.log()[-2000:])
    assert time.monotonic() - signalled < 1 + KILL_GRACE + 2
    assertEnded([child], server, 2)


# --------------------------------------------------------------------------
# The end of the response


def test_responseEndsWhenScriptClosesItsOutput(
    short: Server, tree: ScriptTree, token: str, strays: list[int]
) -> None:
    """
    A script that writes a complete response without Content-Length, closes
    its standard output and works on for 30 s: curl gets the whole body at
    once and succeeds; the script is ended --cgi-timeout after its response.
    """
    if shutil.which("curl") is None:
        pytest.skip("curl is not installed")
    started = time.monotonic()
    result = subprocess.run(
        ["curl", "-sS", "--max-time", "20", short.url(f"/cgi-bin/closeout.sh?{token}")],
        capture_output=True,
        timeout=30,
    )
    elapsed = time.monotonic() - started
    assert result.returncode == 0, (result.returncode, result.stderr)
    assert result.stdout == b"the whole body\n"
    assert elapsed < CGI_TIMEOUT * 0.8, elapsed
    (script,) = pidsOf(tree, token, strays)
    took = assertEnded([script], short, CGI_TIMEOUT + 3)
    assert took + elapsed >= CGI_TIMEOUT * 0.8
    noChildren(short)


# --------------------------------------------------------------------------
# --cgi-max-processes


def test_leftoversCountAgainstMaxProcesses(
    serve: Callable[..., Server], tree: ScriptTree, token: str, strays: list[int]
) -> None:
    """
    With --cgi-max-processes 1, a child a script left behind takes the one
    place: the next CGI request gets 503 until --cgi-timeout has ended the
    child, and 200 after.
    """
    server = serve(tree.root, ["--cgi-max-processes", "1", "--cgi-timeout", "2"])
    r = fetch(server.port, f"/cgi-bin/redirect.sh?{token}")
    assert (r.status, r.body) == (200, b"done\n")
    (child,) = pidsOf(tree, token, strays)
    refused = fetch(server.port, "/cgi-bin/hello.sh")
    assert refused.status == 503
    assert alive(child)
    assertEnded([child], server, 5)
    assert waitFor(lambda: fetch(server.port, "/cgi-bin/hello.sh").status == 200, 2)
    noChildren(server)


def test_serverLogsHaveNoTraceback(short: Server, defaults: Server) -> None:
    """
    Nothing above made a server log a traceback, and neither server has a
    child left.
    """
    for server in (short, defaults):
        assert "Traceback" not in server.log(), server.log()[-3000:]
        noChildren(server)
