# -*- test-case-name: tests.http.test_bodystream -*-
"""
A request body handed to its consumer (a CGI script's standard input) as it
arrives, instead of being kept until it is complete.

A spooled body makes a script wait for the whole upload before it can start,
stream or report progress, and holds all of it in memory or on disk. A
streamed body holds almost nothing: while the consumer cannot take more (a
script reading slowly fills its pipe, and the pipe's writer pauses its
producer, this stream), the client's connection is no longer read, so the
client's own sending slows to the script's pace (TCP's flow control does the
rest). What arrives between the pause and the connection actually stopping
(at most what one read of the socket returned) is kept until the consumer
takes more.

Only a body whose length was announced (C{Content-Length}) is streamed: a
script's C{CONTENT_LENGTH} must be known before it starts, and a chunked
body's is known only at its end.

Once nobody will read the rest of the body (the script closed its standard
input or ended, the response is over, the client went away) the stream
discards what still arrives: the connection reads on, so the body ends where
its length says and the next request on the connection is parsed from the
right byte.
"""

from __future__ import annotations

import os
from collections.abc import Callable
from typing import Protocol, runtime_checkable

from zope.interface import implementer

from twisted.internet.interfaces import IPushProducer
from twisted.web.iweb import IRequest

__all__ = ["BodyClient", "BodyConsumer", "BodyStream", "StreamsBodies"]


@runtime_checkable
class StreamsBodies(Protocol):
    """
    A site's root that can tell, at the end of a request's head, whether the
    request's body is to be streamed to what will serve it (a CGI script)
    rather than kept until it is complete.
    """

    def streamsBody(self, request: IRequest) -> bool:
        """
        Whether C{request} (its method, C{uri} and C{path} known, its body
        not yet) goes where its body is streamed.
        """


class BodyClient(Protocol):
    """
    The connection a streamed body arrives on.
    """

    def pauseBody(self) -> None:
        """
        Read no more of the body for now; the wait is the server's, so no
        idle timeout counts it against the client.
        """

    def resumeBody(self) -> None:
        """
        Read the body again.
        """


class BodyConsumer(Protocol):
    """
    What a streamed body is handed to: an L{IConsumer<
    twisted.internet.interfaces.IConsumer>} taking a streaming producer (a
    script's standard input).
    """

    def registerProducer(self, producer: IPushProducer, streaming: bool) -> None:
        """
        C{producer} writes to this consumer, and is paused while it is full.
        """

    def unregisterProducer(self) -> None:
        """
        The producer is done.
        """

    def write(self, data: bytes) -> None:
        """
        Take C{data}.
        """


@implementer(IPushProducer)
class BodyStream:
    """
    The body of one request, from its connection to its consumer.

    It stands as the request's C{content}: only its length can be asked, as
    a file's is (C{seek} to the end, then C{tell}), which is what a CGI
    environment needs for C{CONTENT_LENGTH}; its bytes go to the consumer
    given to L{attach}.

    @ivar length: The announced length of the body.
    @ivar received: How many of its bytes have arrived so far.
    """

    def __init__(self, length: int, client: BodyClient) -> None:
        self.length = length
        self.received = 0
        self._client = client
        self._clientPaused = False
        self._consumer: BodyConsumer | None = None
        self._done: Callable[[], None] | None = None
        self._consumerPaused = False
        self._pending: list[bytes] = []
        self._discarding = False
        self._position = 0

    @property
    def complete(self) -> bool:
        """
        Whether the whole body has arrived.
        """
        return self.received >= self.length

    @property
    def discarding(self) -> bool:
        """
        Whether what arrives from now on is dropped.
        """
        return self._discarding

    # From the connection

    def feed(self, data: bytes) -> None:
        """
        Bytes of the body arrived: handed on at once when the consumer takes
        them, else kept, and the connection paused until it does.
        """
        self.received += len(data)
        if not self._discarding:
            if self._consumer is None or self._consumerPaused or self._pending:
                self._pending.append(data)
                # Asked on every such chunk: the connection may have been
                # resumed for another reason (its send buffer drained).
                self._pauseClient(again=True)
            else:
                self._consumer.write(data)
        if self.complete:
            # Nothing more will arrive: the connection has no reason to stay
            # paused, and its idle timeout is its own again.
            self._resumeClient()
            self._maybeFinish()

    # To the consumer

    def attach(self, consumer: BodyConsumer, done: Callable[[], None]) -> None:
        """
        Hand the body to C{consumer}, as fast as it takes it (this stream is
        its streaming producer), what arrived already first; C{done} is
        called once it has the whole body (or once nothing more will be
        handed to it), to close it.
        """
        if self._discarding or self._consumer is not None:
            done()
            return
        self._consumer = consumer
        self._done = done
        consumer.registerProducer(self, True)
        self._flush()

    def _flush(self) -> None:
        consumer = self._consumer
        while self._pending and consumer is not None and not self._consumerPaused:
            consumer.write(self._pending.pop(0))
            consumer = self._consumer
        if consumer is None or self._pending:
            return
        if not self.complete and not self._consumerPaused:
            self._resumeClient()
        self._maybeFinish()

    def _maybeFinish(self) -> None:
        """
        The consumer has the whole body: it is closed.
        """
        if self.complete and not self._pending and self._consumer is not None:
            self._release(unregister=True)

    def _release(self, *, unregister: bool) -> None:
        consumer, self._consumer = self._consumer, None
        done, self._done = self._done, None
        if consumer is not None and unregister:
            consumer.unregisterProducer()
        if done is not None:
            done()

    def discard(self) -> None:
        """
        Nobody will read the rest of the body: drop what is kept and what
        still arrives, close the consumer, and let the connection read on.
        """
        if self._discarding:
            return
        self._discarding = True
        self._pending = []
        self._release(unregister=True)
        self._resumeClient()

    # IPushProducer, for the consumer

    def pauseProducing(self) -> None:
        """
        The consumer is full (the script's pipe): stop reading the client.
        """
        self._consumerPaused = True
        if not self.complete:
            self._pauseClient()

    def resumeProducing(self) -> None:
        """
        The consumer has room again: hand it what was kept, then read on.
        """
        self._consumerPaused = False
        self._flush()

    def stopProducing(self) -> None:
        """
        The consumer is gone (the script's standard input was closed): the
        rest of the body is discarded.
        """
        if self._discarding:
            return
        self._discarding = True
        self._pending = []
        self._release(unregister=False)
        self._resumeClient()

    # The connection

    def _pauseClient(self, *, again: bool = False) -> None:
        if self._clientPaused and not again:
            return
        self._clientPaused = True
        self._client.pauseBody()

    def _resumeClient(self) -> None:
        if self._clientPaused:
            self._clientPaused = False
            self._client.resumeBody()

    # The little of a file that the request's content needs

    def seek(self, offset: int, whence: int = os.SEEK_SET) -> int:
        """
        Only C{seek(0)} and C{seek(0, SEEK_END)}: the start, and the end the
        announced length says.
        """
        self._position = self.length if whence == os.SEEK_END else 0
        return self._position

    def tell(self) -> int:
        return self._position

    def read(self, size: int = -1) -> bytes:
        """
        Nothing: the body goes to the consumer, not to a reader.
        """
        return b""

    def close(self) -> None:
        """
        The request is done with its content: see L{discard}.
        """
        self.discard()
