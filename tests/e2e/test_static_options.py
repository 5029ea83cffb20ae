"""
End-to-end tests of the static options (C{--index}, C{--no-listing},
C{--mime-type}) and of the CGI guide's recipes for scripts that imported the
removed C{cgi} module: the real C{twistd -n cgiserve} on loopback, driven
with curl.
"""

from __future__ import annotations

import hashlib
import os
import re
import shutil
import subprocess
import sys
import tempfile
from collections.abc import Callable, Iterator
from dataclasses import dataclass
from pathlib import Path

import pytest

from tests.support.checkout import ROOT
from tests.support.pages import errorPage
from tests.support.server import (
    Server,
    makeDocroot,
    runTwistd,
    sharedServer,
    startServer,
    staysHealthy,
)

pytestmark = pytest.mark.e2e

NOT_FOUND_PAGE = errorPage(404, "File not found", "Nothing matches the given URI")
SCRIPT_PATH = "/usr/local/bin:/usr/bin:/bin"


@dataclass
class Reply:
    status: int
    headers: dict[str, str]
    body: bytes


def curl(*args: str) -> Reply:
    """
    Run curl, the response's head included (C{-i}), and split its answer.
    With C{-I} the request is a HEAD.
    """
    result = subprocess.run(
        ["curl", "-sS", "--max-time", "10", "-i", *args],
        capture_output=True,
        timeout=20,
    )
    assert result.returncode == 0, result.stderr
    head, _, body = result.stdout.partition(b"\r\n\r\n")
    lines = head.decode("latin-1").split("\r\n")
    status = int(lines[0].split()[1])
    headers = {}
    for line in lines[1:]:
        name, _, value = line.partition(":")
        headers[name.strip().lower()] = value.strip()
    return Reply(status, headers, body)


def contentType(server: Server, path: str) -> str:
    """
    The C{Content-Type} C{curl -I} reports for C{path}, which must be found.
    """
    reply = curl("-I", server.url(path))
    assert reply.status == 200, reply
    return reply.headers["content-type"]


# --------------------------------------------------------------------------
# The static options.


@pytest.fixture(scope="module")
def tree() -> Iterator[Path]:
    """
    Directories with every combination of index files, and files whose
    types the tests set.
    """
    root = makeDocroot("cgiserve-static-options-")
    files = {
        "a.md": b"# a\n",
        "B.MD": b"# B\n",
        "c.Md": b"# c\n",
        "x.tar.gz": b"\x1f\x8b not really\n",
        "a.txt": b"a text\n",
        "a.css": b"p {}\n",
        "a.cast": b"0123456789",
        "both/home.html": b"home of both\n",
        "both/index.html": b"index.html of both\n",
        "both/index.htm": b"index.htm of both\n",
        "onlyindex/index.html": b"index.html of onlyindex\n",
        "onlyhtm/index.htm": b"index.htm of onlyhtm\n",
        "dirindex/index.html": b"index.html of dirindex\n",
        "readme/README.md": b"# the readme\n",
        "none/f.txt": b"f\n",
    }
    for name, data in files.items():
        path = root / name
        path.parent.mkdir(parents=True, exist_ok=True)
        path.write_bytes(data)
    # A directory named like an index file is no index file.
    (root / "dirindex" / "home.html").mkdir()
    (root / "dirindex" / "home.html" / "x").write_bytes(b"x\n")
    try:
        yield root
    finally:
        shutil.rmtree(root)


@pytest.fixture(scope="module")
def configured(
    tree: Path, tmp_path_factory: pytest.TempPathFactory
) -> Iterator[Server]:
    """
    A server with its own index names and content types.
    """
    args = [
        "--index",
        "home.html",
        "--index",
        "index.html",
        "--index",
        "README.md",
        "--mime-type",
        ".md=text/x-markdown",
        "--mime-type",
        ".gz=application/x-gzip",
        "--mime-type",
        ".TXT=text/x-special",
        "--mime-type",
        ".cast=application/x-asciicast",
    ]
    logs = tmp_path_factory.mktemp("configured")
    with sharedServer(startServer(tree, args, logDir=logs)) as server:
        yield server


@pytest.fixture(scope="module")
def defaults(tree: Path, tmp_path_factory: pytest.TempPathFactory) -> Iterator[Server]:
    """
    The same tree with no option: http.server's behaviour.
    """
    logs = tmp_path_factory.mktemp("defaults")
    with sharedServer(startServer(tree, [], logDir=logs)) as server:
        yield server


@pytest.fixture(scope="module")
def unlisted(tree: Path, tmp_path_factory: pytest.TempPathFactory) -> Iterator[Server]:
    """
    The same tree with C{--no-listing}.
    """
    logs = tmp_path_factory.mktemp("unlisted")
    with sharedServer(startServer(tree, ["--no-listing"], logDir=logs)) as server:
        yield server


def test_indexNamesInOrder(configured: Server) -> None:
    """
    C{--index} names are tried in the order given: the first that is a
    file is served; a missing one (or a directory of that name) falls back
    to the next; the defaults are replaced, so C{index.htm} is no longer
    tried and a directory with only that file is listed.
    """
    with staysHealthy(configured):
        for path, body in [
            ("/both/", b"home of both\n"),
            ("/onlyindex/", b"index.html of onlyindex\n"),
            ("/dirindex/", b"index.html of dirindex\n"),
            ("/readme/", b"# the readme\n"),
        ]:
            reply = curl(configured.url(path))
            assert (reply.status, reply.body) == (200, body), path
        listing = curl(configured.url("/onlyhtm/"))
        assert listing.status == 200
        assert b"Directory listing for /onlyhtm/" in listing.body
        assert b'href="index.htm"' in listing.body
        # A directory without its slash is still redirected first.
        redirect = curl(configured.url("/both"))
        assert (redirect.status, redirect.headers["location"]) == (301, "/both/")


def test_defaultIndexNames(defaults: Server) -> None:
    """
    Without C{--index}: http.server's C{index.html}, then C{index.htm}.
    """
    with staysHealthy(defaults):
        assert curl(defaults.url("/both/")).body == b"index.html of both\n"
        assert curl(defaults.url("/onlyhtm/")).body == b"index.htm of onlyhtm\n"
        assert curl(defaults.url("/readme/")).status == 200
        assert b"Directory listing" in curl(defaults.url("/readme/")).body


def test_noListing(unlisted: Server) -> None:
    """
    With C{--no-listing}, a directory without an index file is C{404 File
    not found}, the very page a missing path gets (so the answer does not
    tell a directory from nothing), for GET and HEAD; index files, files and
    the slash-adding redirect are unchanged.
    """
    with staysHealthy(unlisted):
        missing = curl(unlisted.url("/no-such-directory/"))
        assert (missing.status, missing.body) == (404, NOT_FOUND_PAGE)
        for path in ("/none/", "/", "/dirindex/home.html/"):
            reply = curl(unlisted.url(path))
            assert (reply.status, reply.body) == (404, NOT_FOUND_PAGE), path
            assert reply.headers["content-type"] == missing.headers["content-type"]
            head = curl("-I", unlisted.url(path))
            assert head.status == 404, path
        assert curl(unlisted.url("/both/")).body == b"index.html of both\n"
        assert curl(unlisted.url("/onlyhtm/")).body == b"index.htm of onlyhtm\n"
        assert curl(unlisted.url("/none/f.txt")).body == b"f\n"
        redirect = curl(unlisted.url("/none"))
        assert (redirect.status, redirect.headers["location"]) == (301, "/none/")


def test_listingByDefault(defaults: Server) -> None:
    """
    The control for L{test_noListing}: without the option the same
    directory is listed.
    """
    with staysHealthy(defaults):
        reply = curl(defaults.url("/none/"))
        assert reply.status == 200
        assert b'<a href="f.txt">f.txt</a>' in reply.body


def test_mimeTypes(configured: Server) -> None:
    """
    C{--mime-type} sets the type of files with that extension, matched
    regardless of case (C{.TXT} covers C{a.txt}, C{.md} covers C{B.MD}),
    and by the last extension only (C{.gz} covers C{x.tar.gz}); index files
    get theirs too, and other extensions keep http.server's.
    """
    with staysHealthy(configured):
        assert contentType(configured, "/a.md") == "text/x-markdown"
        assert contentType(configured, "/B.MD") == "text/x-markdown"
        assert contentType(configured, "/c.Md") == "text/x-markdown"
        assert contentType(configured, "/x.tar.gz") == "application/x-gzip"
        assert contentType(configured, "/a.txt") == "text/x-special"
        assert contentType(configured, "/a.cast") == "application/x-asciicast"
        assert contentType(configured, "/a.css") == "text/css"
        assert contentType(configured, "/readme/") == "text/x-markdown"
        # GET agrees with HEAD.
        reply = curl(configured.url("/a.md"))
        assert reply.headers["content-type"] == "text/x-markdown"
        assert reply.body == b"# a\n"


def test_mimeTypesWithoutTheOption(defaults: Server) -> None:
    """
    The control for L{test_mimeTypes}: without the option, http.server's
    types (and never the ones another server was given).
    """
    with staysHealthy(defaults):
        assert contentType(defaults, "/x.tar.gz") == "application/gzip"
        assert contentType(defaults, "/a.txt") == "text/plain"
        assert contentType(defaults, "/a.cast") == "application/octet-stream"
        assert contentType(defaults, "/a.md") != "text/x-markdown"


def test_mimeTypeInRanges(configured: Server) -> None:
    """
    The parts of a multi-range response carry the configured type.
    """
    with staysHealthy(configured):
        reply = curl("-r", "0-1,5-6", configured.url("/a.cast"))
        assert reply.status == 206
        assert reply.headers["content-type"].startswith("multipart/byteranges")
        assert reply.body.count(b"Content-Type: application/x-asciicast\r\n") == 2


@pytest.mark.parametrize(
    "value",
    [
        ".md",
        "md=text/markdown",
        ".tar.gz=application/gzip",
        ".md=markdown",
        ".md=text/mark down",
        "=text/markdown",
        ".md=text/markdown\r\nX-Injected: yes",
    ],
)
def test_badMimeType(value: str, tmp_path: Path) -> None:
    """
    A malformed C{--mime-type} is one line on standard error and exit
    status 2; a compound extension is refused, not silently never matched.
    """
    result = runTwistd(["--mime-type", value, "--port", "tcp:0"], tmp_path)
    assert result.returncode == 2, result
    assert "--mime-type" in result.stderr or "MIME type" in result.stderr
    assert len(result.stderr.strip().splitlines()) == 1, result.stderr
    assert "Traceback" not in result.stderr


@pytest.mark.parametrize("name", ["../outside.txt", "sub/index.html", "..", ""])
def test_badIndexName(name: str, tmp_path: Path) -> None:
    """
    An index name is a file name: one with a slash, C{..} or nothing would
    be joined to a directory's path and could name a file outside the
    served tree; refused with the options, one line and exit status 2
    (before the access log, which cannot be opened here, would end the
    server with exit status 1).
    """
    result = runTwistd(
        ["--index", name, "--access-log", "/nonexistent/cgiserve/access.log"],
        tmp_path,
    )
    assert result.returncode == 2, result
    assert "--index" in result.stderr or "index" in result.stderr, result
    assert len(result.stderr.strip().splitlines()) == 1, result.stderr


def test_indexNeverServesAScript(serve: Callable[..., Server]) -> None:
    """
    An index name that is a script (C{--index index.cgi} with C{--cgi-ext
    .cgi}) never hands out the script's source as the directory's index.
    """
    root = makeDocroot("cgiserve-index-script-")
    try:
        source = b"#!/bin/sh\necho 'Content-Type: text/plain'\necho\necho ran\n"
        script = root / "app" / "index.cgi"
        script.parent.mkdir(mode=0o755)
        script.write_bytes(source)
        script.chmod(0o755)
        server = serve(root, ["--index", "index.cgi", "--cgi-ext", ".cgi"])
        with staysHealthy(server):
            reply = curl(server.url("/app/"))
            assert source not in reply.body, reply
            assert b"#!/bin/sh" not in reply.body, reply
    finally:
        shutil.rmtree(root)


# --------------------------------------------------------------------------
# The CGI guide's recipes for scripts that imported cgi.

GUIDE = ROOT / "docs" / "cgi.md"
RECIPES = {
    "legacy": "#### `legacy-cgi`",
    "multipart": "#### `multipart`",
    "stdlib": "#### The standard library alone",
}
PACKAGES = {"legacy": "legacy-cgi", "multipart": "multipart"}


def _recipe(heading: str) -> str:
    """
    The first Python block after C{heading} in the CGI guide.
    """
    section = GUIDE.read_text().split(heading, 1)[1]
    match = re.search(r"```python\n(.*?)```", section, re.DOTALL)
    assert match, f"no Python block after {heading}"
    return match.group(1)


@dataclass
class Recipes:
    server: Server
    packages: Path | None
    whyNoPackages: str
    uploads: Path


def _installPackages(target: Path) -> str:
    """
    Install the recipes' PyPI packages into C{target}, for the scripts'
    C{PYTHONPATH}; return why not when that is impossible here.
    """
    try:
        result = subprocess.run(
            [
                sys.executable,
                "-m",
                "pip",
                "install",
                "--quiet",
                "--no-deps",
                "--disable-pip-version-check",
                "--target",
                str(target),
                *PACKAGES.values(),
            ],
            capture_output=True,
            text=True,
            timeout=180,
        )
    except (OSError, subprocess.TimeoutExpired) as e:
        return f"pip could not run: {e}"
    if result.returncode != 0:
        lines = result.stderr.strip().splitlines() or ["no output"]
        return f"pip cannot install {' '.join(PACKAGES.values())} here: {lines[-1]}"
    for path in [target, *target.rglob("*")]:
        path.chmod(0o755 if path.is_dir() else 0o644)
    return ""


@pytest.fixture(scope="module")
def recipes(tmp_path_factory: pytest.TempPathFactory) -> Iterator[Recipes]:
    """
    The guide's three scripts in a CGI directory, the PyPI packages two of
    them need on their C{PYTHONPATH} (when pip can install them here), and
    files to upload.
    """
    if shutil.which("python3", path=SCRIPT_PATH) is None:
        pytest.skip("no python3 on the PATH scripts get")
    if shutil.which("curl") is None:
        pytest.skip("curl is not installed")
    # World-traversable: as root, scripts run as nobody.
    root = makeDocroot("cgiserve-recipes-")
    packages: Path | None = Path(tempfile.mkdtemp(prefix="cgiserve-pkgs-", dir="/tmp"))
    assert packages is not None
    try:
        packages.chmod(0o755)
        why = _installPackages(packages)
        if why:
            shutil.rmtree(packages)
            packages = None
        (root / "cgi-bin").mkdir(mode=0o755)
        for name, heading in RECIPES.items():
            script = root / "cgi-bin" / f"form_{name}.py"
            script.write_text(_recipe(heading))
            script.chmod(0o755)
        uploads = tmp_path_factory.mktemp("uploads")
        (uploads / "notes.txt").write_bytes(b"line one\r\nline two\nlast, no end")
        blob = os.urandom(70_000) + b"\r\n--boundary\r\n\r\n" + bytes(range(256))
        (uploads / "blob.bin").write_bytes(blob)
        args = []
        if packages is not None:
            args = ["--cgi-set-env", f"PYTHONPATH={packages}"]
        logs = tmp_path_factory.mktemp("recipes")
        with sharedServer(startServer(root, args, logDir=logs)) as server:
            yield Recipes(server, packages, why, uploads)
    finally:
        shutil.rmtree(root)
        if packages is not None:
            shutil.rmtree(packages, ignore_errors=True)


def _described(path: Path) -> bytes:
    """
    The line the recipes print for an uploaded file.
    """
    data = path.read_bytes()
    digest = hashlib.sha256(data).hexdigest()
    return f"{path.name}: {len(data)} bytes, sha256 {digest}\n".encode()


@pytest.mark.parametrize("name", list(RECIPES))
def test_recipe(name: str, recipes: Recipes) -> None:
    """
    Each recipe answers the guide's curl commands: a query, a urlencoded
    POST, multipart uploads of a text file and of binary data (whose
    bytes, CRs and a boundary-like line included, arrive unchanged), and
    the same upload sent chunked.
    """
    if name in PACKAGES and recipes.packages is None:
        pytest.skip(recipes.whyNoPackages)
    server = recipes.server
    url = server.url(f"/cgi-bin/form_{name}.py")
    notes = recipes.uploads / "notes.txt"
    blob = recipes.uploads / "blob.bin"
    with staysHealthy(server):
        for args, expected in [
            ([url + "?name=Ada"], b"Hello, Ada!\n"),
            ([url], b"Hello, world!\n"),
            (["--data", "name=Grace", url], b"Hello, Grace!\n"),
            (
                ["-F", "name=Linus", "-F", f"upload=@{notes}", url],
                b"Hello, Linus!\n" + _described(notes),
            ),
            (
                ["-F", "name=Linus", "-F", f"upload=@{blob}", url],
                b"Hello, Linus!\n" + _described(blob),
            ),
            (
                [
                    "-H",
                    "Transfer-Encoding: chunked",
                    "-F",
                    "name=Chunked",
                    "-F",
                    f"upload=@{blob}",
                    url,
                ],
                b"Hello, Chunked!\n" + _described(blob),
            ),
        ]:
            reply = curl(*args)
            assert (reply.status, reply.body) == (200, expected), (
                args,
                server.log()[-3000:],
            )
            assert reply.headers["content-type"] == "text/plain; charset=utf-8"


def test_legacyCGIIsThePackage(recipes: Recipes) -> None:
    """
    The C{legacy-cgi} recipe runs the package's C{cgi} module, not a
    standard library one (Pythons before 3.13 still have it): the
    directory on C{PYTHONPATH} comes first.
    """
    if recipes.packages is None:
        pytest.skip(recipes.whyNoPackages)
    python3 = shutil.which("python3", path=SCRIPT_PATH)
    assert python3 is not None
    result = subprocess.run(
        [python3, "-c", "import cgi; print(cgi.__file__)"],
        env={"PATH": SCRIPT_PATH, "PYTHONPATH": str(recipes.packages)},
        capture_output=True,
        text=True,
        timeout=20,
    )
    assert result.stdout.startswith(str(recipes.packages)), result
