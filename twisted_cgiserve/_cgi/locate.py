# -*- test-case-name: tests.cgi.test_locate -*-
"""
Which script a request below a CGI directory runs, decided on the same
resolved path the static half uses.

http.server walked the request path to find the script with one decoding
and located the file with another; C{/cgi-bin/%252e%252e/x} then executed
files outside the CGI directories. Here the path is decoded once and its dot
segments resolved before anything else looks at it, so the script is always
a file lexically inside the CGI directory it was matched against.
"""

from __future__ import annotations

import os
import stat
from dataclasses import dataclass
from functools import lru_cache

from twisted_cgiserve._http.paths import ResolvedPath

__all__ = ["CGIRefusal", "ScriptLocation", "cgiDirectoryFor", "locateScript"]


class CGIRefusal(Exception):
    """
    The request names no runnable script; the client gets C{code} with
    C{message} (http.server's texts).
    """

    def __init__(self, code: int, message: str) -> None:
        super().__init__(code, message)
        self.code = code
        self.message = message


@dataclass(frozen=True)
class ScriptLocation:
    """
    A located script.

    @ivar scriptName: Its URL path below the served root, decoded.
    @ivar pathInfo: The decoded path after it, empty or starting with C{/}.
    @ivar filename: Its filesystem path.
    """

    scriptName: str
    pathInfo: str
    filename: str

    @property
    def nph(self) -> bool:
        """
        Whether the script is a non-parsed-header script (RFC 3875 section
        5), marked by the conventional C{nph-} name prefix.
        """
        return os.path.basename(self.filename).startswith("nph-")


def cgiDirectoryFor(
    resolved: ResolvedPath, cgiDirectories: tuple[str, ...]
) -> str | None:
    """
    The CGI directory a resolved request path lies in, if any.

    The match is on the normalised, once-decoded path and is
    case-sensitive, as http.server's: C{/cgi-bin%2fx}, C{/a/../cgi-bin/x}
    and C{//cgi-bin/x} all match C{/cgi-bin}. The directory itself without
    its slash does not match; the static half redirects it, as http.server
    does.
    """
    segments = resolved.segments
    for directory in cgiDirectories:
        parts = _segments(directory)
        depth = len(parts)
        if segments[:depth] == parts and (
            len(segments) > depth or resolved.trailingSlash
        ):
            return directory
    return None


@lru_cache(maxsize=64)
def _segments(directory: str) -> tuple[str, ...]:
    return tuple(directory.strip("/").split("/"))


def _isExecutable(st: os.stat_result, filename: str) -> bool:
    """
    Whether the script may be executed: by the server's user, and, when the
    server runs as root (which may execute anything with any execute bit),
    by someone.
    """
    return bool(st.st_mode & 0o111) and os.access(filename, os.X_OK)


def locateScript(root: str, resolved: ResolvedPath, directory: str) -> ScriptLocation:
    """
    Find the script for C{resolved}, which lies below the CGI directory
    C{directory}.

    Directories below the CGI directory nest (C{/cgi-bin/tools/x.py},
    bpo-21323): the walk takes path segments while they name directories,
    the next one is the script, and the rest is C{PATH_INFO}.

    @raise CGIRefusal: No script there (404), not a regular file (403), or
        not executable (403).
    """
    segments = resolved.segments
    depth = len(directory.strip("/").split("/"))
    index = depth
    while index < len(segments) and os.path.isdir(
        os.path.join(root, *segments[: index + 1])
    ):
        index += 1
    scriptSegments = segments[: index + 1]
    scriptName = "/" + "/".join(scriptSegments)
    if index >= len(segments):
        # The request names a directory (/cgi-bin/, /cgi-bin/tools/): never
        # listed.
        raise CGIRefusal(403, f"CGI script is not a plain file ({scriptName + '/'!r})")
    filename = os.path.join(root, *scriptSegments)
    rest = segments[index + 1 :]
    pathInfo = "/" + "/".join(rest) if rest else ""
    if rest and resolved.trailingSlash:
        pathInfo += "/"
    elif not rest and resolved.trailingSlash:
        pathInfo = "/"
    try:
        st = os.stat(filename)
    except (OSError, ValueError):
        raise CGIRefusal(404, f"No such CGI script ({scriptName!r})") from None
    if not stat.S_ISREG(st.st_mode):
        raise CGIRefusal(403, f"CGI script is not a plain file ({scriptName!r})")
    if not _isExecutable(st, filename):
        raise CGIRefusal(403, f"CGI script is not executable ({scriptName!r})")
    return ScriptLocation(scriptName, pathInfo, filename)
