# -*- test-case-name: tests.test_accesslog -*-
"""
The access log: one line per request in Apache's combined log format, the
format every log analyser, fail2ban filter and logrotate recipe expects.

Twisted's own formatter quotes the client address, which no parser of the
combined format accepts; this one writes it bare. Every field a client
controls is escaped, so a request cannot forge log lines.
"""

from __future__ import annotations

import os
import time
from typing import Any

from twisted.logger import Logger
from twisted.web.http import Request

__all__ = ["AccessLog", "combinedLogLine"]

_MONTHS = ("Jan", "Feb", "Mar", "Apr", "May", "Jun",
           "Jul", "Aug", "Sep", "Oct", "Nov", "Dec")  # fmt: skip

_ESCAPES = {
    **{i: f"\\x{i:02x}" for i in range(0x20)},
    **{i: f"\\x{i:02x}" for i in range(0x7F, 0xA0)},
    ord('"'): '\\"',
    ord("\\"): "\\\\",
}


def _escape(value: bytes | None) -> str:
    """
    A client-controlled field, made safe for one quoted log field.
    """
    if value is None:
        return "-"
    return value.decode("latin-1").translate(_ESCAPES)


class _Clock:
    """
    The bracketed log timestamp, formatted once per second rather than once
    per request.
    """

    def __init__(self) -> None:
        self._second = -1
        self._text = ""

    def now(self) -> str:
        second = int(time.time())
        if second != self._second:
            t = time.localtime(second)
            offset = t.tm_gmtoff // 60
            sign = "+" if offset >= 0 else "-"
            self._text = (
                f"[{t.tm_mday:02d}/{_MONTHS[t.tm_mon - 1]}/{t.tm_year:04d}:"
                f"{t.tm_hour:02d}:{t.tm_min:02d}:{t.tm_sec:02d} "
                f"{sign}{abs(offset) // 60:02d}{abs(offset) % 60:02d}]"
            )
            self._second = second
        return self._text


_clock = _Clock()
_accessLogger = Logger(namespace="cgiserve.access")


def combinedLogLine(request: Request, timestamp: str | None = None) -> str:
    """
    The combined-log-format line for a finished request, without newline.
    """
    address = request.getClientAddress()
    host = getattr(address, "host", None) or "-"
    headers = request.requestHeaders
    referer = headers.getRawHeaders(b"referer")
    agent = headers.getRawHeaders(b"user-agent")
    # A local redirect rewrites the request; the log shows what the client
    # sent, as Apache's %r does.
    requestLine = getattr(request, "originalRequestLine", None) or (
        b"%s %s %s" % (request.method, request.uri, request.clientproto)
    )
    sent = getattr(request, "sentLength", 0)
    return '{} - - {} "{}" {} {} "{}" "{}"'.format(
        host,
        timestamp or _clock.now(),
        _escape(requestLine),
        request.code,
        sent or "-",
        _escape(referer[-1] if referer else None),
        _escape(agent[-1] if agent else None),
    )


class AccessLog:
    """
    Where access-log lines go: a file (appended to), standard output (C{-}),
    or, by default, twistd's own log.

    Lines for a file are collected while the reactor handles a batch of
    requests and written with one C{write} at the end of that reactor turn:
    always whole lines (C{tail -f} and logrotate's C{copytruncate} see no
    partial ones), at most one turn late, and without a system call per
    request.
    """

    def __init__(self, path: str | None = None, reactor: Any = None) -> None:
        self.path = path
        self._reactor = reactor
        self._fd: int | None = None
        self._pending: list[str] = []
        if path == "-":
            self._fd = 1
        elif path is not None:
            self._fd = self._open(path)

    def write(self, request: Request) -> None:
        """
        Log one finished request.
        """
        line = combinedLogLine(request)
        if self._fd is None:
            # Naming the system spares twistd's observer from deriving
            # "namespace#level" for every request.
            _accessLogger.info("{line}", line=line, log_system="cgiserve.access")
            return
        if self._reactor is None:
            os.write(self._fd, (line + "\n").encode("utf-8", "replace"))
            return
        if not self._pending:
            self._reactor.callLater(0, self.flush)
        self._pending.append(line)

    def flush(self) -> None:
        """
        Write the lines collected so far.
        """
        if self._pending and self._fd is not None:
            lines, self._pending = self._pending, []
            data = "\n".join(lines).encode("utf-8", "replace") + b"\n"
            while data:
                written = os.write(self._fd, data)
                data = data[written:]

    def reopen(self) -> bool:
        """
        Open the file again by name, for logrotate: lines already collected
        go to the old file, later ones to the new.

        @return: Whether there is a file to reopen.

        @raise OSError: The file cannot be opened; the old one stays in
            use.
        """
        if self.path is None or self.path == "-" or self._fd is None:
            return False
        fd = self._open(self.path)
        self.flush()
        os.close(self._fd)
        self._fd = fd
        return True

    @staticmethod
    def _open(path: str) -> int:
        return os.open(
            path, os.O_WRONLY | os.O_APPEND | os.O_CREAT | os.O_CLOEXEC, 0o640
        )

    def close(self) -> None:
        self.flush()
        if self._fd is not None and self._fd != 1:
            os.close(self._fd)
        self._fd = None
