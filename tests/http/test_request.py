"""
Tests for L{twisted_cgiserve._http.request}: the request line as the client
sent it, the C{Server} and extra headers, the short path for a leaf root,
and the site's limits and tracking, over real connections of a real
L{CGIServeSite} in simulated time.

The canaries come first: the request reads the request line that Twisted's
HTTP/1.x channel and HTTP/2 stream have parsed before Twisted hands it to
the request, and a Twisted release that renames those must fail here.
"""

from __future__ import annotations

import errno
import os
from collections.abc import Iterator
from typing import Any

import h2.config
import h2.connection
import h2.events
import pytest
from twisted.internet.address import IPv4Address
from twisted.internet.error import ConnectionDone
from twisted.internet.testing import MemoryReactorClock, StringTransport
from twisted.logger import LogLevel, capturedLogs, formatEvent
from twisted.python.failure import Failure
from twisted.web.http import HTTPChannel
from twisted.web.resource import Resource
from twisted.web.server import NOT_DONE_YET, Request

from twisted_cgiserve._http.bodystream import BodyStream
from twisted_cgiserve._http.connection import HTTPConnection
from twisted_cgiserve._http.request import CGIServeRequest, receivedRequestLine
from twisted_cgiserve._http.site import CGIServeSite
from twisted_cgiserve._http.spool import SpoolError
from twisted_cgiserve._version import SERVER_SOFTWARE

CLIENT = IPv4Address("TCP", "192.0.2.6", 50000)
SERVER = SERVER_SOFTWARE.encode("ascii")


class _Transport(StringTransport):
    def __init__(self, negotiated: bytes | None = None) -> None:
        super().__init__(peerAddress=CLIENT)
        self.negotiatedProtocol = negotiated

    def unregisterProducer(self) -> None:
        self.producer = None
        self.streaming = None


class _Lines:
    """
    An access log that keeps the requests it is given.
    """

    def __init__(self) -> None:
        self.requests: list[Any] = []

    def write(self, request: Any) -> None:
        self.requests.append(request)

    def flush(self) -> None:
        pass


class _Pages(Resource):
    """
    C{/hold}: left open; C{/missing}: 404; C{/fail}: raises; C{/same}: 304;
    C{/typed}: sets its own C{X-Frame-Options}; C{/rewrite}: rewritten as a
    CGI local redirect does, then answered; anything else: C{ok}.
    """

    isLeaf = True

    def __init__(self) -> None:
        super().__init__()
        self.held: list[Request] = []
        self.seen: list[Request] = []

    def render(self, request: Request) -> bytes | int:  # type: ignore[override]
        self.seen.append(request)
        if request.path == b"/hold":
            self.held.append(request)
            return NOT_DONE_YET
        if request.path == b"/missing":
            request.setResponseCode(404)
            return b"no"
        if request.path == b"/fail":
            raise RuntimeError("rendering failed")
        if request.path == b"/same":
            request.setResponseCode(304)
            return b""
        if request.path == b"/typed":
            request.setHeader(b"x-frame-options", b"SAMEORIGIN")
        if request.path == b"/rewrite":
            request.method = b"GET"
            request.uri = request.path = b"/elsewhere"
        return b"ok"


class _Served:
    def __init__(self, resource: Resource | None = None, **kw: Any) -> None:
        self.clock = MemoryReactorClock()
        self.pages = _Pages()
        self.log = _Lines()
        self.site = CGIServeSite(
            resource or self.pages,
            reactor=self.clock,
            accessLog=self.log,  # type: ignore[arg-type]
            **kw,
        )
        self.connections: list[HTTPConnection] = []

    def connect(self, negotiated: bytes | None = None) -> tuple[Any, _Transport]:
        connection = self.site.buildProtocol(CLIENT)
        transport = _Transport(negotiated)
        connection.makeConnection(transport)
        self.connections.append(connection)
        return connection, transport

    def get(self, path: bytes, head: bytes = b"") -> bytes:
        connection, transport = self.connect()
        connection.dataReceived(b"GET %s HTTP/1.1\r\nHost: a\r\n%s\r\n" % (path, head))
        return transport.value()


_served: list[_Served] = []


@pytest.fixture(autouse=True)
def _disconnect() -> Iterator[None]:
    yield
    while _served:
        for connection in _served.pop().connections:
            if connection._channel.transport is not None:
                connection.connectionLost(Failure(ConnectionDone()))


def _serve(resource: Resource | None = None, **kw: Any) -> _Served:
    served = _Served(resource, **kw)
    _served.append(served)
    return served


def _head(response: bytes) -> dict[bytes, list[bytes]]:
    lines = response.split(b"\r\n\r\n", 1)[0].split(b"\r\n")[1:]
    headers: dict[bytes, list[bytes]] = {}
    for line in lines:
        name, _, value = line.partition(b": ")
        headers.setdefault(name.lower(), []).append(value)
    return headers


class _H2:
    """
    An C{h2} client on a new TLS connection that negotiated C{h2}.
    """

    def __init__(self, served: _Served) -> None:
        self.served = served
        self.connection, self.transport = served.connect(b"h2")
        self.h2 = h2.connection.H2Connection(
            h2.config.H2Configuration(client_side=True, header_encoding=None)
        )
        self.h2.initiate_connection()
        self.send()

    def send(self) -> None:
        self.connection.dataReceived(self.h2.data_to_send())

    def events(self) -> list[Any]:
        data = self.transport.value()
        self.transport.clear()
        return self.h2.receive_data(data)

    def open(
        self,
        path: bytes,
        method: bytes = b"GET",
        authority: bytes = b"a",
        extra: list[tuple[bytes, bytes]] | None = None,
        end: bool = True,
    ) -> int:
        stream = self.h2.get_next_available_stream_id()
        headers = [
            (b":method", method),
            (b":path", path),
            (b":scheme", b"https"),
            (b":authority", authority),
            *(extra or []),
        ]
        self.h2.send_headers(stream, headers, end_stream=end)
        self.send()
        return stream

    def status(self, stream: int) -> bytes | None:
        for event in self.events():
            if (
                isinstance(event, h2.events.ResponseReceived)
                and event.stream_id == stream
            ):
                return dict(event.headers)[b":status"]
        return None


# Canary: the request line an HTTP/2 stream keeps before the request gets it


def test_canaryHTTP2RequestLine() -> None:
    """
    Twisted's HTTP/2 stream knows its method and path as C{command} and
    C{path} from its headers on, which L{receivedRequestLine} reads.
    """
    served = _serve()
    client = _H2(served)
    client.open(b"/hold?q", method=b"POST", end=False)
    [request] = served.site.inFlight
    stream: Any = request.channel
    assert (stream.command, stream.path) == (b"POST", b"/hold?q"), (
        "Twisted's H2Stream changed: adapt receivedRequestLine"
    )
    assert receivedRequestLine(stream) == b"POST /hold?q HTTP/2"


def test_http2ConnectWithoutPath() -> None:
    """
    An HTTP/2 C{CONNECT} has no C{:path} (RFC 9113 section 8.5): its target
    is its authority, as in HTTP/1.1's C{CONNECT host:port}, it is answered
    as there, and the connection serves the next stream (Twisted alone
    fails unhandled when such a stream ends, and the connection is lost).
    """
    served = _serve()
    client = _H2(served)
    stream = client.h2.get_next_available_stream_id()
    client.h2.send_headers(
        stream,
        [(b":method", b"CONNECT"), (b":authority", b"example.com:443")],
        end_stream=True,
    )
    client.send()
    served.clock.advance(0)
    assert not client.transport.disconnecting
    [request] = served.pages.seen
    assert request.clientRequestLine == b"CONNECT example.com:443 HTTP/2"
    assert request.uri == b"example.com:443"
    assert client.status(stream) == b"200"
    following = client.open(b"/next")
    served.clock.advance(0)
    assert client.status(following) == b"200"


# The request line as the client sent it


def test_clientRequestLineFromTheHead() -> None:
    """
    The request line is known once the head has arrived, while the body
    is still arriving (before Twisted sets C{method} and C{uri}).
    """
    served = _serve()
    connection, _ = served.connect()
    connection.dataReceived(
        b"PUT /a%20b?c HTTP/1.0\r\nHost: a\r\nContent-Length: 10\r\n\r\n12"
    )
    [request] = served.site.inFlight
    assert request.clientRequestLine == b"PUT /a%20b?c HTTP/1.0"
    assert request.method != b"PUT"


def test_clientRequestLineBeforeTheHead() -> None:
    """
    Before its head has arrived, a request has no request line: C{-}, as
    Apache logs it.
    """
    channel = HTTPChannel()
    channel.makeConnection(StringTransport())
    request = CGIServeRequest(channel, parsePOSTFormSubmission=False)
    assert request.clientRequestLine == b"-"
    channel.connectionLost(Failure(ConnectionDone()))


def test_clientRequestLineSurvivesRewrite() -> None:
    """
    A request rewritten while it is served (as a CGI local redirect does)
    still knows, and logs, what the client sent.
    """
    served = _serve()
    served.get(b"/rewrite?x")
    [request] = served.log.requests
    assert request.uri == b"/elsewhere"
    assert request.clientRequestLine == b"GET /rewrite?x HTTP/1.1"


def test_clientRequestLineHTTP2() -> None:
    """
    Over HTTP/2, the version is C{HTTP/2}.
    """
    served = _serve()
    client = _H2(served)
    client.open(b"/x")
    served.clock.advance(0)
    [request] = served.log.requests
    assert request.clientRequestLine == b"GET /x HTTP/2"


# Headers


def test_serverHeader() -> None:
    """
    Every response names this server, errors included.
    """
    served = _serve()
    assert _head(served.get(b"/"))[b"server"] == [SERVER]
    assert _head(served.get(b"/missing"))[b"server"] == [SERVER]


def test_extraHeadersOnSuccessOnly() -> None:
    """
    The admin's extra headers go on successful responses and on 304 (which
    stands for a 200), not on errors, and never replace a header the
    resource set.
    """
    served = _serve(extraHeaders=[(b"x-frame-options", b"DENY"), (b"x-extra", b"1")])
    ok = _head(served.get(b"/"))
    assert ok[b"x-frame-options"] == [b"DENY"] and ok[b"x-extra"] == [b"1"]
    same = _head(served.get(b"/same"))
    assert same[b"x-extra"] == [b"1"]
    missing = _head(served.get(b"/missing"))
    assert b"x-extra" not in missing
    typed = _head(served.get(b"/typed"))
    assert typed[b"x-frame-options"] == [b"SAMEORIGIN"]


def test_dateFromTheSitesClock() -> None:
    """
    The C{Date} of a leaf root's response is the site's clock's, in
    simulated time.
    """
    served = _serve()
    served.clock.advance(1_780_000_000)
    assert _head(served.get(b"/"))[b"date"] == [b"Thu, 28 May 2026 20:26:40 GMT"]


def test_writeAfterConnectionLost() -> None:
    """
    A response written after its client went away is dropped quietly.
    """
    served = _serve()
    connection, transport = served.connect()
    connection.dataReceived(b"GET /hold HTTP/1.1\r\nHost: a\r\n\r\n")
    [request] = served.pages.held
    connection.connectionLost(Failure(ConnectionDone()))
    request.write(b"late")
    assert transport.value() == b""


# Processing


def test_leafRootRenderedDirectly() -> None:
    """
    A leaf root is rendered without traversal, with the whole path as
    C{postpath}, decoded segment by segment.
    """
    served = _serve()
    served.get(b"/a/b%2Fc/")
    [request] = served.pages.seen
    assert request.prepath == []
    assert request.postpath == [b"a", b"b/c", b""]
    assert request.site is served.site
    served.get(b"/x//y+z")
    assert served.pages.seen[1].postpath == [b"x", b"", b"y+z"]


def test_treeRootTraversed() -> None:
    """
    A root that is not a leaf is traversed as Twisted does.
    """
    root = Resource()
    pages = _Pages()
    root.putChild(b"sub", pages)
    served = _serve(root)
    response = served.get(b"/sub/x")
    assert response.startswith(b"HTTP/1.1 200 OK")
    [request] = pages.seen
    assert request.prepath == [b"sub"]


def test_asteriskNotRenderedByTheLeaf() -> None:
    """
    C{OPTIONS *} is not a path below the root: Twisted answers it.
    """
    served = _serve()
    connection, transport = served.connect()
    connection.dataReceived(b"OPTIONS * HTTP/1.1\r\nHost: a\r\n\r\n")
    assert served.pages.seen == []
    assert _head(transport.value())[b"server"] == [SERVER]


def test_renderingFailure() -> None:
    """
    A resource that raises gets Twisted's 500, and the request ends.
    """
    served = _serve()
    with capturedLogs():
        response = served.get(b"/fail")
    assert response.startswith(b"HTTP/1.1 500 ")
    assert served.site.inFlight == set()


def test_http2ProcessedNextTurn() -> None:
    """
    An HTTP/2 request is processed one reactor turn after it ends, and not
    at all when its stream was reset meanwhile.
    """
    served = _serve()
    client = _H2(served)
    stream = client.open(b"/")
    assert served.pages.seen == []
    served.clock.advance(0)
    assert client.status(stream) == b"200"
    reset = client.open(b"/")
    client.h2.reset_stream(reset)
    client.send()
    served.clock.advance(0)
    assert len(served.pages.seen) == 1


def test_http2InvalidAuthority() -> None:
    """
    An HTTP/2 request with an invalid C{:authority} gets 400, as HTTP/1.x
    gets for an invalid C{Host}.
    """
    served = _serve()
    client = _H2(served)
    stream = client.open(b"/", authority=b"a b")
    served.clock.advance(0)
    assert client.status(stream) == b"400"
    assert served.pages.seen == []


# Tracking and draining


def test_trackedUntilFinished() -> None:
    """
    A request is in flight from its head to the end of its response.
    """
    served = _serve()
    connection, _ = served.connect()
    connection.dataReceived(b"GET /hold HTTP/1.1\r\nHost: a\r\n\r\n")
    [request] = served.pages.held
    assert served.site.inFlight == {request}
    request.finish()
    assert served.site.inFlight == set()


def test_lastRequestWhileDraining() -> None:
    """
    A request that arrives while the server drains is its connection's
    last: C{Connection: close}.
    """
    served = _serve()
    served.site.draining = True
    response = served.get(b"/")
    assert _head(response)[b"connection"] == [b"close"]


# Body limits


def test_chunkedBodyOverLimitHTTP1() -> None:
    """
    An HTTP/1.x body that grows past the limit (chunked: no length
    announced) is refused with 413 at once, and the connection closed.
    """
    served = _serve(maxBodySize=10)
    connection, transport = served.connect()
    connection.dataReceived(
        b"POST / HTTP/1.1\r\nHost: a\r\nTransfer-Encoding: chunked\r\n\r\n"
        b"8\r\n12345678\r\n8\r\n12345678\r\n"
    )
    assert transport.value().startswith(b"HTTP/1.1 413 ")
    assert transport.disconnecting
    assert served.pages.seen == []


def test_announcedBodyOverLimitHTTP2() -> None:
    """
    An HTTP/2 request announcing a body past the limit gets 413 once its
    stream ends; its body is not kept meanwhile.
    """
    served = _serve(maxBodySize=10)
    client = _H2(served)
    stream = client.open(
        b"/", method=b"POST", extra=[(b"content-length", b"20")], end=False
    )
    [request] = served.site.inFlight
    client.h2.send_data(stream, b"x" * 20, end_stream=True)
    client.send()
    assert request.content.getvalue() == b""
    served.clock.advance(0)
    assert client.status(stream) == b"413"
    assert served.pages.seen == []


def test_growingBodyOverLimitHTTP2() -> None:
    """
    An HTTP/2 body without a length that grows past the limit gets 413
    once its stream ends; the rest is discarded.
    """
    served = _serve(maxBodySize=10)
    client = _H2(served)
    stream = client.open(b"/", method=b"POST", end=False)
    [request] = served.site.inFlight
    client.h2.send_data(stream, b"x" * 8)
    client.h2.send_data(stream, b"y" * 8)
    client.h2.send_data(stream, b"z" * 8, end_stream=True)
    client.send()
    assert request.content.getvalue() == b""
    served.clock.advance(0)
    assert client.status(stream) == b"413"


class _FullDisk:
    """
    A request body that no disk can hold.
    """

    closed = False

    def write(self, data: bytes) -> int:
        raise SpoolError(OSError(errno.ENOSPC, os.strerror(errno.ENOSPC)))

    def close(self) -> None:
        self.closed = True


def test_bodyNotStoredHTTP2(monkeypatch: pytest.MonkeyPatch) -> None:
    """
    An HTTP/2 body the disk cannot hold gets 507 once its stream ends, with
    one warning naming the client and the request as the client sent it.
    """
    served = _serve()
    disk = _FullDisk()
    monkeypatch.setattr(served.site, "getContentFile", lambda length: disk)
    client = _H2(served)
    with capturedLogs() as events:
        stream = client.open(b"/up?x", method=b"POST", end=False)
        client.h2.send_data(stream, b"x" * 8, end_stream=True)
        client.send()
    served.clock.advance(0)
    assert client.status(stream) == b"507"
    assert disk.closed
    warnings = [e for e in events if e["log_level"] >= LogLevel.warn]
    assert [formatEvent(e) for e in warnings] == [
        "507 for 192.0.2.6: the body of POST /up?x cannot be stored: "
        "No space left on device"
    ]


class _Gate:
    """
    An early gate that refuses every request to C{/private} and records
    what it was asked.
    """

    def __init__(self) -> None:
        self.asked: list[tuple[bytes, list[bytes] | None]] = []

    def earlyChallenge(self, target: bytes, headers: Any) -> bytes | None:
        self.asked.append((target, headers.getRawHeaders(b"authorization")))
        return b'Basic realm="r"' if target.startswith(b"/private") else None


@pytest.mark.parametrize(
    "framing",
    [b"Content-Length: 1000000\r\n", b"Transfer-Encoding: chunked\r\n"],
)
def test_earlyUnauthorizedHTTP1(framing: bytes) -> None:
    """
    An HTTP/1.1 request with a body that the site's gate refuses gets 401
    with the challenge at the end of its head: no C{100 Continue}, no body
    read, the connection closed.
    """
    gate = _Gate()
    served = _serve(authGate=gate)
    connection, transport = served.connect()
    connection.dataReceived(
        b"POST /private/x HTTP/1.1\r\nHost: a\r\nExpect: 100-continue\r\n"
        b"Authorization: Basic eA==\r\n" + framing + b"\r\n"
    )
    response = transport.value()
    assert response.startswith(b"HTTP/1.1 401 ")
    assert b"100 Continue" not in response
    assert _head(response)[b"www-authenticate"] == [b'Basic realm="r"']
    assert b"Error code: 401" in response
    assert transport.disconnecting
    assert gate.asked == [(b"/private/x", [b"Basic eA=="])]
    assert served.site.inFlight == set()
    assert served.pages.seen == []


def test_earlyGatePassesHTTP1() -> None:
    """
    A request the gate lets through, and a request without a body (which
    the resource refuses on a connection kept open), are read as usual.
    """
    gate = _Gate()
    served = _serve(authGate=gate)
    connection, transport = served.connect()
    connection.dataReceived(
        b"POST /public HTTP/1.1\r\nHost: a\r\nExpect: 100-continue\r\n"
        b"Content-Length: 2\r\n\r\n"
    )
    assert transport.value().startswith(b"HTTP/1.1 100 Continue")
    connection.dataReceived(b"ok")
    transport.clear()
    connection.dataReceived(b"GET /private/x HTTP/1.1\r\nHost: a\r\n\r\n")
    assert transport.value().startswith(b"HTTP/1.1 200 ")
    assert not transport.disconnecting
    assert [target for target, _ in gate.asked] == [b"/public"]


def test_earlyUnauthorizedHTTP2() -> None:
    """
    On HTTP/2, a request the gate refuses gets no C{100 Continue}; its body
    is not kept, and it is answered 401 with the challenge when its stream
    ends. The connection carries on.
    """
    gate = _Gate()
    served = _serve(authGate=gate)
    client = _H2(served)
    stream = client.open(
        b"/private/x",
        method=b"POST",
        extra=[(b"content-length", b"20"), (b"expect", b"100-continue")],
        end=False,
    )
    [request] = served.site.inFlight
    early = client.events()
    assert not any(
        isinstance(e, h2.events.InformationalResponseReceived) for e in early
    )
    client.h2.send_data(stream, b"x" * 20, end_stream=True)
    client.send()
    assert request.content.getvalue() == b""
    served.clock.advance(0)
    responses = [
        e for e in client.events() if isinstance(e, h2.events.ResponseReceived)
    ]
    [response] = responses
    headers = dict(response.headers)
    assert headers[b":status"] == b"401"
    assert headers[b"www-authenticate"] == b'Basic realm="r"'
    assert served.pages.seen == []
    other = client.open(b"/public")
    served.clock.advance(0)
    assert client.status(other) == b"200"


def test_earlyGatePassesHTTP2() -> None:
    """
    On HTTP/2, a request the gate lets through gets its C{100 Continue}.
    """
    served = _serve(authGate=_Gate())
    client = _H2(served)
    client.open(
        b"/public",
        method=b"POST",
        extra=[(b"content-length", b"2"), (b"expect", b"100-continue")],
        end=False,
    )
    assert any(
        isinstance(e, h2.events.InformationalResponseReceived) for e in client.events()
    )


# Bodies streamed to scripts


class _Scripts(Resource):
    """
    A root that streams the bodies of requests below C{/cgi/} (as the
    router does for CGI scripts), holding each such request open.
    """

    isLeaf = True

    def __init__(self) -> None:
        super().__init__()
        self.rendered: list[Any] = []

    def streamsBody(self, request: Any) -> bool:
        path: bytes = request.path
        return path.startswith(b"/cgi/")

    def render(self, request: Any) -> int:
        self.rendered.append(request)
        return NOT_DONE_YET


def _streamed(head: bytes = b"") -> tuple[_Scripts, _Served, Any, _Transport]:
    scripts = _Scripts()
    served = _serve(scripts)
    connection, transport = served.connect()
    connection.dataReceived(
        b"POST /cgi/x?a=1&b HTTP/1.1\r\nHost: a\r\nContent-Length: 10\r\n%s\r\n"
        b"12345" % (head,)
    )
    return scripts, served, connection, transport


def test_streamedBodyStartsAtTheHead() -> None:
    """
    A request whose root streams its body is rendered at the end of its
    head, with its method, target and query known, its length announced by
    its content; it is rendered once, its body's end changing nothing.
    """
    scripts, served, connection, _ = _streamed()
    [request] = scripts.rendered
    assert request.method == b"POST"
    assert request.uri == b"/cgi/x?a=1&b"
    assert request.path == b"/cgi/x"
    assert request.args == {b"a": [b"1"], b"b": [b""]}
    assert request.clientRequestLine == b"POST /cgi/x?a=1&b HTTP/1.1"
    assert isinstance(request.content, BodyStream)
    assert request.content.seek(0, os.SEEK_END) == 10
    assert request.content.received == 5
    assert request.bodyPending
    assert served.site.inFlight == {request}
    connection.dataReceived(b"67890")
    assert not request.bodyPending
    assert scripts.rendered == [request]


def test_otherBodiesKept() -> None:
    """
    A request its root does not stream (another path; a root that cannot
    tell) is rendered once its whole body is kept.
    """
    scripts = _Scripts()
    served = _serve(scripts)
    connection, _ = served.connect()
    connection.dataReceived(
        b"POST /static HTTP/1.1\r\nHost: a\r\nContent-Length: 3\r\n\r\nab"
    )
    assert scripts.rendered == []
    connection.dataReceived(b"c")
    [request] = scripts.rendered
    assert not isinstance(request.content, BodyStream)
    assert request.content.read() == b"abc"
    assert not request.bodyPending
    served = _serve()
    connection, transport = served.connect()
    connection.dataReceived(
        b"POST /cgi/x HTTP/1.1\r\nHost: a\r\nContent-Length: 3\r\n\r\nab"
    )
    assert transport.value() == b""


def test_streamedBodyDiscardedWhenAnswered() -> None:
    """
    A response that ends before its body: the rest of the body is
    discarded as it arrives.
    """
    scripts, served, connection, transport = _streamed()
    [request] = scripts.rendered
    stream = request.content
    request.write(b"early")
    request.finish()
    assert stream.discarding
    assert served.site.inFlight == set()
    connection.dataReceived(b"67890" + b"GET / HTTP/1.1\r\nHost: a\r\n\r\n")
    assert transport.value().count(b"HTTP/1.1 200 OK") == 1
    assert len(scripts.rendered) == 2


def test_streamedBodyDiscardedWhenClientGone() -> None:
    """
    A client gone in the middle of a streamed body: the body is given up.
    """
    scripts, served, connection, _ = _streamed()
    [request] = scripts.rendered
    stream = request.content
    connection.connectionLost(Failure(ConnectionDone()))
    assert stream.discarding
    assert served.site.inFlight == set()


def test_streamedBodyAfterContinue() -> None:
    """
    C{Expect: 100-continue} is answered before the request is started.
    """
    scripts, _, _, transport = _streamed(b"Expect: 100-continue\r\n")
    assert transport.value() == b"HTTP/1.1 100 Continue\r\n\r\n"
    assert len(scripts.rendered) == 1


def test_notStreamedOverHTTP2() -> None:
    """
    Only the HTTP/1.x channel starts requests early; elsewhere (an HTTP/2
    stream, another channel) the body is kept as before.
    """
    scripts = _Scripts()
    served = _serve(scripts)
    channel = HTTPChannel()
    channel.site = served.site  # type: ignore[attr-defined]
    channel.makeConnection(StringTransport())
    request = CGIServeRequest(channel, parsePOSTFormSubmission=False)
    assert not request.startEarly(b"POST", b"/cgi/x", b"HTTP/1.1")
    channel.connectionLost(Failure(ConnectionDone()))
