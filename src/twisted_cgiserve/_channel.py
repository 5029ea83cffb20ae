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
    An HTTP/1.x channel whose every refusal is a complete response.
    """

    serverSoftware = b"twisted-cgiserve"
    _host = None

    def getHost(self) -> object:
        """
        The local address, asked of the socket once per connection rather
        than once per request (Twisted's request constructor asks for it).
        """
        if self._host is None:
            self._host = super().getHost()
        return self._host

    def _refuse(self, code: int) -> None:
        if self.transport is not None:
            self.transport.write(rawErrorResponse(code, self.serverSoftware))
        self.loseConnection()

    def lineLengthExceeded(self, line: bytes) -> None:
        """
        A line longer than L{MAX_LENGTH}: the request line (414) or a header
        line (431).
        """
        # Twisted resets the header byte count when a request ends, so none
        # counted yet means the long line is the request line.
        self._refuse(414 if self._receivedHeaderSize == 0 else 431)

    def _respondToBadRequestAndDisconnect(self) -> None:
        """
        A malformed request (Twisted's bare C{400} has no body and no
        C{Server}).
        """
        self._refuse(400)
