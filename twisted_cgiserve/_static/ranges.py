# -*- test-case-name: tests.static.test_ranges -*-
"""
C{Range} requests (RFC 9110 section 14) without the amplification and
crashes of C{twisted.web.static.File}.

Ranges are clamped to the file (a suffix longer than the file is the whole
file, not a negative seek), overlapping and adjacent ranges are merged so a
response is never larger than the file plus part headers (Apache's
CVE-2011-3192 class), and a header with more than L{MAX_RANGES} ranges is
ignored, as Apache's C{MaxRanges} does.

Positions are compared with the file size by their digits and never turned
into integers larger than it: a position longer than Python converts (4300
digits) or than any file could need is taken for what it means (past the
end of the file), so no header can make parsing fail.
"""

from __future__ import annotations

__all__ = ["MAX_RANGES", "parseRange"]

MAX_RANGES = 100


def _position(digits: bytes, size: int) -> int:
    """
    A byte position given as C{digits} (ASCII, at least one), capped at
    C{size}: a number with more digits than C{size} is larger than it and is
    never converted (it may be longer than Python's integer parsing takes).
    """
    digits = digits.lstrip(b"0") or b"0"
    if len(digits) > len(b"%d" % (size,)):
        return size
    return min(int(digits), size)


def _isLess(smaller: bytes, larger: bytes) -> bool:
    """
    Whether the number C{smaller} is less than the number C{larger}, both
    given as ASCII digits of any length, compared without converting them.
    """
    smaller = smaller.lstrip(b"0")
    larger = larger.lstrip(b"0")
    return (len(smaller), smaller) < (len(larger), larger)


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
        # A suffix: the last that many bytes (all of them if it is longer).
        suffix = _position(last, size)
        if suffix == 0:
            return False
        return (size - suffix, size - 1)
    if last and _isLess(last, first):
        return None
    start = _position(first, size)
    if start >= size:
        return False
    end = _position(last, size) if last else size
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
    if not eq or unit.strip().lower() != b"bytes" or size <= 0:
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
