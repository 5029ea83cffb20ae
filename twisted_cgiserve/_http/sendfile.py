# -*- test-case-name: tests.http.test_sendfile -*-
"""
Zero-copy file bodies: a region of an open file sent with C{sendfile(2)}
straight from the page cache to the client's socket, as nginx and lighttpd
send static files, instead of being read into Python and copied through
the transport's buffer.

This applies where the request's transport is the socket itself: HTTP/1.x
over plain TCP (or a Unix socket). Over TLS the bytes must be encrypted in
user space, and an HTTP/2 stream shares its connection with others; both
keep the copying path.

How the socket is reached, with public Twisted APIs only:

 - the transport is a L{FileDescriptor}; its C{fileno()} is the socket;
 - for the length of the body, this sender replaces the channel as the
   transport's producer, as a I{pull} producer: the transport calls its
   C{resumeProducing} whenever its own buffer has been handed to the
   kernel, so the first such call after the response's head was written
   means the head has left and the file may follow;
 - each such call sends one share of the file (one C{sendfile} call of
   at most C{_TURN} bytes); then, or when the socket is full (C{EAGAIN},
   or a short write), the sender calls the transport's C{startWriting}:
   the reactor then watches the socket for writability on the transport's
   own registration (one registration per socket, as the reactor wants
   it), and the transport, finding its buffer empty, calls
   C{resumeProducing} again. No loop ever blocks, and no second descriptor
   is registered for the same socket;
 - when the body is complete the channel is given its place back.

Everything else is the one response path's: the L{ResponseSender} runs the
send deadline (armed while the sender waits for the socket, cleared by
progress), cuts, and releases the file however the request ends (finished,
failed, the client gone, cut, timed out, the server shutting down).
"""

from __future__ import annotations

import errno
import os
from collections.abc import Callable
from typing import Any

from zope.interface import implementer

from twisted.internet.abstract import FileDescriptor
from twisted.internet.interfaces import IPullProducer, IPushProducer, ISSLTransport
from twisted.logger import Logger
from twisted.web.iweb import IRequest

from twisted_cgiserve._http.h2 import isStream
from twisted_cgiserve._http.response import ResponseSender

__all__ = ["FileRegionSender", "zeroCopyTransport"]

# Bytes handed to sendfile(2) in one reactor turn: one call, then the
# socket's next writability. Filling the socket's whole buffer (up to
# tcp_wmem's 4 MiB) at once queues more than the client's receive window
# takes, and the rest leaves in bursts as the client's ACKs open it; one
# moderate call per turn, as lighttpd makes (256 KiB), keeps the socket's
# queue short and measured 1.08x to 1.15x the throughput of filling it
# (issue 12; 64 KiB to 512 KiB measured alike, and 512 KiB takes the
# fewest turns). It also bounds how long one fast client holds the
# reactor from the others.
_TURN = 512 * 1024

# Read size when sendfile(2) is refused for the file (a file system that
# cannot do it) and the body is copied after all.
_COPY_CHUNK = 256 * 1024

# sendfile(2) failures that mean the client's socket is gone.
_GONE = frozenset(
    {
        errno.EPIPE,
        errno.ECONNRESET,
        errno.ECONNABORTED,
        errno.ENOTCONN,
        errno.ESHUTDOWN,
    }
)

# sendfile(2) failures that mean it cannot be used for this file at all.
_UNSUPPORTED = frozenset({errno.EINVAL, errno.ENOSYS, errno.EOPNOTSUPP, errno.ENOTSUP})

# The file's failures are logged with the copying path's.
_log = Logger(namespace="cgiserve.static")

Sendfile = Callable[[int, int, int, int], int]


def zeroCopyTransport(request: IRequest) -> FileDescriptor | None:
    """
    The socket transport a file body for C{request} can be sent to with
    C{sendfile(2)}, or L{None} where it must be copied: over TLS, on an
    HTTP/2 stream, without C{os.sendfile}, or once the connection is
    closing.
    """
    if not hasattr(os, "sendfile"):
        return None
    channel: Any = getattr(request, "channel", None)
    if channel is None or isStream(channel):
        return None
    transport = getattr(channel, "transport", None)
    if not isinstance(transport, FileDescriptor):
        # TLS (TLSMemoryBIOProtocol), or a test's string transport.
        return None
    if ISSLTransport.providedBy(transport):
        return None
    if not transport.connected or transport.disconnecting:
        return None
    return transport


@implementer(IPullProducer)
class _Writable:
    """
    The sender's face towards the transport: a pull producer, called when
    the transport's buffer is empty (or stopped when the connection is
    lost).
    """

    def __init__(self, owner: FileRegionSender) -> None:
        self._owner = owner

    def resumeProducing(self) -> None:
        self._owner.writable()

    def stopProducing(self) -> None:
        self._owner.stopProducing()


@implementer(IPushProducer)
class FileRegionSender:
    """
    Send C{length} bytes of an open file from C{offset} as the body of an
    HTTP/1.x request over a socket transport, with C{sendfile(2)}.

    It owns the descriptor from construction on and closes it on every
    path.

    @ivar sent: Body bytes the socket has taken so far.
    """

    def __init__(
        self,
        request: IRequest,
        fd: int,
        offset: int,
        length: int,
        transport: FileDescriptor,
        *,
        sendfile: Sendfile | None = None,
    ) -> None:
        """
        @param transport: The request's socket transport, from
            L{zeroCopyTransport}.
        @param sendfile: A stand-in for C{os.sendfile} (tests).
        """
        self._request: Any = request
        self._channel: Any = getattr(request, "channel", None)
        self._fd: int | None = fd
        self._offset = offset
        self._remaining = length
        self._transport = transport
        self._sendfile: Sendfile = os.sendfile if sendfile is None else sendfile
        self._writable = _Writable(self)
        self._sender = ResponseSender(request, self)
        # The head has been handed to the transport.
        self._headWritten = False
        # This sender is the transport's producer (in the channel's place).
        self._swapped = False
        # The response's consumer paused it; a writable socket waits.
        self._paused = False
        self._pending = False
        # sendfile(2) is refused for this file: the body is copied.
        self._copying = False
        self._done = False
        self.sent = 0

    def start(self) -> None:
        """
        Take over the response: register with the request (the send
        deadline, release on every ending), take the channel's place as the
        transport's producer, and write the head.
        """
        self._sender.start()
        if self._done:
            return
        transport = self._transport
        transport.unregisterProducer()
        self._swapped = True
        # A pull producer is asked for data at once; the head is written
        # then (or just below, for a transport that waits).
        transport.registerProducer(self._writable, False)
        if not self._headWritten and not self._done:
            self._writeHead()

    def _writeHead(self) -> None:
        self._headWritten = True
        # The head is buffered in the transport; until it has left, the
        # response waits for the client as much as any body byte would.
        self._sender.stalled()
        self._request.write(b"")

    # From the transport.

    def writable(self) -> None:
        """
        The transport has handed everything it held to the kernel: send
        more of the file.
        """
        if self._done:
            return
        if not self._headWritten:
            self._writeHead()
            return
        if self._paused:
            self._pending = True
            return
        if self._copying:
            self._copy()
        else:
            self._send()

    def _send(self) -> None:
        fd = self._fd
        assert fd is not None
        count = min(self._remaining, _TURN)
        try:
            n = self._sendfile(self._transport.fileno(), fd, self._offset, count)
        except BlockingIOError:
            # The socket is full.
            n = -1
        except OSError as e:
            self._failed(e)
            return
        if n == 0:
            self._failed(OSError("file shrank while being sent"))
            return
        if n > 0:
            self._advance(n)
            if not self._remaining:
                self._complete()
                return
        # This turn's share is sent (or the socket is full: a short write
        # or EAGAIN); the next comes when the socket is writable again.
        self._wait()

    def _copy(self) -> None:
        fd = self._fd
        assert fd is not None
        size = min(self._remaining, _COPY_CHUNK)
        try:
            data = os.pread(fd, size, self._offset)
        except OSError as e:
            self._failed(e)
            return
        if len(data) != size:
            self._failed(OSError("file shrank while being sent"))
            return
        self._advance(size, counted=True)
        # Through the request (it counts the bytes), to the transport,
        # which asks for more once it has sent them.
        self._request.write(data)
        if not self._remaining:
            self._complete()
        elif not self._done:
            self._sender.stalled()

    def _advance(self, n: int, *, counted: bool = False) -> None:
        self._offset += n
        self._remaining -= n
        self.sent += n
        if not counted:
            # The access log's byte count, as if written through it.
            self._request.sentLength += n
        self._sender.progressed()

    def _wait(self) -> None:
        """
        The socket is full: have the transport call back once it is
        writable, and let the send deadline run meanwhile.
        """
        self._sender.stalled()
        self._transport.startWriting()

    def _failed(self, error: OSError) -> None:
        if error.errno in _GONE:
            # The client is gone; the transport hears of it too.
            self._release()
            self._sender.cut(abort=True)
            return
        if error.errno in _UNSUPPORTED and not self.sent:
            self._copying = True
            self._copy()
            return
        _log.warn(
            "{uri}: sending the file failed ({error}); response cut",
            uri=self._request.uri,
            error=error,
        )
        self._release()
        self._sender.cut()

    def _complete(self) -> None:
        """
        The whole region has been sent: give the channel its place back,
        then finish the response.
        """
        self._release()
        if self._swapped and self._transport.connected:
            self._swapped = False
            transport = self._transport
            transport.unregisterProducer()
            transport.registerProducer(self._channel, True)
            # The transport has just drained; a channel it had paused
            # before the swap is told so (a no-op otherwise), so that it
            # reads pipelined requests again.
            self._channel.resumeProducing()
        self._sender.finish()

    def _release(self) -> None:
        self._done = True
        fd, self._fd = self._fd, None
        if fd is not None:
            os.close(fd)

    # IPushProducer, from the ResponseSender.

    def pauseProducing(self) -> None:
        self._paused = True

    def resumeProducing(self) -> None:
        self._paused = False
        if self._pending and not self._done:
            self._pending = False
            self._transport.startWriting()

    def stopProducing(self) -> None:
        """
        The response ended early (the client left, the send deadline
        passed, the server is shutting down): release the file and leave
        the transport.
        """
        if self._done and not self._swapped:
            return
        self._release()
        if self._swapped:
            self._swapped = False
            # Harmless if the transport has already let go of it.
            self._transport.unregisterProducer()
