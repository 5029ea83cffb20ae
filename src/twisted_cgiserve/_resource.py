# -*- test-case-name: tests.test_resource -*-
"""
The served tree: one resource that resolves each request once and hands it
to the static half or the CGI half.
"""

from __future__ import annotations

import os

from twisted.web.iweb import IRequest
from twisted.web.resource import IResource, Resource

from twisted_cgiserve._cgidispatch import cgiDirectoryFor
from twisted_cgiserve._errors import sendError
from twisted_cgiserve._paths import BadRequestPath, resolvePath
from twisted_cgiserve._settings import Settings
from twisted_cgiserve._static import StaticResource, refuseMethod, resourcePath

__all__ = ["makeRootResource"]


class _Root(Resource):
    """
    The root of a served directory.
    """

    isLeaf = True

    def __init__(self, directory: str, settings: Settings) -> None:
        super().__init__()
        self._settings = settings
        self._static = StaticResource(
            directory,
            indexNames=settings.indexNames,
            listDirectories=settings.listDirectories,
        )

    def render(self, request: IRequest) -> int:
        try:
            resolved = resolvePath(resourcePath(request))
        except BadRequestPath:
            return sendError(request, 400, "Bad request path")
        settings = self._settings
        if settings.cgiEnabled and cgiDirectoryFor(resolved, settings.cgiDirectories):
            # CGI execution is not part of this release: refuse rather than
            # serve a script's source as a file.
            return sendError(
                request, 403, "CGI scripts are not run by this server version"
            )
        if request.method not in (b"GET", b"HEAD"):
            return refuseMethod(request)
        return self._static.renderResolved(request, resolved)


def makeRootResource(directory: str, settings: Settings | None = None) -> IResource:
    """
    The whole tree for serving C{directory}: static files everywhere, CGI
    scripts under the CGI directories. Mount it at any path of a Twisted
    resource tree, or serve it from a L{twisted.web.server.Site}.

    @raise ValueError: C{directory} is not a directory.
    """
    if not os.path.isdir(directory):
        raise ValueError(f"{directory!r} is not a directory")
    return _Root(os.path.abspath(directory), settings or Settings())
