"""
Tests for L{twisted_cgiserve._http.sendfile}: file bodies sent with
C{sendfile(2)} over a real HTTP/1.1 channel of a real L{CGIServeSite}, in
simulated time.

The transport is Twisted's own L{FileDescriptor} (its buffering, its
producer handling, its C{startWriting}) over a fake socket whose room the
test sets; C{sendfile} is a fake kernel that moves bytes from the real file
into that same socket, a short write or C{EAGAIN} when the room runs out.
"""

from __future__ import annotations

import errno
import os
from collections.abc import Iterator
from pathlib import Path
from typing import Any

from zope.interface import implementer

import pytest
from twisted.internet.abstract import FileDescriptor
from twisted.internet.address import IPv4Address
from twisted.internet.error import ConnectionAborted, ConnectionDone
from twisted.internet.interfaces import IPullProducer
from twisted.internet.testing import MemoryReactorClock, StringTransport
from twisted.logger import LogEvent, capturedLogs, formatEvent
from twisted.python.failure import Failure
from twisted.web.resource import Resource
from twisted.web.server import NOT_DONE_YET, Request

from tests.support.fakes import CLIENT
from twisted_cgiserve._http import sendfile as sendfileModule
from twisted_cgiserve._http.response import ResponseSender
from twisted_cgiserve._http.sendfile import FileRegionSender, zeroCopyTransport
from twisted_cgiserve._http.site import CGIServeSite

SEND_TIMEOUT = 30.0
SOCKET = 1234


class _Socket(FileDescriptor):
    """
    A connected socket under Twisted's L{FileDescriptor}: what the kernel
    takes is limited by C{room} (L{None}: everything).
    """

    def __init__(self, reactor: MemoryReactorClock) -> None:
        super().__init__(reactor)
        self.connected = 1
        self.wire = bytearray()
        self.room: int | None = None
        self.protocol: Any = None
        self.aborted: bool = False
        self.sends = 0

    def fileno(self) -> int:
        return SOCKET

    def getPeer(self) -> IPv4Address:
        return IPv4Address("TCP", CLIENT.host, CLIENT.port)

    def getHost(self) -> IPv4Address:
        return IPv4Address("TCP", "127.0.0.1", 80)

    def take(self, n: int) -> int:
        if self.room is None:
            return n
        n = min(n, self.room)
        self.room -= n
        return n

    def writeSomeData(self, data: bytes) -> int:
        self.sends += 1
        n = self.take(len(data))
        self.wire += bytes(data[:n])
        return n

    def abortConnection(self) -> None:
        self.aborted = True
        self.lose(ConnectionAborted())

    def lose(self, reason: Exception) -> None:
        """
        The connection is gone: the transport, then its protocol, in the
        reactor's order.
        """
        if self.disconnected:
            return
        FileDescriptor.connectionLost(self, Failure(reason))
        self.protocol.connectionLost(Failure(reason))

    def pump(self, room: int | None = None, turns: int = 1000) -> None:
        """
        The reactor's turns while the transport waits to write and the
        socket is writable, with
        C{room} more bytes the client has read (or all of them).
        """
        if room is not None:
            self.room = (self.room or 0) + room
        else:
            self.room = None
        for _ in range(turns):
            if self not in self.writers() or self.gone():
                return
            if self.room == 0:
                # Not writable: the reactor does not call doWrite.
                return
            why = self.doWrite()
            if why:
                self.lose(why)
                return

    def writers(self) -> list[Any]:
        """
        What the reactor watches for writability.
        """
        reactor: Any = self.reactor
        return list(reactor.getWriters())

    def gone(self) -> bool:
        return bool(self.disconnected)

    def wasAborted(self) -> bool:
        return self.aborted

    def readAll(self) -> bytes:
        data = bytes(self.wire)
        self.wire.clear()
        return data


class _Kernel:
    """
    C{sendfile(2)} into a L{_Socket}: short writes and C{EAGAIN} when its
    room runs out, and the errors the test queues.
    """

    def __init__(self, socket: _Socket) -> None:
        self.socket = socket
        self.calls: list[tuple[int, int]] = []
        self.errors: list[OSError] = []

    def __call__(self, out: int, fd: int, offset: int, count: int) -> int:
        assert out == SOCKET
        self.calls.append((offset, count))
        if self.errors:
            raise self.errors.pop(0)
        n = self.socket.take(count)
        if n == 0:
            raise BlockingIOError(errno.EAGAIN, "Resource temporarily unavailable")
        data = os.pread(fd, n, offset)
        self.socket.wire += data
        return len(data)


class _File(Resource):
    """
    Serve C{path} (or C{length} bytes of it from C{offset}) with a
    L{FileRegionSender}, keeping its descriptor to see it closed.
    """

    isLeaf = True

    def __init__(self, path: Path, kernel: list[_Kernel], offset: int = 0) -> None:
        super().__init__()
        self.path = path
        self.kernel = kernel
        self.offset = offset
        self.fd: int | None = None
        self.inode = 0
        self.senders: list[FileRegionSender] = []
        self.requests: list[Request] = []

    def render(self, request: Request) -> int:
        fd = os.open(self.path, os.O_RDONLY)
        self.fd = fd
        self.inode = os.fstat(fd).st_ino
        length = os.fstat(fd).st_size - self.offset
        request.setHeader(b"content-length", b"%d" % (length,))
        transport = zeroCopyTransport(request)
        assert transport is not None
        sender = FileRegionSender(
            request, fd, self.offset, length, transport, sendfile=self.kernel[0]
        )
        self.senders.append(sender)
        self.requests.append(request)
        sender.start()
        return NOT_DONE_YET

    def isOpen(self) -> bool:
        assert self.fd is not None
        try:
            return os.fstat(self.fd).st_ino == self.inode
        except OSError:
            return False


class _Served:
    def __init__(self, resource: _File, sendTimeout: float = SEND_TIMEOUT) -> None:
        self.clock = MemoryReactorClock()
        self.site = CGIServeSite(resource, reactor=self.clock, sendTimeout=sendTimeout)
        self.connection: Any = self.site.buildProtocol(CLIENT)
        self.socket = _Socket(self.clock)
        self.socket.protocol = self.connection
        self.kernel = _Kernel(self.socket)
        resource.kernel.append(self.kernel)
        self.connection.makeConnection(self.socket)
        self.resource = resource

    def get(self, target: bytes = b"/f", extra: bytes = b"") -> None:
        self.connection.dataReceived(
            b"GET %s HTTP/1.1\r\nHost: example.com\r\n%s\r\n" % (target, extra)
        )

    @property
    def channel(self) -> Any:
        return self.connection._channel


_served: list[_Served] = []


@pytest.fixture(autouse=True)
def _disconnect() -> Iterator[None]:
    yield
    while _served:
        _served.pop().socket.lose(ConnectionDone())


def _file(directory: Path, size: int) -> Path:
    path = directory / "f"
    path.write_bytes((bytes(range(251)) * (size // 251 + 1))[:size])
    return path


def _serve(path: Path, **kw: Any) -> _Served:
    served = _Served(_File(path, []), **kw)
    _served.append(served)
    return served


def _split(response: bytes) -> tuple[bytes, bytes]:
    head, body = response.split(b"\r\n\r\n", 1)
    return head, body


def _deadlines(clock: MemoryReactorClock) -> list[Any]:
    calls: list[Any] = list(clock.getDelayedCalls())
    return [
        call
        for call in calls
        if isinstance(getattr(call.func, "__self__", None), ResponseSender)
    ]


def _static(events: list[LogEvent]) -> list[LogEvent]:
    return [e for e in events if e.get("log_namespace") == "cgiserve.static"]


# The whole file


def test_headThenFileWithSendfile(tmp_path: Path) -> None:
    """
    The head goes through the transport; once it has been sent, the file
    follows with sendfile from the open descriptor, which is closed when
    the response finishes. The access log counts the body's bytes.
    """
    path = _file(tmp_path, 1_000_000)
    served = _serve(path)
    served.get()
    # Nothing is sent with sendfile while the head is in the transport.
    assert served.kernel.calls == []
    assert served.resource.isOpen()
    served.socket.pump()
    head, body = _split(served.socket.readAll())
    assert b"HTTP/1.1 200 OK" in head
    assert b"Content-Length: 1000000" in head
    assert body == path.read_bytes()
    turn = sendfileModule._TURN
    assert served.kernel.calls == [(0, turn), (turn, 1_000_000 - turn)]
    assert not served.resource.isOpen()
    assert served.resource.requests[0].sentLength == 1_000_000
    assert not served.site.inFlight
    assert _deadlines(served.clock) == []


def test_bodyWaitsUntilTheHeadHasLeft(tmp_path: Path) -> None:
    """
    A head the socket takes in pieces is sent whole before the first byte
    of the file.
    """
    path = _file(tmp_path, 100_000)
    served = _serve(path)
    served.get()
    served.socket.pump(room=10)
    served.socket.pump(room=10)
    assert served.kernel.calls == []
    assert len(served.socket.wire) == 20
    served.socket.pump()
    _, body = _split(served.socket.readAll())
    assert body == path.read_bytes()


def test_rangeFromOffset(tmp_path: Path) -> None:
    """
    A region (one range) starts at its offset and ends at the file's end
    without a byte more.
    """
    path = _file(tmp_path, 300_000)
    served = _Served(_File(path, [], offset=123_456))
    _served.append(served)
    served.get()
    served.socket.pump()
    _, body = _split(served.socket.readAll())
    assert body == path.read_bytes()[123_456:]


def test_shortWritesAndEAGAINFollowTheClient(tmp_path: Path) -> None:
    """
    A client that reads slowly gets the file in order, a short write or an
    EAGAIN at a time; the sender waits on the transport's writability
    between, with the send deadline running, and never calls sendfile on a
    socket it knows is full.
    """
    size = 500_000
    path = _file(tmp_path, size)
    served = _serve(path)
    served.get()
    received = b""
    turns = 0
    while served.resource.isOpen():
        turns += 1
        assert turns < 100
        served.socket.pump(room=37_000)
        received += served.socket.readAll()
        if served.resource.isOpen():
            assert served.socket in served.socket.writers()
            assert len(_deadlines(served.clock)) == 1
    _, body = _split(received)
    assert body == path.read_bytes()
    # Each short write ended the turn: sendfile was not asked again until
    # the socket was writable.
    assert len(served.kernel.calls) <= 2 * turns
    assert _deadlines(served.clock) == []
    assert not served.site.inFlight


def test_eagainWaitsForWritability(tmp_path: Path) -> None:
    """
    sendfile failing with EAGAIN leaves the sender waiting on the
    transport's writability, then it carries on where it was.
    """
    path = _file(tmp_path, 200_000)
    served = _serve(path)
    served.kernel.errors.append(BlockingIOError(errno.EAGAIN, "again"))
    served.get()
    served.socket.pump(turns=1)
    assert served.socket in served.socket.writers()
    assert served.kernel.calls == [(0, 200_000)]
    assert served.resource.isOpen()
    served.socket.pump()
    _, body = _split(served.socket.readAll())
    assert body == path.read_bytes()


def test_oneSendfilePerTurn(tmp_path: Path) -> None:
    """
    However fast the client, one reactor turn makes one sendfile call of at
    most the turn's share, then waits for the socket's writability: the
    client's receive window is not flooded, and other connections get their
    turn.
    """
    turn = sendfileModule._TURN
    size = 2 * turn + 1000
    path = _file(tmp_path, size)
    served = _serve(path)
    served.get()
    # The first turn: the head leaves, then the turn's share of the file.
    served.socket.pump(turns=1)
    assert served.kernel.calls == [(0, turn)]
    assert served.resource.senders[0].sent == turn
    assert served.socket in served.socket.writers()
    assert len(_deadlines(served.clock)) == 1
    served.socket.pump(turns=1)
    assert served.kernel.calls == [(0, turn), (turn, turn)]
    served.socket.pump()
    assert served.kernel.calls[2:] == [(2 * turn, 1000)]
    assert not served.resource.isOpen()
    _, body = _split(served.socket.readAll())
    assert body == path.read_bytes()


# The send deadline


def test_stalledClientIsCutAfterSendTimeout(tmp_path: Path) -> None:
    """
    A client that stops reading mid-file is cut after the send deadline:
    the connection aborted, the file closed, one warning.
    """
    path = _file(tmp_path, 1_000_000)
    served = _serve(path)
    served.get()
    served.socket.pump(room=100_000)
    assert served.resource.isOpen()
    with capturedLogs() as events:
        served.clock.advance(SEND_TIMEOUT - 0.1)
        assert not served.socket.wasAborted()
        served.clock.advance(0.1)
    assert served.socket.wasAborted()
    assert not served.resource.isOpen()
    warnings = [e for e in events if e.get("log_namespace") == "cgiserve.response"]
    assert len(warnings) == 1
    assert "GET /f" in formatEvent(warnings[0])
    assert not served.site.inFlight


def test_headNeverReadIsCutAfterSendTimeout(tmp_path: Path) -> None:
    """
    A client that does not even read the head is held to the deadline too.
    """
    path = _file(tmp_path, 1_000_000)
    served = _serve(path)
    served.get()
    served.socket.pump(room=0)
    with capturedLogs():
        served.clock.advance(SEND_TIMEOUT)
    assert served.socket.wasAborted()
    assert not served.resource.isOpen()
    assert served.kernel.calls == []


def test_progressKeepsASlowClient(tmp_path: Path) -> None:
    """
    A client that reads a little within every deadline is never cut.
    """
    path = _file(tmp_path, 400_000)
    served = _serve(path)
    served.get()
    for _ in range(20):
        if not served.resource.isOpen():
            break
        served.clock.advance(SEND_TIMEOUT - 1)
        served.socket.pump(room=50_000)
    assert not served.socket.wasAborted()
    _, body = _split(served.socket.readAll())
    assert body == path.read_bytes()


# However it ends


def test_fileShrinkingIsCutNeverHangs(tmp_path: Path) -> None:
    """
    A file cut short while it is sent (sendfile finds its end early)
    cannot keep its Content-Length: the connection is closed gently after
    what was sent, the file released, and the failure logged once.
    """
    size = 1_000_000
    path = _file(tmp_path, size)
    served = _serve(path)
    served.get()
    served.socket.pump(room=300_000)
    os.truncate(path, 400_000)
    with capturedLogs() as events:
        served.socket.pump()
    assert not served.resource.isOpen()
    assert served.socket.disconnected
    assert not served.socket.wasAborted()
    _, body = _split(served.socket.readAll())
    assert body == path.read_bytes()
    logged = _static(list(events))
    assert len(logged) == 1
    assert "/f" in formatEvent(logged[0])
    assert not served.site.inFlight


def test_clientDisconnectReleasesTheFile(tmp_path: Path) -> None:
    """
    A client that goes away mid-file releases the descriptor at once, and
    nothing more is sent.
    """
    path = _file(tmp_path, 1_000_000)
    served = _serve(path)
    served.get()
    served.socket.pump(room=200_000)
    calls = len(served.kernel.calls)
    served.socket.lose(ConnectionDone())
    assert not served.resource.isOpen()
    assert not served.site.inFlight
    served.clock.advance(SEND_TIMEOUT * 2)
    assert len(served.kernel.calls) == calls


def test_requestLostAloneReleasesTheFile(tmp_path: Path) -> None:
    """
    The file is released when only the request hears of the loss (the
    C{notifyFinish} path), and the sender leaves the transport.
    """
    path = _file(tmp_path, 1_000_000)
    served = _serve(path)
    served.get()
    served.socket.pump(room=200_000)
    served.channel.connectionLost(Failure(ConnectionDone()))
    assert not served.resource.isOpen()
    assert served.socket.producer is None


@pytest.mark.parametrize("code", [errno.EPIPE, errno.ECONNRESET])
def test_clientResetAbortsQuietly(tmp_path: Path, code: int) -> None:
    """
    sendfile finding the client gone (reset, broken pipe) aborts the
    connection and releases the file, without a warning: that is a client
    leaving, not a fault.
    """
    path = _file(tmp_path, 1_000_000)
    served = _serve(path)
    served.kernel.errors.append(OSError(code, os.strerror(code)))
    served.get()
    with capturedLogs() as events:
        served.socket.pump()
    assert served.socket.wasAborted()
    assert not served.resource.isOpen()
    assert _static(list(events)) == []
    assert not served.site.inFlight


def test_readErrorCutsAndLogs(tmp_path: Path) -> None:
    """
    The file failing (EIO) mid-body cuts the response gently and says so.
    """
    path = _file(tmp_path, 1_000_000)
    served = _serve(path)
    served.get()
    served.socket.pump(room=200_000)
    served.kernel.errors.append(OSError(errno.EIO, "I/O error"))
    with capturedLogs() as events:
        served.socket.pump()
    assert not served.resource.isOpen()
    assert served.socket.disconnected and not served.socket.wasAborted()
    assert len(_static(list(events))) == 1


def test_unsupportedFileIsCopiedInstead(tmp_path: Path) -> None:
    """
    A file sendfile refuses (EINVAL: a file system without it) before any
    byte was sent is read and copied through the transport instead, still
    only as the client reads, and the connection lives on.
    """
    path = _file(tmp_path, 700_000)
    served = _serve(path)
    served.kernel.errors.append(OSError(errno.EINVAL, "Invalid argument"))
    served.get()
    served.socket.pump(room=0)
    served.socket.pump(room=100)
    assert served.resource.isOpen()
    received = b""
    for _ in range(10):
        if not served.resource.isOpen():
            break
        served.socket.pump(room=300_000)
        received += served.socket.readAll()
    served.socket.pump()
    received += served.socket.readAll()
    _, body = _split(received)
    assert body == path.read_bytes()
    assert served.resource.requests[0].sentLength == 700_000
    assert not served.socket.disconnecting
    assert served.socket.producer is served.channel


def test_unsupportedMidFileIsCut(tmp_path: Path) -> None:
    """
    EINVAL after part of the body went out cannot be mended by copying
    from there: the response is cut.
    """
    path = _file(tmp_path, 1_000_000)
    served = _serve(path)
    served.get()
    served.socket.pump(room=200_000)
    served.kernel.errors.append(OSError(errno.EINVAL, "Invalid argument"))
    with capturedLogs():
        served.socket.pump()
    assert not served.resource.isOpen()
    assert served.socket.disconnected


def test_shutdownCloseEndsTheResponse(tmp_path: Path) -> None:
    """
    The server closing the connection after its grace period (the
    connection's C{close}) takes the transport from the sender: the
    connection closes once what was written has left, and the file is
    released.
    """
    path = _file(tmp_path, 1_000_000)
    served = _serve(path)
    served.get()
    served.socket.pump(room=200_000)
    served.connection.close()
    served.socket.pump()
    assert served.socket.disconnected
    assert not served.resource.isOpen()
    assert not served.site.inFlight


def test_keepAliveNextRequestServed(tmp_path: Path) -> None:
    """
    The channel gets its place back: a pipelined second request is
    answered after the first file, on the same connection.
    """
    path = _file(tmp_path, 300_000)
    served = _serve(path)
    served.get()
    served.get()
    served.socket.pump()
    data = served.socket.readAll()
    assert data.count(b"HTTP/1.1 200 OK") == 2
    assert data.endswith(path.read_bytes())
    assert len(data) > 2 * 300_000
    assert served.socket.producer is served.channel
    assert not served.site.inFlight


def test_pausedByConsumerWaits(tmp_path: Path) -> None:
    """
    A consumer pausing the body holds it until it resumes.
    """
    path = _file(tmp_path, 300_000)
    served = _serve(path)
    served.get()
    sender = served.resource.senders[0]
    sender.pauseProducing()
    served.socket.pump()
    assert served.kernel.calls == []
    sender.resumeProducing()
    served.socket.pump()
    _, body = _split(served.socket.readAll())
    assert body == path.read_bytes()


# Which transports qualify


def test_zeroCopyOnlyOnPlainSockets(tmp_path: Path) -> None:
    """
    Only a socket transport that is connected and not closing qualifies: a
    string transport (as TLS's, which is no socket) does not.
    """
    path = _file(tmp_path, 10)
    served = _serve(path)
    request = Request(served.channel)
    assert zeroCopyTransport(request) is served.socket
    served.socket.disconnecting = True
    assert zeroCopyTransport(request) is None
    served.socket.disconnecting = False

    other: Any = Request(served.channel)
    other.channel = type("C", (), {"transport": StringTransport()})()
    assert zeroCopyTransport(other) is None
    del other.channel
    assert zeroCopyTransport(other) is None


# The transport's contract this module relies on


@implementer(IPullProducer)
class _Pull:
    def __init__(self) -> None:
        self.calls = 0

    def resumeProducing(self) -> None:
        self.calls += 1

    def stopProducing(self) -> None:
        pass


def test_canaryEmptyBufferResumesPullProducer() -> None:
    """
    FileDescriptor asks a pull producer for more whenever its buffer has
    been sent, and C{startWriting} on an empty buffer leads to that call
    once the socket is writable: the sender's writability signal.
    """
    socket = _Socket(MemoryReactorClock())
    socket.write(b"head")
    producer = _Pull()
    socket.registerProducer(producer, False)
    calls = producer.calls
    socket.pump()
    assert producer.calls == calls + 1
    assert socket.wire == b"head"
    socket.startWriting()
    assert socket in socket.writers()
    socket.pump(turns=1)
    assert producer.calls == calls + 2
    assert socket not in socket.writers()
