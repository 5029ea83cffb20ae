"""
Tests for L{twisted_cgiserve._cgi.redirect}: a script's local redirect,
followed on real L{twisted.web.server.Request}s over a fake channel.
"""

from __future__ import annotations

from io import BytesIO

import pytest
from twisted.web.iweb import IRequest
from twisted.web.resource import Resource
from twisted.web.server import Request, Site
from twisted.web.test.requesthelper import DummyChannel

from twisted_cgiserve._cgi.redirect import (
    MAX_LOCAL_REDIRECTS,
    ILocalRedirects,
    LocalRedirect,
    LocalRedirects,
)


class Recorder(Resource):
    """
    A leaf that records the requests it renders, as they were then, and
    leaves them unfinished (as a script would).
    """

    isLeaf = True

    def __init__(self) -> None:
        super().__init__()
        self.seen: list[dict[str, object]] = []

    def render(self, request: IRequest) -> int:
        self.seen.append(
            {
                "method": request.method,
                "uri": request.uri,
                "path": request.path,
                "prepath": list(request.prepath or []),
                "postpath": list(request.postpath or []),
                "body": request.content.read(),
                "headers": sorted(request.requestHeaders.getAllRawHeaders()),
            }
        )
        return 1  # NOT_DONE_YET


def makeRequest(
    site: Site | None, method: bytes = b"POST", uri: bytes = b"/cgi-bin/x.sh?a=1"
) -> Request:
    """
    A request for C{uri} with a body, as a script received it (C{site}
    L{None}: a request that came through no site).
    """
    channel = DummyChannel()
    request = Request(channel)
    request.method = method
    request.uri = uri
    request.path = uri.split(b"?", 1)[0]
    request.clientproto = b"HTTP/1.1"
    request.content = BytesIO(b"the original body")
    for name, value in [
        (b"Content-Type", b"text/x-original"),
        (b"Content-Length", b"17"),
        (b"Transfer-Encoding", b"identity"),
        (b"X-Kept", b"yes"),
    ]:
        request.requestHeaders.addRawHeader(name, value)
    request.site = site
    return request


def test_servedThroughTheSite() -> None:
    """
    The location is served through the request's site, as a GET without
    the original body or its headers, with the new path and query; the
    tree below the site resolves the path again.
    """
    root = Resource()
    files = Recorder()
    root.putChild(b"files", files)
    fallback = Recorder()
    request = makeRequest(Site(root))
    LocalRedirect(fallback).follow(request, b"/files/a%20b/c?via=redirect")
    assert files.seen == [
        {
            "method": b"GET",
            "uri": b"/files/a%20b/c?via=redirect",
            "path": b"/files/a%20b/c",
            "prepath": [b"files"],
            "postpath": [b"a b", b"c"],
            "body": b"",
            "headers": [(b"X-Kept", [b"yes"])],
        }
    ]
    assert fallback.seen == []


def test_withoutSite() -> None:
    """
    A request that came through no site is served by the resource the
    redirect was made with.
    """
    fallback = Recorder()
    request = makeRequest(None)
    LocalRedirect(fallback).follow(request, b"/a.txt")
    assert [(s["method"], s["uri"], s["body"]) for s in fallback.seen] == [
        (b"GET", b"/a.txt", b"")
    ]


def test_headStaysHead() -> None:
    """
    A HEAD stays a HEAD: the client still must not get a body.
    """
    fallback = Recorder()
    LocalRedirect(fallback).follow(makeRequest(None, b"HEAD"), b"/a.txt")
    assert fallback.seen[0]["method"] == b"HEAD"


def test_countIsAComponentOfTheRequest() -> None:
    """
    The redirect count is kept on the request as its L{ILocalRedirects}
    component, one per request, and nothing else is set on the request:
    the request line the client sent is the request's own business.
    """
    redirect = LocalRedirect(Recorder())
    request = makeRequest(None)
    other = makeRequest(None)
    assert request.getComponent(ILocalRedirects) is None
    before = set(vars(request))
    redirect.follow(request, b"/a")
    redirect.follow(request, b"/b")
    redirect.follow(other, b"/c")
    redirects = request.getComponent(ILocalRedirects)
    assert isinstance(redirects, LocalRedirects)
    assert ILocalRedirects.providedBy(redirects)
    assert redirects.count == 2
    assert other.getComponent(ILocalRedirects).count == 1
    assert set(vars(request)) == before


@pytest.mark.parametrize("limit", [MAX_LOCAL_REDIRECTS, 1])
def test_tooMany(limit: int) -> None:
    """
    Once a request has followed C{limit} redirects the next one is a 500
    and nothing more is served.
    """
    served = Recorder()
    redirect = LocalRedirect(served, limit)
    request = makeRequest(None)
    for hop in range(limit):
        redirect.follow(request, b"/hop%d" % hop)
    assert len(served.seen) == limit
    assert not request.finished
    redirect.follow(request, b"/one-too-many")
    assert len(served.seen) == limit
    assert request.code == 500
    assert request.finished
    assert request.uri == b"/hop%d" % (limit - 1)


def test_limitIsLighttpds() -> None:
    """
    Five redirects are followed, as in lighttpd.
    """
    assert LocalRedirect(Recorder()).limit == MAX_LOCAL_REDIRECTS == 5
