"""
Tests for L{twisted_cgiserve._cgi.protocol}: one script run, driven by a
fake process transport and a fake request, in simulated time.
"""

from __future__ import annotations

from io import BytesIO
from types import SimpleNamespace
from typing import Any

import pytest
from twisted.internet import error
from twisted.internet.defer import Deferred
from twisted.internet.task import Clock
from twisted.logger import globalLogPublisher
from twisted.python.failure import Failure
from twisted.web.test.requesthelper import DummyChannel, DummyRequest

from twisted_cgiserve._cgi import output as _output
from twisted_cgiserve._cgi.inspector import ScriptContext
from twisted_cgiserve._cgi.protocol import KILL_GRACE, RunState, ScriptRun
from twisted_cgiserve._http import response as _response
from twisted_cgiserve._http.bodystream import BodyStream

# --------------------------------------------------------------------------
# Fakes


class FakeScript:
    """
    The transport side of L{ScriptRun} (an L{IScriptTransport}): records
    what the protocol asks of it.
    """

    pid = 4242

    def __init__(self) -> None:
        self.terminated: list[float] = []
        self.closed: list[int] = []
        self.written: list[bytes] = []
        self.paused = 0
        self.resumed = 0
        self.producer: Any = None
        self.done: Deferred[bool] = Deferred()
        # What the standard error pipe still holds, unread by the reactor.
        self.pendingStderr = b""
        self.protocol: Any = None

    def readPendingStderr(self) -> None:
        if self.pendingStderr:
            data, self.pendingStderr = self.pendingStderr, b""
            self.protocol.childDataReceived(2, data)

    def terminate(self, grace: float) -> Deferred[bool]:
        self.terminated.append(grace)
        return self.done

    def closeStdin(self) -> None:
        self.closed.append(0)

    def write(self, data: bytes) -> None:
        self.written.append(data)

    def registerProducer(self, producer: Any, streaming: bool) -> None:
        self.producer = producer

    def unregisterProducer(self) -> None:
        self.producer = None

    def pauseProducing(self) -> None:
        self.paused += 1

    def resumeProducing(self) -> None:
        self.resumed += 1


class Request(DummyRequest):
    """
    Enough of a request for L{ScriptRun}: a body (or none), a push producer,
    an HTTP/1.x connection.
    """

    startedWriting = False
    code = 200
    content: Any = None
    producer: object = None

    def __init__(self, *args: Any, **kw: Any) -> None:
        super().__init__(*args, **kw)
        self.channel = DummyChannel()

    def registerProducer(self, producer: object, streaming: bool) -> None:
        self.producer = producer

    def unregisterProducer(self) -> None:
        self.producer = None

    def write(self, data: bytes) -> None:
        self.startedWriting = True
        super().write(data)


def logged(events: list[dict[str, Any]], text: str) -> list[dict[str, Any]]:
    return [e for e in events if text in e.get("log_format", "")]


@pytest.fixture
def events() -> Any:
    collected: list[dict[str, Any]] = []
    globalLogPublisher.addObserver(collected.append)
    yield collected
    globalLogPublisher.removeObserver(collected.append)


def makeRun(
    monkeypatch: pytest.MonkeyPatch,
    *,
    nph: bool = False,
    timeout: float = 2.0,
    content: bytes | None = None,
    method: bytes = b"GET",
    debug: ScriptContext | None = None,
    stream: BodyStream | None = None,
    transport: FakeScript | None = None,
) -> SimpleNamespace:
    cut: list[object] = []

    def cutResponse(request: object, *, abort: bool = False) -> None:
        cut.append(request)

    monkeypatch.setattr(_output, "cutResponse", cutResponse)
    monkeypatch.setattr(_response, "cutResponse", cutResponse)
    clock = Clock()
    request = Request([b""])
    request.method = method
    if content is not None:
        request.content = BytesIO(content)
    if stream is not None:
        request.content = stream
    redirects: list[tuple[object, bytes]] = []
    script = ScriptRun(
        request,
        "/cgi-bin/s",
        lambda req, location: redirects.append((req, location)),
        clock,
        nph=nph,
        timeout=timeout,
        debug=debug,
    )
    transport = transport or FakeScript()
    transport.protocol = script
    script.makeConnection(transport)
    return SimpleNamespace(
        clock=clock,
        request=request,
        script=script,
        transport=transport,
        cut=cut,
        redirects=redirects,
    )


@pytest.fixture
def run(monkeypatch: pytest.MonkeyPatch) -> SimpleNamespace:
    return makeRun(monkeypatch)


def exited(run: SimpleNamespace, reason: BaseException) -> None:
    run.script.processExited(Failure(reason))


def ended(run: SimpleNamespace, reason: BaseException | None = None) -> None:
    """
    The transport's last word: the group is gone and its pipes are closed.
    """
    run.script.processEnded(Failure(reason or error.ProcessDone(0)))


# --------------------------------------------------------------------------
# Ending the response and the script


def test_responseEndsAtEndOfOutput(run: SimpleNamespace) -> None:
    """
    A response without Content-Length ends when the script closes its
    output, though the script has not exited; the script is ended
    --cgi-timeout later if it is still there.
    """
    run.script.childDataReceived(1, b"Content-Type: text/plain\n\nbody\n")
    run.script.childConnectionLost(1)
    assert run.request.finished == 1
    assert b"".join(run.request.written) == b"body\n"
    run.clock.advance(1.9)
    assert run.transport.terminated == []
    run.clock.advance(0.1)
    assert run.transport.terminated == [KILL_GRACE]
    assert run.request.finished == 1
    assert run.cut == []


def test_lingerCountsFromTheEndOfTheResponse(run: SimpleNamespace) -> None:
    """
    A complete Content-Length ends the response at once; what lingers is
    ended --cgi-timeout after that, not after the last output, and not at
    all if the group ends first.
    """
    run.clock.advance(1.5)
    run.script.childDataReceived(1, b"Content-Type: a/b\nContent-Length: 2\n\nok")
    assert run.request.finished == 1
    run.clock.advance(1.9)
    assert run.transport.terminated == []
    run.script.processExited(Failure(error.ProcessDone(0)))
    run.script.processEnded(Failure(error.ProcessDone(0)))
    run.clock.advance(10)
    assert run.transport.terminated == []
    assert run.script.ended.called


def test_shortContentLengthStillCut(run: SimpleNamespace) -> None:
    """
    Output that ends before its Content-Length is a cut response, and the
    script's group is ended at once.
    """
    run.script.childDataReceived(1, b"Content-Type: a/b\nContent-Length: 10\n\nabc")
    run.script.childConnectionLost(1)
    assert run.cut == [run.request]
    assert run.transport.terminated == [KILL_GRACE]


def test_incompleteHeadWaitsForTheExit(run: SimpleNamespace) -> None:
    """
    Output that ends inside the head is judged when the script exits: 502,
    and the group is ended.
    """
    run.script.childDataReceived(1, b"Status: 200")
    run.script.childConnectionLost(1)
    assert run.request.finished == 0
    run.script.processExited(Failure(error.ProcessDone(0)))
    assert run.request.responseCode == 502
    assert run.transport.terminated == [KILL_GRACE]


def test_shutdownBeforeTheHeadIs503(run: SimpleNamespace) -> None:
    """
    A script ended by the shutdown before its head: 503, once it has exited.
    """
    run.script.stop()
    assert run.transport.terminated == [KILL_GRACE]
    run.script.childConnectionLost(1)
    assert run.request.finished == 0
    run.script.processExited(Failure(error.ProcessTerminated(signal=15)))
    assert run.request.responseCode == 503


def test_killLogged(run: SimpleNamespace) -> None:
    """
    A group that needed SIGKILL is logged once, with the script and pid.
    """
    events: list[dict[str, Any]] = []
    globalLogPublisher.addObserver(events.append)
    try:
        run.script.stop()
        run.transport.done.callback(True)
    finally:
        globalLogPublisher.removeObserver(events.append)
    killed = [e for e in events if "did not end" in e.get("log_format", "")]
    assert len(killed) == 1
    assert killed[0]["pid"] == 4242
    assert killed[0]["script"] == "/cgi-bin/s"


def test_stateFollowsTheRun(run: SimpleNamespace) -> None:
    """
    The run's one state: running while the script answers, lingering once
    its response is complete, ended once its group is gone.
    """
    assert run.script.state is RunState.RUNNING
    run.script.childDataReceived(1, b"Content-Type: a/b\n\n")
    assert run.script.state is RunState.RUNNING
    run.script.childConnectionLost(1)
    assert run.script.state is RunState.LINGERING
    exited(run, error.ProcessDone(0))
    ended(run)
    assert run.script.state is RunState.ENDED
    assert run.transport.terminated == []
    assert not run.clock.getDelayedCalls()


def test_lingeringScriptEndedOnce(run: SimpleNamespace, events: Any) -> None:
    """
    A script still there --cgi-timeout after its response is ended once,
    and the shutdown does not end it again.
    """
    run.script.childDataReceived(1, b"Content-Type: a/b\n\nx")
    run.script.childConnectionLost(1)
    run.clock.advance(2.0)
    assert run.transport.terminated == [KILL_GRACE]
    assert run.script.state is RunState.ENDING
    assert len(logged(events, "still running")) == 1
    run.script.stop()
    assert run.transport.terminated == [KILL_GRACE]
    assert not run.clock.getDelayedCalls()


def test_stopWhileLingering(run: SimpleNamespace) -> None:
    """
    The shutdown ends a lingering script at once, leaving its complete
    response alone.
    """
    run.script.childDataReceived(1, b"Content-Type: a/b\nContent-Length: 1\n\nx")
    assert run.script.state is RunState.LINGERING
    run.script.stop()
    assert run.transport.terminated == [KILL_GRACE]
    assert run.request.finished == 1
    assert run.cut == []
    assert not run.clock.getDelayedCalls()


# --------------------------------------------------------------------------
# The inactivity timeout


def test_silentScriptGets504(run: SimpleNamespace, events: Any) -> None:
    """
    A script silent for the timeout before its head: 504, and its group is
    ended.
    """
    run.clock.advance(1.9)
    assert run.transport.terminated == []
    run.clock.advance(0.1)
    assert run.request.responseCode == 504
    assert run.request.finished == 1
    assert run.transport.terminated == [KILL_GRACE]
    assert run.script.state is RunState.ENDING
    assert len(logged(events, "timed out")) == 1
    assert not run.clock.getDelayedCalls()


def test_outputRestartsTheTimeout(run: SimpleNamespace) -> None:
    """
    Each output restarts the full timeout; silence after the body began
    cuts the response.
    """
    run.clock.advance(1.5)
    run.script.childDataReceived(1, b"Content-Type: a/b\n\n")
    run.clock.advance(1.5)
    run.script.childDataReceived(1, b"body")
    run.clock.advance(1.9)
    assert run.transport.terminated == []
    run.clock.advance(0.1)
    assert run.transport.terminated == [KILL_GRACE]
    assert run.cut == [run.request]
    assert run.request.responseCode == 200


def test_stderrIsActivityToo(run: SimpleNamespace) -> None:
    """
    Standard error does not count as an answer, so it does not hold the
    timeout off.
    """
    run.clock.advance(1.5)
    run.script.childDataReceived(2, b"working\n")
    run.clock.advance(0.5)
    assert run.transport.terminated == [KILL_GRACE]


def test_slowClientIsNoTimeout(run: SimpleNamespace) -> None:
    """
    While the client is too slow to take more, the script waiting on a full
    pipe is not idle; once the client catches up it gets the full timeout
    again.
    """
    run.script.childDataReceived(1, b"Content-Type: a/b\n\nbody")
    producer = run.request.producer
    producer.pauseProducing()
    assert run.transport.paused == 1
    run.clock.advance(50)
    assert run.transport.terminated == []
    producer.resumeProducing()
    assert run.transport.resumed == 1
    run.clock.advance(1.9)
    assert run.transport.terminated == []
    run.clock.advance(0.1)
    assert run.transport.terminated == [KILL_GRACE]


def test_noTimeout(monkeypatch: pytest.MonkeyPatch) -> None:
    """
    Without --cgi-timeout there is no timer at all, before or after the
    response.
    """
    run = makeRun(monkeypatch, timeout=0)
    assert not run.clock.getDelayedCalls()
    run.script.childDataReceived(1, b"Content-Type: a/b\n\nx")
    run.script.childConnectionLost(1)
    assert run.request.finished == 1
    assert run.script.state is RunState.LINGERING
    assert not run.clock.getDelayedCalls()


# --------------------------------------------------------------------------
# The request body


def test_bodyFedToStdinAsActivity(monkeypatch: pytest.MonkeyPatch) -> None:
    """
    The request body goes to the script's standard input, which is closed
    after it; each chunk the script takes restarts the timeout.
    """
    run = makeRun(monkeypatch, content=b"x" * (64 * 1024 + 1))
    producer = run.transport.producer
    assert producer is not None
    run.clock.advance(1.5)
    producer.resumeProducing()
    run.clock.advance(1.5)
    producer.resumeProducing()
    producer.resumeProducing()
    assert b"".join(run.transport.written) == b"x" * (64 * 1024 + 1)
    assert run.transport.closed == [0]
    assert run.transport.producer is None
    run.clock.advance(1.9)
    assert run.transport.terminated == []


def test_headRequestHasNoBody(monkeypatch: pytest.MonkeyPatch) -> None:
    """
    A HEAD request's body is never fed: standard input is closed at once.
    """
    run = makeRun(monkeypatch, content=b"ignored", method=b"HEAD")
    assert run.transport.closed == [0]
    assert run.transport.producer is None


def test_emptyBodyClosesStdinAtOnce(monkeypatch: pytest.MonkeyPatch) -> None:
    """
    An empty body (most requests) closes standard input at once, with no
    sender set up for nothing.
    """
    run = makeRun(monkeypatch, content=b"")
    assert run.transport.closed == [0]
    assert run.transport.producer is None
    assert run.script._sender is None


def test_clientGoneStopsTheBodyAndTheScript(monkeypatch: pytest.MonkeyPatch) -> None:
    """
    A client that goes away stops the body feed and ends the script; later
    output is dropped.
    """
    run = makeRun(monkeypatch, content=b"x" * 10)
    run.request.processingFailed(Failure(ConnectionError("gone")))
    assert run.transport.terminated == [KILL_GRACE]
    assert run.script.state is RunState.ENDING
    run.script.childDataReceived(1, b"Content-Type: a/b\n\nx")
    run.script.childConnectionLost(1)
    assert run.request.written == []
    assert run.request.finished == 0
    run.script.stopProducing()
    assert run.transport.terminated == [KILL_GRACE]
    assert not run.clock.getDelayedCalls()


class _Connection:
    """
    The client's connection a streamed body arrives on.
    """

    reading = True

    def pauseBody(self) -> None:
        self.reading = False

    def resumeBody(self) -> None:
        self.reading = True


def test_streamedBodyToStdin(monkeypatch: pytest.MonkeyPatch) -> None:
    """
    A body streamed as it arrives goes to standard input as it comes, with
    the script's pipe as its consumer; each chunk restarts the timeout; the
    pipe is closed at the end of the body.
    """
    connection = _Connection()
    stream = BodyStream(6, connection)
    stream.feed(b"abc")
    run = makeRun(monkeypatch, stream=stream)
    assert run.transport.producer is stream
    assert run.transport.written == [b"abc"]
    assert connection.reading
    run.clock.advance(1.5)
    stream.feed(b"def")
    run.clock.advance(1.5)
    assert run.transport.terminated == []
    assert run.transport.written == [b"abc", b"def"]
    assert run.transport.closed == [0]
    assert run.transport.producer is None


def test_streamedBodyBackpressure(monkeypatch: pytest.MonkeyPatch) -> None:
    """
    The script's full pipe pauses the client's connection until it reads.
    """
    connection = _Connection()
    stream = BodyStream(100, connection)
    run = makeRun(monkeypatch, stream=stream)
    run.transport.producer.pauseProducing()
    stream.feed(b"x" * 10)
    assert not connection.reading
    assert run.transport.written == []
    run.transport.producer.resumeProducing()
    assert run.transport.written == [b"x" * 10]
    assert connection.reading


def test_streamedBodyClientGone(monkeypatch: pytest.MonkeyPatch) -> None:
    """
    A client gone in the middle of its body: the body is given up (the
    pipe closed) and the script ended.
    """
    stream = BodyStream(100, _Connection())
    run = makeRun(monkeypatch, stream=stream)
    stream.feed(b"x" * 10)
    run.request.processingFailed(Failure(ConnectionError("gone")))
    assert stream.discarding
    assert run.transport.closed == [0]
    assert run.transport.terminated == [KILL_GRACE]


def test_streamedBodyOfAHeadRequest(monkeypatch: pytest.MonkeyPatch) -> None:
    """
    A HEAD request's streamed body is not fed either.
    """
    stream = BodyStream(100, _Connection())
    run = makeRun(monkeypatch, stream=stream, method=b"HEAD")
    assert run.transport.closed == [0]
    assert run.transport.producer is None


# --------------------------------------------------------------------------
# How the output ends


def test_localRedirect(run: SimpleNamespace) -> None:
    """
    A local redirect hands the request over and ends the script; nothing
    more it writes is sent.
    """
    run.script.childDataReceived(1, b"Location: /other\n\nignored")
    assert run.redirects == [(run.request, b"/other")]
    assert run.transport.terminated == [KILL_GRACE]
    run.script.childDataReceived(1, b"more")
    assert run.request.written == []


def test_badHeadIs502(run: SimpleNamespace, events: Any) -> None:
    """
    Output that is no CGI head: 502, the cause logged, the script ended.
    """
    run.script.childDataReceived(1, b"no colon here\n\n")
    assert run.request.responseCode == 502
    assert run.transport.terminated == [KILL_GRACE]
    (error_,) = logged(events, "bad CGI response")
    assert error_["pid"] == 4242


def test_killedBeforeItsBodyIs502(run: SimpleNamespace, events: Any) -> None:
    """
    A script killed after its head but before any body byte: the client
    still gets a status, 502.
    """
    run.script.childDataReceived(1, b"Content-Type: a/b\n\n")
    exited(run, error.ProcessTerminated(signal=9))
    run.script.childConnectionLost(1)
    assert run.request.responseCode == 502
    assert run.request.producer is None
    assert run.transport.terminated == [KILL_GRACE]
    assert len(logged(events, "exited with")) == 1
    assert len(logged(events, "died before its body")) == 1


def test_killedInItsBodyIsCut(run: SimpleNamespace) -> None:
    """
    A script killed during its body: the response is cut.
    """
    run.script.childDataReceived(1, b"Content-Type: a/b\n\nsome")
    exited(run, error.ProcessTerminated(signal=9))
    run.script.childConnectionLost(1)
    assert run.cut == [run.request]
    assert run.request.finished == 0
    assert run.transport.terminated == [KILL_GRACE]


def test_shutdownDuringTheBody(run: SimpleNamespace, events: Any) -> None:
    """
    The shutdown ends the script while it answers: what it still writes is
    sent, and how it ends decides the rest: here a cut, without logging an
    exit the server caused.
    """
    run.script.childDataReceived(1, b"Content-Type: a/b\n\nsome")
    run.script.stop()
    assert run.script.state is RunState.STOPPING
    assert run.transport.terminated == [KILL_GRACE]
    run.script.childDataReceived(1, b" more")
    run.script.childConnectionLost(1)
    assert run.cut == []
    exited(run, error.ProcessTerminated(signal=15))
    assert b"".join(run.request.written) == b"some more"
    assert run.cut == [run.request]
    assert run.transport.terminated == [KILL_GRACE]
    assert run.script.state is RunState.ENDING
    assert logged(events, "exited with") == []
    run.script.stop()
    assert run.transport.terminated == [KILL_GRACE]


def test_shutdownOfAScriptThatFinishes(run: SimpleNamespace) -> None:
    """
    A script that completes its response while the shutdown ends it: the
    response is complete, and the script is not ended twice.
    """
    run.script.childDataReceived(1, b"Content-Type: a/b\n\n")
    run.script.stop()
    run.script.childDataReceived(1, b"done")
    exited(run, error.ProcessDone(0))
    run.script.childConnectionLost(1)
    assert run.request.finished == 1
    assert run.cut == []
    assert run.script.state is RunState.ENDING
    assert run.transport.terminated == [KILL_GRACE]


def test_exitStatusLogged(run: SimpleNamespace, events: Any) -> None:
    """
    A script that exits with an error status is logged, with its pid.
    """
    run.script.childDataReceived(1, b"Content-Type: a/b\n\nx")
    exited(run, error.ProcessTerminated(exitCode=3))
    (event,) = logged(events, "exited with")
    assert (event["pid"], event["how"]) == (4242, "status 3")


# --------------------------------------------------------------------------
# NPH scripts


def test_nphPassthrough(monkeypatch: pytest.MonkeyPatch) -> None:
    """
    An NPH script's output goes to the connection unmodified, its status is
    read for the access log, and its response ends with the connection.
    """
    run = makeRun(monkeypatch, nph=True)
    connection = run.request.channel.transport
    run.script.childDataReceived(1, b"HTTP/1.1 299 Odd\r\n")
    run.script.childDataReceived(1, b"X: y\r\n\r\nbody")
    assert connection.written.getvalue() == b"HTTP/1.1 299 Odd\r\nX: y\r\n\r\nbody"
    assert run.request.code == 299
    assert run.request.sentLength == len(connection.written.getvalue())
    assert run.request.written == []
    run.script.childConnectionLost(1)
    assert run.cut == [run.request]
    assert run.request.producer is None
    assert run.script.state is RunState.LINGERING


def test_nphTimeoutIsCut(monkeypatch: pytest.MonkeyPatch) -> None:
    """
    An NPH script's own status line may have been sent: a timeout can only
    cut.
    """
    run = makeRun(monkeypatch, nph=True)
    run.clock.advance(2.0)
    assert run.request.responseCode is None
    assert run.cut == [run.request]
    assert run.transport.terminated == [KILL_GRACE]


# --------------------------------------------------------------------------
# Standard error


def test_stderrLinesLogged(run: SimpleNamespace, events: Any) -> None:
    """
    Standard error is logged a line at a time, with the script's name and
    pid, without line endings; an unended last line at the end.
    """
    run.script.childDataReceived(2, b"one\r\ntw")
    run.script.childDataReceived(2, b"o\nthree")
    lines = [e["line"] for e in logged(events, "{line}")]
    assert lines == ["one", "two"]
    ended(run)
    lines = [e["line"] for e in logged(events, "{line}")]
    assert lines == ["one", "two", "three"]
    assert {(e["script"], e["pid"]) for e in logged(events, "{line}")} == {
        ("/cgi-bin/s", 4242)
    }


def test_pidKeptFromTheSpawnersAnswer(
    monkeypatch: pytest.MonkeyPatch, events: Any
) -> None:
    """
    A script the CGI spawner starts has its pid said later, and forgotten
    when its group ends, possibly before its standard error is read: the
    log lines still carry the pid said.
    """
    script = FakeScript()
    script.pid = None  # type: ignore[assignment]
    script.started = Deferred()  # type: ignore[attr-defined]
    run = makeRun(monkeypatch, transport=script)
    script.pid = 31337
    script.started.callback(None)  # type: ignore[attr-defined]
    script.pid = None  # type: ignore[assignment]
    run.script.childDataReceived(2, b"late line\n")
    assert [(e["line"], e["pid"]) for e in logged(events, "{line}")] == [
        ("late line", 31337)
    ]


def test_clientGoneDuringShutdown(run: SimpleNamespace) -> None:
    """
    A client that goes away while the shutdown ends its script: the group
    is not asked to end twice, and the script's end answers no one.
    """
    run.script.stop()
    run.request.processingFailed(Failure(ConnectionError("gone")))
    assert run.transport.terminated == [KILL_GRACE]
    assert run.script.state is RunState.ENDING
    run.script.childConnectionLost(1)
    exited(run, error.ProcessTerminated(signal=15))
    assert run.request.responseCode is None
    assert run.request.finished == 0


# --------------------------------------------------------------------------
# --cgi-debug

DEBUG = ScriptContext(
    mode="local",
    scriptName="/cgi-bin/s",
    filename="/srv/cgi-bin/s",
    argv=("/srv/cgi-bin/s",),
    environment={"HTTP_COOKIE": "session=secret", "PATH": "/usr/bin"},
)


@pytest.fixture
def debugRun(monkeypatch: pytest.MonkeyPatch) -> SimpleNamespace:
    return makeRun(monkeypatch, debug=DEBUG)


def pageOf(run: SimpleNamespace) -> str:
    assert run.request.finished == 1
    (contentType,) = run.request.responseHeaders.getRawHeaders(b"content-type")
    assert contentType == b"text/html; charset=utf-8"
    text: str = b"".join(run.request.written).decode("utf-8")
    assert "<strong>--cgi-debug</strong> output" in text
    return text


def test_debugExitBeforeTheHead(debugRun: SimpleNamespace) -> None:
    """
    A script that writes to its standard error and exits 1 before its head:
    the page, with its exit status and standard error.
    """
    debugRun.script.childDataReceived(2, b"Traceback: <oops>\n")
    debugRun.script.childConnectionLost(1)
    exited(debugRun, error.ProcessTerminated(exitCode=1))
    assert debugRun.request.responseCode == 502
    text = pageOf(debugRun)
    assert "exited with status 1" in text
    assert "<pre>Traceback: &lt;oops&gt;\n</pre>" in text
    assert "session=secret" not in text
    assert debugRun.transport.terminated == [KILL_GRACE]


def test_debugReadsWhatStderrStillHolds(debugRun: SimpleNamespace) -> None:
    """
    The script's last words may still be in its standard error pipe when
    its exit decides the page (the reactor has not read them yet): they
    are read first, before ending the script closes the pipe.
    """
    debugRun.script.childDataReceived(2, b"starting\n")
    debugRun.transport.pendingStderr = b"setpriv: cannot exec: No such file\n"
    debugRun.script.childConnectionLost(1)
    exited(debugRun, error.ProcessTerminated(exitCode=127))
    text = pageOf(debugRun)
    assert "<pre>starting\nsetpriv: cannot exec: No such file\n</pre>" in text


def test_debugBadHead(debugRun: SimpleNamespace) -> None:
    """
    A malformed head: the page, with what the script printed, while the
    script is still being ended.
    """
    debugRun.script.childDataReceived(1, b"<h1>hello</h1>\n\n")
    assert debugRun.request.responseCode == 502
    text = pageOf(debugRun)
    assert "header line without a colon" in text
    assert "<pre>&lt;h1&gt;hello&lt;/h1&gt;\n\n</pre>" in text
    assert "still running: the server is ending it" in text
    assert debugRun.transport.terminated == [KILL_GRACE]


def test_debugTimeout(debugRun: SimpleNamespace) -> None:
    """
    A script silent for the timeout: a 504 page saying so, with what it
    wrote to its standard error so far.
    """
    debugRun.script.childDataReceived(2, b"waiting for the database\n")
    debugRun.clock.advance(2.0)
    assert debugRun.request.responseCode == 504
    text = pageOf(debugRun)
    assert "timed out after 2 s without output; still running" in text
    assert "waiting for the database" in text


def test_debugStderrTailBounded(debugRun: SimpleNamespace) -> None:
    """
    The page shows the last 64 KiB of standard error, and says how much
    came before.
    """
    debugRun.script.childDataReceived(2, b"a" * 1000)
    debugRun.script.childDataReceived(2, b"b" * (64 * 1024))
    debugRun.script.childConnectionLost(1)
    exited(debugRun, error.ProcessDone(0))
    text = pageOf(debugRun)
    assert "(1000 earlier bytes not shown)" in text
    assert "<pre>" + "b" * (64 * 1024) + "</pre>" in text
    assert "exited with status 0" in text


def test_debugDeathBeforeTheBody(debugRun: SimpleNamespace) -> None:
    """
    A script killed after its head, before its body: the page, with the
    signal.
    """
    debugRun.script.childDataReceived(1, b"Content-Type: a/b\n\n")
    exited(debugRun, error.ProcessTerminated(signal=9))
    debugRun.script.childConnectionLost(1)
    assert debugRun.request.responseCode == 502
    assert "killed by signal 9 (SIGKILL)" in pageOf(debugRun)


def test_debugLeavesSuccessAlone(debugRun: SimpleNamespace) -> None:
    """
    A script that answers gets its own response, though it wrote to its
    standard error and exited non-zero after its response.
    """
    debugRun.script.childDataReceived(2, b"warning\n")
    debugRun.script.childDataReceived(1, b"Content-Type: a/b\n\nbody")
    debugRun.script.childConnectionLost(1)
    exited(debugRun, error.ProcessTerminated(exitCode=1))
    assert debugRun.request.responseCode == 200
    assert b"".join(debugRun.request.written) == b"body"


def test_debugCannotReplaceAStartedResponse(debugRun: SimpleNamespace) -> None:
    """
    Once the body has started, a failure still only cuts the response.
    """
    debugRun.script.childDataReceived(1, b"Content-Type: a/b\n\nsome")
    exited(debugRun, error.ProcessTerminated(signal=9))
    debugRun.script.childConnectionLost(1)
    assert debugRun.cut == [debugRun.request]
    assert b"".join(debugRun.request.written) == b"some"


def test_debugNeverForNPH(monkeypatch: pytest.MonkeyPatch) -> None:
    """
    An NPH script writes its own response: no page, whatever happens.
    """
    run = makeRun(monkeypatch, nph=True, debug=DEBUG)
    run.script.childDataReceived(2, b"err\n")
    run.clock.advance(2.0)
    assert run.request.written == []
    assert run.cut == [run.request]


def test_noDebugNoTail(run: SimpleNamespace) -> None:
    """
    Without --cgi-debug, standard error is only logged, not kept, and a
    failure gets the bare error page.
    """
    run.script.childDataReceived(2, b"x" * 1000)
    assert run.script._stderrTail is None
    run.script.childConnectionLost(1)
    exited(run, error.ProcessTerminated(exitCode=1))
    body = b"".join(run.request.written)
    assert b"Error code: 502" in body
    assert b"--cgi-debug" not in body


# --------------------------------------------------------------------------
# A script the spawner starts later


def test_pidKnownOnceTheTransportHasIt(monkeypatch: pytest.MonkeyPatch) -> None:
    """
    The run's PID is the transport's, once it has one (a script the
    spawner starts has none until its answer), and is kept after the
    transport has let go of it.
    """
    run = makeRun(monkeypatch)
    run.transport.pid = None
    assert run.script.pid is None
    run.transport.pid = 77
    assert run.script.pid == 77
    run.transport.pid = None
    assert run.script.pid == 77


def test_notStartedStopsQuietly(monkeypatch: pytest.MonkeyPatch) -> None:
    """
    A script that the spawner then could not start: the body stops being
    fed, the timer stops, whatever its pipes still report is dropped, the
    client is told nothing by the run (the gateway answers), and the run
    ends when the transport says so.
    """
    run = makeRun(monkeypatch, content=b"x" * (128 * 1024))
    assert run.transport.producer is not None
    assert run.script.notStarted() is True
    assert run.script.state is RunState.ENDING
    # The sender is stopped (the transport closes the pipe).
    assert run.script._sender.deferred is None
    assert not run.clock.getDelayedCalls()
    run.script.childConnectionLost(1)
    run.script.childConnectionLost(2)
    ended(run, OSError(2, "No such file"))
    assert run.request.written == []
    assert run.request.finished == 0
    assert run.script.ended.called
    assert run.script.notStarted() is False


def test_notStartedAfterTheClientLeft(monkeypatch: pytest.MonkeyPatch) -> None:
    run = makeRun(monkeypatch, stream=None)
    run.request.processingFailed(Failure(ConnectionError("gone")))
    assert run.script.notStarted() is False


def test_notStartedDiscardsAStreamedBody(monkeypatch: pytest.MonkeyPatch) -> None:
    """
    A body still arriving is discarded: the connection reads on, and what
    comes is dropped.
    """
    stream = BodyStream(10, _Connection())
    run = makeRun(monkeypatch, stream=stream)
    assert run.script.notStarted() is True
    assert stream.discarding
