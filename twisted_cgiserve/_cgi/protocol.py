# -*- test-case-name: tests.cgi.test_protocol -*-
"""
Running one request through a CGI script: the request body into its
standard input, its output parsed and streamed to the client.

Both directions have flow control: the body is fed to the script only as
fast as it reads it (from the spooled request content, or, for a body
streamed as it arrives, from the client's connection, which is no longer
read while the script's pipe is full: see L{BodyStream}), and when the
client is slow the script's output pipe is no longer read, so the script
blocks in C{write} and the server's memory stays bounded however much it
writes.

The response ends at the end of the script's standard output, as with
Apache and lighttpd, whether or not the script has exited: a script may
answer, close its output and go on working. Whatever is left of its process
group once the response is over (the script itself, or what it started)
is ended by C{--cgi-timeout} counted from the end of the response, without
touching the response; an error, a timeout, a client that goes away and
the server's shutdown end the whole group at once (see L{ScriptProcess}).

The run's life is one L{RunState}; what its output becomes is an
L{IScriptOutput} strategy (parsed CGI or NPH); its standard error is cut
into log lines by a L{LineSplitter}; one timer (L{TimeoutMixin}, on the
injected reactor) bounds both the script's silence while it answers and how
long it may linger once the response is over; ending the process group is
the transport's L{IScriptTransport.terminate}.

Under C{--cgi-debug} (for a client allowed to see it), the run also keeps
the end of the script's standard error, and answers a failure before the
response started with the page of L{twisted_cgiserve._cgi.inspector}: the
output strategy says what failed, the run adds how the script ended.
"""

from __future__ import annotations

import os
from collections.abc import Callable
from enum import Enum
from typing import IO, TYPE_CHECKING, Any, cast

from zope.interface import implementer

from twisted.internet.defer import Deferred
from twisted.internet.interfaces import IDelayedCall
from twisted.internet.protocol import ProcessProtocol
from twisted.logger import Logger
from twisted.protocols.basic import FileSender
from twisted.protocols.policies import TimeoutMixin
from twisted.python.failure import Failure
from twisted.web.iweb import IRequest

from twisted_cgiserve._cgi.inspector import (
    OutputFailure,
    ScriptContext,
    describeExit,
    sendDebugPage,
)
from twisted_cgiserve._cgi.output import (
    IScriptOutput,
    IScriptSource,
    NPHOutput,
    ParsedOutput,
    Progress,
)
from twisted_cgiserve._cgi.process import IScriptTransport
from twisted_cgiserve._cgi.stderr import LineSplitter, StderrTail
from twisted_cgiserve._http.bodystream import BodyStream
from twisted_cgiserve._http.channel import endsAtClientEOF

if TYPE_CHECKING:
    # Only with --metrics is prometheus_client imported.
    from twisted_cgiserve._http.metrics import ServerMetrics

__all__ = ["KILL_GRACE", "RunState", "ScriptRun"]

_log = Logger(namespace="cgiserve.cgi")

# Seconds between SIGTERM and SIGKILL for a script being ended.
KILL_GRACE = 3.0


class RunState(Enum):
    """
    Where a script run stands. It only moves down this list (L{STOPPING}
    and L{LINGERING} are both left for L{ENDING}).
    """

    #: The script answers: its output goes to the client, and the inactivity
    #: timeout runs (not while the client is too slow to take more).
    RUNNING = "running"
    #: The server's shutdown is ending the script before its response is
    #: over: output still goes to the client, and how the script ends
    #: decides the rest of the response.
    STOPPING = "stopping"
    #: The response is complete; the script, or what it started, may still
    #: run: C{--cgi-timeout} from the response's end bounds how long.
    LINGERING = "lingering"
    #: The response is over, one way or another, and the process group is
    #: being ended; output is dropped.
    ENDING = "ending"
    #: Nothing of the process group is left.
    ENDED = "ended"


# Where the script's output still reaches the client.
_ANSWERING = (RunState.RUNNING, RunState.STOPPING)


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


# What the timer means in each state that keeps it running.
_TIMED_OUT = {
    RunState.RUNNING: (
        "{script} [{pid}] timed out after {seconds} s without output; ending it"
    ),
    RunState.LINGERING: (
        "{script} [{pid}] still running {seconds} s after its response ended; ending it"
    ),
}


@implementer(IScriptSource)
class ScriptRun(TimeoutMixin, ProcessProtocol):
    """
    The protocol of one script process serving one request, on an
    L{IScriptTransport}; the push producer of its response's body.

    @ivar scriptName: The script's URL path, for log lines.
    @ivar pid: The script's process ID, once it has started.
    @ivar state: Where the run stands.
    @ivar ended: Fires once nothing of the script's process group is left.
    """

    def __init__(
        self,
        request: IRequest,
        scriptName: str,
        localRedirect: Callable[[Any, bytes], object],
        reactor: Any,
        *,
        nph: bool = False,
        timeout: float = 0,
        debug: ScriptContext | None = None,
        metrics: ServerMetrics | None = None,
    ) -> None:
        """
        @param localRedirect: Serves a local redirect's path for C{request}.
        @param reactor: The reactor the response and the timer run on.
        @param nph: Whether the script writes the whole HTTP response.
        @param timeout: Seconds of silence before the script is ended, and
            that it may linger after its response (0: no bound).
        @param debug: What the script was started with, when a failure is
            to be answered with the C{--cgi-debug} page (an NPH script
            writes its own response: never).
        @param metrics: What counts timeouts and failures (C{--metrics}).
        """
        self._metrics = metrics
        # Any Twisted request: the finish-notification and C{content} used
        # here are not part of IRequest.
        self.request: Any = cast(Any, request)
        self.scriptName = scriptName
        self._pid: int | None = None
        self.state = RunState.RUNNING
        self.ended: Deferred[None] = Deferred()
        self._reactor = reactor
        self._timeout: float | None = timeout or None
        self._debug = None if nph else debug
        self._output: IScriptOutput = (
            NPHOutput(request, self, reactor)
            if nph
            else ParsedOutput(
                request,
                self,
                reactor,
                localRedirect,
                inspect=None if self._debug is None else self._showFailure,
                metrics=metrics,
            )
        )
        self._stderr = LineSplitter()
        # For the --cgi-debug page only, besides the lines for the log.
        self._stderrTail = None if self._debug is None else StderrTail()
        self._timedOut = False
        self._sender: FileSender | None = None
        self._stream: BodyStream | None = None
        # What the transport has reported: the end of the script's output,
        # and how the script exited.
        self._outputEnded = False
        self._exitReason: Failure | None = None
        self.request.notifyFinish().addErrback(self._clientLost)
        # A client that ends its input while the script runs is taken as
        # gone (the channel's half-close rules).
        endsAtClientEOF(self.request)

    # Starting up

    def _keepPid(self, result: object) -> object:
        self.pid  # noqa: B018 (the property keeps what it reads)
        return result

    @property
    def pid(self) -> int | None:
        """
        The script's process ID, once it has started: kept for log lines
        once the transport has reaped the script (a script the spawner
        starts has none until it answers).
        """
        pid: int | None = getattr(self.transport, "pid", None)
        if pid is not None:
            self._pid = pid
        return self._pid

    def notStarted(self) -> bool:
        """
        The transport could not start the script after all (the spawner's
        late answer): stop feeding it, stop the timer, drop whatever comes
        from its pipes, and say nothing to the client, whose answer is the
        gateway's. The transport then reports the end.

        @return: Whether the client still waits for an answer (it neither
            went away nor was answered by a timeout).
        """
        answering = self.state in _ANSWERING and not self._timedOut
        if self._sender is not None:
            self._sender.stopProducing()
        if self._stream is not None:
            self._stream.discard()
        if self.state is not RunState.ENDED:
            self._become(RunState.ENDING)
        return answering

    def connectionMade(self) -> None:
        """
        Start the inactivity timeout, and feed the request body to the
        script's standard input.
        """
        content = cast("IO[bytes] | None", getattr(self.request, "content", None))
        transport = self.transport
        assert transport is not None
        started = getattr(transport, "started", None)
        if isinstance(started, Deferred):
            # The CGI spawner says the pid later, and forgets it again as
            # soon as the script's group has ended, which may be before its
            # standard error is read: kept now for those log lines.
            started.addCallback(self._keepPid)
        self.setTimeout(self._timeout)
        if content is None or self.request.method == b"HEAD":
            transport.closeStdin()
            return
        if isinstance(content, BodyStream):
            # The body is still arriving: the script reads it as it does.
            self._stream = content
            content.attach(
                _ActivityConsumer(transport, self._activity), transport.closeStdin
            )
            return
        if not content.seek(0, os.SEEK_END):
            # No body (most requests): nothing to send, no sender to set up.
            transport.closeStdin()
            return
        content.seek(0)
        self._sender = FileSender()
        # A pipe's capacity per write, not FileSender's 16 KiB.
        self._sender.CHUNK_SIZE = 64 * 1024
        done = self._sender.beginFileTransfer(
            content, _ActivityConsumer(transport, self._activity)
        )
        done.addCallbacks(lambda _: transport.closeStdin(), lambda _: None)

    # The run's state, and its one timer

    def _become(self, state: RunState) -> None:
        """
        Move to C{state}. The one timer follows: while running it is the
        inactivity timeout (set up when the script starts); once the response
        is complete it bounds how long the script may linger, counted from
        now; in any other state there is none.
        """
        self.state = state
        self.setTimeout(self._timeout if state is RunState.LINGERING else None)

    def callLater(self, period: float, func: Callable[[], object]) -> IDelayedCall:
        """
        L{TimeoutMixin}'s timer runs on the run's reactor (a fake clock in
        tests), not the global one.
        """
        delayed: IDelayedCall = self._reactor.callLater(period, func)
        return delayed

    def _activity(self) -> None:
        """
        The script showed life: restart the inactivity timeout. (Only while
        it answers: a lingering script's bound counts from the response's
        end, whatever it does.)
        """
        if self.state is RunState.RUNNING:
            self.resetTimeout()

    def timeoutConnection(self) -> None:
        """
        The timer ran out: a running script was silent for the timeout (the
        client gets a 504 if nothing was sent yet, a cut response
        otherwise), or a lingering one outlived its bound.
        """
        state = self.state
        message = _TIMED_OUT.get(state)
        if message is None:
            return
        _log.warn(message, script=self.scriptName, pid=self.pid, seconds=self._timeout)
        self._endScript()
        if state is RunState.RUNNING:
            # Lingering, the response is already complete.
            self._timedOut = True
            if self._metrics is not None:
                self._metrics.cgiTimedOut()
            self._output.timedOut()

    # Output

    def outReceived(self, data: bytes) -> None:
        self._activity()
        if self.state in _ANSWERING:
            self._progressed(self._output.dataReceived(data))

    def _progressed(self, progress: Progress) -> None:
        """
        Follow what the output strategy says of the response.
        """
        if progress is Progress.STREAMING or self.state not in _ANSWERING:
            return
        if self.state is RunState.STOPPING:
            # The shutdown already asked the group to end.
            self._become(RunState.ENDING)
        elif progress is Progress.COMPLETE:
            self._become(RunState.LINGERING)
        else:
            self._endScript()

    # Standard error

    def errReceived(self, data: bytes) -> None:
        if self._stderrTail is not None:
            self._stderrTail.feed(data)
        for line in self._stderr.feed(data):
            self._logStderr(line)

    def _logStderr(self, line: bytes) -> None:
        _log.warn(
            "{script} [{pid}]: {line}",
            script=self.scriptName,
            pid=self.pid,
            line=line.rstrip(b"\r").decode("utf-8", "replace"),
        )

    # The --cgi-debug page

    def _showFailure(self, failure: OutputFailure) -> None:
        """
        Answer the output strategy's failure with the C{--cgi-debug} page:
        what it saw, and what the run knows of the script's end and its
        standard error.
        """
        assert self._debug is not None and self._stderrTail is not None
        transport = self.transport
        if transport is not None:
            # What it wrote last (often the reason it failed) may still be
            # in the pipe; ending the script closes it.
            cast(IScriptTransport, transport).readPendingStderr()
        ended = describeExit(self._exitReason)
        if self._timedOut:
            ended = f"timed out after {self._timeout:g} s without output; {ended}"
        sendDebugPage(
            self.request,
            self._debug,
            failure,
            ended=ended,
            stderr=self._stderrTail.value(),
            stderrDropped=self._stderrTail.dropped,
        )

    # Ending

    def outConnectionLost(self) -> None:
        self._outputEnded = True
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
        if (exitCode or signal) and self.state not in (
            RunState.STOPPING,
            RunState.ENDING,
        ):
            _log.warn(
                "{script} [{pid}] exited with {how}",
                script=self.scriptName,
                pid=self.pid,
                how=f"signal {signal}" if signal else f"status {exitCode}",
            )
        self._maybeEnd()

    def processEnded(self, reason: Failure) -> None:
        for line in self._stderr.flush():
            self._logStderr(line)
        self._become(RunState.ENDED)
        self.ended.callback(None)

    def _maybeEnd(self) -> None:
        """
        End the response at the end of the script's output. Output that the
        server closed itself (the shutdown) waits for the script's exit, and
        so, as the strategy says, does output that ended before the head
        was complete: how the script ended decides what the client gets.
        (When the script's exit is what closed its output, the transport
        reports the exit first.)
        """
        if not self._outputEnded or self.state not in _ANSWERING:
            return
        stopping = self.state is RunState.STOPPING
        if self._exitReason is None and stopping:
            return
        progress = self._output.outputEnded(self._exitReason, stopping)
        if progress is not None:
            self._progressed(progress)

    def stop(self) -> None:
        """
        End the script now (the server is shutting down).
        """
        if self.state is RunState.RUNNING:
            self._become(RunState.STOPPING)
            self._terminate()
        elif self.state is RunState.LINGERING:
            self._endScript()

    def _endScript(self) -> None:
        """
        The response is over: end the script and what it started, even if
        the script itself has exited.
        """
        previous = self.state
        if previous in (RunState.ENDING, RunState.ENDED):
            return
        self._become(RunState.ENDING)
        if previous is not RunState.STOPPING:
            self._terminate()

    def _terminate(self) -> None:
        """
        SIGTERM to the script's process group, SIGKILL after L{KILL_GRACE}
        seconds if any of it is still there (L{IScriptTransport.terminate}).
        """
        transport: Any = self.transport
        if transport is not None:
            transport.terminate(KILL_GRACE).addCallback(self._terminated)

    def _terminated(self, killed: bool) -> None:
        if killed:
            _log.warn(
                "{script} [{pid}] did not end on SIGTERM; killed",
                script=self.scriptName,
                pid=self.pid,
            )

    def _clientLost(self, reason: Failure) -> None:
        """
        The client went away: nothing more can be sent; end the script.
        """
        if self._sender is not None:
            self._sender.stopProducing()
        if self._stream is not None:
            self._stream.discard()
        self._endScript()

    # IPushProducer, for the response: pause reading the script when the
    # client is slow.

    def pauseProducing(self) -> None:
        if self.state is RunState.RUNNING:
            # The client is slow: the script waiting on a full pipe is not
            # idle.
            self.setTimeout(None)
        transport: Any = self.transport
        if transport is not None:
            transport.pauseProducing()

    def resumeProducing(self) -> None:
        if self.state is RunState.RUNNING:
            self.setTimeout(self._timeout)
        transport: Any = self.transport
        if transport is not None:
            transport.resumeProducing()

    def stopProducing(self) -> None:
        self._clientLost(Failure(ConnectionError("client gone")))
