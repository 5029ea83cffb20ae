"""
Tests for L{twisted_cgiserve._http.clock}: the current second as the C{Date}
header and the access log write it, formatted once per second, on an
injected time source.
"""

from __future__ import annotations

import time
from collections.abc import Iterator

import pytest
from twisted.internet.testing import MemoryReactorClock
from twisted.web.http import datetimeToString

from twisted_cgiserve._http.clock import SecondClock


@pytest.fixture
def timezone(monkeypatch: pytest.MonkeyPatch) -> Iterator[None]:
    """
    Local time is whatever C{TZ} the test sets; the process's own zone is
    restored afterwards.
    """
    yield
    monkeypatch.undo()
    time.tzset()


def _zone(monkeypatch: pytest.MonkeyPatch, tz: str) -> None:
    monkeypatch.setenv("TZ", tz)
    time.tzset()


def test_httpDate() -> None:
    """
    The C{Date} value is RFC 9110's IMF-fixdate, in GMT, of the source's
    current second.
    """
    reactor = MemoryReactorClock()
    reactor.advance(1_780_000_000.9)
    clock = SecondClock(reactor.seconds)
    assert clock.httpDate() == b"Thu, 28 May 2026 20:26:40 GMT"


def test_httpDateFollowsTheSource() -> None:
    """
    The value changes with the source's second, and only then.
    """
    reactor = MemoryReactorClock()
    clock = SecondClock(reactor.seconds)
    assert clock.httpDate() == b"Thu, 01 Jan 1970 00:00:00 GMT"
    reactor.advance(0.99)
    assert clock.httpDate() == b"Thu, 01 Jan 1970 00:00:00 GMT"
    reactor.advance(0.01)
    assert clock.httpDate() == b"Thu, 01 Jan 1970 00:00:01 GMT"
    reactor.advance(86400)
    assert clock.httpDate() == b"Fri, 02 Jan 1970 00:00:01 GMT"


def test_formattedOncePerSecond() -> None:
    """
    Within one second, each form is formatted once: later calls return the
    very same object.
    """
    reactor = MemoryReactorClock()
    reactor.advance(100)
    clock = SecondClock(reactor.seconds)
    date, stamp = clock.httpDate(), clock.logTimestamp()
    reactor.advance(0.5)
    assert clock.httpDate() is date
    assert clock.logTimestamp() is stamp
    reactor.advance(0.5)
    assert clock.httpDate() is not date
    assert clock.logTimestamp() is not stamp


@pytest.mark.usefixtures("timezone")
@pytest.mark.parametrize(
    ("tz", "expected"),
    [
        ("UTC", "[28/May/2026:20:26:40 +0000]"),
        # POSIX zones count west of Greenwich: this is UTC+05:30.
        ("IST-05:30", "[29/May/2026:01:56:40 +0530]"),
        ("XST+03:45", "[28/May/2026:16:41:40 -0345]"),
    ],
)
def test_logTimestamp(monkeypatch: pytest.MonkeyPatch, tz: str, expected: str) -> None:
    """
    The access-log timestamp is Apache's C{%t}: local time, with the
    offset from UTC in hours and minutes, in brackets.
    """
    _zone(monkeypatch, tz)
    reactor = MemoryReactorClock()
    reactor.advance(1_780_000_000)
    assert SecondClock(reactor.seconds).logTimestamp() == expected


@pytest.mark.usefixtures("timezone")
def test_logTimestampMonthsInEnglish(monkeypatch: pytest.MonkeyPatch) -> None:
    """
    Every month is written by its English abbreviation, whatever the
    locale, as log parsers expect.
    """
    _zone(monkeypatch, "UTC")
    reactor = MemoryReactorClock()
    clock = SecondClock(reactor.seconds)
    months = []
    for month in range(12):
        reactor.advance(31 * 86400 if month else 0)
        months.append(clock.logTimestamp()[4:7])
    assert months == [
        "Jan", "Feb", "Mar", "Apr", "May", "Jun",
        "Jul", "Aug", "Sep", "Oct", "Nov", "Dec",
    ]  # fmt: skip


def test_wallClockByDefault() -> None:
    """
    Without a source, the clock is the wall clock.
    """
    before = int(time.time())
    date = SecondClock().httpDate()
    after = int(time.time())
    assert date in {datetimeToString(s) for s in range(before, after + 1)}
