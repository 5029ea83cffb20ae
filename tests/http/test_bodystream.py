"""
Tests for L{twisted_cgiserve._http.bodystream}: a request body handed to its
consumer as it arrives, with the connection paused while the consumer is
full, against fakes of both.
"""

from __future__ import annotations

import os
from typing import Any

from twisted_cgiserve._http.bodystream import BodyStream


class _Client:
    """
    The connection side: counts pauses and resumes, and whether it is read.
    """

    def __init__(self) -> None:
        self.reading = True
        self.pauses = 0

    def pauseBody(self) -> None:
        self.reading = False
        self.pauses += 1

    def resumeBody(self) -> None:
        self.reading = True


class _Stdin:
    """
    A pipe writer: keeps what is written, and pauses its producer once it
    holds C{capacity} bytes, as Twisted's C{FileDescriptor} does.
    """

    def __init__(self, capacity: int = 10) -> None:
        self.capacity = capacity
        self.held = b""
        self.taken = b""
        self.producer: Any = None
        self.closed = False

    def registerProducer(self, producer: Any, streaming: bool) -> None:
        assert streaming
        self.producer = producer

    def unregisterProducer(self) -> None:
        self.producer = None

    def write(self, data: bytes) -> None:
        assert not self.closed
        self.held += data
        if len(self.held) >= self.capacity and self.producer is not None:
            self.producer.pauseProducing()

    def drain(self) -> None:
        """
        The script reads everything the pipe holds.
        """
        self.taken += self.held
        self.held = b""
        if self.producer is not None:
            self.producer.resumeProducing()

    def close(self) -> None:
        self.closed = True


def _stream(length: int) -> tuple[BodyStream, _Client]:
    client = _Client()
    return BodyStream(length, client), client


def test_lengthAsAFile() -> None:
    """
    As the request's content, the stream says its announced length the way
    a file does (what C{CONTENT_LENGTH} is made from), and has nothing to
    read.
    """
    stream, _ = _stream(1234)
    assert stream.seek(0, os.SEEK_END) == 1234
    assert stream.tell() == 1234
    assert stream.seek(0) == 0
    assert stream.tell() == 0
    assert stream.read() == b""


def test_keptUntilAttached() -> None:
    """
    What arrives before the script runs is kept, with the connection
    paused; once attached, the script gets it and the connection is read
    again.
    """
    stream, client = _stream(100)
    stream.feed(b"abc")
    assert not client.reading
    stdin = _Stdin(capacity=1000)
    stream.attach(stdin, stdin.close)
    assert stdin.held == b"abc"
    assert stdin.producer is stream
    assert client.reading
    stream.feed(b"def")
    assert stdin.held == b"abcdef"
    assert not stdin.closed


def test_completeBodyClosesStdin() -> None:
    """
    Once the whole body is in the pipe, the stream unregisters and closes
    it: the script sees the end of its input.
    """
    stream, client = _stream(6)
    stdin = _Stdin(capacity=1000)
    stream.attach(stdin, stdin.close)
    stream.feed(b"abc")
    assert not stream.complete
    stream.feed(b"def")
    assert stream.complete
    assert stdin.held == b"abcdef"
    assert stdin.closed
    assert stdin.producer is None
    assert client.reading


def test_completeBeforeAttached() -> None:
    """
    A body that arrived whole before the script started is handed over and
    the pipe closed at once.
    """
    stream, client = _stream(3)
    stream.feed(b"abc")
    assert client.reading
    stdin = _Stdin(capacity=1000)
    stream.attach(stdin, stdin.close)
    assert stdin.held == b"abc"
    assert stdin.closed


def test_fullPipePausesTheClient() -> None:
    """
    Backpressure: while the pipe is full, the connection is not read, what
    arrives meanwhile is kept (only what was already on its way), and it is
    handed over before the connection is read again.
    """
    stream, client = _stream(100)
    stdin = _Stdin(capacity=10)
    stream.attach(stdin, stdin.close)
    stream.feed(b"x" * 10)
    assert not client.reading
    stream.feed(b"y" * 5)
    assert stdin.held == b"x" * 10
    assert not client.reading
    stdin.drain()
    assert stdin.taken == b"x" * 10
    assert stdin.held == b"y" * 5
    assert client.reading


def test_pausedAgainWhenResumedElsewhere() -> None:
    """
    A connection resumed for another reason (its send buffer drained) while
    the pipe is full is paused again by the next chunk.
    """
    stream, client = _stream(100)
    stdin = _Stdin(capacity=10)
    stream.attach(stdin, stdin.close)
    stream.feed(b"x" * 10)
    assert client.pauses == 1
    client.reading = True
    stream.feed(b"y")
    assert not client.reading
    assert client.pauses == 2


def test_pipeFullWhenTheLastChunkArrives() -> None:
    """
    The last chunk arriving while the pipe is full: the connection is read
    on (nothing more of the body will come), and the pipe is closed only
    once the script has taken it all.
    """
    stream, client = _stream(15)
    stdin = _Stdin(capacity=10)
    stream.attach(stdin, stdin.close)
    stream.feed(b"x" * 10)
    stream.feed(b"y" * 5)
    assert client.reading
    assert not stdin.closed
    stdin.drain()
    assert stdin.held == b"y" * 5
    assert stdin.closed


def test_stdinGoneDiscardsTheRest() -> None:
    """
    A script that closes its input (or exits) before reading it all: what
    is kept and what still arrives is dropped, and the connection is read
    on, so the body ends where its length says.
    """
    stream, client = _stream(100)
    stdin = _Stdin(capacity=10)
    stream.attach(stdin, stdin.close)
    stream.feed(b"x" * 10)
    stream.feed(b"y" * 5)
    stdin.producer.stopProducing()
    assert stream.discarding
    assert client.reading
    stream.feed(b"z" * 85)
    assert stdin.held == b"x" * 10
    assert stream.complete
    stream.stopProducing()
    assert stream.discarding


def test_discardClosesStdin() -> None:
    """
    Nobody will read the rest (the response is over, the client is gone):
    the pipe is unregistered and closed, the rest dropped; discarding twice
    changes nothing.
    """
    stream, client = _stream(100)
    stdin = _Stdin(capacity=10)
    stream.attach(stdin, stdin.close)
    stream.feed(b"x" * 10)
    stream.discard()
    assert stdin.closed
    assert stdin.producer is None
    assert client.reading
    stream.close()
    stream.feed(b"y" * 90)
    assert stdin.held == b"x" * 10


def test_attachAfterDiscard() -> None:
    """
    A script started after the body was given up (the client went away
    while it was being started) gets its input closed at once.
    """
    stream, _ = _stream(100)
    stream.discard()
    stdin = _Stdin()
    stream.attach(stdin, stdin.close)
    assert stdin.closed
    assert stdin.producer is None
