# -*- test-case-name: tests.cgi.test_redirect -*-
"""
A CGI script's local redirect (RFC 3875 section 6.2.2).

A script that answers with a C{Location} naming a local path and nothing
else asks the server to serve that path in its place: the client sees the
response of the file or script the path names, not a redirect. The request
is rewritten in place (a GET without a body, the new path and query) and
served again through the whole site, so a tree mounted below other
resources reaches whatever the path names there.

How many redirects a request has followed is kept on the request itself, as
one of its components (L{twisted.web.server.Request} is
L{Componentized<twisted.python.components.Componentized>}): a script that
redirects to itself ends with a C{500} after L{MAX_LOCAL_REDIRECTS} hops,
not in a loop. The request line the client sent is not this module's to
keep: the request remembers it before anything rewrites it, for the access
log.
"""

from __future__ import annotations

from io import BytesIO
from urllib.parse import unquote_to_bytes

from zope.interface import Attribute, Interface, implementer

from twisted.logger import Logger
from twisted.web.resource import IResource
from twisted.web.server import Request

from twisted_cgiserve._http.errors import sendError

__all__ = ["MAX_LOCAL_REDIRECTS", "ILocalRedirects", "LocalRedirect", "LocalRedirects"]

_log = Logger(namespace="cgiserve.cgi")

# Local redirects followed for one request before it is refused (lighttpd's
# limit).
MAX_LOCAL_REDIRECTS = 5

# What a redirected request no longer has: its body (RFC 3875 section 6.2.2:
# the new request is a GET).
_BODY_HEADERS = (b"content-length", b"content-type", b"transfer-encoding")


class ILocalRedirects(Interface):
    """
    The local redirects one request has followed, kept as a component of
    the request.
    """

    count = Attribute("How many local redirects the request has followed.")


@implementer(ILocalRedirects)
class LocalRedirects:
    """
    The redirect count of a request that has not been redirected yet.
    """

    def __init__(self) -> None:
        self.count = 0


def _redirectsOf(request: Request) -> LocalRedirects:
    """
    The request's redirect count, attached to it on its first redirect.
    """
    redirects: LocalRedirects | None = request.getComponent(ILocalRedirects)
    if redirects is None:
        redirects = LocalRedirects()
        request.setComponent(ILocalRedirects, redirects)
    return redirects


class LocalRedirect:
    """
    Serve the local path a script named in the script's place.

    @ivar limit: The most redirects one request may follow.
    """

    def __init__(self, siteRoot: IResource, limit: int = MAX_LOCAL_REDIRECTS) -> None:
        """
        @param siteRoot: The resource that serves a redirected request that
            came through no L{twisted.web.server.Site} (one built by
            hand); through a site, the site's own root does.
        """
        self._siteRoot = siteRoot
        self.limit = limit

    def follow(self, request: Request, location: bytes) -> None:
        """
        Serve C{location} (the path and query a script named, starting with
        C{/}) for C{request}, as a GET without a body (a HEAD stays a HEAD),
        through the whole site; a C{500} once the request has followed
        L{limit} redirects.
        """
        redirects = _redirectsOf(request)
        redirects.count += 1
        if redirects.count > self.limit:
            _log.error(
                "More than {n} CGI local redirects for {uri!r}; last to {location!r}",
                n=self.limit,
                uri=request.uri,
                location=location,
            )
            sendError(request, 500, "Too many local redirects")
            return
        if request.method != b"HEAD":
            request.method = b"GET"
        request.uri = location
        path = location.split(b"?", 1)[0]
        request.path = path
        headers = request.requestHeaders
        for name in _BODY_HEADERS:
            headers.removeHeader(name)
        request.content = BytesIO()
        site = request.site
        if site is None:
            resource = self._siteRoot
        else:
            request.prepath = []
            request.postpath = [unquote_to_bytes(s) for s in path[1:].split(b"/")]
            resource = site.getResourceFor(request)
        request.render(resource)
