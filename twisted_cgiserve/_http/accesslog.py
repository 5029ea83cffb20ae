# -*- test-case-name: tests.http.test_accesslog -*-
"""
The access log: one line per request in Apache's combined log format, the
format every log analyser, fail2ban filter and logrotate recipe expects.

Twisted's own formatter quotes the client address, which no parser of the
combined format accepts; this one writes it bare. Every field a client
controls is escaped, so a request cannot forge log lines.
"""

from __future__ import annotations

import errno
import os
import stat
import time
from io import FileIO
from typing import Any

from twisted.internet.address import IPv4Address, IPv6Address
from twisted.logger import Logger
from twisted.web.http import Request

from twisted_cgiserve._http.basicauth import authenticationOf
from twisted_cgiserve._http.clock import SecondClock
from twisted_cgiserve._http.logfield import escapeField
from twisted_cgiserve._http.request import CGIServeRequest

__all__ = ["AccessLog", "combinedLogLine"]

_accessLogger = Logger(namespace="cgiserve.access")
_log = Logger(namespace="cgiserve.accesslog")

_IP_ADDRESSES = (IPv4Address, IPv6Address)

# The bytes escapeField changes: control characters (C0, DEL, C1), the
# quote and the backslash.
_ESCAPED = bytes([*range(0x20), *range(0x7F, 0xA0), ord('"'), ord("\\")])


def _field(value: bytes | None) -> str:
    """
    L{escapeField}, without its per-character pass for the common field that
    holds nothing to escape (a check in C first).
    """
    if value is not None and len(value.translate(None, _ESCAPED)) == len(value):
        return value.decode("latin-1")
    return escapeField(value)


def combinedLogLine(request: Request, timestamp: str) -> str:
    """
    The combined-log-format line for a finished request, without newline.

    @param timestamp: When the request ended, as
        L{SecondClock.logTimestamp} writes it.
    """
    address = request.getClientAddress()
    host = address.host if isinstance(address, _IP_ADDRESSES) else "-"
    headers = request.requestHeaders
    referer = headers.getRawHeaders(b"referer")
    agent = headers.getRawHeaders(b"user-agent")
    # A CGI local redirect rewrites the request; the log shows what the
    # client sent, as Apache's %r does. A plain twisted.web request keeps
    # no record of it: what it holds now is all there is.
    if isinstance(request, CGIServeRequest):
        requestLine = request.clientRequestLine
    else:
        requestLine = b"%s %s %s" % (request.method, request.uri, request.clientproto)
    # The user Basic authentication verified (never one a client merely
    # claims), escaped and without spaces: the field is not quoted.
    authentication = authenticationOf(request)
    user = "-"
    if authentication is not None and authentication.user is not None:
        user = escapeField(authentication.user).replace(" ", "\\x20")
    return '{} - {} {} "{}" {} {} "{}" "{}"'.format(
        host,
        user,
        timestamp,
        _field(requestLine),
        request.code,
        request.sentLength or "-",
        _field(referer[-1] if referer else None),
        _field(agent[-1] if agent else None),
    )


# A full disk is said at most this often (seconds), and so is the count of
# lines it cost.
_WARN_EVERY = 60.0


class AccessLog:
    """
    Where access-log lines go: a file (appended to), standard output (C{-}),
    or, by default, twistd's own log.

    Lines for a file are collected while the reactor handles a batch of
    requests and written with one C{write} at the end of that reactor turn:
    always whole lines (C{tail -f} and logrotate's C{copytruncate} see no
    partial ones), at most one turn late, and without a system call per
    request.

    A file that cannot be written (a full disk, a quota) does not stop the
    server: lines that cannot be written are dropped and counted, a warning
    names the file and the error at most once a minute, and once writing
    works again the count is logged. Lines are not kept for later: on a
    disk that stays full they would grow without bound.

    A line is in the file whole or not at all. The disk may fill in the
    middle of one; the part written is then cut off the file again, since
    the next line written would be glued to it. Where it cannot be cut off
    (not a regular file, or another process has appended since), its rest
    is written before anything else once writing works again.
    """

    def __init__(
        self,
        path: str | None = None,
        reactor: Any = None,
        *,
        clock: SecondClock | None = None,
    ) -> None:
        """
        @param path: The file to append to, C{-} for standard output, or
            L{None} for twistd's log.
        @param reactor: Collects a file's lines for one write per reactor
            turn; without one, each line is written at once.
        @param clock: The time of the lines; by default the reactor's (the
            wall clock without a reactor).
        """
        self.path = path
        self._reactor = reactor
        if clock is None:
            clock = SecondClock(time.time if reactor is None else reactor.seconds)
        self._clock = clock
        self._file: FileIO | None = None
        self._pending: list[str] = []
        # The rest of a line only partly written, to write before anything
        # else.
        self._rest = b""
        # Lines dropped since the count was last logged.
        self._lost = 0
        # A write failed since the lost lines were last counted.
        self._failing = False
        # When the last warning and the last count were logged.
        self._warnedAt: float | None = None
        self._countedAt: float | None = None
        if path == "-":
            self._file = FileIO(1, "wb", closefd=False)
        elif path is not None:
            self._file = self._open(path)

    def write(self, request: Request) -> None:
        """
        Log one finished request.
        """
        line = combinedLogLine(request, self._clock.logTimestamp())
        if self._file is None:
            # Naming the system spares twistd's observer from deriving
            # "namespace#level" for every request.
            _accessLogger.info("{line}", line=line, log_system="cgiserve.access")
            return
        if self._reactor is None:
            self._pending.append(line)
            self.flush()
            return
        if not self._pending:
            self._reactor.callLater(0, self.flush)
        self._pending.append(line)

    def flush(self) -> None:
        """
        Write the lines collected so far, or count them as lost.
        """
        if self._file is None or not (self._pending or self._rest):
            return
        lines = [(line + "\n").encode("utf-8", "replace") for line in self._pending]
        self._pending = []
        rest, self._rest = self._rest, b""
        data = memoryview(rest + b"".join(lines))
        written = 0
        try:
            while written < len(data):
                count = self._file.write(data[written:])
                if not count:
                    # A non-blocking standard output that is full.
                    raise BlockingIOError(errno.EAGAIN, os.strerror(errno.EAGAIN))
                written += count
        except OSError as e:
            self._failed(e, rest, lines, written)
        else:
            self._worked()

    def _failed(
        self, error: OSError, rest: bytes, lines: list[bytes], written: int
    ) -> None:
        """
        A write failed after C{written} bytes of C{rest} (the end of an
        earlier partial line) and C{lines}: leave the file with whole lines
        only, count the lines lost, and warn if that was not done in the
        last minute.
        """
        if written < len(rest):
            # Still not the end of the earlier line: everything new is lost.
            self._rest = rest[written:]
            lost = len(lines)
        else:
            written -= len(rest)
            done = 0
            while done < len(lines) and written >= len(lines[done]):
                written -= len(lines[done])
                done += 1
            if written and not self._cutOff(written):
                # This line is completed later rather than lost.
                self._rest = lines[done][written:]
                done += 1
            lost = len(lines) - done
        self._lost += lost
        self._failing = True
        now = self._now()
        if self._warnedAt is None or now - self._warnedAt >= _WARN_EVERY:
            self._warnedAt = now
            _log.warn(
                "Cannot write the access log {path}: {error}; requests are "
                "served but not logged (lines lost so far: {lost}; said at "
                "most once a minute)",
                path=self._name(),
                error=error.strerror or str(error),
                lost=self._lost,
            )

    def _cutOff(self, length: int) -> bool:
        """
        Remove the last C{length} bytes, a partial line, from the file.

        @return: Whether they were removed: not when the file is not a
            regular file, or has grown since (another process appends to
            it: cutting would remove its lines).
        """
        assert self._file is not None
        try:
            end = self._file.tell()
            status = os.fstat(self._file.fileno())
            if not stat.S_ISREG(status.st_mode) or status.st_size != end:
                return False
            # Shrinking a file needs no space, so this works on a full disk.
            self._file.truncate(end - length)
        except OSError:
            return False
        return True

    def _worked(self) -> None:
        """
        A write worked: after failures, log how many lines were lost, at
        most once a minute (a later write reports the rest).
        """
        if not self._failing:
            return
        now = self._now()
        if self._countedAt is None or now - self._countedAt >= _WARN_EVERY:
            self._countedAt = now
            self._reportLost("can be written again")

    def _reportLost(self, what: str) -> None:
        _log.warn(
            "The access log {path} {what}; lines lost: {lost}.",
            path=self._name(),
            what=what,
            lost=self._lost,
        )
        self._lost = 0
        self._failing = False

    def _now(self) -> float:
        if self._reactor is not None:
            seconds: float = self._reactor.seconds()
            return seconds
        return time.monotonic()

    def _name(self) -> str:
        return "standard output" if self.path == "-" else repr(self.path)

    def reopen(self) -> bool:
        """
        Open the file again by name, for logrotate: lines already collected
        go to the old file, later ones to the new.

        @return: Whether there is a file to reopen.

        @raise OSError: The file cannot be opened; the old one stays in
            use.
        """
        if self.path is None or self.path == "-" or self._file is None:
            return False
        new = self._open(self.path)
        self.flush()
        if self._rest:
            # The old file keeps its partial line: it cannot be finished in
            # the new one.
            self._rest = b""
            self._lost += 1
        self._file.close()
        self._file = new
        return True

    @staticmethod
    def _open(path: str) -> FileIO:
        fd = os.open(path, os.O_WRONLY | os.O_APPEND | os.O_CREAT | os.O_CLOEXEC, 0o640)
        return FileIO(fd, "wb")

    def close(self) -> None:
        self.flush()
        if self._failing:
            self._reportLost("is closed")
        if self._file is not None:
            self._file.close()
        self._file = None
