"""
Tests for L{twisted_cgiserve._http.metricspage}: C{--metrics PATH} and
C{--metrics-allow} as the command line checks them, who may read the page,
that everyone else gets the ordinary 404 however the path is spelt, and the
library's WSGI application answering GET and HEAD; rendered against
in-memory requests through the real root.
"""

from __future__ import annotations

import ipaddress
from io import BytesIO
from pathlib import Path
from typing import Any

import pytest
from prometheus_client import CollectorRegistry, Counter
from prometheus_client.parser import text_string_to_metric_families
from twisted.internet.address import IPv4Address, IPv6Address, UNIXAddress
from twisted.web.resource import Resource
from twisted.web.test.requesthelper import DummyRequest

from tests.support.requests import body, makeRequest, render
from twisted_cgiserve._http.errors import errorPage
from twisted_cgiserve._http.metricspage import (
    LOOPBACK,
    MetricsPage,
    clientAllowed,
    metricsApplication,
    parseMetricsPath,
    parseNetwork,
)
from twisted_cgiserve._root import buildRoot
from twisted_cgiserve._settings import Settings


def _v4(host: str) -> IPv4Address:
    return IPv4Address("TCP", host, 40000)


def _v6(host: str) -> IPv6Address:
    return IPv6Address("TCP", host, 40000)


# The options


@pytest.mark.parametrize(
    ("value", "segments"),
    [("/metrics", ("metrics",)), ("/status/prometheus", ("status", "prometheus"))],
)
def test_pathAccepted(value: str, segments: tuple[str, ...]) -> None:
    assert parseMetricsPath(value) == segments


@pytest.mark.parametrize(
    "value",
    [
        "",
        "metrics",
        "/",
        "/metrics/",
        "//metrics",
        "/a/../metrics",
        "/./metrics",
        "/metrics?x=1",
        "/metrics#x",
        "/met%72ics",
        "/met rics",
        "/métriques",
        "/metrics\n",
        "/a\\b",
    ],
)
def test_pathRefused(value: str) -> None:
    """
    Anything but a plain, normalised absolute path is refused, with a
    message naming the option.
    """
    with pytest.raises(ValueError, match="--metrics"):
        parseMetricsPath(value)


def test_pathRefusalSuggestsTheNormalForm() -> None:
    with pytest.raises(ValueError, match="say /metrics"):
        parseMetricsPath("/metrics/")


@pytest.mark.parametrize(
    ("value", "network"),
    [
        ("10.0.0.0/8", "10.0.0.0/8"),
        ("192.0.2.7", "192.0.2.7/32"),
        (" 2001:db8::/32 ", "2001:db8::/32"),
        ("::1", "::1/128"),
        # Matched as the IPv4 clients they name.
        ("::ffff:127.0.0.1", "127.0.0.1/32"),
        ("::ffff:10.0.0.0/104", "10.0.0.0/8"),
    ],
)
def test_networkAccepted(value: str, network: str) -> None:
    assert parseNetwork(value) == ipaddress.ip_network(network)


@pytest.mark.parametrize(
    "value", ["", "localhost", "10.0.0.1/8", "10.0.0.0/33", "1.2.3"]
)
def test_networkRefused(value: str) -> None:
    """
    Names, malformed addresses and networks with host bits set (which
    could mean two things) are refused.
    """
    with pytest.raises(ValueError, match="--metrics-allow"):
        parseNetwork(value)


# Who may read it


@pytest.mark.parametrize(
    ("address", "allowed"),
    [
        (_v4("127.0.0.1"), True),
        (_v6("::1"), True),
        (_v6("::ffff:127.0.0.1"), True),
        (_v4("127.0.0.2"), False),
        (_v6("::ffff:127.0.0.2"), False),
        (_v4("192.0.2.1"), False),
        (_v6("fe80::1%lo"), False),
        (UNIXAddress(b"/run/cgiserve.sock"), False),
        (None, False),
    ],
)
def test_loopbackByDefault(address: object, allowed: bool) -> None:
    """
    By default 127.0.0.1 and ::1 only (an IPv4 client on a dual-stack
    socket as its IPv4 address), not the rest of 127.0.0.0/8, and nothing
    without an IP address.
    """
    assert clientAllowed(address, LOOPBACK) is allowed


def test_allowedNetworksReplaceLoopback() -> None:
    networks = [parseNetwork("10.0.0.0/8"), parseNetwork("2001:db8::/32")]
    assert clientAllowed(_v4("10.1.2.3"), networks)
    assert clientAllowed(_v6("::ffff:10.1.2.3"), networks)
    assert clientAllowed(_v6("2001:db8::5"), networks)
    assert not clientAllowed(_v4("127.0.0.1"), networks)
    assert not clientAllowed(_v4("11.0.0.1"), networks)


def test_malformedHostNotAllowed() -> None:
    assert not clientAllowed(_v4("not-an-address"), LOOPBACK)


# The page, through the root


class _Figures(Resource):
    """
    Stands for the library's application: the figures, and who got them.
    """

    isLeaf = True

    def __init__(self) -> None:
        super().__init__()
        self.served: list[Any] = []

    def render(self, request: Any) -> bytes:
        self.served.append(request)
        return b"cgiserve_up 1\n"


@pytest.fixture
def tree(tmp_path: Path) -> Path:
    (tmp_path / "cgi-bin").mkdir()
    # A file of the page's name: the page comes first.
    (tmp_path / "metrics").write_bytes(b"the file\n")
    (tmp_path / "other.txt").write_bytes(b"other\n")
    return tmp_path


def _root(tree: Path, allowed: Any = LOOPBACK) -> tuple[Any, _Figures]:
    figures = _Figures()
    page = MetricsPage(
        ("metrics",), CollectorRegistry(), None, allowed, figures=figures
    )
    settings = Settings(cgiUser=None)
    return buildRoot(str(tree), settings, None, metricsPage=page), figures


def _request(uri: bytes, client: object = None, method: bytes = b"GET") -> DummyRequest:
    request = makeRequest(uri, method)
    request.path = uri.split(b"?")[0]
    request.client = client or _v4("127.0.0.1")  # type: ignore[assignment]
    return request


_SPELLINGS = [
    b"/metrics",
    b"/metrics?x=1",
    b"//metrics",
    b"/%6detrics",
    b"/%2Fmetrics",
    b"/./metrics",
    b"/x/../metrics",
    b"/metrics/",
    b"http://example.com/metrics",
]


@pytest.mark.parametrize("uri", _SPELLINGS)
def test_pageTakesItsPathBeforeTheFile(tree: Path, uri: bytes) -> None:
    """
    Every spelling of the path reaches the page (not the file of that
    name), for an allowed client.
    """
    root, figures = _root(tree)
    request = render(root, _request(uri))
    assert body(request) == b"cgiserve_up 1\n"
    assert figures.served == [request]


@pytest.mark.parametrize("uri", _SPELLINGS)
@pytest.mark.parametrize(
    "client", [_v4("127.0.0.2"), _v4("192.0.2.1"), _v6("::ffff:127.0.0.2")]
)
def test_othersGetTheOrdinary404(tree: Path, uri: bytes, client: object) -> None:
    """
    Anyone else gets exactly the page of a path that does not exist,
    however the path is spelt, and neither the figures nor the file.
    """
    root, figures = _root(tree)
    refused = render(root, _request(uri, client))
    missing = render(root, _request(b"/no-such-file", client))
    assert refused.responseCode == missing.responseCode == 404
    assert body(refused) == body(missing) == errorPage(404, "File not found")[1]
    assert list(refused.responseHeaders.getAllRawHeaders()) == list(
        missing.responseHeaders.getAllRawHeaders()
    )
    assert figures.served == []


def test_headGetsTheFiguresHead(tree: Path) -> None:
    root, figures = _root(tree)
    render(root, _request(b"/metrics", method=b"HEAD"))
    assert len(figures.served) == 1


@pytest.mark.parametrize("method", [b"POST", b"PUT", b"DELETE", b"OPTIONS"])
@pytest.mark.parametrize("client", [_v4("127.0.0.1"), _v4("192.0.2.1")])
def test_otherMethodsAsForAFile(tree: Path, method: bytes, client: object) -> None:
    """
    Methods other than GET and HEAD get what they get for a file (501),
    from anyone: the figures are never reached that way.
    """
    root, figures = _root(tree)
    request = render(root, _request(b"/metrics", client, method))
    assert request.responseCode == 501
    assert figures.served == []


def test_otherPathsUntouched(tree: Path) -> None:
    root, figures = _root(tree)
    assert body(render(root, _request(b"/other.txt"))) == b"other\n"
    assert body(render(root, _request(b"/metrics.txt"))) != b"cgiserve_up 1\n"
    assert figures.served == []


def test_pageBodyNeverStreamedToAScript(tree: Path) -> None:
    """
    A page below a CGI directory is still the page: its request body is
    not streamed to a script.
    """
    figures = _Figures()
    page = MetricsPage(
        ("cgi-bin", "metrics"), CollectorRegistry(), None, figures=figures
    )
    root = buildRoot(str(tree), Settings(cgiUser=None), None, metricsPage=page)
    assert not root.streamsBody(_request(b"/cgi-bin/metrics", method=b"POST"))
    assert root.streamsBody(_request(b"/cgi-bin/other", method=b"POST"))
    assert body(render(root, _request(b"/cgi-bin/metrics"))) == b"cgiserve_up 1\n"


def test_withoutThePageTheFileIsServed(tree: Path) -> None:
    root = buildRoot(str(tree), Settings(cgiUser=None), None)
    assert body(render(root, _request(b"/metrics"))) == b"the file\n"


# The library's application


def _call(application: Any, method: str) -> tuple[str, list[Any], bytes]:
    answer: list[Any] = []

    def startResponse(status: str, headers: list[Any]) -> None:
        answer.extend([status, headers])

    environ = {
        "REQUEST_METHOD": method,
        "PATH_INFO": "/metrics",
        "QUERY_STRING": "",
        "wsgi.input": BytesIO(),
    }
    data = b"".join(application(environ, startResponse))
    return answer[0], answer[1], data


def test_applicationWritesTheRegistry() -> None:
    """
    GET gets the registry in Prometheus's text format; HEAD gets the same
    status and headers (Twisted drops the body), not the library's 405.
    """
    registry = CollectorRegistry()
    Counter("cgiserve_test_total", "A test.", registry=registry).inc(3)
    application = metricsApplication(registry)
    status, headers, data = _call(application, "GET")
    assert status.startswith("200")
    families = list(text_string_to_metric_families(data.decode("utf-8")))
    assert families[0].samples[0].value == 3
    headStatus, headHeaders, _ = _call(application, "HEAD")
    assert (headStatus, headHeaders) == (status, headers)
    assert _call(application, "POST")[0].startswith("405")


def test_pageBuildsTheLibrarysApplication() -> None:
    """
    Without C{figures}, the page renders the library's application in the
    reactor's thread pool (Twisted's WSGI resource).
    """

    class _Reactor:
        def getThreadPool(self) -> object:
            return "pool"

    page = MetricsPage(("metrics",), CollectorRegistry(), _Reactor())
    assert page._figures is None
    figures: Any = page._figuresResource()
    assert page._figuresResource() is figures
    assert figures._threadpool == "pool"
    assert figures._reactor.__class__ is _Reactor
