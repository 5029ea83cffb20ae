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

import tempfile
import time
from io import BytesIO
from typing import IO, Any, cast
from urllib.parse import unquote_to_bytes as unquote

from twisted.python.failure import Failure
from twisted.web import http
from twisted.web.http import _GenericHTTPChannelProtocol, datetimeToString
from twisted.web.resource import IResource
from twisted.web.server import Request, Site

from twisted_cgiserve._accesslog import AccessLog
from twisted_cgiserve._channel import CGIServeChannel
from twisted_cgiserve._version import __version__

__all__ = ["SERVER_SOFTWARE", "CGIServeRequest", "CGIServeSite"]

SERVER_SOFTWARE = f"twisted-cgiserve/{__version__}"
_SERVER = SERVER_SOFTWARE.encode("ascii")

# Request bodies up to this size are kept in memory.
_IN_MEMORY = 1024 * 1024


class _DateCache:
    """
    The C{Date} header value, formatted once per second instead of once per
    response.
    """

    def __init__(self) -> None:
        self._second = -1
        self._value = b""

    def now(self) -> bytes:
        second = int(time.time())
        if second != self._second:
            self._value = datetimeToString(second)
            self._second = second
        return self._value


_date = _DateCache()


class CGIServeRequest(Request):
    """
    A request whose responses carry C{Server: twisted-cgiserve/VERSION}.
    """

    def process(self) -> None:
        """
        Render the site's root directly when it is a leaf (as the tree
        C{twistd cgiserve} serves is): there is nothing to traverse, and the
        generic path's per-request work (traversal, encoder lookup, a freshly
        formatted C{Date}) is a measurable part of serving a small file.
        """
        site: Site = cast(Any, self.channel).site
        resource = site.resource
        if not getattr(resource, "isLeaf", False) or self.path == b"*":
            super().process()
            return
        self.site = site
        self.responseHeaders.setRawHeaders(b"date", [_date.now()])
        self.prepath = []
        self.postpath = [unquote(segment) for segment in self.path[1:].split(b"/")]
        self.sitepath = list[bytes]()
        try:
            self.render(resource)
        except BaseException:
            self.processingFailed(Failure())

    def write(self, data: bytes) -> None:
        if not self.startedWriting:
            self.responseHeaders.setRawHeaders(b"server", [_SERVER])
        super().write(data)


def _channelFactory(self: Site) -> _GenericHTTPChannelProtocol:
    """
    Build a connection: our HTTP/1.x channel inside Twisted's wrapper that
    switches to HTTP/2 when TLS negotiates it. (The wrapper is private to
    Twisted; the site tests fail loudly if it changes.)
    """
    channel = CGIServeChannel()
    channel.serverSoftware = _SERVER
    return _GenericHTTPChannelProtocol(channel)


class CGIServeSite(Site):
    """
    The site C{twistd cgiserve} listens with.
    """

    protocol = _channelFactory
    requestFactory = CGIServeRequest
    # One "Starting factory" line per start is noise in a server's log.
    noisy = False

    def __init__(
        self, resource: IResource, accessLog: AccessLog | None = None, **kw: Any
    ) -> None:
        # Twisted would parse form POSTs into request.args, reading the whole
        # body into memory; request bodies here are for CGI scripts, which
        # read them from standard input.
        kw.setdefault("parsePOSTFormSubmission", False)
        super().__init__(resource, **kw)
        self.accessLog = accessLog if accessLog is not None else AccessLog()

    def getContentFile(self, length: int | None) -> IO[bytes]:
        """
        Where a request body is kept until it is used: in memory when small,
        otherwise in a temporary file, including a chunked body whose length
        is not announced (Twisted keeps those in memory).
        """
        if length is not None and length <= _IN_MEMORY:
            return BytesIO()
        return tempfile.SpooledTemporaryFile(max_size=_IN_MEMORY)

    def stopFactory(self) -> None:
        self.accessLog.flush()
        super().stopFactory()

    def log(self, request: http.Request) -> None:
        self.accessLog.write(request)
