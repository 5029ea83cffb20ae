"""
Tests for L{twisted_cgiserve._http.paths}: how a request target becomes a path
below the document root.
"""

from __future__ import annotations

import contextlib
import os
import posixpath
import re

import pytest
from hypothesis import given
from hypothesis import strategies as st

from twisted_cgiserve._http.paths import (
    DEFAULT_CGI_DIRECTORIES,
    BadRequestPath,
    _resolveDecoded,
    cgiDirectorySegments,
    collapseLeadingSlashes,
    decodePath,
    foldName,
    hidesScript,
    normaliseCGIDirectory,
    normaliseCGIExtension,
    resolvePath,
    scriptExtension,
    splitTarget,
)


@pytest.mark.parametrize(
    ("raw", "segments", "trailing"),
    [
        # http.server's translate_path table (3.14 side), as segments.
        (b"/", (), True),
        (b"", (), False),
        (b"a", ("a",), False),
        (b"/a/./b", ("a", "b"), False),
        (b"/a/../b", ("b",), False),
        (b"/../../etc/passwd", ("etc", "passwd"), False),
        (b"/..%2f..%2fetc/passwd", ("etc", "passwd"), False),
        (b"/a%2fb", ("a", "b"), False),
        (b"/a%2f", ("a",), True),
        (b"/a%2F", ("a",), True),
        (b"/a%3fb", ("a?b",), False),
        (b"/a%23b", ("a#b",), False),
        (b"/%2e%2e/x", ("x",), False),
        (b"/C:/x", ("C:", "x"), False),
        (b"/a\\b", ("a\\b",), False),
        (b"/a/ ", ("a", " "), False),
        (b"/a%20/", ("a ",), True),
        (b"/caf%C3%A9", ("caf\xe9",), False),
        (b"/a/b/..", ("a",), False),
        (b"/a/b/../", ("a",), True),
        (b"/a//b", ("a", "b"), False),
        (b"/%ff", ("\ufffd",), False),
    ],
)
def test_translation(raw: bytes, segments: tuple[str, ...], trailing: bool) -> None:
    """
    Paths translate as in CPython 3.14's C{SimpleHTTPRequestHandler}: one
    decoding, dot segments resolved without climbing above the root, empty
    segments dropped, and a trailing slash (decoded or not) remembered.
    """
    resolved = resolvePath(raw)
    assert resolved.segments == segments
    assert resolved.trailingSlash is trailing


def test_decodesOnce() -> None:
    """
    A doubly encoded dot segment stays a literal C{%2e%2e} name: decoding
    happens once, so C{%252e%252e} can never become C{..}.
    """
    assert resolvePath(b"/cgi-bin/%252e%252e/x").segments == ("cgi-bin", "%2e%2e", "x")


@pytest.mark.parametrize("raw", [b"/%00", b"/a%00b", b"/a/%00/b"])
def test_nulRefused(raw: bytes) -> None:
    """
    A path that decodes to a NUL cannot name a file: it is refused (a 400),
    where http.server crashed the request.
    """
    with pytest.raises(BadRequestPath):
        resolvePath(raw)


def test_undecodableRoundTrip() -> None:
    """
    A file name that is not UTF-8 (listed with a C{surrogatepass} escape)
    decodes back to the surrogate the filesystem functions map to its
    original byte.
    """
    name = os.fsdecode(b"\xff.txt")
    assert decodePath(b"/%ED%B3%BF.txt") == "/" + name


@pytest.mark.parametrize(
    ("target", "path", "query"),
    [
        (b"/a?x=1", b"/a", b"x=1"),
        (b"/a", b"/a", None),
        (b"/a?", b"/a", b""),
        (b"/a#frag?x", b"/a", None),
        (b"/a?x#frag", b"/a", b"x"),
        (b"/a?b?c", b"/a", b"b?c"),
        (b"http://example.com/a/b?x", b"/a/b", b"x"),
        (b"HTTPS://example.com", b"/", None),
        (b"http://example.com?x=1", b"/", b"x=1"),
    ],
)
def test_splitTarget(target: bytes, path: bytes, query: bytes | None) -> None:
    """
    The query starts at the first C{?}; a fragment is dropped; an
    absolute-form target contributes only its path.
    """
    assert splitTarget(target) == (path, query)


@pytest.mark.parametrize(
    ("path", "collapsed"),
    [(b"//evil.com/x", b"/evil.com/x"), (b"///x", b"/x"), (b"/x//y", b"/x//y")],
)
def test_collapseLeadingSlashes(path: bytes, collapsed: bytes) -> None:
    """
    Leading slashes collapse to one (gh-87389) so no redirect can start with
    C{//}; inner ones are left for resolution.
    """
    assert collapseLeadingSlashes(path) == collapsed


_pathBytes = st.lists(
    st.one_of(
        st.sampled_from(
            [b"..", b".", b"", b"%2e%2e", b"%2E%2e", b"..%2f", b"%2f..", b"%00",
             b"%2f", b"%5c", b"\\..", b"....", b"%ff", b"%c0%ae", b"a", b"etc"]
        ),
        st.binary(max_size=8),
    ),
    max_size=12,
).map(b"/".join)  # fmt: skip


@given(_pathBytes)
def test_neverEscapesRoot(raw: bytes) -> None:
    """
    Whatever the input, the resolved path stays inside the root: no segment
    is empty, C{.} or C{..}, none contains C{/}, and joining them below a
    root and normalising gives a path below that root.
    """
    try:
        resolved = resolvePath(raw)
    except BadRequestPath:
        return
    root = "/srv/root"
    for segment in resolved.segments:
        assert segment not in ("", ".", "..")
        assert "/" not in segment
        assert "\x00" not in segment
    joined = posixpath.normpath(posixpath.join(root, *resolved.segments))
    assert joined == root or joined.startswith(root + "/")


@given(st.binary(max_size=64))
def test_anyBytes(raw: bytes) -> None:
    """
    Any byte string either resolves or is refused with L{BadRequestPath};
    nothing else escapes (a crash here would be a 500 or a dropped
    connection).
    """
    with contextlib.suppress(BadRequestPath):
        resolvePath(raw)


@given(
    st.lists(
        st.one_of(
            st.sampled_from(["", ".", "..", ".x", "a.b", "x..", "~", "a b"]),
            st.text(alphabet="abcAB09-_.~!$&'()*+,;=:@", max_size=6),
        ),
        max_size=8,
    ).map(lambda words: "/" + "/".join(words))
)
def test_fastPathAgrees(path: str) -> None:
    """
    The shortcut for paths with nothing to decode or resolve gives exactly
    what the general algorithm gives.
    """
    raw = path.encode("ascii")
    assert resolvePath(raw) == _resolveDecoded(decodePath(raw))


# CGI directories, as --cgi-dir names them.


def test_defaultCGIDirectories() -> None:
    """
    http.server's CGI directories, each already in canonical form.
    """
    assert DEFAULT_CGI_DIRECTORIES == ("/cgi-bin", "/htbin")
    for directory in DEFAULT_CGI_DIRECTORIES:
        assert normaliseCGIDirectory(directory) == directory


@pytest.mark.parametrize(
    ("given", "canonical"),
    [
        ("/cgi-bin", "/cgi-bin"),
        ("/cgi-bin/", "/cgi-bin"),
        ("/a/b", "/a/b"),
        ("/caf\u00e9", "/caf\u00e9"),
        ("/", "/"),
    ],
)
def test_normaliseCGIDirectory(given: str, canonical: str) -> None:
    """
    A CGI directory is compared with decoded request paths in its
    canonical spelling: without a trailing slash.
    """
    assert normaliseCGIDirectory(given) == canonical


@pytest.mark.parametrize(
    ("given", "complaint"),
    [
        ("cgi-bin", "must start with '/'"),
        ("/cgi?x", "must be a plain path"),
        ("/cgi#x", "must be a plain path"),
        ("/cgi%20bin", "must be a plain path"),
        ("/cgi\\bin", "must be a plain path"),
        ("/cgi\nbin", "must be a plain path"),
        ("/cgi\x00bin", "must be a plain path"),
        ("/a/../b", "must be '/' or a normalised path"),
        ("/a/./b", "must be '/' or a normalised path"),
        ("/a//b", "must be '/' or a normalised path"),
        ("//a", "must be '/' or a normalised path"),
        ("//", "must be '/' or a normalised path"),
    ],
)
def test_normaliseCGIDirectoryRefuses(given: str, complaint: str) -> None:
    """
    A CGI directory that is not a plain, normalised path below the root is
    refused with a message fit for the command line, naming it.
    """
    with pytest.raises(ValueError, match=re.escape(complaint)) as raised:
        normaliseCGIDirectory(given)
    assert repr(given) in str(raised.value)


@pytest.mark.parametrize(
    ("directory", "segments"),
    [("/", ()), ("/cgi-bin", ("cgi-bin",)), ("/a/b", ("a", "b"))],
)
def test_cgiDirectorySegments(directory: str, segments: tuple[str, ...]) -> None:
    """
    A canonical CGI directory's segments; the root has none.
    """
    assert cgiDirectorySegments(directory) == segments


# Script extensions, as --cgi-ext and --cgi-interpreter name them.


@pytest.mark.parametrize(
    ("word", "folded"),
    [
        ("CGI-BIN", "cgi-bin"),
        ("X.Cgi", "x.cgi"),
        ("Stra\u00dfe", "strasse"),
        # Decomposed and composed spellings fold alike (macOS stores NFD).
        ("Cafe\u0301", "caf\u00e9"),
    ],
)
def test_foldName(word: str, folded: str) -> None:
    """
    Names fold as a case-insensitive file system compares them.
    """
    assert foldName(word) == folded


@pytest.mark.parametrize(
    ("given", "folded"), [(".cgi", ".cgi"), (".CGI", ".cgi"), (".Pl", ".pl")]
)
def test_normaliseCGIExtension(given: str, folded: str) -> None:
    """
    Extensions compare case-insensitively, as Apache's C{AddHandler} and
    C{twistd web}'s processors compare them.
    """
    assert normaliseCGIExtension(given) == folded


@pytest.mark.parametrize(
    "given", ["cgi", ".", "", ".tar.gz", "./x", ".a\\b", ".a\x00", ".a\n"]
)
def test_normaliseCGIExtensionRefuses(given: str) -> None:
    """
    An extension is a dot and a name: nothing that could match part of a
    path, or only some spellings of a name.
    """
    with pytest.raises(ValueError, match="must be a dot and a name") as raised:
        normaliseCGIExtension(given)
    assert repr(given) in str(raised.value)


@pytest.mark.parametrize(
    ("name", "extension"),
    [
        ("x.cgi", ".cgi"),
        ("X.CGI", ".cgi"),
        (".cgi", ".cgi"),
        ("a.b.pl", ".pl"),
        ("x.cgi.txt", None),
        ("x.cgi.", None),
        ("xcgi", None),
        ("x.txt", None),
    ],
)
def test_scriptExtension(name: str, extension: str | None) -> None:
    """
    A file is a script when its name ends with an extension, in any case;
    the extension matched is returned.
    """
    assert scriptExtension(name, (".cgi", ".pl")) == extension
    assert scriptExtension(name, ()) is None


@pytest.mark.parametrize(
    ("name", "hidden"),
    [
        ("x.cgi", True),
        ("X.cGi", True),
        ("x.cgi.", True),
        ("x.cgi. .", True),
        ("x.cgi ", True),
        ("x.cgi.txt", False),
        ("x.txt", False),
    ],
)
def test_hidesScript(name: str, hidden: bool) -> None:
    """
    The static half refuses every name that is, or that some file system
    resolves to, a script's.
    """
    assert hidesScript(name, (".cgi",)) is hidden
    assert not hidesScript(name, ())
