# -*- test-case-name: tests.e2e.test_cgi -*-
"""
The CGI half of the served tree: a request below a CGI directory, already
resolved, becomes a script run.
"""

from __future__ import annotations

import os
import pwd
import stat
from io import BytesIO
from typing import Any
from urllib.parse import unquote_to_bytes

from twisted.internet.defer import Deferred, DeferredList
from twisted.logger import Logger
from twisted.web.iweb import IRequest
from twisted.web.resource import IResource
from twisted.web.server import NOT_DONE_YET

from twisted_cgiserve._cgi.environ import (
    CGIEnvironmentSettings,
    ScriptRequest,
    buildEnvironment,
)
from twisted_cgiserve._cgi.locate import CGIRefusal, ScriptLocation, locateScript
from twisted_cgiserve._cgi.process import ScriptProcess
from twisted_cgiserve._cgi.protocol import ScriptRun
from twisted_cgiserve._http.errors import sendError
from twisted_cgiserve._http.paths import ResolvedPath
from twisted_cgiserve._version import SERVER_SOFTWARE

__all__ = ["MAX_LOCAL_REDIRECTS", "CGIHandler"]

_log = Logger(namespace="cgiserve.cgi")

# Local redirects followed for one request before it is refused (lighttpd's
# limit).
MAX_LOCAL_REDIRECTS = 5


def _bodyLength(request: IRequest) -> int | None:
    """
    The request body's length after de-chunking, or L{None} when the request
    has no body (no Content-Length and no Transfer-Encoding).
    """
    headers = request.requestHeaders
    if not (
        headers.hasHeader(b"content-length") or headers.hasHeader(b"transfer-encoding")
    ):
        return None
    content = getattr(request, "content", None)
    if content is None:
        return 0
    content.seek(0, os.SEEK_END)
    length: int = content.tell()
    content.seek(0)
    return length


def _mountPrefix(request: IRequest) -> str:
    """
    The decoded URL path the served tree is mounted at ("" at a site's
    root), for C{SCRIPT_NAME}.
    """
    prepath = getattr(request, "prepath", None) or []
    if not prepath:
        return ""
    return "/" + "/".join(os.fsdecode(segment) for segment in prepath)


def scriptUser(name: str | None) -> tuple[int, int] | None:
    """
    The user and group scripts run as when the server runs as root (as
    http.server ran them as C{nobody}); L{None} when no user is configured.
    Whether to switch is decided when a script starts: twistd's C{--uid}
    drops the server's privileges after the tree is built.

    @raise KeyError: There is no such user.
    """
    if name is None:
        return None
    entry = pwd.getpwuid(int(name)) if name.isdigit() else pwd.getpwnam(name)
    return entry.pw_uid, entry.pw_gid


def _runnableBy(filename: str, user: tuple[int, int]) -> bool:
    """
    Whether C{user} may execute C{filename} (root's own C{os.access} would
    say yes to any execute bit).
    """
    st = os.stat(filename)
    uid, gid = user
    if st.st_uid == uid:
        return bool(st.st_mode & stat.S_IXUSR)
    if st.st_gid == gid:
        return bool(st.st_mode & stat.S_IXGRP)
    return bool(st.st_mode & stat.S_IXOTH)


class CGIHandler:
    """
    Run the scripts below a served directory's CGI directories.
    """

    def __init__(  # noqa: PLR0917
        self,
        root: str,
        environment: CGIEnvironmentSettings,
        user: tuple[int, int] | None,
        siteRoot: IResource,
        reactor: Any = None,
        timeout: float = 0,
        maxProcesses: int = 0,
    ) -> None:
        self.root = root
        self.environment = environment
        self.user = user
        self.timeout = timeout
        self.maxProcesses = maxProcesses
        # Every run until nothing of its process group is left: what a
        # script leaves behind after its response counts against
        # maxProcesses until it is gone.
        self.running: set[ScriptRun] = set()
        self._siteRoot = siteRoot
        if reactor is None:
            from twisted.internet import reactor as globalReactor  # noqa: PLC0415

            reactor = globalReactor
        self._reactor = reactor

    def render(self, request: IRequest, resolved: ResolvedPath, directory: str) -> int:
        """
        Answer C{request}, which lies below the CGI directory C{directory}.
        """
        try:
            location = locateScript(self.root, resolved, directory)
            user = self._switchTo()
            if user is not None and not _runnableBy(location.filename, user):
                raise CGIRefusal(
                    403, f"CGI script is not executable ({location.scriptName!r})"
                )
        except CGIRefusal as refusal:
            return sendError(request, refusal.code, refusal.message)
        if self.maxProcesses and len(self.running) >= self.maxProcesses:
            # Refuse before anything is started: a burst must not fork
            # without limit.
            request.setHeader(b"retry-after", b"1")
            return sendError(
                request,
                503,
                "Too many CGI scripts running",
                "The server is running as many CGI scripts as it may; try again",
            )
        if location.nph and not getattr(request, "clientproto", b"").startswith(
            b"HTTP/1."
        ):
            return sendError(
                request, 505, "NPH scripts need HTTP/1.x", "NPH scripts need HTTP/1.x"
            )
        return self._run(request, location, user)

    def _switchTo(self) -> tuple[int, int] | None:
        """
        The user to run scripts as: the configured one, while the server
        runs as root.
        """
        if self.user is None or os.geteuid() != 0 or self.user[0] == 0:
            return None
        return self.user

    def _run(
        self, request: IRequest, location: ScriptLocation, user: tuple[int, int] | None
    ) -> int:
        prefix = _mountPrefix(request)
        script = ScriptRequest(
            scriptName=prefix + location.scriptName,
            pathInfo=location.pathInfo,
            scriptFilename=location.filename,
            documentRoot=self.root,
            bodyLength=_bodyLength(request),
        )
        env, argv = buildEnvironment(request, script, self.environment, SERVER_SOFTWARE)
        run = ScriptRun(
            request,
            location.scriptName,
            self._localRedirect,
            self._reactor,
            nph=location.nph,
            timeout=self.timeout,
        )
        try:
            ScriptProcess(
                self._reactor,
                run,
                location.filename,
                [location.filename, *argv],
                environment=env,
                directory=os.path.dirname(location.filename),
                user=user,
            )
        except PermissionError as e:
            _log.error(
                "{script}: cannot be started: {error}",
                script=location.scriptName,
                error=e,
            )
            return sendError(
                request, 403, f"CGI script is not executable ({location.scriptName!r})"
            )
        except OSError as e:
            _log.error(
                "{script}: cannot be started: {error}",
                script=location.scriptName,
                error=e.strerror or e,
            )
            return sendError(request, 502, "Bad Gateway", "The CGI script failed")
        self.running.add(run)
        run.ended.addBoth(lambda _: self.running.discard(run))
        return NOT_DONE_YET

    def stopAll(self) -> Deferred[object]:
        """
        End every running script, and whatever is left of the process group
        of a script whose response is over (SIGTERM to the group, SIGKILL
        after a grace); fires when every group is gone and reaped.
        """
        runs = list(self.running)
        for run in runs:
            run.stop()
        ended: Deferred[object] = DeferredList(
            [run.ended for run in runs], consumeErrors=True
        ).addCallback(lambda _: None)
        return ended

    def _localRedirect(self, request: IRequest, location: bytes) -> None:
        """
        Serve C{location} (a path the script named) for this request, as a
        GET without a body, through the whole site (RFC 3875 section 6.2.2).
        """
        count = getattr(request, "_cgiserveLocalRedirects", 0) + 1
        setattr(request, "_cgiserveLocalRedirects", count)  # noqa: B010
        if count > MAX_LOCAL_REDIRECTS:
            _log.error(
                "More than {n} CGI local redirects for {uri!r}; last to {location!r}",
                n=MAX_LOCAL_REDIRECTS,
                uri=request.uri,
                location=location,
            )
            sendError(request, 500, "Too many local redirects")
            return
        if getattr(request, "originalRequestLine", None) is None:
            setattr(  # noqa: B010
                request,
                "originalRequestLine",
                b"%s %s %s"
                % (
                    request.method,
                    request.uri,
                    getattr(request, "clientproto", b"HTTP/1.0"),
                ),
            )
        if request.method != b"HEAD":
            request.method = b"GET"
        request.uri = location
        path = location.split(b"?", 1)[0]
        setattr(request, "path", path)  # noqa: B010
        headers = request.requestHeaders
        for name in (b"content-length", b"content-type", b"transfer-encoding"):
            headers.removeHeader(name)
        setattr(request, "content", BytesIO())  # noqa: B010
        site = getattr(request, "site", None)
        if site is None:
            resource = self._siteRoot
        else:
            request.prepath = []
            request.postpath = [unquote_to_bytes(s) for s in path[1:].split(b"/")]
            resource = site.getResourceFor(request)
        renderer = getattr(request, "render", None)
        if renderer is not None:
            renderer(resource)
        else:
            resource.render(request)
