"""
Tests for L{twisted_cgiserve._static.mime}: a static file's content type,
decided as http.server decides it.
"""

from __future__ import annotations

import mimetypes
from collections.abc import Iterator

import pytest
from hypothesis import given
from hypothesis import strategies as st

from twisted_cgiserve._static import mime
from twisted_cgiserve._static.mime import guessContentType


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
