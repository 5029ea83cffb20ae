"""
End-to-end tests of the static-file half: the real C{twistd -n cgiserve}
process serving a directory, driven over loopback HTTP the way
C{python -m http.server} users drive it (CPython 3.14 behaviour where
versions differ), plus what a real server adds (validators, ranges).

One server and one document root are shared by the whole module: no test
here changes the tree.
"""

from __future__ import annotations

import email.utils
import hashlib
import html
import os
import random
import re
import shutil
import subprocess
import tempfile
import time
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path

import pytest
import requests

from tests.support.pages import errorPage, listingPage
from tests.support.raw import Conn, Response, fetch, request
from tests.support.server import (
    ENTRY_POINTS,
    Server,
    sharedServer,
    startServer,
    staysHealthy,
)

pytestmark = pytest.mark.e2e

TIMEOUT = 10.0

SECRET = b"TOP-SECRET-outside-the-document-root\n"
A_TXT = b"Hello from a.txt\n"
DIGITS = bytes(range(100))
CACHED_MTIME = 1_700_000_000  # Tue, 14 Nov 2023 22:13:20 GMT
BIG_SIZE = 20 * 1024 * 1024


NOT_FOUND_PAGE = errorPage(404, "File not found", "Nothing matches the given URI")


def listingEntries(body: bytes) -> list[tuple[bytes, bytes]]:
    """
    The (href, display) pairs of a listing page.
    """
    return re.findall(rb'<li><a href="([^"]*)">(.*?)</a></li>', body)


# --------------------------------------------------------------------------
# The shared tree and server.


def _write(path: Path, data: bytes, mtime: float | None = None) -> None:
    path.write_bytes(data)
    if mtime is not None:
        os.utime(path, (mtime, mtime))


@dataclass
class Tree:
    base: Path
    root: Path
    big: bytes
    hundredK: bytes


@pytest.fixture(scope="module")
def tree(tmp_path_factory: pytest.TempPathFactory) -> Tree:
    """
    A document root with everything the tests below ask for, next to
    secret files that must never be served.
    """
    base = tmp_path_factory.mktemp("static")
    # Outside the root: every traversal attempt aims at these.
    _write(base / "passwd", SECRET)
    (base / "secret").mkdir()
    _write(base / "secret" / "passwd", SECRET)
    (base / "etc").mkdir()
    _write(base / "etc" / "passwd", SECRET)

    root = base / "root"
    root.mkdir()
    _write(root / "a.txt", A_TXT)
    _write(root / "page.html", b"<p>page</p>\n")
    _write(root / "script.py", b"print('not run')\n")
    _write(root / "noext", b"no extension\n")
    for name in ("data.gz", "data.tar.gz", "DATA.GZ", "data.bz2", "data.xz", "data.Z"):
        _write(root / name, b"\x1f\x8b compressed-looking bytes " + name.encode())
    _write(root / "café.txt", b"cafe with an accent\n")
    _write(root / "a b.txt", b"a space in the name\n")
    _write(root / "cached.txt", b"cache me\n", CACHED_MTIME)
    _write(root / "digits.bin", DIGITS, CACHED_MTIME)
    rng = random.Random(1234)
    hundredK = rng.randbytes(100 * 1024)
    _write(root / "hundredk.bin", hundredK)
    big = os.urandom(BIG_SIZE)
    _write(root / "big.bin", big)
    os.symlink("a.txt", root / "link.txt")
    _write(root / "unreadable.txt", b"you cannot read me\n")
    os.chmod(root / "unreadable.txt", 0)

    (root / "sub").mkdir()
    _write(root / "sub" / "inner.txt", b"inner\n")
    (root / "emptydir").mkdir()

    (root / "withindex").mkdir()
    _write(root / "withindex" / "index.html", b"<p>the index.html</p>\n")
    _write(root / "withindex" / "index.htm", b"<p>the index.htm</p>\n")
    _write(root / "withindex" / "other.txt", b"other\n")
    (root / "htmonly").mkdir()
    _write(root / "htmonly" / "index.htm", b"<p>only index.htm</p>\n")
    (root / "dirindex").mkdir()
    (root / "dirindex" / "index.html").mkdir()
    _write(root / "dirindex" / "x.txt", b"x\n")

    # A small directory whose listing is compared byte for byte.
    listing = root / "listing"
    listing.mkdir()
    _write(listing / ".hidden", b"hidden\n")
    _write(listing / "a.txt", b"a\n")
    _write(listing / "B.txt", b"B\n")
    (listing / "c-dir").mkdir()
    os.symlink("a.txt", listing / "d-link.txt")
    os.symlink("c-dir", listing / "E-dirlink")

    # Names that need quoting in links and escaping in text.
    names = root / "names"
    names.mkdir()
    for name in NAMES:
        _write(names / name, name.encode("utf-8") + b" content\n")
    fd = os.open(
        os.fsencode(names) + b"/" + UNDECODABLE, os.O_CREAT | os.O_WRONLY, 0o644
    )
    os.write(fd, b"undecodable content\n")
    os.close(fd)
    (root / "<b>&dir").mkdir()
    (root / "ünï-dir").mkdir()
    _write(root / "ünï-dir" / "f.txt", b"f\n")

    (root / "special").mkdir()
    os.mkfifo(root / "special" / "pipe")
    return Tree(base, root, big, hundredK)


# Names in names/: (name, expected href, expected display text).
NAMES_EXPECTED = [
    ("a b.txt", "a%20b.txt", "a b.txt"),
    ("<test&>.txt", "%3Ctest%26%3E.txt", "&lt;test&amp;&gt;.txt"),
    ("h#sh.txt", "h%23sh.txt", "h#sh.txt"),
    ("q?.txt", "q%3F.txt", "q?.txt"),
    ("pct%41.txt", "pct%2541.txt", "pct%41.txt"),
    ("ünï.txt", "%C3%BCn%C3%AF.txt", "ünï.txt"),
    ('"dq".txt', "%22dq%22.txt", '"dq".txt'),
    ("co:lon.txt", "co%3Alon.txt", "co:lon.txt"),
]
NAMES = [name for name, _, _ in NAMES_EXPECTED]
UNDECODABLE = b"bad-\xff\xfe.bin"
UNDECODABLE_HREF = "bad-%ED%B3%BF%ED%B3%BE.bin"


@pytest.fixture(scope="module", params=ENTRY_POINTS)
def server(tree: Tree, request: pytest.FixtureRequest) -> Iterator[Server]:
    """
    One server for the module, stopped at the end; its log must hold no
    traceback then either. Every test runs against C{twistd cgiserve} and
    against C{python -m twisted_cgiserve --cgi}, http.server's command line.
    """
    server = startServer(tree.root, logDir=tree.base, entryPoint=request.param)
    with sharedServer(server) as srv:
        yield srv


@pytest.fixture(scope="module")
def port(server: Server) -> int:
    return server.port


@pytest.fixture(autouse=True)
def _serverSurvives(request: pytest.FixtureRequest) -> Iterator[None]:
    """
    After each test that used the shared server, it still serves a file
    and logged no traceback for that test's requests.
    """
    if "server" not in request.fixturenames:
        yield
        return
    server: Server = request.getfixturevalue("server")
    with staysHealthy(server):
        yield
    assert fetch(server.port, "/a.txt").status == 200


def mtimeOf(path: Path) -> float:
    return os.stat(path).st_mtime


# --------------------------------------------------------------------------
# 1. Files


def test_getTextFile(port: int, tree: Tree) -> None:
    """
    GET of a file gives 200 with its bytes, text/plain (no charset added),
    its length, its mtime as Last-Modified, an ETag, Accept-Ranges: bytes
    and a Server header naming twisted-cgiserve.
    """
    r = fetch(port, "/a.txt")
    assert r.status == 200
    assert r.reason == b"OK"
    assert r.body == A_TXT
    assert r.header("Content-Type") == "text/plain"
    assert r.header("Content-Length") == str(len(A_TXT))
    assert r.header("Last-Modified") == email.utils.formatdate(
        mtimeOf(tree.root / "a.txt"), usegmt=True
    )
    etag = r.header("ETag")
    assert etag is not None and re.fullmatch(r'(W/)?"[^"]+"', etag)
    assert r.header("Accept-Ranges") == "bytes"
    assert (r.header("Server") or "").startswith("twisted-cgiserve/")
    assert r.header("Content-Encoding") is None


@pytest.mark.parametrize(
    "name, contentType",
    [
        ("a.txt", "text/plain"),
        ("page.html", "text/html"),
        ("script.py", "text/x-python"),
        ("noext", "application/octet-stream"),
    ],
)
def test_contentTypeFromMimetypes(port: int, name: str, contentType: str) -> None:
    """
    The Content-Type comes from the extension, as Python's mimetypes says;
    a file without an extension is application/octet-stream.
    """
    r = fetch(port, "/" + name)
    assert r.status == 200
    assert r.header("Content-Type") == contentType


@pytest.mark.parametrize(
    "name, contentType",
    [
        ("data.gz", "application/gzip"),
        ("data.tar.gz", "application/gzip"),
        ("DATA.GZ", "application/gzip"),
        ("data.bz2", "application/x-bzip2"),
        ("data.xz", "application/x-xz"),
        ("data.Z", "application/octet-stream"),
    ],
)
def test_compressedFilesAreServedAsThemselves(
    port: int, name: str, contentType: str
) -> None:
    """
    http.server's overrides: compressed archives are served with their own
    type and never with a Content-Encoding that would make a browser unpack
    the download.
    """
    r = fetch(port, "/" + name, headers={"Accept-Encoding": "gzip"})
    assert r.status == 200
    assert r.header("Content-Type") == contentType
    assert r.header("Content-Encoding") is None
    assert r.body == b"\x1f\x8b compressed-looking bytes " + name.encode()


def test_getWithRequests(server: Server) -> None:
    """
    An ordinary HTTP client fetches a file with the expected body and type.
    """
    r = requests.get(server.url("/a.txt"), timeout=TIMEOUT)
    assert r.status_code == 200
    assert r.content == A_TXT
    assert r.headers["Content-Type"] == "text/plain"


def test_symlinkToFileIsServed(port: int) -> None:
    """
    A symbolic link inside the root pointing at a file is served as that
    file (http.server does not refuse symlinks).
    """
    r = fetch(port, "/link.txt")
    assert r.status == 200
    assert r.body == A_TXT
    assert r.header("Content-Type") == "text/plain"


# --------------------------------------------------------------------------
# 3. Path translation


@pytest.mark.parametrize(
    "target",
    [
        "/a.txt?x=1",
        "/a.txt?x=1&y=%2F..%2F",
        "/a.txt#frag",
        "/a.txt#frag?x",
        "/a.txt?",
        "/%61.txt",
        "/sub/../a.txt",
        "/./a.txt",
        "/sub/./../a.txt",
        "//a.txt",
        "/sub%2f..%2fa.txt",
        "/nothere/../a.txt",
        "/../a.txt",
        "/%2e%2e/a.txt",
    ],
)
def test_pathVariantsServeTheFile(port: int, target: str) -> None:
    """
    The query and fragment are cut, the path is percent-decoded once, and
    dot segments and duplicate slashes are resolved; all these spellings
    name /a.txt.
    """
    r = fetch(port, target)
    assert r.status == 200, (target, r.status, r.reason)
    assert r.body == A_TXT


@pytest.mark.parametrize(
    "target, body",
    [
        ("/caf%C3%A9.txt", b"cafe with an accent\n"),
        ("/caf%c3%a9.txt", b"cafe with an accent\n"),
        ("/a%20b.txt", b"a space in the name\n"),
    ],
)
def test_percentDecodedNames(port: int, target: str, body: bytes) -> None:
    """
    Percent-escapes (UTF-8 for non-ASCII, either hex case) are decoded to
    the file name on disk.
    """
    r = fetch(port, target)
    assert r.status == 200
    assert r.body == body


TRAVERSALS = [
    "/../passwd",
    "/../../passwd",
    "/../secret/passwd",
    "/../../etc/passwd",
    "/../../../../../../../../etc/passwd",
    "/sub/../../secret/passwd",
    "/sub/../../../etc/passwd",
    "//../secret/passwd",
    "///../../etc/passwd",
    "/..%2fsecret%2fpasswd",
    "/..%2f..%2fetc%2fpasswd",
    "/..%2F..%2Fpasswd",
    "/%2e%2e/secret/passwd",
    "/%2E%2E/passwd",
    "/%2e%2e%2fsecret%2fpasswd",
    "/%2e%2e%2f%2e%2e%2fetc%2fpasswd",
    "/.%2e/secret/passwd",
    "/%2e./passwd",
    "/%252e%252e/secret/passwd",
    "/%252e%252e%252fpasswd",
    "/....//secret/passwd",
    "/....//....//etc/passwd",
    "/..\\secret\\passwd",
    "/..\\..\\etc\\passwd",
    "/..%5csecret%5cpasswd",
    "/..%5c..%5cetc%5cpasswd",
    "/sub/..%2f..%2f..%2fsecret/passwd",
    "/%c0%ae%c0%ae/secret/passwd",
    "/..;/secret/passwd",
    "/..%00/secret/passwd",
    "/../secret/passwd?x=1",
    "/../secret/passwd#frag",
    "http://127.0.0.1/../secret/passwd",
    "http://127.0.0.1/..%2f..%2fetc/passwd",
]


@pytest.mark.parametrize("target", TRAVERSALS)
def test_traversalNeverEscapesTheRoot(port: int, target: str) -> None:
    """
    However '..' is spelt (plain, percent-encoded, double-encoded,
    overlong UTF-8, backslashes, absolute form), a path can never reach the
    secret files next to the document root: the answer is a 404 (or a
    400), never the secret.
    """
    r = fetch(port, target)
    assert r.status in (400, 404), (target, r.status, r.reason)
    assert b"TOP-SECRET" not in r.body
    assert b"SECRET" not in r.body


def test_traversalSecretsExist(tree: Tree) -> None:
    """
    (Sanity for the traversal test.) The secret files the traversal
    attempts aim at do exist next to the root, so a 404 above means the
    server refused to go there.
    """
    assert (tree.root / ".." / "secret" / "passwd").read_bytes() == SECRET
    assert (tree.root / ".." / "passwd").read_bytes() == SECRET


# --------------------------------------------------------------------------
# 4. Directory redirects


def test_directoryWithoutSlashRedirects(port: int) -> None:
    """
    A directory asked for without its trailing slash gets a 301 to the
    same path plus '/', with an empty body (Content-Length: 0).
    """
    r = fetch(port, "/sub")
    assert r.status == 301
    assert r.header("Location") == "/sub/"
    assert r.header("Content-Length") == "0"
    assert r.body == b""


@pytest.mark.parametrize(
    "target, location",
    [
        ("/sub?x=1&y=2", "/sub/?x=1&y=2"),
        ("/sub?q=%2F%3C", "/sub/?q=%2F%3C"),
        ("/sub#frag", "/sub/#frag"),
        ("/s%75b", "/s%75b/"),
        ("/sub/../withindex", "/sub/../withindex/"),
    ],
)
def test_redirectKeepsRawTarget(port: int, target: str, location: str) -> None:
    """
    The Location of a directory redirect is the raw request target with a
    slash added to the path: percent-escapes, the query and the fragment
    are kept as sent.
    """
    r = fetch(port, target)
    assert r.status == 301
    assert r.header("Location") == location


@pytest.mark.parametrize(
    "target, location",
    [
        ("//sub", "/sub/"),
        ("///sub", "/sub/"),
        ("//evil.com/../sub", "/evil.com/../sub/"),
        ("///evil.com/../sub", "/evil.com/../sub/"),
        ("////evil.com/..%2fsub", "/evil.com/..%2fsub/"),
    ],
)
def test_redirectNeverStartsWithDoubleSlash(
    port: int, target: str, location: str
) -> None:
    """
    gh-87389: leading slashes are collapsed before the Location is built,
    so a redirect can never be the scheme-relative //evil.com/... that a
    browser would follow off-site.
    """
    r = fetch(port, target)
    assert r.status == 301
    got = r.header("Location")
    assert got == location
    assert not got.startswith("//")


def test_gh87389DomainInjection(port: int) -> None:
    """
    CPython's domain-injection regression test: a path that decodes to an
    existing directory through '..%2f' and CR/LF escapes gets a 301 whose
    Location is the same raw URL plus '/', with 1, 2 or 3 leading slashes,
    and never starting with '//'.
    """
    attack = "/python.org/..%2f..%2f..%2f..%2f..%2f../%0a%0d/../sub"
    for slashes in ("", "/", "//"):
        r = fetch(port, slashes + attack)
        assert r.status == 301, slashes
        location = r.header("Location")
        assert location == attack + "/"
        assert not location.startswith("//")
        assert "\r" not in location and "\n" not in location


def test_gh87389AbsoluteFormKeepsItsHost(port: int) -> None:
    """
    An absolute-form request target redirects within the same absolute URL
    (what CPython's test expects for https://pypi.org/...).
    """
    r = fetch(port, "https://pypi.org/python.org/..%2f..%2f../sub")
    assert r.status == 301
    assert r.header("Location") == "https://pypi.org/python.org/..%2f..%2f../sub/"


def test_directoryWithEscapedSlashIsListed(port: int) -> None:
    """
    3.14: '/sub%2f' counts as a trailing slash, so the directory is listed
    (not redirected to '/sub%2f/').
    """
    r = fetch(port, "/sub%2f")
    assert r.status == 200
    assert b"<title>Directory listing for /sub/</title>" in r.body


# --------------------------------------------------------------------------
# 5. Index files


def test_indexHtmlServed(port: int, tree: Tree) -> None:
    """
    A directory with index.html serves it (before index.htm), with the
    file's headers.
    """
    r = fetch(port, "/withindex/")
    assert r.status == 200
    assert r.body == b"<p>the index.html</p>\n"
    assert r.header("Content-Type") == "text/html"
    assert r.header("Last-Modified") == email.utils.formatdate(
        mtimeOf(tree.root / "withindex" / "index.html"), usegmt=True
    )


def test_indexHtmUsedWithoutIndexHtml(port: int) -> None:
    """
    Without index.html, index.htm is served.
    """
    r = fetch(port, "/htmonly/")
    assert r.status == 200
    assert r.body == b"<p>only index.htm</p>\n"


def test_indexHtmlDirectoryIsSkipped(port: int) -> None:
    """
    A directory named index.html is not an index file: the directory is
    listed, showing it as 'index.html/'.
    """
    r = fetch(port, "/dirindex/")
    assert r.status == 200
    assert r.header("Content-Type") == "text/html; charset=utf-8"
    assert listingEntries(r.body) == [
        (b"index.html/", b"index.html/"),
        (b"x.txt", b"x.txt"),
    ]


def test_indexFileIsFoundThroughQuery(port: int) -> None:
    """
    The query string does not stop the index file from being served.
    """
    r = fetch(port, "/withindex/?hi=2")
    assert r.status == 200
    assert r.body == b"<p>the index.html</p>\n"


# --------------------------------------------------------------------------
# 6. Listings


def test_listingExactBytes(port: int) -> None:
    """
    A small directory's listing is byte for byte http.server 3.14's page:
    dark-mode style block, case-insensitive order with dotfiles, '/' after
    directories (text and link), '@' after symlinks (text only; a link to a
    directory links with '/'), and text/html; charset=utf-8.
    """
    r = fetch(port, "/listing/")
    expected = listingPage(
        "/listing/",
        [
            (".hidden", ".hidden"),
            ("a.txt", "a.txt"),
            ("B.txt", "B.txt"),
            ("c-dir/", "c-dir/"),
            ("d-link.txt", "d-link.txt@"),
            ("E-dirlink/", "E-dirlink@"),
        ],
    )
    assert r.status == 200
    assert r.header("Content-Type") == "text/html; charset=utf-8"
    assert r.header("Content-Length") == str(len(expected))
    assert r.body == expected


def test_emptyListingExactBytes(port: int) -> None:
    """
    An empty directory is listed with an empty <ul>.
    """
    r = fetch(port, "/emptydir/")
    assert r.status == 200
    assert r.body == listingPage("/emptydir/", [])
    assert b"<ul>\n</ul>" in r.body


def test_listingHasNoValidators(port: int) -> None:
    """
    Listings carry no Last-Modified (as in http.server), so they are
    never answered with 304 from If-Modified-Since.
    """
    r = fetch(
        port,
        "/listing/",
        headers={
            "If-Modified-Since": email.utils.formatdate(time.time() + 3600, usegmt=True)
        },
    )
    assert r.status == 200
    assert r.header("Last-Modified") is None


def test_listingQuotesAndEscapesNames(port: int) -> None:
    """
    Each name's link is percent-quoted (space, '<', '&', '#', '?', '%',
    '"', ':' and non-ASCII as UTF-8) and its text HTML-escaped (quotes
    left alone), in case-insensitive order.
    """
    r = fetch(port, "/names/")
    assert r.status == 200
    onDisk = [(n, h.encode(), d.encode()) for n, h, d in NAMES_EXPECTED]
    onDisk.append((os.fsdecode(UNDECODABLE), UNDECODABLE_HREF.encode(), UNDECODABLE))
    onDisk.sort(key=lambda entry: entry[0].lower())
    assert listingEntries(r.body) == [(h, d) for _, h, d in onDisk]
    assert b"<test&>" not in r.body


@pytest.mark.parametrize("name, href, display", NAMES_EXPECTED)
def test_listedLinkFetchesTheFile(
    port: int, name: str, href: str, display: str
) -> None:
    """
    Following a listing's link fetches the file it names.
    """
    r = fetch(port, "/names/" + href)
    assert r.status == 200, (href, r.status)
    assert r.body == name.encode("utf-8") + b" content\n"


def test_undecodableNameListedAndFetchable(port: int) -> None:
    """
    A file whose name is not UTF-8 is listed with its raw bytes as text
    and a surrogate-escaped link, and the link fetches it.
    """
    listing = fetch(port, "/names/")
    assert (UNDECODABLE_HREF.encode(), UNDECODABLE) in listingEntries(listing.body)
    r = fetch(port, "/names/" + UNDECODABLE_HREF)
    assert r.status == 200
    assert r.body == b"undecodable content\n"


def test_listingTitleEscaped(port: int) -> None:
    """
    The title and heading show the decoded request path, HTML-escaped; the
    parent listing links the directory percent-quoted.
    """
    r = fetch(port, "/%3Cb%3E%26dir/")
    assert r.status == 200
    assert r.body == listingPage("/&lt;b&gt;&amp;dir/", [])
    root = fetch(port, "/")
    assert (b"%3Cb%3E%26dir/", b"&lt;b&gt;&amp;dir/") in listingEntries(root.body)


def test_listingTitleNonAscii(port: int) -> None:
    """
    A directory reached through UTF-8 escapes is titled with the decoded
    name.
    """
    r = fetch(port, "/%C3%BCn%C3%AF-dir/")
    assert r.status == 200
    assert r.body == listingPage("/ünï-dir/", [("f.txt", "f.txt")])


@pytest.mark.parametrize(
    "target",
    [
        b"/sub/?q=<b>",
        b"/sub/?q=%3Cb%3E",
        b"/sub/#frag",
        b"/sub/?x=%bb",
        b"/sub/?x=1#y",
    ],
)
def test_listingTitleOmitsQuery(port: int, target: bytes) -> None:
    """
    3.14 (gh-133889): the listing title shows only the path, never the
    query or fragment, so nothing from the query reaches the page.
    """
    r = fetch(port, target)
    assert r.status == 200
    assert r.body == listingPage("/sub/", [("inner.txt", "inner.txt")])


def test_listingRootCaseInsensitiveOrder(port: int) -> None:
    """
    The root listing is sorted case-insensitively with no directories-first
    grouping.
    """
    r = fetch(port, "/")
    assert r.status == 200
    displays = [d.decode("utf-8") for _, d in listingEntries(r.body)]
    names = [d.rstrip("/@") for d in displays]
    assert [html.unescape(n) for n in names] == sorted(
        (html.unescape(n) for n in names), key=str.lower
    )
    assert "DATA.GZ" in names and "data.bz2" in names
    assert "sub/" in displays and "link.txt@" in displays


# --------------------------------------------------------------------------
# 7. Not found


@pytest.mark.parametrize(
    "target",
    [
        "/nothere.txt",
        "/nothere/",
        "/a.txt/",
        "/a.txt%2f",
        "/a.txt%2F",
        "/a.txt/x",
        "/sub/nothere",
        "/special/pipe",
        "/%ff",
    ],
)
def test_notFound(port: int, target: str) -> None:
    """
    Missing files, files asked for with a trailing slash (also as %2f, the
    3.14 behaviour), paths through files and non-regular files all get
    http.server's 404 'File not found' page.
    """
    r = fetch(port, target)
    assert r.status == 404, target
    assert r.reason == b"File not found"
    assert r.header("Content-Type") == "text/html;charset=utf-8"
    assert r.header("Content-Length") == str(len(r.body))
    assert r.body == NOT_FOUND_PAGE


def test_notFoundPageContents(port: int) -> None:
    """
    The 404 page names the code, the message and the explanation the way
    scrapers of http.server's page expect.
    """
    r = fetch(port, "/nothere.txt")
    assert b"<p>Error code: 404</p>" in r.body
    assert b"<p>Message: File not found.</p>" in r.body
    assert (
        b"<p>Error code explanation: 404 - Nothing matches the given URI.</p>" in r.body
    )
    assert b":root {" in r.body and b"color-scheme: light dark;" in r.body


@pytest.fixture
def unprivileged(tmp_path: Path) -> Iterator[tuple[Server, Path]]:
    """
    A server that cannot read everything: the tests run as root in CI, and
    root reads any file, so as root the server drops to nobody through
    twistd's own --uid/--gid, serving a tree outside the (0700) pytest
    directory.
    """
    twistdArgs: list[str] = []
    root = Path(tempfile.mkdtemp(prefix="cgiserve-unpriv-"))
    try:
        root.chmod(0o755)
        (root / "readable.txt").write_text("ok\n")
        (root / "unreadable.txt").write_text("secret\n")
        (root / "unreadable.txt").chmod(0)
        (root / "locked").mkdir()
        (root / "locked").chmod(0)
        if os.geteuid() == 0:
            twistdArgs = ["--uid", "65534", "--gid", "65534"]
        server = startServer(root, logDir=tmp_path, twistdArgs=twistdArgs)
        try:
            if fetch(server.port, "/readable.txt").status != 200:
                pytest.skip(
                    "an unprivileged server cannot run here (the interpreter or "
                    f"its packages are not readable by uid 65534):\n{server.log()}"
                )
            yield server, root
        finally:
            server.stop()
    finally:
        (root / "locked").chmod(0o755)
        shutil.rmtree(root)


def test_unreadableFileNotFound(unprivileged: tuple[Server, Path]) -> None:
    """
    A file the server cannot read gets 404 'File not found' (no 403, as in
    http.server), and its bytes are never sent.
    """
    server, _root = unprivileged
    r = fetch(server.port, "/unreadable.txt")
    assert r.status == 404
    assert r.reason == b"File not found"
    assert b"secret" not in r.body


def test_unlistableDirectory(unprivileged: tuple[Server, Path]) -> None:
    """
    A directory the server cannot list gets 404 'No permission to list
    directory'.
    """
    server, _root = unprivileged
    r = fetch(server.port, "/locked/")
    assert r.status == 404
    assert r.reason == b"No permission to list directory"


def test_fifoDoesNotHang(port: int) -> None:
    """
    A FIFO in the tree is never opened for reading (which would block the
    server): 404 right away, and the server keeps serving.
    """
    r = fetch(port, "/special/pipe")
    assert r.status == 404
    assert fetch(port, "/a.txt").status == 200


# --------------------------------------------------------------------------
# 8. HEAD


@pytest.mark.parametrize(
    "target, status",
    [
        ("/a.txt", 200),
        ("/big.bin", 200),
        ("/sub", 301),
        ("/nothere.txt", 404),
        ("/listing/", 200),
        ("/withindex/", 200),
    ],
)
def test_headMatchesGet(port: int, target: str, status: int) -> None:
    """
    HEAD gives the same status and headers as GET (except Date), including
    Content-Length, and no body.
    """
    get = fetch(port, target)
    with Conn(port) as conn:
        conn.send(request(port, target, "HEAD", close=False))
        head = conn.readResponse("HEAD")
        # Nothing follows the head: a second request's response comes next.
        conn.send(request(port, "/a.txt"))
        after = conn.readResponse()
    assert get.status == head.status == status
    assert head.reason == get.reason
    assert head.headerDict(skip=("date", "connection")) == get.headerDict(
        skip=("date", "connection")
    )
    assert after.status == 200 and after.body == A_TXT


# --------------------------------------------------------------------------
# 9. If-Modified-Since


def _ims(offset: float) -> str:
    return email.utils.formatdate(CACHED_MTIME + offset, usegmt=True)


@pytest.mark.parametrize("offset", [0, 3600])
def test_ifModifiedSinceNotModified(port: int, offset: float) -> None:
    """
    If-Modified-Since equal to or later than the mtime gets 304 with no
    body.
    """
    r = fetch(port, "/cached.txt", headers={"If-Modified-Since": _ims(offset)})
    assert r.status == 304
    assert r.body == b""
    assert r.header("Content-Type") is None


def test_notModifiedHasNoBodyOnTheWire(port: int) -> None:
    """
    A 304 sends no body bytes at all: the next response on the same
    connection follows immediately.
    """
    with Conn(port) as conn:
        conn.send(
            request(
                port, "/cached.txt", headers={"If-Modified-Since": _ims(0)}, close=False
            )
            + request(port, "/a.txt")
        )
        first = conn.readResponse()
        second = conn.readResponse()
    assert first.status == 304
    assert second.status == 200
    assert second.body == A_TXT


@pytest.mark.parametrize(
    "value",
    [
        _ims(-365 * 24 * 3600),
        _ims(-1),
        "not a date",
        "",
        "Tue, 14 Nov 2099 22:13:20 +0100",
        email.utils.formatdate(CACHED_MTIME + 3600, localtime=False).replace(
            "-0000", "+0100"
        ),
    ],
)
def test_ifModifiedSinceModified(port: int, value: str) -> None:
    """
    An older date gets the full 200; a garbage date, and a date with a
    non-UTC offset (even far in the future), are ignored as http.server
    ignores them.
    """
    r = fetch(port, "/cached.txt", headers={"If-Modified-Since": value})
    assert r.status == 200
    assert r.body == b"cache me\n"


@pytest.mark.parametrize(
    "value",
    [
        "Tuesday, 14-Nov-23 22:13:20 GMT",
        "Tue Nov 14 22:13:20 2023",
        "Tue, 14 Nov 2023 22:13:20 +0000",
        "Tue, 14 Nov 2023 22:13:20 -0000",
    ],
)
def test_ifModifiedSinceOtherFormats(port: int, value: str) -> None:
    """
    RFC 850 and asctime dates, and explicit UTC offsets, are understood.
    """
    r = fetch(port, "/cached.txt", headers={"If-Modified-Since": value})
    assert r.status == 304


def test_ifModifiedSinceIgnoredWithIfNoneMatch(port: int) -> None:
    """
    With If-None-Match present, If-Modified-Since is ignored: a
    non-matching tag and a matching date give 200.
    """
    r = fetch(
        port,
        "/cached.txt",
        headers={"If-None-Match": '"not-the-tag"', "If-Modified-Since": _ims(3600)},
    )
    assert r.status == 200
    assert r.body == b"cache me\n"


def test_ifModifiedSinceOnIndexFile(port: int, tree: Tree) -> None:
    """
    If-Modified-Since applies to an index file served for a directory.
    """
    mtime = mtimeOf(tree.root / "withindex" / "index.html")
    r = fetch(
        port,
        "/withindex/",
        headers={"If-Modified-Since": email.utils.formatdate(mtime + 60, usegmt=True)},
    )
    assert r.status == 304


# --------------------------------------------------------------------------
# 10. ETag


def _etag(port: int, target: str = "/cached.txt") -> str:
    etag = fetch(port, target, "HEAD").header("ETag")
    assert etag
    return etag


def test_etagIsStable(port: int) -> None:
    """
    The same unchanged file gets the same ETag on every request, and
    different files get different tags.
    """
    assert _etag(port) == _etag(port)
    assert _etag(port) != _etag(port, "/a.txt")


def test_ifNoneMatchSameTag(port: int, tree: Tree) -> None:
    """
    If-None-Match with the current ETag gets 304, which repeats the ETag
    and sends no body.
    """
    etag = _etag(port)
    r = fetch(port, "/cached.txt", headers={"If-None-Match": etag})
    assert r.status == 304
    assert r.header("ETag") == etag
    assert r.body == b""


@pytest.mark.parametrize("form", ["W/{}", '"other", {}', "*", "{}, W/{}"])
def test_ifNoneMatchWeakAndListForms(port: int, form: str) -> None:
    """
    If-None-Match uses weak comparison: the W/ form of the tag, the tag in
    a list, and '*' all give 304.
    """
    etag = _etag(port)
    r = fetch(port, "/cached.txt", headers={"If-None-Match": form.format(etag, etag)})
    assert r.status == 304


def test_ifNoneMatchOtherTag(port: int) -> None:
    """
    If-None-Match with a different tag gets the full 200.
    """
    r = fetch(port, "/cached.txt", headers={"If-None-Match": '"something-else"'})
    assert r.status == 200
    assert r.body == b"cache me\n"


def test_ifMatchWrongTag(port: int) -> None:
    """
    If-Match with a tag that is not the file's gets 412 Precondition
    Failed, with an error page instead of the file.
    """
    r = fetch(port, "/cached.txt", headers={"If-Match": '"wrong"'})
    assert r.status == 412
    assert b"cache me" not in r.body
    assert b"<p>Error code: 412</p>" in r.body
    assert r.header("Content-Length") == str(len(r.body))


def test_ifMatchRightTag(port: int) -> None:
    """
    If-Match with the file's tag (or '*') serves the file.
    """
    etag = _etag(port)
    for value in (etag, "*", f'"x", {etag}'):
        r = fetch(port, "/cached.txt", headers={"If-Match": value})
        assert r.status == 200, value
        assert r.body == b"cache me\n"


def test_ifMatchWeakTagFails(port: int) -> None:
    """
    If-Match uses strong comparison: the W/ form of the tag does not match.
    """
    r = fetch(port, "/cached.txt", headers={"If-Match": "W/" + _etag(port)})
    assert r.status == 412


def test_ifUnmodifiedSince(port: int) -> None:
    """
    If-Unmodified-Since before the mtime gets 412; at or after it, 200.
    """
    assert (
        fetch(port, "/cached.txt", headers={"If-Unmodified-Since": _ims(-3600)}).status
        == 412
    )
    assert (
        fetch(port, "/cached.txt", headers={"If-Unmodified-Since": _ims(0)}).status
        == 200
    )


# --------------------------------------------------------------------------
# 11. Range


def _range(
    port: int, value: str, target: str = "/digits.bin", **headers: str
) -> Response:
    return fetch(port, target, headers={"Range": value, **headers})


@pytest.mark.parametrize(
    "value, first, last",
    [
        ("bytes=0-3", 0, 3),
        ("bytes=5-", 5, 99),
        ("bytes=-3", 97, 99),
        ("bytes=10-10", 10, 10),
        ("bytes=90-1000", 90, 99),
        ("bytes=-1000", 0, 99),
        ("bytes=-100", 0, 99),
        ("bytes = 0-3", 0, 3),
        ("BYTES=0-3", 0, 3),
    ],
)
def test_singleRange(port: int, value: str, first: int, last: int) -> None:
    """
    A single satisfiable range gets 206 with exactly those bytes and
    Content-Range 'bytes first-last/size'; a suffix longer than the file is
    the whole file (never a 500 or a negative seek).
    """
    r = _range(port, value)
    assert r.status == 206, (value, r.status)
    assert r.header("Content-Range") == f"bytes {first}-{last}/100"
    assert r.header("Content-Length") == str(last - first + 1)
    assert r.body == DIGITS[first : last + 1]
    assert r.header("Content-Type") == "application/octet-stream"


@pytest.mark.parametrize(
    "value", ["bytes=1000-", "bytes=100-200", "bytes=-0", "bytes=100-"]
)
def test_unsatisfiableRange(port: int, value: str) -> None:
    """
    A range entirely past the end gets 416 with 'Content-Range: bytes */size'
    and no part of the file.
    """
    r = _range(port, value)
    assert r.status == 416
    assert r.header("Content-Range") == "bytes */100"
    assert DIGITS not in r.body


@pytest.mark.parametrize(
    "value",
    [
        "bytes=5-1",
        "items=0-1",
        "bytes=a-b",
        "bytes=",
        "bytes=-",
        "0-3",
        "bytes=1-2-3",
        "bytes=--1",
    ],
)
def test_malformedRangeIgnored(port: int, value: str) -> None:
    """
    A malformed Range header (or another unit) is ignored: 200 with the
    whole file.
    """
    r = _range(port, value)
    assert r.status == 200, value
    assert r.body == DIGITS
    assert r.header("Content-Range") is None


def parseMultipart(r: Response) -> list[tuple[str, str, bytes]]:
    """
    The parts of a multipart/byteranges body: (Content-Type,
    Content-Range, bytes), reading each part by its Content-Range length.
    """
    contentType = r.header("Content-Type") or ""
    match = re.fullmatch(r'multipart/byteranges; ?boundary="?([^";]+)"?', contentType)
    assert match, contentType
    delimiter = b"--" + match.group(1).encode()
    body = r.body
    parts: list[tuple[str, str, bytes]] = []
    pos = body.index(delimiter)
    assert body[:pos].strip(b"\r\n") == b""
    while True:
        pos += len(delimiter)
        if body[pos : pos + 2] == b"--":
            assert body[pos + 2 :].strip(b"\r\n") == b""
            return parts
        assert body[pos : pos + 2] == b"\r\n"
        headEnd = body.index(b"\r\n\r\n", pos)
        headers = {}
        for line in body[pos + 2 : headEnd].split(b"\r\n"):
            name, _, value = line.partition(b":")
            headers[name.strip().lower()] = value.strip().decode()
        cr = re.fullmatch(r"bytes (\d+)-(\d+)/(\d+)", headers[b"content-range"])
        assert cr
        n = int(cr.group(2)) - int(cr.group(1)) + 1
        data = body[headEnd + 4 : headEnd + 4 + n]
        parts.append(
            (headers.get(b"content-type", ""), headers[b"content-range"], data)
        )
        pos = headEnd + 4 + n
        assert body[pos : pos + 2] == b"\r\n"
        pos = body.index(delimiter, pos)


def test_multipleRanges(port: int) -> None:
    """
    Several disjoint ranges get 206 multipart/byteranges: one part per
    range, in order, each with the file's type, its Content-Range and
    exactly its bytes; Content-Length is the body's length.
    """
    r = _range(port, "bytes=0-3,10-12,-2")
    assert r.status == 206
    assert r.header("Content-Range") is None
    assert r.header("Content-Length") == str(len(r.body))
    assert parseMultipart(r) == [
        ("application/octet-stream", "bytes 0-3/100", DIGITS[0:4]),
        ("application/octet-stream", "bytes 10-12/100", DIGITS[10:13]),
        ("application/octet-stream", "bytes 98-99/100", DIGITS[98:100]),
    ]


def test_multipleRangesWithCurl(server: Server) -> None:
    """
    curl, a real client, asking for two ranges receives a multipart body
    containing both ranges' bytes.
    """
    out = subprocess.run(
        [
            "/usr/bin/curl",
            "-sS",
            "--max-time",
            "10",
            "-r",
            "0-1,4-5",
            "-D",
            "-",
            server.url("/a.txt"),
        ],
        capture_output=True,
        timeout=20,
        check=True,
    ).stdout
    assert out.startswith(b"HTTP/1.1 206")
    assert b"Content-Type: multipart/byteranges" in out
    assert b"\r\n\r\nHe\r\n" in out and b"\r\n\r\no \r\n" in out


def test_overlappingRangesMerged(port: int, tree: Tree) -> None:
    """
    Overlapping and adjacent ranges are merged, so the response is never
    larger than the file plus a little overhead (no amplification).
    """
    size = len(tree.hundredK)
    r = _range(port, "bytes=" + ",".join(["0-"] * 50), target="/hundredk.bin")
    assert r.status == 206
    assert r.header("Content-Range") == f"bytes 0-{size - 1}/{size}"
    assert r.body == tree.hundredK
    r = _range(port, "bytes=0-50000,100-60000,60001-,5-10", target="/hundredk.bin")
    assert r.status == 206
    assert r.header("Content-Range") == f"bytes 0-{size - 1}/{size}"
    assert len(r.body) == size


def test_amplificationAttackBounded(port: int, tree: Tree) -> None:
    """
    'bytes=0-,0-,...' two hundred times on a 100 KB file gives at most the
    file plus small overhead, never 200 copies of it.
    """
    size = len(tree.hundredK)
    r = _range(port, "bytes=" + ",".join(["0-"] * 200), target="/hundredk.bin")
    assert r.status in (200, 206)
    assert len(r.body) <= size + 1024
    assert tree.hundredK in r.body


def test_tooManyRangesServesWholeFile(port: int, tree: Tree) -> None:
    """
    More than 100 ranges in one header are ignored: 200 with the whole
    file.
    """
    value = "bytes=" + ",".join(f"{i}-{i}" for i in range(0, 202, 2))
    r = _range(port, value, target="/hundredk.bin")
    assert r.status == 200
    assert r.body == tree.hundredK


def test_thousandRangesComplete(port: int, tree: Tree) -> None:
    """
    About a thousand tiny ranges get a complete response promptly (no hang,
    no huge multipart).
    """
    value = "bytes=" + ",".join(f"{i}-{i}" for i in range(0, 2000, 2))
    start = time.monotonic()
    r = _range(port, value, target="/hundredk.bin")
    assert time.monotonic() - start < 5
    assert r.status in (200, 206)
    assert len(r.body) <= len(tree.hundredK) + 1024
    assert int(r.header("Content-Length") or -1) == len(r.body)


def test_ifRangeCurrentEtag(port: int) -> None:
    """
    If-Range with the current ETag honours the range (206).
    """
    r = _range(port, "bytes=0-3", **{"If-Range": _etag(port, "/digits.bin")})
    assert r.status == 206
    assert r.body == DIGITS[:4]


def test_ifRangeLastModified(port: int) -> None:
    """
    If-Range with the exact Last-Modified date honours the range.
    """
    r = _range(port, "bytes=0-3", **{"If-Range": _ims(0)})
    assert r.status == 206
    assert r.body == DIGITS[:4]


@pytest.mark.parametrize(
    "ifRange", ['"stale-tag"', "W/{}", "Wed, 01 Jan 2020 00:00:00 GMT"]
)
def test_ifRangeStale(port: int, ifRange: str) -> None:
    """
    If-Range with a stale (or weak) validator sends the whole file with
    200, so a resumed download never splices two versions.
    """
    r = _range(
        port, "bytes=0-3", **{"If-Range": ifRange.format(_etag(port, "/digits.bin"))}
    )
    assert r.status == 200
    assert r.body == DIGITS


def test_rangeOnHead(port: int) -> None:
    """
    HEAD with a Range gets 200 with the whole file's length (ranges apply
    to GET only).
    """
    r = fetch(port, "/digits.bin", "HEAD", headers={"Range": "bytes=0-3"})
    assert r.status == 200
    assert r.header("Content-Length") == "100"
    assert r.body == b""


def test_rangeOnListingIgnored(port: int) -> None:
    """
    Range does not apply to listings: the whole page with 200.
    """
    r = fetch(port, "/listing/", headers={"Range": "bytes=0-3"})
    assert r.status == 200
    assert r.body.startswith(b"<!DOCTYPE HTML>")


# --------------------------------------------------------------------------
# 12. Large files


def test_largeFileByteExact(server: Server, tree: Tree) -> None:
    """
    A 20 MiB file downloads byte for byte, with its Content-Length.
    """
    with requests.get(server.url("/big.bin"), timeout=TIMEOUT, stream=True) as r:
        assert r.status_code == 200
        assert r.headers["Content-Length"] == str(BIG_SIZE)
        digest = hashlib.sha256()
        total = 0
        for chunk in r.iter_content(1 << 20):
            digest.update(chunk)
            total += len(chunk)
    assert total == BIG_SIZE
    assert digest.hexdigest() == hashlib.sha256(tree.big).hexdigest()


def test_largeFileMiddleRange(port: int, tree: Tree) -> None:
    """
    A range in the middle of a large file is exact.
    """
    first, last = 10_000_000, 11_234_566
    r = _range(port, f"bytes={first}-{last}", target="/big.bin")
    assert r.status == 206
    assert r.header("Content-Range") == f"bytes {first}-{last}/{BIG_SIZE}"
    assert r.body == tree.big[first : last + 1]


def test_largeFileMultipleRanges(port: int, tree: Tree) -> None:
    """
    Multipart ranges spanning large parts of a big file are exact.
    """
    r = _range(port, "bytes=0-99,5000000-5999999,-100000", target="/big.bin")
    assert r.status == 206
    parts = parseMultipart(r)
    assert [p[1] for p in parts] == [
        f"bytes 0-99/{BIG_SIZE}",
        f"bytes 5000000-5999999/{BIG_SIZE}",
        f"bytes {BIG_SIZE - 100000}-{BIG_SIZE - 1}/{BIG_SIZE}",
    ]
    assert parts[0][2] == tree.big[:100]
    assert parts[1][2] == tree.big[5_000_000:6_000_000]
    assert parts[2][2] == tree.big[-100_000:]


def test_curlResumesDownload(server: Server, tree: Tree, tmp_path: Path) -> None:
    """
    curl -C - resumes a partial download with a Range request and ends up
    with the exact file.
    """
    out = tmp_path / "big.part"
    out.write_bytes(tree.big[:7_777_777])
    subprocess.run(
        [
            "/usr/bin/curl",
            "-sS",
            "--fail",
            "--max-time",
            "20",
            "-C",
            "-",
            "-o",
            str(out),
            server.url("/big.bin"),
        ],
        check=True,
        timeout=30,
    )
    assert (
        hashlib.sha256(out.read_bytes()).digest() == hashlib.sha256(tree.big).digest()
    )


def test_slowReaderGetsWholeFile(port: int, tree: Tree) -> None:
    """
    A client that stops reading for a while (the server must pause and
    resume, not drop data) still receives the large file intact.
    """
    with Conn(port, timeout=20) as conn:
        conn.send(request(port, "/big.bin"))
        time.sleep(0.5)
        r = conn.readResponse()
    assert r.status == 200
    assert len(r.body) == BIG_SIZE
    assert r.body == tree.big


# --------------------------------------------------------------------------
# 16. Error pages are safe


@pytest.mark.parametrize(
    "target",
    [
        "/%3Cscript%3Ealert(1)%3C/script%3E",
        "/<script>alert(1)</script>",
        "/x%22%3E%3Cscript%3E",
        "/nothere?<script>alert(1)</script>",
    ],
)
def test_errorPageDoesNotReflectMarkup(port: int, target: str) -> None:
    """
    A request path carrying <script> gets a 404 whose body contains no
    unescaped <script>.
    """
    r = fetch(port, target)
    assert r.status == 404
    assert b"<script" not in r.body.lower()
