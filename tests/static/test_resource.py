"""
Tests for L{twisted_cgiserve.StaticResource} and the root resource, rendered
against in-memory requests.
"""

from __future__ import annotations

import hashlib
import os
from email.utils import formatdate
from pathlib import Path
from typing import Any

import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st
from twisted.web.test.requesthelper import DummyRequest

from tests.support.requests import body, header, makeRequest, render
from twisted_cgiserve import Settings, StaticResource, makeRootResource
from twisted_cgiserve._cgi.locate import cgiDirectoryFor
from twisted_cgiserve._http.errors import statusPhrase
from twisted_cgiserve._http.paths import (
    DEFAULT_CGI_DIRECTORIES,
    BadRequestPath,
    resolvePath,
)
from twisted_cgiserve._static import resource as staticResourceModule
from twisted_cgiserve._static.resource import resourcePath


@pytest.fixture
def root(tmp_path: Path) -> Path:
    root = tmp_path / "root"
    (root / "sub" / "deeper").mkdir(parents=True)
    (root / "a.txt").write_bytes(b"hello\n")
    (root / "sub" / "b.html").write_bytes(b"<p>b</p>")
    return root


def _get(resource: object, uri: bytes, **kw: Any) -> DummyRequest:
    return render(resource, makeRequest(uri, **kw))  # type: ignore[arg-type]


def test_file(root: Path) -> None:
    """
    A file is served with its type, length, Last-Modified, a strong ETag
    and Accept-Ranges.
    """
    request = _get(StaticResource(str(root)), b"/a.txt")
    assert request.responseCode in (None, 200)
    assert body(request) == b"hello\n"
    assert header(request, b"content-type") == b"text/plain"
    assert header(request, b"content-length") == b"6"
    mtime = os.stat(root / "a.txt").st_mtime
    assert header(request, b"last-modified") == formatdate(mtime, usegmt=True).encode()
    assert header(request, b"etag").startswith(b'"')
    assert header(request, b"accept-ranges") == b"bytes"


@pytest.mark.parametrize(
    ("uri", "location"),
    [
        (b"/sub", b"/sub/"),
        (b"/sub?x=1&y=2", b"/sub/?x=1&y=2"),
        (b"/sub#frag", b"/sub/#frag"),
        (b"sub", b"sub/"),
        (b"///evil.com/../sub", b"/evil.com/../sub/"),
        (b"//sub", b"/sub/"),
        (b"http://example.com/sub?q", b"http://example.com/sub/?q"),
    ],
)
def test_directoryRedirect(root: Path, uri: bytes, location: bytes) -> None:
    """
    A directory without its slash is a 301 to the raw target plus a slash,
    query and fragment kept, leading slashes collapsed so the Location can
    never be C{//host}.
    """
    request = _get(StaticResource(str(root)), uri)
    assert request.responseCode == 301
    assert header(request, b"location") == location
    assert header(request, b"content-length") == b"0"
    assert body(request) == b""


def test_indexFiles(root: Path) -> None:
    """
    C{index.html} is served for a directory, then C{index.htm}; a directory
    named C{index.html} does not count.
    """
    resource = StaticResource(str(root))
    (root / "sub" / "index.html").mkdir()
    assert b"Directory listing" in body(_get(resource, b"/sub/"))
    (root / "sub" / "index.htm").write_bytes(b"htm")
    assert body(_get(resource, b"/sub/")) == b"htm"
    (root / "sub" / "index.html").rmdir()
    (root / "sub" / "index.html").write_bytes(b"html")
    assert body(_get(resource, b"/sub/")) == b"html"


def test_listingBytes(tmp_path: Path) -> None:
    """
    The listing is byte for byte the page CPython 3.14 renders.
    """
    root = tmp_path / "r"
    (root / "d").mkdir(parents=True)
    (root / "B.txt").write_bytes(b"")
    (root / "a b&<c>.txt").write_bytes(b"")
    (root / "link").symlink_to("d")
    request = _get(StaticResource(str(root)), b"/?q=<b>")
    expected = (
        b"<!DOCTYPE HTML>\n"
        b'<html lang="en">\n'
        b"<head>\n"
        b'<meta charset="utf-8">\n'
        b'<style type="text/css">\n:root {\ncolor-scheme: light dark;\n}\n</style>\n'
        b"<title>Directory listing for /</title>\n</head>\n"
        b"<body>\n<h1>Directory listing for /</h1>\n"
        b"<hr>\n<ul>\n"
        b'<li><a href="a%20b%26%3Cc%3E.txt">a b&amp;&lt;c&gt;.txt</a></li>\n'
        b'<li><a href="B.txt">B.txt</a></li>\n'
        b'<li><a href="d/">d/</a></li>\n'
        b'<li><a href="link/">link@</a></li>\n'
        b"</ul>\n<hr>\n</body>\n</html>\n"
    )
    assert body(request) == expected
    assert header(request, b"content-type") == b"text/html; charset=utf-8"
    assert header(request, b"content-length") == str(len(expected)).encode()


def test_listingTitleEscaped(root: Path) -> None:
    """
    The listing title shows the decoded path, HTML-escaped.
    """
    (root / "<i>").mkdir()
    page = body(_get(StaticResource(str(root)), b"/%3Ci%3E/"))
    assert b"<title>Directory listing for /&lt;i&gt;/</title>" in page


def test_undecodableName(root: Path) -> None:
    """
    A file whose name is not UTF-8 is listed with a link that fetches it.
    """
    fd = os.open(os.path.join(os.fsencode(root), b"\xff.bin"), os.O_CREAT | os.O_WRONLY)
    os.write(fd, b"raw")
    os.close(fd)
    resource = StaticResource(str(root))
    page = body(_get(resource, b"/"))
    assert b'href="%ED%B3%BF.bin"' in page
    assert body(_get(resource, b"/%ED%B3%BF.bin")) == b"raw"


@pytest.mark.parametrize(
    "uri",
    [b"/missing", b"/a.txt/", b"/a.txt%2f", b"/a.txt/x", b"/sub/missing/",
     b"/%ED%A0%80", b"/" + b"a" * 5000],
)  # fmt: skip
def test_notFound(root: Path, uri: bytes) -> None:
    """
    Anything that is not a readable file or directory is http.server's
    404 C{File not found}, including a file asked for with a trailing slash.
    """
    request = _get(StaticResource(str(root)), uri)
    assert request.responseCode == 404
    assert request.responseMessage == b"File not found"
    page = body(request)
    assert b"<p>Error code: 404</p>" in page
    assert b"<p>Message: File not found.</p>" in page
    assert (
        b"<p>Error code explanation: 404 - Nothing matches the given URI.</p>" in page
    )
    assert header(request, b"content-type") == b"text/html;charset=utf-8"
    assert header(request, b"content-length") == str(len(page)).encode()


def test_fifoNotOpened(root: Path) -> None:
    """
    A FIFO is not found rather than opened (which would block the server).
    """
    os.mkfifo(root / "pipe")
    assert _get(StaticResource(str(root)), b"/pipe").responseCode == 404


def test_nul(root: Path) -> None:
    """
    A NUL in the decoded path is a 400.
    """
    assert _get(StaticResource(str(root)), b"/a%00.txt").responseCode == 400


@pytest.mark.parametrize(
    ("method", "message"),
    [
        (b"POST", b"Can only POST to CGI scripts"),
        (b"PUT", b"Unsupported method ('PUT')"),
        (b"get", b"Unsupported method ('get')"),
    ],
)
def test_methods(root: Path, method: bytes, message: bytes) -> None:
    """
    Methods other than GET and HEAD are http.server's 501s.
    """
    request = _get(StaticResource(str(root)), b"/a.txt", method=method)
    assert request.responseCode == 501
    assert request.responseMessage == message


@pytest.mark.parametrize("uri", [b"/a.txt", b"/sub", b"/missing", b"/sub/"])
def test_headLikeGet(root: Path, uri: bytes) -> None:
    """
    HEAD answers with GET's status and headers and no body.
    """
    resource = StaticResource(str(root))
    get = _get(resource, uri)
    head = _get(resource, uri, method=b"HEAD")
    assert head.responseCode == get.responseCode
    assert list(head.responseHeaders.getAllRawHeaders()) == list(
        get.responseHeaders.getAllRawHeaders()
    )
    assert body(head) == b""


def test_largeFile(root: Path) -> None:
    """
    A file larger than the single-write threshold is streamed completely.
    """
    data = os.urandom(3 * 1024 * 1024 + 17)
    (root / "big").write_bytes(data)
    request = _get(StaticResource(str(root)), b"/big")
    assert hashlib.sha256(body(request)).digest() == hashlib.sha256(data).digest()
    assert header(request, b"content-length") == str(len(data)).encode()


def test_multipartRanges(root: Path) -> None:
    """
    Several ranges come back as C{multipart/byteranges}, each part with its
    own Content-Range, and the declared length is exact.
    """
    (root / "digits").write_bytes(b"0123456789")
    request = _get(
        StaticResource(str(root)), b"/digits", headers={b"range": b"bytes=0-1,5-6"}
    )
    assert request.responseCode == 206
    boundary = _multipartBoundary(request)
    page = body(request)
    assert header(request, b"content-length") == str(len(page)).encode()
    parts = page.split(b"--" + boundary)
    assert parts[-1] == b"--\r\n"
    assert b"Content-Range: bytes 0-1/10\r\n\r\n01\r\n" in parts[1]
    assert b"Content-Range: bytes 5-6/10\r\n\r\n56\r\n" in parts[2]


def _multipartBoundary(request: object) -> bytes:
    contentType = header(request, b"content-type")  # type: ignore[arg-type]
    assert contentType.startswith(b"multipart/byteranges; boundary=")
    return contentType.split(b"=", 1)[1]


def test_multipartBoundaryNotInFile(root: Path) -> None:
    """
    The multipart boundary is random, not derived from the file: a file
    that holds C{--cgiserve-} and its own ETag (the old, predictable
    boundary) does not break the framing, and two responses for the same
    file use different boundaries, neither of which occurs in the file.
    """
    path = root / "planted"
    size = 200
    path.write_bytes(b"x" * size)
    st = os.stat(path)
    etag = b"%x-%x-%x" % (st.st_ino, st.st_size, st.st_mtime_ns)
    oldBoundary = b"cgiserve-" + etag.replace(b"-", b"")
    planted = b"\r\n--" + oldBoundary + b"\r\nContent-Type: forged\r\n\r\n"
    content = (planted * size)[:size]
    with open(path, "r+b") as f:
        f.write(content)
    os.utime(path, ns=(st.st_atime_ns, st.st_mtime_ns))
    assert os.stat(path).st_ino == st.st_ino
    resource = StaticResource(str(root))
    etagHeader = header(_get(resource, b"/planted"), b"etag")
    assert etagHeader is not None and etagHeader.strip(b'"') == etag
    boundaries = set()
    for _ in range(2):
        request = _get(resource, b"/planted", headers={b"range": b"bytes=0-49,100-"})
        assert request.responseCode == 206
        boundary = _multipartBoundary(request)
        page = body(request)
        # The preamble, the two parts and the closing "--": nothing else.
        parts = page.split(b"--" + boundary)
        assert len(parts) == 4
        assert parts[1].endswith(b"\r\n\r\n" + content[:50] + b"\r\n")
        assert parts[2].endswith(b"\r\n\r\n" + content[100:] + b"\r\n")
        assert parts[3] == b"--\r\n"
        assert boundary.startswith(b"cgiserve-")
        assert boundary not in content
        assert boundary != oldBoundary
        boundaries.add(boundary)
    assert len(boundaries) == 2


def test_rangeNotForHead(root: Path) -> None:
    """
    Range applies to GET only: a HEAD with a Range answers 200.
    """
    request = _get(
        StaticResource(str(root)), b"/a.txt", method=b"HEAD",
        headers={b"range": b"bytes=0-1"},
    )  # fmt: skip
    assert request.responseCode in (None, 200)


def test_mountedUnderPrefix(root: Path) -> None:
    """
    Mounted below other resources, the resource serves the path that
    follows the segments traversal consumed, and redirects keep the prefix.
    """
    resource = makeRootResource(str(root))
    request = render(resource, makeRequest(b"/files/a.txt", prepath=[b"files"]))
    assert body(request) == b"hello\n"
    request = render(resource, makeRequest(b"/files", prepath=[b"files"]))
    assert request.responseCode == 301
    assert header(request, b"location") == b"/files/"
    request = render(resource, makeRequest(b"/files/", prepath=[b"files"]))
    assert b"Directory listing for /files/" in body(request)


def test_cgiDirectoryNotServedAsFiles(root: Path) -> None:
    """
    With CGI on, a file in a CGI directory is never sent as bytes, however
    the path is spelt; with CGI off it is an ordinary file.
    """
    (root / "cgi-bin").mkdir()
    (root / "cgi-bin" / "s.sh").write_bytes(b"#!/bin/sh\nsecret\n")
    resource = makeRootResource(str(root))
    spellings = [
        b"/cgi-bin/s.sh",
        b"/cgi-bin%2fs.sh",
        b"//cgi-bin/s.sh",
        b"/sub/../cgi-bin/s.sh",
        b"/./cgi-bin/./s.sh",
        b"cgi-bin/s.sh",
    ]
    for uri in spellings:
        request = render(resource, makeRequest(uri))
        assert request.responseCode == 403, uri
        assert b"secret" not in body(request)
    plain = makeRootResource(str(root), Settings(cgiEnabled=False))
    assert body(render(plain, makeRequest(b"/cgi-bin/s.sh"))) == b"#!/bin/sh\nsecret\n"


SECRET = b"#!/bin/sh\nSECRET-SOURCE\n"


def _scriptTree(root: Path) -> None:
    """
    Scripts in both default CGI directories, and a C{CGI-BIN} that is the
    same directory, as it is on a case-insensitive file system.
    """
    for name in ("cgi-bin", "htbin"):
        (root / name).mkdir(exist_ok=True)
        (root / name / "s.sh").write_bytes(SECRET)
    if not (root / "CGI-BIN").exists():
        (root / "CGI-BIN").symlink_to("cgi-bin")


def test_staticRefusesCGIDirectories(root: Path) -> None:
    """
    L{StaticResource} answers 404 below the default CGI directories, listings
    included, and below a case variant of one; other files are served.
    """
    _scriptTree(root)
    resource = StaticResource(str(root))
    for uri in (b"/cgi-bin/s.sh", b"/htbin/s.sh", b"/cgi-bin/", b"/CGI-BIN/s.sh"):
        for method in (b"GET", b"HEAD"):
            request = _get(resource, uri, method=method)
            assert request.responseCode == 404, uri
            assert b"SECRET-SOURCE" not in body(request)
            assert b"s.sh" not in body(request)
    assert _get(resource, b"/cgi-bin").responseCode == 301
    assert body(_get(resource, b"/a.txt")) == b"hello\n"
    mounted = _get(resource, b"/assets/cgi-bin/s.sh", prepath=[b"assets"])
    assert mounted.responseCode == 404


def test_defaultCGIDirectories(root: Path) -> None:
    """
    Unless told otherwise, L{StaticResource} assumes the CGI directories
    L{Settings} does.
    """
    assert Settings().cgiDirectories == DEFAULT_CGI_DIRECTORIES
    assert StaticResource(str(root)).cgiDirectories == Settings().cgiDirectories


def test_staticCGIDirectoriesGiven(root: Path) -> None:
    """
    Told which CGI directories the tree has, L{StaticResource} refuses those
    instead of the defaults; told it has none, it refuses nothing. A bad
    directory is refused as L{Settings} refuses it.
    """
    _scriptTree(root)
    (root / "sub" / "scripts").mkdir()
    (root / "sub" / "scripts" / "x.sh").write_bytes(SECRET)
    resource = StaticResource(str(root), cgiDirectories=["/sub/scripts/"])
    assert resource.cgiDirectories == ("/sub/scripts",)
    assert _get(resource, b"/sub/scripts/x.sh").responseCode == 404
    assert _get(resource, b"/sub/SCRIPTS/x.sh").responseCode == 404
    assert body(_get(resource, b"/cgi-bin/s.sh")) == SECRET
    assert body(_get(resource, b"/sub/scriptsx")) != SECRET
    everything = StaticResource(str(root), cgiDirectories=())
    assert body(_get(everything, b"/cgi-bin/s.sh")) == SECRET
    assert b"s.sh" in body(_get(everything, b"/htbin/"))
    for bad in ("cgi-bin", "//", "/a/../b", "/a%2fb"):
        with pytest.raises(ValueError):
            StaticResource(str(root), cgiDirectories=[bad])


def test_rootStaticHalfRefusesCaseVariants(root: Path) -> None:
    """
    The root resource's static half knows the root's CGI directories: a case
    variant, which CGI dispatch does not take (it matches case-sensitively,
    as http.server does) but a case-insensitive file system opens as the
    script, is not found. With CGI off the directories are plain ones.
    """
    _scriptTree(root)
    request = render(makeRootResource(str(root)), makeRequest(b"/CGI-BIN/s.sh"))
    assert request.responseCode == 404
    assert b"SECRET-SOURCE" not in body(request)
    plain = makeRootResource(str(root), Settings(cgiEnabled=False))
    assert body(render(plain, makeRequest(b"/CGI-BIN/s.sh"))) == SECRET
    assert body(render(plain, makeRequest(b"/htbin/s.sh"))) == SECRET


def _encodeSome(text: str, picks: list[int]) -> str:
    """
    C{text} with the characters at the positions in C{picks} percent-encoded
    (upper- or lower-case hex by parity).
    """
    out = []
    for i, c in enumerate(text):
        if i in picks:
            escaped = f"%{ord(c):02X}"
            out.append(escaped if i % 2 else escaped.lower())
        else:
            out.append(c)
    return "".join(out)


_CGI_SEGMENTS = ["cgi-bin", "CGI-BIN", "Cgi-Bin", "htbin", "HTBin", "s.sh", "S.SH"]
_spelling = st.tuples(
    st.lists(
        st.sampled_from(
            [*_CGI_SEGMENTS, "..", ".", "", "%2e%2e", "%2E", "sub", "%2f", "a.txt"]
        ),
        max_size=6,
    ),
    st.lists(st.integers(min_value=0, max_value=60), max_size=6),
    st.sampled_from(["", "/", "?q", "%2f", "//"]),
    st.booleans(),
).map(
    lambda t: (_encodeSome("/" + "/".join(t[0]), t[1]) + t[2], t[3])
)  # fmt: skip


@settings(
    max_examples=400,
    suppress_health_check=[HealthCheck.function_scoped_fixture],
)
@given(_spelling)
def test_staticNeverServesCGIDirectory(root: Path, case: tuple[str, bool]) -> None:
    """
    However the path is spelt (percent-encoded letters and slashes, dot
    segments, empty segments, case), mounted or not, L{StaticResource} never
    sends a file below a CGI directory, and refuses everything CGI dispatch
    would take.
    """
    uri, mounted = case
    _scriptTree(root)
    resource = StaticResource(str(root))
    raw = uri.encode()
    prepath = [b"assets"] if mounted else []
    if mounted:
        raw = b"/assets" + raw
    for method in (b"GET", b"HEAD"):
        request = _get(resource, raw, method=method, prepath=prepath)
        assert b"SECRET-SOURCE" not in body(request)
    try:
        resolved = resolvePath(resourcePath(request))
    except BadRequestPath:
        return
    if cgiDirectoryFor(resolved, resource.cgiDirectories) is not None:
        assert request.responseCode == 404


def test_settingsValidateCGIDirectories() -> None:
    """
    CGI directories must be normalised absolute URL paths.
    """
    assert Settings(cgiDirectories=("/a/cgi/",)).cgiDirectories == ("/a/cgi",)
    for bad in ("cgi", "//", "/a/../b", "/a//b", "/a?b", "/%41"):
        with pytest.raises(ValueError):
            Settings(cgiDirectories=(bad,))


def test_notADirectory(tmp_path: Path) -> None:
    """
    L{makeRootResource} refuses a path that is not a directory.
    """
    with pytest.raises(ValueError):
        makeRootResource(str(tmp_path / "missing"))


def test_statusPhraseSafe() -> None:
    """
    A reason phrase can never split the status line nor fail to encode.
    """
    assert statusPhrase("No such CGI script ('/cgi-bin/\u20ac\r\nX: y')") == (
        b"No such CGI script ('/cgi-bin/???X: y')"
    )


@settings(
    max_examples=300,
    suppress_health_check=[HealthCheck.function_scoped_fixture],
)
@given(
    st.lists(
        st.sampled_from(
            ["cgi-bin", "CGI-BIN", "s.sh", "..", ".", "", "%2e%2e", "%2f", "sub",
             "cgi-bin%2fs.sh", "%63gi-bin", "s.sh%00", "s.sh%2f", "%252e", "\\"]
        ),
        max_size=6,
    ).map(lambda words: ("/" + "/".join(words)).encode())
)  # fmt: skip
def test_scriptBytesNeverLeak(root: Path, uri: bytes) -> None:
    """
    Whatever the spelling, a script in a CGI directory is never sent as a
    file (http.server's CVE-2011-1015 and CVE-2014-4650 disclosed sources).
    """
    scripts = root / "cgi-bin"
    if not scripts.exists():
        scripts.mkdir()
        (scripts / "s.sh").write_bytes(b"#!/bin/sh\nSECRET-SOURCE\n")
    for method in (b"GET", b"HEAD", b"POST"):
        request = render(makeRootResource(str(root)), makeRequest(uri, method=method))
        assert b"SECRET-SOURCE" not in body(request)


# Scripts by name (--cgi-ext) and the root as a CGI directory (--cgi-dir /).


def _extensionTree(root: Path) -> None:
    """
    Scripts named with C{.cgi} in a subdirectory, a directory named like a
    script, and links to a script under innocent names.
    """
    (root / "sub" / "run.cgi").write_bytes(SECRET)
    (root / "dir.cgi").mkdir(exist_ok=True)
    (root / "dir.cgi" / "page.txt").write_bytes(b"page\n")
    for link, target in (("sub/alias.txt", "run.cgi"), ("sub/chain.txt", "alias.txt")):
        if not (root / link).is_symlink():
            (root / link).symlink_to(target)


@pytest.mark.parametrize(
    "uri",
    [
        b"/sub/run.cgi",
        b"/sub/RUN.CGI",
        b"/sub/run.cgi.",
        b"/sub/run.cgi%20",
        b"/sub/run%2ecgi",
        b"/sub/run.cgi/",
        b"/sub/alias.txt",
        b"/sub/chain.txt",
    ],
)
def test_staticRefusesScriptNames(root: Path, uri: bytes) -> None:
    """
    A file named as a script is never sent, however it is spelt, and
    neither is a link to one under another name.
    """
    _extensionTree(root)
    resource = StaticResource(str(root), cgiExtensions=[".CGI"])
    assert resource.cgiExtensions == (".cgi",)
    request = _get(resource, uri)
    assert request.responseCode == 404
    assert b"SECRET-SOURCE" not in body(request)
    everything = StaticResource(str(root))
    assert body(_get(everything, b"/sub/alias.txt")) == SECRET


def test_staticServesDirectoryNamedLikeScript(root: Path) -> None:
    """
    A directory named with a script extension is only a directory: listed,
    and its files served.
    """
    _extensionTree(root)
    resource = StaticResource(str(root), cgiExtensions=[".cgi"])
    assert b"page.txt" in body(_get(resource, b"/dir.cgi/"))
    assert body(_get(resource, b"/dir.cgi/page.txt")) == b"page\n"
    assert _get(resource, b"/dir.cgi").responseCode == 301


def test_staticLinkLoop(root: Path) -> None:
    """
    A loop of links names no script; it is not found (it cannot be
    opened) and costs a bounded walk.
    """
    (root / "loop1").symlink_to("loop2")
    (root / "loop2").symlink_to("loop1")
    resource = StaticResource(str(root), cgiExtensions=[".cgi"])
    assert resource._isScript(str(root / "loop1"))
    assert _get(resource, b"/loop1").responseCode == 404


def test_staticPassesOverScriptIndex(root: Path) -> None:
    """
    An index file named as a script is passed over: the next index file,
    or the listing, is served instead.
    """
    (root / "sub" / "index.cgi").write_bytes(SECRET)
    resource = StaticResource(
        str(root), indexNames=["index.cgi", "b.html"], cgiExtensions=[".cgi"]
    )
    assert body(_get(resource, b"/sub/")) == b"<p>b</p>"
    listing = StaticResource(
        str(root), indexNames=["index.cgi"], cgiExtensions=[".cgi"]
    )
    listed = body(_get(listing, b"/sub/"))
    assert b"index.cgi" in listed
    assert b"SECRET-SOURCE" not in listed


@pytest.mark.parametrize(
    ("uri", "code"),
    [
        (b"/", 404),
        (b"/a.txt", 404),
        (b"/A.TXT", 404),
        (b"/sub", 404),
        (b"/sub/", 200),
        (b"/sub/b.html", 200),
        (b"/a.txt/", 404),
    ],
)
def test_staticRootCGIDirectory(root: Path, uri: bytes, code: int) -> None:
    """
    With C{/} as a CGI directory the static half refuses what CGI dispatch
    takes (the root and top-level names) and serves the subdirectories.
    """
    resource = StaticResource(str(root), cgiDirectories=["/"])
    request = _get(resource, uri)
    assert (request.responseCode or 200) == code
    assert b"hello" not in body(request)


def test_staticBadExtension(root: Path) -> None:
    """
    A script extension must be a dot and a name.
    """
    with pytest.raises(ValueError, match="must be a dot and a name"):
        StaticResource(str(root), cgiExtensions=["cgi"])


def test_mimeTypes(tmp_path: Path) -> None:
    """
    C{mimeTypes} sets the type of files with that extension, regardless of
    case, for files and index files alike; other files keep http.server's.
    """
    (tmp_path / "README.MD").write_bytes(b"# r\n")
    (tmp_path / "a.txt").write_bytes(b"a\n")
    (tmp_path / "sub").mkdir()
    (tmp_path / "sub" / "index.md").write_bytes(b"# i\n")
    resource = StaticResource(
        str(tmp_path),
        indexNames=("index.md",),
        mimeTypes=((".md", "text/markdown; charset=utf-8"),),
    )
    for uri in (b"/README.MD", b"/sub/"):
        request = render(resource, makeRequest(uri))
        assert header(request, b"content-type") == b"text/markdown; charset=utf-8"
    request = render(resource, makeRequest(b"/a.txt"))
    assert header(request, b"content-type") == b"text/plain"


def test_mimeTypesMalformed(tmp_path: Path) -> None:
    """
    A malformed extension or type is refused when the resource is built.
    """
    with pytest.raises(ValueError):
        StaticResource(str(tmp_path), mimeTypes=((".md", "text\r\nx: y"),))
    with pytest.raises(ValueError):
        StaticResource(str(tmp_path), mimeTypes=((".tar.gz", "application/gzip"),))


# Links into a CGI directory: the static half judges a linked file by its
# real path, relative to the served root.


def _linkTree(root: Path) -> None:
    """
    A script in C{cgi-bin}, and links to it from C{pub} under an innocent
    name, through a link to the directory, as an index file, and through
    a chain of links; plus links to ordinary files, inside and outside the
    tree (to another tree's C{cgi-bin}).
    """
    (root / "cgi-bin").mkdir()
    (root / "cgi-bin" / "noexec.sh").write_bytes(SECRET)
    (root / "cgi-bin" / "sub").mkdir()
    (root / "cgi-bin" / "sub" / "deep.sh").write_bytes(SECRET)
    pub = root / "pub"
    (pub / "idx").mkdir(parents=True)
    (pub / "s.txt").symlink_to("../cgi-bin/noexec.sh")
    (pub / "cgilink").symlink_to("../cgi-bin")
    (pub / "chain.txt").symlink_to("cgilink/sub/deep.sh")
    (pub / "idx" / "index.html").symlink_to("../../cgi-bin/noexec.sh")
    (pub / "ok.txt").symlink_to("../a.txt")
    other = root.parent / "other" / "cgi-bin"
    other.mkdir(parents=True)
    (other / "page.txt").write_bytes(b"other tree\n")
    (pub / "out.txt").symlink_to(other / "page.txt")


@pytest.mark.parametrize(
    "uri",
    [
        b"/pub/s.txt",
        b"/pub/cgilink/noexec.sh",
        b"/pub/cgilink/sub/deep.sh",
        b"/pub/cgilink/",
        b"/pub/cgilink/sub/",
        b"/pub/chain.txt",
        b"/pub/./cgilink/../s.txt",
    ],
)
def test_staticRefusesLinksIntoCGIDirectory(root: Path, uri: bytes) -> None:
    """
    A file or directory whose real path lies in a CGI directory of the
    tree is not found, whatever link leads to it, for the static resource
    and for the whole tree: http.server's CGI directories keep a script's
    source private, and a link must not send it under another name.
    """
    _linkTree(root)
    for resource in (StaticResource(str(root)), makeRootResource(str(root))):
        for method in (b"GET", b"HEAD"):
            request = _get(resource, uri, method=method)
            assert request.responseCode == 404, uri
            assert b"SECRET-SOURCE" not in body(request)
            assert b"noexec.sh" not in body(request)


def test_staticLinkedIndexIntoCGIDirectory(root: Path) -> None:
    """
    An index file that is a link into a CGI directory is passed over: the
    directory is listed instead, and the script's bytes are not sent.
    """
    _linkTree(root)
    request = _get(StaticResource(str(root)), b"/pub/idx/")
    assert request.responseCode in (None, 200)
    assert b"SECRET-SOURCE" not in body(request)
    assert b"index.html" in body(request)


def test_staticServesOrdinaryLinks(root: Path) -> None:
    """
    A link to an ordinary file is served, inside the tree or outside it,
    even to a directory named C{cgi-bin} of another tree; a link to a CGI
    directory without its slash is only redirected.
    """
    _linkTree(root)
    resource = StaticResource(str(root))
    assert body(_get(resource, b"/pub/ok.txt")) == b"hello\n"
    assert body(_get(resource, b"/pub/out.txt")) == b"other tree\n"
    assert _get(resource, b"/pub/cgilink").responseCode == 301


def test_fileStatusAskedOnce(root: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    """
    A file that is not a link costs one C{lstat} of its own (which is also
    its status) and one for each directory on the way, checked for links;
    no C{stat}. A link is followed with one C{stat}, and still refused when
    it leads into a CGI directory.
    """
    _linkTree(root)
    resource = StaticResource(str(root))
    calls: list[tuple[str, str]] = []

    class CountingOS:
        def __getattr__(self, name: str) -> Any:
            return getattr(os, name)

        def stat(self, path: str) -> os.stat_result:
            calls.append(("stat", path))
            return os.stat(path)

        def lstat(self, path: str) -> os.stat_result:
            calls.append(("lstat", path))
            return os.lstat(path)

    monkeypatch.setattr(staticResourceModule, "os", CountingOS())
    assert body(_get(resource, b"/sub/b.html")) == b"<p>b</p>"
    assert calls == [
        ("lstat", str(root / "sub" / "b.html")),
        ("lstat", str(root / "sub")),
    ]
    calls.clear()
    assert body(_get(resource, b"/pub/ok.txt")) == b"hello\n"
    assert calls[:2] == [
        ("lstat", str(root / "pub" / "ok.txt")),
        ("stat", str(root / "pub" / "ok.txt")),
    ]
    assert _get(resource, b"/pub/s.txt").responseCode == 404


def test_staticLinksIntoCGIDirectoryServedWithCGIOff(root: Path) -> None:
    """
    With CGI off, the CGI directories are ordinary directories, as in
    http.server: their files are served, through links too.
    """
    _linkTree(root)
    plain = makeRootResource(str(root), Settings(cgiEnabled=False))
    assert body(_get(plain, b"/pub/s.txt")) == SECRET
    assert body(_get(plain, b"/pub/cgilink/noexec.sh")) == SECRET
    assert body(_get(StaticResource(str(root), cgiDirectories=()), b"/pub/s.txt"))


def test_staticLinksJudgedFromRealRoot(tmp_path: Path, root: Path) -> None:
    """
    The real path is taken relative to the root's own real path: a root
    served through a link refuses the same files.
    """
    _linkTree(root)
    served = tmp_path / "served"
    served.symlink_to(root)
    resource = StaticResource(str(served))
    assert _get(resource, b"/pub/s.txt").responseCode == 404
    assert body(_get(resource, b"/pub/ok.txt")) == b"hello\n"


def test_staticLinksToTopLevelFilesWithRootCGIDirectory(root: Path) -> None:
    """
    With C{--cgi-dir /}, a link to a top-level file (a script) is not
    found, while a link to a deeper file is served.
    """
    (root / "sub" / "top.txt").symlink_to("../a.txt")
    (root / "sub" / "deep.html").symlink_to("b.html")
    resource = StaticResource(str(root), cgiDirectories=["/"])
    assert _get(resource, b"/sub/top.txt").responseCode == 404
    assert body(_get(resource, b"/sub/deep.html")) == b"<p>b</p>"


def test_staticLinksToScriptNames(root: Path) -> None:
    """
    A link whose target's real name is a script's is refused even when
    the link's own name and every link in between are innocent, through a
    linked directory too.
    """
    (root / "sub" / "run.cgi").write_bytes(SECRET)
    (root / "sublink").symlink_to("sub")
    (root / "plain.txt").symlink_to("sublink/run.cgi")
    resource = StaticResource(str(root), cgiExtensions=[".cgi"])
    assert _get(resource, b"/sublink/run.cgi").responseCode == 404
    assert _get(resource, b"/plain.txt").responseCode == 404
    assert body(_get(resource, b"/sublink/b.html")) == b"<p>b</p>"


def test_staticLinkToTheRoot(root: Path) -> None:
    """
    A link back to the root is the root: refused (its listing and index)
    when the root is a CGI directory (C{--cgi-dir /}), listed otherwise;
    with only script names refused, linked ordinary files are served.
    """
    (root / "sub" / "up").symlink_to("..")
    topLevel = StaticResource(str(root), cgiDirectories=["/"])
    assert _get(topLevel, b"/sub/up/").responseCode == 404
    assert b"a.txt" in body(_get(StaticResource(str(root)), b"/sub/up/"))
    byName = StaticResource(str(root), cgiDirectories=(), cgiExtensions=[".cgi"])
    assert body(_get(byName, b"/sub/up/a.txt")) == b"hello\n"
