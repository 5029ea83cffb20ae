"""
End-to-end tests of what counts as a script and what a script inherits:
C{--cgi-inherit-env}, C{--cgi-dir /}, C{--cgi-ext} and C{--cgi-interpreter},
with the real C{twistd -n cgiserve} on loopback, curl, and a raw client for
the spellings no well-behaved client sends.

The tests run as root (CI too): scripts then run as C{nobody}, so document
roots live in 0755 directories under /tmp and interpreters are the
system's (C{/usr/bin/perl}, C{/usr/bin/python3}), which nobody may execute.
"""

from __future__ import annotations

import os
import pwd
import shutil
import socket
import subprocess
from collections.abc import Iterator
from pathlib import Path

import pytest

from tests.support.raw import fetch
from tests.support.server import (
    Server,
    makeDocroot,
    sharedServer,
    startServer,
    staysHealthy,
)
from tests.support.shell import sh, writeFile

pytestmark = pytest.mark.e2e

CURL = shutil.which("curl")
PERL = "/usr/bin/perl"
PYTHON3 = "/usr/bin/python3"
needsCurl = pytest.mark.skipif(CURL is None, reason="curl is not installed")
needsPerl = pytest.mark.skipif(
    not os.access(PERL, os.X_OK), reason=f"{PERL} is not installed"
)
needsPython3 = pytest.mark.skipif(
    not os.access(PYTHON3, os.X_OK), reason=f"{PYTHON3} is not installed"
)

# Every script prints this marker in its output, and holds SOURCE in its
# bytes: a response with SOURCE in it sent a script's source.
SOURCE = "SECRET-SOURCE-TEXT"


def curl(server: Server, path: str, *args: str) -> subprocess.CompletedProcess[str]:
    """
    Run curl against C{server}: status line and headers included (C{-i}),
    the path sent as given (C{--path-as-is}).
    """
    assert CURL is not None
    return subprocess.run(
        [CURL, "-sS", "-i", "--path-as-is", "--max-time", "10", *args,
         server.url(path)],
        capture_output=True,
        text=True,
        timeout=20,
        check=True,
    )  # fmt: skip


def statusOf(output: str) -> int:
    return int(output.split(None, 2)[1])


def envLines(output: str) -> dict[str, str]:
    """
    The C{NAME=value} lines of a response body that printed C{env}.
    """
    body = output.split("\n\n", 1)[1]
    pairs = (line.partition("=") for line in body.splitlines() if "=" in line)
    return {name: value for name, _, value in pairs}


ENV_SCRIPT = sh(
    f"""
    # {SOURCE}
    printf 'Content-Type: text/plain\\r\\n\\r\\n'
    env
    """
)


# --cgi-inherit-env


@pytest.fixture(scope="module")
def notifySocket(tmp_path_factory: pytest.TempPathFactory) -> Iterator[str]:
    """
    A datagram socket for the server's C{NOTIFY_SOCKET}, so the server's
    own notifications land somewhere harmless.
    """
    path = str(tmp_path_factory.mktemp("notify") / "n")
    with socket.socket(socket.AF_UNIX, socket.SOCK_DGRAM) as sock:
        sock.bind(path)
        yield path


POISON = {
    "DISTGIT_CONFIG": "/etc/dist-git/dist-git.conf",
    "GIT_PROJECT_ROOT": "/srv/git",
    "HTTP_X": "poisoned-header",
    "HTTP_PROXY": "http://evil.example:1234",
    "CONTENT_TYPE": "poisoned/type",
    "CONTENT_LENGTH": "999",
    "AUTH_TYPE": "Basic",
    "REMOTE_USER": "admin",
    "HTTPS": "on",
    "LISTEN_FDNAMES": "poisoned",
    "WATCHDOG_USEC": "0",
    "CREDENTIALS_DIRECTORY": "/run/credentials/poisoned",
    "INVOCATION_ID": "0123456789abcdef",
    "JOURNAL_STREAM": "8:99999",
}


def _envServer(
    notifySocket: str, inherit: bool, tmp: Path
) -> tuple[Server, dict[str, str]]:
    root = makeDocroot("cgiserve-inherit-")
    writeFile(root / "cgi-bin" / "env.sh", ENV_SCRIPT)
    environ = {**os.environ, **POISON, "NOTIFY_SOCKET": notifySocket}
    args = ["--cgi-inherit-env"] if inherit else []
    return startServer(root, args, logDir=tmp, env=environ), environ


@needsCurl
@pytest.mark.parametrize("inherit", [True, False])
def test_inheritEnvironment(notifySocket: str, tmp_path: Path, inherit: bool) -> None:
    """
    With C{--cgi-inherit-env} a script sees the server's environment, as
    under http.server, less systemd's variables and every name that could
    pose as the request's: the request's own values are the ones a script
    sees. Without it, none of the server's environment.
    """
    server, environ = _envServer(notifySocket, inherit, tmp_path)
    with sharedServer(server):
        result = curl(
            server, "/cgi-bin/env.sh", "-d", "x=1", "-H", "Content-Type: text/csv"
        )
        assert statusOf(result.stdout) == 200
        env = envLines(result.stdout)
        for name in ("DISTGIT_CONFIG", "GIT_PROJECT_ROOT"):
            assert (env.get(name) == POISON[name]) is inherit, env
        assert (env.get("PATH") == environ["PATH"]) is inherit
        for name in ("HTTP_X", "HTTP_PROXY", "AUTH_TYPE", "REMOTE_USER", "HTTPS",
                     "NOTIFY_SOCKET", "LISTEN_FDNAMES", "WATCHDOG_USEC",
                     "CREDENTIALS_DIRECTORY", "INVOCATION_ID",
                     "JOURNAL_STREAM"):  # fmt: skip
            assert name not in env, (name, env)
        assert env["CONTENT_TYPE"] == "text/csv"
        assert env["CONTENT_LENGTH"] == "3"
        assert env["REQUEST_METHOD"] == "POST"
        # A request without a body has no CONTENT_LENGTH: the server's is
        # not let in.
        env = envLines(curl(server, "/cgi-bin/env.sh").stdout)
        assert "CONTENT_LENGTH" not in env
        assert env["CONTENT_TYPE"] == "text/plain"


# --cgi-dir /


@pytest.fixture(scope="module")
def rootServer(tmp_path_factory: pytest.TempPathFactory) -> Iterator[Server]:
    """
    A server with C{--cgi-dir /}: top-level files are scripts.
    """
    root = makeDocroot("cgiserve-rootcgi-")
    writeFile(
        root / "hello.sh",
        sh(
            f"""
            # {SOURCE}
            printf 'Content-Type: text/plain\\r\\n\\r\\n'
            echo "hello from $SCRIPT_NAME"
            """
        ),
    )
    writeFile(root / "index.html", f"<p>{SOURCE}</p>".encode(), 0o644)
    writeFile(root / "notes.txt", SOURCE.encode(), 0o644)
    writeFile(root / "sub" / "index.html", b"<p>sub index</p>", 0o644)
    writeFile(root / "sub" / "page.html", b"<p>sub page</p>", 0o644)
    logs = tmp_path_factory.mktemp("rootcgi")
    with sharedServer(startServer(root, ["--cgi-dir", "/"], logDir=logs)) as server:
        yield server


@needsCurl
@pytest.mark.parametrize(
    ("path", "status", "text"),
    [
        ("/hello.sh", 200, "hello from /hello.sh"),
        ("/hello.sh?x=1", 200, "hello from /hello.sh"),
        ("/sub/", 200, "sub index"),
        ("/sub/page.html", 200, "sub page"),
        ("/", 403, None),
        ("/index.html", 403, None),
        ("/notes.txt", 403, None),
        ("/sub", 403, None),
        ("/hello.sh/more", 404, None),
        ("/hello.sh/", 404, None),
        ("/HELLO.SH", 404, None),
    ],
)
def test_rootCGIDirectory(
    rootServer: Server, path: str, status: int, text: str | None
) -> None:
    """
    With C{--cgi-dir /} every top-level file is a script, as with
    http.server's C{cgi_directories = ['/']}: an executable one runs, any
    other is refused (so is the root, whose index file would be a script),
    and subdirectories are served as files, index files and all.
    """
    with staysHealthy(rootServer):
        result = curl(rootServer, path)
        assert statusOf(result.stdout) == status, result.stdout
        assert SOURCE not in result.stdout
        if text is not None:
            assert text in result.stdout


# --cgi-ext and --cgi-interpreter


PL_SCRIPT = f"""# {SOURCE}: no #! line, no execute bit
print "Content-Type: text/plain\\r\\n\\r\\n";
print "perl argv=", join("|", $0, @ARGV), "\\n";
print "uid=$<\\n";
""".encode()

PY_SCRIPT = f"""# {SOURCE}: no #! line, no execute bit
import os, sys
print("Content-Type: text/plain\\r\\n\\r\\n", end="")
print("python argv=" + "|".join(sys.argv))
print("PATH_INFO=" + os.environ.get("PATH_INFO", ""))
""".encode()


def _linkIntoCGIDirectory(root: Path) -> None:
    """
    A script in C{/cgi-bin} (not executable, so it could only leak), links
    to it from C{/pub} under an innocent name and through a link to the
    directory, and a link to an ordinary file.
    """
    writeFile(root / "cgi-bin" / "noexec.sh", sh(f"# {SOURCE}\necho hi"), 0o644)
    writeFile(root / "docs" / "page.txt", b"an ordinary page\n", 0o644)
    (root / "pub").mkdir(mode=0o755)
    (root / "pub" / "s.txt").symlink_to("../cgi-bin/noexec.sh")
    (root / "pub" / "cgilink").symlink_to("../cgi-bin")
    (root / "pub" / "page.txt").symlink_to("../docs/page.txt")


@pytest.fixture(scope="module")
def ruleServer(tmp_path_factory: pytest.TempPathFactory) -> Iterator[Server]:
    """
    A server with C{--cgi-ext .cgi --cgi-ext .pl}, and interpreters for
    C{.pl} (anywhere) and C{.py} (below /cgi-bin only).
    """
    root = makeDocroot("cgiserve-rules-")
    writeFile(
        root / "sub" / "dir" / "run.cgi",
        sh(
            f"""
            # {SOURCE}
            printf 'Content-Type: text/plain\\r\\n\\r\\n'
            echo "SCRIPT_NAME=$SCRIPT_NAME"
            echo "PATH_INFO=$PATH_INFO"
            echo "QUERY_STRING=$QUERY_STRING"
            """
        ),
    )
    writeFile(root / "sub" / "dir" / "hello.pl", PL_SCRIPT, 0o644)
    writeFile(root / "cgi-bin" / "hello.py", PY_SCRIPT, 0o644)
    writeFile(root / "sub" / "hello.py", PY_SCRIPT, 0o644)
    writeFile(root / "plain.cgi" / "page.txt", b"a page in a directory", 0o644)
    (root / "sub" / "alias.txt").symlink_to("dir/run.cgi")
    _linkIntoCGIDirectory(root)
    args = [
        "--cgi-ext", ".cgi", "--cgi-ext", ".pl",
        "--cgi-interpreter", f".pl={PERL}",
        "--cgi-interpreter", f".py={PYTHON3}",
    ]  # fmt: skip
    logs = tmp_path_factory.mktemp("rules")
    with sharedServer(startServer(root, args, logDir=logs)) as server:
        yield server


@needsCurl
def test_extensionInSubdirectory(ruleServer: Server) -> None:
    """
    A C{.cgi} file runs wherever it is, for any method, with the rest of
    the path as C{PATH_INFO}, as Apache's C{AddHandler cgi-script .cgi}.
    """
    with staysHealthy(ruleServer):
        result = curl(ruleServer, "/sub/dir/run.cgi/extra/pa%20th?q=1")
        assert statusOf(result.stdout) == 200
        assert "SCRIPT_NAME=/sub/dir/run.cgi\n" in result.stdout
        assert "PATH_INFO=/extra/pa th\n" in result.stdout
        assert "QUERY_STRING=q=1\n" in result.stdout
        posted = curl(ruleServer, "/sub/dir/run.cgi", "-d", "a=b")
        assert statusOf(posted.stdout) == 200
        assert SOURCE not in result.stdout + posted.stdout


@needsCurl
@needsPerl
def test_interpreterAnywhere(ruleServer: Server) -> None:
    """
    A C{.pl} file with neither an execute bit nor a C{#!} line runs through
    perl, as the unprivileged CGI user, with C{[perl, script, words...]} as
    its command line.
    """
    with staysHealthy(ruleServer):
        result = curl(ruleServer, "/sub/dir/hello.pl?a+b")
        assert statusOf(result.stdout) == 200, result.stdout
        script = str(ruleServer.root / "sub" / "dir" / "hello.pl")
        assert f"perl argv={script}|a|b\n" in result.stdout
        if os.geteuid() == 0:
            assert f"uid={pwd.getpwnam('nobody').pw_uid}\n" in result.stdout
        assert SOURCE not in result.stdout


@needsCurl
@needsPython3
def test_interpreterInCGIDirectory(ruleServer: Server) -> None:
    """
    A C{.py} file without execute bit or C{#!} runs through python below a
    CGI directory; elsewhere C{.py} is no script extension, so the file is
    an ordinary file there.
    """
    with staysHealthy(ruleServer):
        result = curl(ruleServer, "/cgi-bin/hello.py/info")
        assert statusOf(result.stdout) == 200, result.stdout
        script = str(ruleServer.root / "cgi-bin" / "hello.py")
        assert f"python argv={script}\n" in result.stdout
        assert "PATH_INFO=/info\n" in result.stdout
        plain = curl(ruleServer, "/sub/hello.py")
        assert statusOf(plain.stdout) == 200
        assert SOURCE in plain.stdout


@needsCurl
def test_directoryNamedLikeScript(ruleServer: Server) -> None:
    """
    A directory named C{plain.cgi} is a directory: listed, its files
    served.
    """
    with staysHealthy(ruleServer):
        listing = curl(ruleServer, "/plain.cgi/")
        assert statusOf(listing.stdout) == 200
        assert "page.txt" in listing.stdout
        page = curl(ruleServer, "/plain.cgi/page.txt")
        assert "a page in a directory" in page.stdout


@pytest.mark.parametrize(
    ("target", "status"),
    [
        ("/sub/dir/RUN.CGI", 404),
        ("/sub/dir/Hello.PL", 404),
        ("/sub/dir/run.cgi.", 404),
        ("/sub/dir/run.cgi%20", 404),
        ("/sub/dir/run.cgi%00", 400),
        ("/sub/dir/hello.pl.", 404),
        ("/sub/dir/run%2ecgi", 200),
        ("/sub/dir%2frun.cgi", 200),
        ("/sub/x/../dir/run.cgi", 200),
        ("/sub/dir/run.cgi/", 200),
        ("/sub/alias.txt", 404),
        ("/cgi-bin/hello.py", 200),
        ("/cgi-bin/HELLO.PY", 404),
        ("/CGI-BIN/hello.py", 404),
        ("/cgi-bin/", 403),
    ],
)
def test_sourceNeverServed(ruleServer: Server, target: str, status: int) -> None:
    """
    However a script is spelt (case, trailing dots and spaces, encoded
    dots and slashes, dot segments, a link under another name), its source
    is never sent: it runs, or the request is refused.
    """
    with staysHealthy(ruleServer):
        for method in ("GET", "HEAD", "POST"):
            response = fetch(ruleServer.port, target, method, body=b"")
            assert SOURCE.encode() not in response.head + response.body
            if method == "GET":
                assert response.status == status, (target, response.head)


@needsCurl
@pytest.mark.parametrize(
    "target", ["/pub/s.txt", "/pub/cgilink/noexec.sh", "/pub/cgilink/"]
)
def test_linkIntoCGIDirectory(ruleServer: Server, target: str) -> None:
    """
    A link to a script in a CGI directory, or to the directory itself,
    does not send the script's source (or list the directory): the static
    half judges a linked file by its real path, and answers 404.
    """
    with staysHealthy(ruleServer):
        for args in ((), ("-I",)):
            result = curl(ruleServer, target, *args)
            assert statusOf(result.stdout) == 404, result.stdout
            assert SOURCE not in result.stdout
            assert "noexec.sh" not in result.stdout


@needsCurl
def test_linkToOrdinaryFileServed(ruleServer: Server) -> None:
    """
    A link to an ordinary file outside the CGI directories is served.
    """
    with staysHealthy(ruleServer):
        result = curl(ruleServer, "/pub/page.txt")
        assert statusOf(result.stdout) == 200
        assert "an ordinary page" in result.stdout


@needsCurl
def test_linkIntoCGIDirectoryWithCGIOff(tmp_path: Path) -> None:
    """
    With C{--no-cgi} the CGI directories are ordinary directories, as in
    http.server: their files are served, through links too.
    """
    root = makeDocroot("cgiserve-nocgi-")
    _linkIntoCGIDirectory(root)
    with sharedServer(startServer(root, ["--no-cgi"], logDir=tmp_path)) as server:
        for target in ("/pub/s.txt", "/pub/cgilink/noexec.sh"):
            result = curl(server, target)
            assert statusOf(result.stdout) == 200, result.stdout
            assert SOURCE in result.stdout
