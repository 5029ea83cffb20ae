# -*- test-case-name: tests.test_tap -*-
"""
The settings of a served tree, shared by the command line and embedders.
"""

from __future__ import annotations

from dataclasses import dataclass

from twisted_cgiserve._paths import BadRequestPath, resolvePath

__all__ = ["Settings", "normaliseCGIDirectory"]


def normaliseCGIDirectory(urlPath: str) -> str:
    """
    Check a CGI directory's URL path and give its canonical spelling (no
    trailing slash), the form dispatch compares decoded request paths with.

    @raise ValueError: With a message fit for the command line.
    """
    if not urlPath.startswith("/"):
        raise ValueError(f"CGI directory {urlPath!r} must start with '/'")
    if any(ch in urlPath for ch in "?#%\\") or not urlPath.isprintable():
        raise ValueError(
            f"CGI directory {urlPath!r} must be a plain path "
            "(no '?', '#', '%', '\\' or control characters)"
        )
    try:
        resolved = resolvePath(urlPath.encode("utf-8", "surrogateescape"))
    except BadRequestPath:
        raise ValueError(f"CGI directory {urlPath!r} is not a valid path") from None
    canonical = "/" + "/".join(resolved.segments)
    if not resolved.segments or canonical != urlPath.rstrip("/"):
        raise ValueError(
            f"CGI directory {urlPath!r} must be a normalised path below '/' "
            "(no '.', '..' or empty segments)"
        )
    return canonical


@dataclass(frozen=True)
class Settings:
    """
    How a directory is served.

    @ivar cgiDirectories: URL paths (as C{/cgi-bin}) below which files are
        run as CGI scripts and never served as files.
    @ivar cgiEnabled: Whether CGI directories are special at all; with
        C{False} they are ordinary directories.
    @ivar indexNames: Files tried, in order, for a directory.
    @ivar listDirectories: Whether a directory without an index file is
        listed.
    """

    cgiDirectories: tuple[str, ...] = ("/cgi-bin", "/htbin")
    cgiEnabled: bool = True
    indexNames: tuple[str, ...] = ("index.html", "index.htm")
    listDirectories: bool = True

    def __post_init__(self) -> None:
        object.__setattr__(
            self,
            "cgiDirectories",
            tuple(normaliseCGIDirectory(d) for d in self.cgiDirectories),
        )
