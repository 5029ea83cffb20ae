"""
End-to-end tests of the server's limits: script timeouts (--cgi-timeout),
scripts ended when their client leaves, the cap on running scripts
(--cgi-max-processes), request body limits (--max-body-size) and the
cleanup of spooled bodies, request-head hygiene (--idle-timeout,
--header-timeout, size limits, ambiguous framing), and graceful shutdown
(--shutdown-grace).

Everything runs against the real C{twistd -n cgiserve} process over
loopback, as root (scripts run as C{nobody}), with short timeouts given as
options so the whole module runs in well under a minute. The document root
lives under /tmp with mode 0755, as in test_e2e_cgi, so that nobody can
reach it; scripts are C{/bin/sh} scripts that leave their process IDs in a
world-writable state directory for the tests to watch.
"""

from __future__ import annotations

import contextlib
import os
import re
import shutil
import signal
import subprocess
import tempfile
import threading
import time
from collections.abc import Callable, Iterator
from concurrent.futures import ThreadPoolExecutor
from dataclasses import dataclass
from pathlib import Path

import pytest

from tests.support.probes import (
    alive,
    deletedFiles,
    groupGone,
    groupMembers,
    openFiles,
    processState,
)
from tests.support.raw import (
    Conn,
    Response,
    chunked,
    parseResponses,
    refused,
    request,
)
from tests.support.server import (
    ScriptTree,
    Server,
    makeScriptTree,
    runTwistd,
    startServer,
    waitFor,
)
from tests.support.shell import sh
from tests.support.spawner import servingProcessesOf

pytestmark = pytest.mark.e2e

TIMEOUT = 10.0
MiB = 1024 * 1024

# The limits server's options.
CGI_TIMEOUT = 1.0
BODY_LIMIT = 2_000_000
# The default --max-body-size: 1 GiB.
DEFAULT_BODY_LIMIT = 1024 * MiB
FLOOD_SIZE = 16_000_000
TICKS = 10


# --------------------------------------------------------------------------
# The tree


def scripts(state: Path) -> dict[str, bytes]:
    """
    The scripts of the tree, by path below the document root. C{$QUERY_STRING}
    is a token naming the files a script leaves in C{state}; process ID
    files are written under a temporary name and renamed, so a test never
    reads half a file.
    """
    return {
        "cgi-bin/hello.sh": sh(r"""
            printf 'Content-Type: text/plain\n\nHello World\n'
        """),
        # Silent for 30 s; a child in the same process group.
        "cgi-bin/hang.sh": sh(f"""
            sleep 30 &
            echo $$ $! > {state}/hang-$QUERY_STRING.tmp
            mv {state}/hang-$QUERY_STRING.tmp {state}/hang-$QUERY_STRING.pid
            wait
        """),
        # Sends its head and part of a chunked body, then goes silent.
        "cgi-bin/partial.sh": sh(f"""
            printf 'Content-Type: text/plain\\n\\npartial-body\\n'
            echo $$ > {state}/partial-$QUERY_STRING.tmp
            mv {state}/partial-$QUERY_STRING.tmp {state}/partial-$QUERY_STRING.pid
            exec sleep 30
        """),
        # Promises 100 bytes, sends 10, goes silent.
        "cgi-bin/clenpartial.sh": sh(f"""
            printf 'Content-Type: text/plain\\nContent-Length: 100\\n\\n0123456789'
            echo $$ > {state}/clenpartial-$QUERY_STRING.tmp
            mv {state}/clenpartial-$QUERY_STRING.tmp \\
                {state}/clenpartial-$QUERY_STRING.pid
            exec sleep 30
        """),
        # A line every 0.3 s for 3 s (or $QUERY_STRING lines): never silent for
        # a whole second.
        "cgi-bin/ticker.sh": sh(f"""
            printf 'Content-Type: text/plain\\n\\n'
            i=0
            n=${{QUERY_STRING:-{TICKS}}}
            while [ $i -lt $n ]; do
                sleep 0.3
                echo "tick $i"
                i=$((i + 1))
            done
        """),
        # Ignores SIGTERM (and so do its sleeps).
        "cgi-bin/stubborn.sh": sh(f"""
            trap '' TERM
            echo $$ > {state}/stubborn-$QUERY_STRING.tmp
            mv {state}/stubborn-$QUERY_STRING.tmp {state}/stubborn-$QUERY_STRING.pid
            while :; do sleep 0.2; done
        """),
        # A script with a background child, waiting for it.
        "cgi-bin/child.sh": sh(f"""
            sleep 100 &
            echo $$ $! > {state}/child-$QUERY_STRING.tmp
            mv {state}/child-$QUERY_STRING.tmp {state}/child-$QUERY_STRING.pid
            wait
        """),
        # Far more output than pipe and socket buffers hold.
        "cgi-bin/flood.sh": sh(f"""
            printf 'Content-Type: application/octet-stream\\n\\n'
            exec head -c {FLOOD_SIZE} /dev/zero
        """),
        # Counts its starts, then waits until the test releases it (at most
        # 30 s).
        "cgi-bin/wait.sh": sh(f"""
            echo $$ >> {state}/started-$QUERY_STRING
            i=0
            while [ ! -e {state}/release-$QUERY_STRING ] && [ $i -lt 600 ]; do
                sleep 0.05
                i=$((i + 1))
            done
            printf 'Content-Type: text/plain\\n\\nreleased\\n'
        """),
        # Sleeps a second, then answers.
        "cgi-bin/sleep1.sh": sh(f"""
            echo $$ > {state}/sleep1-$QUERY_STRING.tmp
            mv {state}/sleep1-$QUERY_STRING.tmp {state}/sleep1-$QUERY_STRING.pid
            sleep 1
            printf 'Content-Type: text/plain\\n\\nslept a second\\n'
        """),
        # Records that it ran.
        "cgi-bin/count.sh": sh(f"""
            echo ran >> {state}/count-$QUERY_STRING
            printf 'Content-Type: text/plain\\n\\ncounted\\n'
        """),
        "cgi-bin/cat.sh": sh(r"""
            printf 'Content-Type: application/octet-stream\n\n'
            exec cat
        """),
        # Dies without reading its input or writing anything.
        "cgi-bin/crash.sh": sh("""
            kill -9 $$
        """),
    }


@pytest.fixture(scope="module")
def tree(tmp_path_factory: pytest.TempPathFactory) -> Iterator[ScriptTree]:
    tree = makeScriptTree(
        "cgiserve-e2e-limits-", scripts, tmp_path_factory.mktemp("limits-logs")
    )
    (tree.root / "static.txt").write_bytes(b"static file contents\n")
    yield tree
    shutil.rmtree(tree.root, ignore_errors=True)


@dataclass
class SpoolServer:
    server: Server
    tmpdir: Path


@pytest.fixture(scope="module")
def limits(tree: ScriptTree) -> Iterator[SpoolServer]:
    """
    Every limit short: --cgi-timeout 1, --max-body-size 2000000,
    --idle-timeout 1, --header-timeout 1; its own, empty TMPDIR.
    """
    tmpdir = Path(tempfile.mkdtemp(prefix="cgiserve-limits-tmp-"))
    srv = startServer(
        tree.root,
        [
            "--cgi-timeout",
            str(CGI_TIMEOUT),
            "--max-body-size",
            str(BODY_LIMIT),
            "--idle-timeout",
            "1",
            "--header-timeout",
            "1",
        ],
        logDir=tree.logs,
        env={**os.environ, "TMPDIR": str(tmpdir)},
    )
    yield SpoolServer(srv, tmpdir)
    srv.stop()
    shutil.rmtree(tmpdir, ignore_errors=True)


@pytest.fixture(scope="module")
def port(limits: SpoolServer) -> int:
    return limits.server.port


@pytest.fixture(scope="module")
def defaults(tree: ScriptTree) -> Iterator[Server]:
    """
    The default options (a 60 s script timeout, 50 scripts, 1 GiB bodies,
    20 s for a request head).
    """
    srv = startServer(tree.root, logDir=tree.logs)
    yield srv
    srv.stop()


@pytest.fixture(scope="module")
def twoScripts(tree: ScriptTree) -> Iterator[Server]:
    """
    --cgi-max-processes 2.
    """
    srv = startServer(tree.root, ["--cgi-max-processes", "2"], logDir=tree.logs)
    yield srv
    srv.stop()


# --------------------------------------------------------------------------
# Helpers


def pidsFrom(path: Path, timeout: float = 5.0) -> list[int]:
    """
    The process IDs a script wrote to C{path}, once it has.
    """
    assert waitFor(path.exists, timeout), f"the script never wrote {path.name}"
    return [int(p) for p in path.read_text().split()]


@contextlib.contextmanager
def reapGroup(pgid: Callable[[], int | None]) -> Iterator[None]:
    """
    Make sure a test's script group does not outlive it, whatever the
    server did.
    """
    try:
        yield
    finally:
        group = pgid()
        if group is not None and not groupGone(group):
            with contextlib.suppress(ProcessLookupError):
                os.killpg(group, signal.SIGKILL)


def assertCompleteError(r: Response, code: int) -> None:
    """
    C{r} is a complete C{code} response: a Content-Length header and
    exactly that many bytes of body, with http.server's error page.
    """
    assert r.status == code, (r.status, r.reason, r.body[:300])
    length = r.header("Content-Length")
    assert length is not None, r.head
    assert r.complete, r.head
    assert int(length) == len(r.body) > 0, (length, len(r.body))
    assert f"Error code: {code}".encode() in r.body, r.body


def refusal(port: int, data: bytes, wait: float = 5.0) -> tuple[Response, bool]:
    """
    Send C{data} (tolerating the server closing before all of it is sent)
    and return the response and whether the server then closed the
    connection.
    """
    with Conn(port, wait) as conn:
        with contextlib.suppress(BrokenPipeError, ConnectionResetError):
            conn.send(data)
        r = conn.readResponse()
        return r, conn.closedByPeer(2.0)


def countLines(path: Path) -> int:
    try:
        return len(path.read_text().splitlines())
    except FileNotFoundError:
        return 0


# --------------------------------------------------------------------------
# Command line


NEW_OPTIONS = [
    "--cgi-timeout",
    "--cgi-max-processes",
    "--max-body-size",
    "--idle-timeout",
    "--header-timeout",
    "--shutdown-grace",
]


def test_helpListsLimitOptions(tree: ScriptTree) -> None:
    """
    'twistd cgiserve --help' lists every limit option.
    """
    result = runTwistd(["--help"], tree.root)
    assert result.returncode == 0, result.stderr
    missing = [o for o in NEW_OPTIONS if o + "=" not in result.stdout]
    assert not missing, result.stdout


def usageErrorOf(tree: ScriptTree, option: str, value: str) -> list[str]:
    """
    Run the server with C{option value}; the lines of its standard error,
    after checking it exited at once with status 2 and no traceback.
    """
    result = runTwistd(["--directory", str(tree.root), option, value], tree.root)
    assert result.returncode == 2, (option, value, result.returncode, result.stderr)
    assert "Traceback" not in result.stderr
    return result.stderr.strip().splitlines()


@pytest.mark.parametrize(
    ("option", "value"),
    [
        ("--cgi-timeout", "-1"),
        ("--cgi-max-processes", "-2"),
        ("--max-body-size", "-1"),
        ("--idle-timeout", "-1"),
        ("--header-timeout", "-3"),
        ("--shutdown-grace", "-1"),
    ],
)
def test_badLimitValueIsUsageError(tree: ScriptTree, option: str, value: str) -> None:
    """
    A negative limit ends the server at once with exit status 2 and one
    line on standard error naming the option, never a traceback.
    """
    lines = usageErrorOf(tree, option, value)
    assert len(lines) == 1, lines
    assert option in lines[0], lines


def test_nonNumericLimitNamesTheOption(tree: ScriptTree) -> None:
    """
    A limit that is not a number (of the right kind) ends the server with
    exit status 2 and one line on standard error that says which option was
    wrong (as the negative values' errors do), not just Python's conversion
    error.
    """
    wrong = []
    for option, value in [
        ("--cgi-timeout", "soon"),
        ("--cgi-max-processes", "many"),
        ("--cgi-max-processes", "2.5"),
        ("--max-body-size", "big"),
        ("--idle-timeout", "x"),
        ("--header-timeout", "never"),
        ("--shutdown-grace", "later"),
    ]:
        lines = usageErrorOf(tree, option, value)
        if len(lines) != 1 or option not in lines[0]:
            wrong.append((option, value, lines))
    assert wrong == [], wrong


# --------------------------------------------------------------------------
# 1. --cgi-timeout


def test_silentScriptGetsGatewayTimeout(
    limits: SpoolServer, tree: ScriptTree, token: str
) -> None:
    """
    With --cgi-timeout 1, a script silent for 30 s gets the client a
    complete '504 Gateway Timeout' error page about a second after the
    request; the script and its child (its whole process group) are ended,
    and the log names the script, its pid and 'timed out'.
    """
    port = limits.server.port
    pidFile = tree.state / f"hang-{token}.pid"
    with reapGroup(lambda: pidsFrom(pidFile)[0] if pidFile.exists() else None):
        started = time.monotonic()
        with Conn(port) as conn:
            conn.send(request(port, f"/cgi-bin/hang.sh?{token}", close=False))
            r = conn.readResponse()
            elapsed = time.monotonic() - started
        assertCompleteError(r, 504)
        assert r.reason == b"Gateway Timeout"
        assert CGI_TIMEOUT - 0.1 <= elapsed < CGI_TIMEOUT + 1.0, elapsed
        script, child = pidsFrom(pidFile)
        server = limits.server.process.pid
        assert waitFor(lambda: groupGone(script, server), 5), groupMembers(script)
        assert waitFor(lambda: processState(script) is None, 5)
        assert processState(child) in (None, "Z")
        assert limits.server.logLines(
            "hang.sh", str(script), "timed out", timeout=3.0
        ), limits.server.log()[-3000:]


def test_fractionalTimeout(tree: ScriptTree, token: str) -> None:
    """
    --cgi-timeout takes fractions of a second: with 0.5, a silent script
    gets its 504 in well under a second.
    """
    server = startServer(tree.root, ["--cgi-timeout", "0.5"], logDir=tree.logs)
    pidFile = tree.state / f"hang-{token}.pid"
    try:
        with reapGroup(lambda: pidsFrom(pidFile)[0] if pidFile.exists() else None):
            started = time.monotonic()
            with Conn(server.port) as conn:
                conn.send(request(server.port, f"/cgi-bin/hang.sh?{token}"))
                r = conn.readResponse()
            elapsed = time.monotonic() - started
            assert r.status == 504, (r.status, r.body[:300])
            assert 0.4 <= elapsed < 0.95, elapsed
    finally:
        server.stop()


def test_timeoutAfterHeadCutsChunkedResponse(
    limits: SpoolServer, tree: ScriptTree, token: str
) -> None:
    """
    A script that sent its head and part of its body, then fell silent, has
    its (chunked) response cut when the timeout strikes: the client gets
    the part, no terminating 0-chunk, and the connection is closed even
    though it was keep-alive.
    """
    port = limits.server.port
    pidFile = tree.state / f"partial-{token}.pid"
    with reapGroup(lambda: pidsFrom(pidFile)[0] if pidFile.exists() else None):
        started = time.monotonic()
        with Conn(port, 5) as conn:
            conn.send(request(port, f"/cgi-bin/partial.sh?{token}", close=False))
            data, closed = conn.readUntilClosed(5)
        elapsed = time.monotonic() - started
        assert data.startswith(b"HTTP/1.1 200 "), data[:300]
        head, _, body = data.partition(b"\r\n\r\n")
        assert b"transfer-encoding: chunked" in head.lower(), head
        assert b"partial-body" in body
        assert not body.endswith(b"0\r\n\r\n"), body
        assert closed, f"connection still open 5 s later: {data!r}"
        assert elapsed < CGI_TIMEOUT + 1.5, elapsed
        (pid,) = pidsFrom(pidFile)
        server = limits.server.process.pid
        assert waitFor(lambda: groupGone(pid, server), 5), groupMembers(pid)
        assert limits.server.logLines("partial.sh", str(pid), "timed out", timeout=3.0)


def test_timeoutAfterHeadCutsContentLengthResponse(
    limits: SpoolServer, tree: ScriptTree, token: str
) -> None:
    """
    A script that promised 100 bytes, sent 10 and fell silent has its
    response cut: the connection closes short of Content-Length.
    """
    port = limits.server.port
    pidFile = tree.state / f"clenpartial-{token}.pid"
    with reapGroup(lambda: pidsFrom(pidFile)[0] if pidFile.exists() else None):
        started = time.monotonic()
        with Conn(port, 5) as conn:
            conn.send(request(port, f"/cgi-bin/clenpartial.sh?{token}", close=False))
            data, closed = conn.readUntilClosed(5)
        elapsed = time.monotonic() - started
        head, _, body = data.partition(b"\r\n\r\n")
        assert head.startswith(b"HTTP/1.1 200 "), data[:300]
        assert b"content-length: 100" in head.lower(), head
        assert body == b"0123456789"
        assert closed
        assert elapsed < CGI_TIMEOUT + 1.5, elapsed


def test_activityResetsTimeout(limits: SpoolServer) -> None:
    """
    A script that writes a line every 0.3 s for 3 s is never silent for the
    1 s timeout, so it runs to the end: all its lines, a complete response.
    """
    port = limits.server.port
    started = time.monotonic()
    with Conn(port) as conn:
        conn.send(request(port, "/cgi-bin/ticker.sh"))
        r = conn.readResponse()
    elapsed = time.monotonic() - started
    assert r.status == 200
    assert r.complete
    assert r.body.decode().split("\n")[:-1] == [f"tick {i}" for i in range(TICKS)]
    assert elapsed >= TICKS * 0.3 - 0.1


def test_slowClientTimeDoesNotCount(limits: SpoolServer) -> None:
    """
    A script writing 16 MB to a client that does not read for 3 s (three
    timeouts) is held up by the server, not silent: the client then gets
    the whole, complete response.
    """
    port = limits.server.port
    with Conn(port, TIMEOUT, receiveBuffer=16384) as conn:
        conn.send(request(port, "/cgi-bin/flood.sh"))
        time.sleep(3 * CGI_TIMEOUT)
        data, closed = conn.readUntilClosed(15)
    head, _, rest = data.partition(b"\r\n\r\n")
    assert head.startswith(b"HTTP/1.1 200 "), data[:300]
    assert b"transfer-encoding: chunked" in head.lower()
    assert rest.endswith(b"\r\n0\r\n\r\n"), ("cut short", len(rest), rest[-40:])
    # De-chunk to count the body.
    body = 0
    view = memoryview(rest)
    at = 0
    while True:
        end = rest.index(b"\r\n", at)
        size = int(bytes(view[at:end]), 16)
        if size == 0:
            break
        body += size
        at = end + 2 + size + 2
    assert body == FLOOD_SIZE
    assert closed


def test_scriptIgnoringTermIsKilledOnTimeout(
    limits: SpoolServer, tree: ScriptTree, token: str
) -> None:
    """
    A silent script that ignores SIGTERM still gets its client a 504; it
    survives the SIGTERM and is killed by the SIGKILL that follows 3 s
    later.
    """
    port = limits.server.port
    pidFile = tree.state / f"stubborn-{token}.pid"
    with reapGroup(lambda: pidsFrom(pidFile)[0] if pidFile.exists() else None):
        with Conn(port) as conn:
            conn.send(request(port, f"/cgi-bin/stubborn.sh?{token}"))
            r = conn.readResponse()
        answered = time.monotonic()
        assert r.status == 504, (r.status, r.body[:300])
        (pid,) = pidsFrom(pidFile)
        time.sleep(0.5)
        assert alive(pid), "the script should have survived SIGTERM"
        server = limits.server.process.pid
        assert waitFor(lambda: groupGone(pid, server), 6), groupMembers(pid)
        gone = time.monotonic() - answered
        assert 2.0 <= gone < 5.5, gone


# --------------------------------------------------------------------------
# 2. Client disconnects


def test_disconnectEndsScriptAndChild(
    defaults: Server, tree: ScriptTree, token: str
) -> None:
    """
    When the client goes away, the script and the child it started (its
    process group) are ended within a few seconds, though neither would
    end for 100 s and no script timeout is near (the default is 60 s).
    """
    port = defaults.port
    pidFile = tree.state / f"child-{token}.pid"
    with reapGroup(lambda: pidsFrom(pidFile)[0] if pidFile.exists() else None):
        with Conn(port) as conn:
            conn.send(request(port, f"/cgi-bin/child.sh?{token}", close=False))
            script, child = pidsFrom(pidFile)
            assert alive(script)
            assert alive(child)
        server = defaults.process.pid
        assert waitFor(lambda: groupGone(script, server), 5), groupMembers(script)
        assert waitFor(lambda: processState(script) is None, 5)


# --------------------------------------------------------------------------
# 3. --cgi-max-processes


def saturate(port: int, token: str, count: int, conns: list[Conn]) -> None:
    """
    Start C{count} wait.sh scripts, each on a connection added to C{conns}.
    """
    for _ in range(count):
        conn = Conn(port)
        conns.append(conn)
        conn.send(request(port, f"/cgi-bin/wait.sh?{token}"))


def release(conns: list[Conn], releaseFile: Path) -> list[Response]:
    """
    Let the wait.sh scripts finish; their responses.
    """
    releaseFile.touch()
    try:
        return [conn.readResponse() for conn in conns]
    finally:
        for conn in conns:
            conn.sock.close()


def test_maxProcessesRefusesWith503(
    twoScripts: Server, tree: ScriptTree, token: str
) -> None:
    """
    With --cgi-max-processes 2 and two scripts running, a third CGI request
    gets '503 Service Unavailable' at once, with an integer Retry-After,
    and no script is started for it; static files are still served at
    once; once the two finish, CGI requests work again.
    """
    port = twoScripts.port
    started = tree.state / f"started-{token}"
    releaseFile = tree.state / f"release-{token}"
    conns: list[Conn] = []
    try:
        saturate(port, token, 2, conns)
        assert waitFor(lambda: countLines(started) == 2, 5), countLines(started)
        began = time.monotonic()
        with Conn(port) as conn:
            conn.send(request(port, f"/cgi-bin/wait.sh?{token}"))
            r = conn.readResponse()
        assert time.monotonic() - began < 0.5
        assertCompleteError(r, 503)
        retryAfter = r.header("Retry-After")
        assert retryAfter is not None and re.fullmatch(r"\d+", retryAfter), r.head
        began = time.monotonic()
        with Conn(port) as conn:
            conn.send(request(port, "/static.txt"))
            static = conn.readResponse()
        assert time.monotonic() - began < 0.5
        assert static.status == 200
        assert static.body == b"static file contents\n"
        time.sleep(0.3)
        assert countLines(started) == 2, "a script was started for the 503"
    finally:
        results = release(conns, releaseFile)
    assert [(x.status, x.body) for x in results] == [(200, b"released\n")] * 2
    with Conn(port) as conn:
        conn.send(request(port, f"/cgi-bin/wait.sh?{token}"))
        again = conn.readResponse()
    assert (again.status, again.body) == (200, b"released\n")
    assert countLines(started) == 3


def test_defaultMaxProcessesIsFifty(
    defaults: Server, tree: ScriptTree, token: str
) -> None:
    """
    By default 50 scripts may run at once: fifty start, the fifty-first
    request gets 503.
    """
    port = defaults.port
    started = tree.state / f"started-{token}"
    releaseFile = tree.state / f"release-{token}"
    conns: list[Conn] = []
    try:
        saturate(port, token, 50, conns)
        assert waitFor(lambda: countLines(started) == 50, 15), countLines(started)
        with Conn(port) as conn:
            conn.send(request(port, f"/cgi-bin/wait.sh?{token}"))
            r = conn.readResponse()
        assert r.status == 503, (r.status, r.body[:200])
        assert countLines(started) == 50
    finally:
        results = [x.status for x in release(conns, releaseFile)]
    assert results == [200] * 50


# --------------------------------------------------------------------------
# 4. --max-body-size


@pytest.mark.parametrize(
    "what", ["POST /cgi-bin/count.sh", "GET /static.txt", "POST /static.txt"]
)
@pytest.mark.parametrize("length", [BODY_LIMIT + 1, 10**15])
def test_oversizedContentLengthRefusedBeforeBody(
    limits: SpoolServer, tree: ScriptTree, token: str, what: str, length: int
) -> None:
    """
    A request announcing a body over --max-body-size gets a complete 413
    without sending any of the body, on CGI and static URLs alike, and the
    connection is closed; no script runs.
    """
    port = limits.server.port
    method, target = what.split()
    r, closed = refusal(
        port,
        request(
            port,
            f"{target}?{token}",
            method,
            [("Content-Length", str(length))],
            close=False,
        ),
    )
    assertCompleteError(r, 413)
    assert closed
    time.sleep(0.1)
    assert not (tree.state / f"count-{token}").exists()


def test_oversizedBodyWithExpectGetsNoContinue(limits: SpoolServer) -> None:
    """
    'Expect: 100-continue' with a body over the limit gets the 413 and
    never '100 Continue': the client need not send the body.
    """
    port = limits.server.port
    with Conn(port, 5) as conn:
        conn.send(
            request(
                port,
                "/cgi-bin/cat.sh",
                "POST",
                [("Content-Length", str(BODY_LIMIT + 1)), ("Expect", "100-continue")],
                close=False,
            )
        )
        data, closed = conn.readUntilClosed(3)
    assert b"100 Continue" not in data, data[:300]
    assert data.startswith(b"HTTP/1.1 413 "), data[:300]
    assert closed


def test_bodyWithinLimitWithExpectGetsContinue(limits: SpoolServer) -> None:
    """
    'Expect: 100-continue' with a body within the limit gets '100
    Continue', and the body then reaches the script.
    """
    port = limits.server.port
    with Conn(port) as conn:
        conn.send(
            request(
                port,
                "/cgi-bin/cat.sh",
                "POST",
                [("Content-Length", "5"), ("Expect", "100-continue")],
            )
        )
        interim = conn.readResponse()
        assert interim.status == 100
        conn.send(b"hello")
        r = conn.readResponse()
    assert (r.status, r.body) == (200, b"hello")


def test_chunkedBodyGrowingPastLimit(
    limits: SpoolServer, tree: ScriptTree, token: str
) -> None:
    """
    A chunked body that grows one byte past the limit gets a complete 413
    as soon as it does (the client never sends the last chunk) and the
    connection is closed; no script runs.
    """
    port = limits.server.port
    head = request(
        port,
        f"/cgi-bin/count.sh?{token}",
        "POST",
        [("Transfer-Encoding", "chunked")],
        close=False,
    )
    r, closed = refusal(port, head + chunked(b"x" * (BODY_LIMIT + 1), 500_000))
    assertCompleteError(r, 413)
    assert closed
    assert not (tree.state / f"count-{token}").exists()


@pytest.mark.parametrize("framing", ["content-length", "chunked"])
def test_bodyExactlyAtLimitWorks(limits: SpoolServer, framing: str) -> None:
    """
    A body of exactly --max-body-size bytes (announced or chunked) reaches
    the script whole: the echo script returns it.
    """
    port = limits.server.port
    body = os.urandom(BODY_LIMIT)
    if framing == "chunked":
        data = (
            request(port, "/cgi-bin/cat.sh", "POST", [("Transfer-Encoding", "chunked")])
            + chunked(body, 300_000)
            + b"0\r\n\r\n"
        )
    else:
        data = request(port, "/cgi-bin/cat.sh", "POST", body=body)
    with Conn(port, 20) as conn:
        conn.send(data)
        r = conn.readResponse()
    assert r.status == 200, (r.status, r.body[:300])
    assert r.complete
    assert r.body == body


def test_defaultBodyLimitIsOneGiB(defaults: Server) -> None:
    """
    By default a body of 1 GiB + 1 byte is refused (413) before it is sent,
    while exactly 1 GiB is accepted (the script starts and reads it).
    """
    port = defaults.port
    r, _ = refusal(
        port,
        request(
            port,
            "/cgi-bin/cat.sh",
            "POST",
            [("Content-Length", str(DEFAULT_BODY_LIMIT + 1))],
        ),
    )
    assert r.status == 413, (r.status, r.body[:200])
    with Conn(port, 5) as conn:
        conn.send(
            request(
                port,
                "/cgi-bin/cat.sh",
                "POST",
                [("Content-Length", str(DEFAULT_BODY_LIMIT))],
            )
            + b"x" * 1000
        )
        data, closed = conn.readUntilClosed(0.5)
    # Not refused: the script is started at the end of the head and may
    # already have answered.
    assert not closed
    assert data == b"" or data.startswith(b"HTTP/1.1 200 "), data[:200]


def test_zeroMeansUnlimited(tree: ScriptTree) -> None:
    """
    --max-body-size 0 sets no limit: a request announcing 1 PB is not
    refused.
    """
    server = startServer(tree.root, ["--max-body-size", "0"], logDir=tree.logs)
    try:
        with Conn(server.port, 5) as conn:
            conn.send(
                request(
                    server.port,
                    "/cgi-bin/cat.sh",
                    "POST",
                    [("Content-Length", str(10**15))],
                )
                + b"x" * 1000
            )
            data, closed = conn.readUntilClosed(0.5)
        assert not closed
        assert data == b"" or data.startswith(b"HTTP/1.1 200 "), data[:200]
    finally:
        server.stop()


def spoolFiles(directory: Path) -> list[str]:
    """
    What is in the server's C{TMPDIR} besides the directory of the
    readiness sockets a supervisor of C{--workers} keeps there while it
    runs.
    """
    return [n for n in os.listdir(directory) if not n.startswith("cgiserve-workers-")]


def test_spooledBodiesAreRemoved(limits: SpoolServer) -> None:
    """
    Request bodies over 1 MiB that must be kept (chunked ones: a body with a
    Content-Length is streamed to its script) are spooled to temporary files,
    and none is left open or on disk after the request ends: after a body
    echoed by a
    script, a client that disconnects in the middle of its upload, and a
    script that crashes without reading its input, one that times out, and
    a chunked body refused as too large.
    """
    server = limits.server
    port = server.port
    # The workers of --workers (in CI's second run) hold the spool files.
    pids = servingProcessesOf(server.process.pid)

    def held() -> list[str]:
        return [name for pid in pids for name in deletedFiles(pid)]

    assert not held(), [openFiles(pid) for pid in pids]
    body = os.urandom(1_500_000)

    # Echoed.
    with Conn(port, 20) as conn:
        conn.send(request(port, "/cgi-bin/cat.sh", "POST", body=body))
        r = conn.readResponse()
    assert (r.status, r.body == body) == (200, True)
    assert waitFor(lambda: not held(), 5), held()

    # Disconnect mid-upload: 1.2 MB of a chunked body sent.
    with Conn(port) as conn:
        conn.send(
            request(
                port,
                "/cgi-bin/cat.sh",
                "POST",
                [("Transfer-Encoding", "chunked")],
            )
            + chunked(body[:1_200_000], 256 * 1024)
        )
        # The spool file exists while the upload is under way.
        spooling = waitFor(lambda: held() or spoolFiles(limits.tmpdir), 3)
        assert spooling, ("no spool file seen", [openFiles(pid) for pid in pids])
    assert waitFor(lambda: not held(), 5), held()

    # A script that dies without reading its input.
    with Conn(port, 20) as conn:
        conn.send(request(port, "/cgi-bin/crash.sh", "POST", body=body))
        crashed = conn.readResponse()
    assert crashed.status >= 500
    assert waitFor(lambda: not held(), 5), held()

    # A script that times out (504) without reading its input.
    with Conn(port, 20) as conn:
        conn.send(request(port, "/cgi-bin/hang.sh?spool", "POST", body=body))
        timedOut = conn.readResponse()
    assert timedOut.status == 504
    assert waitFor(lambda: not held(), 5), held()

    # A chunked body refused (413) once it grows past the limit, after
    # more than 1 MiB of it was spooled.
    r, _ = refusal(
        port,
        request(port, "/cgi-bin/cat.sh", "POST", [("Transfer-Encoding", "chunked")])
        + chunked(os.urandom(BODY_LIMIT + 1), 500_000),
    )
    assert r.status == 413
    assert waitFor(lambda: not held(), 5), held()
    assert spoolFiles(limits.tmpdir) == []


# --------------------------------------------------------------------------
# 5. Request hygiene


def test_overlongRequestLine(port: int) -> None:
    """
    A request line over 16 KiB gets a complete 414 and the connection is
    closed (8 KiB is fine).
    """
    ok, _ = refusal(port, request(port, "/static.txt?" + "a" * 8192))
    assert ok.status == 200
    r, closed = refusal(
        port, request(port, "/static.txt?" + "a" * (16 * 1024 + 10), close=False)
    )
    assertCompleteError(r, 414)
    assert closed


def test_overlongHeaderLine(port: int) -> None:
    """
    One header line over 16 KiB gets a complete 431 and the connection is
    closed (an 8 KiB one is fine).
    """
    ok, _ = refusal(port, request(port, "/static.txt", headers=[("X-Big", "b" * 8192)]))
    assert ok.status == 200
    r, closed = refusal(
        port,
        request(
            port,
            "/static.txt",
            headers=[("X-Big", "b" * (16 * 1024 + 10))],
            close=False,
        ),
    )
    assertCompleteError(r, 431)
    assert closed


def test_tooManyHeaderLines(port: int) -> None:
    """
    More than 500 header lines get a complete 431 and the connection is
    closed (400 are fine).
    """
    ok, _ = refusal(port, request(port, "/static.txt", headers=[("X-H", "v")] * 400))
    assert ok.status == 200
    r, closed = refusal(
        port, request(port, "/static.txt", headers=[("X-H", "v")] * 520, close=False)
    )
    assertCompleteError(r, 431)
    assert closed


def test_headersTooLargeInTotal(port: int) -> None:
    """
    Headers over 16 KiB in total, each line short, get a complete 431 and
    the connection is closed (12 KiB in total is fine).
    """
    line = ("X-Part", "p" * 500)
    ok, _ = refusal(port, request(port, "/static.txt", headers=[line] * 24))
    assert ok.status == 200
    r, closed = refusal(
        port, request(port, "/static.txt", headers=[line] * 40, close=False)
    )
    assertCompleteError(r, 431)
    assert closed


def test_idleKeepAliveConnectionClosed(port: int) -> None:
    """
    With --idle-timeout 1, a keep-alive connection left idle after a
    response is closed by the server about a second later.
    """
    with Conn(port) as conn:
        conn.send(request(port, "/static.txt", close=False))
        assert conn.readResponse().status == 200
        began = time.monotonic()
        closed = conn.closedByPeer(4.0)
        elapsed = time.monotonic() - began
    assert closed
    assert 0.7 <= elapsed < 2.5, elapsed


def test_silentNewConnectionClosed(port: int) -> None:
    """
    A connection that never sends a byte is closed within a couple of
    seconds (idle and header timeouts are both 1 s).
    """
    with Conn(port, 5) as conn:
        _, closed = conn.readUntilClosed(3)
    assert closed


def test_slowHeadersGetRequestTimeout(port: int) -> None:
    """
    With --header-timeout 1, a client that sends the start of a request
    and then trickles a header byte every 0.3 s gets a complete '408
    Request Timeout' within about 1.5 s, and the connection is closed.
    """
    with Conn(port, 5) as conn:
        conn.send(b"GET /static.txt HTTP/1.1\r\nHost: x\r\n")
        began = time.monotonic()
        trickle = iter(b"X-Slow: " + b"s" * 100)
        data = b""
        closed = False
        answered = None
        while time.monotonic() - began < 5:
            with contextlib.suppress(BrokenPipeError, ConnectionResetError):
                conn.sock.send(bytes([next(trickle)]))
            more, closed = conn.readUntilClosed(0.3)
            if more and answered is None:
                answered = time.monotonic() - began
            data += more
            if closed:
                break
    assert answered is not None, "no response in 5 s"
    assert 0.8 <= answered < 1.8, answered
    (r,) = parseResponses(data, 1)
    assertCompleteError(r, 408)
    assert closed


def test_slowBodyIsNotHeaderTimeout(port: int) -> None:
    """
    --header-timeout is for the request head only: a body trickled a byte
    every 0.4 s (2 s for five bytes, past the 1 s header timeout, but never
    idle for the 1 s idle timeout) reaches the script whole.
    """
    with Conn(port) as conn:
        conn.send(request(port, "/cgi-bin/cat.sh", "POST", [("Content-Length", "5")]))
        for byte in b"hello":
            time.sleep(0.4)
            conn.send(bytes([byte]))
        r = conn.readResponse()
    assert (r.status, r.body) == (200, b"hello"), (r.status, r.body[:300])


def test_pipelinedRequestDuringSlowResponse(port: int) -> None:
    """
    A complete request pipelined behind a 1.8 s script response (sent 0.3 s
    after the first) is no slow request head: both responses arrive whole,
    in order, with no 408.
    """
    with Conn(port, 5) as conn:
        conn.send(request(port, "/cgi-bin/ticker.sh?6", close=False))
        time.sleep(0.3)
        conn.send(request(port, "/static.txt"))
        data, closed = conn.readUntilClosed(6)
    assert b"408 Request Timeout" not in data, data
    assert closed
    first, second = parseResponses(data, 2)
    assert (first.status, first.complete) == (200, True), first.head
    assert first.body.count(b"tick") == 6
    assert (second.status, second.body) == (200, b"static file contents\n")


def test_slowlorisDoesNotStarveServer(defaults: Server) -> None:
    """
    With 300 connections trickling request heads (default 20 s header
    timeout), ordinary requests still get answered within a second.
    """
    port = defaults.port
    socks: list[Conn] = []
    stop = threading.Event()

    def trickle() -> None:
        while not stop.wait(0.5):
            for s in socks:
                with contextlib.suppress(OSError):
                    s.sock.send(b"X")

    thread = threading.Thread(target=trickle, daemon=True)
    try:

        def openSlow(_: int) -> Conn:
            s = Conn(port, 5)
            s.send(b"GET / HTTP/1.1\r\nHost: x\r\nX-Slow: ")
            return s

        # In parallel: a connection whose SYN overflowed the listen queue
        # waits a second for its retry, and these should not add up.
        with ThreadPoolExecutor(30) as pool:
            socks.extend(pool.map(openSlow, range(300)))
        thread.start()
        for target, expected in [
            ("/static.txt", b"static file contents\n"),
            ("/cgi-bin/hello.sh", b"Hello World\n"),
            ("/static.txt", b"static file contents\n"),
        ]:
            time.sleep(0.2)
            began = time.monotonic()
            with Conn(port, 5) as conn:
                conn.send(request(port, target))
                r = conn.readResponse()
            elapsed = time.monotonic() - began
            assert (r.status, r.body) == (200, expected)
            assert elapsed < 1.0, (target, elapsed)
    finally:
        stop.set()
        if thread.is_alive():
            thread.join(5)
        for s in socks:
            s.close()


FRAMING = {
    "content-length-and-chunked": (
        [("Content-Length", "5"), ("Transfer-Encoding", "chunked")],
        b"0\r\n\r\n",
    ),
    "two-content-lengths": (
        [("Content-Length", "5"), ("Content-Length", "6")],
        b"hello!",
    ),
    "bad-chunk-size": ([("Transfer-Encoding", "chunked")], b"zz\r\nhello\r\n0\r\n\r\n"),
    "gzip-chunked": (
        [("Transfer-Encoding", "gzip, chunked")],
        b"5\r\nhello\r\n0\r\n\r\n",
    ),
    "negative-content-length": ([("Content-Length", "-5")], b""),
}


@pytest.mark.parametrize("case", list(FRAMING))
def test_ambiguousFramingIsBadRequest(
    limits: SpoolServer, tree: ScriptTree, token: str, case: str
) -> None:
    """
    A request whose body framing is ambiguous or invalid gets a complete
    400 and the connection is closed; no script runs.
    """
    port = limits.server.port
    headers, body = FRAMING[case]
    r, closed = refusal(
        port,
        request(port, f"/cgi-bin/count.sh?{token}", "POST", headers, body, close=False),
    )
    assertCompleteError(r, 400)
    assert closed
    assert not (tree.state / f"count-{token}").exists()


# --------------------------------------------------------------------------
# 7. Shutdown


def test_shutdownLetsRequestFinish(
    serve: Callable[..., Server], tree: ScriptTree, token: str
) -> None:
    """
    SIGTERM while a script sleeps for a second: new connections are
    refused at once, the script's response still arrives whole, and then
    the server exits with status 0.
    """
    server = serve(tree.root)
    port = server.port
    with Conn(port) as conn:
        conn.send(request(port, f"/cgi-bin/sleep1.sh?{token}"))
        pidsFrom(tree.state / f"sleep1-{token}.pid")
        server.process.send_signal(signal.SIGTERM)
        signalled = time.monotonic()
        assert waitFor(lambda: refused(port, timeout=1), 0.5), (
            "still accepting connections"
        )
        r = conn.readResponse()
    assert r.status == 200, (r.status, r.body[:300])
    assert r.complete
    assert r.body == b"slept a second\n"
    assert refused(port, timeout=1)
    status = server.process.wait(5)
    assert status == 0, server.log()[-2000:]
    assert time.monotonic() - signalled < 3


@pytest.mark.parametrize("script", ["hang", "stubborn"])
def test_shutdownGraceEndsScripts(
    serve: Callable[..., Server], tree: ScriptTree, token: str, script: str
) -> None:
    """
    With --shutdown-grace 1, SIGTERM while a script would run for ever:
    after a second its process group gets SIGTERM (and SIGKILL 3 s later
    if it ignores that), the server exits with status 0 within about 1 +
    3 s, and no process of the script outlives it.
    """
    server = serve(tree.root, ["--shutdown-grace", "1"])
    port = server.port
    pidFile = tree.state / f"{script}-{token}.pid"
    with reapGroup(lambda: pidsFrom(pidFile)[0] if pidFile.exists() else None):
        with Conn(port) as conn:
            conn.send(request(port, f"/cgi-bin/{script}.sh?{token}"))
            pids = pidsFrom(pidFile)
            server.process.send_signal(signal.SIGTERM)
            signalled = time.monotonic()
            try:
                status = server.process.wait(1 + 3 + 2.5)
            except subprocess.TimeoutExpired:
                status = None
            elapsed = time.monotonic() - signalled
        assert status == 0, (status, server.log()[-2000:])
        assert 0.8 <= elapsed < 1 + 3 + 1.5, elapsed
        assert waitFor(lambda: groupGone(pids[0]), 1), groupMembers(pids[0])


@pytest.mark.parametrize("idleConnection", [False, True])
def test_idleShutdownIsPrompt(
    serve: Callable[..., Server], tree: ScriptTree, idleConnection: bool
) -> None:
    """
    SIGTERM with no request in flight (none at all, or only an idle
    keep-alive connection) ends the server with status 0 in under 2 s.
    """
    server = serve(tree.root)
    with Conn(server.port) as conn:
        if idleConnection:
            conn.send(request(server.port, "/static.txt", close=False))
            assert conn.readResponse().status == 200
        server.process.send_signal(signal.SIGTERM)
        signalled = time.monotonic()
        try:
            status = server.process.wait(5)
        except TimeoutError:
            status = None
        elapsed = time.monotonic() - signalled
    assert status == 0, (status, server.log()[-2000:])
    assert elapsed < 2, elapsed


def test_serverLogsHaveNoTraceback(
    limits: SpoolServer, defaults: Server, twoScripts: Server
) -> None:
    """
    Nothing above made a server log a traceback.
    """
    for server in (limits.server, defaults, twoScripts):
        assert "Traceback" not in server.log(), server.log()[-3000:]
