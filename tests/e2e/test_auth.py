"""
End-to-end tests of HTTP Basic authentication (C{--auth-file},
C{--auth-realm}, C{--auth-path}) with real clients: curl with C{-u} over
HTTP/1.1 and HTTP/2, and the git client cloning and pushing through
git-http-backend.
"""

from __future__ import annotations

import os
import shutil
import signal
import subprocess
from collections.abc import Iterator
from pathlib import Path

import bcrypt
import pytest

from tests.support.certs import makeCertificate
from tests.support.server import Server, makeDocroot, runTwistd, startServer, waitFor
from tests.support.shell import NOBODY, sh, writeFile
from twisted_cgiserve._http.shacrypt import shaCrypt

CURL = shutil.which("curl")
GIT = shutil.which("git")
BACKEND = "/usr/lib/git-core/git-http-backend"

pytestmark = [
    pytest.mark.e2e,
    pytest.mark.skipif(CURL is None, reason="curl is not installed"),
]


def htpasswdLines() -> bytes:
    """
    alice with a bcrypt hash as C{htpasswd -B} writes it, bob with
    SHA-512-crypt.
    """
    alice = b"$2y$" + bcrypt.hashpw(b"wonderland", bcrypt.gensalt(5))[4:]
    bob = shaCrypt(b"builder", b"$6$rounds=5000$e2esalt")
    return b"# test users\nalice:" + alice + b"\nbob:" + bob + b"\n"


ENV_SCRIPT = sh(
    'printf "Content-Type: text/plain\\n\\n"\n'
    'echo "AUTH_TYPE=${AUTH_TYPE-unset}"\n'
    'echo "REMOTE_USER=${REMOTE_USER-unset}"\n'
    'echo "HTTP_AUTHORIZATION=${HTTP_AUTHORIZATION-unset}"\n'
)


@pytest.fixture(scope="module")
def site(tmp_path_factory: pytest.TempPathFactory) -> Iterator[tuple[Path, Path]]:
    """
    A tree with a public file, a private directory, a look-alike, and a
    script that shows its authentication variables; and an htpasswd file.
    """
    base = tmp_path_factory.mktemp("auth")
    root = makeDocroot("cgiserve-e2e-auth-")
    writeFile(root / "public.txt", b"public\n", 0o644)
    (root / "private").mkdir(mode=0o755)
    writeFile(root / "private" / "secret.txt", b"secret\n", 0o644)
    writeFile(root / "privateer", b"look-alike\n", 0o644)
    (root / "cgi-bin").mkdir(mode=0o755)
    writeFile(root / "cgi-bin" / "env.sh", ENV_SCRIPT)
    htpasswd = base / "htpasswd"
    htpasswd.write_bytes(htpasswdLines())
    yield root, htpasswd
    shutil.rmtree(root, ignore_errors=True)


def curl(server: Server, path: str, *args: str) -> tuple[int, str, str]:
    """
    Fetch C{path}; the status, the response head and body.
    """
    assert CURL is not None
    result = subprocess.run(
        [
            CURL, "--silent", "--show-error", "--insecure", "--path-as-is",
            "--dump-header", "-", "--write-out", "\n%{http_code}",
            *args, server.url(path),
        ],
        capture_output=True,
        timeout=30,
    )  # fmt: skip
    assert result.returncode == 0, result.stderr
    output, _, code = result.stdout.decode("utf-8", "replace").rpartition("\n")
    head, _, body = output.partition("\r\n\r\n")
    return int(code), head, body


@pytest.fixture(scope="module")
def everywhere(site: tuple[Path, Path]) -> Iterator[Server]:
    """
    Everything protected.
    """
    root, htpasswd = site
    server = startServer(
        root, ["--auth-file", str(htpasswd), "--auth-realm", "E2E realm"]
    )
    yield server
    server.stop()


@pytest.fixture(scope="module")
def prefixes(site: tuple[Path, Path]) -> Iterator[Server]:
    """
    Only /private and /cgi-bin protected.
    """
    root, htpasswd = site
    server = startServer(
        root,
        [
            "--auth-file", str(htpasswd),
            "--auth-path", "/private", "--auth-path", "/cgi-bin",
        ],
    )  # fmt: skip
    yield server
    server.stop()


@pytest.mark.parametrize(
    ("user", "expected"),
    [
        (None, 401),
        ("alice:wonderland", 200),
        ("bob:builder", 200),
        ("alice:Wonderland", 401),
        ("alice:", 401),
        ("mallory:wonderland", 401),
    ],
)
def test_curlUser(everywhere: Server, user: str | None, expected: int) -> None:
    """
    curl -u with the right password gets the file; without one, or with a
    wrong user or password, a 401 with the challenge and the server's error
    page.
    """
    args = ["-u", user] if user else []
    code, head, body = curl(everywhere, "/public.txt", *args)
    assert code == expected, head
    if expected == 200:
        assert body == "public\n"
    else:
        assert 'WWW-Authenticate: Basic realm="E2E realm"' in head
        assert "Error code: 401" in body
        assert "public" not in body


@pytest.mark.parametrize(
    "authorization",
    ["Basic !!!notbase64", "Basic", "Bearer abc", "Basic YWxpY2U=", "Digest x=1"],
)
def test_malformedHeader(everywhere: Server, authorization: str) -> None:
    """
    A malformed or foreign Authorization header is a 401, never a
    traceback; the server stays healthy.
    """
    code, head, _ = curl(
        everywhere, "/public.txt", "-H", f"Authorization: {authorization}"
    )
    assert code == 401, head
    assert "Traceback" not in everywhere.log()


def test_accessLogUser(everywhere: Server) -> None:
    """
    The access log's third field is the authenticated user, and C{-} for
    a refused request.
    """
    curl(everywhere, "/public.txt?who=alice", "-u", "alice:wonderland")
    curl(everywhere, "/public.txt?who=nobody", "-u", "alice:wrong")
    [good] = everywhere.logLines("who=alice")
    [bad] = everywhere.logLines("who=nobody")
    assert good.split("] ", 1)[1].split()[:3] == ["127.0.0.1", "-", "alice"]
    assert bad.split("] ", 1)[1].split()[:3] == ["127.0.0.1", "-", "-"]


@pytest.mark.parametrize(
    ("path", "protected"),
    [
        ("/public.txt", False),
        ("/privateer", False),
        ("/private/secret.txt", True),
        ("/private/", True),
        ("/private", True),
        ("//private/secret.txt", True),
        ("/%70rivate/secret.txt", True),
        ("/%70RIVATE/secret.txt", True),
        ("/./private/./secret.txt", True),
        ("/x/../private/secret.txt", True),
        ("/private%2fsecret.txt", True),
        ("/cgi-bin/env.sh", True),
        ("/cgi-bin//env.sh", True),
    ],
)
def test_prefixes(prefixes: Server, path: str, protected: bool) -> None:
    """
    --auth-path protects whole segments of the normalised path: look-alike
    names are not protected, and no spelling gets past a prefix.
    """
    code, _, body = curl(prefixes, path)
    if protected:
        assert code == 401
        assert "secret" not in body
        code, _, body = curl(prefixes, path, "-u", "bob:builder")
        # /PRIVATE is protected too, though on this file system it is not
        # found.
        assert code in (200, 301, 404)
    else:
        assert code == 200


def test_scriptEnvironment(prefixes: Server) -> None:
    """
    An authenticated script gets AUTH_TYPE=Basic and REMOTE_USER, never
    the Authorization header.
    """
    code, _, body = curl(prefixes, "/cgi-bin/env.sh", "-u", "alice:wonderland")
    assert code == 200
    assert body.splitlines() == [
        "AUTH_TYPE=Basic",
        "REMOTE_USER=alice",
        "HTTP_AUTHORIZATION=unset",
    ]


def test_unprotectedScriptNotAuthenticated(
    site: tuple[Path, Path], tmp_path: Path
) -> None:
    """
    Where no authentication is needed, credentials a client sends are not
    checked and do not look authenticated to the script.
    """
    root, htpasswd = site
    server = startServer(
        root, ["--auth-file", str(htpasswd), "--auth-path", "/private"], logDir=tmp_path
    )
    try:
        code, _, body = curl(server, "/cgi-bin/env.sh", "-u", "mallory:x")
    finally:
        server.stop()
    assert code == 200
    assert body.splitlines()[:2] == ["AUTH_TYPE=unset", "REMOTE_USER=unset"]


def test_http2(site: tuple[Path, Path], tmp_path: Path) -> None:
    """
    Over TLS with HTTP/2, the same answers.
    """
    root, htpasswd = site
    cert = makeCertificate(tmp_path / "tls")
    server = startServer(
        root,
        [
            "--bind", "127.0.0.1", "--port", "0",
            "--tls-cert", str(cert.cert), "--tls-key", str(cert.key),
            "--auth-file", str(htpasswd),
        ],
        logDir=tmp_path,
    )  # fmt: skip
    try:
        code, head, _ = curl(server, "/public.txt", "--http2")
        assert code == 401 and head.startswith("HTTP/2 401")
        assert 'www-authenticate: Basic realm="twisted-cgiserve"' in head
        code, head, body = curl(
            server, "/cgi-bin/env.sh", "--http2", "-u", "alice:wonderland"
        )
        assert head.startswith("HTTP/2 200")
        assert "REMOTE_USER=alice" in body
        assert "plain HTTP" not in server.log()
    finally:
        server.stop()


def test_reloadOnSIGHUP(site: tuple[Path, Path], tmp_path: Path) -> None:
    """
    SIGHUP reads the file again: a new user works, a removed one does not;
    a broken file keeps the users read before and logs one line.
    """
    root, _ = site
    htpasswd = tmp_path / "htpasswd"
    htpasswd.write_bytes(b"carol:" + shaCrypt(b"first", b"$5$c") + b"\n")
    server = startServer(root, ["--auth-file", str(htpasswd)], logDir=tmp_path)
    try:
        assert curl(server, "/public.txt", "-u", "carol:first")[0] == 200
        htpasswd.write_bytes(b"dave:" + shaCrypt(b"second", b"$5$d") + b"\n")
        server.process.send_signal(signal.SIGHUP)
        server.logLines("Read 1 users")
        assert curl(server, "/public.txt", "-u", "dave:second")[0] == 200
        assert curl(server, "/public.txt", "-u", "carol:first")[0] == 401
        htpasswd.write_bytes(b"dave:$apr1$abcdefgh$0123456789abcdefghijkl\n")
        server.process.send_signal(signal.SIGHUP)
        [line] = server.logLines("still using the 1 users")
        assert "line 1" in line
        assert curl(server, "/public.txt", "-u", "dave:second")[0] == 200
        assert server.process.poll() is None
    finally:
        server.stop()


@pytest.mark.parametrize(
    ("content", "message"),
    [
        (
            b"alice:$apr1$abcdefgh$0123456789abcdefghijkl\n",
            "line 1: user 'alice': the MD5",
        ),
        (
            b"# c\nbob:{SHA}W6ph5Mm5Pz8GgiULbPgzG37mj9g=\n",
            "line 2: user 'bob': the unsalted",
        ),
        (b"carol:plaintext\n", "line 1: user 'carol': the password is neither"),
        (b"no colon here\n", "line 1: not 'user:hash'"),
        (None, "cannot read --auth-file"),
    ],
)
def test_badFileAtStart(
    site: tuple[Path, Path], tmp_path: Path, content: bytes | None, message: str
) -> None:
    """
    An unusable file ends start-up with one line naming the file and line,
    and exit status 2.
    """
    root, _ = site
    path = tmp_path / "htpasswd"
    if content is not None:
        path.write_bytes(content)
    result = runTwistd(
        [
            "--port",
            "tcp:0:interface=127.0.0.1",
            "-d",
            str(root),
            "--auth-file",
            str(path),
        ],
        tmp_path,
    )
    assert result.returncode == 2, result.stderr
    lines = result.stderr.strip().splitlines()
    assert len(lines) == 1, result.stderr
    assert str(path) in lines[0] and message in lines[0]


def test_clearTextWarning(site: tuple[Path, Path], tmp_path: Path) -> None:
    """
    Authentication over plain HTTP on a non-loopback address is warned
    about at start-up; on loopback it is not.
    """
    root, htpasswd = site
    server = startServer(
        root, ["--port", "tcp:0", "--auth-file", str(htpasswd)], logDir=tmp_path
    )
    try:
        assert server.logLines("plain HTTP", "tcp:0")
    finally:
        server.stop()
    quiet = startServer(root, ["--auth-file", str(htpasswd)], logDir=tmp_path)
    try:
        assert curl(quiet, "/public.txt", "-u", "bob:builder")[0] == 200
        assert "plain HTTP" not in quiet.log()
    finally:
        quiet.stop()


def test_wrongPasswordsDoNotStarve(everywhere: Server) -> None:
    """
    While many wrong passwords are being checked, a request with cached
    right credentials is still answered promptly.
    """
    assert CURL is not None
    assert curl(everywhere, "/public.txt", "-u", "alice:wonderland")[0] == 200
    attackers = [
        subprocess.Popen(
            [
                CURL,
                "--silent",
                "-o",
                "/dev/null",
                "-u",
                f"alice:wrong{i}",
                everywhere.url("/public.txt"),
            ],
        )
        for i in range(40)
    ]
    try:
        result = subprocess.run(
            [CURL, "--silent", "--max-time", "2", "-o", "/dev/null",
             "--write-out", "%{http_code}", "-u", "alice:wonderland",
             everywhere.url("/public.txt")],
            capture_output=True, text=True, timeout=10,
        )  # fmt: skip
        assert result.stdout == "200"
    finally:
        for attacker in attackers:
            attacker.wait(30)
    assert everywhere.process.poll() is None


# git over Basic auth ------------------------------------------------------


@pytest.fixture
def gitHost(tmp_path: Path) -> Iterator[tuple[Server, Path, Path]]:
    """
    git-http-backend behind Basic authentication: the server, the bare
    repository, a HOME for the git client.
    """
    if GIT is None:
        pytest.skip("the git client is not installed")
    if not os.access(BACKEND, os.X_OK):
        pytest.skip(f"{BACKEND} is not installed")
    root = makeDocroot("cgiserve-e2e-authgit-")
    repos = makeDocroot("cgiserve-e2e-authgit-repos-")
    (root / "cgi-bin").mkdir(mode=0o755)
    (root / "cgi-bin" / "git").symlink_to(BACKEND)
    bare = repos / "repo.git"
    subprocess.run(
        ["git", "init", "--quiet", "--bare", "--initial-branch=main", str(bare)],
        check=True,
    )
    # No http.receivepack: git-http-backend allows pushes when REMOTE_USER
    # is set, which only authentication gives it.
    if os.geteuid() == 0:
        for directory, _, files in os.walk(bare):
            os.chown(directory, NOBODY.pw_uid, NOBODY.pw_gid)
            for name in files:
                os.chown(os.path.join(directory, name), NOBODY.pw_uid, NOBODY.pw_gid)
    htpasswd = tmp_path / "htpasswd"
    htpasswd.write_bytes(htpasswdLines())
    server = startServer(
        root,
        [
            "--cgi-set-env", f"GIT_PROJECT_ROOT={repos}",
            "--cgi-set-env", "GIT_HTTP_EXPORT_ALL=1",
            "--auth-file", str(htpasswd),
            "--auth-path", "/cgi-bin/git",
        ],
        logDir=tmp_path,
    )  # fmt: skip
    home = tmp_path / "home"
    home.mkdir()
    yield server, bare, home
    server.stop()
    shutil.rmtree(root, ignore_errors=True)
    shutil.rmtree(repos, ignore_errors=True)


def runGit(
    home: Path, *args: str, cwd: Path | None = None, check: bool = True
) -> subprocess.CompletedProcess[str]:
    env = {
        "PATH": os.environ.get("PATH", "/usr/bin:/bin"),
        "HOME": str(home),
        "GIT_CONFIG_NOSYSTEM": "1",
        "GIT_TERMINAL_PROMPT": "0",
        "GIT_AUTHOR_NAME": "T",
        "GIT_AUTHOR_EMAIL": "t@example.com",
        "GIT_COMMITTER_NAME": "T",
        "GIT_COMMITTER_EMAIL": "t@example.com",
        "LC_ALL": "C",
    }
    result = subprocess.run(
        [GIT or "git", "-c", "protocol.version=2", *args],
        cwd=cwd or home,
        env=env,
        capture_output=True,
        text=True,
        timeout=120,
        stdin=subprocess.DEVNULL,
    )
    if check:
        assert result.returncode == 0, f"{result.stdout}\n{result.stderr}"
    return result


def test_gitCloneAndPush(gitHost: tuple[Server, Path, Path], tmp_path: Path) -> None:
    """
    The git client clones and pushes with credentials in the URL (alice),
    and through a credential helper (bob); without credentials, or with a
    wrong password, it is refused; the pushes are in the repository and
    the access log names who made them (git-http-backend allows the pushes
    because REMOTE_USER is set).
    """
    server, bare, home = gitHost
    plain = server.url("/cgi-bin/git/repo.git")
    withUser = plain.replace("http://", "http://alice:wonderland@")

    refused = runGit(home, "clone", plain, str(tmp_path / "anon"), check=False)
    assert refused.returncode != 0
    # Asked for credentials, and with prompts off it has none.
    assert "could not read Username" in refused.stderr
    wrong = plain.replace("http://", "http://alice:nope@")
    refused = runGit(home, "clone", wrong, str(tmp_path / "wrong"), check=False)
    assert "Authentication failed" in refused.stderr

    work = tmp_path / "work"
    runGit(home, "clone", "--quiet", withUser, str(work))
    (work / "a.txt").write_text("from alice\n")
    runGit(home, "add", "a.txt", cwd=work)
    runGit(home, "commit", "--quiet", "-m", "alice", cwd=work)
    runGit(home, "push", "--quiet", "origin", "main", cwd=work)

    # bob through a credential helper, as a user would configure one.
    helper = tmp_path / "helper.sh"
    helper.write_text(
        "#!/bin/sh\necho username=bob\necho password=builder\n", encoding="ascii"
    )
    helper.chmod(0o755)
    other = tmp_path / "other"
    runGit(
        home, "-c", f"credential.helper={helper}", "clone", "--quiet", plain, str(other)
    )
    assert (other / "a.txt").read_text() == "from alice\n"
    (other / "b.txt").write_text("from bob\n")
    runGit(home, "add", "b.txt", cwd=other)
    runGit(home, "commit", "--quiet", "-m", "bob", cwd=other)
    runGit(
        home,
        "-c",
        f"credential.helper={helper}",
        "push",
        "--quiet",
        "origin",
        "main",
        cwd=other,
    )

    log = subprocess.run(
        ["git", "-C", str(bare), "-c", f"safe.directory={bare}", "log", "--format=%s"],
        capture_output=True, text=True, check=True,
    ).stdout.split()  # fmt: skip
    assert log == ["bob", "alice"]
    pushes = waitFor(lambda: [
        line for line in server.log().splitlines()
        if "git-receive-pack" in line and '" 200 ' in line and "POST" in line
    ])  # fmt: skip
    users = {line.split("] ", 1)[1].split()[2] for line in pushes}
    assert users == {"alice", "bob"}
    assert "Traceback" not in server.log()


# Refused before the body ---------------------------------------------------


def postLarge(
    server: Server, path: str, body: Path, *args: str
) -> tuple[str, int, int]:
    """
    POST C{body} with C{Expect: 100-continue}; curl's trace of the
    response heads, the final status, and the bytes it uploaded.
    """
    assert CURL is not None
    result = subprocess.run(
        [
            CURL, "--silent", "--insecure", "--verbose", "-o", "/dev/null",
            "-H", "Expect: 100-continue", "--expect100-timeout", "20",
            "--data-binary", f"@{body}",
            "--write-out", "\n%{http_code} %{size_upload}",
            *args, server.url(path),
        ],
        capture_output=True,
        timeout=60,
    )  # fmt: skip
    trace = result.stderr.decode("utf-8", "replace")
    code, uploaded = result.stdout.decode().rsplit("\n", 1)[1].split()
    return trace, int(code), int(uploaded)


@pytest.fixture(scope="module")
def largeBody(tmp_path_factory: pytest.TempPathFactory) -> Path:
    path = tmp_path_factory.mktemp("body") / "large"
    with path.open("wb") as f:
        f.truncate(64 * 1024 * 1024)
    return path


@pytest.mark.parametrize("user", [None, "alice:Wonderland"])
def test_largeUploadRefusedBeforeBody(
    everywhere: Server, largeBody: Path, user: str | None
) -> None:
    """
    A large POST with C{Expect: 100-continue} and no credentials, or
    credentials that just failed, gets 401 with the challenge at once: no
    C{100 Continue}, and the body is not taken.
    """
    args = ("-u", user) if user else ()
    if user:
        assert curl(everywhere, "/cgi-bin/env.sh", "-u", user)[0] == 401
    trace, code, uploaded = postLarge(everywhere, "/cgi-bin/env.sh", largeBody, *args)
    assert code == 401
    assert '< WWW-Authenticate: Basic realm="E2E realm"' in trace
    assert "100 Continue" not in trace
    assert uploaded == 0
    assert everywhere.process.poll() is None


def test_largeUploadWithCredentials(everywhere: Server, largeBody: Path) -> None:
    """
    With the right credentials, the body is asked for and taken.
    """
    trace, code, uploaded = postLarge(
        everywhere, "/cgi-bin/env.sh", largeBody, "-u", "alice:wonderland"
    )
    assert "100 Continue" in trace
    assert code == 200
    assert uploaded == largeBody.stat().st_size


def test_uploadRefusedBeforeBodyHTTP2(site: tuple[Path, Path], tmp_path: Path) -> None:
    """
    Over HTTP/2, the same request gets no C{100 Continue} and a 401 with
    the challenge (once its stream ends: the body is discarded meanwhile);
    an unprotected one gets its C{100 Continue}.
    """
    root, htpasswd = site
    cert = makeCertificate(tmp_path / "tls")
    body = tmp_path / "body"
    body.write_bytes(b"x" * 1024 * 1024)
    server = startServer(
        root,
        [
            "--bind", "127.0.0.1", "--port", "0",
            "--tls-cert", str(cert.cert), "--tls-key", str(cert.key),
            "--auth-file", str(htpasswd), "--auth-path", "/cgi-bin",
        ],
        logDir=tmp_path,
    )  # fmt: skip
    try:
        trace, code, _ = postLarge(server, "/cgi-bin/env.sh", body, "--http2")
        assert code == 401
        assert "< HTTP/2 401" in trace
        assert '< www-authenticate: Basic realm="twisted-cgiserve"' in trace
        assert "< HTTP/2 100" not in trace
        trace, code, _ = postLarge(server, "/public.txt", body, "--http2")
        assert "< HTTP/2 100" in trace
    finally:
        server.stop()
