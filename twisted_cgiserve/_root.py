# -*- test-case-name: tests.test_root -*-
"""
The served tree: one resource that resolves each request once and hands it
to the static half or the CGI half.
"""

from __future__ import annotations

import os
from typing import TYPE_CHECKING, Any

from twisted.internet.defer import Deferred
from twisted.web.iweb import IRequest
from twisted.web.resource import IResource, Resource

from twisted_cgiserve._cgi.environ import CGIEnvironmentSettings, inheritedEnvironment
from twisted_cgiserve._cgi.gateway import ScriptGateway, SpawnScript
from twisted_cgiserve._cgi.locate import ScriptRules
from twisted_cgiserve._cgi.privileges import scriptUser
from twisted_cgiserve._http.errors import sendError
from twisted_cgiserve._http.paths import BadRequestPath, resolvePath
from twisted_cgiserve._settings import Settings
from twisted_cgiserve._static.resource import (
    STATIC_METHODS,
    StaticResource,
    refuseMethod,
    resourcePath,
)

if TYPE_CHECKING:
    # Only with --metrics is prometheus_client imported.
    from twisted_cgiserve._http.metrics import ServerMetrics
    from twisted_cgiserve._http.metricspage import MetricsPage

__all__ = ["buildRoot", "makeRootResource"]


class _Root(Resource):
    """
    The root of a served directory.
    """

    isLeaf = True

    def __init__(
        self,
        directory: str,
        settings: Settings,
        user: tuple[int, int] | None,
        reactor: Any = None,
        spawn: SpawnScript | None = None,
        *,
        metrics: ServerMetrics | None = None,
        metricsPage: MetricsPage | None = None,
    ) -> None:
        """
        @param user: The user and group scripts run as, already looked up
            (see L{scriptUser}).
        @param spawn: What starts scripts: the server's CGI spawner, or
            L{None} for the gateway's default, the process itself (as an
            embedded tree does).
        @param metrics: What counts the scripts' runs (C{--metrics}).
        @param metricsPage: C{--metrics}: its page, which takes its path
            before any file or script of that name.
        """
        super().__init__()
        self._metricsPage = metricsPage
        self._settings = settings
        self._directory = directory
        # What counts as a script: decided here, on the one resolved path,
        # for the CGI half; the static half refuses the same names.
        self._rules = ScriptRules.configured(
            settings.cgiDirectories, settings.cgiExtensions, settings.cgiInterpreters
        )
        self._static = StaticResource(
            directory,
            indexNames=settings.indexNames,
            listDirectories=settings.listDirectories,
            mimeTypes=settings.mimeTypes,
            # CGI dispatch takes these paths before the static half sees
            # them, except spellings only a case-insensitive file system
            # equates (/CGI-BIN/x): refused there too. With CGI off they
            # are plain directories.
            cgiDirectories=settings.cgiDirectories if settings.cgiEnabled else (),
            # Files named as scripts are never sent, even with CGI off: the
            # extension says they hold code, not content.
            cgiExtensions=settings.cgiExtensions,
            reactor=reactor,
        )
        self._cgi = ScriptGateway(
            directory,
            CGIEnvironmentSettings(
                passAuthorization=settings.cgiPassAuthorization,
                passEnvironment=settings.cgiPassEnvironment,
                setEnvironment=settings.cgiSetEnvironment,
                # Read once, at start: a script sees the environment the
                # server was started with, whatever changes it later.
                inherited=(
                    inheritedEnvironment(os.environ)
                    if settings.cgiInheritEnvironment
                    else ()
                ),
            ),
            user,
            self,
            reactor,
            timeout=settings.cgiTimeout,
            maxProcesses=settings.cgiMaxProcesses,
            debug=settings.cgiDebug,
            metrics=metrics,
            **({} if spawn is None else {"spawn": spawn}),
        )

    def stopScripts(self) -> Deferred[object]:
        """
        End every running CGI script; fires when all have ended.
        """
        return self._cgi.stopAll()

    def streamsBody(self, request: IRequest) -> bool:
        """
        Whether C{request}'s body is streamed to its script as it arrives
        (asked at the end of its head, see C{_http.bodystream}): the request
        is the CGI half's, as L{render} will decide.
        """
        if not self._settings.cgiEnabled:
            return False
        try:
            resolved = resolvePath(resourcePath(request))
        except BadRequestPath:
            return False
        if self._metricsPage is not None and self._metricsPage.matches(resolved):
            return False
        return self._rules.claim(self._directory, resolved) is not None

    def render(self, request: IRequest) -> int:
        """
        Hand C{request} to the CGI half or the static half.

        The method decides first wherever it can, so that this resource and
        a L{StaticResource} over the same tree answer alike: a GET or HEAD
        with a malformed path (a decoded NUL) is C{400}; any other method is
        http.server's C{501} unless the path is a script's (below a CGI
        directory, or with a script extension), as scripts take every
        method. Only that case needs the path resolved before the method is
        judged, and a malformed path names no script, so it is below no CGI
        directory: C{PUT /%00} and C{POST /cgi-bin/%00} are C{501}, as from
        L{StaticResource}.
        """
        static = request.method in STATIC_METHODS
        settings = self._settings
        if not (static or settings.cgiEnabled):
            return refuseMethod(request)
        try:
            resolved = resolvePath(resourcePath(request))
        except BadRequestPath:
            if not static:
                return refuseMethod(request)
            return sendError(request, 400, "Bad request path")
        if self._metricsPage is not None and self._metricsPage.matches(resolved):
            # However the path is spelt; methods as for a file.
            if not static:
                return refuseMethod(request)
            return self._metricsPage.render(request)
        if settings.cgiEnabled:
            claim = self._rules.claim(self._directory, resolved)
            if claim is not None:
                return self._cgi.serve(request, resolved, claim)
        if not static:
            return refuseMethod(request)
        return self._static.renderResolved(request, resolved)


def makeRootResource(
    directory: str, settings: Settings | None = None, reactor: Any = None
) -> IResource:
    """
    The whole tree for serving C{directory}: static files everywhere, CGI
    scripts under the CGI directories. Mount it at any path of a Twisted
    resource tree, or serve it from a L{twisted.web.server.Site}.

    @param reactor: The reactor scripts are run with (default: the global
        one).
    @raise ValueError: C{directory} is not a directory, or the CGI user does
        not exist.
    """
    if not os.path.isdir(directory):
        raise ValueError(f"{directory!r} is not a directory")
    settings = settings or Settings()
    user = None
    if settings.cgiEnabled:
        # Only the lookup: a KeyError from anywhere else is a bug to see,
        # not a missing user.
        try:
            user = scriptUser(settings.cgiUser)
        except KeyError:
            raise ValueError(f"no such user: {settings.cgiUser!r}") from None
    return buildRoot(directory, settings, user, reactor)


def buildRoot(
    directory: str,
    settings: Settings,
    user: tuple[int, int] | None,
    reactor: Any = None,
    spawn: SpawnScript | None = None,
    *,
    metrics: ServerMetrics | None = None,
    metricsPage: MetricsPage | None = None,
) -> _Root:
    """
    The tree of L{makeRootResource}, with the checks already made, and
    scripts started by C{spawn}: C{twistd cgiserve} hands in its CGI
    spawner's, and its C{--metrics} counters and page.
    """
    return _Root(
        os.path.abspath(directory),
        settings,
        user,
        reactor,
        spawn,
        metrics=metrics,
        metricsPage=metricsPage,
    )
