"""
Tests for L{twisted_cgiserve._http.h2}: the HTTP/2 connection over a real
L{CGIServeSite} in simulated time, driven by an C{h2} client whose bytes are
fed to the server and whose answers are read back frame by frame.

The first tests are canaries: L{twisted_cgiserve._http.h2} is the one module
that uses private parts of Twisted's HTTP/2 code (its docstring lists them),
and a Twisted release that renames or removes one of them, or stops calling
one that module overrides, must fail here, with a message that says what to
update, rather than somewhere deep in a request.
"""

from __future__ import annotations

import inspect
from collections import deque
from collections.abc import Iterator
from typing import Any

from zope.interface import implementer

import h2.config
import h2.connection
import h2.errors
import h2.settings
import priority  # type: ignore[import-untyped]
import pytest
from hyperframe.frame import (
    DataFrame,
    Frame,
    GoAwayFrame,
    HeadersFrame,
    PriorityFrame,
    RstStreamFrame,
)
from twisted.internet.address import IPv4Address
from twisted.internet.defer import Deferred
from twisted.internet.error import ConnectionDone, ConnectionLost
from twisted.internet.interfaces import IPushProducer
from twisted.internet.testing import MemoryReactorClock, StringTransport
from twisted.logger import LogEvent, capturedLogs, formatEvent
from twisted.python.failure import Failure
from twisted.web._http2 import H2Connection, H2Stream
from twisted.web.resource import Resource
from twisted.web.server import NOT_DONE_YET, Request, Site

from twisted_cgiserve._http.channel import CGIServeChannel
from twisted_cgiserve._http.h2 import (
    QUEUE_HIGH,
    QUEUE_LOW,
    CGIServeH2Connection,
    isStream,
    resetStream,
)
from twisted_cgiserve._http.request import CGIServeRequest
from twisted_cgiserve._http.response import ResponseSender
from twisted_cgiserve._http.site import CGIServeSite

CLIENT = IPv4Address("TCP", "198.51.100.9", 40000)
SEND_TIMEOUT = 30.0
CHUNK = 16 * 1024
# Five of these fill HTTP/2's default window exactly.
WINDOW_CHUNK = 65535 // 5
MAX_WINDOW = 2**31 - 1


# The client side


# Zero-delay calls due at one instant past which the clock calls it a busy
# loop (a 1 MiB response takes a few hundred).
_SPIN = 10_000


class _NotCalled:
    def active(self) -> bool:
        return False

    def cancel(self) -> None:
        pass


class _Clock(MemoryReactorClock):
    """
    A clock that notices a busy loop (Twisted's HTTP/2 send loop reschedules
    itself with C{callLater(0)}), which would make C{advance} never return:
    past L{_SPIN} zero-delay calls at one instant, further ones are dropped
    and L{spun} is set.
    """

    def __init__(self) -> None:
        super().__init__()
        self.spun = False
        self._instant = -1.0
        self._zeroDelay = 0

    def callLater(self, delay: float, f: Any, *args: Any, **kw: Any) -> Any:
        if delay == 0:
            if self.seconds() != self._instant:
                self._instant = self.seconds()
                self._zeroDelay = 0
            self._zeroDelay += 1
            if self._zeroDelay > _SPIN:
                self.spun = True
                return _NotCalled()
        return super().callLater(delay, f, *args, **kw)


class _H2Transport(StringTransport):
    """
    A TLS transport that negotiated C{h2}, as far as the site can tell, and
    that (like a socket) does not mind a producer unregistered twice.
    """

    negotiatedProtocol = b"h2"

    def __init__(self) -> None:
        super().__init__(peerAddress=CLIENT)

    def unregisterProducer(self) -> None:
        self.producer = None
        self.streaming = None


def _frames(data: bytes) -> list[Frame]:
    """
    The HTTP/2 frames in C{data}, which holds whole frames only.
    """
    frames = []
    view = memoryview(data)
    while view:
        frame, length = Frame.parse_frame_header(view[:9])
        frame.parse_body(view[9 : 9 + length])
        frames.append(frame)
        view = view[9 + length :]
    return frames


def _queued(queue: Any) -> int:
    return sum(len(chunk) for chunk in queue if isinstance(chunk, bytes))


class _Client:
    """
    An C{h2} client connected to a site serving C{resource}.
    """

    def __init__(
        self,
        resource: Resource,
        *,
        window: int | None = None,
        sendTimeout: float = SEND_TIMEOUT,
    ) -> None:
        self.clock = _Clock()
        self.site = CGIServeSite(resource, reactor=self.clock, sendTimeout=sendTimeout)
        # Set by the one test that shows the send loop spinning.
        self.spinExpected = False
        self.transport = _H2Transport()
        self.connection: Any = self.site.buildProtocol(CLIENT)
        self.connection.makeConnection(self.transport)
        self.h2 = h2.connection.H2Connection(
            h2.config.H2Configuration(client_side=True)
        )
        self.h2.initiate_connection()
        if window is not None:
            self.h2.update_settings(
                {h2.settings.SettingCodes.INITIAL_WINDOW_SIZE: window}
            )
            self.h2.increment_flow_control_window(window - 65535)
        self.send()
        self.read()
        self._nextStream = 1

    @property
    def server(self) -> CGIServeH2Connection:
        channel = self.connection._channel
        assert isinstance(channel, CGIServeH2Connection)
        return channel

    def send(self, extra: bytes = b"") -> None:
        self.connection.dataReceived(self.h2.data_to_send() + extra)

    def read(self) -> list[Frame]:
        data = self.transport.value()
        self.transport.clear()
        return _frames(data)

    def open(self, path: str, *, send: bool = True) -> int:
        """
        Send a GET for C{path} (its processing waits a reactor turn).
        """
        stream = self._nextStream
        self._nextStream += 2
        self.h2.send_headers(
            stream,
            [
                (":method", "GET"),
                (":path", path),
                (":scheme", "https"),
                (":authority", "localhost"),
            ],
            end_stream=True,
        )
        if send:
            self.send()
        return stream

    def get(self, path: str) -> int:
        """
        Send a GET for C{path} and let the server process it and send what
        it has.
        """
        stream = self.open(path)
        self.clock.advance(0)
        return stream


_clients: list[_Client] = []


@pytest.fixture(autouse=True)
def _disconnect() -> Iterator[None]:
    """
    End every connection a test made; none may have made the server spin.
    """
    yield
    spun = []
    while _clients:
        client = _clients.pop()
        if client.clock.spun and not client.spinExpected:
            spun.append(client)
        if client.connection._channel.transport is not None:
            client.connection.connectionLost(Failure(ConnectionDone()))
    if spun:
        pytest.fail("the HTTP/2 send loop spun (busy loop in the reactor)")


def _connect(resource: Resource, **kw: Any) -> _Client:
    client = _Client(resource, **kw)
    _clients.append(client)
    return client


def _ofStream(frames: list[Frame], streamID: int) -> list[Frame]:
    return [f for f in frames if f.stream_id == streamID]


def _ended(frames: list[Frame], streamID: int) -> bool:
    return any(
        isinstance(f, DataFrame | HeadersFrame) and "END_STREAM" in f.flags
        for f in _ofStream(frames, streamID)
    )


def _priorities(streams: range) -> bytes:
    data = b""
    for streamID in streams:
        frame = PriorityFrame(streamID)
        frame.depends_on = 0
        frame.stream_weight = 15
        data += frame.serialize()
    return data


def _warnings(events: list[LogEvent]) -> list[LogEvent]:
    return [
        e
        for e in events
        if e.get("log_level") is not None and e["log_level"].name == "warn"
    ]


# The server side


@implementer(IPushProducer)
class _Writer:
    """
    A body of C{total} bytes written in C{chunk}s while its consumer lets it,
    behind a L{ResponseSender}; it notes every pause and resume, and how
    much its stream had queued at each resume.
    """

    def __init__(self, request: Request, total: int, chunk: int = CHUNK) -> None:
        self.request = request
        self.total = total
        self.chunk = chunk
        self.written = 0
        self.calls: list[str] = []
        self.queuedAtResume: list[int] = []
        self.sender = ResponseSender(request, self)
        self._paused = False
        self._writing = False

    def queued(self) -> int:
        stream: Any = self.request.channel
        return _queued(stream._conn._outboundStreamQueues[stream.streamID])

    def start(self) -> None:
        self.sender.start()
        self._write()

    def _write(self) -> None:
        if self._writing:
            return
        self._writing = True
        try:
            while not self._paused and self.written < self.total:
                size = min(self.chunk, self.total - self.written)
                self.written += size
                self.request.write(b"w" * size)
        finally:
            self._writing = False
        if self.written >= self.total:
            self.sender.finish()

    def pauseProducing(self) -> None:
        self.calls.append("pause")
        self._paused = True

    def resumeProducing(self) -> None:
        self.calls.append("resume")
        self.queuedAtResume.append(self.queued())
        self._paused = False
        self._write()

    def stopProducing(self) -> None:
        self.calls.append("stop")
        self._paused = True


class _Streams(Resource):
    """
    C{/write/N}: a L{_Writer} of N KiB; C{/window}: a 1 MiB L{_Writer}
    whose chunks exactly fill HTTP/2's default window (65,535 bytes);
    C{/hold}: a response left open for the test; anything else: C{hi}.
    """

    isLeaf = True

    def __init__(self) -> None:
        super().__init__()
        self.writers: list[_Writer] = []
        self.held: list[Request] = []
        self.finished: list[object] = []

    def render(self, request: Request) -> bytes | int:  # type: ignore[override]
        request.notifyFinish().addBoth(self.finished.append)
        if request.path.startswith(b"/write/") or request.path == b"/window":
            if request.path == b"/window":
                writer = _Writer(request, 1024 * 1024, WINDOW_CHUNK)
            else:
                writer = _Writer(request, int(request.path[7:]) * 1024)
            self.writers.append(writer)
            writer.start()
            return NOT_DONE_YET
        if request.path == b"/hold":
            self.held.append(request)
            return NOT_DONE_YET
        return b"hi"


# Canaries: the private parts of Twisted this server relies on


def _missing(owner: str, name: str, why: str) -> str:
    return (
        f"Twisted no longer provides {owner}.{name}, which {why}. Adapt "
        f"twisted_cgiserve to this Twisted release before relying on it."
    )


_CONNECTION_METHODS = [
    ("_sendPrioritisedData", 1, "_h2 extends to resume drained streams"),
    ("_handlePriorityUpdate", 2, "_h2 extends to end PRIORITY floods"),
    ("_handleWindowUpdate", 2, "_h2 replaces to keep held streams paused"),
    ("_requestReceived", 2, "_h2 extends to place streams in the tree"),
    ("_requestDataReceived", 2, "_h2 extends to ignore late events"),
    ("_requestEnded", 2, "_h2 extends to ignore late events"),
    ("_requestAborted", 2, "_h2 extends to ignore late events"),
    ("_requestDone", 2, "_h2 extends to forget held streams"),
    ("writeDataToStream", 3, "_h2 extends to hold streams with full queues"),
    ("_tryToWriteControlData", 1, "_h2.abortStream calls to send RST_STREAM"),
    ("_terminate", 2, "_h2 calls to end a flooding connection"),
]


@pytest.mark.parametrize(("name", "arity", "why"), _CONNECTION_METHODS)
def test_canaryH2ConnectionMethods(name: str, arity: int, why: str) -> None:
    """
    The methods of L{H2Connection} that L{CGIServeH2Connection} overrides
    or calls exist and take what it passes.
    """
    method = getattr(H2Connection, name, None)
    if not callable(method):
        pytest.fail(_missing("H2Connection", name, why))
    parameters = list(inspect.signature(method).parameters.values())
    variadic = any(p.kind is p.VAR_POSITIONAL for p in parameters)
    positional = [p for p in parameters if p.kind is p.POSITIONAL_OR_KEYWORD]
    required = [p for p in positional if p.default is p.empty]
    assert variadic or len(required) <= arity <= len(positional), _missing(
        "H2Connection", f"{name} with {arity - 1} argument(s)", why
    )


def test_canaryH2ConnectionState() -> None:
    """
    L{H2Connection} keeps each stream's unsent data in
    C{_outboundStreamQueues} (a queue of bytes per stream id, which
    L{CGIServeH2Connection} measures), and C{_stillProducing} says whether
    the connection still runs.
    """
    resource = _Streams()
    client = _connect(resource)
    server = client.server
    if not hasattr(server, "_outboundStreamQueues"):
        pytest.fail(_missing("H2Connection", "_outboundStreamQueues", "_h2 measures"))
    if not hasattr(server, "_stillProducing"):
        pytest.fail(
            _missing("H2Connection", "_stillProducing", "_h2.ended and drain read")
        )
    assert server._stillProducing is True
    client.server.pauseProducing()
    stream = client.get("/hold")
    resource.held[0].write(b"abc")
    queue = server._outboundStreamQueues[stream]
    assert isinstance(queue, deque)
    assert b"abc" in list(queue)
    server.connectionLost(Failure(ConnectionDone()))
    assert server._stillProducing is False


def test_canaryH2StreamState() -> None:
    """
    An L{H2Stream} knows its connection as C{_conn} and its id as
    C{streamID}, which L{resetStream} uses.
    """
    resource = _Streams()
    client = _connect(resource)
    streamID = client.get("/hold")
    stream = resource.held[0].channel
    assert isinstance(stream, H2Stream)
    if getattr(stream, "_conn", None) is not client.server:
        pytest.fail(_missing("H2Stream", "_conn", "resetStream follows"))
    if getattr(stream, "streamID", None) != streamID:
        pytest.fail(_missing("H2Stream", "streamID", "resetStream names"))


_OVERRIDDEN = [
    "_requestReceived",
    "_requestDataReceived",
    "_requestEnded",
    "_requestAborted",
    "_handlePriorityUpdate",
    "_handleWindowUpdate",
    "_requestDone",
    "_sendPrioritisedData",
    "writeDataToStream",
]


def test_canaryTwistedCallsTheOverrides(monkeypatch: pytest.MonkeyPatch) -> None:
    """
    Twisted's event dispatch, send loop and streams still call, during a
    real exchange, each L{H2Connection} method that L{CGIServeH2Connection}
    overrides: were one renamed, the override would silently stop working.
    """
    called: set[str] = set()
    for name in _OVERRIDDEN:
        if name not in vars(H2Connection):
            pytest.fail(
                _missing("H2Connection", name, "CGIServeH2Connection overrides")
            )
        original = getattr(CGIServeH2Connection, name)

        def spy(self: Any, *args: Any, _name: str = name, _f: Any = original) -> Any:
            called.add(_name)
            return _f(self, *args)

        monkeypatch.setattr(CGIServeH2Connection, name, spy)
    resource = _Streams()
    client = _connect(resource)
    # A request with a body (received, data, ended), answered (write, send
    # loop, done).
    client.h2.send_headers(
        1,
        [
            (":method", "POST"),
            (":path", "/"),
            (":scheme", "https"),
            (":authority", "localhost"),
        ],
    )
    client.h2.send_data(1, b"abc", end_stream=True)
    client._nextStream = 3
    client.send()
    client.clock.advance(0)
    # A priority, a window update and a reset for a held stream.
    stream = client.get("/hold")
    client.h2.prioritize(stream, weight=200)
    client.h2.increment_flow_control_window(1000, stream_id=stream)
    client.h2.reset_stream(stream)
    client.send()
    client.clock.advance(0)
    assert resource.finished
    missing = [name for name in _OVERRIDDEN if name not in called]
    assert missing == [], _missing(
        "H2Connection", f"calls to {missing}", "CGIServeH2Connection overrides"
    )


def test_canaryH2ConnectionInternals() -> None:
    """
    The undocumented state of L{H2Connection} that L{CGIServeH2Connection}
    reads: h2's state machine as C{conn}, the priority tree as
    C{priority}, the open streams by id as C{streams}, and the send loop,
    when it has nothing to send, waiting on the L{Deferred} in
    C{_sendingDeferred} (which L{CGIServeH2Connection._wakeSender} fires).
    """
    resource = _Streams()
    client = _connect(resource)
    server = client.server
    assert isinstance(server.conn, h2.connection.H2Connection), _missing(
        "H2Connection", "conn", "_h2 reads"
    )
    assert isinstance(server.priority, priority.PriorityTree), _missing(
        "H2Connection", "priority", "_h2 blocks and unblocks streams in"
    )
    client.clock.advance(0)
    assert not server.sending
    assert isinstance(server._sendingDeferred, Deferred), _missing(
        "H2Connection", "_sendingDeferred", "_h2 fires to wake the send loop"
    )
    streamID = client.get("/hold")
    assert isinstance(server.streams[streamID], H2Stream), _missing(
        "H2Connection", "streams", "_h2 and the site read"
    )
    assert server.sending
    assert server.conn.highest_inbound_stream_id == streamID


@pytest.mark.parametrize(
    "name", ["flowControlBlocked", "windowUpdated", "abortConnection"]
)
def test_canaryH2StreamMethods(name: str) -> None:
    """
    The L{H2Stream} methods L{CGIServeH2Connection} calls to pause and
    resume a stream's producer, and L{resetStream} to reset a stream of
    Twisted's own connection, take no argument.
    """
    method = getattr(H2Stream, name, None)
    if not callable(method):
        pytest.fail(_missing("H2Stream", name, "_h2 calls"))
    parameters = list(inspect.signature(method).parameters.values())
    assert [p.name for p in parameters if p.default is p.empty] == ["self"]


def test_canaryPriorityTreeLimit() -> None:
    """
    The priority library refuses a tree of more than 1,000 streams with
    C{TooManyStreamsError}, the exception L{CGIServeH2Connection} catches
    (an C{except} clause naming a vanished class fails only when reached).
    """
    tree = priority.PriorityTree()
    with pytest.raises(priority.TooManyStreamsError):
        for streamID in range(1, 2004, 2):
            tree.insert_stream(streamID)


def test_switchBuildsOurConnection() -> None:
    """
    A connection whose TLS negotiated C{h2} becomes a L{CGIServeH2Connection}
    with the site's settings, registered as its transport's producer.
    """
    client = _connect(_Streams())
    server = client.server
    assert client.transport.producer is server
    assert server.site is client.site
    assert server.requestFactory is CGIServeRequest
    assert server._reactor is client.clock
    assert not server.answered
    client.get("/")
    assert server.answered


def test_isStream() -> None:
    """
    Only an HTTP/2 stream is a stream.
    """
    resource = _Streams()
    client = _connect(resource)
    client.get("/hold")
    assert isStream(resource.held[0].channel)
    assert not isStream(CGIServeChannel())
    assert not isStream(None)


# Backpressure: the send queue


def test_fullSendQueuePausesStream() -> None:
    """
    A client that opened a 2**31-1 window and does not read (the server's
    transport is paused) does not get the whole body queued in memory: the
    stream's producer is paused once its queue holds L{QUEUE_HIGH} bytes,
    and stays paused however long the client takes.
    """
    resource = _Streams()
    client = _connect(resource, window=MAX_WINDOW)
    client.server.pauseProducing()
    client.get("/write/1024")
    writer = resource.writers[0]
    assert writer.calls == ["pause"]
    assert QUEUE_HIGH <= writer.queued() < QUEUE_HIGH + CHUNK
    for _ in range(5):
        client.clock.advance(1)
    assert writer.calls == ["pause"]
    assert writer.written < QUEUE_HIGH + CHUNK


def test_drainedSendQueueResumesStream() -> None:
    """
    Once the client reads (the transport resumes), the send loop drains the
    queue and the producer is resumed each time it has fallen below
    L{QUEUE_LOW}, until the whole body has been sent.
    """
    resource = _Streams()
    client = _connect(resource, window=MAX_WINDOW)
    client.server.pauseProducing()
    stream = client.get("/write/1024")
    writer = resource.writers[0]
    client.server.resumeProducing()
    for _ in range(10):
        client.clock.advance(0)
    assert writer.written == 1024 * 1024
    assert writer.sender.done
    assert writer.calls.count("resume") >= 1024 * 1024 // QUEUE_HIGH - 1
    assert writer.queuedAtResume
    assert max(writer.queuedAtResume) < QUEUE_LOW
    frames = client.read()
    data = [f for f in _ofStream(frames, stream) if isinstance(f, DataFrame)]
    assert sum(len(f.data) for f in data) == 1024 * 1024
    assert _ended(frames, stream)
    assert stream not in client.server._held


def test_flowControlWindowStillPausesStream() -> None:
    """
    A stream whose flow-control window is exhausted (HTTP/2's default
    65,535 bytes, never opened) is paused as before, with nothing more
    queued; a WINDOW_UPDATE that opens room resumes it.
    """
    resource = _Streams()
    client = _connect(resource)
    stream = client.get("/window")
    writer = resource.writers[0]
    assert writer.calls == ["pause"]
    assert writer.written == 65535
    client.clock.advance(1)
    assert writer.queued() == 0
    client.h2.increment_flow_control_window(65535)
    client.h2.increment_flow_control_window(65535, stream_id=stream)
    client.send()
    assert writer.calls[:2] == ["pause", "resume"]
    assert writer.written > 65535


def test_windowBlockedStreamDoesNotSpin() -> None:
    """
    A stream that has data queued beyond its window waits for a
    WINDOW_UPDATE without keeping the reactor busy.
    """
    resource = _Streams()
    client = _connect(resource)
    client.spinExpected = True
    client.get("/write/1024")
    writer = resource.writers[0]
    assert writer.calls[-1] == "pause"
    assert writer.queued() > 0
    assert not client.clock.spun


def test_windowUpdateWithoutSendingIsNoProgress() -> None:
    """
    A client that does not read but sends WINDOW_UPDATEs gains nothing: the
    stream stays paused with its queue bounded, and it is cut at its send
    deadline.
    """
    resource = _Streams()
    client = _connect(resource, window=2**30)
    client.server.pauseProducing()
    stream = client.get("/write/65536")
    writer = resource.writers[0]
    for _ in range(int(SEND_TIMEOUT) // 5 * 2):
        client.clock.advance(5)
        if writer.sender.done:
            break
        client.h2.increment_flow_control_window(1, stream_id=stream)
        client.send()
        assert writer.queued() < QUEUE_HIGH + CHUNK
    assert writer.sender.done


# PRIORITY floods


def test_priorityFloodEndsWithGoaway() -> None:
    """
    PRIORITY frames for 1,500 streams (more than the priority tree holds)
    end the connection with GOAWAY C{ENHANCE_YOUR_CALM} and a warning that
    names the client, instead of an unhandled exception; nothing more is
    read, and a client that does not close is cut off two seconds later.
    """
    client = _connect(_Streams())
    with capturedLogs() as events:
        client.connection.dataReceived(_priorities(range(1, 3001, 2)))
    goaways = [f for f in client.read() if isinstance(f, GoAwayFrame)]
    assert goaways
    assert {f.error_code for f in goaways} == {h2.errors.ErrorCodes.ENHANCE_YOUR_CALM}
    assert client.server.ended
    assert client.transport.disconnecting
    warnings = _warnings(list(events))
    assert warnings
    assert "198.51.100.9" in formatEvent(warnings[0])
    client.connection.dataReceived(client.h2.data_to_send() + b"\0" * 100)
    assert client.transport.value() == b""
    assert not client.transport.disconnected
    client.clock.advance(2)
    assert client.transport.disconnected


def test_priorityFloodIsAnsweredOnce() -> None:
    """
    A flood gets one GOAWAY and one warning, however many frames it has.
    """
    client = _connect(_Streams())
    with capturedLogs() as events:
        client.connection.dataReceived(_priorities(range(1, 3001, 2)))
    goaways = [f for f in client.read() if isinstance(f, GoAwayFrame)]
    assert len(goaways) == 1
    assert len(_warnings(list(events))) == 1


def test_priorityFloodThenRequestEndsWithGoaway() -> None:
    """
    A request that arrives when PRIORITY frames have filled the tree ends
    the connection the same way as the flood itself.
    """
    # Not ended by the fixture: Twisted cannot tear down the half-made
    # stream.
    client = _Client(_Streams())
    client.open("/", send=False)
    client.connection.dataReceived(
        _priorities(range(3, 2003, 2)) + client.h2.data_to_send()
    )
    goaways = [f for f in client.read() if isinstance(f, GoAwayFrame)]
    assert [f.error_code for f in goaways] == [h2.errors.ErrorCodes.ENHANCE_YOUR_CALM]


# Cutting one stream


def test_abortStreamResetsOnlyThatStream() -> None:
    """
    C{abortStream} sends RST_STREAM (C{INTERNAL_ERROR}) for that stream
    alone and tells its request the connection was lost (its
    C{notifyFinish} fails); the connection and the other stream carry on.
    """
    resource = _Streams()
    client = _connect(resource)
    first = client.get("/hold")
    second = client.get("/hold")
    client.read()
    assert client.server.abortStream(first) is True
    frames = client.read()
    resets = [f for f in frames if isinstance(f, RstStreamFrame)]
    assert [(f.stream_id, f.error_code) for f in resets] == [
        (first, h2.errors.ErrorCodes.INTERNAL_ERROR)
    ]
    assert len(resource.finished) == 1
    assert isinstance(resource.finished[0], Failure)
    assert resource.finished[0].check(ConnectionLost)
    assert resource.held[0] not in client.site.inFlight
    assert not client.transport.disconnecting
    # Once only.
    assert client.server.abortStream(first) is False
    assert client.read() == []
    held = resource.held[1]
    held.write(b"second")
    held.finish()
    client.clock.advance(0)
    frames = client.read()
    assert _ended(frames, second)
    assert not [f for f in frames if isinstance(f, RstStreamFrame)]


def test_abortStreamAlreadyEndedOnTheWire() -> None:
    """
    A stream the HTTP/2 state machine has already closed is not reset a
    second time, but its request still learns that it ended.
    """
    resource = _Streams()
    client = _connect(resource)
    stream = client.get("/hold")
    client.read()
    client.server.conn.reset_stream(stream, error_code=h2.errors.ErrorCodes.CANCEL)
    assert client.server.abortStream(stream) is True
    resets = [f for f in client.read() if isinstance(f, RstStreamFrame)]
    assert [f.error_code for f in resets] == [h2.errors.ErrorCodes.CANCEL]
    assert resource.finished and isinstance(resource.finished[0], Failure)
    assert stream not in client.server.streams


def test_cutResponseResetsTheStream() -> None:
    """
    A response cut on HTTP/2 (a script that died mid-body, a file that
    shrank) resets its stream; the connection stays open and answers the
    next request.
    """
    resource = _Streams()
    client = _connect(resource)
    stream = client.get("/window")
    client.read()
    writer = resource.writers[0]
    writer.sender.cut()
    frames = client.read()
    assert [f.stream_id for f in frames if isinstance(f, RstStreamFrame)] == [stream]
    assert "stop" not in writer.calls
    assert not client.transport.disconnecting
    # The client gives back the connection's window the cut stream used.
    client.h2.increment_flow_control_window(65535)
    client.send()
    after = client.get("/")
    assert _ended(client.read(), after)


def test_sendTimeoutResetsStalledStreamDespitePings() -> None:
    """
    A stream held back by its window for C{sendTimeout} is reset, the
    body stopped and the stall logged; PINGs meanwhile are no progress. The
    connection and its other streams carry on.
    """
    resource = _Streams()
    client = _connect(resource)
    stream = client.get("/window")
    client.read()
    writer = resource.writers[0]
    with capturedLogs() as events:
        for second in range(int(SEND_TIMEOUT) - 1):
            client.h2.ping(b"%08d" % (second,))
            client.send()
            client.clock.advance(1)
        assert not writer.sender.done
        client.clock.advance(1)
    frames = client.read()
    assert [f.stream_id for f in frames if isinstance(f, RstStreamFrame)] == [stream]
    assert writer.calls.count("stop") == 1
    stalls = [e for e in events if e.get("log_namespace") == "cgiserve.response"]
    assert len(stalls) == 1
    assert "GET /window" in formatEvent(stalls[0])
    assert not client.transport.disconnecting
    # The client gives back the connection's window the cut stream used.
    client.h2.increment_flow_control_window(65535)
    client.send()
    after = client.get("/")
    assert _ended(client.read(), after)


def test_resetStreamOnTwistedsOwnConnection() -> None:
    """
    Our resources embedded in a site of Twisted's own (whose HTTP/2
    connection is Twisted's) cut a stream with Twisted's reset, and the
    request still learns it ended.
    """
    clock = MemoryReactorClock()
    resource = _Streams()
    site = Site(resource, reactor=clock)
    connection = H2Connection(clock)
    connection.site = site
    connection.requestFactory = Request
    transport = StringTransport()
    connection.makeConnection(transport)
    client = h2.connection.H2Connection(h2.config.H2Configuration(client_side=True))
    client.initiate_connection()
    client.send_headers(
        1,
        [
            (":method", "GET"),
            (":path", "/hold"),
            (":scheme", "https"),
            (":authority", "localhost"),
        ],
        end_stream=True,
    )
    connection.dataReceived(client.data_to_send())
    clock.advance(0)
    transport.clear()
    request = resource.held[0]
    resetStream(request.channel)
    resets = [f for f in _frames(transport.value()) if isinstance(f, RstStreamFrame)]
    assert [f.stream_id for f in resets] == [1]
    assert resource.finished and isinstance(resource.finished[0], Failure)
    connection.connectionLost(Failure(ConnectionDone()))


# Ending the connection


def test_drainSendsNoticeWithHighestStreamID() -> None:
    """
    C{drain} tells the client the connection is going away with a GOAWAY
    naming the highest possible stream (so nothing the client sent is
    refused), once; a stream the client opened before it saw the notice is
    still answered.
    """
    client = _connect(_Streams())
    first = client.get("/")
    client.read()
    client.clock.advance(3)
    client.server.drain(client.clock.seconds())
    frames = client.read()
    assert [(type(f), f.last_stream_id, f.error_code) for f in frames] == [
        (GoAwayFrame, MAX_WINDOW, h2.errors.ErrorCodes.NO_ERROR)
    ]
    assert client.server.drainingSince == 3
    late = client.get("/")
    assert late > first
    assert _ended(client.read(), late)
    client.server.drain(client.clock.seconds() + 1)
    assert client.read() == []
    assert client.server.drainingSince == 3


def test_drainAfterConnectionEndedIsSilent() -> None:
    """
    A connection that has already ended sends no notice.
    """
    client = _connect(_Streams())
    client.server.connectionLost(Failure(ConnectionDone()))
    client.server.drain(0)
    assert client.read() == []
    assert client.server.drainingSince is None


def test_goAwayNamesTheLastStream() -> None:
    """
    The final GOAWAY names the last stream the server received, so the
    client knows which requests it may retry.
    """
    client = _connect(_Streams())
    client.get("/")
    last = client.get("/")
    client.read()
    client.server.goAway()
    goaways = [f for f in client.read() if isinstance(f, GoAwayFrame)]
    assert [(f.last_stream_id, f.error_code) for f in goaways] == [
        (last, h2.errors.ErrorCodes.NO_ERROR)
    ]


def test_goAwayAfterConnectionEndedIsSilent() -> None:
    """
    A connection that has ended writes no GOAWAY of its own.
    """
    client = _connect(_Streams())
    client.server.connectionLost(Failure(ConnectionDone()))
    client.server.goAway()
    assert client.read() == []
