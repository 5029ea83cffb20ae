# -*- test-case-name: tests.static.test_conditional -*-
"""
Validators and conditional requests for static files (RFC 9110 section 13).

http.server only knows C{If-Modified-Since}; its exact rules are kept (the
header is ignored when C{If-None-Match} is present, when the date does not
parse, or when it is not in UTC) so caches that worked against it keep
working. On top of that: a strong C{ETag}, C{If-None-Match},
C{If-Match}, C{If-Unmodified-Since} and C{If-Range}, evaluated in the
order RFC 9110 section 13.2.2 prescribes.
"""

from __future__ import annotations

import datetime
import os
from email.utils import formatdate, parsedate_to_datetime
from enum import Enum
from functools import lru_cache

__all__ = [
    "Precondition",
    "evaluatePreconditions",
    "formatHTTPDate",
    "ifRangeAllows",
    "makeETag",
]


class Precondition(Enum):
    """
    What the preconditions decided for a GET or HEAD.
    """

    PROCEED = 200
    NOT_MODIFIED = 304
    FAILED = 412


def makeETag(st: os.stat_result) -> bytes:
    """
    A strong validator for a file: it changes whenever the file is replaced
    (inode), resized or rewritten (nanosecond mtime).
    """
    return b'"%x-%x-%x"' % (st.st_ino, st.st_size, st.st_mtime_ns)


@lru_cache(maxsize=4096)
def _formatSecond(second: int) -> bytes:
    return formatdate(second, usegmt=True).encode("ascii")


def formatHTTPDate(timestamp: float) -> bytes:
    """
    An IMF-fixdate, as in C{Last-Modified}; cached, because the same few
    file times are formatted for every request.
    """
    return _formatSecond(int(timestamp))


def _parseUTCDate(value: bytes) -> datetime.datetime | None:
    """
    Parse an HTTP date the way http.server does: unparseable dates and dates
    with a non-UTC offset are ignored (L{None}); a date without a zone is
    taken as UTC.
    """
    try:
        parsed = parsedate_to_datetime(value.decode("latin-1"))
    except (TypeError, IndexError, OverflowError, ValueError):
        return None
    if parsed.tzinfo is None:
        parsed = parsed.replace(tzinfo=datetime.UTC)
    if parsed.tzinfo is not datetime.UTC:
        return None
    return parsed


def _mtime(st: os.stat_result) -> datetime.datetime:
    """
    The file's mtime at the one-second precision of HTTP dates.
    """
    return datetime.datetime.fromtimestamp(int(st.st_mtime), datetime.UTC)


def _tags(header: bytes) -> list[bytes]:
    """
    The entity tags listed in an C{If-Match} or C{If-None-Match} value.
    """
    return [tag.strip() for tag in header.split(b",") if tag.strip()]


def _weakMatch(header: bytes, etag: bytes) -> bool:
    """
    Weak comparison (RFC 9110 section 8.8.3.2), used by C{If-None-Match}.
    """
    opaque = etag.removeprefix(b"W/")
    for tag in _tags(header):
        if tag == b"*" or tag.removeprefix(b"W/") == opaque:
            return True
    return False


def _strongMatch(header: bytes, etag: bytes) -> bool:
    """
    Strong comparison, used by C{If-Match}: weak tags never match.
    """
    return any(tag in (b"*", etag) for tag in _tags(header))


def evaluatePreconditions(
    headers: dict[bytes, bytes], st: os.stat_result, etag: bytes
) -> Precondition:
    """
    Decide a GET or HEAD's preconditions against a file.

    @param headers: The request's conditional headers, lower-cased names.
    """
    ifMatch = headers.get(b"if-match")
    if ifMatch is not None:
        if not _strongMatch(ifMatch, etag):
            return Precondition.FAILED
    else:
        ifUnmodifiedSince = headers.get(b"if-unmodified-since")
        if ifUnmodifiedSince is not None:
            date = _parseUTCDate(ifUnmodifiedSince)
            if date is not None and _mtime(st) > date:
                return Precondition.FAILED
    ifNoneMatch = headers.get(b"if-none-match")
    if ifNoneMatch is not None:
        if _weakMatch(ifNoneMatch, etag):
            return Precondition.NOT_MODIFIED
        return Precondition.PROCEED
    ifModifiedSince = headers.get(b"if-modified-since")
    if ifModifiedSince is not None:
        date = _parseUTCDate(ifModifiedSince)
        if date is not None and _mtime(st) <= date:
            return Precondition.NOT_MODIFIED
    return Precondition.PROCEED


def ifRangeAllows(ifRange: bytes | None, st: os.stat_result, etag: bytes) -> bool:
    """
    Whether a C{Range} may be honoured given C{If-Range} (RFC 9110 section
    13.1.5): the validator must match exactly (a strong ETag, or the exact
    C{Last-Modified} date); otherwise the whole file is sent.
    """
    if ifRange is None:
        return True
    ifRange = ifRange.strip()
    if ifRange.startswith((b'"', b"W/")):
        return ifRange == etag
    date = _parseUTCDate(ifRange)
    return date is not None and date == _mtime(st)
