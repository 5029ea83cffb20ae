# -*- test-case-name: tests.test_settings -*-
"""
The settings of a served tree, shared by the command line and embedders.
"""

from __future__ import annotations

from dataclasses import dataclass

from twisted_cgiserve._http.paths import DEFAULT_CGI_DIRECTORIES, normaliseCGIDirectory

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
