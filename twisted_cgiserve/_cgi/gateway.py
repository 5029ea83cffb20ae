# -*- test-case-name: tests.cgi.test_gateway -*-
"""
The server's side of the gateway: a request below a CGI directory, already
resolved by the router, becomes a running script.

Three steps, in this order, each refusing with its own status: locating
the script (C{404}, C{403}; see L{locateScript}), admission under
C{--cgi-max-processes} (C{503} with C{Retry-After}, before anything is
started, so a burst cannot fork without limit), and spawning (C{403} or
C{502} when the script cannot be started). What the script then writes is
L{ScriptRun}'s; serving the path of a local redirect is L{LocalRedirect}'s.
"""

from __future__ import annotations

import errno
import os
from collections.abc import Mapping, Sequence
from typing import TYPE_CHECKING, Any, Protocol

from twisted.internet.defer import Deferred, DeferredList
from twisted.internet.interfaces import IProcessProtocol
from twisted.logger import Logger
from twisted.python.failure import Failure
from twisted.web.iweb import IRequest
from twisted.web.resource import IResource
from twisted.web.server import NOT_DONE_YET

from twisted_cgiserve._cgi.environ import (
    CGIEnvironmentSettings,
    ScriptRequest,
    buildEnvironment,
    mountPrefix,
    requestBodyLength,
)
from twisted_cgiserve._cgi.inspector import (
    OutputFailure,
    ScriptContext,
    debugApplies,
    sendDebugPage,
)
from twisted_cgiserve._cgi.locate import (
    CGIRefusal,
    ScriptClaim,
    ScriptLocation,
    checkRunnableAs,
    locateScript,
)
from twisted_cgiserve._cgi.privileges import runAs
from twisted_cgiserve._cgi.process import ScriptProcess, SpawnRefused
from twisted_cgiserve._cgi.protocol import ScriptRun
from twisted_cgiserve._cgi.redirect import LocalRedirect
from twisted_cgiserve._http.errors import sendError
from twisted_cgiserve._http.paths import ResolvedPath
from twisted_cgiserve._version import SERVER_SOFTWARE

if TYPE_CHECKING:
    # Only with --metrics is prometheus_client imported.
    from twisted_cgiserve._http.metrics import ServerMetrics

__all__ = ["ScriptGateway", "SpawnScript"]

_log = Logger(namespace="cgiserve.cgi")


class SpawnScript(Protocol):
    """
    Start a script process connected to C{protocol}, as L{ScriptProcess}
    does.
    """

    def __call__(
        self,
        reactor: Any,
        protocol: IProcessProtocol,
        executable: str,
        args: Sequence[str],
        *,
        environment: Mapping[str, str],
        directory: str,
        user: tuple[int, int] | None,
    ) -> object:
        """
        @raise OSError: The script could not be started.
        """


class ScriptGateway:
    """
    Run the scripts below a served directory's CGI directories, and keep
    track of them until each one, and whatever it started, is gone.

    @ivar running: Every run until nothing of its process group is left:
        what a script leaves behind after its response counts against
        C{maxProcesses} until it is gone.
    """

    def __init__(
        self,
        root: str,
        environment: CGIEnvironmentSettings,
        user: tuple[int, int] | None,
        siteRoot: IResource,
        reactor: Any = None,
        *,
        timeout: float = 0,
        maxProcesses: int = 0,
        spawn: SpawnScript = ScriptProcess,
        debug: str | None = None,
        metrics: ServerMetrics | None = None,
    ) -> None:
        """
        @param root: The served directory.
        @param user: The user and group scripts run as while the server runs
            as root (see L{scriptUser}).
        @param siteRoot: The resource that serves a local redirect of a
            request that came through no site (see L{LocalRedirect}).
        @param reactor: The reactor scripts are run with (default: the
            global one, imported only then).
        @param timeout: C{--cgi-timeout}: seconds without output before a
            script is ended (C{0}: never).
        @param maxProcesses: C{--cgi-max-processes}: the most runs alive at
            once (C{0}: no limit).
        @param spawn: What starts a script's process.
        @param debug: C{--cgi-debug}: L{None} (off), C{"local"} or C{"all"}
            (see L{debugApplies}).
        @param metrics: What counts runs, failures and refusals
            (C{--metrics}), or L{None}.
        """
        self.root = root
        self._metrics = metrics
        self.environment = environment
        self.user = user
        self.timeout = timeout
        self.maxProcesses = maxProcesses
        self.debug = debug
        self.running: set[ScriptRun] = set()
        self._redirect = LocalRedirect(siteRoot)
        self._spawn = spawn
        if reactor is None:
            from twisted.internet import reactor as globalReactor  # noqa: PLC0415

            reactor = globalReactor
        self._reactor = reactor

    def serve(
        self, request: IRequest, resolved: ResolvedPath, directory: ScriptClaim | str
    ) -> int:
        """
        Answer C{request}, whose path C{resolved} CGI dispatch took (its
        L{ScriptClaim}, or the CGI directory it lies below): locate its
        script, admit it, start it.

        @return: L{NOT_DONE_YET} once the script runs (it answers), or the
            body of the refusal already sent.
        """
        try:
            location = locateScript(self.root, resolved, directory)
            user = runAs(self.user, os.geteuid())
            if user is not None:
                checkRunnableAs(location, user)
        except CGIRefusal as refusal:
            return sendError(request, refusal.code, refusal.message)
        if not self._admits():
            if self._metrics is not None:
                self._metrics.cgiRefused()
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
            # An NPH script writes its own HTTP/1.x status line and headers.
            return sendError(
                request, 505, "NPH scripts need HTTP/1.x", "NPH scripts need HTTP/1.x"
            )
        return self._start(request, location, user)

    def _admits(self) -> bool:
        """
        Whether one more run fits under C{maxProcesses}.
        """
        return not self.maxProcesses or len(self.running) < self.maxProcesses

    def _start(
        self, request: IRequest, location: ScriptLocation, user: tuple[int, int] | None
    ) -> int:
        """
        Start the script at C{location} for C{request}, as C{user} if given,
        and track its run until it has ended.
        """
        script = ScriptRequest(
            scriptName=mountPrefix(request) + location.scriptName,
            pathInfo=location.pathInfo,
            scriptFilename=location.filename,
            documentRoot=self.root,
            bodyLength=requestBodyLength(request),
        )
        env, argv = buildEnvironment(request, script, self.environment, SERVER_SOFTWARE)
        executable, command = location.command(argv)
        debug = None
        if debugApplies(self.debug, request):
            debug = ScriptContext(
                mode=self.debug or "",
                scriptName=script.scriptName,
                filename=location.filename,
                argv=tuple(command),
                environment=dict(env),
                hidden=frozenset(name for name, _ in self.environment.setEnvironment),
            )
        run = ScriptRun(
            request,
            location.scriptName,
            self._redirect.follow,
            self._reactor,
            nph=location.nph,
            timeout=self.timeout,
            debug=debug,
            metrics=self._metrics,
        )
        try:
            transport = self._spawn(
                self._reactor,
                run,
                executable,
                command,
                environment=env,
                directory=os.path.dirname(location.filename),
                user=user,
            )
        except (SpawnRefused, OSError) as e:
            return self._notStarted(request, location.scriptName, debug, e)
        self.running.add(run)
        run.ended.addBoth(lambda _: self.running.discard(run))
        metrics = self._metrics
        if metrics is not None:
            # Running (as the cap counts) until its process group is gone.
            metrics.cgiRunning()
            run.ended.addBoth(lambda _: metrics.cgiEnded())
        started = getattr(transport, "started", None)
        if isinstance(started, Deferred):
            # The spawner answers later: a script it could not start gets
            # the answer it would have got at once.
            if metrics is not None:
                started.addCallback(lambda _: metrics.cgiStarted())
            started.addErrback(self._lateFailure, request, run, location, debug)
        elif metrics is not None:
            metrics.cgiStarted()
        return NOT_DONE_YET

    def _lateFailure(
        self,
        reason: Failure,
        request: IRequest,
        run: ScriptRun,
        location: ScriptLocation,
        debug: ScriptContext | None,
    ) -> None:
        """
        The spawner could not start the script it was sent: the run stops
        quietly, and the client, if it still waits, gets what L{_start}
        would have sent.
        """
        e = reason.value
        if not isinstance(e, SpawnRefused | OSError):
            e = OSError(errno.EIO, f"cannot be started: {e}")
        if run.notStarted():
            self._notStarted(request, location.scriptName, debug, e)
        else:
            _log.info(
                "{script}: not started ({error}), and not waited for",
                script=location.scriptName,
                error=e,
            )

    def _notStarted(
        self,
        request: IRequest,
        scriptName: str,
        debug: ScriptContext | None,
        e: SpawnRefused | OSError,
    ) -> int:
        """
        Answer a request whose script could not be started: C{503} (with
        C{Retry-After}) for the server-wide cap or no spawner, C{403} for a
        script that may not be run, C{502} (or the C{--cgi-debug} page) for
        any other exec error.
        """
        if isinstance(e, SpawnRefused):
            # The server-wide cap (the spawner counts every worker's
            # scripts), or no spawner for now.
            _log.warn("{script}: not started: {why}", script=scriptName, why=e)
            if self._metrics is not None:
                self._metrics.cgiRefused()
            request.setHeader(b"retry-after", b"1")
            return sendError(
                request,
                503,
                "Too many CGI scripts running",
                "The server is running as many CGI scripts as it may; try again",
            )
        if isinstance(e, PermissionError):
            _log.error(
                "{script}: cannot be started: {error}", script=scriptName, error=e
            )
            return sendError(
                request, 403, f"CGI script is not executable ({scriptName!r})"
            )
        _log.error(
            "{script}: cannot be started: {error}",
            script=scriptName,
            error=e.strerror or e,
        )
        if self._metrics is not None:
            self._metrics.cgiFailed()
        if debug is not None:
            failure = OutputFailure(
                code=502,
                message="Bad Gateway",
                why=f"The script could not be started: {e.strerror or e}.",
            )
            return sendDebugPage(
                request, debug, failure, ended="never started", stderr=b""
            )
        return sendError(request, 502, "Bad Gateway", "The CGI script failed")

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
