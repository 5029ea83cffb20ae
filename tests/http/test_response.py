"""
Tests for L{twisted_cgiserve._http.response} (and L{twisted_cgiserve._static.body} on
top of it): the one owner of a response body, over a real HTTP/1.1 channel
of a real L{CGIServeSite}, in simulated time.

The transport stands in for a socket the way Twisted's C{FileDescriptor}
behaves: it pauses its producer (the channel) when its buffer is full,
resumes it when the client has read, unregisters a producer without
complaint, and on a lost connection stops its producer before the protocol
hears of it.
"""

from __future__ import annotations

import os
from collections.abc import Iterator
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import pytest
from twisted.internet.address import IPv4Address
from twisted.internet.error import ConnectionDone, ConnectionLost
from twisted.internet.protocol import Factory, Protocol
from twisted.internet.ssl import CertificateOptions
from twisted.internet.testing import MemoryReactorClock, StringTransport
from twisted.logger import LogEvent, capturedLogs, formatEvent
from twisted.protocols.tls import TLSMemoryBIOFactory
from twisted.python.failure import Failure
from twisted.test import iosim
from twisted.web.resource import Resource
from twisted.web.server import NOT_DONE_YET, Request
from twisted.web.test.requesthelper import DummyRequest

from tests.support.certs import makeCertificate
from tests.support.fakes import RecordingProducer
from twisted_cgiserve._http.request import CGIServeRequest
from twisted_cgiserve._http.response import (
    DEFAULT_SEND_TIMEOUT,
    ResponseSender,
    closeTransport,
    cutResponse,
)
from twisted_cgiserve._http.site import CGIServeSite
from twisted_cgiserve._service.tls import TLSFiles, loadServerOptions
from twisted_cgiserve._static.body import sendBody

CLIENT = IPv4Address("TCP", "203.0.113.7", 50123)
SEND_TIMEOUT = 30.0


class _Transport(StringTransport):
    """
    A socket as Twisted's C{FileDescriptor} treats its producer.

    @ivar bufferSize: Unsent bytes past which the producer is paused (as
        C{FileDescriptor.bufferSize}); L{None} for a client that keeps up.
    """

    def __init__(self, bufferSize: int | None = None) -> None:
        super().__init__(peerAddress=CLIENT)
        self.bufferSize = bufferSize
        self.producerPaused = False

    def write(self, data: bytes) -> None:
        super().write(data)
        if (
            self.bufferSize is not None
            and self.producer is not None
            and not self.producerPaused
            and len(self.value()) > self.bufferSize
        ):
            self.full()

    def unregisterProducer(self) -> None:
        # FileDescriptor does not mind an unregistration too many.
        self.producer = None
        self.streaming = None

    def full(self) -> None:
        """
        The socket's buffer is full: the producer is paused.
        """
        assert self.producer is not None
        self.producerPaused = True
        self.producer.pauseProducing()

    def drain(self) -> bytes:
        """
        The client reads everything sent so far: the producer resumes.
        """
        data = self.value()
        self.clear()
        if self.producer is not None and self.producerPaused:
            self.producerPaused = False
            self.producer.resumeProducing()
        return data

    def lose(self, protocol: Any) -> None:
        """
        The connection is gone: the producer is stopped, then the protocol
        is told, in FileDescriptor's order.
        """
        if self.producer is not None:
            self.producer.stopProducing()
            self.producer = None
        protocol.connectionLost(Failure(ConnectionDone()))

    @property
    def aborted(self) -> bool:
        return bool(self.disconnected)

    @property
    def closedGently(self) -> bool:
        return bool(self.disconnecting) and not self.disconnected


class _Held(Resource):
    """
    Start a chunked response of ten bytes behind a L{ResponseSender} and
    leave the rest to the test.
    """

    isLeaf = True

    def __init__(self) -> None:
        super().__init__()
        self.request: Request | None = None
        self.sender: ResponseSender | None = None
        self.body = RecordingProducer()

    def render(self, request: Request) -> int:  # type: ignore[override]
        self.request = request
        self.sender = ResponseSender(request, self.body)
        self.sender.start()
        request.write(b"0123456789")
        return NOT_DONE_YET


@dataclass
class _Served:
    clock: MemoryReactorClock
    site: CGIServeSite
    connection: Any
    transport: _Transport
    lost: bool = field(default=False)

    def get(self, target: bytes = b"/slow?x=1", method: bytes = b"GET") -> None:
        self.connection.dataReceived(
            b"%s %s HTTP/1.1\r\nHost: example.com\r\n\r\n" % (method, target)
        )

    def lose(self) -> None:
        if not self.lost:
            self.lost = True
            self.transport.lose(self.connection)


_served: list[_Served] = []


@pytest.fixture(autouse=True)
def _disconnect() -> Iterator[None]:
    """
    End every connection a test left open, so that files and request
    bodies are released.
    """
    yield
    while _served:
        _served.pop().lose()


def _serve(
    resource: Resource,
    *,
    sendTimeout: float | None = SEND_TIMEOUT,
    bufferSize: int | None = None,
) -> _Served:
    """
    Connect a client to a site serving C{resource}; with C{sendTimeout}
    L{None}, the site's default deadline.
    """
    clock = MemoryReactorClock()
    options = {} if sendTimeout is None else {"sendTimeout": sendTimeout}
    site = CGIServeSite(resource, reactor=clock, **options)
    connection = site.buildProtocol(CLIENT)
    transport = _Transport(bufferSize)
    connection.makeConnection(transport)
    served = _Served(clock, site, connection, transport)
    _served.append(served)
    return served


def _held(**kw: Any) -> tuple[_Served, _Held, ResponseSender, Request]:
    resource = _Held()
    served = _serve(resource, **kw)
    served.get()
    assert resource.sender is not None and resource.request is not None
    return served, resource, resource.sender, resource.request


def _warnings(events: list[LogEvent]) -> list[LogEvent]:
    return [e for e in events if e.get("log_namespace") == "cgiserve.response"]


def _stallTimers(clock: MemoryReactorClock) -> list[Any]:
    return [
        call
        for call in clock.getDelayedCalls()
        if isinstance(getattr(call.func, "__self__", None), ResponseSender)
    ]


# Backpressure


def test_transportPauseReachesBody() -> None:
    """
    A full socket pauses the body's producer, through the channel and the
    sender registered with the request.
    """
    served, resource, _, _ = _held()
    served.transport.full()
    assert resource.body.calls == ["pause"]


def test_transportResumeReachesBody() -> None:
    """
    Once the client has read, the body's producer is resumed.
    """
    served, resource, _, _ = _held()
    served.transport.full()
    served.transport.drain()
    assert resource.body.calls == ["pause", "resume"]


# The send deadline


def test_stalledForSendTimeoutIsCut() -> None:
    """
    A response paused for C{sendTimeout} seconds (the client stopped
    reading) is cut: the connection is aborted, since a client that does
    not read would never take a graceful close's last bytes, the body is
    stopped once, and one warning names the client and the URL.
    """
    served, resource, sender, _ = _held()
    served.transport.full()
    with capturedLogs() as events:
        served.clock.advance(SEND_TIMEOUT - 0.01)
        assert not served.transport.disconnecting
        assert resource.body.calls == ["pause"]
        served.clock.advance(0.01)
    assert served.transport.aborted
    assert resource.body.calls == ["pause", "stop"]
    assert sender.done
    warnings = _warnings(list(events))
    assert len(warnings) == 1
    assert warnings[0]["log_level"].name == "warn"
    text = formatEvent(warnings[0])
    assert "203.0.113.7" in text
    assert "GET /slow?x=1" in text
    # The abort's connectionLost does not stop the body a second time.
    served.lose()
    assert resource.body.calls == ["pause", "stop"]
    assert not served.site.inFlight


def test_defaultSendTimeoutIsNginxs() -> None:
    """
    A site built without C{sendTimeout} cuts after nginx's C{send_timeout},
    60 seconds.
    """
    assert DEFAULT_SEND_TIMEOUT == 60.0
    served, _, _, _ = _held(sendTimeout=None)
    served.transport.full()
    served.clock.advance(59.9)
    assert not served.transport.disconnecting
    served.clock.advance(0.1)
    assert served.transport.aborted


def test_resumeBeforeDeadlineCancelsIt() -> None:
    """
    Progress before the deadline (the client read) disarms it: however
    long the response then takes, it is not cut.
    """
    served, resource, sender, _ = _held()
    served.transport.full()
    served.clock.advance(SEND_TIMEOUT - 1)
    served.transport.drain()
    assert _stallTimers(served.clock) == []
    served.clock.advance(SEND_TIMEOUT * 10)
    assert not served.transport.disconnecting
    assert "stop" not in resource.body.calls
    assert not sender.done


def test_eachStallGetsAFullDeadline() -> None:
    """
    A response that stalls again after progress has the whole deadline
    again, counted from the new stall.
    """
    served, _, _, _ = _held()
    served.transport.full()
    served.clock.advance(SEND_TIMEOUT - 1)
    served.transport.drain()
    served.transport.full()
    served.clock.advance(SEND_TIMEOUT - 1)
    assert not served.transport.disconnecting
    served.clock.advance(1)
    assert served.transport.aborted


def test_repeatedPausesDoNotPostponeTheDeadline() -> None:
    """
    A second pause without progress in between (the consumer pausing
    again) leaves the deadline where the first one set it.
    """
    served, _, sender, _ = _held()
    served.transport.full()
    served.clock.advance(SEND_TIMEOUT / 2)
    sender.pauseProducing()
    served.clock.advance(SEND_TIMEOUT / 2)
    assert served.transport.aborted


def test_sendTimeoutZeroNeverCuts() -> None:
    """
    With C{sendTimeout} 0 no deadline is armed: a client may hold a
    response back for as long as it likes.
    """
    served, resource, sender, _ = _held(sendTimeout=0)
    served.transport.full()
    assert _stallTimers(served.clock) == []
    served.clock.advance(10**6)
    assert not served.transport.disconnecting
    assert resource.body.calls == ["pause"]
    assert not sender.done


def test_deadlineFromTheChannelsSite() -> None:
    """
    A sender for a request not yet processed (whose C{site} is not set)
    takes the deadline and the clock of its channel's site.
    """
    served = _serve(_Held(), sendTimeout=7)
    request = CGIServeRequest(served.connection._channel)
    body = RecordingProducer()
    sender = ResponseSender(request, body)
    sender.pauseProducing()
    served.clock.advance(6.9)
    assert not sender.done
    with capturedLogs():
        served.clock.advance(0.1)
    assert sender.done
    assert body.calls == ["pause", "stop"]


def test_embeddedRequestGetsNginxsDeadline() -> None:
    """
    A request from a site that is not ours (our resources embedded in
    someone else's) gets nginx's deadline on the global reactor.
    """
    from twisted.internet import reactor  # noqa: PLC0415

    sender = ResponseSender(DummyRequest([b"x"]), RecordingProducer())
    sender.pauseProducing()
    try:
        [deadline] = [
            call
            for call in reactor.getDelayedCalls()
            if getattr(call.func, "__self__", None) is sender
        ]
        assert deadline.getTime() - reactor.seconds() == pytest.approx(
            DEFAULT_SEND_TIMEOUT, abs=1
        )
    finally:
        sender.stopProducing()
    assert not deadline.active()


# However the request ends


def test_clientDisconnectStopsBodyOnce() -> None:
    """
    A client that goes away stops the body: the transport stops its
    producer, then the request's C{notifyFinish} fails; the body hears of
    it once.
    """
    served, resource, sender, _ = _held()
    served.lose()
    assert resource.body.calls == ["stop"]
    assert sender.done
    assert not served.site.inFlight


def test_lostRequestStopsBody() -> None:
    """
    A request that ends without its transport stopping the producer (as an
    HTTP/2 stream's reset, or a TLS connection) still releases its body,
    through C{notifyFinish}; a later C{stopProducing} does nothing more.
    """
    _, resource, sender, request = _held()
    request.connectionLost(Failure(ConnectionLost("reset")))
    assert resource.body.calls == ["stop"]
    sender.stopProducing()
    sender.finish()
    sender.cut()
    assert resource.body.calls == ["stop"]


def test_finishUnregistersAndFinishes() -> None:
    """
    A complete body ends the response (the chunked body is terminated) and
    the sender leaves the request: a later disconnect stops nothing.
    """
    served, resource, sender, request = _held()
    with capturedLogs() as events:
        sender.finish()
    # Twisted would clean up a producer left registered, with an error.
    assert [e for e in events if "log_failure" in e] == []
    assert request.finished
    assert request.producer is None
    assert served.transport.value().endswith(b"0123456789\r\n0\r\n\r\n")
    assert not served.site.inFlight
    served.lose()
    assert resource.body.calls == []


def test_afterEndPauseAndResumeAreIgnored() -> None:
    """
    Once the response has ended, a late pause arms no deadline and a late
    resume does not restart the body.
    """
    served, resource, sender, _ = _held()
    sender.finish()
    sender.pauseProducing()
    sender.resumeProducing()
    assert _stallTimers(served.clock) == []
    assert resource.body.calls == []


def test_cutClosesTheConnection() -> None:
    """
    A cut response (the body cannot be completed) closes the HTTP/1.1
    connection once what was written has been sent (not an abort), so the
    client sees the body end short; the body, which cut itself, is not
    stopped.
    """
    served, resource, sender, request = _held()
    sender.cut()
    assert served.transport.closedGently
    assert not served.transport.value().endswith(b"0\r\n\r\n")
    assert request.producer is None
    served.lose()
    assert resource.body.calls == []


def test_detachLeavesTheRequestOpen() -> None:
    """
    A detached sender leaves the request to be answered another way: it is
    unregistered (another producer may register) but the request is
    neither finished nor its connection closed, and the body no longer
    hears of backpressure.
    """
    served, resource, sender, request = _held()
    sender.detach()
    assert request.producer is None
    assert not request.finished
    assert not served.transport.disconnecting
    served.transport.full()
    assert resource.body.calls == []
    other = RecordingProducer()
    ResponseSender(request, other).start()
    served.transport.drain()
    assert other.calls == ["resume"]


def test_cutResponseAfterConnectionLostDoesNothing() -> None:
    """
    A request whose connection is already gone has nothing left to cut.
    """
    served, _, _, request = _held()
    served.lose()
    cutResponse(request)
    cutResponse(request, abort=True)
    assert not served.transport.aborted


def test_closeTransportClosesTLSAtOnce(tmp_path: Path) -> None:
    """
    Closing a TLS connection whose channel is its producer does not wait
    for the client's close_notify (which idle clients rarely send): the
    producer is unregistered and the socket below is closed as soon as what
    was written, close_notify included, has been sent.
    """
    certs = makeCertificate(tmp_path / "tls")
    serverOptions = loadServerOptions(TLSFiles(str(certs.cert), str(certs.key)))
    serverFactory = TLSMemoryBIOFactory(
        serverOptions.options, False, Factory.forProtocol(Protocol)
    )
    clientFactory = TLSMemoryBIOFactory(
        CertificateOptions(), True, Factory.forProtocol(Protocol)
    )
    server: Any = serverFactory.buildProtocol(CLIENT)
    client: Any = clientFactory.buildProtocol(CLIENT)
    serverIO = iosim.FakeTransport(server, isServer=True)
    clientIO = iosim.FakeTransport(client, isServer=False)
    iosim.connect(server, serverIO, client, clientIO)
    assert server._handshakeDone
    server.registerProducer(RecordingProducer(), True)
    serverIO.getOutBuffer()
    closeTransport(server)
    assert server.disconnecting
    # close_notify is written, then the socket closed without waiting.
    assert serverIO.getOutBuffer()
    assert serverIO.disconnecting
    assert not serverIO.disconnected


# sendBody: files through the same owner


class _File(Resource):
    """
    Serve C{path} (or the C{pieces} of it given) with C{sendBody}, keeping
    the descriptor it opened so the test can see it closed.
    """

    isLeaf = True

    def __init__(self, path: Path, pieces: list[Any] | None = None) -> None:
        super().__init__()
        self.path = path
        self.pieces = pieces
        self.fd: int | None = None
        self.inode = 0

    def render(self, request: Request) -> int:  # type: ignore[override]
        fd = os.open(self.path, os.O_RDONLY)
        self.fd = fd
        self.inode = os.fstat(fd).st_ino
        pieces = self.pieces or [(0, os.fstat(fd).st_size)]
        length = sum(p[1] for p in pieces)
        request.setHeader(b"content-length", b"%d" % (length,))
        sendBody(request, fd, pieces)
        return NOT_DONE_YET

    def isOpen(self) -> bool:
        assert self.fd is not None
        try:
            return os.fstat(self.fd).st_ino == self.inode
        except OSError:
            return False


def _file(directory: Path, size: int) -> Path:
    path = directory / "f"
    path.write_bytes((bytes(range(251)) * (size // 251 + 1))[:size])
    return path


def _body(response: bytes) -> bytes:
    return response.split(b"\r\n\r\n", 1)[1]


def test_smallFileWrittenAtOnce(tmp_path: Path) -> None:
    """
    A small body is read and written in one call, the response finished
    and the descriptor closed before the request returns.
    """
    path = _file(tmp_path, 5000)
    resource = _File(path)
    served = _serve(resource)
    served.get(b"/f")
    assert not resource.isOpen()
    response = served.transport.value()
    assert b"Content-Length: 5000" in response
    assert _body(response) == path.read_bytes()
    assert not served.site.inFlight
    assert served.transport.producer is not None  # the connection lives on


def test_headClosesTheFile(tmp_path: Path) -> None:
    """
    A HEAD request sends no body but releases the file all the same.
    """
    resource = _File(_file(tmp_path, 500_000))
    served = _serve(resource)
    served.get(b"/f", method=b"HEAD")
    assert not resource.isOpen()
    assert served.transport.value().endswith(b"\r\n\r\n")


def test_largeFileFollowsTheClient(tmp_path: Path) -> None:
    """
    A large body goes through the producer: no more is read than the
    transport's buffer holds (plus one chunk), the file stays open while
    the client reads, and is closed when the response finishes.
    """
    size = 2 * 1024 * 1024
    path = _file(tmp_path, size)
    resource = _File(path)
    served = _serve(resource, bufferSize=64 * 1024)
    served.get(b"/f")
    assert resource.isOpen()
    received = served.transport.value()
    assert len(received) < 64 * 1024 + 256 * 1024 + 1024
    received = b""
    for _ in range(100):
        received += served.transport.drain()
        if not resource.isOpen():
            break
    received += served.transport.drain()
    assert not resource.isOpen()
    assert _body(received) == path.read_bytes()
    assert not served.site.inFlight


def test_largeFileClosedOnDisconnect(tmp_path: Path) -> None:
    """
    A client that goes away mid-body releases the file at once.
    """
    resource = _File(_file(tmp_path, 2 * 1024 * 1024))
    served = _serve(resource, bufferSize=64 * 1024)
    served.get(b"/f")
    assert resource.isOpen()
    served.lose()
    assert not resource.isOpen()


def test_largeFileClosedWhenConnectionLostAlone(tmp_path: Path) -> None:
    """
    The file is released when the request is lost even if no one stops the
    producer (the C{notifyFinish} path).
    """
    resource = _File(_file(tmp_path, 2 * 1024 * 1024))
    served = _serve(resource, bufferSize=64 * 1024)
    served.get(b"/f")
    served.connection.connectionLost(Failure(ConnectionLost()))
    served.lost = True
    assert not resource.isOpen()


def test_largeFileClosedWhenCutForSendTimeout(tmp_path: Path) -> None:
    """
    A client that stops reading mid-file is cut after the send timeout,
    and the file is closed with it.
    """
    resource = _File(_file(tmp_path, 2 * 1024 * 1024))
    served = _serve(resource, bufferSize=64 * 1024)
    with capturedLogs():
        served.get(b"/f")
        served.clock.advance(SEND_TIMEOUT)
    assert served.transport.aborted
    assert not resource.isOpen()


def test_fileShrinkingMidBodyCutsTheResponse(tmp_path: Path) -> None:
    """
    A file that shrinks while it is sent cannot keep its Content-Length:
    the response is cut (the connection closed gently, so the client sees
    a short body), the file closed, and the failure logged.
    """
    size = 2 * 1024 * 1024
    path = _file(tmp_path, size)
    resource = _File(path)
    served = _serve(resource, bufferSize=64 * 1024)
    served.get(b"/f")
    assert resource.fd is not None
    received = served.transport.value()
    # Someone else cuts the file short while the client reads.
    writer = os.open(path, os.O_WRONLY)
    try:
        os.ftruncate(writer, len(_body(received)) + 1000)
    finally:
        os.close(writer)
    with capturedLogs() as events:
        for _ in range(20):
            received += served.transport.drain()
            if not resource.isOpen():
                break
    assert not resource.isOpen()
    assert served.transport.closedGently
    assert len(_body(received)) < size
    logged = [e for e in events if e.get("log_namespace") == "cgiserve.static"]
    assert len(logged) == 1
    assert "/f" in formatEvent(logged[0])


def test_fileShrunkBeforeSmallSendCutsTheResponse(tmp_path: Path) -> None:
    """
    A small file that is shorter than its promised length when read gives
    no response at all: nothing of it is sent, the connection is closed and
    the file released.
    """
    path = _file(tmp_path, 1000)
    resource = _File(path, pieces=[(0, 2000)])
    served = _serve(resource)
    with capturedLogs() as events:
        served.get(b"/f")
    assert not resource.isOpen()
    assert served.transport.closedGently
    assert served.transport.value() == b""
    assert [e for e in events if e.get("log_namespace") == "cgiserve.static"]
