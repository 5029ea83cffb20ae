"""
End-to-end tests of the CGI half: the real C{twistd -n cgiserve} process
running scripts below /cgi-bin and /htbin, driven over loopback the way
C{python -m http.server --cgi} users drive it, and checked against RFC 3875
where http.server got it wrong. CPython's CGIHTTPServerTestCase cases are
carried over as behaviour (reference http-server-behaviour.md section 5.7).

The tests run as root (CI too). A root server runs scripts as C{nobody}
(C{--cgi-user}), so the document root lives in a 0755 directory under /tmp
(pytest's tmp_path is below a 0700 directory) and Python scripts use
C{/usr/bin/python3}, which nobody can execute (the venv's interpreter lives
under /root).

Servers are shared by the module: one with the default options (started
with secrets in its environment that must never reach a script), one with
every CGI option set, one with --no-cgi.
"""

from __future__ import annotations

import hashlib
import os
import pwd
import secrets
import shutil
import stat
import threading
import time
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest
import requests

from tests.support.probes import RssSampler, openFiles, processState
from tests.support.raw import Conn, fetch, request
from tests.support.server import (
    ENTRY_POINTS,
    ScriptTree,
    Server,
    makeScriptTree,
    startServer,
    waitFor,
)
from tests.support.shell import NOBODY, sh, writeFile
from tests.support.spawner import scriptProcessesOf

pytestmark = pytest.mark.e2e

TIMEOUT = 10.0
PYTHON3 = "/usr/bin/python3"
HAVE_PYTHON3 = os.access(PYTHON3, os.X_OK)
needsPython3 = pytest.mark.skipif(
    not HAVE_PYTHON3,
    reason=f"{PYTHON3} is needed: scripts run as nobody, who cannot execute "
    "the test interpreter under /root",
)
IS_ROOT = os.geteuid() == 0
needsRoot = pytest.mark.skipif(
    not IS_ROOT, reason="only a server running as root switches scripts' user"
)
# The explicit --cgi-user of the options server: anyone but nobody.
OTHER_USER = "daemon"

MiB = 1024 * 1024

# In the default server's environment; none may reach a script.
SERVER_SECRETS = {
    "SECRET_TOKEN": "s3cr3t-token-of-the-server",
    "NOTIFY_SOCKET": "/run/systemd/notify-must-not-leak",
    "LISTEN_FDS": "3",
}
# Also in the server's environment, under names scripts do get: their values
# must be the request's, never the server's (http.server's setdefault let
# these through; CPython's test_os_environ_is_not_altered).
SERVER_SHADOWS = {
    "SERVER_SOFTWARE": "leaked-server/1.0",
    "HTTP_COOKIE": "leaked=1",
    "HTTP_USER_AGENT": "leaked-agent",
    "REMOTE_HOST": "leaked.example",
    "CONTENT_LENGTH": "99",
    "QUERY_STRING": "leaked=1",
}
SERVER_ENV = {**os.environ, **SERVER_SECRETS, **SERVER_SHADOWS}

# What a script's environment may hold, and nothing else (RFC 3875 section
# 4.1 plus the usual extensions); HTTP_* names are checked separately.
CGI_VARIABLES = {
    "AUTH_TYPE",
    "CONTENT_LENGTH",
    "CONTENT_TYPE",
    "DOCUMENT_ROOT",
    "GATEWAY_INTERFACE",
    "HTTPS",
    "PATH",
    "PATH_INFO",
    "PATH_TRANSLATED",
    "QUERY_STRING",
    "REDIRECT_STATUS",
    "REMOTE_ADDR",
    "REMOTE_HOST",
    "REMOTE_PORT",
    "REQUEST_METHOD",
    "REQUEST_SCHEME",
    "REQUEST_URI",
    "SCRIPT_FILENAME",
    "SCRIPT_NAME",
    "SERVER_ADDR",
    "SERVER_NAME",
    "SERVER_PORT",
    "SERVER_PROTOCOL",
    "SERVER_SOFTWARE",
}


# --------------------------------------------------------------------------
# Scripts


# Reports everything a script can see as JSON. The environment is read from
# /proc/self/environ, exactly as exec received it (Python itself may add
# LC_CTYPE to os.environ).
ENV_PY = rb"""#!/usr/bin/python3
import hashlib
import json
import os
import sys

with open("/proc/self/environ", "rb") as f:
    raw = f.read()
env = {}
for item in raw.split(b"\0"):
    if item:
        name, _, value = item.partition(b"=")
        env[os.fsdecode(name)] = os.fsdecode(value)
fds = []
for name in os.listdir("/proc/self/fd"):
    try:
        os.fstat(int(name))
    except OSError:
        continue  # the directory listing's own descriptor, closed by now
    fds.append(int(name))
body = sys.stdin.buffer.read()
report = {
    "fds": sorted(fds),
    "env": env,
    "argv": sys.argv[1:],
    "cwd": os.getcwd(),
    "uid": os.getuid(),
    "gid": os.getgid(),
    "stdinLength": len(body),
    "stdinSha256": hashlib.sha256(body).hexdigest(),
    "stdin": body[:1000].decode("latin-1"),
}
data = json.dumps(report).encode()
sys.stdout.buffer.write(
    b"Content-Type: application/json\r\nContent-Length: %d\r\n\r\n" % len(data)
)
sys.stdout.buffer.write(data)
"""

# CPython's cgi_file2.
FORM_PY = rb"""#!/usr/bin/python3
import os
import sys
from urllib.parse import parse_qsl

length = int(os.environ.get("CONTENT_LENGTH") or 0)
form = dict(parse_qsl(sys.stdin.buffer.read(length).decode("ascii")))
sys.stdout.write("Content-type: text/html\n\n")
sys.stdout.write("%s, %s, %s\n" % (form["spam"], form["eggs"], form["bacon"]))
"""

HELLO = sh(r"""
    printf 'Content-Type: text/html\n\nHello World\n'
""")
HELLO_BODY = b"Hello World\n"

SOURCE_MARKER = b"SCRIPT-SOURCE-MUST-NOT-LEAK"
NOEXEC = HELLO + b"# " + SOURCE_MARKER + b"\n"

NPH_OUTPUT = (
    b"HTTP/1.1 200 OK\r\nContent-Type: text/plain\r\nX-Nph: raw\r\n\r\n"
    b"nph body, sent as is\n"
)

BIG_SIZE = 200 * 1000 * 1000
HUGE_STDERR = 100_000


def outsideScript(marker: Path) -> bytes:
    """
    A script that leaves C{marker} behind and says C{RAN-42} when it runs;
    its source says neither.
    """
    return sh(f"""
        echo ran >> {marker}
        printf 'Content-Type: text/plain\\n\\nRAN-%s\\n' $((6*7))
    """)


def scripts(state: Path) -> dict[str, bytes]:
    """
    The executable scripts of the tree, by path below the document root.
    """
    return {
        "cgi-bin/env.py": ENV_PY,
        "cgi-bin/sub/env.py": ENV_PY,
        "cgi-bin/sub/deeper/nested.sh": sh(r"""
            printf 'Content-Type: text/plain\n\nnested %s\n' "$(pwd)"
        """),
        "cgi-bin/form.py": FORM_PY,
        "cgi-bin/hello.sh": HELLO,
        "htbin/hello.sh": HELLO,
        "scripts/env.py": ENV_PY,
        "scripts/hello.sh": HELLO,
        "scripts/id.sh": sh(r"""
            printf 'Content-Type: text/plain\n\n'
            id -u
        """),
        "cgi-bin/id.sh": sh(r"""
            printf 'Content-Type: text/plain\n\n'
            id -u
            id -g
            id -G
        """),
        "cgi-bin/marker.sh": outsideScript(state / "inside-ran"),
        "cgi-bin/signals.sh": sh(r"""
            printf 'Content-Type: text/plain\n\n'
            # exec: grep then has exactly the masks the script started with
            # (reading the shell's own status races with the shell blocking
            # every signal while it starts a command).
            exec grep -E '^Sig(Ign|Blk):' /proc/self/status
        """),
        "sub/run.sh": outsideScript(state / "outside-ran"),
        # Output (RFC 3875 section 6)
        "cgi-bin/status404.sh": sh(r"""
            printf 'Status: 404 Nope\r\nContent-Type: text/plain\r\n\r\nnot here\n'
        """),
        "cgi-bin/status418.sh": sh(r"""
            printf 'Status:418\nContent-Type: text/plain\n\nteapot\n'
        """),
        "cgi-bin/lowerstatus.sh": sh(r"""
            printf 'status: 201 Made\ncontent-type: text/plain\n\ncreated\n'
        """),
        "cgi-bin/clientredirect.sh": sh(r"""
            printf 'Location: http://example.com/elsewhere\n'
            printf 'Content-Type: text/plain\n\nmoved along\n'
        """),
        "cgi-bin/locationonly.sh": sh(r"""
            printf 'Location: https://example.com/only\n\n'
        """),
        "cgi-bin/redirect301a.sh": sh(r"""
            printf 'Status: 301 Moved Permanently\nLocation: http://example.com/a\n\n'
        """),
        "cgi-bin/redirect301b.sh": sh(r"""
            printf 'Location: http://example.com/b\nStatus: 301 Moved Permanently\n\n'
        """),
        "cgi-bin/localstatic.sh": sh(r"""
            printf 'Location: /static.txt\n\n'
        """),
        "cgi-bin/localscript.sh": sh(r"""
            printf 'Location: /cgi-bin/env.py?via=redirect\n\n'
        """),
        "cgi-bin/loop.sh": sh(f"""
            echo run >> {state}/loop-$QUERY_STRING
            printf 'Location: /cgi-bin/loop.sh?%s\\n\\n' "$QUERY_STRING"
        """),
        "cgi-bin/nohead.sh": sh("""
            echo 'Hello world'
        """),
        "cgi-bin/hellofirst.sh": sh(r"""
            printf 'Hello world\n\nbody\n'
        """),
        "cgi-bin/blankfirst.sh": sh(r"""
            printf '\nbody after a blank line\n'
        """),
        "cgi-bin/silent.sh": sh("""
            exit 0
        """),
        "cgi-bin/status.sh": sh(r"""
            status=$(echo "$QUERY_STRING" | tr + ' ')
            printf 'Status: %s\nContent-Type: text/plain\n\nstatus body\n' "$status"
        """),
        "cgi-bin/onlyheaders.sh": sh(r"""
            printf 'Content-Type: text/plain\nX-Only: headers\n\n'
        """),
        "cgi-bin/onlylength.sh": sh(r"""
            printf 'Content-Length: 0\n\n'
        """),
        "cgi-bin/hugehead.sh": sh(r"""
            printf 'Content-Type: text/plain\nX-Big: '
            head -c 70000 /dev/zero | tr '\000' a
            printf '\n\nbody\n'
        """),
        "cgi-bin/longvalue.sh": sh(r"""
            printf 'Content-Type: text/plain\nX-Long: '
            head -c 8000 /dev/zero | tr '\000' v
            printf '\n\nlong\n'
        """),
        "cgi-bin/exit3.sh": sh(r"""
            printf 'Content-Type: text/plain\n\nbye\n'
            exit 3
        """),
        "cgi-bin/badstatus.sh": sh(r"""
            printf 'Status: abc\nContent-Type: text/plain\n\nbody\n'
        """),
        "cgi-bin/badheaders.sh": sh(r"""
            printf 'Content-Type: text/plain\n'
            printf 'X-Good: yes\n'
            printf 'X-Nul: a\000b\n'
            printf 'X-Ctl: a\001b\n'
            printf 'X-Esc: a\033[2Jb\n'
            printf 'Bad Name: spaced\n'
            printf 'X(paren): x\n'
            printf 'X-Also-Good: still\n'
            printf '\nintact body\n'
        """),
        "cgi-bin/hopbyhop.sh": sh(r"""
            printf 'Content-Type: text/plain\n'
            printf 'Connection: close\n'
            printf 'Transfer-Encoding: gzip\n'
            printf 'Keep-Alive: timeout=999\n'
            printf '\nhop body\n'
        """),
        "cgi-bin/cookies.sh": sh(r"""
            printf 'Content-Type: text/plain\n'
            printf 'Set-Cookie: a=1; Path=/\n'
            printf 'Set-Cookie: b=2; HttpOnly\n'
            printf '\ncookies\n'
        """),
        "cgi-bin/clen.sh": sh(r"""
            printf 'Content-Type: text/plain\nContent-Length: 6\n\nhello\n'
        """),
        "cgi-bin/clenlinger.sh": sh(r"""
            printf 'Content-Type: text/plain\nContent-Length: 6\n\nhello\n'
            sleep 0.5
        """),
        "cgi-bin/clenshort.sh": sh(r"""
            printf 'Content-Type: text/plain\nContent-Length: 3\n\n0123456789'
        """),
        "cgi-bin/clenlong.sh": sh(r"""
            printf 'Content-Type: text/plain\nContent-Length: 100\n\n0123456789'
        """),
        "cgi-bin/killed.sh": sh(r"""
            printf 'Content-Type: text/plain\r\n\r\npartial-body'
            sleep 0.3
            kill -9 $$
        """),
        "cgi-bin/crlf.sh": sh(r"""
            printf 'Content-Type: text/plain\r\nX-Ends: crlf\r\n\r\ncrlf body\r\n'
        """),
        "cgi-bin/lf.sh": sh(r"""
            printf 'Content-Type: text/plain\nX-Ends: lf\n\nlf body\n'
        """),
        "cgi-bin/head.sh": sh(f"""
            touch {state}/head-$QUERY_STRING
            printf 'Content-Type: text/plain\\nX-Head: ran\\n\\nbody of head script\\n'
        """),
        "cgi-bin/politehead.sh": sh(r"""
            printf 'Content-Type: text/plain\nContent-Length: 6\n\n'
            [ "$REQUEST_METHOD" = HEAD ] || printf 'hello\n'
        """),
        "cgi-bin/slowhead.py": rb"""#!/usr/bin/python3
import sys
import time

for byte in b"Status: 201 Made\r\nContent-Type: text/plain\r\nX-A: 1\r\n\r\nbody":
    sys.stdout.buffer.write(bytes([byte]))
    sys.stdout.buffer.flush()
    time.sleep(0.001)
""",
        "cgi-bin/nph-raw.sh": sh(r"""
            printf 'HTTP/1.1 200 OK\r\nContent-Type: text/plain\r\nX-Nph: raw\r\n\r\n'
            printf 'nph body, sent as is\n'
        """),
        # Streaming
        "cgi-bin/stream.sh": sh(r"""
            printf 'Content-Type: text/plain\n\nfirst\n'
            sleep 1
            printf 'second\n'
        """),
        "cgi-bin/big.sh": sh(f"""
            printf 'Content-Type: application/octet-stream\\n\\n'
            exec head -c {BIG_SIZE} /dev/zero
        """),
        "cgi-bin/cat.sh": sh(r"""
            printf 'Content-Type: application/octet-stream\n\n'
            exec cat
        """),
        # Standard error
        "cgi-bin/stderr.sh": sh(r"""
            echo "stderr line one" >&2
            echo "stderr line two" >&2
            printf 'Content-Type: text/plain\n\n%s\n' $$
        """),
        # The whole line, newline included, in one write.
        "cgi-bin/hugestderr.py": f"""#!/usr/bin/python3
import os

os.write(2, b"E" * {HUGE_STDERR} + b"\\n")
os.write(1, b"Content-Type: text/plain\\n\\n%d\\n" % os.getpid())
""".encode(),
        # Processes
        "cgi-bin/sleep.sh": sh(f"""
            sleep 30 &
            echo $$ $! > {state}/sleep-$QUERY_STRING.tmp
            mv {state}/sleep-$QUERY_STRING.tmp {state}/sleep-$QUERY_STRING.pid
            wait
        """),
        "cgi-bin/forever.sh": sh(f"""
            printf 'Content-Type: text/plain\\n\\n'
            echo $$ > {state}/forever-$QUERY_STRING.pid
            exec yes
        """),
        "cgi-bin/stubborn.sh": sh(f"""
            trap '' TERM
            echo $$ > {state}/stubborn-$QUERY_STRING.tmp
            mv {state}/stubborn-$QUERY_STRING.tmp {state}/stubborn-$QUERY_STRING.pid
            while :; do sleep 0.2; done
        """),
        # Errors
        "cgi-bin/badshebang.sh": b"#!/nonexistent/interp\nprint('never')\n",
    }


@pytest.fixture(scope="module")
def tree(tmp_path_factory: pytest.TempPathFactory) -> Iterator[ScriptTree]:
    tree = makeScriptTree(
        "cgiserve-e2e-cgi-", scripts, tmp_path_factory.mktemp("cgi-logs")
    )
    root = tree.root
    writeFile(root / "cgi-bin" / "noexec.sh", NOEXEC, 0o644)
    writeFile(root / "cgi-bin" / "root700.sh", HELLO, 0o700)
    (root / "cgi-bin" / "adir").mkdir(mode=0o755)
    os.symlink("adir", root / "cgi-bin" / "linkdir")
    os.mkfifo(root / "cgi-bin" / "fifo", 0o644)
    (root / "static.txt").write_bytes(b"static file contents\n")
    yield tree
    shutil.rmtree(root, ignore_errors=True)


@pytest.fixture(scope="module", params=ENTRY_POINTS)
def server(tree: ScriptTree, request: pytest.FixtureRequest) -> Iterator[Server]:
    """
    The default options, with secrets in the server's own environment:
    C{twistd cgiserve}, then C{python -m twisted_cgiserve --cgi}
    (http.server's command line).
    """
    srv = startServer(
        tree.root, logDir=tree.logs, env=SERVER_ENV, entryPoint=request.param
    )
    yield srv
    srv.stop()


@pytest.fixture(scope="module")
def port(server: Server) -> int:
    return server.port


OPTIONS = [
    "--cgi-dir",
    "/scripts",
    "--cgi-pass-auth",
    "--cgi-pass-env",
    "SECRET_TOKEN",
    "--cgi-set-env",
    "A=b",
    "--cgi-set-env",
    "GREETING=hello world",
    "--cgi-user",
    OTHER_USER,
]


@pytest.fixture(scope="module")
def optionServer(tree: ScriptTree) -> Iterator[Server]:
    """
    Every CGI option: /scripts as the only CGI directory, Authorization
    passed, SECRET_TOKEN passed on, two fixed variables, and scripts run as
    C{daemon}.
    """
    srv = startServer(tree.root, OPTIONS, logDir=tree.logs, env=SERVER_ENV)
    yield srv
    srv.stop()


@pytest.fixture(scope="module")
def noCgiServer(tree: ScriptTree) -> Iterator[Server]:
    srv = startServer(tree.root, ["--no-cgi"], logDir=tree.logs)
    yield srv
    srv.stop()


def scriptView(port: int, target: str | bytes, method: str = "GET", **kw: Any) -> Any:
    """
    What env.py saw when run for this request.
    """
    return fetch(port, target, method, **kw).json()


def envOf(port: int, target: str | bytes = "/cgi-bin/env.py", **kw: Any) -> Any:
    """
    The environment env.py was run with for this request.
    """
    return scriptView(port, target, **kw)["env"]


def session() -> requests.Session:
    """
    An ordinary client that ignores proxy settings from the environment.
    """
    s = requests.Session()
    s.trust_env = False
    return s


# --------------------------------------------------------------------------
# Dispatch


def test_scriptRunsInCgiBin(port: int) -> None:
    """
    GET /cgi-bin/hello.sh runs the script: its Content-Type and body reach
    the client (CPython's test_headers_and_content).
    """
    r = fetch(port, "/cgi-bin/hello.sh")
    assert r.status == 200
    assert r.header("Content-Type") == "text/html"
    assert r.body == HELLO_BODY


def test_scriptRunsInHtbin(port: int) -> None:
    """
    /htbin is a CGI directory too.
    """
    r = fetch(port, "/htbin/hello.sh")
    assert r.status == 200
    assert r.body == HELLO_BODY


def test_nestedDirectories(port: int, tree: ScriptTree) -> None:
    """
    Scripts in directories below /cgi-bin run (bpo-21323), with the nested
    path as SCRIPT_NAME and their own directory as working directory.
    """
    r = fetch(port, "/cgi-bin/sub/deeper/nested.sh")
    assert r.status == 200
    assert r.body == f"nested {tree.root}/cgi-bin/sub/deeper\n".encode()


@needsPython3
def test_nestedPythonScript(port: int, tree: ScriptTree) -> None:
    """
    /cgi-bin/sub/env.py runs the Python script in cgi-bin/sub, with
    SCRIPT_NAME /cgi-bin/sub/env.py and cwd cgi-bin/sub.
    """
    view = scriptView(port, "/cgi-bin/sub/env.py/more")
    assert view["env"]["SCRIPT_NAME"] == "/cgi-bin/sub/env.py"
    assert view["env"]["PATH_INFO"] == "/more"
    assert view["cwd"] == str(tree.root / "cgi-bin" / "sub")


@needsPython3
def test_scriptNameAndPathInfoSplit(port: int, tree: ScriptTree) -> None:
    """
    The path after the script is PATH_INFO, decoded once:
    /cgi-bin/env.py/extra/pa%20th gives SCRIPT_NAME /cgi-bin/env.py and
    PATH_INFO '/extra/pa th'.
    """
    env = envOf(port, "/cgi-bin/env.py/extra/pa%20th")
    assert env["SCRIPT_NAME"] == "/cgi-bin/env.py"
    assert env["PATH_INFO"] == "/extra/pa th"
    assert env["PATH_TRANSLATED"] == f"{tree.root}/extra/pa th"
    env = envOf(port, "/cgi-bin/env.py/caf%C3%A9/a%0ab/")
    assert env["PATH_INFO"] == "/café/a\nb/"


@needsPython3
@pytest.mark.parametrize(
    ("query", "expected"),
    [
        ("a=b?c=d", "a=b?c=d"),
        # CPython's test_query_with_continuous_slashes
        ("k=aa%2F%2Fbb&//q//p//=//a//b//", "k=aa%2F%2Fbb&//q//p//=//a//b//"),
        ("foo+bar%20baz", "foo+bar%20baz"),
    ],
)
def test_queryStringSplitAtFirstQuestionMark(
    port: int, query: str, expected: str
) -> None:
    """
    The query is everything after the first '?', raw: '?a=b?c=d' gives
    QUERY_STRING 'a=b?c=d' (CPython's test_query_with_multiple_question_mark).
    """
    env = envOf(port, f"/cgi-bin/env.py?{query}")
    assert env["QUERY_STRING"] == expected
    assert env["PATH_INFO"] == ""


@needsPython3
def test_encodedQuestionMarkIsNotAQuery(port: int) -> None:
    """
    '%3f' in the path is part of PATH_INFO, not the start of the query
    (http.server split there after decoding).
    """
    env = envOf(port, "/cgi-bin/env.py/a%3fb?c+d")
    assert env["SCRIPT_NAME"] == "/cgi-bin/env.py"
    assert env["PATH_INFO"] == "/a?b"
    assert env["QUERY_STRING"] == "c+d"


def test_noLeadingSlash(port: int) -> None:
    """
    'GET cgi-bin/hello.sh' (no leading slash) runs the script (CPython's
    test_no_leading_slash, bpo-2254).
    """
    r = fetch(port, "cgi-bin/hello.sh")
    assert r.status == 200
    assert r.body == HELLO_BODY


@pytest.mark.parametrize("target", ["/cgi-bin%2fhello.sh", "/cgi-bin%2Fhello.sh"])
def test_encodedSlashAfterCgiDirectory(port: int, target: str) -> None:
    """
    /cgi-bin%2fhello.sh runs hello.sh (CPython's
    test_urlquote_decoding_in_cgi_check).
    """
    r = fetch(port, target)
    assert r.status == 200
    assert r.body == HELLO_BODY


def test_cgiDirectoryWithoutSlashRedirects(port: int) -> None:
    """
    /cgi-bin without its slash is a directory: 301 to /cgi-bin/.
    """
    r = fetch(port, "/cgi-bin")
    assert r.status == 301
    assert r.header("Location") == "/cgi-bin/"


@pytest.mark.parametrize("target", ["/cgi-bin/", "/htbin/", "/cgi-bin/sub/"])
def test_cgiDirectoryIsNeverListed(port: int, target: str) -> None:
    """
    A CGI directory itself is 403 'CGI script is not a plain file', never a
    listing of the scripts.
    """
    r = fetch(port, target)
    assert r.status == 403
    assert r.reason.startswith(b"CGI script is not a plain file")
    assert b"hello.sh" not in r.body
    assert b"env.py" not in r.body


@pytest.mark.parametrize(
    ("target", "name"),
    [
        ("/cgi-bin/missing", "/cgi-bin/missing"),
        ("/cgi-bin/invalid", "/cgi-bin/invalid"),
        ("/cgi-bin/missing/extra?x=1", "/cgi-bin/missing"),
        # CPython's test_issue19435: no traversal, no crash.
        ("///////////nocgi.py/../cgi-bin/nothere.sh", "/cgi-bin/nothere.sh"),
    ],
)
def test_missingScript(port: int, target: str, name: str) -> None:
    """
    A missing script is 404 with the reason "No such CGI script ('/cgi-bin/
    missing')" (CPython's test_invaliduri).
    """
    r = fetch(port, target)
    assert r.status == 404
    assert r.reason == f"No such CGI script ({name!r})".encode()


@pytest.mark.parametrize("target", ["/cgi-bin/adir", "/cgi-bin/linkdir"])
def test_directoryAsScript(port: int, target: str) -> None:
    """
    A directory (or a symlink to one) named as the script is 403 'CGI script
    is not a plain file'.
    """
    r = fetch(port, target)
    assert r.status == 403
    assert r.reason.startswith(b"CGI script is not a plain file ('" + target.encode())


def test_fifoAsScript(port: int) -> None:
    """
    A FIFO in cgi-bin is 403 'CGI script is not a plain file', at once (the
    server never opens it, which would block).
    """
    started = time.monotonic()
    r = fetch(port, "/cgi-bin/fifo")
    assert r.status == 403
    assert r.reason == b"CGI script is not a plain file ('/cgi-bin/fifo')"
    assert time.monotonic() - started < 3


def test_nonExecutableScript(port: int) -> None:
    """
    A file without execute permission is 403 'CGI script is not executable'
    and its bytes are never sent.
    """
    r = fetch(port, "/cgi-bin/noexec.sh")
    assert r.status == 403
    assert r.reason == b"CGI script is not executable ('/cgi-bin/noexec.sh')"
    assert SOURCE_MARKER not in r.body
    assert b"printf" not in r.body


def test_markerControl(port: int, tree: ScriptTree) -> None:
    """
    The marker script used by the traversal tests does leave its marker and
    say RAN-42 when it runs (so their "never ran" is meaningful).
    """
    r = fetch(port, "/cgi-bin/marker.sh")
    assert r.status == 200
    assert r.body == b"RAN-42\n"
    assert (tree.state / "inside-ran").exists()


HOSTILE_TARGETS = [
    "/cgi-bin/%252e%252e/sub/run.sh",
    "/cgi-bin/%252E%252E/sub/run.sh",
    "/cgi-bin/%252e%252e%252fsub%252frun.sh",
    "/cgi-bin/..%2fsub/run.sh",
    "/cgi-bin/..%2Fsub%2Frun.sh",
    "/cgi-bin/%2e%2e/sub/run.sh",
    "/cgi-bin/%2e%2e%2fsub%2frun.sh",
    "/cgi-bin/.%2e/sub/run.sh",
    "/cgi-bin/%2e./sub/run.sh",
    "/cgi-bin//../sub/run.sh",
    "//cgi-bin/../sub/run.sh",
    "/cgi-bin/../sub/run.sh",
    "/htbin/../sub/run.sh",
    "/cgi-bin/sub/../../sub/run.sh",
    "/cgi-bin/..\\sub\\run.sh",
    "/cgi-bin\\..\\sub\\run.sh",
    "/cgi-bin/%5c..%5csub%5crun.sh",
    "/cgi-bin/..%5csub%5crun.sh",
    "/cgi-bin/..;/sub/run.sh",
    "/cgi-bin/%2e%2e/%2e%2e/sub/run.sh",
    "/../cgi-bin/../sub/run.sh",
    "/cgi-bin/..%00/sub/run.sh",
    "/cgi-bin/.../sub/run.sh",
    "/CGI-BIN/../sub/run.sh",
]


@pytest.mark.parametrize("target", HOSTILE_TARGETS)
def test_traversalNeverExecutesOutsideCgiDirectory(
    port: int, tree: ScriptTree, target: str
) -> None:
    """
    However the path is spelt (double-encoded dots, encoded slashes,
    backslashes, empty segments), an executable outside the CGI directories
    is never run: it leaves no marker and its output never appears
    (http.server ran it for /cgi-bin/%252e%252e/sub/run.sh).
    """
    with Conn(port) as conn:
        conn.send(request(port, target))
        data = conn.readAll()
    assert data.startswith(b"HTTP/1.1 ")
    assert b"RAN-42" not in data
    assert not (tree.state / "outside-ran").exists()


def test_dotDotOutOfCgiBinIsStatic(port: int, tree: ScriptTree) -> None:
    """
    /cgi-bin/../sub/run.sh resolves to /sub/run.sh, outside the CGI
    directories: its bytes are served as a file and it does not run.
    """
    r = fetch(port, "/cgi-bin/../sub/run.sh")
    assert r.status == 200
    assert r.body == (tree.root / "sub" / "run.sh").read_bytes()
    assert not (tree.state / "outside-ran").exists()


def test_noCgiServesScriptBytes(noCgiServer: Server, tree: ScriptTree) -> None:
    """
    With --no-cgi, /cgi-bin is an ordinary directory: the script's bytes are
    served as a file, and it does not run.
    """
    r = fetch(noCgiServer.port, "/cgi-bin/marker.sh")
    assert r.status == 200
    assert r.body == (tree.root / "cgi-bin" / "marker.sh").read_bytes()
    assert b"RAN-42" not in r.body
    assert fetch(noCgiServer.port, "/cgi-bin/hello.sh").body == HELLO
    listing = fetch(noCgiServer.port, "/cgi-bin/")
    assert listing.status == 200
    assert b'href="hello.sh"' in listing.body


def test_cgiDirReplacesDefaults(optionServer: Server) -> None:
    """
    --cgi-dir /scripts makes /scripts the only CGI directory: its scripts
    run, while /cgi-bin and /htbin files are served as their bytes.
    """
    r = fetch(optionServer.port, "/scripts/hello.sh")
    assert r.status == 200
    assert r.body == HELLO_BODY
    for target in ("/cgi-bin/hello.sh", "/htbin/hello.sh"):
        r = fetch(optionServer.port, target)
        assert r.status == 200
        assert r.body == HELLO


# --------------------------------------------------------------------------
# Environment (RFC 3875 section 4.1)


@needsPython3
def test_basicVariables(port: int, tree: ScriptTree) -> None:
    """
    A GET gets the CGI/1.1 variables: GATEWAY_INTERFACE, SERVER_SOFTWARE,
    SERVER_PORT, SERVER_ADDR, REQUEST_METHOD, the raw REQUEST_URI,
    SCRIPT_NAME, the absolute SCRIPT_FILENAME, DOCUMENT_ROOT,
    REDIRECT_STATUS, and no PATH_INFO-derived PATH_TRANSLATED.
    """
    env = envOf(port, "/cgi-bin/env.py?q=%41+b")
    assert env["GATEWAY_INTERFACE"] == "CGI/1.1"
    assert env["SERVER_SOFTWARE"].startswith("twisted-cgiserve/")
    assert env["SERVER_PORT"] == str(port)
    assert env["SERVER_ADDR"] == "127.0.0.1"
    assert env["REQUEST_METHOD"] == "GET"
    assert env["REQUEST_URI"] == "/cgi-bin/env.py?q=%41+b"
    assert env["SCRIPT_NAME"] == "/cgi-bin/env.py"
    assert env["SCRIPT_FILENAME"] == str(tree.root / "cgi-bin" / "env.py")
    assert os.path.isabs(env["SCRIPT_FILENAME"])
    assert env["DOCUMENT_ROOT"] == str(tree.root)
    assert env["REDIRECT_STATUS"] == "200"
    assert env["PATH_INFO"] == ""
    assert "PATH_TRANSLATED" not in env


@needsPython3
def test_requestUriIsRaw(port: int) -> None:
    """
    REQUEST_URI is the request target exactly as sent, escapes included.
    """
    target = "/cgi-bin/env.py/x%20y/%7E?a=%2F&b=c+d"
    assert envOf(port, target)["REQUEST_URI"] == target


@needsPython3
@pytest.mark.parametrize("version", ["HTTP/1.0", "HTTP/1.1"])
def test_serverProtocolIsTheRequests(port: int, version: str) -> None:
    """
    SERVER_PROTOCOL is the request's protocol version, not the server's.
    """
    env = envOf(port, version=version)
    assert env["SERVER_PROTOCOL"] == version


@needsPython3
@pytest.mark.parametrize(
    ("host", "name"),
    [
        ("example.com:8080", "example.com"),
        ("example.com", "example.com"),
        ("[::1]:8000", "[::1]"),
        ("[::1]", "[::1]"),
    ],
)
def test_serverNameFromHost(port: int, host: str, name: str) -> None:
    """
    SERVER_NAME is the Host header's host without the port (an IPv6 address
    stays bracketed); SERVER_PORT is still the port the server listens on.
    """
    env = envOf(port, host=host)
    assert env["SERVER_NAME"] == name
    assert env["SERVER_PORT"] == str(port)
    assert env["HTTP_HOST"] == host


@needsPython3
def test_serverNameWithoutHost(port: int) -> None:
    """
    An HTTP/1.0 request without Host gets the listening address as
    SERVER_NAME.
    """
    with Conn(port) as conn:
        conn.send(b"GET /cgi-bin/env.py HTTP/1.0\r\n\r\n")
        env = conn.readResponse().json()["env"]
    assert env["SERVER_NAME"] == "127.0.0.1"
    assert "HTTP_HOST" not in env


@needsPython3
def test_absoluteFormServerName(port: int) -> None:
    """
    With an absolute-form request target, the target's host is the one the
    request is directed to: SERVER_NAME is 'example.org', not the Host
    header's (RFC 9112 section 3.2.2: the server MUST ignore Host then).
    """
    env = envOf(
        port, "http://example.org:9999/cgi-bin/env.py/p?x=1", host="other.example"
    )
    assert env["SCRIPT_NAME"] == "/cgi-bin/env.py"
    assert env["PATH_INFO"] == "/p"
    assert env["QUERY_STRING"] == "x=1"
    assert env["SERVER_NAME"] == "example.org"


@needsPython3
def test_remoteAddressAndPort(port: int) -> None:
    """
    REMOTE_ADDR is 127.0.0.1 and REMOTE_PORT the client's own port.
    """
    with Conn(port, bind=True) as conn:
        conn.send(request(port, "/cgi-bin/env.py"))
        env = conn.readResponse().json()["env"]
        clientPort = conn.localPort
    assert env["REMOTE_ADDR"] == "127.0.0.1"
    assert env["REMOTE_PORT"] == str(clientPort)


@needsPython3
def test_pathTranslated(port: int, tree: ScriptTree) -> None:
    """
    PATH_TRANSLATED is PATH_INFO mapped below the document root; it is unset
    when there is no PATH_INFO.
    """
    env = envOf(port, "/cgi-bin/env.py/docs/a%20b.txt")
    assert env["PATH_INFO"] == "/docs/a b.txt"
    assert env["PATH_TRANSLATED"] == f"{tree.root}/docs/a b.txt"
    assert "PATH_TRANSLATED" not in envOf(port, "/cgi-bin/env.py")


@needsPython3
def test_queryStringEmptyWhenNone(port: int) -> None:
    """
    Without a query, QUERY_STRING is set and empty.
    """
    env = envOf(port, "/cgi-bin/env.py")
    assert env["QUERY_STRING"] == ""


@needsPython3
def test_contentTypeAndLength(port: int) -> None:
    """
    CONTENT_TYPE is the request's Content-Type, or text/plain without one
    (as http.server); CONTENT_LENGTH is set for a POST with a body and unset
    for a GET.
    """
    get = envOf(port)
    assert get["CONTENT_TYPE"] == "text/plain"
    assert "CONTENT_LENGTH" not in get
    view = scriptView(
        port,
        "/cgi-bin/env.py",
        "POST",
        headers=[("Content-Type", "application/x-www-form-urlencoded")],
        body=b"a=1&b=2",
    )
    assert view["env"]["CONTENT_TYPE"] == "application/x-www-form-urlencoded"
    assert view["env"]["CONTENT_LENGTH"] == "7"
    assert view["env"]["REQUEST_METHOD"] == "POST"
    assert view["stdin"] == "a=1&b=2"


@needsPython3
def test_repeatedHeadersMerged(port: int) -> None:
    """
    Every request header becomes HTTP_*; repeated ones are merged with ', ',
    and Cookie headers with '; ' (RFC 3875 4.1.18, Go's TestDupHeaders).
    """
    env = envOf(
        port,
        headers=[
            ("X-Foo", "val1"),
            ("X-Foo", "val2"),
            ("Cookie", "nom=NOM"),
            ("Cookie", "yum=YUM"),
            ("Accept", "text/html"),
            ("ACCEPT", "text/plain"),
            ("X-Custom-Thing", "custom"),
        ],
    )
    assert env["HTTP_X_FOO"] == "val1, val2"
    assert env["HTTP_COOKIE"] == "nom=NOM; yum=YUM"
    assert env["HTTP_ACCEPT"] == "text/html, text/plain"
    assert env["HTTP_X_CUSTOM_THING"] == "custom"


@needsPython3
def test_underscoreHeaderCannotForgeDashHeader(port: int) -> None:
    """
    'X_Forwarded_For: evil' does not become HTTP_X_FORWARDED_FOR, while
    'X-Forwarded-For: ok' does.
    """
    env = envOf(port, headers=[("X_Forwarded_For", "evil")])
    assert "HTTP_X_FORWARDED_FOR" not in env
    assert "evil" not in env.values()
    env = envOf(port, headers=[("X_Forwarded_For", "evil"), ("X-Forwarded-For", "ok")])
    assert env["HTTP_X_FORWARDED_FOR"] == "ok"


@needsPython3
def test_proxyHeaderDropped(port: int) -> None:
    """
    A 'Proxy:' request header produces neither HTTP_PROXY nor PROXY
    (httpoxy, Go's TestDropProxyHeader).
    """
    env = envOf(port, headers=[("Proxy", "http://evil.example:3128")])
    assert "HTTP_PROXY" not in env
    assert "PROXY" not in env
    assert "http://evil.example:3128" not in env.values()


@needsPython3
def test_authorizationNotExportedByDefault(port: int) -> None:
    """
    The Authorization header is not exported (it carries passwords), but
    AUTH_TYPE names its scheme; REMOTE_USER is deliberately unset, since the
    server checks no password. CPython's test_authorization: the script
    still runs.
    """
    env = envOf(
        port,
        headers=[
            ("Authorization", "Basic dXNlcm5hbWU6cGFzcw=="),
            ("Proxy-Authorization", "Basic cHJveHk6cGFzcw=="),
        ],
    )
    assert env["AUTH_TYPE"] == "Basic"
    assert "HTTP_AUTHORIZATION" not in env
    assert "HTTP_PROXY_AUTHORIZATION" not in env
    assert "REMOTE_USER" not in env
    assert not any("dXNlcm5hbWU6cGFzcw" in v for v in env.values())


@needsPython3
def test_cgiPassAuth(optionServer: Server) -> None:
    """
    With --cgi-pass-auth, the Authorization header is HTTP_AUTHORIZATION.
    """
    env = envOf(
        optionServer.port,
        "/scripts/env.py",
        headers=[("Authorization", "Basic dXNlcm5hbWU6cGFzcw==")],
    )
    assert env["HTTP_AUTHORIZATION"] == "Basic dXNlcm5hbWU6cGFzcw=="
    assert env["AUTH_TYPE"] == "Basic"


@needsPython3
def test_alwaysPresentHeaderVariables(port: int) -> None:
    """
    HTTP_ACCEPT, HTTP_USER_AGENT, HTTP_COOKIE and HTTP_REFERER are set,
    empty, even when the request has no such header (scripts written for
    http.server index os.environ with them).
    """
    env = envOf(port)
    for name in ("HTTP_ACCEPT", "HTTP_USER_AGENT", "HTTP_COOKIE", "HTTP_REFERER"):
        assert env[name] == "", name
    env = envOf(
        port, headers=[("User-Agent", "ua/1"), ("Referer", "http://r.example/")]
    )
    assert env["HTTP_USER_AGENT"] == "ua/1"
    assert env["HTTP_REFERER"] == "http://r.example/"


@needsPython3
def test_serverEnvironmentDoesNotLeak(port: int) -> None:
    """
    Nothing from the server's own environment reaches a script: not its
    secrets, not NOTIFY_SOCKET or LISTEN_FDS, not its own SERVER_SOFTWARE or
    HTTP_COOKIE; the script's environment is the CGI variables, HTTP_* and a
    sane default PATH, nothing else.
    """
    env = envOf(port)
    for name, value in SERVER_SECRETS.items():
        assert name not in env
        assert value not in env.values()
    for name, value in SERVER_SHADOWS.items():
        assert env.get(name) != value, name
    assert env["SERVER_SOFTWARE"].startswith("twisted-cgiserve/")
    assert env["HTTP_COOKIE"] == ""
    assert "CONTENT_LENGTH" not in env
    assert env["PATH"].split(":")[0].startswith("/usr")
    assert "/usr/bin" in env["PATH"].split(":")
    assert "/root" not in env["PATH"]
    assert "venv" not in env["PATH"]
    extra = {n for n in env if n not in CGI_VARIABLES and not n.startswith("HTTP_")}
    assert extra == set()


@needsPython3
def test_cgiPassEnvAndSetEnv(optionServer: Server) -> None:
    """
    --cgi-pass-env SECRET_TOKEN passes that variable (and only it) from the
    server's environment; --cgi-set-env A=b sets A.
    """
    env = envOf(optionServer.port, "/scripts/env.py")
    assert env["SECRET_TOKEN"] == SERVER_SECRETS["SECRET_TOKEN"]
    assert env["A"] == "b"
    assert env["GREETING"] == "hello world"
    assert "NOTIFY_SOCKET" not in env
    assert "LISTEN_FDS" not in env


@needsPython3
def test_workingDirectoryIsTheScripts(port: int, tree: ScriptTree) -> None:
    """
    A script runs in its own directory (http.server used the server's).
    """
    assert scriptView(port, "/cgi-bin/env.py")["cwd"] == str(tree.root / "cgi-bin")


@needsPython3
@pytest.mark.parametrize(
    ("method", "query", "argv"),
    [
        ("GET", "word1+word2", ["word1", "word2"]),
        ("GET", "hello%20world+caf%C3%A9", ["hello world", "café"]),
        ("GET", "-x", []),
        ("GET", "ok+-x", []),
        ("GET", "a=b", []),
        ("GET", "", []),
        ("POST", "word1+word2", []),
    ],
)
def test_indexQueryArguments(
    port: int, method: str, query: str, argv: list[str]
) -> None:
    """
    An indexed query (GET, no '=') is passed as decoded command-line words,
    split on '+' (RFC 3875 4.4); none at all when a word starts with '-'
    (it would be an option), when there is an '=', or for a POST.
    """
    target = "/cgi-bin/env.py" + (f"?{query}" if query else "")
    body = b"" if method == "POST" else None
    view = scriptView(port, target, method, body=body)
    assert view["argv"] == argv


@needsPython3
def test_noInheritedFileDescriptors(port: int) -> None:
    """
    A script has only its three pipes open: none of the server's listening
    sockets, client connections or files.
    """
    with Conn(port) as other:
        # Another client's connection is open in the server meanwhile.
        other.send(request(port, "/static.txt", close=False))
        other.readResponse()
        assert scriptView(port, "/cgi-bin/env.py")["fds"] == [0, 1, 2]


def test_defaultSignalDispositions(port: int) -> None:
    """
    A script starts with no signal ignored or blocked (the server's Python
    ignores SIGPIPE; a script inheriting that would never die of a closed
    pipe).
    """
    r = fetch(port, "/cgi-bin/signals.sh")
    masks = dict(line.split(":\t") for line in r.body.decode().splitlines())
    assert set(masks) == {"SigIgn", "SigBlk"}
    assert {name: int(value, 16) for name, value in masks.items()} == {
        "SigIgn": 0,
        "SigBlk": 0,
    }


@needsPython3
@needsRoot
def test_scriptsRunAsNobodyWhenRoot(port: int) -> None:
    """
    A server running as root runs scripts as nobody (uid 65534, its group,
    no supplementary groups), as http.server did.
    """
    r = fetch(port, "/cgi-bin/id.sh")
    assert r.status == 200
    uid, gid, groups = r.body.decode().split("\n")[:3]
    assert int(uid) == NOBODY.pw_uid == 65534
    assert int(gid) == NOBODY.pw_gid
    assert groups.split() == [str(NOBODY.pw_gid)]
    view = scriptView(port, "/cgi-bin/env.py")
    assert view["uid"] == NOBODY.pw_uid


def test_explicitCgiUser(optionServer: Server) -> None:
    """
    --cgi-user daemon runs scripts as daemon when the server is root (and is
    ignored otherwise).
    """
    r = fetch(optionServer.port, "/scripts/id.sh")
    assert r.status == 200
    expected = pwd.getpwnam(OTHER_USER).pw_uid if IS_ROOT else os.geteuid()
    assert int(r.body.split()[0]) == expected


# --------------------------------------------------------------------------
# Output (RFC 3875 section 6)


def test_statusHeaderSetsCodeAndReason(port: int) -> None:
    """
    'Status: 404 Nope' gives the status line '404 Nope', with the script's
    body.
    """
    r = fetch(port, "/cgi-bin/status404.sh")
    assert (r.status, r.reason) == (404, b"Nope")
    assert r.body == b"not here\n"
    assert r.head.startswith(b"HTTP/1.1 404 Nope\r\n")
    assert "status" not in r.names()


def test_statusWithoutSpace(port: int) -> None:
    """
    'Status:418' (no space after the colon) sets the status.
    """
    r = fetch(port, "/cgi-bin/status418.sh")
    assert r.status == 418
    assert r.body == b"teapot\n"


def test_lowercaseStatus(port: int) -> None:
    """
    Header names are case-insensitive: 'status: 201 Made' works.
    """
    r = fetch(port, "/cgi-bin/lowerstatus.sh")
    assert (r.status, r.reason) == (201, b"Made")
    assert r.header("Content-Type") == "text/plain"
    assert r.body == b"created\n"


def test_clientRedirectWithDocument(port: int) -> None:
    """
    An absolute Location without Status is a 302 (RFC 3875 6.2.3); the body
    the script wrote is kept.
    """
    r = fetch(port, "/cgi-bin/clientredirect.sh")
    assert r.status == 302
    assert r.header("Location") == "http://example.com/elsewhere"
    assert r.body == b"moved along\n"


def test_clientRedirectLocationOnly(port: int) -> None:
    """
    A script writing only an absolute Location gets the client a 302 with
    that Location (Go's TestRedirect).
    """
    r = fetch(port, "/cgi-bin/locationonly.sh")
    assert r.status == 302
    assert r.header("Location") == "https://example.com/only"


@pytest.mark.parametrize("script", ["redirect301a.sh", "redirect301b.sh"])
def test_statusAndLocationInEitherOrder(port: int, script: str) -> None:
    """
    Status 301 with an absolute Location is a 301, whichever header comes
    first.
    """
    r = fetch(port, f"/cgi-bin/{script}")
    assert r.status == 301
    assert r.header("Location") in ("http://example.com/a", "http://example.com/b")


@pytest.mark.parametrize(
    "status",
    [
        "100 Continue",
        "101 Switching Protocols",
        "103 Early Hints",
        "600 Big",
        "999 Odd",
    ],
)
def test_statusThatCannotEndAResponseIsBadGateway(port: int, status: str) -> None:
    """
    A Status that is not a final HTTP status (1xx is interim, anything
    above 599 is invalid, RFC 9110 section 15) is a 502: the client never
    gets a '100 Continue' carrying a body, which it would read as the start
    of the next response.
    """
    with Conn(port) as conn:
        conn.send(request(port, f"/cgi-bin/status.sh?{status.replace(' ', '+')}"))
        r = conn.readResponse()
    assert r.status == 502, r.head
    assert b"status body" not in r.body


@pytest.mark.parametrize("status", ["204 No Content", "304 Not Modified"])
def test_noBodyStatus(port: int, status: str) -> None:
    """
    With Status 204 or 304 the script's body is not sent, and the next
    response on the connection follows the head directly.
    """
    with Conn(port) as conn:
        conn.send(
            request(port, f"/cgi-bin/status.sh?{status.replace(' ', '+')}", close=False)
        )
        r = conn.readResponse()
        assert r.status == int(status[:3])
        conn.send(request(port, "/cgi-bin/hello.sh"))
        after = conn.readResponse()
        assert after.status == 200
        assert after.body == HELLO_BODY


def test_headersOnlyResponse(port: int) -> None:
    """
    A script that writes headers and no body gets an empty 200 with its
    headers (Go's TestChildOnlyHeaders).
    """
    r = fetch(port, "/cgi-bin/onlyheaders.sh")
    assert r.status == 200
    assert r.header("X-Only") == "headers"
    assert r.body == b""
    assert r.complete


def test_longHeaderValuePassed(port: int) -> None:
    """
    An 8 kB header value from a script reaches the client whole.
    """
    r = fetch(port, "/cgi-bin/longvalue.sh")
    assert r.status == 200
    assert r.header("X-Long") == "v" * 8000
    assert r.body == b"long\n"


def test_nonZeroExitAfterResponse(server: Server) -> None:
    """
    A script that writes a whole response and exits with status 3: the
    client gets the response, and the log records the exit status.
    """
    r = fetch(server.port, "/cgi-bin/exit3.sh")
    assert r.status == 200
    assert r.body == b"bye\n"
    assert r.complete
    assert server.logLines("/cgi-bin/exit3.sh [", "exited with status 3")


def test_localRedirectToStaticFile(port: int) -> None:
    """
    'Location: /static.txt' alone is a local redirect: the client gets the
    file's response (200, its bytes), not a 3xx.
    """
    r = fetch(port, "/cgi-bin/localstatic.sh")
    assert r.status == 200
    assert r.body == b"static file contents\n"
    assert r.header("Location") is None


@needsPython3
def test_localRedirectToScript(port: int) -> None:
    """
    A local redirect to another script runs it as a GET without the
    original body, with the new path and query (RFC 3875 6.2.2).
    """
    r = fetch(
        port,
        "/cgi-bin/localscript.sh?orig=1",
        "POST",
        headers=[("Content-Type", "text/x-original")],
        body=b"original body",
    )
    assert r.status == 200
    view = r.json()
    env = view["env"]
    assert env["REQUEST_METHOD"] == "GET"
    assert env["SCRIPT_NAME"] == "/cgi-bin/env.py"
    assert env["QUERY_STRING"] == "via=redirect"
    assert "CONTENT_LENGTH" not in env
    assert view["stdinLength"] == 0


def test_localRedirectLoopEnds(port: int, tree: ScriptTree) -> None:
    """
    A script that redirects locally to itself ends with a 500 after 5 hops
    (the script ran 6 times), never a hang.
    """
    token = secrets.token_hex(8)
    r = fetch(port, f"/cgi-bin/loop.sh?{token}")
    assert r.status == 500
    runs = (tree.state / f"loop-{token}").read_text().split()
    assert len(runs) == 6


@pytest.mark.parametrize(
    ("script", "cause"),
    [
        ("nohead.sh", "output ended before the end of its headers"),
        ("hellofirst.sh", "header line without a colon"),
        ("blankfirst.sh", "empty header block"),
        ("silent.sh", "script exited without writing anything"),
        ("badstatus.sh", "invalid Status"),
        ("onlylength.sh", "no Content-Type, Location or Status header"),
        ("hugehead.sh", "header block longer than"),
    ],
)
def test_invalidHeaderBlockIsBadGateway(
    server: Server, script: str, cause: str
) -> None:
    """
    Output that is not a valid CGI header block ('Hello world' first, a
    blank line first, nothing at all, a bad Status) is a 502 Bad Gateway;
    the server log names the cause, the client never sees the output.
    """
    r = fetch(server.port, f"/cgi-bin/{script}")
    assert r.status == 502
    assert b"Hello world" not in r.body
    assert b"body after a blank line" not in r.body
    assert b"\nbody\n" not in r.body
    lines = server.logLines(f"/cgi-bin/{script} [", "bad CGI response")
    assert lines, server.log()[-3000:]
    assert cause in lines[-1]


def test_invalidHeaderLinesDropped(server: Server) -> None:
    """
    Header lines with NUL or control characters, or an invalid name, are
    dropped (the client never sees them, and the log says so); the other
    headers and the body are intact.
    """
    r = fetch(server.port, "/cgi-bin/badheaders.sh")
    assert r.status == 200
    assert r.header("X-Good") == "yes"
    assert r.header("X-Also-Good") == "still"
    assert r.body == b"intact body\n"
    for name in ("x-nul", "x-ctl", "x-esc", "bad name", "x(paren)"):
        assert name not in r.names()
    for byte in (b"\x00", b"\x01", b"\x1b", b"spaced", b"paren"):
        assert byte not in r.head
    assert server.logLines("/cgi-bin/badheaders.sh", "dropped CGI header line")


def test_hopByHopHeadersNeverReachClient(port: int) -> None:
    """
    Connection, Transfer-Encoding and Keep-Alive headers from the script are
    the server's business: the client sees the server's own framing, and
    the connection stays usable.
    """
    with Conn(port) as conn:
        conn.send(request(port, "/cgi-bin/hopbyhop.sh", close=False))
        r = conn.readResponse()
        assert r.body == b"hop body\n"
        assert r.complete
        assert "keep-alive" not in r.names()
        assert r.headerValues("Transfer-Encoding") in ([], ["chunked"])
        assert "gzip" not in r.head.decode("latin-1")
        assert r.header("Connection") != "close"
        conn.send(request(port, "/cgi-bin/hello.sh"))
        assert conn.readResponse().body == HELLO_BODY


def test_repeatedSetCookieKept(port: int) -> None:
    """
    Every Set-Cookie the script writes reaches the client.
    """
    r = fetch(port, "/cgi-bin/cookies.sh")
    assert r.headerValues("Set-Cookie") == ["a=1; Path=/", "b=2; HttpOnly"]


def test_scriptContentLengthHonoured(port: int) -> None:
    """
    A script's Content-Length is the response's: no chunking.
    """
    r = fetch(port, "/cgi-bin/clen.sh")
    assert r.header("Content-Length") == "6"
    assert r.header("Transfer-Encoding") is None
    assert r.body == b"hello\n"


def test_scriptWritesMoreThanContentLength(port: int) -> None:
    """
    A script declaring Content-Length: 3 but writing 10 bytes: the client
    gets exactly 3 body bytes, and the next request on the same keep-alive
    connection is answered normally (the extra bytes are not taken for a
    response).
    """
    with Conn(port) as conn:
        conn.send(request(port, "/cgi-bin/clenshort.sh", close=False))
        first = conn.readResponse()
        assert first.header("Content-Length") == "3"
        assert first.body == b"012"
        conn.send(request(port, "/cgi-bin/hello.sh", close=False))
        second = conn.readResponse()
        assert second.status == 200
        assert second.body == HELLO_BODY
        assert b"3456789" not in second.head


def test_scriptWritesLessThanContentLength(port: int) -> None:
    """
    A script declaring more than it writes: the server closes the
    connection, so the client sees a truncated response.
    """
    with Conn(port) as conn:
        conn.send(request(port, "/cgi-bin/clenlong.sh", close=False))
        r = conn.readResponse()
        assert r.header("Content-Length") == "100"
        assert r.body == b"0123456789"
        assert not r.complete
        assert conn.eof


def test_chunkedWithoutContentLength(port: int) -> None:
    """
    Without a Content-Length, an HTTP/1.1 response is chunked and ends with
    the final chunk.
    """
    r = fetch(port, "/cgi-bin/hello.sh")
    assert r.header("Transfer-Encoding") == "chunked"
    assert r.chunked
    assert r.complete
    assert r.body == HELLO_BODY


def test_http10ResponseNotChunked(port: int) -> None:
    """
    An HTTP/1.0 request gets a response without chunking, ended by closing
    the connection.
    """
    with Conn(port) as conn:
        conn.send(request(port, "/cgi-bin/hello.sh", version="HTTP/1.0", close=False))
        r = conn.readResponse()
        assert r.header("Transfer-Encoding") is None
        assert r.body == HELLO_BODY
        assert conn.closedByPeer()


def test_scriptKilledMidBody(port: int) -> None:
    """
    A script killed by a signal after part of its body: the client can
    tell, because the chunked body has no final chunk and the connection is
    closed.
    """
    with Conn(port) as conn:
        conn.send(request(port, "/cgi-bin/killed.sh", close=False))
        r = conn.readResponse()
        assert r.chunked
        assert r.body == b"partial-body"
        assert not r.complete
        assert conn.eof


@pytest.mark.parametrize(
    ("script", "ends", "body"),
    [("crlf.sh", "crlf", b"crlf body\r\n"), ("lf.sh", "lf", b"lf body\n")],
)
def test_lineEndings(port: int, script: str, ends: str, body: bytes) -> None:
    """
    Header blocks ended with CRLF and with bare LF both work (RFC 3875 7.2);
    the body is passed unmodified.
    """
    r = fetch(port, f"/cgi-bin/{script}")
    assert r.status == 200
    assert r.header("X-Ends") == ends
    assert r.header("Content-Type") == "text/plain"
    assert r.body == body


def test_headRunsScriptWithoutBody(port: int, tree: ScriptTree) -> None:
    """
    HEAD runs the script (its side effect happens) and returns its headers
    with no body: the next response on the connection follows the head
    directly.
    """
    token = secrets.token_hex(8)
    with Conn(port) as conn:
        conn.send(request(port, f"/cgi-bin/head.sh?{token}", "HEAD", close=False))
        r = conn.readResponse("HEAD")
        assert r.status == 200
        assert r.header("X-Head") == "ran"
        conn.send(request(port, "/static.txt"))
        after = conn.readResponse()
        assert after.status == 200
        assert after.body == b"static file contents\n"
    assert (tree.state / f"head-{token}").exists()


def test_headWithScriptThatSendsNoBody(port: int) -> None:
    """
    A script that follows RFC 3875 4.3.2 (no body for HEAD, but the
    Content-Length a GET would have): the client gets the headers, with
    that Content-Length, and the connection goes on (curl -I must not see
    an empty reply).
    """
    with Conn(port) as conn:
        conn.send(request(port, "/cgi-bin/politehead.sh", "HEAD", close=False))
        r = conn.readResponse("HEAD")
        assert r.status == 200
        assert r.header("Content-Length") == "6"
        conn.send(request(port, "/cgi-bin/politehead.sh"))
        after = conn.readResponse()
        assert after.body == b"hello\n"


@needsPython3
def test_headerBlockWrittenByteByByte(port: int) -> None:
    """
    A header block that trickles in a byte at a time (CRLF line ends split
    across writes) is parsed like one written at once.
    """
    r = fetch(port, "/cgi-bin/slowhead.py")
    assert (r.status, r.reason) == (201, b"Made")
    assert r.header("X-A") == "1"
    assert r.body == b"body"


@needsPython3
def test_keepAliveAcrossScripts(port: int) -> None:
    """
    Several CGI responses (chunked, Content-Length, a redirect, an error)
    follow each other on one keep-alive connection.
    """
    with Conn(port) as conn:
        for target, status in [
            ("/cgi-bin/hello.sh", 200),
            ("/cgi-bin/clen.sh", 200),
            ("/cgi-bin/env.py", 200),
            ("/cgi-bin/status404.sh", 404),
            ("/cgi-bin/clientredirect.sh", 302),
            ("/cgi-bin/missing", 404),
            ("/cgi-bin/localstatic.sh", 200),
            ("/cgi-bin/hello.sh", 200),
        ]:
            conn.send(request(port, target, close=False))
            r = conn.readResponse()
            assert r.status == status, target
            assert r.complete, target
        assert not conn.closedByPeer(0.2)


def test_nphOutputPassedRaw(port: int) -> None:
    """
    An nph- script's output is the response, byte for byte (its own status
    line and headers), and the connection closes afterwards.
    """
    with Conn(port) as conn:
        conn.send(request(port, "/cgi-bin/nph-raw.sh", close=False))
        data = conn.readAll()
    assert data == NPH_OUTPUT


# --------------------------------------------------------------------------
# Streaming and flow control


def test_outputIsStreamed(port: int) -> None:
    """
    A script that prints a line, sleeps a second and prints another: the
    first line reaches the client a second before the second one.
    """
    with Conn(port) as conn:
        started = time.monotonic()
        conn.send(request(port, "/cgi-bin/stream.sh"))
        arrivals: dict[bytes, float] = {}
        while len(arrivals) < 2 and conn._fill():
            for word in (b"first\n", b"second\n"):
                if word in conn.buffer and word not in arrivals:
                    arrivals[word] = time.monotonic()
    assert set(arrivals) == {b"first\n", b"second\n"}
    assert arrivals[b"first\n"] - started < 0.95
    assert arrivals[b"second\n"] - arrivals[b"first\n"] >= 0.7


def test_slowClientBackpressure(server: Server) -> None:
    """
    A script writing 200 MB to a client that does not read for two seconds:
    the server stops reading the script instead of buffering, so its memory
    grows by less than 32 MiB; then the client gets every byte.
    """
    with RssSampler(server.process.pid) as rss, Conn(server.port) as conn:
        conn.send(request(server.port, "/cgi-bin/big.sh", version="HTTP/1.0"))
        time.sleep(2)
        received = 0
        while chunk := conn.sock.recv(1 << 20):
            received += len(chunk)
    # The body and a small head.
    assert BIG_SIZE < received < BIG_SIZE + 1024
    assert rss.growth < 32 * MiB, rss.growth


@pytest.fixture(scope="module")
def hundredMiB(tmp_path_factory: pytest.TempPathFactory) -> tuple[Path, str]:
    """
    A 100 MiB file of random bytes and its SHA-256.
    """
    path = tmp_path_factory.mktemp("upload") / "upload.bin"
    digest = hashlib.sha256()
    with path.open("wb") as f:
        for _ in range(100):
            block = os.urandom(MiB)
            digest.update(block)
            f.write(block)
    return path, digest.hexdigest()


def test_bigUploadEchoed(server: Server, hundredMiB: tuple[Path, str]) -> None:
    """
    A 100 MiB POST, streamed from a file, through 'exec cat' comes back
    byte-identical, and the server's memory grows by less than 32 MiB.
    """
    path, expected = hundredMiB
    size = path.stat().st_size
    errors: list[BaseException] = []

    with RssSampler(server.process.pid) as rss, Conn(server.port, 60) as conn:

        def upload() -> None:
            try:
                conn.send(
                    request(
                        server.port,
                        "/cgi-bin/cat.sh",
                        "POST",
                        headers=[("Content-Length", str(size))],
                        version="HTTP/1.0",
                    )
                )
                with path.open("rb") as f:
                    while block := f.read(256 * 1024):
                        conn.sock.sendall(block)
            except BaseException as e:
                errors.append(e)

        sender = threading.Thread(target=upload, daemon=True)
        sender.start()
        digest = hashlib.sha256()
        head = b""
        inBody = False
        received = 0
        while chunk := conn.sock.recv(1 << 20):
            if not inBody:
                head += chunk
                if b"\r\n\r\n" not in head:
                    continue
                head, _, chunk = head.partition(b"\r\n\r\n")
                inBody = True
            digest.update(chunk)
            received += len(chunk)
        sender.join(30)
    assert not errors
    assert head.startswith(b"HTTP/1.0 200 ")
    assert received == size
    assert digest.hexdigest() == expected
    assert rss.growth < 32 * MiB, rss.growth


@needsPython3
def test_chunkedUploadDechunked(server: Server) -> None:
    """
    A chunked POST reaches the script de-chunked, with CONTENT_LENGTH the
    real length and no HTTP_TRANSFER_ENCODING (Go answers 400 here).
    """
    pieces = [b"a" * 1000, b"b" * 7, b"", b"c" * 65536, b"end"]
    body = b"".join(pieces)

    def generate() -> Iterator[bytes]:
        yield from (p for p in pieces if p)

    r = session().post(server.url("/cgi-bin/env.py"), data=generate(), timeout=TIMEOUT)
    assert r.status_code == 200
    sent = r.request.headers.get("Transfer-Encoding")
    assert sent == "chunked"
    view = r.json()
    assert view["env"]["CONTENT_LENGTH"] == str(len(body))
    assert "HTTP_TRANSFER_ENCODING" not in view["env"]
    assert view["stdinLength"] == len(body)
    assert view["stdinSha256"] == hashlib.sha256(body).hexdigest()


@needsPython3
def test_oneByteBody(port: int) -> None:
    """
    A POST with 'Content-Length: 1' gives the script exactly that byte.
    """
    view = scriptView(port, "/cgi-bin/env.py", "POST", body=b"x")
    assert view["env"]["CONTENT_LENGTH"] == "1"
    assert view["stdin"] == "x"


@needsPython3
def test_emptyPostBody(port: int) -> None:
    """
    A POST with 'Content-Length: 0' gives CONTENT_LENGTH=0 and an empty
    standard input (Go's TestNilRequestBody).
    """
    view = scriptView(port, "/cgi-bin/env.py", "POST", body=b"")
    assert view["env"]["CONTENT_LENGTH"] == "0"
    assert view["stdinLength"] == 0


@needsPython3
def test_pipelinedPostThenGet(port: int) -> None:
    """
    A POST to a script and a GET sent together on one connection: the
    script gets exactly its body, and the GET is answered after it.
    """
    with Conn(port) as conn:
        conn.send(
            request(port, "/cgi-bin/env.py", "POST", body=b"hello", close=False)
            + request(port, "/cgi-bin/hello.sh")
        )
        first = conn.readResponse()
        second = conn.readResponse()
    assert first.json()["stdin"] == "hello"
    assert second.body == HELLO_BODY


def test_bodyIgnoredByScript(port: int) -> None:
    """
    A 5 MiB POST to a script that never reads its input: the script's
    response arrives, and the connection goes on serving.
    """
    body = b"z" * (5 * MiB)
    with Conn(port) as conn:
        conn.send(request(port, "/cgi-bin/hello.sh", "POST", body=body, close=False))
        first = conn.readResponse()
        conn.send(request(port, "/cgi-bin/hello.sh"))
        second = conn.readResponse()
    assert first.status == 200
    assert first.body == HELLO_BODY
    assert second.body == HELLO_BODY


@needsPython3
def test_formPost(server: Server) -> None:
    """
    CPython's test_post: a urlencoded POST parsed by the script from its
    standard input.
    """
    r = session().post(
        server.url("/cgi-bin/form.py"),
        data={"spam": 1, "eggs": "python", "bacon": 123456},
        timeout=TIMEOUT,
    )
    assert r.status_code == 200
    assert r.content == b"1, python, 123456\n"


# --------------------------------------------------------------------------
# Standard error


@pytest.mark.parametrize("script", ["hello.sh", "clenlinger.sh"])
def test_completeResponsesAreAccessLogged(server: Server, script: str) -> None:
    """
    Every request a script answered in full gets its access log line, also
    when the client closes the connection as soon as it has the whole
    response (as curl does once Content-Length bytes have arrived) while
    the script is still finishing up.
    """
    token = secrets.token_hex(8)
    for i in range(3):
        with Conn(server.port) as conn:
            conn.send(request(server.port, f"/cgi-bin/{script}?{token}-{i}"))
            r = conn.readResponse()
            assert r.complete
            assert r.status == 200

    def logged() -> list[str]:
        return [
            line
            for line in server.log().splitlines()
            if '"GET /cgi-bin/' in line and token in line
        ]

    waitFor(lambda: len(logged()) >= 3, 3)
    assert len(logged()) == 3, "\n".join(logged())


def test_stderrLinesLogged(server: Server) -> None:
    """
    Each line a script writes to stderr appears in the server log with the
    script's path and pid.
    """
    r = fetch(server.port, "/cgi-bin/stderr.sh")
    pid = int(r.body)
    for text in ("stderr line one", "stderr line two"):
        lines = server.logLines(f"/cgi-bin/stderr.sh [{pid}]: {text}")
        assert len(lines) == 1, server.log()[-2000:]


@needsPython3
def test_hugeStderrLineLoggedInPieces(server: Server) -> None:
    """
    A 100 kB stderr line (written at once, with its newline) is logged in
    pieces of a few KiB, not as giant records; together they hold the whole
    line.
    """
    r = fetch(server.port, "/cgi-bin/hugestderr.py")
    pid = int(r.body)
    prefix = f"/cgi-bin/hugestderr.py [{pid}]: "

    def pieces() -> list[str]:
        found = [
            line.split(prefix, 1)[1]
            for line in server.log().splitlines()
            if prefix in line
        ]
        return found if sum(len(p) for p in found) >= HUGE_STDERR else []

    found = waitFor(pieces)
    payload = [p for p in found if p]
    assert sum(len(p) for p in payload) == HUGE_STDERR
    assert set("".join(payload)) == {"E"}
    assert len(payload) > 1
    assert max(len(p) for p in payload) <= 16 * 1024


# --------------------------------------------------------------------------
# Processes


def test_clientDisconnectKillsScript(port: int, tree: ScriptTree) -> None:
    """
    A client that goes away while a 'sleep 30' script runs gets the script
    killed promptly (Go's TestCopyError).
    """
    token = secrets.token_hex(8)
    pidFile = tree.state / f"sleep-{token}.pid"
    with Conn(port) as conn:
        conn.send(request(port, f"/cgi-bin/sleep.sh?{token}", close=False))
        assert waitFor(pidFile.exists), "the script never started"
        pids = [int(p) for p in pidFile.read_text().split()]
        assert [processState(p) in (None, "Z") for p in pids] == [False, False]
    for pid in pids:
        assert waitFor(lambda p=pid: processState(p) is None, 5), processState(pid)


def test_clientDisconnectMidBodyKillsScript(port: int, tree: ScriptTree) -> None:
    """
    A client that reads part of an endless response and goes away gets the
    script killed promptly (Go's TestKillChildAfterCopyError).
    """
    token = secrets.token_hex(8)
    pidFile = tree.state / f"forever-{token}.pid"
    with Conn(port) as conn:
        conn.send(request(port, f"/cgi-bin/forever.sh?{token}", close=False))
        received = 0
        while received < 1_000_000:
            received += len(conn.sock.recv(65536))
        assert waitFor(pidFile.exists)
        pid = int(pidFile.read_text())
        assert processState(pid) not in (None, "Z")
    assert waitFor(lambda: processState(pid) is None, 5), processState(pid)


def test_scriptsRunConcurrently(port: int) -> None:
    """
    A slow script does not hold up other requests: while one sleeps, another
    script's response arrives at once.
    """
    with Conn(port) as slow:
        slow.send(request(port, "/cgi-bin/stream.sh"))
        assert slow.sock.recv(65536)
        started = time.monotonic()
        r = fetch(port, "/cgi-bin/hello.sh")
        assert r.body == HELLO_BODY
        elapsed = time.monotonic() - started
        rest = slow.readAll()
    # The slow script sleeps a whole second between its two lines.
    assert elapsed < 0.9
    assert b"second" in rest


def test_manyConcurrentScripts(port: int) -> None:
    """
    Forty clients at once each get their script's whole response.
    """
    results: list[bytes] = []
    errors: list[BaseException] = []

    def one() -> None:
        try:
            results.append(fetch(port, "/cgi-bin/hello.sh").body)
        except BaseException as e:
            errors.append(e)

    threads = [threading.Thread(target=one, daemon=True) for _ in range(40)]
    for thread in threads:
        thread.start()
    for thread in threads:
        thread.join(TIMEOUT)
    assert not errors
    assert results == [HELLO_BODY] * 40


def test_noDescriptorLeak(server: Server) -> None:
    """
    Scripts that succeed, fail to start, write garbage, die, or lose their
    client leave no pipe or socket open in the server.
    """
    pid = server.process.pid
    before = openFiles(pid)
    for _ in range(3):
        for target in (
            "/cgi-bin/hello.sh",
            "/cgi-bin/badshebang.sh",
            "/cgi-bin/nohead.sh",
            "/cgi-bin/killed.sh",
            "/cgi-bin/nph-raw.sh",
            "/cgi-bin/noexec.sh",
        ):
            with Conn(server.port) as conn:
                conn.send(request(server.port, target))
                conn.readAll()
        with Conn(server.port) as conn:
            conn.send(request(server.port, "/cgi-bin/stream.sh"))
            conn.sock.recv(100)
    # Abandoned scripts are ended with SIGTERM, and SIGKILL 3 s later if
    # anything of their group is left; their pipes close once it is gone.
    assert waitFor(lambda: openFiles(pid) == before, 10), (before, openFiles(pid))


def test_noZombieChildren(server: Server) -> None:
    """
    After scripts that end normally, fail, are killed or are abandoned by
    their client, no child of the server is left behind, zombie or not.
    """
    for target in (
        "/cgi-bin/hello.sh",
        "/cgi-bin/silent.sh",
        "/cgi-bin/nohead.sh",
        "/cgi-bin/killed.sh",
        "/cgi-bin/clenlong.sh",
        "/cgi-bin/nph-raw.sh",
        "/cgi-bin/badshebang.sh",
    ):
        with Conn(server.port) as conn:
            conn.send(request(server.port, target))
            conn.readAll()
    with Conn(server.port) as conn:
        conn.send(request(server.port, "/cgi-bin/stream.sh"))
        conn.sock.recv(100)
    pid = server.process.pid
    assert waitFor(lambda: not scriptProcessesOf(pid), 5), [
        (c, processState(c)) for c in scriptProcessesOf(pid)
    ]


def test_scriptIgnoringTermIsKilled(port: int, tree: ScriptTree) -> None:
    """
    A script that ignores SIGTERM is still ended after its client goes
    away (the server must follow up with SIGKILL, as Apache does after a
    grace period): a client cannot pile up immortal processes.
    """
    token = secrets.token_hex(8)
    pidFile = tree.state / f"stubborn-{token}.pid"
    pid = None
    try:
        with Conn(port) as conn:
            conn.send(request(port, f"/cgi-bin/stubborn.sh?{token}", close=False))
            assert waitFor(pidFile.exists), "the script never started"
            pid = int(pidFile.read_text())
        assert waitFor(lambda: processState(pid) is None, 8), (
            f"script {pid} still running (state {processState(pid)}) 8 s after "
            "its client went away"
        )
    finally:
        if pid is not None and processState(pid) not in (None, "Z"):
            # Our own script's process group (it leads its own session).
            os.killpg(pid, 9)


# --------------------------------------------------------------------------
# Errors


def test_badShebang(server: Server) -> None:
    """
    A script whose interpreter does not exist gets 502 (or 403) at once and
    a log line naming the script, never a hang.
    """
    started = time.monotonic()
    r = fetch(server.port, "/cgi-bin/badshebang.sh")
    assert r.status in (502, 403)
    assert time.monotonic() - started < 5
    assert server.logLines("/cgi-bin/badshebang.sh")


@needsRoot
def test_rootOnlyScriptNotExecutable(port: int, tree: ScriptTree) -> None:
    """
    A script mode 0700 owned by root (root could run it; nobody cannot) is
    403 'CGI script is not executable' when the server runs as root.
    """
    st = (tree.root / "cgi-bin" / "root700.sh").stat()
    assert stat.S_IMODE(st.st_mode) == 0o700
    r = fetch(port, "/cgi-bin/root700.sh")
    assert r.status == 403
    assert r.reason == b"CGI script is not executable ('/cgi-bin/root700.sh')"
    assert b"printf" not in r.body


def test_serverLogHasNoTraceback(server: Server) -> None:
    """
    None of the above made the server log a traceback.
    """
    assert "Traceback" not in server.log()
