# -*- test-case-name: tests.static.test_mime -*-
"""
Content types for static files, decided the way http.server decides them.

The answer comes from Python's own L{mimetypes} (which reads the host's
C{mime.types}), so a file gets the same type here as it got from
C{python -m http.server} on the same machine. The four overrides are
http.server's: compressed archives are served as what they are, never with a
C{Content-Encoding} that would make a browser unpack a download.
"""

from __future__ import annotations

import mimetypes
import posixpath
from functools import lru_cache

__all__ = ["guessContentType"]

_OVERRIDES = {
    ".gz": "application/gzip",
    ".Z": "application/octet-stream",
    ".bz2": "application/x-bzip2",
    ".xz": "application/x-xz",
}

_DEFAULT = "application/octet-stream"


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
