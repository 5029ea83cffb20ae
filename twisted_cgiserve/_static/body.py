# -*- test-case-name: tests.static.test_body -*-
"""
Sending a file's bytes (or parts of them), or a body already in memory, as
a response body.

Small bodies are read and written in one call: most static responses are a
few kilobytes, and a producer costs an extra reactor turn per request
(C{twisted.web.static.File} pays it every time). Larger bodies go through a
push producer behind a L{ResponseSender}, which reads with C{pread} only
while the client keeps up, so memory stays bounded by the transport's
buffer however large the file and however slow the client, and the file is
closed however the request ends.

A large file, whole or one range, over HTTP/1.x on plain TCP, is not read at
all: L{twisted_cgiserve._http.sendfile} sends it from the page cache with
C{sendfile(2)}, behind the same L{ResponseSender}. TLS, HTTP/2 and
C{multipart/byteranges} bodies keep the copying producer.
"""

from __future__ import annotations

import os
from collections.abc import Sequence

from zope.interface import implementer

from twisted.internet.interfaces import IPushProducer
from twisted.logger import Logger
from twisted.web.iweb import IRequest

from twisted_cgiserve._http.response import ResponseSender, cutResponse
from twisted_cgiserve._http.sendfile import FileRegionSender, zeroCopyTransport

__all__ = ["Piece", "closeSource", "sendBody"]

# A piece of a body: literal bytes (multipart headers) or a region of the
# source given as (offset, length).
Piece = bytes | tuple[int, int]

# Bodies up to this size are read and written at once.
_SMALL = 64 * 1024
# Read size for large bodies: big enough that per-call overhead vanishes
# next to the copy, small enough to stay near the transport's buffer.
_CHUNK = 256 * 1024

_log = Logger(namespace="cgiserve.static")


def closeSource(source: int | bytes) -> None:
    """
    Release a body source: close it if it is a descriptor.
    """
    if isinstance(source, int):
        os.close(source)


def _length(pieces: Sequence[Piece]) -> int:
    return sum(len(p) if isinstance(p, bytes) else p[1] for p in pieces)


def sendBody(request: IRequest, source: int | bytes, pieces: Sequence[Piece]) -> None:
    """
    Write C{pieces} of C{source} (a file's contents, or a descriptor open on
    it) as the body of C{request} and finish it; takes ownership of a
    descriptor and closes it on every path.
    """
    total = _length(pieces)
    if request.method == b"HEAD" or total == 0:
        closeSource(source)
        request.finish()
        return
    if total > _SMALL:
        if isinstance(source, int) and len(pieces) == 1:
            [piece] = pieces
            transport = zeroCopyTransport(request)
            if transport is not None and not isinstance(piece, bytes):
                offset, length = piece
                FileRegionSender(request, source, offset, length, transport).start()
                return
        _BodyProducer(request, source, pieces).start()
        return
    if isinstance(source, bytes):
        body = b"".join(
            p if isinstance(p, bytes) else source[p[0] : p[0] + p[1]] for p in pieces
        )
    else:
        try:
            body = b"".join(
                p if isinstance(p, bytes) else os.pread(source, p[1], p[0])
                for p in pieces
            )
        except OSError:
            body = b""
        finally:
            os.close(source)
    if len(body) != total:
        # The file shrank (or failed) between fstat and read; the promised
        # length cannot be kept.
        _log.warn("{uri}: file changed while being sent", uri=request.uri)
        cutResponse(request)
        return
    request.write(body)
    request.finish()


@implementer(IPushProducer)
class _BodyProducer:
    """
    Push a body's pieces to a request while the client keeps up.
    """

    def __init__(
        self, request: IRequest, source: int | bytes, pieces: Sequence[Piece]
    ) -> None:
        self._request = request
        self._source: int | bytes | None = source
        self._pieces = list(reversed(pieces))
        self._paused = False
        self._producing = False
        self._sender = ResponseSender(request, self)

    def start(self) -> None:
        self._sender.start()
        self.resumeProducing()

    def _release(self) -> None:
        source, self._source = self._source, None
        if source is not None:
            closeSource(source)

    def _next(self) -> bytes | None:
        """
        The next chunk of the body, or L{None} at its end.

        @raise OSError: The file could not be read, or shrank.
        """
        if not self._pieces:
            return None
        piece = self._pieces.pop()
        if isinstance(piece, bytes):
            return piece
        offset, length = piece
        source = self._source
        assert source is not None
        size = min(length, _CHUNK)
        if isinstance(source, bytes):
            data = source[offset : offset + size]
        else:
            data = os.pread(source, size, offset)
        if len(data) != size:
            raise OSError("file shrank while being sent")
        if length > size:
            self._pieces.append((offset + size, length - size))
        return data

    def resumeProducing(self) -> None:
        self._paused = False
        if self._producing:
            # Re-entered from inside request.write (a consumer that resumes
            # synchronously); the outer loop carries on.
            return
        self._producing = True
        try:
            while not self._paused and self._source is not None:
                try:
                    chunk = self._next()
                except OSError as e:
                    _log.warn(
                        "{uri}: reading the file failed ({error}); response cut",
                        uri=self._request.uri,
                        error=e,
                    )
                    self._release()
                    self._sender.cut()
                    return
                if chunk is None:
                    self._release()
                    self._sender.finish()
                    return
                self._request.write(chunk)
        finally:
            self._producing = False

    def pauseProducing(self) -> None:
        self._paused = True

    def stopProducing(self) -> None:
        """
        The response ended early (the client left, the send deadline
        passed, the server is shutting down): release the file.
        """
        self._paused = True
        self._pieces = []
        self._release()
