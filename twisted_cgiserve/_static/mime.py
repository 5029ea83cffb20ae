# -*- test-case-name: tests.static.test_mime -*-
"""
Content types for static files, decided the way http.server decides them.

The answer comes from Python's own L{mimetypes} (which reads the host's
C{mime.types}), so a file gets the same type here as it got from
C{python -m http.server} on the same machine. The four overrides are
http.server's: compressed archives are served as what they are, never with a
C{Content-Encoding} that would make a browser unpack a download.

On top of those, a served tree can have its own types (C{--mime-type
.md=text/markdown}, L{Settings.mimeTypes <twisted_cgiserve.Settings>}), as
http.server users extended C{extensions_map}. They live in a
L{ContentTypes} per resource, never in the global L{mimetypes} tables: two
trees in one process (or the application embedding them) must not change
each other's answers.
"""

from __future__ import annotations

import mimetypes
import posixpath
import re
from collections.abc import Iterable
from functools import lru_cache

from twisted_cgiserve._http.grammar import TOKEN

__all__ = ["ContentTypes", "checkExtension", "checkMediaType", "guessContentType"]

_OVERRIDES = {
    ".gz": "application/gzip",
    ".Z": "application/octet-stream",
    ".bz2": "application/x-bzip2",
    ".xz": "application/x-xz",
}

_DEFAULT = "application/octet-stream"

# RFC 9110 section 8.3.1: type "/" subtype *( OWS ";" OWS parameter ), the
# parameter's value a token or a quoted string. Only ASCII: the value is
# sent as a header, and a CR or LF there would split the response.
_TOKEN = TOKEN.pattern.decode("ascii")
_QUOTED = r'"(?:[\t !#-\[\]-~]|\\[\t -~])*"'
_MEDIA_TYPE = re.compile(
    rf"{_TOKEN}/{_TOKEN}(?:[ \t]*;[ \t]*{_TOKEN}=(?:{_TOKEN}|{_QUOTED}))*"
)


@lru_cache(maxsize=1024)
def _typeForExtension(ext: str) -> bytes:
    """
    The content type for one extension; cached because every request for a
    file asks, and the answer only depends on the extension.
    """
    if ext in _OVERRIDES:
        return _OVERRIDES[ext].encode("ascii")
    lowered = ext.lower()
    if lowered in _OVERRIDES:
        return _OVERRIDES[lowered].encode("ascii")
    guessed, _encoding = mimetypes.guess_type("x" + ext, strict=True)
    return (guessed or _DEFAULT).encode("ascii")


def guessContentType(path: str) -> bytes:
    """
    The C{Content-Type} for a file, from its last extension only (so
    C{x.tar.gz} is C{application/gzip}), falling back to
    C{application/octet-stream}: never C{text/html}, which would let an
    extensionless upload run script in a browser.
    """
    _base, ext = posixpath.splitext(path)
    if not ext:
        return _DEFAULT.encode("ascii")
    return _typeForExtension(ext)


def checkExtension(extension: str) -> None:
    """
    Check that C{extension} is one a file name can end in, as
    L{posixpath.splitext} finds it: a dot, then at least one character, and
    no further dot or slash.

    A compound extension such as C{.tar.gz} is refused rather than accepted
    and never matched: only the last extension of a name decides its type
    (as in http.server), so C{x.tar.gz} is whatever C{.gz} is.

    @raise ValueError: It is not.
    """
    if (
        len(extension) < 2
        or not extension.startswith(".")
        or any(c in extension[1:] for c in "./\\")
        or not extension.isprintable()
    ):
        raise ValueError(
            f"the extension {extension!r} must be a dot and a name, as '.md' "
            "(only a name's last extension decides its type)"
        )


def checkMediaType(mediaType: str) -> bytes:
    """
    Check a content type given for an extension, and return it as the bytes
    of a header value.

    @return: C{mediaType} encoded as ASCII.
    @raise ValueError: C{mediaType} is not C{type/subtype}, optionally
        followed by parameters (C{text/plain; charset=utf-8}), in ASCII.
    """
    if not (mediaType.isascii() and _MEDIA_TYPE.fullmatch(mediaType)):
        raise ValueError(f"the content type {mediaType!r} is not 'type/subtype'")
    return mediaType.encode("ascii")


class ContentTypes:
    """
    The content types of one served tree: its own types for the extensions
    it was given, and L{guessContentType}'s answer for every other.

    An extension matches regardless of case, as L{mimetypes} matches it
    (C{.md} covers C{README.MD}); where two given extensions differ only in
    case, the one spelt exactly as the file's wins. Given twice, the later
    one counts, as a repeated command-line option does. Only a name's last
    extension is looked at, so C{.gz} covers C{x.tar.gz}.
    """

    def __init__(self, types: Iterable[tuple[str, str]] = ()) -> None:
        """
        @param types: C{(extension, content type)} pairs, as
            C{(".md", "text/markdown")}.
        @raise ValueError: An extension or a content type is malformed (see
            L{checkExtension} and L{checkMediaType}).
        """
        exact: dict[str, bytes] = {}
        folded: dict[str, bytes] = {}
        for extension, mediaType in types:
            checkExtension(extension)
            value = checkMediaType(mediaType)
            exact[extension] = value
            folded[extension.lower()] = value
        self._exact = exact
        self._folded = folded

    def forPath(self, path: str) -> bytes:
        """
        The C{Content-Type} for the file at C{path}.
        """
        if self._exact:
            _base, ext = posixpath.splitext(path)
            if ext:
                found = self._exact.get(ext)
                if found is None:
                    found = self._folded.get(ext.lower())
                if found is not None:
                    return found
        return guessContentType(path)
