# -*- test-case-name: tests.e2e.test_cgi -*-
"""
Running one request through a CGI script: the request body into its
standard input, its output parsed and streamed to the client.

Both directions have flow control: the body is fed from Twisted's spooled
request content only as fast as the script reads it, and when the client is
slow the script's output pipe is no longer read, so the script blocks in
C{write} and the server's memory stays bounded however much it writes.

The response ends at the end of the script's standard output, as with
Apache and lighttpd, whether or not the script has exited: a script may
answer, close its output and go on working. Whatever is left of its process
group once the response is over (the script itself, or what it started)
is ended by C{--cgi-timeout} counted from the end of the response, without
touching the response; an error, a timeout, a client that goes away and
the server's shutdown end the whole group at once (see L{ScriptProcess}).
"""

from __future__ import annotations

from collections.abc import Callable
from typing import IO, Any, cast

from zope.interface import implementer

from twisted.internet.defer import Deferred
from twisted.internet.interfaces import IPushProducer
from twisted.internet.protocol import ProcessProtocol
from twisted.logger import Logger
from twisted.protocols.basic import FileSender
from twisted.python.failure import Failure
from twisted.web.iweb import IRequest

from twisted_cgiserve._cgi.head import (
    CGIHead,
    HeadParser,
    MalformedHead,
    ResponseKind,
)
from twisted_cgiserve._http.errors import sendError, statusPhrase
from twisted_cgiserve._http.response import ResponseSender, cutResponse

__all__ = ["KILL_GRACE", "ScriptRun"]

_log = Logger(namespace="cgiserve.cgi")

# The longest stderr line logged as one event; longer lines are split.
_MAX_ERR_LINE = 4096

# Seconds between SIGTERM and SIGKILL for a script being ended.
KILL_GRACE = 3.0


class _ActivityConsumer:
    """
    The script's standard input, as the body sender's consumer: every chunk
    the script accepts counts as activity for the inactivity timeout.
    """

    def __init__(self, transport: Any, onWrite: Callable[[], None]) -> None:
        self._transport = transport
        self._onWrite = onWrite

    def registerProducer(self, producer: Any, streaming: bool) -> None:
        self._transport.registerProducer(producer, streaming)

    def unregisterProducer(self) -> None:
        self._transport.unregisterProducer()

    def write(self, data: bytes) -> None:
        self._onWrite()
        self._transport.write(data)


@implementer(IPushProducer)
class ScriptRun(ProcessProtocol):
    """
    The protocol of one script process serving one request.

    @ivar scriptName: The script's URL path, for log lines.
    """

    def __init__(
        self,
        request: IRequest,
        scriptName: str,
        localRedirect: Any,
        reactor: Any,
        *,
        nph: bool = False,
        timeout: float = 0,
    ) -> None:
        # Any Twisted request: the consumer and finish-notification methods
        # used here are not part of IRequest.
        self.request: Any = cast(Any, request)
        self.scriptName = scriptName
        self._localRedirect = localRedirect
        self._nph = nph
        self._parser = HeadParser()
        self._head: CGIHead | None = None
        self._remaining: int | None = None
        self._stderr = b""
        self._clientGone = False
        self._failed = False
        self._stopping = False
        self._reactor = reactor
        self._lingerTimer: Any = None
        self._outputDone = False
        self._exitReason: Failure | None = None
        self._finished = False
        self._timeout = timeout
        self._timer: Any = None
        self._paused = False
        self._shuttingDown = False
        self.ended: Deferred[None] = Deferred()
        # The response's sender, once the script's head (or an NPH script's
        # first output) has been received.
        self._response: ResponseSender | None = None
        self._sender: FileSender | None = None
        self.request.notifyFinish().addErrback(self._clientLost)

    # Starting up

    def connectionMade(self) -> None:
        """
        Feed the request body to the script's standard input.
        """
        content = cast(IO[bytes] | None, getattr(self.request, "content", None))
        transport = self.transport
        assert transport is not None
        self._armTimer()
        if content is None or self.request.method == b"HEAD":
            transport.closeStdin()
            return
        content.seek(0)
        self._sender = FileSender()
        # A pipe's capacity per write, not FileSender's 16 KiB.
        self._sender.CHUNK_SIZE = 64 * 1024
        done = self._sender.beginFileTransfer(
            content, _ActivityConsumer(transport, self._armTimer)
        )
        done.addCallbacks(lambda _: transport.closeStdin(), lambda _: None)

    # Output

    def outReceived(self, data: bytes) -> None:
        self._armTimer()
        if self._clientGone or self._failed or self._finished:
            return
        if self._nph:
            self._rawWrite(data)
            return
        if self._head is None:
            try:
                result = self._parser.feed(data)
            except MalformedHead as e:
                self._badGateway(str(e))
                return
            if result is None:
                return
            head, data = result
            self._head = head
            if not self._startResponse(head):
                return
        self._writeBody(data)

    def _startResponse(self, head: CGIHead) -> bool:
        """
        Send the status and headers; C{False} when no body is to follow
        from this script (a local redirect took over).
        """
        request = self.request
        for line in head.dropped:
            _log.warn(
                "{script}: dropped CGI header line {line!r}",
                script=self.scriptName,
                line=line,
            )
        if head.kind is ResponseKind.LOCAL_REDIRECT:
            assert head.location is not None
            self._failed = True
            self._stopScript()
            self._localRedirect(request, head.location)
            return False
        reason = head.reason if head.reason is not None else None
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
        self._response = ResponseSender(request, self, self._reactor)
        self._response.start()
        return True

    def _writeBody(self, data: bytes) -> None:
        if not data:
            return
        if self._remaining is not None:
            if len(data) > self._remaining:
                _log.warn(
                    "{script} wrote more than its Content-Length; extra bytes dropped",
                    script=self.scriptName,
                )
                data = data[: self._remaining]
            self._remaining -= len(data)
            if not data:
                return
        self.request.write(data)
        if self._remaining == 0:
            # Complete: end the response now, whatever the script does next
            # (it may linger; the client may close).
            self._endResponse()

    def _endResponse(self) -> None:
        self._finished = True
        if self._response is not None:
            self._response.finish()
        else:
            self.request.finish()
        self._lingerFromNow()

    def _rawWrite(self, data: bytes) -> None:
        """
        An NPH script's output goes to the client unmodified.
        """
        request = self.request
        if self._response is None:
            self._response = ResponseSender(request, self, self._reactor)
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
        request.sentLength = getattr(request, "sentLength", 0) + len(data)
        # NPH is HTTP/1.x only: the request's channel is the connection.
        transport = getattr(request.channel, "transport", None)
        if transport is not None:
            transport.write(data)

    # Standard error

    def errReceived(self, data: bytes) -> None:
        self._stderr += data
        while True:
            line, newline, rest = self._stderr.partition(b"\n")
            if newline:
                self._stderr = rest
                for start in range(0, max(len(line), 1), _MAX_ERR_LINE):
                    self._logStderr(line[start : start + _MAX_ERR_LINE])
            elif len(self._stderr) > _MAX_ERR_LINE:
                self._logStderr(self._stderr[:_MAX_ERR_LINE])
                self._stderr = self._stderr[_MAX_ERR_LINE:]
            else:
                return

    def _logStderr(self, line: bytes) -> None:
        transport = self.transport
        _log.warn(
            "{script} [{pid}]: {line}",
            script=self.scriptName,
            pid=getattr(transport, "pid", None) or self._pid,
            line=line.rstrip(b"\r").decode("utf-8", "replace"),
        )

    # Ending

    def makeConnection(self, transport: Any) -> None:
        self._pid = getattr(transport, "pid", None)
        super().makeConnection(transport)

    def outConnectionLost(self) -> None:
        self._outputDone = True
        self._maybeEnd()

    def processExited(self, reason: Failure) -> None:
        """
        Log how the script ended; a response whose output ended before its
        head was complete (or was closed by the server) is decided now.
        """
        self._exitReason = reason
        value = reason.value
        exitCode = getattr(value, "exitCode", 0)
        signal = getattr(value, "signal", None)
        if (exitCode or signal) and not self._stopping:
            _log.warn(
                "{script} [{pid}] exited with {how}",
                script=self.scriptName,
                pid=self._pid,
                how=f"signal {signal}" if signal else f"status {exitCode}",
            )
        self._maybeEnd()

    def processEnded(self, reason: Failure) -> None:
        if self._stderr:
            self._logStderr(self._stderr)
            self._stderr = b""
        self._cancelTimer()
        self._cancelLinger()
        self.ended.callback(None)

    # The inactivity timeout

    def _armTimer(self) -> None:
        """
        (Re)start the inactivity timer: the script has shown life.
        """
        self._cancelTimer()
        if self._timeout and not (self._paused or self._stopping or self._finished):
            self._timer = self._reactor.callLater(self._timeout, self._timedOut)

    def _cancelTimer(self) -> None:
        if self._timer is not None:
            if self._timer.active():
                self._timer.cancel()
            self._timer = None

    def _timedOut(self) -> None:
        """
        No output for the timeout: end the script; the client gets a 504 if
        nothing was sent yet, a cut response otherwise.
        """
        self._timer = None
        _log.warn(
            "{script} [{pid}] timed out after {seconds} s without output; ending it",
            script=self.scriptName,
            pid=self._pid,
            seconds=self._timeout,
        )
        alreadyEnded = self._clientGone or self._failed or self._finished
        self._failed = True
        self._stopScript()
        if alreadyEnded:
            return
        request = self.request
        if not request.startedWriting and not self._nph:
            sendError(
                request, 504, "Gateway Timeout", "The CGI script did not answer in time"
            )
            return
        self._cutResponse()

    def stop(self) -> None:
        """
        End the script now (the server is shutting down).
        """
        self._shuttingDown = True
        self._stopScript()

    def _maybeEnd(self) -> None:
        """
        End the response at the end of the script's output, even if the
        script (or what it started) still runs. Only output that ended
        before the head was complete, or that the server closed itself, waits
        for the script's exit: how it ended decides what the client gets.
        (When the script's exit is what closed its output, the transport
        reports the exit first.)
        """
        if not self._outputDone:
            return
        if self._clientGone or self._failed or self._finished:
            return
        exitReason = self._exitReason
        if exitReason is None and (
            self._stopping or (self._head is None and not self._nph)
        ):
            return
        if self._nph:
            self._finished = True
            self._endNPH()
            self._lingerFromNow()
            return
        if self._head is None:
            if self._shuttingDown:
                self._finished = True
                sendError(self.request, 503, "Server shutting down")
                return
            try:
                self._parser.finish()
            except MalformedHead as e:
                self._badGateway(str(e))
            return
        signal = (
            None if exitReason is None else getattr(exitReason.value, "signal", None)
        )
        if signal is not None and not self.request.startedWriting:
            # Nothing has been sent yet (headers go out with the first body
            # byte): the client can still get a status.
            self._finished = True
            self._releaseProducer()
            if self._shuttingDown:
                sendError(self.request, 503, "Server shutting down")
            else:
                _log.warn(
                    "{script} [{pid}] died before its body; 502",
                    script=self.scriptName,
                    pid=self._pid,
                )
                sendError(self.request, 502, "Bad Gateway", "The CGI script failed")
            self._stopScript()
            return
        if signal is not None or (self._remaining is not None and self._remaining > 0):
            # The body is incomplete: closing the connection is the only way
            # the client can tell (a final chunk would look complete).
            _log.warn(
                "{script} [{pid}]: response cut short; closing the connection",
                script=self.scriptName,
                pid=self._pid,
            )
            self._finished = True
            self._cutResponse()
            self._stopScript()
            return
        self._endResponse()

    def _endNPH(self) -> None:
        """
        An NPH response has no framing the server knows: it ends with the
        connection. (The request never finishes, so it is logged here.)
        """
        request = self.request
        self._releaseProducer()
        factory = getattr(getattr(request, "channel", None), "factory", None)
        if factory is not None:
            factory.log(request)
        cutResponse(request)

    def _badGateway(self, why: str) -> None:
        """
        The script's output is not a CGI response: 502, with the cause in the
        log only.
        """
        self._failed = True
        _log.error(
            "{script} [{pid}]: bad CGI response: {why}",
            script=self.scriptName,
            pid=self._pid,
            why=why,
        )
        self._stopScript()
        sendError(self.request, 502, "Bad Gateway", "The CGI script failed")

    def _stopScript(self) -> None:
        """
        End the script and what it started, even if the script itself has
        exited: SIGTERM to its process group, SIGKILL after L{KILL_GRACE}
        seconds if any of it is still there.
        """
        transport: Any = self.transport
        if transport is None or self._stopping:
            return
        self._stopping = True
        self._cancelTimer()
        self._cancelLinger()
        transport.terminate(KILL_GRACE).addCallback(self._terminated)

    def _terminated(self, killed: bool) -> None:
        if killed:
            _log.warn(
                "{script} [{pid}] did not end on SIGTERM; killed",
                script=self.scriptName,
                pid=self._pid,
            )

    # What lingers after the response

    def _lingerFromNow(self) -> None:
        """
        The response is over, but the script or what it started may still
        run: from now on --cgi-timeout bounds how long.
        """
        self._cancelTimer()
        if (
            self._timeout
            and not self._stopping
            and self._lingerTimer is None
            and not self.ended.called
        ):
            self._lingerTimer = self._reactor.callLater(self._timeout, self._lingered)

    def _cancelLinger(self) -> None:
        if self._lingerTimer is not None:
            if self._lingerTimer.active():
                self._lingerTimer.cancel()
            self._lingerTimer = None

    def _lingered(self) -> None:
        self._lingerTimer = None
        _log.warn(
            "{script} [{pid}] still running {seconds} s after its response "
            "ended; ending it",
            script=self.scriptName,
            pid=self._pid,
            seconds=self._timeout,
        )
        self._stopScript()

    def _releaseProducer(self) -> None:
        """
        Stop tying the script's output to the client's pace (the response is
        over, one way or another).
        """
        if self._response is not None:
            self._response.detach()

    def _cutResponse(self) -> None:
        """
        End a response that cannot be completed, the way its protocol
        allows (see L{cutResponse}).
        """
        if self._response is not None:
            self._response.cut()
        else:
            cutResponse(self.request)

    def _clientLost(self, reason: Failure) -> None:
        """
        The client went away: nothing more can be sent; end the script.
        """
        self._clientGone = True
        if self._sender is not None:
            self._sender.stopProducing()
        self._stopScript()

    # IPushProducer, for the response: pause reading the script when the
    # client is slow.

    def pauseProducing(self) -> None:
        # The client is slow: the script waiting on a full pipe is not idle.
        self._paused = True
        self._cancelTimer()
        transport: Any = self.transport
        if transport is not None:
            transport.pauseProducing()

    def resumeProducing(self) -> None:
        self._paused = False
        self._armTimer()
        transport: Any = self.transport
        if transport is not None:
            transport.resumeProducing()

    def stopProducing(self) -> None:
        self._clientLost(Failure(ConnectionError("client gone")))
