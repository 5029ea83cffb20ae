"""
Tests for L{twisted_cgiserve._static.body}: a file's bytes (or pieces of
them) sent as a response body, at once when small, through a push producer
that follows the client when large, the descriptor closed on every path.
"""

from __future__ import annotations

import os
from collections.abc import Iterator
from pathlib import Path
from typing import Any, cast

import pytest
from twisted.internet.error import ConnectionLost
from twisted.logger import ILogObserver, globalLogPublisher
from twisted.python.failure import Failure
from twisted.web.iweb import IRequest

from tests.support.requests import StreamingRequest
from twisted_cgiserve._static.body import Piece, closeSource, sendBody

# Just past the size sent in one write, and several read chunks long.
LARGE = 1024 * 1024 + 17
SMALL_DATA = b"0123456789abcdef"


def isOpen(fd: int) -> bool:
    try:
        os.fstat(fd)
    except OSError:
        return False
    return True


@pytest.fixture
def largeFile(tmp_path: Path) -> Path:
    path = tmp_path / "large.bin"
    path.write_bytes(os.urandom(LARGE))
    return path


@pytest.fixture
def warnings() -> Iterator[list[dict[str, Any]]]:
    """
    What is logged in the C{cgiserve.static} namespace during the test.
    """
    events: list[dict[str, Any]] = []

    def observe(event: dict[str, Any]) -> None:
        if event.get("log_namespace") == "cgiserve.static":
            events.append(event)

    observer = cast(ILogObserver, observe)
    globalLogPublisher.addObserver(observer)
    yield events
    globalLogPublisher.removeObserver(observer)


def body(request: StreamingRequest) -> bytes:
    return b"".join(request.written)


def openOn(path: Path) -> int:
    return os.open(path, os.O_RDONLY)


def send(request: StreamingRequest, source: int | bytes, pieces: list[Piece]) -> None:
    """
    L{sendBody} to the fake request (a L{DummyRequest}, which Twisted does
    not declare an L{IRequest}).
    """
    sendBody(cast(IRequest, request), source, pieces)


def registered(request: StreamingRequest) -> bool:
    return request.producer is not None


# Small bodies: one write


def test_smallBodyFromBytes() -> None:
    """
    Pieces of an in-memory body (literal bytes and regions of the source)
    are written in one call, in order, and the request finished.
    """
    request = StreamingRequest()
    pieces: list[Piece] = [b"--a\r\n", (2, 3), b"\r\n--b\r\n", (10, 6)]
    send(request, SMALL_DATA, pieces)
    assert request.written == [b"--a\r\n234\r\n--b\r\nabcdef"]
    assert request.finished == 1
    assert request.producer is None


def test_smallBodyFromFileClosesIt(tmp_path: Path) -> None:
    """
    A small file region is read with one C{pread} per piece and written at
    once; the descriptor is closed.
    """
    path = tmp_path / "f"
    path.write_bytes(SMALL_DATA)
    fd = openOn(path)
    request = StreamingRequest()
    send(request, fd, [(4, 4), (0, 2)])
    assert request.written == [b"456701"]
    assert request.finished == 1
    assert not isOpen(fd)


@pytest.mark.parametrize("size", [3, LARGE])
def test_headSendsNothing(tmp_path: Path, size: int) -> None:
    """
    A HEAD request gets no body, however large, and the file is closed at
    once.
    """
    path = tmp_path / "f"
    path.write_bytes(b"x" * size)
    fd = openOn(path)
    request = StreamingRequest(method=b"HEAD")
    send(request, fd, [(0, size)])
    assert request.written == []
    assert request.finished == 1
    assert request.producer is None
    assert not isOpen(fd)


def test_emptyBody(tmp_path: Path) -> None:
    """
    A body of no bytes finishes the request without a write.
    """
    path = tmp_path / "empty"
    path.write_bytes(b"")
    fd = openOn(path)
    request = StreamingRequest()
    send(request, fd, [])
    assert (request.written, request.finished) == ([], 1)
    assert not isOpen(fd)


def test_smallFileThatShrankIsCut(
    tmp_path: Path, warnings: list[dict[str, Any]]
) -> None:
    """
    A file shorter than the pieces promise (it shrank after its length was
    sent): nothing is written, the response is cut rather than finished
    short of its Content-Length, the file closed and the change logged.
    """
    path = tmp_path / "f"
    path.write_bytes(b"short")
    fd = openOn(path)
    request = StreamingRequest(uri=b"/f")
    send(request, fd, [(0, 100)])
    assert request.written == []
    assert request.finished == 0
    assert request.cut
    assert not isOpen(fd)
    assert [e["log_format"] for e in warnings] == [
        "{uri}: file changed while being sent"
    ]


def test_smallFileThatCannotBeReadIsCut(tmp_path: Path) -> None:
    """
    A read that fails (here: the descriptor is a directory's) cuts the
    response instead of finishing it short, and closes the descriptor.
    """
    fd = openOn(tmp_path)
    request = StreamingRequest()
    send(request, fd, [(0, 5)])
    assert request.written == []
    assert request.cut
    assert not isOpen(fd)


# Large bodies: a push producer


def test_largeBodyFollowsTheClient(largeFile: Path) -> None:
    """
    A large file is sent through a streaming producer: no more than the
    client's buffer and one read chunk is written while the client does
    not read, and each time it reads, more follows, until the whole file
    is sent, the request finished and the file closed.
    """
    fd = openOn(largeFile)
    request = StreamingRequest(bufferSize=64 * 1024)
    send(request, fd, [(0, LARGE)])
    assert request.streaming is True
    assert request.producer is not None
    rounds = 0
    while registered(request):
        assert request.unsent <= 64 * 1024 + 256 * 1024
        assert isOpen(fd)
        request.drain()
        rounds += 1
    assert rounds >= LARGE // (256 * 1024)
    assert body(request) == largeFile.read_bytes()
    assert request.finished == 1
    assert not isOpen(fd)


def test_largeMultipartBodyFromBytes() -> None:
    """
    Literal pieces and regions of an in-memory source, past the one-write
    size, arrive whole and in order.
    """
    source = os.urandom(LARGE)
    pieces: list[Piece] = [b"head", (LARGE - 300_000, 300_000), b"mid", (0, 10)]
    request = StreamingRequest()
    send(request, source, pieces)
    assert body(request) == b"head" + source[-300_000:] + b"mid" + source[:10]
    assert request.finished == 1
    assert request.producer is None


def test_clientLeavingClosesTheFile(largeFile: Path) -> None:
    """
    A client that leaves in the middle of the body: the file is closed and
    nothing more is written, even if the producer is resumed.
    """
    fd = openOn(largeFile)
    request = StreamingRequest(bufferSize=1)
    send(request, fd, [(0, LARGE)])
    producer = request.producer
    assert producer is not None
    written = len(body(request))
    request.processingFailed(Failure(ConnectionLost()))
    assert not isOpen(fd)
    producer.resumeProducing()
    assert len(body(request)) == written < LARGE
    assert request.finished == 0


def test_stopProducingClosesTheFile(largeFile: Path) -> None:
    """
    The consumer stopping the producer (the connection going away) closes
    the file.
    """
    fd = openOn(largeFile)
    request = StreamingRequest(bufferSize=1)
    send(request, fd, [(0, LARGE)])
    assert request.producer is not None
    request.producer.stopProducing()
    assert not isOpen(fd)
    assert request.finished == 0


def test_largeFileThatShrinksIsCut(
    largeFile: Path, warnings: list[dict[str, Any]]
) -> None:
    """
    A file truncated while it is being sent: the response is cut (its
    length cannot be kept), the file closed, the failure logged.
    """
    fd = openOn(largeFile)
    request = StreamingRequest(uri=b"/large.bin", bufferSize=1)
    send(request, fd, [(0, LARGE)])
    os.truncate(largeFile, 1000)
    request.drain()
    assert request.cut
    assert request.finished == 0
    assert request.producer is None
    assert not isOpen(fd)
    assert len(warnings) == 1
    assert "reading the file failed" in warnings[0]["log_format"]


def test_clientThatNeverReadsIsCutAfterTheSendTimeout(largeFile: Path) -> None:
    """
    A client that stops reading holds the file only until the site's send
    timeout, in simulated time: then the response is cut and the file
    closed.
    """
    fd = openOn(largeFile)
    request = StreamingRequest(bufferSize=1)
    request.site.sendTimeout = 5.0
    send(request, fd, [(0, LARGE)])
    request.clock.advance(4.9)
    assert isOpen(fd)
    request.clock.advance(0.2)
    assert not isOpen(fd)
    assert request.cut


def test_reentrantResumeKeepsOrder(largeFile: Path) -> None:
    """
    A consumer that pauses and resumes the producer from inside C{write}
    (as some transports do synchronously) gets each byte once, in order.
    """
    fd = openOn(largeFile)
    request = StreamingRequest()
    original = request.write

    def write(data: bytes) -> None:
        original(data)
        if request.producer is not None:
            request.producer.pauseProducing()
            request.producer.resumeProducing()

    request.write = write  # type: ignore[method-assign]
    send(request, fd, [(0, LARGE)])
    assert body(request) == largeFile.read_bytes()
    assert request.finished == 1
    assert not isOpen(fd)


def test_closeSource(tmp_path: Path) -> None:
    """
    L{closeSource} closes a descriptor and leaves an in-memory body alone.
    """
    path = tmp_path / "f"
    path.write_bytes(b"x")
    fd = openOn(path)
    closeSource(fd)
    assert not isOpen(fd)
    closeSource(b"in memory")
