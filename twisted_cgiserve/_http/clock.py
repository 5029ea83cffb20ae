# -*- test-case-name: tests.http.test_clock -*-
"""
The server's sense of the current second, in the two forms it writes: the
C{Date} header of a response and the timestamp of an access-log line.

Both change once a second and are written for every request, so each is
formatted once per second rather than once per use. The time comes from
an injected source (a reactor's C{seconds}, which is the wall clock for a
real reactor), so that tests run in simulated time.
"""

from __future__ import annotations

import time
from collections.abc import Callable

from twisted.web.http import datetimeToString

__all__ = ["SecondClock"]

_MONTHS = ("Jan", "Feb", "Mar", "Apr", "May", "Jun",
           "Jul", "Aug", "Sep", "Oct", "Nov", "Dec")  # fmt: skip


def _logTimestamp(second: int) -> str:
    """
    C{second} as Apache's C{%t} writes it, in local time: C{[02/Dec/2026:01:51:53
    +0100]} (the month in English whatever the locale, as log parsers expect).
    """
    t = time.localtime(second)
    offset = t.tm_gmtoff // 60
    sign = "+" if offset >= 0 else "-"
    return (
        f"[{t.tm_mday:02d}/{_MONTHS[t.tm_mon - 1]}/{t.tm_year:04d}:"
        f"{t.tm_hour:02d}:{t.tm_min:02d}:{t.tm_sec:02d} "
        f"{sign}{abs(offset) // 60:02d}{abs(offset) % 60:02d}]"
    )


class SecondClock:
    """
    The current second, formatted for HTTP and for the access log, each at
    most once per second.
    """

    def __init__(self, seconds: Callable[[], float] = time.time) -> None:
        """
        @param seconds: The time source: seconds since the epoch, such as
            L{time.time} or an L{IReactorTime}'s C{seconds}.
        """
        self._seconds = seconds
        self._dateSecond = -1
        self._date = b""
        self._logSecond = -1
        self._log = ""

    def httpDate(self) -> bytes:
        """
        The C{Date} header value for now (RFC 9110 section 5.6.7's
        IMF-fixdate).
        """
        second = int(self._seconds())
        if second != self._dateSecond:
            self._date = datetimeToString(second)
            self._dateSecond = second
        return self._date

    def logTimestamp(self) -> str:
        """
        The access-log timestamp for now, brackets included.
        """
        second = int(self._seconds())
        if second != self._logSecond:
            self._log = _logTimestamp(second)
            self._logSecond = second
        return self._log
