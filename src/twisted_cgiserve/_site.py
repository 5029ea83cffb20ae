# -*- test-case-name: tests.test_site -*-
"""
The HTTP site: Twisted's L{Site} with this server's C{Server} header and
access log.

The header is set by the request just before the response headers go out,
which covers every response (including C{OPTIONS *} and Twisted's own error
pages) and touches nothing when our resources are embedded in someone
else's site.
"""

from __future__ import annotations

from typing import Any

from twisted.web import http
from twisted.web.resource import IResource
from twisted.web.server import Request, Site

from twisted_cgiserve._accesslog import AccessLog
from twisted_cgiserve._version import __version__

__all__ = ["SERVER_SOFTWARE", "CGIServeRequest", "CGIServeSite"]

SERVER_SOFTWARE = f"twisted-cgiserve/{__version__}"
_SERVER = SERVER_SOFTWARE.encode("ascii")


class CGIServeRequest(Request):
    """
    A request whose responses carry C{Server: twisted-cgiserve/VERSION}.
    """

    def write(self, data: bytes) -> None:
        if not self.startedWriting:
            self.responseHeaders.setRawHeaders(b"server", [_SERVER])
        super().write(data)


class CGIServeSite(Site):
    """
    The site C{twistd cgiserve} listens with.
    """

    requestFactory = CGIServeRequest
    # One "Starting factory" line per start is noise in a server's log.
    noisy = False

    def __init__(
        self, resource: IResource, accessLog: AccessLog | None = None, **kw: Any
    ) -> None:
        super().__init__(resource, **kw)
        self.accessLog = accessLog if accessLog is not None else AccessLog()

    def log(self, request: http.Request) -> None:
        self.accessLog.write(request)
