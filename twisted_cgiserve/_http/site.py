# -*- test-case-name: tests.http.test_site -*-
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

from twisted.internet.task import LoopingCall
from twisted.python.failure import Failure
from twisted.web import http
from twisted.web.http import _GenericHTTPChannelProtocol, datetimeToString
from twisted.web.resource import IResource
from twisted.web.server import Request, Site

from twisted_cgiserve._http.accesslog import AccessLog
from twisted_cgiserve._http.channel import CGIServeChannel
from twisted_cgiserve._http.errors import sendError
from twisted_cgiserve._http.h2 import CGIServeH2Connection, isStream
from twisted_cgiserve._http.host import isValidHost
from twisted_cgiserve._http.response import DEFAULT_SEND_TIMEOUT, closeTransport
from twisted_cgiserve._http.spool import IN_MEMORY, BodySpool, SpoolError
from twisted_cgiserve._version import SERVER_SOFTWARE

__all__ = ["SERVER_SOFTWARE", "CGIServeRequest", "CGIServeSite"]

_SERVER = SERVER_SOFTWARE.encode("ascii")

# Seconds an ended HTTP/2 connection gets to close before it is cut off.
_ABORT_AFTER = 2.0

# Seconds a connection accepted just before the server began to drain has to
# send its first bytes before it is closed as idle.
_FIRST_BYTES = 1.0

# Seconds an HTTP/2 client told the connection is going away has to open the
# streams it had already begun (a round trip, at least).
_GOAWAY_NOTICE = 0.5


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
        if isStream(channel):
            channel.site.reactor.callLater(0, self._processStream)
            return
        self._process()

    def _processStream(self) -> None:
        if self.channel is None or self._disconnected:
            return
        hosts = self.requestHeaders.getRawHeaders(b"host")
        if hosts is not None and (len(hosts) != 1 or not isValidHost(hosts[0])):
            # The h2 library refuses a request with two hosts or none, but
            # not an invalid :authority (RFC 9113 section 8.3.1; RFC 9112
            # section 3.2 for what HTTP/1.x answers).
            self.site = cast(Any, self.channel).site
            sendError(self, 400)
            return
        self._process()

    def _process(self) -> None:
        site: Site = cast(Any, self.channel).site
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
        """
        The request's head is complete: from now until its response ends it
        is in flight for the graceful shutdown, its upload included. While
        the server drains, it is the connection's last.
        """
        site = getattr(self.channel, "site", None)
        tracker = getattr(site, "requestStarted", None)
        if tracker is not None:
            tracker(self)
            self._tracker = site
            if getattr(site, "draining", False) and not isStream(self.channel):
                cast(Any, self.channel).persistent = False
                self.responseHeaders.setRawHeaders(b"connection", [b"close"])
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
    # When the connection was accepted (reactor seconds), and whether any
    # request bytes (after TLS's handshake) have arrived on it since.
    _openedAt = 0.0
    _spoke = False
    # The HTTP/2 connection ended itself; input is ignored from then on.
    _ended = False
    _abortCall: Any = None

    def makeConnection(self, transport: Any) -> None:
        site: Any = self._site
        self._openedAt = site.reactor.seconds()
        super().makeConnection(transport)
        opened = getattr(self._site, "channelOpened", None)
        if opened is not None:
            opened(self)

    def dataReceived(self, data: bytes) -> None:
        if self._ended:
            # The HTTP/2 connection has ended; whatever the client still
            # sends is not read into anything.
            return
        self._spoke = True
        if self._negotiatedProtocol is None:
            transport = self._channel.transport
            if getattr(transport, "negotiatedProtocol", None) == b"h2":
                self._switchToHTTP2()
        super().dataReceived(data)
        # An HTTP/2 connection that ended itself (a protocol error, or the
        # client's GOAWAY) asks its transport to close, but a TLS transport
        # waits for its producer (that same connection) to unregister, which
        # Twisted never does: the connection would stay open, and Twisted's
        # HTTP/2 layer would buffer whatever the client goes on sending.
        channel = self._channel
        if isinstance(channel, CGIServeH2Connection) and channel.ended:
            self._ended = True
            self.close()
            # A client that goes on sending never answers TLS's close: cut
            # it off once the GOAWAY has had time to leave.
            reactor = getattr(self._site, "reactor", None)
            if reactor is not None:
                self._abortCall = reactor.callLater(_ABORT_AFTER, self._abort)

    def _switchToHTTP2(self) -> None:
        """
        Replace the HTTP/1.x channel with this server's HTTP/2 connection
        once TLS has negotiated C{h2}, as Twisted's wrapper would with its
        own (which lets a client that does not read fill the server's
        memory: see L{twisted_cgiserve._http.h2}).
        """
        wrapper: Any = self
        old: Any = self._channel
        networkProducer = old._networkProducer
        networkProducer.unregisterProducer()
        old.setTimeout(None)
        transport = old.transport
        channel: Any = CGIServeH2Connection(wrapper._site.reactor)
        channel.requestFactory = wrapper._requestFactory
        channel.site = wrapper._site
        channel.factory = wrapper._factory
        channel.timeOut = wrapper._timeOut
        channel.callLater = wrapper._callLater
        wrapper._channel = channel
        wrapper._negotiatedProtocol = b"h2"
        channel.makeConnection(transport)
        networkProducer.registerProducer(channel, True)

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
        if isinstance(channel, CGIServeH2Connection):
            channel.goAway()
        closeTransport(transport)

    @property
    def closing(self) -> bool:
        """
        Whether the connection is closing (or closed).
        """
        return self._closing or self._channel.transport is None

    def closeIfIdle(self, now: float, patience: float) -> None:
        """
        Close the connection if it is idle, for a server that is draining.

        Idle means between requests: closing it then is what RFC 9112
        section 9.3.1 allows, and clients retry. A connection with a request
        in progress or arriving is left to finish it (it is that request's
        last), as is an HTTP/2 connection with streams open (it is told with
        C{GOAWAY} that no new one will be answered); so is a connection just
        accepted that has sent nothing yet, for C{patience} seconds, since
        its request is most likely on its way (a restart must not fail the
        clients that connected just before it).
        """
        if self.closing:
            return
        channel: Any = self._channel
        if isinstance(channel, CGIServeH2Connection):
            if not channel.answered and now - self._openedAt < patience:
                return
            # Told first, and given a round trip to open the streams it
            # had already begun (which are answered): a client that sees
            # the final GOAWAY while one is on its way may well fail it
            # rather than retry (curl 7.88 does).
            channel.drain(now)
            notified = channel.drainingSince
            if channel.streams or (
                notified is not None and now - notified < _GOAWAY_NOTICE
            ):
                return
            self.close()
            return
        if channel.requests or channel.headerStarted is not None:
            # Its request is the connection's last one.
            channel.persistent = False
            for request in channel.requests:
                if not request.startedWriting:
                    request.responseHeaders.setRawHeaders(b"connection", [b"close"])
            return
        if not self._spoke and now - self._openedAt < patience:
            return
        self.close()

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
    Twisted; tests/http/test_h2.py fails loudly if it changes.)
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
        sendTimeout: float = DEFAULT_SEND_TIMEOUT,
        extraHeaders: Sequence[tuple[bytes, bytes]] = (),
        **kw: Any,
    ) -> None:
        """
        @param maxBodySize: The largest request body accepted, in bytes (0
            for no limit); larger ones get 413.
        @param headerTimeout: Seconds a client has to send a request's
            headers once it started it (0 for no limit); then 408.
        @param sendTimeout: Seconds a response may make no progress (the
            client does not read) before it is cut (0 for no limit).
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
        self.sendTimeout = sendTimeout
        self.extraHeaders = tuple(extraHeaders)
        self.inFlight: set[http.Request] = set()
        self.draining = False
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

    def startDraining(self) -> None:
        """
        The server is stopping: no connection is kept alive from now on.
        Each connection is closed as soon as it is idle (see
        L{_Connection.closeIfIdle}); requests in progress, and those already
        arriving, are answered first.
        """
        self.draining = True
        self.closeIdleConnections()

    def closeIdleConnections(self) -> None:
        """
        Close the connections that have become idle since the last call.
        """
        now = self.reactor.seconds()
        patience = min(_FIRST_BYTES, self.headerTimeout or _FIRST_BYTES)
        for connection in list(self.channels):
            connection.closeIfIdle(now, patience)

    def settled(self) -> bool:
        """
        Whether a draining server has nothing left to answer: no request in
        flight and every connection closing.
        """
        return not self.inFlight and all(c.closing for c in self.channels)

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

    def getContentFile(self, length: int | None) -> IO[bytes]:
        """
        Where a request body is kept until it is used: in memory when small,
        otherwise in a temporary file, including a chunked body whose length
        is not announced (Twisted keeps those in memory). The file is
        written unbuffered, so a full disk is known (and refused with 507)
        at the chunk that fills it.
        """
        if length is not None and length <= IN_MEMORY:
            return BytesIO()
        return cast(IO[bytes], BodySpool(IN_MEMORY))

    def stopFactory(self) -> None:
        if self._sweeper is not None and self._sweeper.running:
            self._sweeper.stop()
        self._sweeper = None
        self.accessLog.flush()
        super().stopFactory()

    def log(self, request: http.Request) -> None:
        self.accessLog.write(request)
