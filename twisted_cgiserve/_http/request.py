# -*- test-case-name: tests.http.test_request -*-
"""
One HTTP request as this server handles it: Twisted's L{Request}, with the
server's C{Server} header and the admin's extra headers on its response,
the request line as the client sent it, a short path for a site whose root
is a leaf, and the site's body size limit and in-flight tracking.

The headers are set by the request just before the response headers go
out, which covers every response (including C{OPTIONS *} and Twisted's own
error pages) and touches nothing when our resources are embedded in someone
else's site.

Over HTTP/1.x, a request with an announced body that the site's root
streams (one for a CGI script) is processed as soon as its head is
complete (L{CGIServeRequest.startEarly}), its content a
L{BodyStream<twisted_cgiserve._http.bodystream.BodyStream>} that hands the
body on as it arrives; every other request (HTTP/2, chunked bodies, static
files) is processed once its whole body is kept, as Twisted does.

The request line is read off the connection once the request's head has
arrived: Twisted hands the method and target to the request only once the
whole body has arrived, and a refusal while the body is still arriving must
already say which request it refuses. The line is private to Twisted's
HTTP/1.x channel and undocumented on its HTTP/2 stream, so this module asks
the modules that fence those in (L{twisted_cgiserve._http.channel},
L{twisted_cgiserve._http.h2}), whose canaries fail loudly if Twisted changes.

Behind a trusted proxy (C{--trusted-proxy}), the client's address and
scheme are taken from the proxy's headers at the same moment, the end of
the head, so that everything after it (refusals, the CGI environment,
C{--cgi-debug}'s loopback check, the access log) sees the real client
through L{Request.getClientAddress} and L{CGIServeRequest.isSecure}.
"""

from __future__ import annotations

from io import BytesIO
from typing import TYPE_CHECKING, Any, cast
from urllib.parse import parse_qs
from urllib.parse import unquote_to_bytes as unquote

from twisted.python.failure import Failure
from twisted.web.http import HTTPChannel
from twisted.web.server import Request

from twisted_cgiserve._http.bodystream import BodyStream, StreamsBodies
from twisted_cgiserve._http.channel import CGIServeChannel
from twisted_cgiserve._http.channel import receivedRequestLine as channelRequestLine
from twisted_cgiserve._http.errors import sendError
from twisted_cgiserve._http.forwarded import TrustedProxies
from twisted_cgiserve._http.h2 import isStream, streamRequestLine
from twisted_cgiserve._http.host import isValidHost
from twisted_cgiserve._http.spool import SpoolError
from twisted_cgiserve._version import SERVER_SOFTWARE

if TYPE_CHECKING:
    from twisted_cgiserve._http.site import CGIServeSite

__all__ = ["CGIServeRequest", "receivedRequestLine", "trustingRequests"]

_SERVER = SERVER_SOFTWARE.encode("ascii")


def receivedRequestLine(channel: HTTPChannel) -> bytes:
    """
    The request line the client sent on C{channel} (an HTTP/1.x channel or
    an HTTP/2 stream), once the head of its current request has arrived.
    """
    if isStream(channel):
        return streamRequestLine(cast(Any, channel))
    return channelRequestLine(channel)


class CGIServeRequest(Request):
    """
    A request whose responses carry C{Server: twisted-cgiserve/VERSION}.

    @ivar clientRequestLine: The request line as the client sent it
        (C{METHOD target version}), known from the end of the request's
        head on, and kept when a CGI local redirect rewrites C{method} and
        C{uri}: what the access log writes, as Apache's C{%r} does. C{-}
        until the head has arrived.
    """

    clientRequestLine = b"-"
    #: Whose X-Forwarded-For (or Forwarded) names the client: set by
    #: L{trustingRequests} for C{--trusted-proxy}; L{None} trusts no one.
    trustedProxies: TrustedProxies | None = None

    # What a trusted proxy said about the scheme: L{None} when it said
    # nothing, and the connection's own answer stands.
    _forwardedSecure: bool | None = None
    # The head's end was seen (headArrived).
    _headKnown = False
    # Bytes of the body received so far.
    _bodyReceived = 0
    # The site tracking this request as in flight, until it ends.
    _tracker: CGIServeSite | None = None
    # An HTTP/2 request whose body went past the site's limit: the rest is
    # discarded and the answer is 413 once the stream ends.
    _bodyRefused = False
    # The status that refusal gets: 413, or 507 when the disk was full.
    _refusalCode = 413
    # The body, when it goes to its script as it arrives (startEarly).
    _stream: BodyStream | None = None

    def _channelSite(self) -> CGIServeSite:
        """
        The site this request arrived through: its connection's, set before
        the request exists (a L{CGIServeRequest} is made by the channels of
        a L{CGIServeSite}, whose C{requestFactory} it is).
        """
        site: CGIServeSite = cast(Any, self.channel).site
        return site

    def process(self) -> None:
        """
        Render the site's root directly when it is a leaf (as the tree
        C{twistd cgiserve} serves is): there is nothing to traverse, and the
        generic path's per-request work (traversal, encoder lookup, a freshly
        formatted C{Date}) is a measurable part of serving a small file.

        An HTTP/2 stream is processed one reactor turn later: the end of a
        request and its cancellation (C{RST_STREAM}) often arrive in one
        packet, and Twisted hands over the end first; answering at once would
        write to a stream the HTTP/2 state machine has already closed, which
        Twisted does not survive (the whole connection is lost).
        """
        if isStream(self.channel):
            self._channelSite().reactor.callLater(0, self._processStream)
            return
        self._process()

    def _processStream(self) -> None:
        channel: HTTPChannel | None = self.channel
        if channel is None:
            # The stream was reset (or the connection lost) meanwhile.
            return
        hosts = self.requestHeaders.getRawHeaders(b"host")
        if hosts is not None and (len(hosts) != 1 or not isValidHost(hosts[0])):
            # The h2 library refuses a request with two hosts or none, but
            # not an invalid :authority (RFC 9113 section 8.3.1; RFC 9112
            # section 3.2 for what HTTP/1.x answers).
            self.site = self._channelSite()
            sendError(self, 400)
            return
        self._process()

    def _process(self) -> None:
        site = self._channelSite()
        if self._bodyRefused:
            self.site = site
            sendError(self, self._refusalCode)
            return
        resource = site.resource
        if not resource.isLeaf or self.path == b"*":
            super().process()
            return
        self.site = site
        self.responseHeaders.setRawHeaders(b"date", [site.clock.httpDate()])
        self.prepath = []
        segments = self.path[1:].split(b"/")
        # Most paths have no escapes, and nothing to decode.
        self.postpath = (
            [unquote(segment) for segment in segments]
            if b"%" in self.path
            else segments
        )
        self.sitepath = list[bytes]()
        try:
            self.render(resource)
        except BaseException:
            self.processingFailed(Failure())

    def write(self, data: bytes) -> None:
        if not self.startedWriting and self.channel is not None:
            headers = self.responseHeaders
            headers.setRawHeaders(b"server", [_SERVER])
            extra = self._channelSite().extraHeaders
            # Successful responses only, as http.server's --header, and a
            # 304, which stands for a 200 the client already has.
            if extra and (200 <= self.code < 300 or self.code == 304):
                for name, value in extra:
                    if not headers.hasHeader(name):
                        headers.setRawHeaders(name, [value])
        super().write(data)

    def finish(self) -> None:
        super().finish()
        if self._stream is not None:
            # A response that ends before the body (a script that answered
            # without reading it all, a local redirect, a refusal): the
            # rest is discarded as it arrives (see CGIServeChannel).
            self._stream.discard()
        self._untrack()

    def connectionLost(self, reason: Failure) -> None:
        if self._stream is not None:
            self._stream.discard()
        super().connectionLost(reason)
        self._untrack()

    def _untrack(self) -> None:
        tracker, self._tracker = self._tracker, None
        if tracker is not None:
            tracker.requestEnded(self)

    def parseCookies(self) -> None:
        """
        On an HTTP/2 stream, called once all the request's headers are in
        and before Twisted answers C{Expect: 100-continue}: where the site's
        L{EarlyGate} is asked (the HTTP/1.x channel asks it itself). A
        refused request is answered 401 once its stream ends, with no
        C{100 Continue} and its body discarded meanwhile, as a body past the
        limit is; the connection and its other streams carry on.
        """
        super().parseCookies()
        channel = self.channel
        gate = self._channelSite().authGate if isStream(channel) else None
        if gate is None:
            return
        challenge = gate.earlyChallenge(cast(Any, channel).path, self.requestHeaders)
        if challenge is not None:
            self.requestHeaders.removeHeader(b"expect")
            self.responseHeaders.setRawHeaders(b"www-authenticate", [challenge])
            self._refusalCode = 401
            self._refuseBody()

    def gotLength(self, length: int | None) -> None:
        """
        The request's head is complete: its request line is known, and from
        now until its response ends it is in flight for the graceful
        shutdown, its upload included. While the server drains, it is the
        connection's last.
        """
        channel = self.channel
        self.headArrived()
        site = self._channelSite()
        site.requestStarted(self)
        self._tracker = site
        if site.draining and not isStream(channel):
            channel.persistent = False
            self.responseHeaders.setRawHeaders(b"connection", [b"close"])
        super().gotLength(length)
        # HTTP/1.x channels refuse an announced length before this; an
        # HTTP/2 stream only gets here.
        limit = site.maxBodySize
        if isStream(channel) and length is not None and limit and length > limit:
            self._refuseBody()

    def headArrived(self) -> None:
        """
        The request's head is complete: its request line is known and,
        behind a trusted proxy, its client and scheme, before anything reads
        them (the site's refusals, the CGI environment, C{--cgi-debug}, the
        access log). Once, at L{gotLength}, or earlier for a request its
        connection refuses at the end of its head.
        """
        if self._headKnown:
            return
        self._headKnown = True
        self.clientRequestLine = receivedRequestLine(self.channel)
        if self.trustedProxies is not None:
            forwarded = self.trustedProxies.resolve(self.client, self.requestHeaders)
            if forwarded is not None:
                self.client = forwarded.client
                self._forwardedSecure = forwarded.secure

    def isSecure(self) -> bool:
        """
        Whether the client speaks HTTPS: to the trusted proxy in front, when
        it said so (C{X-Forwarded-Proto}), else on this connection.
        """
        if self._forwardedSecure is not None:
            return self._forwardedSecure
        return bool(super().isSecure())

    def startEarly(self, command: bytes, path: bytes, version: bytes) -> bool:
        """
        The head of an HTTP/1.x request with an announced body is complete:
        when the site's root streams its body (it goes to a CGI script, see
        L{StreamsBodies}), process the request now, with a L{BodyStream} as
        its content, instead of once the whole body has arrived.

        @return: Whether the request was started; if not, its body is kept
            and it is processed when complete, as any other.
        """
        channel = self.channel
        resource = self._channelSite().resource
        if not isinstance(channel, CGIServeChannel):
            return False
        length: int | None = channel.length
        if not length or not isinstance(resource, StreamsBodies):
            return False
        # What Twisted's requestReceived sets, from what the head says (a
        # form body is never parsed into args here: see CGIServeSite).
        self.method, self.uri, self.clientproto = command, path, version
        self.path, _, query = path.partition(b"?")
        self.args = parse_qs(query, keep_blank_values=True) if query else {}
        if not resource.streamsBody(self):
            return False
        spooled, self.content = self.content, BodyStream(length, channel)
        if spooled is not None:
            spooled.close()
        self._stream = self.content
        self.process()
        return True

    def requestReceived(self, command: bytes, path: bytes, version: bytes) -> None:
        """
        The whole body has arrived: a request started early (L{startEarly})
        is already being processed.
        """
        if self._stream is None:
            super().requestReceived(command, path, version)

    @property
    def bodyPending(self) -> bool:
        """
        Whether the body of a request started early is still arriving.
        """
        return self._stream is not None and not self._stream.complete

    def handleContentChunk(self, data: bytes) -> None:
        """
        Keep a body chunk, unless the body has grown past the site's limit
        (a chunked body announces no length): then the request is refused
        with 413 and the rest of the connection ignored. A body the disk
        cannot hold is refused the same way, with 507.
        """
        if self._stream is not None:
            self._stream.feed(data)
            return
        if self._bodyRefused:
            return
        self._bodyReceived += len(data)
        channel = self.channel
        limit = self._channelSite().maxBodySize
        code = 413 if limit and self._bodyReceived > limit else 0
        if not code:
            try:
                super().handleContentChunk(data)
            except SpoolError as e:
                # The refusal names the request by method and target.
                code = e.report(
                    self.getClientAddress(), self.clientRequestLine.rsplit(b" ", 1)[0]
                )
        if code:
            if isinstance(channel, CGIServeChannel):
                channel.refuse(code, headComplete=True)
            else:
                self._refusalCode = code
                self._refuseBody()

    def _refuseBody(self) -> None:
        """
        Stop keeping an HTTP/2 request's body. Twisted's HTTP/2 cannot end a
        stream whose request is still arriving (the stream's later data
        frames would find it gone), so the 413 waits for the end of the
        stream; the body meanwhile costs neither memory nor disk.
        """
        self._bodyRefused = True
        content, self.content = self.content, BytesIO()
        if content is not None:
            content.close()


def trustingRequests(proxies: TrustedProxies) -> type[CGIServeRequest]:
    """
    The request class of a site behind C{proxies}: a L{CGIServeRequest}
    that believes their forwarding headers (a site's C{requestFactory}).
    """
    return type("CGIServeRequest", (CGIServeRequest,), {"trustedProxies": proxies})
