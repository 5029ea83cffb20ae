"""
Tests for L{twisted_cgiserve._http.errors}: error pages shaped like
http.server's, whose reason phrase can never break the status line.
"""

from __future__ import annotations

import pytest
from twisted.web.server import NOT_DONE_YET

from tests.support.requests import body, header, makeRequest
from twisted_cgiserve._http.errors import errorPage, sendError, statusPhrase


def test_statusPhraseKeepsPrintableLatin1() -> None:
    """
    Printable ASCII and Latin-1 are kept as they are.
    """
    assert statusPhrase("Not Found") == b"Not Found"
    assert statusPhrase("Caf\xe9 ferm\xe9") == b"Caf\xe9 ferm\xe9"


def test_statusPhraseReplacesTheRest() -> None:
    """
    Control characters (a CR or LF would split the response) and what
    Latin-1 cannot encode become C{?}.
    """
    assert statusPhrase("a\r\nX-Injected: 1\x00\x7f\x85\u20ac") == (
        b"a??X-Injected: 1????"
    )


def test_errorPageDefaults() -> None:
    """
    Without a message, the page and the phrase are the standard ones, on
    http.server's page (tests and scripts scrape C{Error code: 404}).
    """
    reason, page = errorPage(404)
    assert reason == b"Not Found"
    assert b"<p>Error code: 404</p>" in page
    assert b"<p>Message: Not Found.</p>" in page
    assert b"Error code explanation: 404 - Nothing matches the given URI." in page
    assert page.startswith(b"<!DOCTYPE HTML>")


def test_errorPageMessageEscaped() -> None:
    """
    A message and explanation are HTML-escaped in the page; the phrase is
    made safe for the status line.
    """
    reason, page = errorPage(500, "No <script>\n", "x & y")
    assert reason == b"No <script>?"
    assert b"Message: No &lt;script&gt;\n." in page
    assert b"500 - x &amp; y." in page


def test_errorPageUnknownCode() -> None:
    """
    A code HTTP does not define still gets a page.
    """
    reason, page = errorPage(599)
    assert reason == b"???"
    assert b"Error code: 599" in page


def test_sendError() -> None:
    """
    The request is finished with the page as an HTML body of known length;
    headers describing another body are removed.
    """
    request = makeRequest(b"/x")
    for name in (b"content-type", b"last-modified", b"etag", b"content-range"):
        request.responseHeaders.setRawHeaders(name, [b"stale"])
    assert sendError(request, 404) is NOT_DONE_YET
    assert request.responseCode == 404
    assert request.responseMessage == b"Not Found"
    page = errorPage(404)[1]
    assert body(request) == page
    assert header(request, b"content-type") == b"text/html;charset=utf-8"
    assert header(request, b"content-length") == b"%d" % (len(page),)
    assert header(request, b"last-modified") is None
    assert header(request, b"etag") is None
    assert header(request, b"content-range") is None
    assert request.finished == 1


def test_sendErrorHead() -> None:
    """
    A C{HEAD} gets the headers of the page, not the page.
    """
    request = makeRequest(b"/x", method=b"HEAD")
    sendError(request, 403, "Forbidden here")
    assert request.responseMessage == b"Forbidden here"
    assert body(request) == b""
    assert header(request, b"content-length") == b"%d" % (
        len(errorPage(403, "Forbidden here")[1]),
    )
    assert request.finished == 1


@pytest.mark.parametrize("code", [100, 204, 205, 304])
def test_sendErrorWithoutBody(code: int) -> None:
    """
    Statuses that never carry a body (RFC 9110 section 6.4.1) get none,
    and no headers describing one.
    """
    request = makeRequest(b"/x")
    request.responseHeaders.setRawHeaders(b"content-type", [b"text/plain"])
    sendError(request, code)
    assert request.responseCode == code
    assert body(request) == b""
    assert header(request, b"content-type") is None
    assert header(request, b"content-length") is None
    assert request.finished == 1
