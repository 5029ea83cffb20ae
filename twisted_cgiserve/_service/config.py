# -*- test-case-name: tests.service.test_config -*-
"""
The server's configuration, once the command line is checked: everything
C{makeService} needs, and nothing that needs a reactor or reads a file
twistd's privileges might later forbid (the TLS files are named here and
read in C{makeService}, before twistd drops privileges).

Frozen and keyword-only, so that what the options said cannot change behind
the service's back and no field is ever set by position; without defaults,
so that the options' defaults (C{twistd cgiserve --help} shows them) are the
only ones.
"""

from __future__ import annotations

from dataclasses import dataclass

from twisted_cgiserve._service.ports import ListenSpec
from twisted_cgiserve._settings import Settings

__all__ = ["ServerConfig"]


@dataclass(frozen=True, kw_only=True)
class ServerConfig:
    """
    What C{twistd cgiserve}'s options describe.

    @ivar directory: The absolute path of the served directory.
    @ivar settings: The served tree's settings (CGI directories, limits,
        environment).
    @ivar listen: Where to listen, in the order given; at least one.
    @ivar accessLog: The C{--access-log} path, C{"-"} for standard output,
        or L{None} for twistd's log.
    @ivar idleTimeout: Seconds an idle connection is kept; 0 for no limit.
    @ivar headerTimeout: Seconds a client has to send a request's headers;
        0 for no limit.
    @ivar sendTimeout: Seconds a response may make no progress; 0 for no
        limit.
    @ivar maxBodySize: The largest request body accepted, in bytes; 0 for
        no limit.
    @ivar shutdownGrace: Seconds requests in progress get on C{SIGTERM}.
    @ivar headers: Header lines added to successful responses, in order.
    @ivar authFile: The htpasswd file whose users may make requests, or
        L{None} for no authentication.
    @ivar authRealm: The realm clients are asked to authenticate for.
    @ivar authPaths: URL path prefixes that require authentication; empty
        for all of them.
    @ivar workers: How many worker processes serve (C{--workers}); 1 for
        one process and no supervisor.
    """

    directory: str
    settings: Settings
    listen: tuple[ListenSpec, ...]
    accessLog: str | None
    idleTimeout: float
    headerTimeout: float
    sendTimeout: float
    maxBodySize: int
    shutdownGrace: float
    headers: tuple[tuple[bytes, bytes], ...]
    authFile: str | None
    authRealm: str
    authPaths: tuple[str, ...]
    workers: int
