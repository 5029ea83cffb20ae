"""
Tests for L{twisted_cgiserve._cgi.output}: what a script's output becomes,
as a parsed CGI response or an NPH passthrough, without a process.
"""

from __future__ import annotations

from typing import Any

from zope.interface import implementer
from zope.interface.verify import verifyObject

import pytest
from twisted.internet import error
from twisted.internet.task import Clock
from twisted.logger import globalLogPublisher
from twisted.python.failure import Failure
from twisted.web.test.requesthelper import DummyChannel, DummyRequest

from tests.support.fakes import RecordingProducer
from twisted_cgiserve._cgi import output as _output
from twisted_cgiserve._cgi.inspector import MAX_PRINTED, OutputFailure
from twisted_cgiserve._cgi.output import (
    IScriptOutput,
    IScriptSource,
    NPHOutput,
    ParsedOutput,
    Progress,
)
from twisted_cgiserve._cgi.protocol import ScriptRun
from twisted_cgiserve._http import response as _response


@implementer(IScriptSource)
class Source(RecordingProducer):
    """
    The script run a strategy writes for: records the client's pace.
    """

    scriptName = "/cgi-bin/s"
    pid = 77


class Request(DummyRequest):
    """
    A request with a push-producer slot and an HTTP/1.x connection.
    """

    startedWriting = False
    code = 200
    producer: Any = None

    def __init__(self, method: bytes = b"GET") -> None:
        super().__init__([b""])
        self.method = method
        self.channel = DummyChannel()

    def registerProducer(self, producer: object, streaming: bool) -> None:
        self.producer = producer

    def unregisterProducer(self) -> None:
        self.producer = None

    def write(self, data: bytes) -> None:
        self.startedWriting = True
        super().write(data)


@pytest.fixture
def cut(monkeypatch: pytest.MonkeyPatch) -> list[object]:
    calls: list[object] = []

    def cutResponse(request: object, *, abort: bool = False) -> None:
        calls.append(request)

    monkeypatch.setattr(_output, "cutResponse", cutResponse)
    monkeypatch.setattr(_response, "cutResponse", cutResponse)
    return calls


@pytest.fixture
def events() -> Any:
    collected: list[dict[str, Any]] = []
    globalLogPublisher.addObserver(collected.append)
    yield collected
    globalLogPublisher.removeObserver(collected.append)


def parsed(
    method: bytes = b"GET",
) -> tuple[ParsedOutput, Request, Source, list[bytes]]:
    request = Request(method)
    source = Source()
    redirects: list[bytes] = []
    output = ParsedOutput(
        request, source, Clock(), lambda req, location: redirects.append(location)
    )
    return output, request, source, redirects


def signalled(number: int) -> Failure:
    return Failure(error.ProcessTerminated(signal=number))


def test_interfaces() -> None:
    """
    Both strategies provide L{IScriptOutput}; a script run is the source
    they write for.
    """
    request = Request()
    source = Source()
    verifyObject(IScriptOutput, parsed()[0])
    verifyObject(IScriptOutput, NPHOutput(request, source, Clock()))
    run = ScriptRun(request, "/s", lambda req, location: None, Clock())
    verifyObject(IScriptSource, run)


def test_headThenBody(events: Any) -> None:
    """
    The head may come in pieces; then the status, the reason, the script's
    headers (Twisted's default type not added) and the body go out, and the
    client's pace reaches the script.
    """
    output, request, source, _ = parsed()
    assert output.dataReceived(b"Status: 201 Made\nX-A: 1\nDate: x\n") is (
        Progress.STREAMING
    )
    assert request.responseCode is None
    assert output.dataReceived(b"Content-Type: a/b\n\nbody") is Progress.STREAMING
    assert (request.responseCode, request.responseMessage) == (201, b"Made")
    assert request.responseHeaders.getRawHeaders(b"x-a") == [b"1"]
    assert request.responseHeaders.getRawHeaders(b"content-type") == [b"a/b"]
    assert request.responseHeaders.getRawHeaders(b"date") is None
    assert getattr(request, "defaultContentType", "unset") is None
    assert request.written == [b"body"]
    (dropped,) = [e for e in events if "dropped CGI header" in e["log_format"]]
    assert dropped["line"] == b"Date: x"
    request.producer.pauseProducing()
    request.producer.resumeProducing()
    assert source.calls == ["pause", "resume"]
    assert output.outputEnded(None, False) is Progress.COMPLETE
    assert request.finished == 1


def test_contentLengthEnforced(events: Any) -> None:
    """
    The body ends at the script's Content-Length: the response is complete
    at once, and what the script writes past it is dropped.
    """
    output, request, _, _ = parsed()
    assert output.dataReceived(b"Content-Type: a/b\nContent-Length: 3\n\nab") is (
        Progress.STREAMING
    )
    assert output.dataReceived(b"cdef") is Progress.COMPLETE
    assert request.written == [b"ab", b"c"]
    assert request.finished == 1
    assert [e for e in events if "more than its Content-Length" in e["log_format"]]


def test_emptyBodyComplete() -> None:
    """
    Content-Length 0 is complete at the end of the output.
    """
    output, request, _, _ = parsed()
    output.dataReceived(b"Content-Type: a/b\nContent-Length: 0\n\n")
    assert output.outputEnded(None, False) is Progress.COMPLETE
    assert request.finished == 1


@pytest.mark.parametrize(
    ("method", "status"), [(b"HEAD", b"200"), (b"GET", b"204"), (b"GET", b"304")]
)
def test_contentLengthWithoutBody(method: bytes, status: bytes) -> None:
    """
    A HEAD response, a 204 and a 304 keep the script's Content-Length as a
    header but have no body to wait for.
    """
    output, request, _, _ = parsed(method)
    output.dataReceived(b"Status: " + status + b"\nContent-Length: 9\n\n")
    assert request.responseHeaders.getRawHeaders(b"content-length") == [b"9"]
    assert output.outputEnded(None, False) is Progress.COMPLETE


def test_shortBodyIsCut(cut: list[object], events: Any) -> None:
    """
    Output that ends before its Content-Length: the response is cut.
    """
    output, request, _, _ = parsed()
    output.dataReceived(b"Content-Type: a/b\nContent-Length: 9\n\nabc")
    assert output.outputEnded(None, False) is Progress.OVER
    assert cut == [request]
    assert request.finished == 0
    (event,) = [e for e in events if "cut short" in e["log_format"]]
    assert event["pid"] == 77


def test_incompleteHeadWaitsForTheExit() -> None:
    """
    Output that ended inside the head is decided by the exit: 502, or 503
    when the shutdown ended the script.
    """
    output, request, _, _ = parsed()
    output.dataReceived(b"Content-Type: a/b\n")
    assert output.outputEnded(None, False) is None
    assert output.outputEnded(Failure(error.ProcessDone(0)), False) is Progress.OVER
    assert request.responseCode == 502
    output, request, _, _ = parsed()
    assert output.outputEnded(signalled(15), True) is Progress.OVER
    assert request.responseCode == 503


def test_shutdownBeforeTheBodyIs503() -> None:
    """
    A script the shutdown killed after its head, before its body: 503.
    """
    output, request, _, _ = parsed()
    output.dataReceived(b"Content-Type: a/b\n\n")
    assert output.outputEnded(signalled(15), True) is Progress.OVER
    assert request.responseCode == 503
    assert request.producer is None


def test_localRedirect() -> None:
    """
    A local redirect's path is handed over, and nothing else is sent.
    """
    output, request, _, redirects = parsed()
    assert output.dataReceived(b"Location: /x?y\n\nbody") is Progress.OVER
    assert redirects == [b"/x?y"]
    assert request.written == []
    assert request.producer is None


def test_failedLocalRedirect(events: Any) -> None:
    """
    A local redirect whose target fails: the client gets a 500, the failure
    is logged, and the script's part is still over (its run ends it).
    """
    request = Request()

    def fail(req: object, location: bytes) -> None:
        raise RuntimeError("the target failed")

    output = ParsedOutput(request, Source(), Clock(), fail)
    assert output.dataReceived(b"Location: /x\n\n") is Progress.OVER
    assert request.responseCode == 500
    assert [e for e in events if e.get("log_failure") is not None]


def test_timeouts(cut: list[object]) -> None:
    """
    A timeout is a 504 before the body, a cut after.
    """
    output, request, _, _ = parsed()
    output.timedOut()
    assert request.responseCode == 504
    output, request, _, _ = parsed()
    output.dataReceived(b"Content-Type: a/b\n\nx")
    output.timedOut()
    assert cut == [request]


def test_nphStatusLine() -> None:
    """
    Only a real status line gives the access log a status.
    """
    request = Request()
    output = NPHOutput(request, Source(), Clock())
    assert output.dataReceived(b"not a status line\r\n") is Progress.STREAMING
    assert request.code == 200
    assert request.channel.transport.written.getvalue() == b"not a status line\r\n"


def test_nphEndLogsTheRequest(cut: list[object]) -> None:
    """
    An NPH response ends with its connection, and its request (which never
    finishes) is logged then.
    """
    request = Request()
    logged: list[object] = []
    request.channel.factory = type("Factory", (), {"log": staticmethod(logged.append)})
    output = NPHOutput(request, Source(), Clock())
    output.dataReceived(b"HTTP/1.0 200 OK\r\n\r\n")
    assert output.outputEnded(None, False) is Progress.COMPLETE
    assert logged == [request]
    assert cut == [request]
    assert request.finished == 0


def test_nphTimeoutBeforeOutput(cut: list[object]) -> None:
    """
    An NPH script silent from the start: its connection is closed.
    """
    request = Request()
    NPHOutput(request, Source(), Clock()).timedOut()
    assert cut == [request]
    assert request.responseCode is None


# --------------------------------------------------------------------------
# --cgi-debug: failures handed to the inspector


def inspected(
    method: bytes = b"GET",
) -> tuple[ParsedOutput, Request, list[OutputFailure]]:
    request = Request(method)
    failures: list[OutputFailure] = []
    output = ParsedOutput(
        request,
        Source(),
        Clock(),
        lambda req, location: None,
        inspect=failures.append,
    )
    return output, request, failures


def test_inspectBadHead() -> None:
    """
    A malformed head goes to the inspector, with the cause and what the
    script printed, instead of the bare 502.
    """
    output, request, failures = inspected()
    output.dataReceived(b"hello ")
    assert output.dataReceived(b"world\n\n") is Progress.OVER
    (failure,) = failures
    assert (failure.code, failure.message) == (502, "Bad Gateway")
    assert "header line without a colon" in failure.why
    assert (failure.printed, failure.printedDropped) == (b"hello world\n\n", 0)
    assert request.responseCode is None
    assert request.finished == 0


def test_inspectExitWithoutOutput() -> None:
    """
    An exit before the head is complete (or without any output) goes to
    the inspector.
    """
    output, _, failures = inspected()
    assert output.outputEnded(Failure(error.ProcessTerminated(exitCode=1)), False) is (
        Progress.OVER
    )
    (failure,) = failures
    assert failure.code == 502
    assert "exited without writing anything" in failure.why
    assert failure.printed == b""


def test_inspectTimeout() -> None:
    """
    A timeout before the response started goes to the inspector as a 504.
    """
    output, _, failures = inspected()
    output.dataReceived(b"Content-Type: a/")
    output.timedOut()
    (failure,) = failures
    assert (failure.code, failure.printed) == (504, b"Content-Type: a/")


def test_inspectDeathBeforeTheBody() -> None:
    """
    A script killed after its head, before its body: the inspector gets
    what it printed; none of its headers stay on the error page.
    """
    output, request, failures = inspected()
    output.dataReceived(
        b"Content-Type: a/b\nSet-Cookie: s=1\nLocation: /x\nStatus: 200\n"
        b"Content-Length: 5\n\n"
    )
    assert output.outputEnded(signalled(9), False) is Progress.OVER
    (failure,) = failures
    assert failure.code == 502
    assert "killed after its head" in failure.why
    assert failure.printed.startswith(b"Content-Type: a/b\nSet-Cookie")
    headers = request.responseHeaders
    for name in (b"set-cookie", b"location", b"content-type", b"content-length"):
        assert headers.getRawHeaders(name) is None
    assert request.producer is None


def test_timeoutAfterTheHeadDropsItsHeaders() -> None:
    """
    A script silent after its head, before any body byte: the bare 504
    carries none of its headers, and its producer is released.
    """
    output, request, _, _ = parsed()
    output.dataReceived(b"Content-Type: a/b\nSet-Cookie: s=1\n\n")
    output.timedOut()
    assert request.responseCode == 504
    assert request.responseHeaders.getRawHeaders(b"set-cookie") is None
    assert request.responseHeaders.getRawHeaders(b"content-type") == [
        b"text/html;charset=utf-8"
    ]
    assert request.producer is None


def test_deathBeforeTheBodyDropsItsHeaders() -> None:
    """
    Without --cgi-debug too, the bare 502 for a script killed before its
    body carries none of its headers.
    """
    output, request, _, _ = parsed()
    output.dataReceived(b"Content-Type: a/b\nSet-Cookie: s=1\n\n")
    output.outputEnded(signalled(9), False)
    assert request.responseCode == 502
    assert request.responseHeaders.getRawHeaders(b"set-cookie") is None


def test_printedIsBounded() -> None:
    """
    Only the first 64 KiB of what a script printed are kept for the page;
    the rest is counted.
    """
    output, _, failures = inspected()
    output.dataReceived(b"x" * (MAX_PRINTED - 10))
    output.dataReceived(b"y" * 30)
    (failure,) = failures
    assert failure.printed == b"x" * (MAX_PRINTED - 10) + b"y" * 10
    assert failure.printedDropped == 20


def test_startedResponseIsNeverInspected(cut: list[object]) -> None:
    """
    Once the body has started, a failure can only cut the response: the
    inspector is not asked.
    """
    output, killed, failures = inspected()
    output.dataReceived(b"Content-Type: a/b\n\nsome")
    assert output.outputEnded(signalled(9), False) is Progress.OVER
    output, silent, more = inspected()
    output.dataReceived(b"Content-Type: a/b\n\nsome")
    output.timedOut()
    assert failures == more == []
    assert cut == [killed, silent]


def test_shutdownIsNeverInspected() -> None:
    """
    A script the shutdown ends before its head gets the plain 503: it did
    not fail.
    """
    output, request, failures = inspected()
    assert output.outputEnded(signalled(15), True) is Progress.OVER
    assert request.responseCode == 503
    assert failures == []
