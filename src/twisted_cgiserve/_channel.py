# -*- test-case-name: tests.test_site -*-
"""
The HTTP/1.x connection: Twisted's L{HTTPChannel}, answering the requests it
cannot parse instead of dropping them.

Twisted closes the connection without a word when a request or header line
is longer than it accepts, and answers other unparseable requests with a
bare C{400} that has no body; a client (or the person debugging it) then
cannot tell a server limit from a network failure.
"""

from __future__ import annotations

from time import monotonic

from twisted.internet.protocol import connectionDone
from twisted.python.failure import Failure
from twisted.web.http import HTTPChannel

from twisted_cgiserve._errors import errorPage

__all__ = ["CGIServeChannel", "rawErrorResponse"]


def rawErrorResponse(code: int, serverSoftware: bytes) -> bytes:
    """
    A complete error response that closes the connection, for errors found
    before there is a request object to answer through.
    """
    reason, page = errorPage(code)
    return (
        b"HTTP/1.1 %d %s\r\n"
        b"Server: %s\r\n"
        b"Connection: close\r\n"
        b"Content-Type: text/html;charset=utf-8\r\n"
        b"Content-Length: %d\r\n\r\n" % (code, reason, serverSoftware, len(page))
    ) + page


class CGIServeChannel(HTTPChannel):
    """
    An HTTP/1.x channel whose every refusal is a complete response, with
    limits on what a client may send: a deadline for a request's headers
    (so clients trickling bytes cannot hold connections forever) and the
    site's body size limit, enforced before the body is read.
    """

    serverSoftware = b"twisted-cgiserve"
    _host = None
    _refused = False
    # When the request whose headers are being received began (monotonic
    # seconds), or None; the site's sweep refuses overdue ones with 408.
    headerStarted: float | None = None
    _maxBodySize = 0

    def getHost(self) -> object:
        """
        The local address, asked of the socket once per connection rather
        than once per request (Twisted's request constructor asks for it).
        """
        if self._host is None:
            self._host = super().getHost()
        return self._host

    def refuse(self, code: int) -> None:
        """
        Answer C{code} and close the connection; nothing more it sends is
        read.
        """
        if self._refused:
            return
        self._refused = True
        self.headerStarted = None
        if self.transport is not None:
            self.transport.write(rawErrorResponse(code, self.serverSoftware))
        self.loseConnection()

    # Twisted's entry points, silenced once the connection is refused.

    def dataReceived(self, data: bytes) -> None:
        if self._refused:
            return
        # The header deadline runs only while no request is being processed:
        # bytes of a pipelined request wait in Twisted's buffer for the
        # response before them, and that wait is the server's, not the
        # client's.
        if (
            self.headerStarted is None
            and self._receivedHeaderSize == 0
            and not self.requests
            and data
        ):
            self.headerStarted = monotonic()
        super().dataReceived(data)

    def rawDataReceived(self, data: bytes) -> None:
        if not self._refused:
            super().rawDataReceived(data)

    def allContentReceived(self) -> None:
        if not self._refused:
            super().allContentReceived()

    def allHeadersReceived(self) -> None:
        """
        Refuse a body announced larger than the site accepts (413), before
        it is read and before Twisted would answer C{Expect: 100-continue}.
        """
        self.headerStarted = None
        limit = self._maxBodySize
        if limit and self.length is not None and self.length > limit:
            self.refuse(413)
            return
        super().allHeadersReceived()

    def connectionMade(self) -> None:
        super().connectionMade()
        site = getattr(self, "site", None)
        self._maxBodySize = int(getattr(site, "maxBodySize", 0) or 0)

    def connectionLost(self, reason: Failure = connectionDone) -> None:
        self.headerStarted = None
        super().connectionLost(reason)

    # Refusals

    def headerTimedOut(self) -> None:
        """
        The client took too long to send a request's headers.
        """
        self.refuse(408)

    def lineLengthExceeded(self, line: bytes) -> None:
        """
        A line longer than L{MAX_LENGTH}: the request line (414) or a header
        line (431).
        """
        # Twisted resets the header byte count when a request ends, so none
        # counted yet means the long line is the request line.
        self.refuse(414 if self._receivedHeaderSize == 0 else 431)

    def _respondToBadRequestAndDisconnect(self) -> None:
        """
        A request Twisted refuses: too many or too large headers (431), or
        malformed (400; Twisted's own has no body and no C{Server}).
        """
        tooMuch = (
            self._receivedHeaderSize > self.totalHeadersSize
            or self._receivedHeaderCount > self.maxHeaders
        )
        self.refuse(431 if tooMuch else 400)
