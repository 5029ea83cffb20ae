"""
Tests for L{twisted_cgiserve._http.accesslog}.
"""

from __future__ import annotations

import errno
import os
import re
from collections.abc import Sequence
from io import FileIO
from pathlib import Path
from typing import Any

import pytest
from hypothesis import given
from hypothesis import strategies as st
from twisted.internet.address import IPv4Address, UNIXAddress
from twisted.internet.testing import MemoryReactorClock, StringTransport
from twisted.logger import LogEvent, capturedLogs, formatEvent
from twisted.python.components import Componentized
from twisted.web.http import HTTPChannel
from twisted.web.test.requesthelper import DummyRequest

from tests.support.requests import makeRequest
from twisted_cgiserve._http.accesslog import AccessLog, _field, combinedLogLine
from twisted_cgiserve._http.basicauth import Authentication, IAuthentication
from twisted_cgiserve._http.clock import SecondClock
from twisted_cgiserve._http.logfield import escapeField
from twisted_cgiserve._http.request import CGIServeRequest

_COMBINED = re.compile(
    r"^(?P<host>\S+) (?P<ident>\S+) (?P<user>\S+) \[(?P<time>[^\]]+)\] "
    r'"(?P<request>(?:[^"\\]|\\.)*)" (?P<status>\d{3}) (?P<size>\d+|-) '
    r'"(?P<referer>(?:[^"\\]|\\.)*)" "(?P<agent>(?:[^"\\]|\\.)*)"$'
)


def _request(uri: bytes, headers: dict[bytes, bytes] | None = None) -> object:
    request = makeRequest(uri, headers=headers)
    request.client = IPv4Address("TCP", "192.0.2.7", 40000)
    request.clientproto = b"HTTP/1.1"
    request.code = 200
    request.sentLength = 1234
    return request


_STAMP = "[22/Nov/2026:10:00:00 +0000]"


def _timestamp(clock: MemoryReactorClock) -> str:
    """
    The timestamp an access log on C{clock} writes now.
    """
    return SecondClock(clock.seconds).logTimestamp()


def test_combinedFormat() -> None:
    """
    Lines follow Apache's combined format, the client address unquoted.
    """
    line = combinedLogLine(
        _request(b"/a?b=c", {b"referer": b"http://r/", b"user-agent": b"curl/8"}),
        _STAMP,
    )
    assert line == (
        '192.0.2.7 - - [22/Nov/2026:10:00:00 +0000] "GET /a?b=c HTTP/1.1" 200 1234 '
        '"http://r/" "curl/8"'
    )
    assert _COMBINED.match(line)


def test_injectionEscaped() -> None:
    """
    Quotes, backslashes and control characters a client sends are escaped,
    so one request is always exactly one parseable line.
    """
    line = combinedLogLine(
        _request(b"/x", {b"user-agent": b'evil"\n1.2.3.4 - - [x] "GET / \\ \x1b'}),
        _STAMP,
    )
    assert "\n" not in line
    match = _COMBINED.match(line)
    assert match
    # (Twisted's Headers already folds the newline into a space.)
    assert match["agent"] == 'evil\\" 1.2.3.4 - - [x] \\"GET / \\\\ \\x1b'


def _served(uri: bytes) -> CGIServeRequest:
    """
    A request of this server whose client sent C{POST uri HTTP/1.0}, from
    192.0.2.7, rewritten since as a CGI local redirect does.
    """
    transport = StringTransport(peerAddress=IPv4Address("TCP", "192.0.2.7", 40000))
    channel = HTTPChannel()
    channel.makeConnection(transport)
    request = CGIServeRequest(channel, parsePOSTFormSubmission=False)
    request.clientRequestLine = b"POST %s HTTP/1.0" % (uri,)
    request.method, request.uri, request.clientproto = b"GET", b"/other", b"HTTP/1.0"
    request.code = 302
    return request


def test_requestLineAsTheClientSentIt() -> None:
    """
    For a request of this server, the line shows the request line as the
    client sent it, not the request a CGI local redirect made of it.
    """
    line = combinedLogLine(_served(b'/cgi-bin/go?"x'), _STAMP)
    assert line == (
        f'192.0.2.7 - - {_STAMP} "POST /cgi-bin/go?\\"x HTTP/1.0" 302 - "-" "-"'
    )


def test_clientWithoutHost() -> None:
    """
    A client without a host address (a UNIX socket) is written C{-}.
    """
    request: Any = _request(b"/u")
    request.client = UNIXAddress(b"/run/cgiserve.sock")
    assert combinedLogLine(request, _STAMP).startswith(f"- - - {_STAMP} ")


def test_timeFromTheReactor(tmp_path: Path) -> None:
    """
    A log with a reactor writes the reactor's time (the wall clock for a
    real one, simulated here); one with a clock of its own, that clock's.
    """
    clock = MemoryReactorClock()
    clock.advance(1_780_000_000)
    path = tmp_path / "access.log"
    log = AccessLog(str(path), clock)
    log.write(_request(b"/r"))
    other = MemoryReactorClock()
    other.advance(86400)
    log2 = AccessLog(str(path), clock, clock=SecondClock(other.seconds))
    log2.write(_request(b"/c"))
    clock.advance(0)
    log.close()
    log2.close()
    stamps = [line.split(" ")[3] + " " + line.split(" ")[4] for line in _lines(path)]
    assert stamps == [_timestamp(clock), _timestamp(other)]


def test_timeWithoutReactor(tmp_path: Path) -> None:
    """
    Without a reactor, a line carries the wall clock's time.
    """
    path = tmp_path / "access.log"
    log = AccessLog(str(path))
    before = SecondClock().logTimestamp()
    log.write(_request(b"/w"))
    after = SecondClock().logTimestamp()
    log.close()
    [line] = _lines(path)
    assert before[1:-1] <= _COMBINED.match(line)["time"] <= after[1:-1]  # type: ignore[index]


def test_file(tmp_path: Path) -> None:
    """
    With a path, lines are appended to that file.
    """
    path = tmp_path / "access.log"
    path.write_text("earlier\n")
    log = AccessLog(str(path))
    log.write(_request(b"/one"))
    log.write(_request(b"/two"))
    log.close()
    lines = path.read_text().splitlines()
    assert lines[0] == "earlier"
    assert ['"GET /one HTTP/1.1"' in lines[1], '"GET /two HTTP/1.1"' in lines[2]] == [
        True,
        True,
    ]


# A file that cannot be written: the server keeps serving, says so at most
# once a minute, and the file holds whole lines only.


class _Disk:
    """
    A disk with C{room} bytes free: a write takes what fits, as a real one
    does, and the next one fails with C{error}.
    """

    def __init__(self, room: int, error: int = errno.ENOSPC) -> None:
        self.room = room
        self.error = error


class _DiskFile(FileIO):
    disk: _Disk

    def write(self, data: Any) -> int:
        count = min(len(data), self.disk.room)
        if not count:
            raise OSError(self.disk.error, os.strerror(self.disk.error))
        written = super().write(bytes(data[:count]))
        self.disk.room -= written
        return written


@pytest.fixture
def disk(monkeypatch: pytest.MonkeyPatch) -> _Disk:
    """
    The disk every access log file of the test is on.
    """
    d = _Disk(room=1 << 30)

    def _open(path: str) -> FileIO:
        f = _DiskFile(os.open(path, os.O_WRONLY | os.O_APPEND | os.O_CREAT), "wb")
        f.disk = d
        return f

    monkeypatch.setattr(AccessLog, "_open", staticmethod(_open))
    return d


def _lines(path: Path) -> list[str]:
    """
    The lines of the access log; each must be a whole combined-log line.
    """
    data = path.read_text()
    assert data == "" or data.endswith("\n"), data[-200:]
    lines = data.splitlines()
    for line in lines:
        assert _COMBINED.match(line), line
    return lines


def _pipe() -> tuple[int, int]:
    """
    A pipe, both ends non-blocking: a test reads what is there, and never
    waits.
    """
    reader, writer = os.pipe()
    os.set_blocking(reader, False)
    os.set_blocking(writer, False)
    return reader, writer


def _drain(reader: int) -> bytes:
    try:
        return os.read(reader, 1 << 20)
    except BlockingIOError:
        return b""


def _messages(events: Sequence[LogEvent]) -> list[str]:
    return [
        formatEvent(e) for e in events if e.get("log_namespace") == "cgiserve.accesslog"
    ]


def test_fullDiskCutsPartialLine(tmp_path: Path, disk: _Disk) -> None:
    """
    When the disk fills in the middle of a line, the part written is cut off
    again, so the next line is not glued to it: the file holds whole lines,
    and the lines that did not fit are counted as lost and the count logged
    once writing works again.
    """
    path = tmp_path / "access.log"
    clock = MemoryReactorClock()
    log = AccessLog(str(path), clock)
    line = len(combinedLogLine(_request(b"/1"), _timestamp(clock))) + 1
    disk.room = line + line // 2
    with capturedLogs() as events:
        for n in (1, 2, 3):
            log.write(_request(b"/%d" % n))
        clock.advance(0)
        assert [x.split('"')[1] for x in _lines(path)] == ["GET /1 HTTP/1.1"]
        disk.room = 1 << 30
        log.write(_request(b"/4"))
        clock.advance(0)
    log.close()
    assert [x.split('"')[1] for x in _lines(path)] == [
        "GET /1 HTTP/1.1",
        "GET /4 HTTP/1.1",
    ]
    assert _messages(events) == [
        f"Cannot write the access log {str(path)!r}: No space left on device; "
        "requests are served but not logged (lines lost so far: 2; said at most "
        "once a minute)",
        f"The access log {str(path)!r} can be written again; lines lost: 2.",
    ]


def test_withoutReactor(tmp_path: Path, disk: _Disk) -> None:
    """
    Written at once (no reactor), a line that does not fit raises nothing.
    """
    path = tmp_path / "access.log"
    log = AccessLog(str(path))
    disk.room = 10
    with capturedLogs() as events:
        log.write(_request(b"/lost"))
        disk.room = 1 << 30
        log.write(_request(b"/kept"))
    log.close()
    assert [x.split('"')[1] for x in _lines(path)] == ["GET /kept HTTP/1.1"]
    assert _messages(events)[-1].endswith("can be written again; lines lost: 1.")


def test_partialLineCompletedWhereItCannotBeCut(tmp_path: Path) -> None:
    """
    Where the partial line cannot be cut off (a pipe: a non-blocking
    standard output that is full), its rest is written first once writing
    works again, so the reader still sees whole lines.
    """
    reader, writer = _pipe()
    disk = _Disk(room=0, error=errno.EAGAIN)
    clock = MemoryReactorClock()
    log = AccessLog(None, clock)
    log.path = "-"
    f = _DiskFile(writer, "wb")
    f.disk = disk
    log._file = f
    try:
        first = combinedLogLine(_request(b"/first"), _timestamp(clock))
        disk.room = len(first) // 2
        with capturedLogs() as events:
            log.write(_request(b"/first"))
            log.write(_request(b"/lost"))
            log.flush()
            assert not _drain(reader).endswith(b"\n")
            disk.room = 1 << 20
            log.write(_request(b"/next"))
            log.flush()
        data = _drain(reader).decode()
    finally:
        log.close()
        os.close(reader)
    path = tmp_path / "seen"
    path.write_text(first[: len(first) // 2] + data)
    assert [x.split('"')[1] for x in _lines(path)] == [
        "GET /first HTTP/1.1",
        "GET /next HTTP/1.1",
    ]
    assert _messages(events) == [
        "Cannot write the access log standard output: Resource temporarily "
        "unavailable; requests are served but not logged (lines lost so far: 1; "
        "said at most once a minute)",
        "The access log standard output can be written again; lines lost: 1.",
    ]


def test_warnedAtMostOnceAMinute(tmp_path: Path, disk: _Disk) -> None:
    """
    However many writes fail, the warning comes at most once a minute, and
    so does the count of lost lines; a count not yet logged is logged by a
    later write, or when the log is closed.
    """
    path = tmp_path / "access.log"
    clock = MemoryReactorClock()
    log = AccessLog(str(path), clock)

    def requests(count: int, step: float) -> None:
        for _ in range(count):
            log.write(_request(b"/x"))
            clock.advance(0)
            clock.advance(step)

    with capturedLogs() as events:
        disk.room = 0
        requests(30, 1.0)  # 0 s to 30 s: one warning
        assert len(_messages(events)) == 1
        requests(40, 1.0)  # up to 70 s: the second
        assert len(_messages(events)) == 2
        disk.room = 1 << 30
        requests(1, 1.0)  # the count of all 70
        disk.room = 0
        requests(5, 1.0)  # warned at 60 s: not yet
        disk.room = 1 << 30
        requests(3, 1.0)  # counted at 71 s: not yet
        assert len(_messages(events)) == 3
        requests(60, 1.0)  # now the 5 lines are counted
        disk.room = 0
        requests(1, 1.0)
        log.close()
    messages = _messages(events)
    assert [re.findall(r"lines lost(?: so far)?: \d+", m) for m in messages] == [
        ["lines lost so far: 1"],
        ["lines lost so far: 61"],
        ["lines lost: 70"],
        ["lines lost: 5"],
        ["lines lost so far: 1"],
        ["lines lost: 1"],
    ]
    assert messages[-1] == f"The access log {str(path)!r} is closed; lines lost: 1."
    assert len(_lines(path)) == 1 + 3 + 60


def test_reopenLeavesPartialLine(tmp_path: Path) -> None:
    """
    The rest of a partial line is not written into the next file after a
    reopen: it is counted as lost.
    """
    reader, writer = _pipe()
    disk = _Disk(room=20, error=errno.EAGAIN)
    path = tmp_path / "access.log"
    log = AccessLog(str(path), MemoryReactorClock())
    f = _DiskFile(writer, "wb")
    f.disk = disk
    log._file.close()  # type: ignore[union-attr]
    log._file = f
    with capturedLogs() as events:
        log.write(_request(b"/partial"))
        log.flush()
        assert log.reopen()
        log.write(_request(b"/new"))
        log.close()
    os.close(reader)
    assert [x.split('"')[1] for x in _lines(path)] == ["GET /new HTTP/1.1"]
    assert _messages(events)[-1].endswith("can be written again; lines lost: 1.")


class _AuthenticatedRequest(DummyRequest, Componentized):
    def __init__(self, user: bytes | None) -> None:
        DummyRequest.__init__(self, [])
        Componentized.__init__(self)
        self.setComponent(IAuthentication, Authentication(user))
        self.uri = b"/"
        self.client = IPv4Address("TCP", "192.0.2.7", 40000)
        self.clientproto = b"HTTP/1.1"
        self.code = 200
        self.sentLength = 1


@pytest.mark.parametrize(
    ("user", "field"),
    [
        (b"alice", "alice"),
        (None, "-"),
        (b"two words", "two\\x20words"),
        (b'q"uote', 'q\\"uote'),
    ],
)
def test_authenticatedUser(user: bytes | None, field: str) -> None:
    """
    The third field is the user Basic authentication verified, escaped and
    without spaces (the field is not quoted); C{-} without one.
    """
    line = combinedLogLine(_AuthenticatedRequest(user), _STAMP)
    assert line.split(" ")[:3] == ["192.0.2.7", "-", field]


@pytest.mark.parametrize("byte", range(256))
def test_fieldAsEscapeField(byte: int) -> None:
    """
    The log's fields are written exactly as L{escapeField} writes them,
    whatever byte they hold (its check for fields with nothing to escape
    must not let one through).
    """
    for value in (bytes([byte]), b"GET /" + bytes([byte]) + b" HTTP/1.1"):
        assert _field(value) == escapeField(value)
    assert _field(None) == "-"


@given(st.binary(max_size=64))
def test_fieldAsEscapeFieldAnyBytes(value: bytes) -> None:
    """
    The same, for any bytes.
    """
    assert _field(value) == escapeField(value)
