# -*- test-case-name: tests.http.test_errors -*-
"""
Error responses shaped like http.server's, but safe to send anywhere.

The page is http.server's (3.14, with its dark-mode style), so scripts and
tests that scrape C{Error code: 404} keep working. Unlike http.server the
reason phrase can never break the status line: it is reduced to Latin-1
printable text instead of crashing the response (http.server dropped the
connection for a script name with a non-Latin-1 character), and the
connection stays open (keep-alive survives a 404).
"""

from __future__ import annotations

from html import escape
from http import HTTPStatus

from twisted.web.iweb import IRequest
from twisted.web.server import NOT_DONE_YET

__all__ = ["errorPage", "sendError", "statusPhrase"]

_PAGE = """\
<!DOCTYPE HTML>
<html lang="en">
    <head>
        <meta charset="utf-8">
        <style type="text/css">
            :root {{
                color-scheme: light dark;
            }}
        </style>
        <title>Error response</title>
    </head>
    <body>
        <h1>Error response</h1>
        <p>Error code: {code}</p>
        <p>Message: {message}.</p>
        <p>Error code explanation: {code} - {explain}.</p>
    </body>
</html>
"""

# Statuses whose responses never carry a body (RFC 9110 section 6.4.1).
_NO_BODY = frozenset({204, 205, 304})


def statusPhrase(text: str) -> bytes:
    """
    Make C{text} safe as an HTTP reason phrase: Latin-1 only, no control
    characters (a CR or LF would split the response).
    """
    cleaned = "".join(
        ch if (" " <= ch <= "~" or "\xa0" <= ch <= "\xff") else "?" for ch in text
    )
    return cleaned.encode("latin-1")


def errorPage(
    code: int, message: str | None = None, explain: str | None = None
) -> tuple[bytes, bytes]:
    """
    The reason phrase and HTML page for an error.
    """
    try:
        status = HTTPStatus(code)
        defaultMessage, defaultExplain = status.phrase, status.description
    except ValueError:
        defaultMessage, defaultExplain = "???", "???"
    message = defaultMessage if message is None else message
    explain = defaultExplain if explain is None else explain
    page = _PAGE.format(
        code=code,
        message=escape(message, quote=False),
        explain=escape(explain, quote=False),
    ).encode("utf-8", "replace")
    return statusPhrase(message), page


def sendError(
    request: IRequest,
    code: int,
    message: str | None = None,
    explain: str | None = None,
) -> int:
    """
    Finish C{request} with an error page.

    @param message: The reason phrase and the page's message; defaults to
        the standard phrase for C{code}.
    @param explain: The longer explanation; defaults to the standard
        description for C{code}.
    @return: L{NOT_DONE_YET}, so a C{render} method can return the result.
    """
    reason, page = errorPage(code, message, explain)
    request.setResponseCode(code, reason)
    headers = request.responseHeaders
    for name in (b"content-type", b"last-modified", b"etag", b"content-range"):
        headers.removeHeader(name)
    if code < 200 or code in _NO_BODY:
        body = b""
    else:
        body = page
        headers.setRawHeaders(b"content-type", [b"text/html;charset=utf-8"])
        headers.setRawHeaders(b"content-length", [b"%d" % (len(body),)])
    if request.method != b"HEAD" and body:
        request.write(body)
    request.finish()
    return NOT_DONE_YET
