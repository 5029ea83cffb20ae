"""
Tests for L{twisted_cgiserve._static.conditional}: http.server's If-Modified-Since
rules and the validators added on top.
"""

from __future__ import annotations

import os
from email.utils import formatdate
from pathlib import Path

import pytest

from twisted_cgiserve._static.conditional import (
    Precondition,
    evaluatePreconditions,
    formatHTTPDate,
    ifRangeAllows,
    makeETag,
)


@pytest.fixture
def stat(tmp_path: Path) -> os.stat_result:
    path = tmp_path / "f"
    path.write_bytes(b"x")
    os.utime(path, (1_700_000_000, 1_700_000_000))
    return os.stat(path)


def _decide(headers: dict[bytes, bytes], st: os.stat_result) -> Precondition:
    return evaluatePreconditions(headers, st, makeETag(st))


def test_ifModifiedSince(stat: os.stat_result) -> None:
    """
    A file not modified since the date is a 304, a newer one a 200; the
    date equal to the mtime and a future date both count as not modified.
    """
    mtime = stat.st_mtime
    for when, decision in [
        (mtime, Precondition.NOT_MODIFIED),
        (mtime + 3600, Precondition.NOT_MODIFIED),
        (mtime - 365 * 86400, Precondition.PROCEED),
    ]:
        header = formatdate(when, usegmt=True).encode()
        assert _decide({b"if-modified-since": header}, stat) is decision


@pytest.mark.parametrize(
    "value",
    [
        b"garbage",
        b"",
        b"Tue, 14 Nov 2023 22:13:20 +0100",
    ],
)
def test_ifModifiedSinceIgnored(value: bytes, stat: os.stat_result) -> None:
    """
    As in http.server, a date that does not parse, or that is not in UTC, is
    ignored (the file is sent).
    """
    assert _decide({b"if-modified-since": value}, stat) is Precondition.PROCEED


@pytest.mark.parametrize(
    "value",
    [
        b"Tue, 14 Nov 2023 22:13:20 GMT",
        b"Tue, 14 Nov 2023 22:13:20 +0000",
        b"Tue, 14 Nov 2023 22:13:20 -0000",
        b"Tuesday, 14-Nov-23 22:13:20 GMT",
        b"Tue Nov 14 22:13:20 2023",
    ],
)
def test_ifModifiedSinceFormats(value: bytes, stat: os.stat_result) -> None:
    """
    The three HTTP date formats, in UTC however spelt, are understood.
    """
    assert _decide({b"if-modified-since": value}, stat) is Precondition.NOT_MODIFIED


def test_ifNoneMatchWinsOverIfModifiedSince(stat: os.stat_result) -> None:
    """
    With If-None-Match present, If-Modified-Since is not looked at (RFC
    9110, and http.server ignores it too).
    """
    ims = formatdate(stat.st_mtime, usegmt=True).encode()
    headers = {b"if-modified-since": ims, b"if-none-match": b'"other"'}
    assert _decide(headers, stat) is Precondition.PROCEED
    headers[b"if-none-match"] = b"*"
    assert _decide(headers, stat) is Precondition.NOT_MODIFIED


def test_ifNoneMatchWeakComparison(stat: os.stat_result) -> None:
    """
    If-None-Match uses weak comparison: the weak form of the current tag, or
    the tag in a list, matches.
    """
    etag = makeETag(stat)
    for header in (etag, b"W/" + etag, b'"a", ' + etag):
        assert _decide({b"if-none-match": header}, stat) is Precondition.NOT_MODIFIED


def test_ifMatch(stat: os.stat_result) -> None:
    """
    If-Match needs a strong match (or C{*}); otherwise the precondition
    fails (412).
    """
    etag = makeETag(stat)
    assert _decide({b"if-match": etag}, stat) is Precondition.PROCEED
    assert _decide({b"if-match": b"*"}, stat) is Precondition.PROCEED
    assert _decide({b"if-match": b"W/" + etag}, stat) is Precondition.FAILED
    assert _decide({b"if-match": b'"nope"'}, stat) is Precondition.FAILED


def test_ifUnmodifiedSince(stat: os.stat_result) -> None:
    """
    If-Unmodified-Since fails for a file modified after the date.
    """
    before = formatdate(stat.st_mtime - 10, usegmt=True).encode()
    after = formatdate(stat.st_mtime + 10, usegmt=True).encode()
    assert _decide({b"if-unmodified-since": before}, stat) is Precondition.FAILED
    assert _decide({b"if-unmodified-since": after}, stat) is Precondition.PROCEED


def test_ifRange(stat: os.stat_result) -> None:
    """
    A range is honoured only when If-Range names the current validator
    exactly: the strong ETag or the exact Last-Modified date.
    """
    etag = makeETag(stat)
    assert ifRangeAllows(None, stat, etag)
    assert ifRangeAllows(etag, stat, etag)
    assert not ifRangeAllows(b'"stale"', stat, etag)
    assert not ifRangeAllows(b"W/" + etag, stat, etag)
    assert ifRangeAllows(formatHTTPDate(stat.st_mtime), stat, etag)
    assert not ifRangeAllows(formatHTTPDate(stat.st_mtime - 1), stat, etag)


def test_etagChangesWithContent(tmp_path: Path) -> None:
    """
    Rewriting a file changes its ETag, even within the same second.
    """
    path = tmp_path / "f"
    path.write_bytes(b"one")
    first = makeETag(os.stat(path))
    path.write_bytes(b"two!")
    assert makeETag(os.stat(path)) != first
