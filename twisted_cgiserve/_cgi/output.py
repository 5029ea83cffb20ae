# -*- test-case-name: tests.cgi.test_output -*-
"""
What a CGI script's standard output becomes: the response to its request.

Two strategies stand behind one interface, L{IScriptOutput}:

 - L{ParsedOutput}, for ordinary scripts: the header block is parsed
   (L{twisted_cgiserve._cgi.head}), the server writes the status line and
   headers, and the body follows within the script's C{Content-Length}, if
   it gave one;
 - L{NPHOutput}, for non-parsed-header scripts: the output is the whole
   HTTP/1.x response and goes to the connection unmodified.

A strategy owns the response and nothing else: the script's process, its
timers and its end belong to the protocol
(L{twisted_cgiserve._cgi.protocol.ScriptRun}), which learns from each call,
as a L{Progress}, whether the response goes on, is complete, or is over
without completing (the script must then be ended).

A script's failure before its response has started (a malformed head, an
exit or a death before the head or the body, a timeout) is answered with an
error page: the bare one, or, under C{--cgi-debug}, the run's page that
shows what the script did (L{twisted_cgiserve._cgi.inspector}), for which
the strategy keeps the start of what the script printed.
"""

from __future__ import annotations

from collections.abc import Callable
from enum import Enum
from typing import TYPE_CHECKING, Any

from zope.interface import Attribute, Interface, implementer

from twisted.internet.interfaces import IPushProducer
from twisted.logger import Logger
from twisted.python.failure import Failure
from twisted.web.iweb import IRequest

from twisted_cgiserve._cgi.head import (
    CGIHead,
    HeadParser,
    MalformedHead,
    ResponseKind,
)
from twisted_cgiserve._cgi.inspector import MAX_PRINTED, OutputFailure
from twisted_cgiserve._http.errors import sendError, statusPhrase
from twisted_cgiserve._http.response import ResponseSender, cutResponse

if TYPE_CHECKING:
    # Only with --metrics is prometheus_client imported.
    from twisted_cgiserve._http.metrics import ServerMetrics

__all__ = [
    "IScriptOutput",
    "IScriptSource",
    "NPHOutput",
    "ParsedOutput",
    "Progress",
]

_log = Logger(namespace="cgiserve.cgi")


class Progress(Enum):
    """
    Where a response stands after a strategy handled the script's output.
    """

    #: More output is expected.
    STREAMING = "streaming"
    #: The response is complete; what is left of the script may run on.
    COMPLETE = "complete"
    #: The response ended without completing (an error page, a cut, a local
    #: redirect): the script must be ended.
    OVER = "over"


class IScriptSource(IPushProducer):
    """
    The script run a strategy writes the response for: the body's producer
    (the client's pace reaches the script through it), named in log lines.
    """

    scriptName = Attribute("The script's URL path (L{str}), for log lines.")
    pid = Attribute("The script's process ID (L{int}), for log lines.")


class IScriptOutput(Interface):
    """
    A script's standard output, turned into its request's response.
    """

    def dataReceived(data: bytes) -> Progress:
        """
        More output from the script.
        """

    def outputEnded(exitReason: Failure | None, shuttingDown: bool) -> Progress | None:
        """
        The script's output has ended: end the response accordingly.

        @param exitReason: How the script exited, or L{None} while it runs.
        @param shuttingDown: Whether the server's shutdown is ending the
            script (a response not begun gets a 503).
        @return: L{None} when the response cannot be decided before the
            script's exit (call again with its C{exitReason}); else never
            L{Progress.STREAMING}.
        """

    def timedOut() -> None:
        """
        The script was silent for too long and is being ended: answer with a
        504 if nothing was sent yet, else cut the response.
        """


@implementer(IScriptOutput)
class ParsedOutput:
    """
    A CGI response: the script's header block, parsed, then its body.
    """

    def __init__(
        self,
        request: IRequest,
        script: IScriptSource,
        reactor: Any,
        localRedirect: Callable[[Any, bytes], object],
        *,
        inspect: Callable[[OutputFailure], object] | None = None,
        metrics: ServerMetrics | None = None,
    ) -> None:
        """
        @param localRedirect: Serves a local redirect's path for C{request}.
        @param inspect: Under C{--cgi-debug}, answers a failure before the
            response started instead of the bare error page.
        @param metrics: What counts the 502s (C{--metrics}).
        """
        self._metrics = metrics
        # Any Twisted request: the consumer methods used here are not part
        # of IRequest.
        self._request: Any = request
        self._script = script
        self._reactor = reactor
        self._localRedirect = localRedirect
        self._parser = HeadParser()
        self._head: CGIHead | None = None
        # What is left of the script's Content-Length, when it gave one.
        self._remaining: int | None = None
        self._response: ResponseSender | None = None
        self._inspect = inspect
        # For the --cgi-debug page only: the start of what the script
        # printed before its head was complete, and how much more.
        self._printed = bytearray()
        self._printedDropped = 0

    def dataReceived(self, data: bytes) -> Progress:
        """
        See L{IScriptOutput.dataReceived}.
        """
        if self._head is None:
            if self._inspect is not None:
                self._keepPrinted(data)
            try:
                result = self._parser.feed(data)
            except MalformedHead as e:
                return self._badGateway(str(e))
            if result is None:
                return Progress.STREAMING
            head, data = result
            self._head = head
            if not self._startResponse(head):
                return Progress.OVER
        return self._writeBody(data)

    def _keepPrinted(self, data: bytes) -> None:
        """
        Keep what fits of C{data} in the first L{MAX_PRINTED} bytes.
        """
        room = MAX_PRINTED - len(self._printed)
        self._printed += data[:room]
        self._printedDropped += max(0, len(data) - room)

    def _startResponse(self, head: CGIHead) -> bool:
        """
        Send the status and headers; C{False} when no body is to follow
        from this script (a local redirect took over).
        """
        request = self._request
        for line in head.dropped:
            _log.warn(
                "{script}: dropped CGI header line {line!r}",
                script=self._script.scriptName,
                line=line,
            )
        if head.kind is ResponseKind.LOCAL_REDIRECT:
            assert head.location is not None
            try:
                self._localRedirect(request, head.location)
            except Exception:
                # Whatever the redirect's target did, this script's part is
                # over and it must still be ended (by the caller, on OVER).
                _log.failure(
                    "{script}: local redirect to {location!r} failed",
                    script=self._script.scriptName,
                    location=head.location,
                )
                if not request.startedWriting:
                    sendError(request, 500, "Internal Server Error")
            return False
        reason = head.reason
        request.setResponseCode(
            head.status, statusPhrase(reason.decode("latin-1")) if reason else None
        )
        # Twisted's default Content-Type is for its own pages, not scripts'.
        setattr(request, "defaultContentType", None)  # noqa: B010
        headers = request.responseHeaders
        for name, value in head.headers:
            headers.addRawHeader(name, value)
        if head.contentLength is not None:
            headers.setRawHeaders(b"content-length", [b"%d" % head.contentLength])
            if request.method != b"HEAD" and head.status not in (204, 304):
                # Enforced: no more is sent, and less means a cut response.
                self._remaining = head.contentLength
        self._response = ResponseSender(request, self._script, self._reactor)
        self._response.start()
        return True

    def _writeBody(self, data: bytes) -> Progress:
        if not data:
            return Progress.STREAMING
        if self._remaining is not None:
            if len(data) > self._remaining:
                _log.warn(
                    "{script} wrote more than its Content-Length; extra bytes dropped",
                    script=self._script.scriptName,
                )
                data = data[: self._remaining]
            self._remaining -= len(data)
            if not data:
                return Progress.STREAMING
        self._request.write(data)
        if self._remaining == 0:
            # Complete: end the response now, whatever the script does next
            # (it may linger; the client may close).
            return self._finish()
        return Progress.STREAMING

    def _finish(self) -> Progress:
        assert self._response is not None
        self._response.finish()
        return Progress.COMPLETE

    def outputEnded(
        self, exitReason: Failure | None, shuttingDown: bool
    ) -> Progress | None:
        """
        See L{IScriptOutput.outputEnded}.

        The response ends at the end of the output, even if the script (or
        what it started) still runs; only output that ended before the head
        was complete waits for the script's exit.
        """
        request = self._request
        if self._head is None:
            if exitReason is None:
                return None
            if shuttingDown:
                sendError(request, 503, "Server shutting down")
                return Progress.OVER
            try:
                self._parser.finish()
            except MalformedHead as e:
                return self._badGateway(str(e))
            return None
        signal = (
            None if exitReason is None else getattr(exitReason.value, "signal", None)
        )
        if signal is not None and not request.startedWriting:
            # Nothing has been sent yet (headers go out with the first body
            # byte): the client can still get a status.
            if self._response is not None:
                self._response.detach()
            self._dropScriptHeaders()
            if shuttingDown:
                sendError(request, 503, "Server shutting down")
            else:
                _log.warn(
                    "{script} [{pid}] died before its body; 502",
                    script=self._script.scriptName,
                    pid=self._script.pid,
                )
                self._fail(
                    502,
                    "Bad Gateway",
                    "The CGI script failed",
                    "The script was killed after its head, before any of its "
                    "body was sent.",
                )
            return Progress.OVER
        if signal is not None or (self._remaining is not None and self._remaining > 0):
            # The body is incomplete: closing the connection is the only way
            # the client can tell (a final chunk would look complete).
            _log.warn(
                "{script} [{pid}]: response cut short; closing the connection",
                script=self._script.scriptName,
                pid=self._script.pid,
            )
            self._cut()
            return Progress.OVER
        return self._finish()

    def timedOut(self) -> None:
        """
        See L{IScriptOutput.timedOut}.
        """
        if not self._request.startedWriting:
            if self._response is not None:
                self._response.detach()
            self._dropScriptHeaders()
            self._fail(
                504,
                "Gateway Timeout",
                "The CGI script did not answer in time",
                "The script wrote nothing for too long before its response started.",
            )
            return
        self._cut()

    def _cut(self) -> None:
        """
        End a response that cannot be completed, the way its protocol
        allows (see L{cutResponse}).
        """
        if self._response is not None:
            self._response.cut()
        else:
            cutResponse(self._request)

    def _badGateway(self, why: str) -> Progress:
        """
        The script's output is not a CGI response: 502, with the cause in the
        log (and on the C{--cgi-debug} page) only.
        """
        _log.error(
            "{script} [{pid}]: bad CGI response: {why}",
            script=self._script.scriptName,
            pid=self._script.pid,
            why=why,
        )
        self._fail(
            502, "Bad Gateway", "The CGI script failed", f"Bad CGI response: {why}."
        )
        return Progress.OVER

    def _fail(self, code: int, message: str, explain: str, why: str) -> None:
        """
        Answer a failure before the response started: with the
        C{--cgi-debug} page where it applies, else the bare error page.

        @param why: What went wrong, for the C{--cgi-debug} page.
        """
        if code == 502 and self._metrics is not None:
            self._metrics.cgiFailed()
        if self._inspect is None:
            sendError(self._request, code, message, explain)
            return
        self._inspect(
            OutputFailure(
                code=code,
                message=message,
                why=why,
                printed=bytes(self._printed),
                printedDropped=self._printedDropped,
            )
        )

    def _dropScriptHeaders(self) -> None:
        """
        Forget the headers of a head whose response will not be sent: an
        error page must not carry the script's cookies, location or length.
        """
        if self._head is None:
            return
        headers = self._request.responseHeaders
        for name, _ in self._head.headers:
            headers.removeHeader(name)
        headers.removeHeader(b"content-length")


@implementer(IScriptOutput)
class NPHOutput:
    """
    A non-parsed-header response: the script's output is the whole HTTP/1.x
    response (status line included) and goes to the connection unmodified;
    it ends with the connection.
    """

    def __init__(self, request: IRequest, script: IScriptSource, reactor: Any) -> None:
        self._request: Any = request
        self._script = script
        self._reactor = reactor
        self._response: ResponseSender | None = None

    def dataReceived(self, data: bytes) -> Progress:
        """
        See L{IScriptOutput.dataReceived}.
        """
        request = self._request
        if self._response is None:
            self._response = ResponseSender(request, self._script, self._reactor)
            self._response.start()
            # For the access log: the status the script's own line gives.
            words = data.split(b"\n", 1)[0].split()
            if (
                len(words) >= 2
                and words[0].startswith(b"HTTP/")
                and len(words[1]) == 3
                and words[1].isdigit()
            ):
                request.code = int(words[1])
        # Written past the request, so counted here for the access log.
        request.sentLength = getattr(request, "sentLength", 0) + len(data)
        # NPH is HTTP/1.x only: the request's channel is the connection.
        transport = getattr(request.channel, "transport", None)
        if transport is not None:
            transport.write(data)
        return Progress.STREAMING

    def outputEnded(
        self, exitReason: Failure | None, shuttingDown: bool
    ) -> Progress | None:
        """
        See L{IScriptOutput.outputEnded}: an NPH response has no framing the
        server knows, so it ends with the connection. (The request never
        finishes, so it is logged here.)
        """
        request = self._request
        if self._response is not None:
            self._response.detach()
        factory = getattr(getattr(request, "channel", None), "factory", None)
        if factory is not None:
            factory.log(request)
        cutResponse(request)
        return Progress.COMPLETE

    def timedOut(self) -> None:
        """
        See L{IScriptOutput.timedOut}: whatever was sent, the response can
        only be cut.
        """
        if self._response is not None:
            self._response.cut()
        else:
            cutResponse(self._request)
