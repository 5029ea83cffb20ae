"""
End-to-end tests of the HTTP layer under the static files: methods,
malformed requests, keep-alive and pipelining, against the real
C{twistd -n cgiserve} process on loopback.

One server and one small document root are shared by the whole module.
"""

from __future__ import annotations

from collections.abc import Iterator

import pytest
import requests

from tests.support.pages import errorPage
from tests.support.raw import TIMEOUT, Conn, fetch, request
from tests.support.server import (
    ENTRY_POINTS,
    Server,
    sharedServer,
    startServer,
    staysHealthy,
)

pytestmark = pytest.mark.e2e

A_TXT = b"Hello from a.txt\n"
B_TXT = b"Bee\n"


@pytest.fixture(scope="module", params=ENTRY_POINTS)
def server(
    tmp_path_factory: pytest.TempPathFactory, request: pytest.FixtureRequest
) -> Iterator[Server]:
    """
    One server for the module: C{twistd cgiserve}, then C{python -m
    twisted_cgiserve --cgi} (http.server's command line).
    """
    base = tmp_path_factory.mktemp("http")
    root = base / "root"
    root.mkdir()
    (root / "a.txt").write_bytes(A_TXT)
    (root / "b.txt").write_bytes(B_TXT)
    (root / "sub").mkdir()
    (root / "sub" / "c.txt").write_bytes(b"c\n")
    server = startServer(root, logDir=base, entryPoint=request.param)
    with sharedServer(server) as srv:
        yield srv


@pytest.fixture(scope="module")
def port(server: Server) -> int:
    return server.port


def assertStillServing(port: int) -> None:
    r = fetch(port, "/a.txt")
    assert r.status == 200
    assert r.body == A_TXT


@pytest.fixture(autouse=True)
def _serverSurvives(request: pytest.FixtureRequest) -> Iterator[None]:
    """
    After each test's malformed or pipelined requests, the shared server
    still answers and logged no traceback for them: each test checks its
    own, whatever ran before it or is selected with it.
    """
    if "server" not in request.fixturenames:
        yield
        return
    server: Server = request.getfixturevalue("server")
    with staysHealthy(server):
        yield
    assertStillServing(server.port)


# --------------------------------------------------------------------------
# 13. Methods


NOT_SUPPORTED = "Server does not support this operation"


def test_postToStaticFile(port: int) -> None:
    """
    POST to a path outside the CGI directories gets 501 with the reason
    phrase 'Can only POST to CGI scripts' and http.server's error page.
    """
    with Conn(port) as conn:
        conn.send(
            b"POST /a.txt HTTP/1.1\r\nHost: x\r\nContent-Type: text/plain\r\n"
            b"Content-Length: 5\r\nConnection: close\r\n\r\nhello"
        )
        r = conn.readResponse()
    assert r.status == 501
    assert r.reason == b"Can only POST to CGI scripts"
    assert r.body == errorPage(501, "Can only POST to CGI scripts", NOT_SUPPORTED)
    assert r.header("Content-Type") == "text/html;charset=utf-8"
    assert r.header("Content-Length") == str(len(r.body))


@pytest.mark.parametrize(
    "method",
    ["PUT", "DELETE", "FOO", "PATCH", "OPTIONS", "get", "Get", "GETs", "CONNECT"],
)
def test_unsupportedMethods(port: int, method: str) -> None:
    """
    Any method but GET, HEAD (and POST) gets 501 "Unsupported method
    ('X')", in the status line and the page; method names are
    case-sensitive, so 'get' is unsupported too.
    """
    r = fetch(port, "/a.txt", method)
    assert r.status == 501
    message = f"Unsupported method ({method!r})"
    assert r.reason == message.encode()
    assert r.body == errorPage(501, message, NOT_SUPPORTED)
    assert A_TXT not in r.body


def test_unsupportedMethodWithRequests(server: Server) -> None:
    """
    A PUT with a body from an ordinary client gets 501 and the file is
    untouched.
    """
    r = requests.put(server.url("/a.txt"), data=b"overwrite!", timeout=TIMEOUT)
    assert r.status_code == 501
    assert r.reason == "Unsupported method ('PUT')"
    assert (server.root / "a.txt").read_bytes() == A_TXT


def test_refusedPostBodyDoesNotPoisonConnection(port: int) -> None:
    """
    After a refused POST with a body, the next request on the same
    connection is answered normally (the body was consumed, not parsed as
    a request).
    """
    body = b"GET /b.txt HTTP/1.1\r\nHost: x\r\n\r\n"
    with Conn(port) as conn:
        conn.send(
            b"POST /a.txt HTTP/1.1\r\nHost: x\r\nContent-Length: %d\r\n\r\n" % len(body)
            + body
            + request(port, "/a.txt")
        )
        first = conn.readResponse()
        second = conn.readResponse()
    assert first.status == 501
    assert second.status == 200
    assert second.body == A_TXT


def test_unsupportedMethodMarkupEscaped(port: int) -> None:
    """
    A method name is HTML-escaped in the error page (a '<' cannot even be
    part of a method, so that request is a 400).
    """
    r = fetch(port, "/a.txt", "X&Y")
    assert r.status == 501
    assert b"Unsupported method ('X&amp;Y')" in r.body
    r = fetch(port, "/", "<script>")
    assert r.status == 400
    assert b"<script>" not in r.body


# --------------------------------------------------------------------------
# 14. Malformed requests

H = b"Host: 127.0.0.1\r\nConnection: close\r\n"

MALFORMED = [
    ("nulEscaped", b"GET /%00 HTTP/1.1\r\n" + H + b"\r\n", {400}),
    ("nulEscapedMiddle", b"GET /a%00.txt HTTP/1.1\r\n" + H + b"\r\n", {400}),
    ("nulEscapedDir", b"GET /sub/%00/ HTTP/1.1\r\n" + H + b"\r\n", {400}),
    ("nulRaw", b"GET /a\x00b HTTP/1.1\r\n" + H + b"\r\n", {400}),
    ("controlSOH", b"GET /a\x01b HTTP/1.1\r\n" + H + b"\r\n", {400, 404}),
    ("controlESC", b"GET /\x1b[31m HTTP/1.1\r\n" + H + b"\r\n", {400, 404}),
    ("controlDEL", b"GET /a\x7fb HTTP/1.1\r\n" + H + b"\r\n", {400, 404}),
    ("controlTab", b"GET /a\tb HTTP/1.1\r\n" + H + b"\r\n", {400, 404}),
    ("bareCR", b"GET /a\rb HTTP/1.1\r\n" + H + b"\r\n", {400, 404}),
    ("badEscapeZZ", b"GET /%zz HTTP/1.1\r\n" + H + b"\r\n", {400, 404}),
    ("badEscapeShort", b"GET /%4 HTTP/1.1\r\n" + H + b"\r\n", {400, 404}),
    ("badEscapeBare", b"GET /% HTTP/1.1\r\n" + H + b"\r\n", {400, 404}),
    ("asteriskGet", b"GET * HTTP/1.1\r\n" + H + b"\r\n", {400, 404, 405}),
    (
        "longPath10k",
        b"GET /" + b"a" * 10240 + b" HTTP/1.1\r\n" + H + b"\r\n",
        {404, 414},
    ),
    ("undecodable", b"GET /%ff HTTP/1.1\r\n" + H + b"\r\n", {400, 404}),
    ("encodedSurrogateDir", b"GET /%ED%A0%80/ HTTP/1.1\r\n" + H + b"\r\n", {400, 404}),
    ("encodedSurrogate", b"GET /%ED%A0%80 HTTP/1.1\r\n" + H + b"\r\n", {400, 404}),
    ("overlongUtf8", b"GET /%C0%AF HTTP/1.1\r\n" + H + b"\r\n", {400, 404}),
    ("rawUtf8", "GET /café.txt HTTP/1.1\r\n".encode() + H + b"\r\n", {400, 404}),
    ("rawLatin1", b"GET /caf\xe9.txt HTTP/1.1\r\n" + H + b"\r\n", {400, 404}),
    ("spaceInTarget", b"GET /spaced out HTTP/1.1\r\n" + H + b"\r\n", {400}),
    ("http09", b"GET /a.txt\r\n\r\n", {400}),
    ("badVersion", b"GET /a.txt FUBAR\r\n" + H + b"\r\n", {400}),
    ("version99", b"GET /a.txt HTTP/9.9\r\n" + H + b"\r\n", {400, 505}),
    ("version20", b"GET /a.txt HTTP/2.0\r\n" + H + b"\r\n", {400, 505}),
    ("headerNoColon", b"GET /a.txt HTTP/1.1\r\n" + H + b"NoColon\r\n\r\n", {400}),
    (
        "badContentLength",
        b"GET /a.txt HTTP/1.1\r\n" + H + b"Content-Length: abc\r\n\r\n",
        {400},
    ),
    (
        "smuggling",
        b"GET /a.txt HTTP/1.1\r\n"
        + H
        + b"Content-Length: 3\r\nTransfer-Encoding: chunked\r\n\r\n0\r\n\r\n",
        {400},
    ),
    (
        "manyHeaders",
        b"GET /a.txt HTTP/1.1\r\n" + H + b"X-H: v\r\n" * 600 + b"\r\n",
        {400, 431},
    ),
]


@pytest.mark.parametrize(
    "data, allowed", [(d, a) for _, d, a in MALFORMED], ids=[n for n, _, _ in MALFORMED]
)
def test_malformedRequestGetsStatus(port: int, data: bytes, allowed: set[int]) -> None:
    """
    A malformed request gets a complete status response (a 4xx, never a
    500, never a silently closed connection, never a traceback in the
    body), and the server keeps serving normal requests.
    """
    with Conn(port) as conn:
        conn.send(data)
        r = conn.readResponse()
    assert r.status in allowed, (data[:60], r.status, r.reason)
    assert b"Traceback" not in r.body
    assert A_TXT not in r.body
    assertStillServing(port)


def test_absoluteFormTarget(port: int) -> None:
    """
    An absolute-form request target (RFC 9112 section 3.2.2) is served by
    its path: the file, not a 404 for 'http:/example.com/a.txt'.
    """
    r = fetch(port, "http://example.com/a.txt")
    assert r.status == 200
    assert r.body == A_TXT
    r = fetch(port, "HTTP://EXAMPLE.COM/a.txt?x=1")
    assert r.status == 200
    assert r.body == A_TXT


def test_absoluteFormWithoutPath(port: int) -> None:
    """
    An absolute-form target with no path means '/': the root listing.
    """
    r = fetch(port, "http://example.com")
    assert r.status == 200
    assert b"<title>Directory listing for /</title>" in r.body


def test_overlongRequestLineGetsStatus(port: int) -> None:
    """
    A request line longer than the server accepts (20 KB of path; browsers
    send such URLs) gets a status response such as 414 URI Too Long (what
    http.server sends past its limit), not a connection closed without a
    word.
    """
    with Conn(port) as conn:
        conn.send(b"GET /" + b"a" * 20000 + b" HTTP/1.1\r\n" + H + b"\r\n")
        r = conn.readResponse()
    assert r.status in (400, 414)
    assertStillServing(port)


def test_overlongHeaderLineGetsStatus(port: int) -> None:
    """
    A single header line longer than the server accepts (20 KB) gets a
    status response such as 431 (what http.server sends for a header line
    past its limit), not a connection closed without a word.
    """
    with Conn(port) as conn:
        conn.send(
            b"GET /a.txt HTTP/1.1\r\n" + H + b"X-Big: " + b"v" * 20000 + b"\r\n\r\n"
        )
        r = conn.readResponse()
    assert r.status in (400, 431)
    assertStillServing(port)


def test_abandonedRequestDoesNotBlockServer(port: int) -> None:
    """
    A client that sends half a request and goes quiet does not stop the
    server answering others.
    """
    with Conn(port, TIMEOUT) as idle:
        idle.send(b"GET /a.txt HTTP/1.1\r\nHost: x\r\n")
        assertStillServing(port)


# --------------------------------------------------------------------------
# 15. Keep-alive and pipelining


def test_sequentialRequestsOnOneConnection(port: int) -> None:
    """
    HTTP/1.1 keeps the connection open: several requests sent one after
    the other on one socket each get their response.
    """
    with Conn(port) as conn:
        for target, body in [("/a.txt", A_TXT), ("/b.txt", B_TXT), ("/a.txt", A_TXT)]:
            conn.send(request(port, target, close=False))
            r = conn.readResponse()
            assert r.status == 200
            assert r.body == body
            assert (r.header("Connection") or "").lower() != "close"
        assert not conn.closedByPeer(wait=1.0)


def test_sessionReusesConnection(server: Server) -> None:
    """
    An HTTP client with keep-alive makes several requests over a single
    connection.
    """
    with requests.Session() as session:
        for _ in range(5):
            r = session.get(server.url("/a.txt"), timeout=TIMEOUT)
            assert r.status_code == 200
            assert r.content == A_TXT
        pools = session.get_adapter(server.url()).poolmanager.pools
        # RecentlyUsedContainer cannot be iterated, only its keys().
        used = [pools[key] for key in pools.keys()]  # noqa: SIM118
        assert [(p.num_connections, p.num_requests) for p in used] == [(1, 5)]


def test_pipelining(port: int) -> None:
    """
    Three requests sent in one packet get three complete responses, in
    order (a file, a HEAD, a 404).
    """
    with Conn(port) as conn:
        conn.send(
            request(port, "/b.txt", close=False)
            + request(port, "/a.txt", "HEAD", close=False)
            + request(port, "/missing", close=False)
        )
        first = conn.readResponse()
        second = conn.readResponse("HEAD")
        third = conn.readResponse()
        assert first.status == 200 and first.body == B_TXT
        assert second.status == 200 and second.header("Content-Length") == str(
            len(A_TXT)
        )
        assert third.status == 404 and b"Error code: 404" in third.body
        # Nothing extra followed the three responses.
        conn.send(request(port, "/a.txt"))
        fourth = conn.readResponse()
    assert fourth.status == 200 and fourth.body == A_TXT


def test_pipelinedMixOfStatuses(port: int) -> None:
    """
    Pipelined 301, 304, 206, 501 and listing responses all keep their
    framing, so the responses after them parse.
    """
    with Conn(port) as conn:
        conn.send(
            request(port, "/sub", close=False)
            + request(port, "/a.txt", headers={"If-None-Match": "*"}, close=False)
            + request(port, "/a.txt", headers={"Range": "bytes=0-4"}, close=False)
            + request(
                port, "/a.txt", "PUT", headers={"Content-Length": "0"}, close=False
            )
            + request(port, "/sub/", close=False)
            + request(port, "/b.txt")
        )
        statuses = [conn.readResponse() for _ in range(6)]
    assert [r.status for r in statuses] == [301, 304, 206, 501, 200, 200]
    assert statuses[2].body == A_TXT[:5]
    assert statuses[5].body == B_TXT


def test_notFoundKeepsConnection(port: int) -> None:
    """
    A 404 does not close the connection: the next request on it is
    answered.
    """
    with Conn(port) as conn:
        conn.send(request(port, "/missing", close=False))
        r = conn.readResponse()
        assert r.status == 404
        assert (r.header("Connection") or "").lower() != "close"
        conn.send(request(port, "/a.txt", close=False))
        r = conn.readResponse()
        assert r.status == 200 and r.body == A_TXT


def test_http10ClosesConnection(port: int) -> None:
    """
    An HTTP/1.0 request gets its response and the server then closes the
    connection.
    """
    with Conn(port) as conn:
        conn.send(b"GET /a.txt HTTP/1.0\r\n\r\n")
        r = conn.readResponse()
        assert r.status == 200
        assert r.body == A_TXT
        assert conn.closedByPeer(wait=1.0)


def test_connectionCloseHonoured(port: int) -> None:
    """
    'Connection: close' on an HTTP/1.1 request closes the connection after
    the response.
    """
    with Conn(port) as conn:
        conn.send(request(port, "/a.txt", close=True))
        r = conn.readResponse()
        assert r.status == 200
        assert conn.closedByPeer(wait=1.0)


def test_expectContinueOnGet(port: int) -> None:
    """
    'Expect: 100-continue' on an HTTP/1.1 GET gets the file (after an
    optional interim 100 Continue).
    """
    with Conn(port) as conn:
        conn.send(request(port, "/a.txt", headers={"Expect": "100-continue"}))
        r = conn.readResponse()
        if r.status == 100:
            r = conn.readResponse()
    assert r.status == 200
    assert r.body == A_TXT
