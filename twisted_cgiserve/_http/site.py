# -*- test-case-name: tests.http.test_site -*-
"""
The HTTP site: Twisted's L{Site} with this server's requests and
connections, its limits, its access log, and what a graceful shutdown
needs: the connections open and the requests in flight, closing the idle
connections while it drains, and whether it has settled.
"""

from __future__ import annotations

from collections.abc import Sequence
from io import BytesIO
from time import monotonic
from typing import IO, TYPE_CHECKING, Any, cast

from twisted.internet.interfaces import IAddress
from twisted.internet.task import LoopingCall
from twisted.web import http
from twisted.web.resource import IResource
from twisted.web.server import Site

from twisted_cgiserve._http.accesslog import AccessLog
from twisted_cgiserve._http.basicauth import EarlyGate
from twisted_cgiserve._http.clock import SecondClock
from twisted_cgiserve._http.connection import HTTPConnection
from twisted_cgiserve._http.request import CGIServeRequest
from twisted_cgiserve._http.response import DEFAULT_SEND_TIMEOUT
from twisted_cgiserve._http.spool import IN_MEMORY, BodySpool
from twisted_cgiserve._version import SERVER_SOFTWARE

if TYPE_CHECKING:
    # Only with --metrics is prometheus_client imported.
    from twisted_cgiserve._http.metrics import ServerMetrics

__all__ = ["CGIServeSite"]

_SERVER = SERVER_SOFTWARE.encode("ascii")

# Seconds a connection accepted just before the server began to drain has to
# send its first bytes before it is closed as idle.
_FIRST_BYTES = 1.0


class CGIServeSite(Site):
    """
    The site C{twistd cgiserve} listens with.
    """

    requestFactory = CGIServeRequest
    # One "Starting factory" line per start is noise in a server's log.
    noisy = False

    def __init__(
        self,
        resource: IResource,
        accessLog: AccessLog | None = None,
        *,
        maxBodySize: int = 1024 * 1024 * 1024,
        headerTimeout: float = 20.0,
        sendTimeout: float = DEFAULT_SEND_TIMEOUT,
        extraHeaders: Sequence[tuple[bytes, bytes]] = (),
        authGate: EarlyGate | None = None,
        metrics: ServerMetrics | None = None,
        **kw: Any,
    ) -> None:
        """
        @param maxBodySize: The largest request body accepted, in bytes (0
            for no limit); larger ones get 413.
        @param headerTimeout: Seconds a client has to send a request's
            headers once it started it (0 for no limit); then 408.
        @param sendTimeout: Seconds a response may make no progress (the
            client does not read) before it is cut (0 for no limit).
        @param extraHeaders: Headers added to successful responses that do
            not already have them (C{--header}).
        @param authGate: Asked at the end of each request's head whether to
            refuse it with 401 before its body is read (C{--auth-file}).
        @param metrics: What counts requests and connections (C{--metrics}),
            or L{None}.
        @param kw: For L{Site}; C{timeout} is the idle connection timeout.
        """
        # Twisted would parse form POSTs into request.args, reading the whole
        # body into memory; request bodies here are for CGI scripts, which
        # read them from standard input.
        kw.setdefault("parsePOSTFormSubmission", False)
        super().__init__(resource, **kw)
        # The time of the Date header (and of the access log this site makes
        # when given none): the reactor's, the wall clock for a real one.
        self.clock = SecondClock(self.reactor.seconds)
        if accessLog is None:
            accessLog = AccessLog(clock=self.clock)
        self.accessLog = accessLog
        self.maxBodySize = maxBodySize
        self.headerTimeout = headerTimeout
        self.sendTimeout = sendTimeout
        self.extraHeaders = tuple(extraHeaders)
        self.authGate = authGate
        self.metrics = metrics
        self.inFlight: set[CGIServeRequest] = set()
        self.draining = False
        self.channels: set[HTTPConnection] = set()
        self._sweeper: LoopingCall | None = None

    # Twisted annotates the result as its own (private) connection class;
    # a factory may build any protocol.
    def buildProtocol(  # type: ignore[override]
        self, addr: IAddress | None
    ) -> HTTPConnection:
        """
        A new client connection: HTTP/1.x, switching to HTTP/2 when TLS
        negotiates it.
        """
        return HTTPConnection(self, _SERVER)

    def channelOpened(self, connection: HTTPConnection) -> None:
        """
        C{connection} was accepted.
        """
        self.channels.add(connection)
        if self.metrics is not None:
            self.metrics.connectionOpened(connection.protocolName)

    def channelClosed(self, connection: HTTPConnection) -> None:
        """
        C{connection} is closed.
        """
        self.channels.discard(connection)
        if self.metrics is not None:
            self.metrics.connectionClosed(connection.protocolName)

    def closeConnections(self) -> None:
        """
        Close every connection once what was written to it has been sent
        (the reactor's own shutdown drops connections, unsent bytes and all);
        HTTP/2 connections still sending are left for a later call.
        """
        for connection in list(self.channels):
            # An HTTP/2 connection hands response data to its transport a
            # frame per reactor turn: closing the transport now would cut
            # the streams still sending. It is closed on a later call.
            if connection.sending:
                continue
            connection.close()

    def connectionsOpen(self) -> int:
        """
        How many connections have not finished closing.
        """
        return len(self.channels)

    def requestStarted(self, request: CGIServeRequest) -> None:
        """
        Track a request until it ends (L{requestEnded}), so shutdown can wait
        for it.
        """
        self.inFlight.add(request)
        if self.metrics is not None:
            self.metrics.requestStarted(request)

    def requestEnded(self, request: CGIServeRequest) -> None:
        """
        C{request} has ended: answered, or its client gone.
        """
        self.inFlight.discard(request)
        if self.metrics is not None:
            # Logged (and counted) already, or never answered.
            self.metrics.requestForgotten(request)

    def startDraining(self) -> None:
        """
        The server is stopping: no connection is kept alive from now on.
        Each connection is closed as soon as it is idle (see
        L{HTTPConnection.closeIfIdle}); requests in progress, and those already
        arriving, are answered first.
        """
        self.draining = True
        self.closeIdleConnections()

    def closeIdleConnections(self) -> None:
        """
        Close the connections that have become idle since the last call.
        """
        now = self.reactor.seconds()
        patience = min(_FIRST_BYTES, self.headerTimeout or _FIRST_BYTES)
        for connection in list(self.channels):
            connection.closeIfIdle(now, patience)

    def settled(self) -> bool:
        """
        Whether a draining server has nothing left to answer: no request in
        flight and every connection closing.
        """
        return not self.inFlight and all(c.closing for c in self.channels)

    def startFactory(self) -> None:
        """
        Start the header deadline's sweep.

        Twisted's own start is skipped: it opens Twisted's access log and
        starts a timer that formats that log's timestamp every second,
        neither of which this site uses (its lines go to L{AccessLog}, timed
        by L{SecondClock}).
        """
        if self.headerTimeout and self._sweeper is None:
            self._sweeper = LoopingCall(self._sweepHeaders)
            self._sweeper.clock = self.reactor
            self._sweeper.start(min(1.0, self.headerTimeout / 4), now=False)

    def _sweepHeaders(self) -> None:
        """
        Refuse (408) the connections whose request headers are overdue: one
        pass a second over the open connections instead of a timer per
        request.
        """
        deadline = monotonic() - self.headerTimeout
        for connection in list(self.channels):
            connection.checkHeaderDeadline(deadline)

    def logRefusal(
        self,
        request: http.Request,
        line: bytes | None,
        *,
        waited: float,
        headComplete: bool,
    ) -> None:
        """
        A request the HTTP/1.x connection refused itself (C{400}, C{408},
        C{413}, C{414}, C{431}, the early C{401}), its code and page length
        set: logged and counted as every answered request is, as nginx and
        Apache log them (a C{fail2ban} filter counts those 401s and 400s).

        @param line: Its request line, when the connection had parsed it
            (C{-} in the log otherwise: Apache writes that for a C{408}).
        @param waited: Seconds it has taken so far, for its duration
            (unless it is in flight already: its body refused).
        @param headComplete: Whether its head had all arrived, and so a
            trusted proxy's word on its client may be taken.
        """
        if isinstance(request, CGIServeRequest):
            if headComplete:
                request.headArrived()
            elif line is not None:
                request.clientRequestLine = line
        if line is not None:
            request.method = line.split(b" ", 1)[0]
        if self.metrics is not None:
            self.metrics.requestStarted(request, ago=waited)
        self.log(request)

    def getContentFile(self, length: int | None) -> IO[bytes]:
        """
        Where a request body is kept until it is used: in memory when small,
        otherwise in a temporary file, including a chunked body whose length
        is not announced (Twisted keeps those in memory). The file is
        written unbuffered, so a full disk is known (and refused with 507)
        at the chunk that fills it.
        """
        if length is not None and length <= IN_MEMORY:
            return BytesIO()
        return cast(IO[bytes], BodySpool(IN_MEMORY))

    def stopFactory(self) -> None:
        if self._sweeper is not None and self._sweeper.running:
            self._sweeper.stop()
        self._sweeper = None
        self.accessLog.flush()
        super().stopFactory()

    def log(self, request: http.Request) -> None:
        self.accessLog.write(request)
        # Every request the access log sees, with what it records.
        if self.metrics is not None:
            self.metrics.requestLogged(
                request, request.method, request.code, request.sentLength
            )
