# -*- test-case-name: tests.http.test_response -*-
"""
One owner for a response body from its first byte to its end, whatever
produces it (a file, a listing, a CGI script's output) and whatever the
client speaks (HTTP/1.x or HTTP/2).

A L{ResponseSender} stands between a request and the producer of its body:

 - it is the push producer registered with the request, so the client's
   backpressure (a full socket buffer, an exhausted HTTP/2 window, a full
   HTTP/2 send queue) pauses the body's producer;
 - it runs the send deadline: a response that makes no write progress for
   the site's C{sendTimeout} (the client stopped reading) is cut, as nginx
   does after C{send_timeout};
 - it releases the body's producer (its file, its script) however the
   request ends: finished, failed, the client gone or reset, cut, timed
   out, or the server shutting down, through C{notifyFinish()} as well as
   C{stopProducing};
 - it cuts a response the only ways the protocol allows: on HTTP/1.x by
   closing the connection, on HTTP/2 by resetting that stream alone.
"""

from __future__ import annotations

from collections.abc import Callable
from typing import Any

from zope.interface import implementer

from twisted.internet.interfaces import IDelayedCall, IPushProducer, IReactorTime
from twisted.logger import Logger
from twisted.protocols.policies import TimeoutMixin
from twisted.protocols.tls import TLSMemoryBIOProtocol
from twisted.python.failure import Failure
from twisted.web.iweb import IRequest

from twisted_cgiserve._http.h2 import isStream, resetStream

__all__ = [
    "DEFAULT_SEND_TIMEOUT",
    "ResponseSender",
    "closeTransport",
    "cutResponse",
]

# Seconds a response may make no progress before it is cut (nginx's
# send_timeout).
DEFAULT_SEND_TIMEOUT = 60.0

_log = Logger(namespace="cgiserve.response")


def closeTransport(transport: Any, *, abort: bool = False) -> None:
    """
    Close an HTTP/1.x connection once what was written to it is sent (or at
    once, with C{abort}).

    The channel is its transport's producer, and a TLS transport does not
    close while one is registered, so it is unregistered first. TLS then
    queues its close_notify after everything written; waiting for the
    client's own close_notify, as Twisted would, is not required (RFC 8446,
    6.1) and idle clients rarely send it, so the socket below is closed as
    soon as its buffer is sent.
    """
    if abort:
        transport.abortConnection()
        return
    transport.unregisterProducer()
    transport.loseConnection()
    if isinstance(transport, TLSMemoryBIOProtocol) and transport.transport:
        transport.transport.loseConnection()


def cutResponse(request: IRequest, *, abort: bool = False) -> None:
    """
    End a response that cannot be completed (its length was promised, or
    its producer failed): HTTP/2 resets the request's stream, HTTP/1.x closes
    the connection once what was written has been sent (or at once, with
    C{abort}, for a client that does not read).
    """
    channel: Any = getattr(request, "channel", None)
    if channel is None:
        return
    if isStream(channel):
        resetStream(channel)
        return
    if channel.transport is not None:
        closeTransport(channel.transport, abort=abort)


def _siteOf(request: IRequest) -> Any:
    site = getattr(request, "site", None)
    if site is None:
        site = getattr(getattr(request, "channel", None), "site", None)
    return site


@implementer(IPushProducer)
class ResponseSender(TimeoutMixin):
    """
    The producer of one response, on the request's side.

    The send deadline is Twisted's L{TimeoutMixin} timer on the reactor
    given (its C{callLater}): set when the request's consumer pauses the
    body, cancelled when it resumes it or the response ends, and
    L{timeoutConnection} when it runs out.

    @ivar done: Whether the response has ended (finished, cut or lost);
        the body's producer must write nothing more.
    """

    def __init__(
        self, request: IRequest, body: IPushProducer, reactor: Any = None
    ) -> None:
        """
        @param reactor: The clock for the send deadline (default: the
            site's reactor).
        """
        self._request: Any = request
        self._body = body
        site = _siteOf(request)
        # A site of this server says; resources embedded in another site
        # get nginx's default.
        self._sendTimeout: float = getattr(site, "sendTimeout", DEFAULT_SEND_TIMEOUT)
        if reactor is None:
            reactor = getattr(site, "reactor", None)
        if reactor is None:
            from twisted.internet import reactor  # noqa: PLC0415
        self._clock: IReactorTime = reactor
        self._registered = False
        self.done = False

    def start(self) -> None:
        """
        Take over the request's response body: register as its producer and
        watch for the request ending under us.
        """
        # Registered first: a consumer may drive the whole body from inside
        # registerProducer, up to finish().
        self._registered = True
        self._request.notifyFinish().addErrback(self._lost)
        self._request.registerProducer(self, True)

    # The end of the response, from the body's side.

    def finish(self) -> None:
        """
        The body is complete.
        """
        if self._end():
            self._request.finish()

    def cut(self, *, abort: bool = False) -> None:
        """
        The body cannot be completed: end the response so the client can
        tell (the caller says why in the log).

        @param abort: Close the connection at once rather than after what
            was written (the socket itself failed: nothing more would
            leave).
        """
        if self._end():
            cutResponse(self._request, abort=abort)

    def detach(self) -> None:
        """
        Stop producing this response's body without ending the request: it
        is answered another way (an error page, before anything was sent)
        or ends with its connection (an NPH script's output).
        """
        self._end()

    def _end(self, *, connected: bool = True) -> bool:
        """
        Mark the response over, once; C{False} if it already was.

        @param connected: Whether the request still has its connection (a
            request whose connection is gone has nothing to unregister
            from).
        """
        if self.done:
            return False
        self.done = True
        self.setTimeout(None)
        if self._registered:
            self._registered = False
            if connected:
                self._request.unregisterProducer()
        return True

    def _lost(self, reason: Failure) -> None:
        """
        The request ended before its body did (the client left or reset the
        stream, or the connection was closed): release the body.
        """
        if self._end(connected=False):
            self._body.stopProducing()

    # Progress, from a body that writes to the socket itself (zero-copy
    # files), which no consumer pauses.

    def stalled(self) -> None:
        """
        The body waits for the socket to take more: the send deadline runs
        (unless it already does), as when the consumer pauses the body.
        """
        # A deadline already running is not postponed: stalls without
        # progress in between are one stall.
        if not self.done and self.timeOut is None and self._sendTimeout:
            self.setTimeout(self._sendTimeout)

    def progressed(self) -> None:
        """
        The socket took some of the body: the send deadline is off until
        the next stall.
        """
        if self.timeOut is not None:
            self.setTimeout(None)

    # IPushProducer, called by the request's consumer.

    def pauseProducing(self) -> None:
        if self.done:
            return
        self.stalled()
        self._body.pauseProducing()

    def resumeProducing(self) -> None:
        if self.done:
            return
        self.progressed()
        self._body.resumeProducing()

    def stopProducing(self) -> None:
        if self._end():
            self._body.stopProducing()

    # The send deadline.

    def callLater(self, period: float, func: Callable[[], object]) -> IDelayedCall:
        """
        L{TimeoutMixin}'s timer, on this sender's clock.
        """
        return self._clock.callLater(period, func)

    def timeoutConnection(self) -> None:
        """
        The response made no progress for the send deadline (the client
        stopped reading): cut it, at once (nothing more will be read).
        """
        # (The timer is cancelled whenever the response ends: this one is
        # still going.)
        request = self._request
        peer = request.getClientAddress()
        _log.warn(
            "{client} read nothing for {seconds} s: {method} {uri} cut "
            "(--send-timeout)",
            client=getattr(peer, "host", peer),
            seconds=self._sendTimeout,
            method=request.method.decode("latin-1"),
            uri=request.uri.decode("latin-1"),
        )
        self._end()
        self._body.stopProducing()
        cutResponse(request, abort=True)
        metrics = getattr(_siteOf(request), "metrics", None)
        if metrics is not None:
            metrics.sendTimedOut()
