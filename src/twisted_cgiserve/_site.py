# -*- test-case-name: tests.test_site -*-
"""
The HTTP site: Twisted's L{Site} with this server's C{Server} header, the
admin's extra headers and the access log, over HTTP/1.x or HTTP/2.

The headers are set by the request just before the response headers go
out, which covers every response (including C{OPTIONS *} and Twisted's own
error pages) and touches nothing when our resources are embedded in someone
else's site.
"""

from __future__ import annotations

import time
from collections.abc import Sequence
from io import BytesIO
from time import monotonic
from typing import IO, Any, cast
from urllib.parse import unquote_to_bytes as unquote

from h2.exceptions import ProtocolError as H2ProtocolError
from twisted.internet.defer import Deferred, succeed
from twisted.internet.task import LoopingCall
from twisted.protocols.tls import TLSMemoryBIOProtocol
from twisted.python.failure import Failure
from twisted.web import http
from twisted.web._http2 import H2Stream
from twisted.web.http import _GenericHTTPChannelProtocol, datetimeToString
from twisted.web.resource import IResource
from twisted.web.server import Request, Site

from twisted_cgiserve._accesslog import AccessLog
from twisted_cgiserve._channel import CGIServeChannel
from twisted_cgiserve._errors import sendError
from twisted_cgiserve._spool import BodySpool, SpoolError
from twisted_cgiserve._version import SERVER_SOFTWARE

__all__ = ["SERVER_SOFTWARE", "CGIServeRequest", "CGIServeSite"]

_SERVER = SERVER_SOFTWARE.encode("ascii")

# Request bodies up to this size are kept in memory.
_IN_MEMORY = 1024 * 1024

# Seconds an ended HTTP/2 connection gets to close before it is cut off.
_ABORT_AFTER = 2.0


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

        An HTTP/2 stream is processed one reactor turn later: the end of a
        request and its cancellation (C{RST_STREAM}) often arrive in one
        packet, and Twisted hands over the end first; answering at once would
        write to a stream the HTTP/2 state machine has already closed, which
        Twisted does not survive (the whole connection is lost).
        """
        channel: Any = self.channel
        if isinstance(channel, H2Stream):
            channel.site.reactor.callLater(0, self._processStream)
            return
        self._process()

    def _processStream(self) -> None:
        if self.channel is not None and not self._disconnected:
            self._process()

    def _process(self) -> None:
        site: Site = cast(Any, self.channel).site
        tracker = getattr(site, "requestStarted", None)
        if tracker is not None:
            tracker(self)
            self._tracker = site
        if self._bodyRefused:
            self.site = site
            sendError(self, self._refusalCode)
            return
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
            headers = self.responseHeaders
            headers.setRawHeaders(b"server", [_SERVER])
            extra = getattr(getattr(self, "site", None), "extraHeaders", None)
            # Successful responses only, as http.server's --header, and a
            # 304, which stands for a 200 the client already has.
            if extra and (200 <= self.code < 300 or self.code == 304):
                for name, value in extra:
                    if not headers.hasHeader(name):
                        headers.setRawHeaders(name, [value])
        super().write(data)

    _bodyReceived = 0
    _tracker: Any = None
    # An HTTP/2 request whose body went past the site's limit: the rest is
    # discarded and the answer is 413 once the stream ends.
    _bodyRefused = False
    # The status that refusal gets: 413, or 507 when the disk was full.
    _refusalCode = 413

    def finish(self) -> None:
        super().finish()
        self._untrack()

    def connectionLost(self, reason: Failure) -> None:
        super().connectionLost(reason)
        self._untrack()

    def _untrack(self) -> None:
        tracker, self._tracker = self._tracker, None
        if tracker is not None:
            tracker.requestEnded(self)

    def gotLength(self, length: int | None) -> None:
        super().gotLength(length)
        # HTTP/1.x channels refuse an announced length before this; an
        # HTTP/2 stream only gets here.
        if length is not None and not hasattr(self.channel, "refuse"):
            limit = getattr(getattr(self.channel, "site", None), "maxBodySize", 0)
            if limit and length > limit:
                self._refuseBody()

    def handleContentChunk(self, data: bytes) -> None:
        """
        Keep a body chunk, unless the body has grown past the site's limit
        (a chunked body announces no length): then the request is refused
        with 413 and the rest of the connection ignored. A body the disk
        cannot hold is refused the same way, with 507.
        """
        if self._bodyRefused:
            return
        self._bodyReceived += len(data)
        channel: Any = self.channel
        limit = getattr(getattr(channel, "site", None), "maxBodySize", 0)
        code = 413 if limit and self._bodyReceived > limit else 0
        if not code:
            try:
                super().handleContentChunk(data)
            except SpoolError as e:
                code = e.report(self)
        if code:
            refuse = getattr(channel, "refuse", None)
            if refuse is not None:
                refuse(code)
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


class _Connection(_GenericHTTPChannelProtocol):
    """
    One client connection, HTTP/1.x or HTTP/2 (Twisted's wrapper switches
    when TLS negotiates C{h2}), known to the site from start to end whatever
    it speaks, so that shutdown can close it and the header deadline can
    find it.
    """

    # close() was called.
    _closing = False
    # The HTTP/2 connection ended itself; input is ignored from then on.
    _ended = False
    _abortCall: Any = None

    def makeConnection(self, transport: Any) -> None:
        super().makeConnection(transport)
        opened = getattr(self._site, "channelOpened", None)
        if opened is not None:
            opened(self)

    def dataReceived(self, data: bytes) -> None:
        if self._ended:
            # The HTTP/2 connection has ended; whatever the client still
            # sends is not read into anything.
            return
        super().dataReceived(data)
        # An HTTP/2 connection that ended itself (a protocol error, or the
        # client's GOAWAY) asks its transport to close, but a TLS transport
        # waits for its producer (that same connection) to unregister, which
        # Twisted never does: the connection would stay open, and Twisted's
        # HTTP/2 layer would buffer whatever the client goes on sending.
        if getattr(self._channel, "_stillProducing", True) is False:
            self._ended = True
            self.close()
            # A client that goes on sending never answers TLS's close: cut
            # it off once the GOAWAY has had time to leave.
            reactor = getattr(self._site, "reactor", None)
            if reactor is not None:
                self._abortCall = reactor.callLater(_ABORT_AFTER, self._abort)

    def _abort(self) -> None:
        self._abortCall = None
        transport: Any = self._channel.transport
        if transport is not None:
            transport.abortConnection()

    def close(self) -> None:
        """
        Close the connection once what was written to it is sent: an
        HTTP/2 client is told first (C{GOAWAY}) that no new stream will be
        answered.
        """
        channel: Any = self._channel
        transport = channel.transport
        if self._closing or transport is None:
            return
        self._closing = True
        h2 = getattr(channel, "conn", None)
        if h2 is not None and getattr(channel, "_stillProducing", False):
            try:
                h2.close_connection()
                transport.write(h2.data_to_send())
            except H2ProtocolError:
                pass
        # Both channels register themselves as their transport's producer,
        # and TLS does not close while one is registered.
        transport.unregisterProducer()
        transport.loseConnection()
        if isinstance(transport, TLSMemoryBIOProtocol) and transport.transport:
            # TLS has now queued its close_notify after everything written
            # before. Twisted would then keep the connection open until the
            # client answers with its own, which idle clients rarely do; TLS
            # does not require waiting for it (RFC 8446, 6.1). Closing the
            # socket once its buffer is sent loses nothing.
            transport.transport.loseConnection()

    def connectionLost(self, reason: Failure) -> None:
        if self._abortCall is not None:
            self._abortCall.cancel()
            self._abortCall = None
        super().connectionLost(reason)
        closed = getattr(self._site, "channelClosed", None)
        if closed is not None:
            closed(self)


def _channelFactory(self: Site) -> _GenericHTTPChannelProtocol:
    """
    Build a connection: our HTTP/1.x channel inside Twisted's wrapper that
    switches to HTTP/2 when TLS negotiates it. (The wrapper is private to
    Twisted; the site tests fail loudly if it changes.)
    """
    channel = CGIServeChannel()
    channel.serverSoftware = _SERVER
    return _Connection(channel)


class CGIServeSite(Site):
    """
    The site C{twistd cgiserve} listens with.
    """

    protocol = _channelFactory
    requestFactory = CGIServeRequest
    # One "Starting factory" line per start is noise in a server's log.
    noisy = False

    def __init__(
        self,
        resource: IResource,
        accessLog: AccessLog | None = None,
        *,
        maxBodySize: int = 1024 * 1024 * 1024,
        headerTimeout: float = 20.0,
        extraHeaders: Sequence[tuple[bytes, bytes]] = (),
        **kw: Any,
    ) -> None:
        """
        @param maxBodySize: The largest request body accepted, in bytes (0
            for no limit); larger ones get 413.
        @param headerTimeout: Seconds a client has to send a request's
            headers once it started it (0 for no limit); then 408.
        @param extraHeaders: Headers added to successful responses that do
            not already have them (C{--header}).
        @param kw: For L{Site}; C{timeout} is the idle connection timeout.
        """
        # Twisted would parse form POSTs into request.args, reading the whole
        # body into memory; request bodies here are for CGI scripts, which
        # read them from standard input.
        kw.setdefault("parsePOSTFormSubmission", False)
        super().__init__(resource, **kw)
        self.accessLog = accessLog if accessLog is not None else AccessLog()
        self.maxBodySize = maxBodySize
        self.headerTimeout = headerTimeout
        self.extraHeaders = tuple(extraHeaders)
        self.inFlight: set[http.Request] = set()
        self._drained: list[Deferred[None]] = []
        self.channels: set[_Connection] = set()
        self._sweeper: LoopingCall | None = None

    def channelOpened(self, connection: _Connection) -> None:
        self.channels.add(connection)

    def channelClosed(self, connection: _Connection) -> None:
        self.channels.discard(connection)

    def closeConnections(self) -> None:
        """
        Close every connection once what was written to it has been sent
        (the reactor's own shutdown drops connections, unsent bytes and all);
        HTTP/2 connections still sending are left for a later call.
        """
        for connection in list(self.channels):
            # An HTTP/2 connection hands response data to its transport a
            # frame per reactor turn: closing the transport now would cut
            # the streams still sending. It is closed on a later call.
            if getattr(connection._channel, "streams", None):
                continue
            connection.close()

    def connectionsOpen(self) -> int:
        """
        How many connections have not finished closing.
        """
        return len(self.channels)

    def requestStarted(self, request: http.Request) -> None:
        """
        Track a request until it ends (L{requestEnded}), so shutdown can wait
        for it.
        """
        self.inFlight.add(request)

    def requestEnded(self, request: http.Request) -> None:
        self.inFlight.discard(request)
        if not self.inFlight and self._drained:
            waiting, self._drained = self._drained, []
            for d in waiting:
                d.callback(None)

    def startFactory(self) -> None:
        super().startFactory()
        if self.headerTimeout and self._sweeper is None:
            self._sweeper = LoopingCall(self._sweepHeaders)
            self._sweeper.clock = self.reactor
            self._sweeper.start(min(1.0, self.headerTimeout / 4), now=False)

    def _sweepHeaders(self) -> None:
        """
        Refuse (408) the connections whose request headers are overdue: one
        pass a second over the open connections instead of a timer per
        request.
        """
        deadline = monotonic() - self.headerTimeout
        for connection in list(self.channels):
            # The HTTP/1.x channel inside; HTTP/2 has no such deadline.
            channel: Any = connection._channel
            started = getattr(channel, "headerStarted", None)
            if started is not None and started < deadline:
                channel.headerTimedOut()

    def whenDrained(self) -> Deferred[None]:
        """
        A L{Deferred} that fires when no request is in progress.
        """
        if not self.inFlight:
            return succeed(None)
        d: Deferred[None] = Deferred(self._drained.remove)
        self._drained.append(d)
        return d

    def getContentFile(self, length: int | None) -> IO[bytes]:
        """
        Where a request body is kept until it is used: in memory when small,
        otherwise in a temporary file, including a chunked body whose length
        is not announced (Twisted keeps those in memory). The file is
        written unbuffered, so a full disk is known (and refused with 507)
        at the chunk that fills it.
        """
        if length is not None and length <= _IN_MEMORY:
            return BytesIO()
        return cast(IO[bytes], BodySpool(_IN_MEMORY))

    def stopFactory(self) -> None:
        if self._sweeper is not None and self._sweeper.running:
            self._sweeper.stop()
        self._sweeper = None
        self.accessLog.flush()
        super().stopFactory()

    def log(self, request: http.Request) -> None:
        self.accessLog.write(request)
