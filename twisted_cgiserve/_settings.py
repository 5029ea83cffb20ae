# -*- test-case-name: tests.test_settings -*-
"""
The settings of a served tree, shared by the command line and embedders.
"""

from __future__ import annotations

import os
from dataclasses import dataclass

from twisted_cgiserve._http.paths import DEFAULT_CGI_DIRECTORIES, normaliseCGIDirectory
from twisted_cgiserve._static.mime import checkMediaType

__all__ = ["Settings"]


# What systemd tells the server alone: a script with NOTIFY_SOCKET could
# report the service ready or stopping; one with LISTEN_* or the credentials
# directory could take the server's sockets or keys.
_SERVICE_MANAGER_VARIABLES = frozenset(
    {
        "NOTIFY_SOCKET",
        "WATCHDOG_PID",
        "WATCHDOG_USEC",
        "CREDENTIALS_DIRECTORY",
        "JOURNAL_STREAM",
        "INVOCATION_ID",
    }
)


def _checkVariableName(name: str) -> None:
    """
    @raise ValueError: C{name} cannot be an environment variable's name.
    """
    if not name or "=" in name or "\x00" in name or not name.isprintable():
        raise ValueError(f"{name!r} is not a valid environment variable name")


@dataclass(frozen=True, kw_only=True)
class Settings:
    """
    How a directory is served.

    Every field is a keyword argument: ten fields, several of them tuples of
    strings or booleans side by side, are too easy to pass in the wrong
    order, and keywords let fields be added or reordered without breaking
    a caller.

    @ivar cgiDirectories: URL paths (as C{/cgi-bin}) below which files are
        run as CGI scripts and never served as files.
    @ivar cgiEnabled: Whether CGI directories are special at all; with
        C{False} they are ordinary directories.
    @ivar indexNames: Files tried, in order, for a directory.
    @ivar listDirectories: Whether a directory without an index file is
        listed.
    @ivar cgiPassAuthorization: Give scripts the C{Authorization} header as
        C{HTTP_AUTHORIZATION}.
    @ivar cgiPassEnvironment: Names of the server's environment variables
        passed on to scripts (when set).
    @ivar cgiSetEnvironment: C{(name, value)} pairs set in every script's
        environment.
    @ivar cgiUser: The user (name or number) scripts run as when the server
        runs as root; ignored otherwise. L{None} runs them as root.
    @ivar cgiTimeout: Seconds a script may go without writing output before
        it is ended (0 for no limit).
    @ivar cgiMaxProcesses: The most scripts running at once; more requests
        get 503 (0 for no limit).
    @ivar cgiInheritEnvironment: Give scripts the server's whole environment,
        as http.server did, less what only the server may see (systemd's
        variables, the credentials directory) and names that could pose as
        the request's (C{HTTP_*}, C{CONTENT_*}, RFC 3875's). Off by
        default: it hands every script whatever secrets the server's
        environment holds.
    @ivar cgiExtensions: File extensions (as C{.cgi}) that make a file a
        script wherever it is, as Apache's C{AddHandler cgi-script}.
    @ivar cgiInterpreters: C{(extension, interpreter)} pairs, as lighttpd's
        C{cgi.assign}: a script with that extension is run by that program
        (an absolute path), and needs neither the execute bit nor C{#!}.
    @ivar cgiDebug: When a script fails, show the client what it did (its
        standard error, exit status, environment) instead of the bare error
        page: L{None} (never, the default), C{"local"} (loopback clients
        only) or C{"all"}.
    @ivar mimeTypes: C{(extension, type)} pairs that override the content
        type of files with that extension.
    """

    cgiDirectories: tuple[str, ...] = DEFAULT_CGI_DIRECTORIES
    cgiEnabled: bool = True
    indexNames: tuple[str, ...] = ("index.html", "index.htm")
    listDirectories: bool = True
    cgiPassAuthorization: bool = False
    cgiPassEnvironment: tuple[str, ...] = ()
    cgiSetEnvironment: tuple[tuple[str, str], ...] = ()
    cgiUser: str | None = "nobody"
    cgiTimeout: float = 60.0
    cgiMaxProcesses: int = 50
    cgiInheritEnvironment: bool = False
    cgiExtensions: tuple[str, ...] = ()
    cgiInterpreters: tuple[tuple[str, str], ...] = ()
    cgiDebug: str | None = None
    mimeTypes: tuple[tuple[str, str], ...] = ()

    def __post_init__(self) -> None:
        object.__setattr__(
            self,
            "cgiDirectories",
            tuple(normaliseCGIDirectory(d) for d in self.cgiDirectories),
        )
        if self.cgiTimeout < 0 or self.cgiMaxProcesses < 0:
            raise ValueError("CGI timeout and process limit must not be negative")
        for name in self.cgiPassEnvironment:
            _checkVariableName(name)
            if name in _SERVICE_MANAGER_VARIABLES or name.startswith("LISTEN_"):
                raise ValueError(
                    f"{name} is systemd's message to the server and is never "
                    "passed to scripts"
                )
        for name, value in self.cgiSetEnvironment:
            _checkVariableName(name)
            if "\x00" in value:
                raise ValueError(f"the value of {name} contains a NUL byte")
        for name in self.indexNames:
            # A name is joined to the requested directory: anything but one
            # plain file name could reach outside the served tree.
            if not name or name in (".", "..") or any(c in name for c in "/\0"):
                raise ValueError(
                    f"the index name {name!r} must be a file name, without '/'"
                )
        for extension in self.cgiExtensions:
            _checkExtension(extension, "CGI extension")
        for extension, interpreter in self.cgiInterpreters:
            _checkExtension(extension, "CGI interpreter extension")
            if not os.path.isabs(interpreter):
                raise ValueError(
                    f"the interpreter {interpreter!r} for {extension} must be an "
                    "absolute path"
                )
            if not (os.path.isfile(interpreter) and os.access(interpreter, os.X_OK)):
                raise ValueError(
                    f"the interpreter {interpreter!r} for {extension} is not an "
                    "executable file"
                )
        if self.cgiDebug not in (None, "local", "all"):
            raise ValueError(
                f"CGI debug {self.cgiDebug!r} must be 'local' or 'all' (or None)"
            )
        for extension, contentType in self.mimeTypes:
            _checkExtension(extension, "MIME type extension")
            try:
                checkMediaType(contentType)
            except ValueError:
                raise ValueError(
                    f"the MIME type {contentType!r} for {extension} is not "
                    "'type/subtype' (parameters allowed: "
                    "'text/plain; charset=utf-8')"
                ) from None


def _checkExtension(extension: str, what: str) -> None:
    """
    @raise ValueError: C{extension} is not a file name extension: a dot and
        at least one character, no further dot, no slash.
    """
    if (
        not extension.startswith(".")
        or len(extension) < 2
        or any(c in extension[1:] for c in "./\\\0")
        or not extension.isprintable()
    ):
        raise ValueError(f"{what} {extension!r} must be a dot and a name, as '.cgi'")
