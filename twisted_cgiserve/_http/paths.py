# -*- test-case-name: tests.http.test_paths -*-
"""
Request path resolution: the one place that turns a request target into a
path below the document root.

Static files and CGI dispatch both ask this module, so "is this a CGI
script" and "which file is it" can never disagree: http.server used two
normalisers and every disagreement between them was a CVE (source disclosure
through C{/cgi-bin%2f}, execution through C{/cgi-bin/%252e%252e/}).

The translation follows CPython 3.14's C{SimpleHTTPRequestHandler}: the path
is percent-decoded I{once}, dot segments are resolved lexically (they can
never climb above the root), empty segments vanish, and a trailing slash is
remembered, decoded or not. Unlike http.server, a decoded NUL is refused
instead of crashing the request.
"""

from __future__ import annotations

import posixpath
import unicodedata
from dataclasses import dataclass
from urllib.parse import unquote_to_bytes

__all__ = [
    "DEFAULT_CGI_DIRECTORIES",
    "BadRequestPath",
    "ResolvedPath",
    "cgiDirectorySegments",
    "collapseLeadingSlashes",
    "decodePath",
    "foldName",
    "hidesScript",
    "normaliseCGIDirectory",
    "normaliseCGIExtension",
    "resolvePath",
    "scriptExtension",
    "splitTarget",
]


class BadRequestPath(ValueError):
    """
    The request path cannot name anything on a filesystem (it decodes to a
    NUL byte); the client gets a 400.
    """


@dataclass(frozen=True, slots=True)
class ResolvedPath:
    """
    A request path after decoding and dot-segment resolution.

    @ivar segments: The path's segments below the root, each a C{str} that
        the C{os} functions accept (undecodable bytes travel as surrogates,
        as they do in C{os.listdir} results).
    @ivar trailingSlash: Whether the decoded path ended with C{/}; a file
        asked for with one is not found, a directory without one is
        redirected.
    """

    segments: tuple[str, ...]
    trailingSlash: bool


def splitTarget(target: bytes) -> tuple[bytes, bytes | None]:
    """
    Split a raw request target into its path and query.

    An absolute-form target (C{http://host/p?q}, RFC 9112 section 3.2.2,
    which servers must accept) contributes only its path. A fragment is
    never sent by browsers, but if one arrives it is cut off, as http.server
    does.

    @return: C{(path, query)}; C{query} is L{None} when there is no C{?}.
    """
    target = target.split(b"#", 1)[0]
    lowered = target[:8].lower()
    if lowered.startswith((b"http://", b"https://")):
        rest = target.split(b"//", 1)[1]
        slash = rest.find(b"/")
        question = rest.find(b"?")
        if slash == -1 or (question != -1 and question < slash):
            target = b"/" + rest[question:] if question != -1 else b"/"
        else:
            target = rest[slash:]
    path, sep, query = target.partition(b"?")
    return path, (query if sep else None)


def collapseLeadingSlashes(path: bytes) -> bytes:
    """
    Reduce any run of leading slashes to one (gh-87389): a path that
    started with C{//} would otherwise turn into a C{Location: //evil.com/}
    open redirect when a slash is appended to it.
    """
    if path.startswith(b"//"):
        return b"/" + path.lstrip(b"/")
    return path


def decodePath(path: bytes) -> str:
    """
    Percent-decode a URL path exactly once.

    Bytes that are not UTF-8 decode to U+FFFD, as in http.server; names
    that http.server's listing linked through C{surrogatepass} escapes come
    back as the same surrogates, so every listed file can be fetched.

    @raise BadRequestPath: The decoded path contains a NUL.
    """
    raw = unquote_to_bytes(path)
    try:
        decoded = raw.decode("utf-8", "surrogatepass")
    except UnicodeDecodeError:
        decoded = raw.decode("utf-8", "replace")
    if "\x00" in decoded:
        raise BadRequestPath("NUL in request path")
    return decoded


def _isPlain(path: bytes) -> bool:
    """
    Whether C{path} needs no decoding and no resolution: absolute, ASCII,
    with no escapes, no dot segments and no empty segments. Most requests
    are like this, and they skip the general algorithm.
    """
    return (
        path.startswith(b"/")
        and path.isascii()
        and b"%" not in path
        and b"/." not in path
        and b"//" not in path
    )


def resolvePath(path: bytes) -> ResolvedPath:
    """
    Resolve a raw (still percent-encoded) URL path into segments below the
    root.

    C{..} is resolved lexically and can never climb above the root, however
    it is spelt (C{..}, C{%2e%2e}, C{..%2f}); a segment that would have
    climbed is dropped, as http.server does.

    @raise BadRequestPath: See L{decodePath}.
    """
    if _isPlain(path) and b"\x00" not in path:
        text = path.decode("ascii")
        return ResolvedPath(
            tuple(word for word in text.split("/") if word), text.endswith("/")
        )
    return _resolveDecoded(decodePath(path))


def _resolveDecoded(decoded: str) -> ResolvedPath:
    """
    The general algorithm, on a decoded path.
    """
    trailingSlash = decoded.endswith("/")
    segments = tuple(
        word
        for word in posixpath.normpath(decoded).split("/")
        if word not in ("", ".", "..")
    )
    return ResolvedPath(segments, trailingSlash)


# http.server's CGIHTTPRequestHandler.cgi_directories.
DEFAULT_CGI_DIRECTORIES: tuple[str, ...] = ("/cgi-bin", "/htbin")


def normaliseCGIDirectory(urlPath: str) -> str:
    """
    Check a CGI directory's URL path and give its canonical spelling (no
    trailing slash), the form dispatch compares decoded request paths with.

    C{/} itself is accepted, as http.server's C{cgi_directories = ['/']}:
    every top-level file is then a script (see L{cgiDirectorySegments}).

    @raise ValueError: With a message fit for the command line.
    """
    if not urlPath.startswith("/"):
        raise ValueError(f"CGI directory {urlPath!r} must start with '/'")
    if any(ch in urlPath for ch in "?#%\\") or not urlPath.isprintable():
        raise ValueError(
            f"CGI directory {urlPath!r} must be a plain path "
            "(no '?', '#', '%', '\\' or control characters)"
        )
    if urlPath == "/":
        return urlPath
    try:
        resolved = resolvePath(urlPath.encode("utf-8", "surrogateescape"))
    except BadRequestPath:
        raise ValueError(f"CGI directory {urlPath!r} is not a valid path") from None
    canonical = "/" + "/".join(resolved.segments)
    if not resolved.segments or canonical != urlPath.rstrip("/"):
        raise ValueError(
            f"CGI directory {urlPath!r} must be '/' or a normalised path "
            "(no '.', '..' or empty segments)"
        )
    return canonical


def cgiDirectorySegments(directory: str) -> tuple[str, ...]:
    """
    The segments of a canonical CGI directory (see L{normaliseCGIDirectory}):
    C{()} for C{/}.
    """
    return tuple(word for word in directory.split("/") if word)


# What counts as a script by its name (--cgi-ext). Both halves ask these
# functions: CGI dispatch to decide what runs, the static half to refuse
# what it must never send, so the two can never disagree on a name.


def foldName(word: str) -> str:
    """
    A path segment as a case-insensitive file system compares it (macOS,
    Windows, FAT and exFAT volumes, ext4 C{casefold} directories): there,
    C{/CGI-BIN/s.sh} is the script's file, and C{X.CGI} is C{x.cgi}.
    """
    if word.isascii():
        return word.lower()
    return unicodedata.normalize("NFC", word).casefold()


def normaliseCGIExtension(extension: str) -> str:
    """
    Check a script extension (C{--cgi-ext}, C{--cgi-interpreter}) and give
    the form names are compared with: folded, as Apache's C{AddHandler} and
    C{twistd web}'s processors compare extensions case-insensitively.

    @raise ValueError: It is not a dot followed by a name (no further dot,
        no slash), with a message fit for the command line: the rule
        L{Settings <twisted_cgiserve.Settings>} checks.
    """
    if (
        len(extension) < 2
        or not extension.startswith(".")
        or any(ch in extension[1:] for ch in "./\\\x00")
        or not extension.isprintable()
    ):
        raise ValueError(f"CGI extension {extension!r} must be a dot and a name")
    return foldName(extension)


def scriptExtension(name: str, extensions: tuple[str, ...]) -> str | None:
    """
    The extension among C{extensions} (folded, see L{normaliseCGIExtension})
    that makes the file C{name} a script, if any: C{name} ends with it, in
    any case. A file named only C{.cgi} counts too: Apache takes it for a
    script, and a rule that let it be served would serve a script's source.
    """
    if not extensions:
        return None
    folded = foldName(name)
    for extension in extensions:
        if folded.endswith(extension):
            return extension
    return None


def hidesScript(name: str, extensions: tuple[str, ...]) -> bool:
    """
    Whether the static half must refuse the file C{name} because it is, or
    may be on some file system, a script of C{extensions}: a script's own
    name in any case (L{scriptExtension}), or one with trailing dots or
    spaces (C{x.cgi.}, which Windows and SMB shares resolve to C{x.cgi}).
    A name only I{containing} the extension (C{x.cgi.txt}) is no script.
    """
    if not extensions:
        return False
    return (
        scriptExtension(name, extensions) is not None
        or scriptExtension(name.rstrip(". "), extensions) is not None
    )
