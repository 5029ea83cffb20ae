# -*- test-case-name: tests.test_static -*-
"""
Sending a file's bytes (or parts of them) as a response body.

Small bodies are read and written in one call: most static responses are a
few kilobytes, and a producer driven through a cooperator costs an extra
reactor turn per request (C{twisted.web.static.File} pays it every time).
Larger bodies go through a push producer that reads with C{pread} and writes
until the transport says it is full, so memory stays bounded by the
transport's buffer however large the file and however slow the client.
"""

from __future__ import annotations

import os
from collections.abc import Sequence
from typing import cast

from zope.interface import implementer

from twisted.internet.interfaces import IConsumer, IPushProducer
from twisted.logger import Logger
from twisted.web.iweb import IRequest

__all__ = ["Piece", "abortResponse", "closeSource", "sendBody"]

# A piece of a body: literal bytes (multipart headers) or a file region
# given as (offset, length).
Piece = bytes | tuple[int, int]

# Bodies up to this size are read and written at once.
_SMALL = 64 * 1024
# Read size for large bodies: big enough that per-call overhead vanishes
# next to the copy, small enough to stay near the transport's buffer.
_CHUNK = 256 * 1024

_log = Logger()


def abortResponse(request: IRequest) -> None:
    """
    Cut a response whose length was already promised: closing the connection
    is the only way left to tell the client the body is incomplete.
    """
    transport = getattr(request, "transport", None)
    if transport is not None:
        transport.loseConnection()


def closeSource(source: int | bytes) -> None:
    """
    Release a body source: close it if it is a descriptor.
    """
    if isinstance(source, int):
        os.close(source)


def sendBody(request: IRequest, source: int | bytes, pieces: Sequence[Piece]) -> None:
    """
    Write C{pieces} of C{source} (a file's contents, or a descriptor open on
    it) as the body of C{request} and finish it; takes ownership of a
    descriptor and closes it on every path.
    """
    total = sum(len(p) if isinstance(p, bytes) else p[1] for p in pieces)
    if request.method == b"HEAD" or total == 0:
        closeSource(source)
        request.finish()
        return
    if isinstance(source, bytes):
        request.write(
            b"".join(
                p if isinstance(p, bytes) else source[p[0] : p[0] + p[1]]
                for p in pieces
            )
        )
        request.finish()
        return
    fd = source
    if total <= _SMALL:
        try:
            data = [
                p if isinstance(p, bytes) else os.pread(fd, p[1], p[0]) for p in pieces
            ]
        finally:
            os.close(fd)
        body = b"".join(data)
        if len(body) != total:
            # The file shrank between fstat and read; the promised length
            # cannot be kept.
            _log.warn("File changed while being sent; closing the connection.")
            abortResponse(request)
            return
        request.write(body)
        request.finish()
        return
    producer = _FileProducer(request, fd, pieces)
    cast(IConsumer, request).registerProducer(producer, True)
    producer.resumeProducing()


@implementer(IPushProducer)
class _FileProducer:
    """
    Push a file's regions to a request, pausing when the transport's buffer
    is full.
    """

    def __init__(self, request: IRequest, fd: int, pieces: Sequence[Piece]) -> None:
        self._request = request
        self._fd: int | None = fd
        self._pieces = list(reversed(pieces))
        self._paused = False
        self._producing = False

    def _close(self) -> None:
        if self._fd is not None:
            os.close(self._fd)
            self._fd = None

    def _next(self) -> bytes | None:
        """
        The next chunk of the body, or L{None} at its end.

        @raise OSError: The file could not be read.
        """
        if not self._pieces:
            return None
        piece = self._pieces.pop()
        if isinstance(piece, bytes):
            return piece
        offset, length = piece
        assert self._fd is not None
        size = min(length, _CHUNK)
        data = os.pread(self._fd, size, offset)
        if len(data) != size:
            raise OSError("file shrank while being sent")
        if length > size:
            self._pieces.append((offset + size, length - size))
        return data

    def resumeProducing(self) -> None:
        self._paused = False
        if self._producing:
            # Re-entered from inside request.write (a transport that resumes
            # synchronously); the outer loop carries on.
            return
        self._producing = True
        try:
            while not self._paused and self._fd is not None:
                try:
                    chunk = self._next()
                except OSError:
                    _log.failure("Error reading a file being sent")
                    self._close()
                    cast(IConsumer, self._request).unregisterProducer()
                    abortResponse(self._request)
                    return
                if chunk is None:
                    self._close()
                    cast(IConsumer, self._request).unregisterProducer()
                    self._request.finish()
                    return
                self._request.write(chunk)
        finally:
            self._producing = False

    def pauseProducing(self) -> None:
        self._paused = True

    def stopProducing(self) -> None:
        """
        The connection went away: release the file; the request is already
        finished from Twisted's point of view.
        """
        self._paused = True
        self._pieces = []
        self._close()
