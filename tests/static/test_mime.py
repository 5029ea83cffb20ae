"""
Tests for L{twisted_cgiserve._static.mime}: a static file's content type,
decided as http.server decides it, and a served tree's own types on top.
"""

from __future__ import annotations

import mimetypes
import os
from collections.abc import Iterator

import pytest
from hypothesis import given
from hypothesis import strategies as st

from twisted_cgiserve._static import mime
from twisted_cgiserve._static.mime import (
    ContentTypes,
    checkExtension,
    checkMediaType,
    guessContentType,
)


@pytest.fixture(autouse=True)
def _freshCache() -> Iterator[None]:
    """
    Each test sees answers computed for it, not cached by another.
    """
    mime._typeForExtension.cache_clear()
    yield
    mime._typeForExtension.cache_clear()


@pytest.mark.parametrize(
    ("name", "expected"),
    [
        ("a.gz", b"application/gzip"),
        ("a.tar.gz", b"application/gzip"),
        ("a.GZ", b"application/gzip"),
        ("a.Z", b"application/octet-stream"),
        ("a.bz2", b"application/x-bzip2"),
        ("a.BZ2", b"application/x-bzip2"),
        ("a.xz", b"application/x-xz"),
    ],
)
def test_compressedFilesAreWhatTheyAre(name: str, expected: bytes) -> None:
    """
    http.server's four overrides: a compressed file is served as an
    archive of its kind (never with a C{Content-Encoding} a browser would
    undo), whatever the extension's case, and only its last extension
    counts.
    """
    assert guessContentType(name) == expected


def test_lowerCaseZIsNotCompress() -> None:
    """
    Only C{.Z} (compress) is overridden; C{.z} is whatever L{mimetypes}
    says, or the default.
    """
    guessed, _ = mimetypes.guess_type("x.z", strict=True)
    assert guessContentType("a.z") == (guessed or "application/octet-stream").encode()


@pytest.mark.parametrize(
    ("name", "expected"),
    [
        ("a.txt", b"text/plain"),
        ("a.html", b"text/html"),
        ("a.py", b"text/x-python"),
        ("a.css", b"text/css"),
        ("a.png", b"image/png"),
        ("a.json", b"application/json"),
        ("dir.d/a.txt", b"text/plain"),
    ],
)
def test_mimetypesDecides(name: str, expected: bytes) -> None:
    """
    Other extensions get what Python's L{mimetypes} gives (the host's
    C{mime.types}, as for C{python -m http.server}); a dot in a directory
    name is no extension.
    """
    assert guessContentType(name) == expected


@pytest.mark.parametrize(
    "name",
    ["noext", "dir.d/noext", ".hidden", "a.", "a.unknown-ext", "a.gz.unknown-ext"],
)
def test_unknownIsOctetStream(name: str) -> None:
    """
    A file without an extension, or with one nobody knows, is
    C{application/octet-stream}: never C{text/html}, which would let an
    upload without an extension run script in a browser.
    """
    assert guessContentType(name) == b"application/octet-stream"


@given(st.text(alphabet=st.characters(codec="utf-8"), max_size=30))
def test_alwaysATypeAndNeverGuessedHTMLWithoutExtension(name: str) -> None:
    """
    Any name gets a non-empty ASCII type; a name without an extension
    never gets C{text/html}.
    """
    result = guessContentType(name)
    assert result
    result.decode("ascii")
    if "." not in name.rsplit("/", 1)[-1].lstrip("."):
        assert result == b"application/octet-stream"


def test_answersAreCachedPerExtension(monkeypatch: pytest.MonkeyPatch) -> None:
    """
    The answer depends on the extension alone and is worked out once per
    extension (every request for a file asks).
    """
    calls: list[str] = []
    real = mimetypes.guess_type

    def counting(url: str, strict: bool = True) -> tuple[str | None, str | None]:
        calls.append(url)
        return real(url, strict)

    monkeypatch.setattr(mimetypes, "guess_type", counting)
    assert guessContentType("a.txt") == b"text/plain"
    assert guessContentType("other/b.txt") == b"text/plain"
    assert guessContentType("c.css") == b"text/css"
    assert len(calls) == 2


# --------------------------------------------------------------------------
# A tree's own types: ContentTypes.


def test_noTypesIsHTTPServers() -> None:
    """
    Without types of its own, a tree's answers are L{guessContentType}'s.
    """
    types = ContentTypes()
    for name in ("a.txt", "a.tar.gz", "a.Z", "noext", "a.unknown-ext"):
        assert types.forPath(name) == guessContentType(name)


def test_ownTypeOverridesDefaults() -> None:
    """
    A given extension's type replaces what L{mimetypes} and http.server's
    overrides would say; other extensions keep theirs.
    """
    types = ContentTypes(
        [
            (".md", "text/markdown; charset=utf-8"),
            (".txt", "text/plain; charset=utf-8"),
            (".gz", "application/x-gzip"),
            (".wasm2", "application/x-wasm2"),
        ]
    )
    assert types.forPath("/srv/README.md") == b"text/markdown; charset=utf-8"
    assert types.forPath("/srv/a.txt") == b"text/plain; charset=utf-8"
    assert types.forPath("/srv/a.gz") == b"application/x-gzip"
    assert types.forPath("/srv/m.wasm2") == b"application/x-wasm2"
    assert types.forPath("/srv/a.css") == b"text/css"
    assert types.forPath("/srv/a.bz2") == b"application/x-bzip2"


def test_lastExtensionOnly() -> None:
    """
    Only a name's last extension is looked at, as http.server looks: the
    type given for C{.gz} is C{x.tar.gz}'s; a dot in a directory's name is
    no extension; a name without one gets the default.
    """
    types = ContentTypes([(".gz", "application/x-gzip"), (".d", "text/x-d")])
    assert types.forPath("x.tar.gz") == b"application/x-gzip"
    assert types.forPath("x.gz.txt") == b"text/plain"
    assert types.forPath("conf.d/noext") == b"application/octet-stream"
    assert types.forPath("conf.d/.d") == b"application/octet-stream"


@pytest.mark.parametrize("name", ["a.md", "a.MD", "a.Md", "dir/README.mD"])
def test_caseInsensitive(name: str) -> None:
    """
    An extension matches whatever the case of the file's name or of the
    extension as given, as L{mimetypes} matches.
    """
    assert ContentTypes([(".md", "text/x-markdown")]).forPath(name) == (
        b"text/x-markdown"
    )
    assert ContentTypes([(".MD", "text/x-markdown")]).forPath(name) == (
        b"text/x-markdown"
    )


def test_exactCaseWins() -> None:
    """
    Where two given extensions differ only in case (as http.server's C{.Z}
    and C{.z} differ), the one spelt as the file's name wins, whatever the
    order; any other spelling takes the later one.
    """
    for pairs in (
        [(".Z", "application/x-compress"), (".z", "application/x-z")],
        [(".z", "application/x-z"), (".Z", "application/x-compress")],
    ):
        types = ContentTypes(pairs)
        assert types.forPath("a.Z") == b"application/x-compress"
        assert types.forPath("a.z") == b"application/x-z"
    later = ContentTypes([(".Md", "text/x-first"), (".mD", "text/x-later")])
    assert later.forPath("a.md") == b"text/x-later"
    assert later.forPath("a.Md") == b"text/x-first"


def test_repeatedExtensionLaterWins() -> None:
    """
    An extension given twice has the later type, as a repeated
    command-line option overrides the earlier one.
    """
    types = ContentTypes([(".md", "text/x-first"), (".md", "text/markdown")])
    assert types.forPath("a.md") == b"text/markdown"


def test_perTreeNotGlobal() -> None:
    """
    A tree's types are its own: they change neither L{mimetypes}' tables
    nor the answers for another tree or for L{guessContentType}.
    """
    before = mimetypes.guess_type("x.md")
    mine = ContentTypes([(".md", "text/x-mine"), (".txt", "text/x-mine")])
    other = ContentTypes()
    assert mine.forPath("a.md") == b"text/x-mine"
    assert other.forPath("a.txt") == b"text/plain"
    assert guessContentType("a.txt") == b"text/plain"
    assert mimetypes.guess_type("x.md") == before
    assert mimetypes.guess_type("x.txt")[0] == "text/plain"


@pytest.mark.parametrize(
    "extension",
    ["", ".", "md", ".tar.gz", "./md", ".a/b", ".a\\b", ".m\x00d", ".m\nd"],
)
def test_malformedExtensionRefused(extension: str) -> None:
    """
    An extension must be a dot and a name a file name can end in. A
    compound one (C{.tar.gz}) is refused, not silently never matched: only
    the last extension counts.
    """
    with pytest.raises(ValueError, match="must be a dot and a name"):
        checkExtension(extension)
    with pytest.raises(ValueError):
        ContentTypes([(extension, "text/plain")])


@pytest.mark.parametrize(
    "mediaType",
    [
        "text/markdown",
        "application/vnd.api+json",
        "text/plain; charset=utf-8",
        "text/plain;charset=utf-8",
        'text/plain; charset="utf-8"; format=flowed',
        'multipart/mixed; boundary="a b\\"c"',
    ],
)
def test_mediaTypesAccepted(mediaType: str) -> None:
    """
    A type is C{type/subtype}, with parameters if wanted (RFC 9110 section
    8.3.1), and is sent as given.
    """
    assert checkMediaType(mediaType) == mediaType.encode("ascii")
    assert ContentTypes([(".x", mediaType)]).forPath("a.x") == mediaType.encode()


@pytest.mark.parametrize(
    "mediaType",
    [
        "",
        "text",
        "text/",
        "/plain",
        "text/plain/x",
        "text /plain",
        "text/plain;",
        "text/plain; charset",
        "text/plain; charset=",
        'text/plain; charset="utf-8',
        "text/plain\r\nSet-Cookie: a=b",
        "text/plain\r\n; charset=utf-8",
        "text/plain;\r\n charset=utf-8",
        "text/plain; charset=utf-8\n",
        "text/pl\x00ain",
        "text/plainé",
        'text/plain; x="é"',
    ],
)
def test_malformedMediaTypeRefused(mediaType: str) -> None:
    """
    Anything else is refused, above all a line break that would split the
    response or a character that is not ASCII.
    """
    with pytest.raises(ValueError, match="is not 'type/subtype'"):
        checkMediaType(mediaType)
    with pytest.raises(ValueError):
        ContentTypes([(".x", mediaType)])


@given(
    st.lists(
        st.tuples(
            st.sampled_from([".md", ".MD", ".txt", ".gz", ".Z", ".z", ".js"]),
            st.sampled_from(["text/x-a", "text/x-b", "application/x-c"]),
        ),
        max_size=6,
    ),
    st.text(alphabet="abc./MDdmtxgzZjs", max_size=12),
)
def test_matchesAModelOfTheRules(pairs: list[tuple[str, str]], name: str) -> None:
    """
    For any types and any name: the type given for the name's last
    extension spelt exactly, else the last one given for it in any case,
    else what http.server would send.
    """
    _base, ext = os.path.splitext(name)
    exact = [t for e, t in pairs if ext and e == ext]
    folded = [t for e, t in pairs if ext and e.lower() == ext.lower()]
    if exact:
        expected = exact[-1].encode()
    elif folded:
        expected = folded[-1].encode()
    else:
        expected = guessContentType(name)
    assert ContentTypes(pairs).forPath(name) == expected
