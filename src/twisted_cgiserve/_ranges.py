# -*- test-case-name: tests.test_ranges -*-
"""
C{Range} requests (RFC 9110 section 14) without the amplification and
crashes of C{twisted.web.static.File}.

Ranges are clamped to the file (a suffix longer than the file is the whole
file, not a negative seek), overlapping and adjacent ranges are merged so a
response is never larger than the file plus part headers (Apache's
CVE-2011-3192 class), and a header with more than L{MAX_RANGES} ranges is
ignored, as Apache's C{MaxRanges} does.
"""

from __future__ import annotations

__all__ = ["MAX_RANGES", "parseRange"]

MAX_RANGES = 100


def _parseSpec(spec: bytes, size: int) -> tuple[int, int] | bool | None:
    """
    One range-spec as an inclusive C{(first, last)} clamped to the file,
    C{False} when it is valid but unsatisfiable, L{None} when malformed.
    """
    first, dash, last = spec.strip().partition(b"-")
    first, last = first.strip(), last.strip()
    if (
        not dash
        or not (first.isdigit() or first == b"")
        or not (last.isdigit() or last == b"")
    ):
        return None
    if not first:
        if not last:
            return None
        suffix = int(last)
        if suffix == 0:
            return False
        return (max(size - suffix, 0), size - 1)
    start = int(first)
    if last and int(last) < start:
        return None
    if start >= size:
        return False
    end = int(last) if last else size - 1
    return (start, min(end, size - 1))


def parseRange(header: bytes, size: int) -> list[tuple[int, int]] | None:
    """
    Parse a C{Range} header against a file of C{size} bytes.

    @return: L{None} to ignore the header (malformed, another unit, too
        many ranges, or an empty file) and send the whole file; an empty
        list when no range overlaps the file (a 416); otherwise the merged,
        sorted, inclusive ranges.
    """
    unit, eq, specs = header.partition(b"=")
    if not eq or unit.strip().lower() != b"bytes" or size == 0:
        return None
    parts = [part for part in specs.split(b",") if part.strip()]
    if not parts or len(parts) > MAX_RANGES:
        return None
    ranges = []
    for part in parts:
        parsed = _parseSpec(part, size)
        if parsed is None:
            return None
        if parsed is not False:
            assert isinstance(parsed, tuple)
            ranges.append(parsed)
    if not ranges:
        return []
    ranges.sort()
    merged = [ranges[0]]
    for start, end in ranges[1:]:
        lastStart, lastEnd = merged[-1]
        if start <= lastEnd + 1:
            merged[-1] = (lastStart, max(lastEnd, end))
        else:
            merged.append((start, end))
    return merged
