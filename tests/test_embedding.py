"""
The embedding guide's example, run for real; and the same tree's CGI
directories through the root resource C{twistd cgiserve} serves.
"""

from __future__ import annotations

import re
import shutil
import subprocess
import sys
import time
from collections.abc import Callable, Iterator
from pathlib import Path

import pytest
import requests

from tests.support.checkout import ROOT
from tests.support.raw import fetch
from tests.support.server import Server, makeDocroot

pytestmark = pytest.mark.e2e

EXAMPLE = ROOT / "docs" / "examples" / "embed.py"
SCRIPT = (
    b"#!/bin/sh\n# SECRET-SOURCE\nprintf 'Content-Type: text/plain\\r\\n\\r\\nRAN\\n'\n"
)

# Spellings of a script below a CGI directory that the static half must
# refuse, each as the path below the mount point.
HIDDEN = [
    "/cgi-bin/s.sh",
    "/cgi-bin/",
    "/htbin/s.sh",
    "/%63gi-bin/s.sh",
    "/cgi-bin%2fs.sh",
    "/cgi-bin%2Fs.sh",
    "//cgi-bin/s.sh",
    "/./cgi-bin/s.sh",
    "/sub/../cgi-bin/s.sh",
    "/sub/%2e%2e/cgi-bin/s.sh",
    "/cgi-bin/./s.sh",
    "/cgi-bin//s.sh",
    "/CGI-BIN/s.sh",
    "/Cgi-Bin/",
    "/cgi-bin/s.sh?x=1",
]


def makeTree(root: Path) -> Path:
    """
    A tree with a file, a subdirectory and a script in each CGI directory.
    """
    (root / "sub").mkdir(parents=True, exist_ok=True)
    (root / "a.txt").write_text("embedded\n")
    for name in ("cgi-bin", "htbin"):
        (root / name).mkdir(exist_ok=True)
        (root / name / "s.sh").write_bytes(SCRIPT)
        (root / name / "s.sh").chmod(0o755)
    return root


def test_embedExample(tmp_path: Path) -> None:
    """
    docs/examples/embed.py mounts the served tree under /files and the
    static half under /assets of its own application.
    """
    root = tmp_path / "www"
    (root / "sub").mkdir(parents=True)
    (root / "a.txt").write_text("embedded\n")
    (root / "cgi-bin").mkdir()
    (root / "cgi-bin" / "s.sh").write_text("#!/bin/sh\nsecret\n")
    process = subprocess.Popen(
        [sys.executable, str(EXAMPLE), str(root), "tcp:0:interface=127.0.0.1"],
        stdout=subprocess.PIPE,
        stderr=subprocess.STDOUT,
        text=True,
    )
    try:
        assert process.stdout is not None
        line = process.stdout.readline()
        match = re.search(r"port=(\d+)", line)
        assert match, line
        base = f"http://127.0.0.1:{match.group(1)}"
        assert "files" in requests.get(base + "/", timeout=5).text
        assert requests.get(base + "/files/a.txt", timeout=5).text == "embedded\n"
        redirect = requests.get(base + "/files", allow_redirects=False, timeout=5)
        assert (redirect.status_code, redirect.headers["Location"]) == (301, "/files/")
        listing = requests.get(base + "/files/", timeout=5).text
        assert "Directory listing for /files/" in listing
        script = requests.get(base + "/files/cgi-bin/s.sh", timeout=5)
        assert script.status_code == 403 and "secret" not in script.text
        assert requests.get(base + "/assets/a.txt", timeout=5).text == "embedded\n"
        assert requests.get(base + "/assets/sub/", timeout=5).status_code == 404
    finally:
        process.terminate()
        deadline = time.monotonic() + 10
        while process.poll() is None and time.monotonic() < deadline:
            time.sleep(0.05)
        if process.poll() is None:
            process.kill()
        process.wait()
        process.stdout.close()


def _startExample(root: Path) -> tuple[subprocess.Popen[str], int]:
    process = subprocess.Popen(
        [sys.executable, str(EXAMPLE), str(root), "tcp:0:interface=127.0.0.1"],
        stdout=subprocess.PIPE,
        stderr=subprocess.STDOUT,
        text=True,
    )
    assert process.stdout is not None
    line = process.stdout.readline()
    match = re.search(r"port=(\d+)", line)
    assert match, line
    return process, int(match.group(1))


def _stopExample(process: subprocess.Popen[str]) -> None:
    process.terminate()
    try:
        process.wait(10)
    except subprocess.TimeoutExpired:
        process.kill()
        process.wait()
    if process.stdout is not None:
        process.stdout.close()


@pytest.fixture(scope="module")
def scriptTree() -> Iterator[Path]:
    """
    A tree with scripts in both default CGI directories, where a root
    server's scripts (run as nobody) can reach them.
    """
    root = makeTree(makeDocroot("cgiserve-embed-"))
    yield root
    shutil.rmtree(root, ignore_errors=True)


@pytest.fixture(scope="module")
def examplePort(scriptTree: Path) -> Iterator[int]:
    process, port = _startExample(scriptTree)
    try:
        yield port
    finally:
        _stopExample(process)


@pytest.mark.parametrize("target", HIDDEN)
def test_embedExampleNeverServesCGIDirectories(examplePort: int, target: str) -> None:
    """
    The example's /assets (the static half alone) answers 404 for everything
    below the tree's CGI directories, however the path is spelt: their files
    are scripts' source. The same tree's /files runs the scripts instead.
    """
    r = fetch(examplePort, "/assets" + target)
    assert r.status == 404, (target, r.status, r.body[:200])
    assert b"SECRET-SOURCE" not in r.body
    ran = fetch(examplePort, "/files/cgi-bin/s.sh")
    assert ran.status == 200 and ran.body == b"RAN\n"


def test_embedExampleStillServesFiles(examplePort: int) -> None:
    """
    Refusing the CGI directories refuses nothing else: other files, and a
    name that only starts like one.
    """
    assert fetch(examplePort, "/assets/a.txt").body == b"embedded\n"
    # The directory itself without its slash is only redirected, as any
    # directory is (CGI dispatch leaves it to the static half too).
    r = fetch(examplePort, "/assets/cgi-bin")
    assert (r.status, r.header("Location")) == (301, "/assets/cgi-bin/")


def test_rootRunsScriptsAndHidesTheirSource(
    serve: Callable[..., Server], scriptTree: Path
) -> None:
    """
    The root resource twistd serves hands its CGI directories down to its
    static half: scripts still run, the directory is still refused (403,
    as http.server does), and a case variant, which a case-insensitive file
    system would open as the script's file, is not found rather than sent.
    """
    server = serve(scriptTree)
    ran = fetch(server.port, "/cgi-bin/s.sh")
    assert (ran.status, ran.body) == (200, b"RAN\n")
    assert fetch(server.port, "/htbin/s.sh").body == b"RAN\n"
    assert fetch(server.port, "/cgi-bin/").status == 403
    for target in ("/CGI-BIN/s.sh", "/Cgi-Bin/", "/HTBIN/s.sh"):
        r = fetch(server.port, target)
        assert r.status == 404, target
        assert b"SECRET-SOURCE" not in r.body


def test_noCgiRootServesCGIDirectoriesAsFiles(
    serve: Callable[..., Server], scriptTree: Path
) -> None:
    """
    With --no-cgi the CGI directories are plain directories, as before: the
    static half refuses nothing.
    """
    server = serve(scriptTree, ["--no-cgi"])
    r = fetch(server.port, "/cgi-bin/s.sh")
    assert (r.status, r.body) == (200, SCRIPT)
    listing = fetch(server.port, "/htbin/")
    assert listing.status == 200 and b'href="s.sh"' in listing.body


@pytest.mark.parametrize(
    ("method", "target", "status"),
    [
        ("PUT", "/%00", 501),
        ("PUT", "/a%00.txt", 501),
        ("DELETE", "/a.txt", 501),
        ("POST", "/%00", 501),
        ("POST", "/cgi-bin/%00", 501),
        ("GET", "/%00", 400),
        ("HEAD", "/a%00.txt", 400),
    ],
)
def test_embedExampleEntryPointsAgreeOnMethods(
    examplePort: int, method: str, target: str, status: int
) -> None:
    """
    The whole tree (/files) and the static half (/assets) check the method
    before the path: outside the CGI directories, a method static files do
    not support is a 501 even where the path is malformed, and only a GET or
    HEAD gets the malformed path's 400.
    """
    for mount in ("/files", "/assets"):
        r = fetch(examplePort, mount + target, method)
        assert r.status == status, (mount, method, target, r.status, r.reason)
