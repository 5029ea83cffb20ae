# -*- test-case-name: tests.http.test_h2 -*-
"""
HTTP/2 connections: Twisted's L{H2Connection}, with the limits a server
facing hostile clients needs.

Twisted pauses a stream's producer only when that stream's flow-control
window is exhausted. A client that opens a 2 GiB window and stops reading
makes every byte a producer writes pile up in the connection's per-stream
send queue, in memory, whatever the socket's state. Here a stream's
producer is also paused while its queue holds more than L{QUEUE_HIGH}
bytes (which is always the case while the socket is full, since the queue
is only drained into a writable transport), and resumed once it has
drained below L{QUEUE_LOW}.

A client can also make Twisted fail with an unhandled exception (and drop
the connection without a word) by sending C{PRIORITY} frames for more
streams than the priority tree holds; that is ended with a C{GOAWAY}
(C{ENHANCE_YOUR_CALM}) here.

This module is the one place that touches the private parts of Twisted's
HTTP/2 implementation (L{twisted.web._http2}), read directly (never with a
default) so that a change fails loudly; each has a canary in
C{tests/http/test_h2.py}:

 - L{H2Connection} methods overridden here, which Twisted's event dispatch
   and send loop must go on calling: C{_requestReceived},
   C{_requestDataReceived}, C{_requestEnded}, C{_requestAborted},
   C{_handlePriorityUpdate}, C{_handleWindowUpdate}, C{_requestDone},
   C{_sendPrioritisedData}, C{writeDataToStream};
 - L{H2Connection} methods called: C{_terminate}, C{_tryToWriteControlData};
 - L{H2Connection} state: C{_stillProducing}, C{_outboundStreamQueues},
   C{_sendingDeferred}, and the undocumented C{conn} (h2's state machine),
   C{priority} (the priority tree) and C{streams};
 - L{H2Stream}: C{_conn}, C{streamID}, C{flowControlBlocked},
   C{windowUpdated}, C{abortConnection}, and the undocumented C{command}
   and C{path} (L{streamRequestLine}).
"""

from __future__ import annotations

import contextlib
from typing import Any

import h2.errors
import h2.exceptions
import priority  # type: ignore[import-untyped]
from hyperframe.frame import GoAwayFrame
from twisted.internet.error import ConnectionLost
from twisted.logger import Logger
from twisted.python.failure import Failure
from twisted.web._http2 import H2Connection, H2Stream

__all__ = [
    "QUEUE_HIGH",
    "QUEUE_LOW",
    "CGIServeH2Connection",
    "isStream",
    "resetStream",
    "streamRequestLine",
]

_log = Logger(namespace="cgiserve.http2")

# Bytes a stream may have queued for sending before its producer is paused,
# and the level it must drain to before it is resumed. One file chunk or a
# pipe's worth of script output fits above the high mark.
QUEUE_HIGH = 64 * 1024
QUEUE_LOW = 16 * 1024


def isStream(channel: object) -> bool:
    """
    Whether a request's channel is an HTTP/2 stream (rather than an
    HTTP/1.x connection).
    """
    return isinstance(channel, H2Stream)


def resetStream(stream: H2Stream) -> None:
    """
    Cut one HTTP/2 stream's response (C{RST_STREAM}); the connection and its
    other streams carry on.
    """
    connection = stream._conn
    if isinstance(connection, CGIServeH2Connection):
        connection.abortStream(stream.streamID)
        return
    # A connection built by Twisted itself (our resources embedded in another
    # site): its own reset, which does not tell the request.
    with contextlib.suppress(h2.exceptions.ProtocolError, KeyError):
        stream.abortConnection()
    stream.connectionLost(Failure(ConnectionLost("Response cut short")))


def _queued(queue: Any) -> int:
    return sum(len(chunk) for chunk in queue if isinstance(chunk, bytes))


class CGIServeH2Connection(H2Connection):
    """
    An HTTP/2 connection whose streams respect the transport's backpressure
    and that survives C{PRIORITY} floods.
    """

    def __init__(self, reactor: Any = None) -> None:
        super().__init__(reactor)
        # Streams whose producer this class paused for a full send queue.
        self._held: set[int] = set()
        # When the client was told the connection is going away.
        self.drainingSince: float | None = None

    @property
    def ended(self) -> bool:
        """
        Whether the connection has ended itself (a protocol error, the
        client's C{GOAWAY}, a flood): nothing more is read or answered.
        """
        return not self._stillProducing

    @property
    def sending(self) -> bool:
        """
        Whether streams are open: their responses are handed to the
        transport a frame per reactor turn, and closing the transport now
        would cut them.
        """
        return bool(self.streams)

    @property
    def answered(self) -> bool:
        """
        Whether the client has opened at least one stream.
        """
        return bool(self.conn.highest_inbound_stream_id)

    def drain(self, now: float) -> None:
        """
        Tell the client that the connection is going away (C{GOAWAY} with
        the highest possible last stream), so that it opens no new stream,
        while the streams it has opened, or is opening right now, are
        answered: the graceful shutdown RFC 9113 section 6.8 describes.
        L{goAway} later names the real last stream.

        h2's own C{GOAWAY} closes its state machine, after which not even the
        streams already opened could send their responses, so this notice is
        written as a frame of its own.
        """
        if (
            self.drainingSince is not None
            or not self._stillProducing
            or self.transport is None
        ):
            return
        self.drainingSince = now
        frame = GoAwayFrame(0)
        frame.last_stream_id = 2**31 - 1
        frame.error_code = h2.errors.ErrorCodes.NO_ERROR
        self.transport.write(frame.serialize())

    def goAway(self) -> None:
        """
        End the connection with a final C{GOAWAY}: streams after the last
        one received are not answered, and the client may retry them.
        """
        if self._stillProducing and self.transport is not None:
            with contextlib.suppress(h2.exceptions.ProtocolError):
                self.conn.close_connection()
                # Written at once, ahead of any control frames held back
                # for a full socket: the connection is about to close.
                self.transport.write(self.conn.data_to_send())

    def writeDataToStream(self, streamID: int, data: bytes) -> None:
        super().writeDataToStream(streamID, data)
        stream = self.streams.get(streamID)
        if stream is None:
            return
        if _queued(self._outboundStreamQueues[streamID]) >= QUEUE_HIGH:
            self._held.add(streamID)
            stream.flowControlBlocked()

    def _sendPrioritisedData(self, *args: object) -> None:
        super()._sendPrioritisedData(*args)
        if not self._stillProducing:
            return
        self._blockWindowless()
        if self._held:
            self._release()

    def _blockWindowless(self) -> None:
        """
        Take streams whose flow-control window is used up out of the send
        loop until a C{WINDOW_UPDATE} gives them room: Twisted leaves them
        in it, and the loop then spins, sending nothing, once per reactor
        turn for as long as the client keeps the window shut.
        """
        for streamID, queue in self._outboundStreamQueues.items():
            if not queue:
                continue
            try:
                window = self.conn.local_flow_control_window(streamID)
            except h2.exceptions.ProtocolError:
                # Ended on the wire; Twisted is about to clean it up.
                continue
            if window <= 0:
                self.priority.block(streamID)

    def _release(self) -> None:
        """
        Resume the producers of held streams whose queues have drained.
        """
        for streamID in list(self._held):
            queue = self._outboundStreamQueues.get(streamID)
            stream = self.streams.get(streamID)
            if queue is None or stream is None:
                self._held.discard(streamID)
            elif _queued(queue) < QUEUE_LOW:
                self._held.discard(streamID)
                # Resumes the producer if the stream's window has room.
                stream.windowUpdated()

    def _wakeSender(self) -> None:
        """
        Restart the send loop if it waits for a stream to become ready.
        """
        waiting, self._sendingDeferred = self._sendingDeferred, None
        if waiting is not None:
            waiting.callback(None)

    def _handleWindowUpdate(self, event: Any) -> None:
        """
        Give room to the streams a C{WINDOW_UPDATE} is for: their queued
        data goes back into the send loop. A stream held for a full queue is
        not resumed by it (as Twisted would, so that a client sending
        one-byte updates could make the server queue without end, and
        reset its send deadline, while reading nothing): only draining the
        queue resumes it.
        """
        if not self._stillProducing:
            return
        streamID = event.stream_id
        targets = [streamID] if streamID else list(self.streams)
        for target in targets:
            stream = self.streams.get(target)
            if stream is None:
                # A late update for a stream already done: harmless.
                continue
            if self._outboundStreamQueues.get(target):
                self.priority.unblock(target)
                self._wakeSender()
            if target not in self._held:
                stream.windowUpdated()

    def _requestDone(self, streamID: int) -> None:
        self._held.discard(streamID)
        super()._requestDone(streamID)

    def _requestReceived(self, event: Any) -> None:
        """
        Place a new stream in the priority tree before Twisted creates it:
        Twisted would create it first and then fail unhandled (and leave it
        half made) when the tree is full of streams a flood of C{PRIORITY}
        frames announced. Give a C{CONNECT} the target Twisted expects.
        """
        if not self._stillProducing:
            return
        try:
            self.priority.insert_stream(event.stream_id)
        except priority.DuplicateStreamError:
            # Announced by a PRIORITY frame first; Twisted copes with that.
            pass
        except priority.TooManyStreamsError:
            self._calm()
            return
        else:
            self.priority.block(event.stream_id)
        if not any(name == b":path" for name, _ in event.headers):
            # A CONNECT has no :path (RFC 9113 section 8.5). Twisted assumes
            # one and fails unhandled when the stream ends, taking the
            # connection with it; its target is its :authority, as in
            # HTTP/1.1's "CONNECT host:port", and it is refused as there.
            authority = [v for name, v in event.headers if name == b":authority"]
            event.headers = [*event.headers, (b":path", authority[-1])]
        super()._requestReceived(event)

    # Events that arrive in the same packet after the connection ended
    # itself find nothing to act on.

    def _requestDataReceived(self, event: Any) -> None:
        if self._stillProducing:
            super()._requestDataReceived(event)

    def _requestEnded(self, event: Any) -> None:
        if self._stillProducing:
            super()._requestEnded(event)

    def _requestAborted(self, event: Any) -> None:
        if self._stillProducing:
            super()._requestAborted(event)

    def _handlePriorityUpdate(self, event: Any) -> None:
        """
        Refuse a client that sends priorities for more streams than the
        priority tree holds, as nginx does for stream floods: C{GOAWAY} with
        C{ENHANCE_YOUR_CALM}, and the connection ends.
        """
        if not self._stillProducing:
            return
        try:
            super()._handlePriorityUpdate(event)
        except priority.TooManyStreamsError:
            self._calm()

    def _calm(self) -> None:
        _log.warn(
            "HTTP/2 client {client} sent priorities for too many streams; "
            "closing the connection",
            client=self.transport.getPeer() if self.transport else None,
        )
        self.conn.close_connection(error_code=h2.errors.ErrorCodes.ENHANCE_YOUR_CALM)
        self._terminate(Failure(ConnectionLost("Too many stream priorities")))

    def abortStream(self, streamID: int) -> bool:
        """
        End one stream with C{RST_STREAM} (C{INTERNAL_ERROR}), leaving the
        connection and its other streams alone: how HTTP/2 says a response
        was cut short.

        @return: Whether the stream was still open.
        """
        stream = self.streams.get(streamID)
        if stream is None:
            return False
        # A stream that already ended on the wire has nothing to reset.
        with contextlib.suppress(h2.exceptions.ProtocolError):
            self.conn.reset_stream(
                streamID, error_code=h2.errors.ErrorCodes.INTERNAL_ERROR
            )
        if self._tryToWriteControlData() and streamID in self.streams:
            self._requestDone(streamID)
            stream.connectionLost(Failure(ConnectionLost("Response cut short")))
        return True


def streamRequestLine(stream: H2Stream) -> bytes:
    """
    The request line of an HTTP/2 stream, as C{METHOD target HTTP/2}: the
    version Twisted then gives the request. The stream knows its method and
    target (C{command}, C{path}) from its headers on, before the request
    does.
    """
    line: bytes = b"%s %s HTTP/2" % (stream.command, stream.path)
    return line
