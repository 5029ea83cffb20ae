"""
Tests for L{twisted_cgiserve._accesslog}.
"""

from __future__ import annotations

import re
from pathlib import Path

from twisted.internet.address import IPv4Address

from helpers import makeRequest
from twisted_cgiserve._accesslog import AccessLog, combinedLogLine

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


def test_combinedFormat() -> None:
    """
    Lines follow Apache's combined format, the client address unquoted.
    """
    line = combinedLogLine(
        _request(b"/a?b=c", {b"referer": b"http://r/", b"user-agent": b"curl/8"}),
        "[22/Nov/2026:10:00:00 +0000]",
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
        _request(b"/x", {b"user-agent": b'evil"\n1.2.3.4 - - [x] "GET / \\ \x1b'})
    )
    assert "\n" not in line
    match = _COMBINED.match(line)
    assert match
    # (Twisted's Headers already folds the newline into a space.)
    assert match["agent"] == 'evil\\" 1.2.3.4 - - [x] \\"GET / \\\\ \\x1b'


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
