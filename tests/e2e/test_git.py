"""
End-to-end test of a real CGI application: C{git http-backend} behind
C{twistd -n cgiserve}, driven by the real git client (smart HTTP, protocol
version 2): clone, a push large enough that git sends a chunked request
body, clone again, fetch and pull.

The server runs as root, so git-http-backend runs as nobody: the bare
repository is owned by nobody (git also refuses a repository of "dubious
ownership"), and everything lives in 0755 directories under /tmp.
"""

from __future__ import annotations

import hashlib
import os
import shutil
import subprocess
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path

import pytest

from tests.support.server import Server, makeDocroot, startServer
from tests.support.shell import NOBODY

GIT = shutil.which("git")
BACKEND = "/usr/lib/git-core/git-http-backend"

pytestmark = [
    pytest.mark.e2e,
    pytest.mark.skipif(GIT is None, reason="the git client is not installed"),
    pytest.mark.skipif(
        not os.access(BACKEND, os.X_OK), reason=f"{BACKEND} is not installed"
    ),
]

GIT_TIMEOUT = 120
RANDOM_FILES = {"data/a.bin": 3 * 1024 * 1024, "data/b.bin": 2 * 1024 * 1024}


@dataclass
class GitHost:
    """
    A cgiserve serving one bare repository through git-http-backend.
    """

    server: Server
    bare: Path
    home: Path

    @property
    def url(self) -> str:
        return self.server.url("/cgi-bin/git/repo.git")


def git(
    host: GitHost,
    *args: str,
    cwd: Path | None = None,
    env: dict[str, str] | None = None,
) -> subprocess.CompletedProcess[str]:
    """
    Run the git client (with its own HOME and no proxy or system config)
    and fail the test with its output if it fails.
    """
    base = {
        "PATH": os.environ.get("PATH", "/usr/bin:/bin"),
        "HOME": str(host.home),
        "GIT_CONFIG_NOSYSTEM": "1",
        "GIT_TERMINAL_PROMPT": "0",
        "LC_ALL": "C",
    }
    result = subprocess.run(
        [GIT or "git", "-c", "protocol.version=2", *args],
        cwd=cwd or host.home,
        env={**base, **(env or {})},
        capture_output=True,
        text=True,
        timeout=GIT_TIMEOUT,
        stdin=subprocess.DEVNULL,
    )
    assert result.returncode == 0, (
        f"git {' '.join(args)} failed ({result.returncode}):\n"
        f"{result.stdout}\n{result.stderr}\n--- server log ---\n"
        f"{host.server.log()[-4000:]}"
    )
    return result


def digestTree(directory: Path) -> dict[str, str]:
    """
    SHA-256 of every file below C{directory} outside .git, by relative path.
    """
    digests = {}
    for path in sorted(directory.rglob("*")):
        relative = path.relative_to(directory)
        if path.is_file() and relative.parts[0] != ".git":
            digests[str(relative)] = hashlib.sha256(path.read_bytes()).hexdigest()
    return digests


@pytest.fixture(scope="module")
def host(tmp_path_factory: pytest.TempPathFactory) -> Iterator[GitHost]:
    base = tmp_path_factory.mktemp("git")
    root = makeDocroot("cgiserve-e2e-git-")
    repos = makeDocroot("cgiserve-e2e-git-repos-")
    # As the CGI guide's recipe does: a symbolic link to the backend.
    (root / "cgi-bin").mkdir(mode=0o755, exist_ok=True)
    (root / "cgi-bin" / "git").symlink_to(BACKEND)
    (root / "cgi-bin").chmod(0o755)
    bare = repos / "repo.git"
    home = base / "home"
    home.mkdir()
    subprocess.run(
        ["git", "init", "--quiet", "--bare", "--initial-branch=main", str(bare)],
        check=True,
        timeout=GIT_TIMEOUT,
    )
    subprocess.run(
        ["git", "-C", str(bare), "config", "http.receivepack", "true"],
        check=True,
        timeout=GIT_TIMEOUT,
    )
    if os.geteuid() == 0:
        # git-http-backend runs as nobody and must own what it writes to.
        for directory, _, files in os.walk(bare):
            os.chown(directory, NOBODY.pw_uid, NOBODY.pw_gid)
            for name in files:
                os.chown(os.path.join(directory, name), NOBODY.pw_uid, NOBODY.pw_gid)
    server = startServer(
        root,
        [
            "--cgi-set-env",
            f"GIT_PROJECT_ROOT={repos}",
            "--cgi-set-env",
            "GIT_HTTP_EXPORT_ALL=1",
        ],
        logDir=base,
    )
    gitHost = GitHost(server, bare, home)
    git(gitHost, "config", "--global", "user.email", "tester@example.com")
    git(gitHost, "config", "--global", "user.name", "CGI Tester")
    git(gitHost, "config", "--global", "init.defaultBranch", "main")
    yield gitHost
    server.stop()
    shutil.rmtree(root, ignore_errors=True)
    shutil.rmtree(repos, ignore_errors=True)


def commitRandomFiles(host: GitHost, work: Path, sizes: dict[str, int]) -> None:
    """
    Commit files of random (incompressible) bytes.
    """
    for name, size in sizes.items():
        path = work / name
        path.parent.mkdir(parents=True, exist_ok=True)
        path.write_bytes(os.urandom(size))
    git(host, "add", "--all", cwd=work)
    git(host, "commit", "--quiet", "-m", f"add {', '.join(sizes)}", cwd=work)


def test_pushChunkedThenCloneBack(host: GitHost, tmp_path: Path) -> None:
    """
    Clone over HTTP, commit 5 MiB of random data, and push with a small
    http.postBuffer so that git sends the pack as a chunked request body
    (the curl trace shows it); a fresh clone then has byte-identical files,
    and the repository passes git fsck.
    """
    first = tmp_path / "first"
    git(host, "clone", "--quiet", host.url, str(first))
    commitRandomFiles(host, first, RANDOM_FILES)
    commitRandomFiles(host, first, {"small.txt": 100})
    trace = tmp_path / "curl-trace.txt"
    git(
        host,
        "-c",
        "http.postBuffer=65536",
        "push",
        "origin",
        "main",
        cwd=first,
        env={"GIT_TRACE_CURL": str(trace), "GIT_TRACE_CURL_NO_DATA": "1"},
    )
    sent = [
        line
        for line in trace.read_text("utf-8", "replace").splitlines()
        if "=> Send header" in line
    ]
    assert sent, "no request headers in the curl trace"
    assert any("Send header: Transfer-Encoding: chunked" in line for line in sent)

    second = tmp_path / "second"
    git(host, "clone", "--quiet", host.url, str(second))
    assert digestTree(second) == digestTree(first)
    assert set(digestTree(second)) == {*RANDOM_FILES, "small.txt"}
    head = git(host, "rev-parse", "HEAD", cwd=first).stdout
    assert git(host, "rev-parse", "HEAD", cwd=second).stdout == head
    subprocess.run(
        ["git", "-C", str(host.bare), "-c", f"safe.directory={host.bare}", "fsck"],
        check=True,
        capture_output=True,
        timeout=GIT_TIMEOUT,
    )


def test_pushedObjectsOwnedByScriptUser(host: GitHost, tmp_path: Path) -> None:
    """
    git-http-backend ran as the CGI user: what a push writes into the bare
    repository belongs to nobody when the server runs as root.
    """
    work = tmp_path / "work"
    git(host, "clone", "--quiet", host.url, str(work))
    commitRandomFiles(host, work, {f"owner-{os.getpid()}.bin": 1000})
    git(host, "push", "--quiet", "origin", "main", cwd=work)
    expected = NOBODY.pw_uid if os.geteuid() == 0 else os.geteuid()
    newest = max(
        (p for p in (host.bare / "objects").rglob("*") if p.is_file()),
        key=lambda p: p.stat().st_mtime,
    )
    assert newest.stat().st_uid == expected


def test_fetchAndPull(host: GitHost, tmp_path: Path) -> None:
    """
    Two clones: a commit pushed from one arrives in the other with
    git fetch (origin/main moves) and git pull (the file appears).
    """
    alice = tmp_path / "alice"
    bob = tmp_path / "bob"
    git(host, "clone", "--quiet", host.url, str(alice))
    git(host, "clone", "--quiet", host.url, str(bob))
    commitRandomFiles(host, alice, {"from-alice.bin": 256 * 1024})
    git(host, "push", "--quiet", "origin", "main", cwd=alice)
    pushed = git(host, "rev-parse", "HEAD", cwd=alice).stdout

    git(host, "fetch", "--quiet", "origin", cwd=bob)
    assert git(host, "rev-parse", "origin/main", cwd=bob).stdout == pushed
    assert not (bob / "from-alice.bin").exists()
    git(host, "pull", "--quiet", "--ff-only", cwd=bob)
    assert git(host, "rev-parse", "HEAD", cwd=bob).stdout == pushed
    assert (bob / "from-alice.bin").read_bytes() == (
        alice / "from-alice.bin"
    ).read_bytes()


def test_protocolVersion2(host: GitHost) -> None:
    """
    The Git-Protocol request header reaches git-http-backend (as
    HTTP_GIT_PROTOCOL), so the client and server speak protocol version 2.
    """
    result = git(host, "ls-remote", host.url, env={"GIT_TRACE_PACKET": "1"})
    assert "git< version 2" in result.stderr
