"""
End-to-end tests of C{--cgi-debug}: the real C{twistd -n cgiserve} running
scripts that fail in every way the inspector covers, asked by real clients
(requests, curl over HTTP/2) from loopback and, where this machine has one,
from a non-loopback address of its own.

The tests run as root (CI too): scripts run as C{nobody}, so the document
root lives under /tmp in 0755 directories (L{makeScriptTree}).

Servers are shared by the module: one with C{--cgi-debug} (loopback only)
on the dual-stack wildcard, so that one server sees loopback and
non-loopback clients over IPv4 (as IPv4-mapped addresses) and IPv6; one
with C{--cgi-debug=all} whose scripts run as root (so that a script that
cannot be executed fails in the server, not in C{setpriv}); one without
C{--cgi-debug}.
"""

from __future__ import annotations

import ipaddress
import shutil
import socket
import subprocess
import time
from collections.abc import Iterator
from pathlib import Path

import pytest
import requests

from tests.support.certs import makeCertificate
from tests.support.server import (
    ScriptTree,
    Server,
    makeScriptTree,
    sharedServer,
    startServer,
    staysHealthy,
)
from tests.support.shell import sh

pytestmark = pytest.mark.e2e

TIMEOUT = 10.0
CURL = shutil.which("curl")

# What the page always says of itself.
MARK = "<strong>--cgi-debug</strong> output"

# Markup and bytes that are not UTF-8, as a hostile script writes them.
HOSTILE = sh(
    r"""
    printf 'Error: <script>alert("owned")</script>\n' >&2
    printf 'bad byte: \377\n' >&2
    exit 1
    """
)


def scripts(state: Path) -> dict[str, bytes]:
    return {
        "cgi-bin/hostile.sh": HOSTILE,
        "cgi-bin/badhead.sh": sh(
            """
            echo '<b>Hello</b> world'
            echo
            sleep 30
            """
        ),
        "cgi-bin/silent.sh": sh(
            """
            echo 'waiting for the database' >&2
            sleep 30
            """
        ),
        "cgi-bin/empty.sh": sh("exit 0\n"),
        "cgi-bin/ok.sh": sh(
            """
            echo 'a warning on stderr' >&2
            printf 'Content-Type: text/plain\\n\\nfine\\n'
            """
        ),
        "cgi-bin/env.sh": sh("exit 2\n"),
        "cgi-bin/verbose.sh": sh(
            """
            head -c 200000 /dev/zero | tr '\\0' e >&2
            echo 'the end' >&2
            exit 1
            """
        ),
        "cgi-bin/noshebang.sh": b"#!/nonexistent/interpreter\n",
    }


@pytest.fixture(scope="module")
def tree(tmp_path_factory: pytest.TempPathFactory) -> Iterator[ScriptTree]:
    made = makeScriptTree(
        "cgiserve-debug-", scripts, tmp_path_factory.mktemp("debug-logs")
    )
    yield made
    shutil.rmtree(made.root, ignore_errors=True)


@pytest.fixture(scope="module")
def localServer(tree: ScriptTree) -> Iterator[Server]:
    server = startServer(
        tree.root,
        [
            "--port", "0", "--cgi-debug", "--cgi-timeout", "1",
            "--cgi-pass-auth", "--cgi-set-env", "DB_PASSWORD=hunter2-set-env",
        ],
        logDir=tree.logs,
    )  # fmt: skip
    with sharedServer(server):
        yield server


@pytest.fixture(scope="module")
def allServer(tree: ScriptTree) -> Iterator[Server]:
    server = startServer(
        tree.root,
        ["--port", "0", "--cgi-debug=all", "--cgi-user", "root"],
        logDir=tree.logs,
    )
    with sharedServer(server):
        yield server


@pytest.fixture(scope="module")
def plainServer(tree: ScriptTree) -> Iterator[Server]:
    server = startServer(tree.root, ["--cgi-timeout", "1"], logDir=tree.logs)
    with sharedServer(server):
        yield server


@pytest.fixture
def local(localServer: Server) -> Iterator[Server]:
    with staysHealthy(localServer) as server:
        yield server


def url(server: Server, path: str, host: str = "127.0.0.1") -> str:
    if ":" in host:
        host = f"[{host}]"
    return f"http://{host}:{server.port}{path}"


def get(
    server: Server, path: str, host: str = "127.0.0.1", **kw: object
) -> requests.Response:
    return requests.get(url(server, path, host), timeout=TIMEOUT, **kw)  # type: ignore[arg-type]


def debugPage(response: requests.Response, status: int) -> str:
    """
    The page's text, after checking it is the --cgi-debug page as it must
    be sent.
    """
    assert response.status_code == status, response.text
    assert response.headers["content-type"] == "text/html; charset=utf-8"
    assert response.headers["cache-control"] == "no-store"
    assert response.headers["x-content-type-options"] == "nosniff"
    assert response.headers["content-security-policy"].startswith("default-src 'none'")
    text = response.content.decode("utf-8")
    assert MARK in text
    return text


def barePage(response: requests.Response, status: int) -> None:
    assert response.status_code == status
    assert f"Error code: {status}" in response.text
    assert "--cgi-debug" not in response.text
    assert "cache-control" not in response.headers


def ownAddress(family: socket.AddressFamily, probe: str) -> str | None:
    """
    An address of this machine that is not loopback (the one it would send
    from towards C{probe}; a UDP connect sends nothing), or L{None}.
    """
    try:
        with socket.socket(family, socket.SOCK_DGRAM) as s:
            s.connect((probe, 9))
            host: str = s.getsockname()[0]
    except OSError:
        return None
    address = ipaddress.ip_address(host)
    if address.is_loopback or address.is_link_local or address.is_unspecified:
        return None
    return host


OWN_V4 = ownAddress(socket.AF_INET, "203.0.113.1")
OWN_V6 = ownAddress(socket.AF_INET6, "2001:db8::1")
needsOwnV4 = pytest.mark.skipif(
    OWN_V4 is None,
    reason="this machine has no non-loopback IPv4 address to connect from; "
    "tests/cgi/test_inspector.py proves the refusal in a unit test",
)


def hasIPv6Loopback() -> bool:
    try:
        with socket.socket(socket.AF_INET6) as s:
            s.bind(("::1", 0))
    except OSError:
        return False
    return True


# --------------------------------------------------------------------------
# What the page shows for each failure


def test_stderrAndExitBeforeTheHead(local: Server) -> None:
    """
    A script that writes to its standard error and exits 1 before its head:
    a 502 page with its path, command line, exit status and standard error,
    the hostile markup shown as text and the byte that is not UTF-8 as
    \\xff; the page says what it is and how to turn it off.
    """
    text = debugPage(get(local, "/cgi-bin/hostile.sh?first+second"), 502)
    assert "exited with status 1" in text
    assert "<script>alert" not in text
    assert "Error: &lt;script&gt;alert(&quot;owned&quot;)&lt;/script&gt;" in text
    assert "bad byte: \\xff" in text
    assert "/cgi-bin/hostile.sh" in text
    assert f"<li><code>{local.root}/cgi-bin/hostile.sh</code></li>" in text
    assert "<li><code>first</code></li>\n<li><code>second</code></li>" in text
    assert "restart the server without <code>--cgi-debug</code>" in text
    assert "<tr><td>REMOTE_ADDR</td><td>127.0.0.1</td></tr>" in text


def test_malformedHead(local: Server) -> None:
    """
    A head that is no CGI head: a 502 page with the cause and what the
    script printed, escaped; the script, still running, is ended.
    """
    started = time.monotonic()
    text = debugPage(get(local, "/cgi-bin/badhead.sh"), 502)
    assert time.monotonic() - started < 5
    assert "header line without a colon" in text
    assert "<pre>&lt;b&gt;Hello&lt;/b&gt; world\n\n</pre>" in text
    assert "still running: the server is ending it" in text


def test_timeout(local: Server) -> None:
    """
    A script silent past --cgi-timeout: a 504 page saying so, with what it
    wrote to its standard error meanwhile.
    """
    started = time.monotonic()
    text = debugPage(get(local, "/cgi-bin/silent.sh"), 504)
    assert 0.9 < time.monotonic() - started < 5
    assert "timed out after 1 s without output" in text
    assert "<pre>waiting for the database\n</pre>" in text


def test_exitWithoutOutput(local: Server) -> None:
    """
    A script that exits 0 having written nothing: a 502 page saying so.
    """
    text = debugPage(get(local, "/cgi-bin/empty.sh"), 502)
    assert "script exited without writing anything" in text
    assert "exited with status 0" in text
    assert "(nothing: it wrote nothing to its standard error)" in text


def test_successUnaffected(local: Server) -> None:
    """
    A script that answers is answered as without --cgi-debug, though it
    wrote to its standard error.
    """
    response = get(local, "/cgi-bin/ok.sh")
    assert response.status_code == 200
    assert response.content == b"fine\n"
    assert response.headers["content-type"] == "text/plain"
    assert "cache-control" not in response.headers


def test_hiddenValues(local: Server) -> None:
    """
    The values of HTTP_AUTHORIZATION, HTTP_COOKIE and --cgi-set-env
    variables are hidden; their names show the script had them.
    """
    response = get(
        local,
        "/cgi-bin/env.sh",
        headers={"Cookie": "session=cookie-secret-1", "X-Visible": "shown-value"},
        auth=("alice", "password-secret-2"),
    )
    text = debugPage(response, 502)
    assert "exited with status 2" in text
    assert "cookie-secret-1" not in text
    assert "hunter2-set-env" not in text
    # requests sends Basic base64("alice:password-secret-2").
    assert "YWxpY2U6cGFzc3dvcmQtc2VjcmV0LTI" not in text
    for name in ("HTTP_AUTHORIZATION", "HTTP_COOKIE", "DB_PASSWORD"):
        assert f'<tr><td>{name}</td><td><span class="none">(hidden)</span>' in text
    assert "<tr><td>HTTP_X_VISIBLE</td><td>shown-value</td></tr>" in text


def test_stderrTailBounded(local: Server) -> None:
    """
    A script that floods its standard error: the page shows its last 64
    KiB, ending with its last line, and says how much came before.
    """
    response = get(local, "/cgi-bin/verbose.sh")
    text = debugPage(response, 502)
    assert len(response.content) < 80 * 1024
    assert "the end\n</pre>" in text
    dropped = 200000 + len("the end\n") - 64 * 1024
    assert f"({dropped} earlier bytes not shown)" in text


def test_scriptThatCannotRun(local: Server, allServer: Server) -> None:
    """
    A script whose #! names no interpreter: a 502 page that says so,
    whether the exec fails in setpriv (scripts run as nobody: its standard
    error) or in the server itself (scripts run as root).
    """
    text = debugPage(get(local, "/cgi-bin/noshebang.sh"), 502)
    assert "No such file or directory" in text
    with staysHealthy(allServer):
        text = debugPage(get(allServer, "/cgi-bin/noshebang.sh"), 502)
    assert "could not be started: No such file or directory" in text
    assert "never started" in text


def test_headRequest(local: Server) -> None:
    """
    A HEAD request gets the page's status and headers, without the page.
    """
    response = requests.head(url(local, "/cgi-bin/empty.sh"), timeout=TIMEOUT)
    assert response.status_code == 502
    assert response.headers["cache-control"] == "no-store"
    assert response.content == b""


# --------------------------------------------------------------------------
# Who sees it


@pytest.mark.skipif(not hasIPv6Loopback(), reason="this machine has no IPv6 loopback")
def test_ipv6Loopback(local: Server) -> None:
    """
    ::1 is loopback; so is 127.0.0.1 as the dual-stack socket reports it
    (::ffff:127.0.0.1), which the other tests use.
    """
    text = debugPage(get(local, "/cgi-bin/empty.sh", host="::1"), 502)
    assert "<tr><td>REMOTE_ADDR</td><td>::1</td></tr>" in text


@needsOwnV4
def test_nonLoopbackClientGetsTheBarePage(local: Server) -> None:
    """
    With --cgi-debug (loopback only), a client connecting from one of this
    machine's other addresses gets the ordinary error page.
    """
    assert OWN_V4 is not None
    barePage(get(local, "/cgi-bin/hostile.sh", host=OWN_V4), 502)
    barePage(get(local, "/cgi-bin/silent.sh", host=OWN_V4), 504)
    if OWN_V6 is not None:
        barePage(get(local, "/cgi-bin/hostile.sh", host=OWN_V6), 502)


@needsOwnV4
def test_allShowsEveryClient(allServer: Server) -> None:
    """
    With --cgi-debug=all, a non-loopback client gets the page too, and the
    page says that every client sees it.
    """
    assert OWN_V4 is not None
    with staysHealthy(allServer):
        text = debugPage(get(allServer, "/cgi-bin/hostile.sh", host=OWN_V4), 502)
    assert "every client (<code>--cgi-debug=all</code>)" in text


def test_offByDefault(plainServer: Server) -> None:
    """
    Without --cgi-debug, even a loopback client gets the bare error pages.
    """
    with staysHealthy(plainServer):
        barePage(get(plainServer, "/cgi-bin/hostile.sh"), 502)
        barePage(get(plainServer, "/cgi-bin/badhead.sh"), 502)
        barePage(get(plainServer, "/cgi-bin/silent.sh"), 504)


# --------------------------------------------------------------------------
# HTTP/2


@pytest.mark.skipif(CURL is None, reason="curl is not installed")
def test_http2(tree: ScriptTree, tmp_path: Path) -> None:
    """
    Over HTTP/2 (TLS, ALPN h2) the page is the response's body as over
    HTTP/1.1.
    """
    assert CURL is not None
    cert = makeCertificate(tmp_path / "tls")
    server = startServer(
        tree.root,
        [
            "--bind", "127.0.0.1", "--port", "0", "--cgi-debug",
            "--tls-cert", str(cert.cert), "--tls-key", str(cert.key),
        ],
        logDir=tmp_path,
    )  # fmt: skip
    with sharedServer(server):
        result = subprocess.run(
            [
                CURL, "--silent", "--show-error", "--insecure", "--http2",
                "--include", "--write-out", "\n%{http_version}",
                server.url("/cgi-bin/hostile.sh"),
            ],
            capture_output=True,
            timeout=30,
            stdin=subprocess.DEVNULL,
        )  # fmt: skip
    assert result.returncode == 0, result.stderr
    raw, _, version = result.stdout.rpartition(b"\n")
    head, _, body = raw.partition(b"\r\n\r\n")
    assert version == b"2"
    assert head.startswith(b"HTTP/2 502")
    assert b"cache-control: no-store" in head.lower()
    text = body.decode("utf-8")
    assert MARK in text
    assert "exited with status 1" in text
    assert "&lt;script&gt;" in text
