# -*- test-case-name: tests.http.test_connection -*-
"""
One client connection, whatever HTTP it speaks: this server's HTTP/1.x
channel, replaced by its HTTP/2 connection when TLS negotiates C{h2}.

Twisted's L{Site} builds such a switching protocol too, but from a private
class whose private attributes would have to be read and patched to switch
to our own HTTP/2 connection and to let the site find the connection; this
one is built on public interfaces only. It is known to its site from start
to end, so that shutdown can close it when idle and the header deadline
can find it.
"""

from __future__ import annotations

from typing import TYPE_CHECKING, Any, cast

from zope.interface import implementer

from twisted.internet.interfaces import (
    IDelayedCall,
    IHalfCloseableProtocol,
    IPushProducer,
    ITCPTransport,
    ITransport,
)
from twisted.internet.protocol import Protocol, connectionDone
from twisted.python.failure import Failure

from twisted_cgiserve._http.channel import CGIServeChannel
from twisted_cgiserve._http.h2 import CGIServeH2Connection
from twisted_cgiserve._http.response import closeTransport

if TYPE_CHECKING:
    from twisted_cgiserve._http.site import CGIServeSite

__all__ = ["HTTPConnection"]

# Seconds an ended HTTP/2 connection gets to close before it is cut off.
_ABORT_AFTER = 2.0

# Seconds an HTTP/2 client told the connection is going away has to open the
# streams it had already begun (a round trip, at least).
_GOAWAY_NOTICE = 0.5


@implementer(IHalfCloseableProtocol)
class HTTPConnection(Protocol):
    """
    One client connection of a L{CGIServeSite}, HTTP/1.x or HTTP/2; a
    client's half-close goes to the HTTP/1.x channel, which answers what it
    was sent before closing.

    @ivar openedAt: When the connection was accepted (reactor seconds).
    """

    def __init__(self, site: CGIServeSite, serverSoftware: bytes) -> None:
        """
        @param site: The site the connection serves; it is told when the
            connection opens and closes.
        @param serverSoftware: The C{Server} value of the responses the
            HTTP/1.x channel writes itself.
        """
        self.factory = site
        self.site = site
        channel = CGIServeChannel()
        channel.serverSoftware = serverSoftware
        # What speaks HTTP on the connection: our HTTP/1.x channel until TLS
        # has negotiated h2, then our HTTP/2 connection.
        self._channel: CGIServeChannel | CGIServeH2Connection = channel
        self._attach(channel)
        self.openedAt = 0.0
        # Whether any request bytes (after TLS's handshake) have arrived:
        # from then on, which HTTP the connection speaks is settled.
        self._spoke = False
        # close() was called.
        self._closing = False
        # The HTTP/2 connection ended itself; input is ignored from then on.
        self._ended = False
        self._abortCall: IDelayedCall | None = None

    def _attach(self, channel: CGIServeChannel | CGIServeH2Connection) -> None:
        """
        Give C{channel} what Twisted's factories give a protocol they build:
        its factory and site, the request class, the idle timeout and the
        clock that times it.
        """
        site = self.site
        # Attributes Twisted's types do not declare (or declare as methods).
        protocol: Any = channel
        protocol.factory = site
        protocol.site = site
        protocol.requestFactory = site.requestFactory
        protocol.timeOut = site.timeOut
        protocol.callLater = site.reactor.callLater

    def makeConnection(self, transport: ITransport) -> None:
        """
        The connection is accepted: the channel takes the transport (it is
        the transport's producer), and the site knows the connection.
        """
        self.openedAt = self.site.reactor.seconds()
        self._channel.makeConnection(transport)
        self.site.channelOpened(self)

    def dataReceived(self, data: bytes) -> None:
        if self._ended:
            # The HTTP/2 connection has ended; whatever the client still
            # sends is not read into anything.
            return
        if not self._spoke:
            self._spoke = True
            # INegotiated's attribute, on a TLS transport only; data only
            # arrives once the handshake is done.
            transport = self._channel.transport
            if (
                transport is not None
                and getattr(transport, "negotiatedProtocol", None) == b"h2"
            ):
                self._switchToHTTP2(transport)
        channel = self._channel
        channel.dataReceived(data)
        # An HTTP/2 connection that ended itself (a protocol error, or the
        # client's GOAWAY) asks its transport to close, but a TLS transport
        # waits for its producer (that same connection) to unregister, which
        # Twisted never does: the connection would stay open, and Twisted's
        # HTTP/2 layer would buffer whatever the client goes on sending.
        if isinstance(channel, CGIServeH2Connection) and channel.ended:
            self._ended = True
            self.close()
            # A client that goes on sending never answers TLS's close: cut
            # it off once the GOAWAY has had time to leave.
            self._abortCall = self.site.reactor.callLater(_ABORT_AFTER, self._abort)

    def _switchToHTTP2(self, transport: ITransport) -> None:
        """
        Replace the HTTP/1.x channel, which has read nothing yet, with this
        server's HTTP/2 connection (Twisted's own lets a client that does
        not read fill the server's memory: see L{twisted_cgiserve._http.h2}).
        """
        old = self._channel
        # The HTTP/1.x channel made itself the transport's producer.
        pushes = IPushProducer.providedBy(transport)
        if pushes:
            transport.unregisterProducer()  # type: ignore[attr-defined]
        old.setTimeout(None)
        channel = CGIServeH2Connection(self.site.reactor)
        self._attach(channel)
        self._channel = channel
        channel.makeConnection(transport)
        if pushes:
            # So that the transport applies backpressure to it.
            transport.registerProducer(channel, True)  # type: ignore[attr-defined]
        if self.site.metrics is not None:
            self.site.metrics.connectionSwitched("http/1.1", "h2")

    def _abort(self) -> None:
        self._abortCall = None
        transport = self._channel.transport
        if transport is not None:
            cast(ITCPTransport, transport).abortConnection()

    def close(self) -> None:
        """
        Close the connection once what was written to it is sent: an
        HTTP/2 client is told first (C{GOAWAY}) that no new stream will be
        answered.
        """
        channel = self._channel
        transport = channel.transport
        if self._closing or transport is None:
            return
        self._closing = True
        if isinstance(channel, CGIServeH2Connection):
            channel.goAway()
        closeTransport(transport)

    @property
    def protocolName(self) -> str:
        """
        What the connection speaks, by its ALPN name: C{h2}, or
        C{http/1.1} (for HTTP/1.0 too).
        """
        if isinstance(self._channel, CGIServeH2Connection):
            return "h2"
        return "http/1.1"

    @property
    def closing(self) -> bool:
        """
        Whether the connection is closing (or closed).
        """
        return self._closing or self._channel.transport is None

    @property
    def sending(self) -> bool:
        """
        Whether HTTP/2 streams are open: their responses are handed to the
        transport a frame per reactor turn, and closing the transport now
        would cut them.
        """
        channel = self._channel
        return isinstance(channel, CGIServeH2Connection) and channel.sending

    def checkHeaderDeadline(self, deadline: float) -> None:
        """
        Refuse (408) the HTTP/1.x request whose head began to arrive before
        C{deadline} (monotonic seconds) and is still incomplete. HTTP/2 has
        no such deadline.
        """
        channel = self._channel
        if not isinstance(channel, CGIServeChannel):
            return
        started = channel.headerStarted
        if started is not None and started < deadline:
            channel.headerTimedOut()
            if self.site.metrics is not None:
                self.site.metrics.headerTimedOut()

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
        channel = self._channel
        if isinstance(channel, CGIServeH2Connection):
            if not channel.answered and now - self.openedAt < patience:
                return
            # Told first, and given a round trip to open the streams it
            # had already begun (which are answered): a client that sees
            # the final GOAWAY while one is on its way may well fail it
            # rather than retry (curl 7.88 does).
            channel.drain(now)
            notified = channel.drainingSince
            if channel.sending or (
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
        if not self._spoke and now - self.openedAt < patience:
            return
        self.close()

    def readConnectionLost(self) -> None:
        """
        The client shut down its side (plain TCP only: Twisted's TLS layer
        is no L{IHalfCloseableProtocol}, so it never calls this): the
        HTTP/1.x channel answers what it received whole, then closes.
        """
        channel = self._channel
        if isinstance(channel, CGIServeChannel):
            channel.readConnectionLost()
        else:
            self.close()

    def writeConnectionLost(self) -> None:
        """
        This side can no longer write (never asked for): close.
        """
        channel = self._channel
        if isinstance(channel, CGIServeChannel):
            channel.writeConnectionLost()
        else:
            self.close()

    def connectionLost(self, reason: Failure = connectionDone) -> None:
        if self._abortCall is not None:
            self._abortCall.cancel()
            self._abortCall = None
        self._channel.connectionLost(reason)
        self.site.channelClosed(self)
