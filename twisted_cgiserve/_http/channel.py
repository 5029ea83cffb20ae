# -*- test-case-name: tests.http.test_channel -*-
"""
The HTTP/1.x connection: Twisted's L{HTTPChannel}, answering the requests it
cannot parse instead of dropping them, refusing the ones RFC 9112 says to
refuse, and reading no further than the client reads.

Twisted closes the connection without a word when a request or header line
is longer than it accepts (or a C{Content-Length} longer than Python's
integers parse), and answers other unparseable requests with a bare C{400}
that has no body; a client (or the person debugging it) then cannot tell a
server limit from a network failure. Here each gets a complete error
response, and is in the site's access log and metrics as an answered
request is.

Twisted also answers every request a client pipelines, whether or not the
client reads the answers: they pile up in the transport's buffer without
end. Here the next pipelined request waits, unparsed and with the socket
no longer read, while the transport holds more than its buffer's worth of
unsent response (Twisted's C{FileDescriptor.bufferSize}, 64 KiB, past which
the transport pauses its producer, this channel); it is taken up when the
transport has drained and resumes the channel.

A request whose body goes to a CGI script as it arrives is processed at the
end of its head (the request decides: C{startEarly}), while Twisted's
transfer decoder goes on handing it the body. Twisted would parse whatever
follows a finished response as the next request, so a response that ends
before its body holds the channel's C{requestDone} back until the body has
been read to its end (and dropped), for L{LINGER} seconds at most; after
that the connection is closed. The body's consumer being full pauses the
transport (L{CGIServeChannel.pauseBody}), and the idle timeout with it.

While such a body arrives, the socket is read (and the response written) in
pieces of L{STREAM_CHUNK} instead of Twisted's 64 KiB: a large upload and its
echo then take a tenth of the reactor turns and system calls (measured with a
100 MiB POST through cat(1)), for at most that much more memory per
connection that streams a body, given back when its request is done.

A client may shut down its side of the connection once its requests are
sent (C{shutdown(SHUT_WR)}, C{nc -N}, many scripted clients): Twisted calls a
channel that is not an L{IHalfCloseableProtocol} as if the connection were
lost, and what was still to be written is dropped. This channel is one: every
request received whole before the end of input is answered (those pipelined
behind it too), then the connection is closed, as http.server does; a
request still incomplete (its head, or a body not yet all sent) never will
be, and the connection is closed at once, as when the client disconnects.
A client that closes its socket sends the same end of input, and the server
cannot tell the two apart until what it writes is refused. While a CGI script
runs for the connection (L{endsAtClientEOF}), the end of input is therefore
taken as the client gone, as nginx and Go's net/http take it: the script is
ended at once rather than left to run until C{--cgi-timeout} for a client
that has likely left, holding one of the server's script slots meanwhile.

This module is the one place that touches the private parts of Twisted's
HTTP/1.x channel, read directly (never with a default) so that a change
fails loudly; each has a canary in C{tests/http/test_channel.py}:

 - L{HTTPChannel._version}: the parsed version of the request line, read
   before Twisted reads it itself;
 - L{HTTPChannel._command} and L{HTTPChannel._path}: with C{_version}, the
   request line as sent, known from the end of the head on
   (L{receivedRequestLine}); C{_command} is there only from the parse of
   a request line to the end of its body, which says whether the request
   a refusal ends had a line yet;
 - L{HTTPChannel._receivedHeaderSize} and
   L{HTTPChannel._receivedHeaderCount}: the bytes and header lines of the
   request head so far (zero between requests);
 - L{HTTPChannel._respondToBadRequestAndDisconnect}: what Twisted calls for
   every request it refuses, overridden here;
 - L{HTTPChannel._handlingRequest}: a request has been received whole and
   its response is not over (the next request waits in Twisted's buffer);
 - C{LineReceiver.paused}: set, Twisted's line parser parses no further
   (undocumented, inherited from C{twisted.protocols.basic._PauseableMixin});
 - C{HTTPChannel.requests}, C{length} and C{persistent}: the requests in
   progress, the announced body length and whether the connection is kept
   (undocumented attributes);
 - C{site}: set on the channel by L{twisted.web.server.Site.buildProtocol}.
"""

from __future__ import annotations

from collections.abc import Sequence
from time import monotonic
from typing import Any, Protocol, cast, runtime_checkable

from zope.interface import implementer

from twisted.internet.abstract import FileDescriptor
from twisted.internet.interfaces import (
    IDelayedCall,
    IHalfCloseableProtocol,
    IPushProducer,
    ITCPTransport,
)
from twisted.internet.protocol import connectionDone
from twisted.python.failure import Failure
from twisted.web.http import HTTPChannel, Request
from twisted.web.iweb import INonQueuedRequestFactory

from twisted_cgiserve._http.basicauth import EarlyGate
from twisted_cgiserve._http.errors import errorPage
from twisted_cgiserve._http.host import isValidHost

__all__ = [
    "LINGER",
    "MAX_CONTENT_LENGTH_DIGITS",
    "STREAM_CHUNK",
    "CGIServeChannel",
    "endsAtClientEOF",
    "rawErrorResponse",
    "receivedRequestLine",
]

# The most digits a request's Content-Length may have (up to about 10**18
# bytes, what a 64-bit length holds); a longer one is refused with 400, as
# nginx does, before Python is asked to convert it (it refuses past 4300).
MAX_CONTENT_LENGTH_DIGITS = 18
_LONGEST_LENGTH_LINE = len(b"Content-Length: ") + MAX_CONTENT_LENGTH_DIGITS

# Seconds the rest of a streamed body is read and discarded once its response
# has ended before it (a script that answered without reading it all), before
# the connection is closed instead (nginx's lingering_time is 30).
LINGER = 5.0

# Bytes read from the socket at once (Twisted's C{bufferSize}), and written to
# it at once (its C{SEND_LIMIT}), while a body is streamed; the transport also
# holds up to this much unsent response before pausing its producer.
STREAM_CHUNK = 1024 * 1024


@runtime_checkable
class _StartsEarly(Protocol):
    """
    A request that can be processed as soon as its head is complete, its
    body handed on as it arrives (this server's own).
    """

    def startEarly(self, command: bytes, path: bytes, version: bytes) -> bool: ...


@runtime_checkable
class _LimitsBodies(Protocol):
    """
    A site that limits the size of request bodies (this server's own); a
    channel under another site (our channel embedded elsewhere) has no
    limit.
    """

    maxBodySize: int


@runtime_checkable
class _GatesAuthentication(Protocol):
    """
    A site that may refuse a request for its credentials before its body.
    """

    authGate: EarlyGate | None


@runtime_checkable
class _LogsRefusals(Protocol):
    """
    A site that logs the requests its connections refuse (this server's
    own, L{CGIServeSite.logRefusal<twisted_cgiserve._http.site.CGIServeSite>}).
    """

    def logRefusal(
        self,
        request: Request,
        line: bytes | None,
        *,
        waited: float,
        headComplete: bool,
    ) -> None: ...


def rawErrorResponse(
    code: int, serverSoftware: bytes, headers: Sequence[tuple[bytes, bytes]] = ()
) -> bytes:
    """
    A complete error response that closes the connection, for errors found
    before there is a request object to answer through.

    @param headers: More headers (names and values already checked).
    """
    reason, page = errorPage(code)
    extra = b"".join(b"%s: %s\r\n" % (name, value) for name, value in headers)
    return (
        b"HTTP/1.1 %d %s\r\n"
        b"Server: %s\r\n"
        b"%s"
        b"Connection: close\r\n"
        b"Content-Type: text/html;charset=utf-8\r\n"
        b"Content-Length: %d\r\n\r\n" % (code, reason, serverSoftware, extra, len(page))
    ) + page


# Set on a request whose response a running script produces.
_ENDS_AT_CLIENT_EOF = "_cgiserveEndsAtClientEOF"


def endsAtClientEOF(request: object) -> None:
    """
    Mark C{request} as answered by a running script: over HTTP/1.x, the end
    of its client's input while it is in progress ends the connection (and
    so the script) instead of being answered as a half-close.
    """
    setattr(request, _ENDS_AT_CLIENT_EOF, True)


@implementer(IHalfCloseableProtocol)
class CGIServeChannel(HTTPChannel):
    """
    An HTTP/1.x channel whose every refusal is a complete response, with
    limits on what a client may send: a deadline for a request's headers
    (so clients trickling bytes cannot hold connections forever) and the
    site's body size limit, enforced before the body is read. A client that
    half-closes still gets the answers to the requests it sent whole.
    """

    serverSoftware = b"twisted-cgiserve"
    _host = None
    _refused = False
    # The transport asked this channel (its producer) to pause: it holds
    # more unsent bytes than its buffer size. It resumes the channel once
    # they have all been handed to the kernel.
    _sendBlocked = False
    # This channel stopped reading from the transport because of that.
    _readingStopped = False
    # The last Host value found valid on this connection.
    _validHost: bytes | None = None
    # When the request whose headers are being received began (monotonic
    # seconds), or None; the site's sweep refuses overdue ones with 408.
    headerStarted: float | None = None
    _maxBodySize = 0
    _authGate: EarlyGate | None = None
    # Set by Site.buildProtocol before the connection is made.
    site: object = None
    # The request being processed while its body still arrives (streamed to
    # its script), until the body is complete.
    _streamed: Request | None = None
    # That request, once its response is over: its body is read and
    # discarded (for LINGER seconds at most) before the connection takes
    # up a next request.
    _lingering: Request | None = None
    _lingerCall: IDelayedCall | None = None
    # The idle timeout, while a streamed body is not read (its script is
    # slow): the wait is the server's.
    _bodyPausedTimeOut: float | None = None
    _bodyPaused = False
    # The transport, while it reads and writes in STREAM_CHUNK pieces, and
    # its own buffer size and send limit, given back after.
    _widened: FileDescriptor | None = None
    _narrowSizes = (0, 0)
    # The client has shut down its side: nothing more will arrive.
    _inputEnded = False
    # Then, the pending look at whether the connection can close.
    _closeCheck: IDelayedCall | None = None

    def getHost(self) -> object:
        """
        The local address, asked of the socket once per connection rather
        than once per request (Twisted's request constructor asks for it).
        """
        if self._host is None:
            self._host = super().getHost()
        return self._host

    def refuse(
        self,
        code: int,
        headers: Sequence[tuple[bytes, bytes]] = (),
        *,
        headComplete: bool = False,
    ) -> None:
        """
        Answer C{code} (with C{headers}) and close the connection; nothing
        more it sends is read. The refused request is logged (see
        L{_LogsRefusals}). It is one not processed yet: the head's and the
        body's refusals come before the request is (a request processed at
        the end of its head has a length, and no more body than that).

        @param headComplete: Whether the request's head has all arrived.
        """
        if self._refused:
            return
        self._refused = True
        started, self.headerStarted = self.headerStarted, None
        request = self.requests[-1] if self.requests else None
        if self.transport is not None:
            self.transport.write(rawErrorResponse(code, self.serverSoftware, headers))
        site = self.site
        if isinstance(site, _LogsRefusals):
            if request is None:
                # Refused before its request line was whole: a request
                # made only to be logged.
                request = self._newRequest()
            request.setResponseCode(code)
            request.sentLength = len(errorPage(code)[1])
            site.logRefusal(
                request,
                self._parsedRequestLine(),
                # From its first bytes while its head was incomplete; a
                # request refused at its head's end counts from then, as
                # every other request.
                waited=0.0 if started is None else monotonic() - started,
                headComplete=headComplete,
            )
        self.loseConnection()

    def _newRequest(self) -> Request:
        """
        A request of this channel's kind, as Twisted makes one at a request
        line.
        """
        factory: Any = self.requestFactory
        if INonQueuedRequestFactory.providedBy(factory):
            made: Request = factory(self)
        else:
            made = factory(self, len(self.requests))
        return made

    def _parsedRequestLine(self) -> bytes | None:
        """
        The current request's line, once Twisted has parsed it: it sets
        C{_command}, C{_path} and C{_version} when it has, and deletes them
        with the end of the request's body.
        """
        if not hasattr(self, "_command"):
            return None
        return receivedRequestLine(self)

    # Twisted's entry points, silenced once the connection is refused.

    def dataReceived(self, data: bytes) -> None:
        if self._refused:
            return
        if data and self._sendBlocked:
            # The client sends while it does not read what it is sent: what
            # arrived is kept (Twisted buffers it for after the response in
            # progress), but nothing more is read until the transport has
            # drained.
            self._stopReading()
        # The header deadline runs only while no request is being processed:
        # bytes of a pipelined request wait in Twisted's buffer for the
        # response before them (or, unparsed, for that response to be
        # sent), and that wait is the server's, not the client's.
        if (
            self.headerStarted is None
            and self._receivedHeaderSize == 0
            and not self.requests
            and not self.paused
            and data
        ):
            self.headerStarted = monotonic()
        super().dataReceived(data)

    def rawDataReceived(self, data: bytes) -> None:
        if not self._refused:
            super().rawDataReceived(data)

    def allContentReceived(self) -> None:
        if self._refused:
            return
        self._streamed = None
        self._idleSuspending = True
        try:
            super().allContentReceived()
        finally:
            self._idleSuspending = False
        lingering = self._lingering
        if lingering is not None:
            # The response ended before its body: now that the body has been
            # read to its end, the connection goes on with the next request.
            self._stopLingering()
            super().requestDone(lingering)

    # The idle timer. Twisted's HTTPChannel turns it off for each request
    # (setTimeout(None), in allContentReceived) and on again when the request
    # ends; TimeoutMixin cancels a reactor timer and creates another every
    # time, a measurable part of serving a small file. Here the timer stays
    # queued while the request is processed and is pushed back when the
    # request ends; should it run out meanwhile, it does nothing. Every other
    # setTimeout(None) (the connection lost, switched to HTTP/2) cancels it.

    _idleCall: IDelayedCall | None = None
    # Inside allContentReceived: a setTimeout(None) suspends the timer.
    _idleSuspending = False

    def setTimeout(self, period: float | None) -> float | None:
        previous: float | None = self.timeOut
        self.timeOut = period  # type: ignore[assignment]
        call = self._idleCall
        if period is None:
            if call is not None and not self._idleSuspending:
                self._idleCall = None
                call.cancel()
        elif call is not None:
            call.reset(period)
        else:
            self._idleCall = self.callLater(period, self._idleTimedOut)
        return previous

    def resetTimeout(self) -> None:
        if self._idleCall is not None and self.timeOut is not None:
            self._idleCall.reset(self.timeOut)

    def _idleTimedOut(self) -> None:
        self._idleCall = None
        if self.timeOut is not None:
            self.timeoutConnection()

    def headerReceived(self, line: bytes) -> bool:
        """
        Refuse (400) a C{Content-Length} longer than
        L{MAX_CONTENT_LENGTH_DIGITS} before Twisted converts it (which fails
        with a traceback past Python's 4300-digit limit, and the client is
        disconnected without a word).
        """
        # Only a line longer than the longest length allowed needs a look
        # (Twisted refuses a name with space before the colon as invalid).
        if (
            len(line) > _LONGEST_LENGTH_LINE
            and line[:15].lower() == b"content-length:"
            and len(line[15:].strip(b" \t")) > MAX_CONTENT_LENGTH_DIGITS
        ):
            self.refuse(400)
            return False
        ok: bool = super().headerReceived(line)
        return ok

    def allHeadersReceived(self) -> None:
        """
        Refuse a request without a valid C{Host} (400), with a body
        announced larger than the site accepts (413), or with a body and
        credentials the site's L{EarlyGate} refuses (401), before its body
        is read and before Twisted would answer C{Expect: 100-continue}. (A
        request without a body is refused by the resource, on a connection
        kept open.)
        """
        self.headerStarted = None
        if not self._hostAcceptable(self.requests[-1]):
            self.refuse(400, headComplete=True)
            return
        limit = self._maxBodySize
        if limit and self.length is not None and self.length > limit:
            self.refuse(413, headComplete=True)
            return
        gate = self._authGate
        if gate is not None and self.length != 0:
            challenge = gate.earlyChallenge(
                self._path, self.requests[-1].requestHeaders
            )
            if challenge is not None:
                self.refuse(401, [(b"WWW-Authenticate", challenge)], headComplete=True)
                return
        super().allHeadersReceived()
        request = self.requests[-1] if self.requests else None
        if self.length and not self._refused and isinstance(request, _StartsEarly):
            # Set first: the response may be over before startEarly returns
            # (a refusal), its body still to come (see requestDone).
            self._streamed = cast(Request, request)
            self._widen()
            if not request.startEarly(self._command, self._path, self._version):
                self._streamed = None
                self._narrow()

    # A streamed body (see twisted_cgiserve._http.bodystream)

    def _widen(self) -> None:
        """
        Read and write the socket in L{STREAM_CHUNK} pieces while a body is
        streamed (only a socket transport: TLS keeps its own sizes).
        """
        transport: object = self.transport
        if isinstance(transport, FileDescriptor) and self._widened is None:
            self._widened = transport
            self._narrowSizes = (transport.bufferSize, transport.SEND_LIMIT)
            transport.bufferSize = STREAM_CHUNK
            transport.SEND_LIMIT = STREAM_CHUNK

    def _narrow(self) -> None:
        """
        Back to the transport's own sizes, once the streamed body's request
        is done.
        """
        transport, self._widened = self._widened, None
        if transport is not None:
            transport.bufferSize, transport.SEND_LIMIT = self._narrowSizes

    def pauseBody(self) -> None:
        """
        The streamed body's consumer is full: stop reading the connection,
        and the idle timeout with it (the wait is the server's; the script's
        own timeout bounds it). Asked again, the connection is paused again:
        something else may have resumed it.
        """
        producer = IPushProducer(self.transport, None)
        if producer is not None:
            producer.pauseProducing()
        if not self._bodyPaused:
            self._bodyPaused = True
            self._bodyPausedTimeOut = self.setTimeout(None)

    def resumeBody(self) -> None:
        """
        The streamed body's consumer takes more: read on.
        """
        if not self._bodyPaused:
            return
        self._bodyPaused = False
        if self.transport is None or self._refused:
            return
        self.setTimeout(self._bodyPausedTimeOut)
        if not self._readingStopped:
            producer = IPushProducer(self.transport, None)
            if producer is not None:
                producer.resumeProducing()

    def _lingerExpired(self) -> None:
        """
        The client kept sending the body of a request answered long ago:
        close the connection instead of reading on.
        """
        self._lingerCall = None
        request = self._lingering
        self._stopLingering()
        if request is not None:
            self.persistent = False
            # Nothing more is parsed: the rest of the body is not a request.
            self._refused = True
            super().requestDone(request)

    def _stopLingering(self) -> None:
        self._narrow()
        self._lingering = None
        call, self._lingerCall = self._lingerCall, None
        if call is not None and call.active():
            call.cancel()

    def _hostAcceptable(self, request: Request) -> bool:
        """
        RFC 9112 section 3.2: an HTTP/1.1 request must have a C{Host}, and no
        request may have more than one or an invalid one. (An absolute-form
        target still needs one; what it names wins over it, as
        L{twisted_cgiserve._cgi.environ} and L{twisted_cgiserve._http.paths} read it.)
        With one C{Host} at most, the host a proxy in front routed on is the
        one scripts see as C{SERVER_NAME}.
        """
        hosts = request.requestHeaders.getRawHeaders(b"host")
        if hosts is None:
            # Twisted's parsed version of the request line (it accepts only
            # HTTP/1.0 and HTTP/1.1), read before Twisted reads it itself.
            version: bytes = self._version
            return version != b"HTTP/1.1"
        if len(hosts) != 1:
            return False
        host = hosts[0]
        # A client names the same host on every request of a connection.
        if host != self._validHost:
            if not isValidHost(host):
                return False
            self._validHost = host
        return True

    # Pipelining: no more response than the transport's buffer holds.

    def pauseProducing(self) -> None:
        """
        The transport holds more unsent bytes than its buffer size: the
        response in progress is paused (by Twisted), and no further
        pipelined request is started until L{resumeProducing}.
        """
        self._sendBlocked = True
        super().pauseProducing()

    def resumeProducing(self) -> None:
        """
        The transport has sent everything: read again, and take up the
        pipelined requests that waited.
        """
        self._sendBlocked = False
        super().resumeProducing()
        if self._readingStopped:
            self._readingStopped = False
            producer = IPushProducer(self.transport, None)
            if producer is not None:
                producer.resumeProducing()
        if self.paused and not self._refused:
            self.paused = False
            # LineReceiver's own buffer, handed back as Twisted hands back
            # what it buffered during a request (and with the header
            # deadline starting now, if a request's head is waiting).
            self.dataReceived(self.clearLineBuffer())
        self._closeIfAnswered()

    def requestDone(self, request: Request) -> None:
        """
        A response is complete. While the transport is full, what the client
        pipelined behind it stays unparsed (L{LineReceiver.paused}) and the
        socket unread, instead of being answered into the transport's
        buffer.
        """
        if request is self._streamed:
            # Its body is still arriving: it is read to its end (and
            # discarded, see CGIServeRequest.finish) before anything that
            # follows is parsed as a request, for LINGER seconds at most.
            self._streamed = None
            self._lingering = request
            self._lingerCall = self.callLater(LINGER, self._lingerExpired)
            return
        self._narrow()
        if self._sendBlocked and self.persistent:
            self.paused = True
            self._stopReading()
        super().requestDone(request)
        self._closeIfAnswered()

    def _stopReading(self) -> None:
        if self._readingStopped:
            return
        producer = IPushProducer(self.transport, None)
        if producer is not None:
            self._readingStopped = True
            producer.pauseProducing()

    def connectionMade(self) -> None:
        super().connectionMade()
        if isinstance(self.site, _LimitsBodies):
            self._maxBodySize = self.site.maxBodySize
        if isinstance(self.site, _GatesAuthentication):
            self._authGate = self.site.authGate

    # The client's half-close (IHalfCloseableProtocol)

    def readConnectionLost(self) -> None:
        """
        The client has shut down its side of the connection and reads on:
        answer what it sent whole, then close (L{_closeIfAnswered}); but a
        client whose script is running is taken as gone (L{endsAtClientEOF}).

        Every byte it sent has been handed to L{dataReceived} by now (a
        paused transport reads nothing, the end of input included). A
        transport resumed after this reads the end again and calls this
        again: it changes nothing then.
        """
        if self._inputEnded:
            return
        self._inputEnded = True
        if self.transport is not None and any(
            # (A response over, its body still read and dropped, is kept.)
            getattr(request, _ENDS_AT_CLIENT_EOF, False) and not request.finished
            for request in self.requests
        ):
            cast(ITCPTransport, self.transport).abortConnection()
            return
        # No head is arriving any more: nothing for the header deadline.
        self.headerStarted = None
        self._closeIfAnswered()

    def writeConnectionLost(self) -> None:
        """
        This side can no longer write (never asked for here): nothing can
        be answered any more.
        """
        self.loseConnection()

    def _closeIfAnswered(self) -> None:
        """
        Once the client's input has ended, close the connection as soon as no
        request received whole awaits its response: at once when none is in
        progress, or the one in progress is incomplete (its head, or its
        body, streamed or not: as when the client disconnects, it is never
        processed, or its script is ended); after the last response
        otherwise. Requests held behind a full transport (L{paused}) are
        taken up by L{resumeProducing}, which asks again.

        Decided in the next reactor turn, not now: a response may end while
        Twisted's parser is handing on the requests pipelined behind it,
        which it parses no further once the transport is closing.
        """
        if self._inputEnded and self._closeCheck is None:
            self._closeCheck = self.callLater(0, self._closeNowIfAnswered)

    def _closeNowIfAnswered(self) -> None:
        self._closeCheck = None
        if self.transport is None or self._refused:
            return
        # Twisted's flag: a request received whole, its response not over
        # (a response ended before its streamed body leaves it unset).
        handling: bool = self._handlingRequest
        if handling or self.paused:
            return
        self.loseConnection()

    def connectionLost(self, reason: Failure = connectionDone) -> None:
        self.headerStarted = None
        call, self._closeCheck = self._closeCheck, None
        if call is not None and call.active():
            call.cancel()
        self._idleSuspending = False
        self._streamed = None
        self._stopLingering()
        super().connectionLost(reason)

    # Refusals

    def headerTimedOut(self) -> None:
        """
        The client took too long to send a request's headers.
        """
        self.refuse(408)

    def lineLengthExceeded(self, line: bytes) -> None:
        """
        A line longer than L{MAX_LENGTH}: the request line (414) or a header
        line (431).
        """
        # Twisted resets the header byte count when a request ends, so none
        # counted yet means the long line is the request line.
        self.refuse(414 if self._receivedHeaderSize == 0 else 431)

    def _respondToBadRequestAndDisconnect(self) -> None:
        """
        A request Twisted refuses: too many or too large headers (431), or
        malformed (400; Twisted's own has no body and no C{Server}).
        """
        tooMuch = (
            self._receivedHeaderSize > self.totalHeadersSize
            or self._receivedHeaderCount > self.maxHeaders
        )
        self.refuse(431 if tooMuch else 400)


def receivedRequestLine(channel: HTTPChannel) -> bytes:
    """
    The request line the client sent on C{channel}, as C{METHOD target
    version}, once the head of its current request has arrived.

    Twisted tells the request its method and target only once the body is
    complete, but keeps the parsed line in C{_command}, C{_path} and
    C{_version} from the end of the head on: a refusal or the access log
    needs it before then.
    """
    line: bytes = b"%s %s %s" % (
        channel._command,
        channel._path,
        channel._version,
    )
    return line
