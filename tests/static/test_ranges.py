"""
Tests for L{twisted_cgiserve._static.ranges}.
"""

from __future__ import annotations

import pytest
from hypothesis import given
from hypothesis import strategies as st

from twisted_cgiserve._static.ranges import MAX_RANGES, parseRange


@pytest.mark.parametrize(
    ("header", "size", "expected"),
    [
        (b"bytes=0-3", 10, [(0, 3)]),
        (b"bytes=5-", 10, [(5, 9)]),
        (b"bytes=-3", 10, [(7, 9)]),
        (b"bytes=-100", 10, [(0, 9)]),
        (b"bytes=0-100", 10, [(0, 9)]),
        (b"BYTES = 1-2", 10, [(1, 2)]),
        (b"bytes=0-1, 4-5", 10, [(0, 1), (4, 5)]),
        (b"bytes=4-5,0-1", 10, [(0, 1), (4, 5)]),
        (b"bytes=0-4,2-6", 10, [(0, 6)]),
        (b"bytes=0-1,2-3", 10, [(0, 3)]),
        (b"bytes=0-,0-,0-", 10, [(0, 9)]),
        (b"bytes=20-30, 0-0", 10, [(0, 0)]),
    ],
)
def test_satisfiable(header: bytes, size: int, expected: list[tuple[int, int]]) -> None:
    """
    Ranges are clamped to the file (a suffix longer than the file is the
    whole file), sorted, and overlapping or adjacent ones merged.
    """
    assert parseRange(header, size) == expected


@pytest.mark.parametrize(
    "header", [b"bytes=10-", b"bytes=-0", b"bytes=10-20", b"bytes=10-,-0"]
)
def test_unsatisfiable(header: bytes) -> None:
    """
    A valid header with no range overlapping the file is a 416 (empty list).
    """
    assert parseRange(header, 10) == []


@pytest.mark.parametrize(
    "header",
    [b"bytes=5-1", b"items=0-1", b"bytes", b"bytes=", b"bytes=a-b", b"bytes=--1",
     b"bytes=1", b"bytes=-", b"bytes=0-1,x"],
)  # fmt: skip
def test_malformedIgnored(header: bytes) -> None:
    """
    A malformed header, or another unit, is ignored: the whole file is sent.
    """
    assert parseRange(header, 10) is None


def test_tooManyRanges() -> None:
    """
    More than L{MAX_RANGES} ranges are ignored (as Apache's MaxRanges does),
    so a client cannot make the server assemble thousands of parts.
    """
    many = b"bytes=" + b",".join(
        b"%d-%d" % (i * 2, i * 2) for i in range(MAX_RANGES + 1)
    )
    assert parseRange(many, 10_000) is None
    enough = b"bytes=" + b",".join(b"%d-%d" % (i * 2, i * 2) for i in range(MAX_RANGES))
    assert parseRange(enough, 10_000) is not None


def test_emptyFileIgnored() -> None:
    """
    Ranges of an empty file are ignored; it is sent whole (empty).
    """
    assert parseRange(b"bytes=0-0", 0) is None


_spec = st.one_of(
    st.tuples(st.integers(0, 300), st.integers(0, 300)).map(
        lambda t: b"%d-%d" % (min(t), max(t))
    ),
    st.integers(0, 300).map(lambda n: b"%d-" % n),
    st.integers(0, 300).map(lambda n: b"-%d" % n),
)


@given(st.lists(_spec, min_size=1, max_size=MAX_RANGES), st.integers(1, 200))
def test_noAmplification(specs: list[bytes], size: int) -> None:
    """
    Whatever the ranges asked for, the parts are disjoint, non-adjacent,
    sorted and inside the file, so their total never exceeds the file size.
    """
    ranges = parseRange(b"bytes=" + b",".join(specs), size)
    assert ranges is not None
    total = 0
    previousEnd = -2
    for start, end in ranges:
        assert 0 <= start <= end < size
        assert start > previousEnd + 1
        previousEnd = end
        total += end - start + 1
    assert total <= size


_HUGE = b"9" * 5000


@pytest.mark.parametrize(
    ("header", "expected"),
    [
        # A first position past the end, however long: unsatisfiable.
        (b"bytes=" + _HUGE + b"-", []),
        (b"bytes=" + _HUGE + b"-" + _HUGE, []),
        (b"bytes=" + _HUGE + b"-, 0-0", [(0, 0)]),
        # A last position or a suffix past the end: the file's end.
        (b"bytes=0-" + _HUGE, [(0, 9)]),
        (b"bytes=3-" + _HUGE, [(3, 9)]),
        (b"bytes=-" + _HUGE, [(0, 9)]),
        # Leading zeros are the number they pad, at any length.
        (b"bytes=" + b"0" * 5000 + b"2-" + b"0" * 5000 + b"4", [(2, 4)]),
        (b"bytes=-" + b"0" * 5000 + b"3", [(7, 9)]),
        (b"bytes=-" + b"0" * 5000, []),
        # Just past the file's size, and just within it.
        (b"bytes=10-", []),
        (b"bytes=9-10", [(9, 9)]),
        (b"bytes=-11", [(0, 9)]),
    ],
)
def test_hugePositions(header: bytes, expected: list[tuple[int, int]]) -> None:
    """
    Positions longer than Python converts to integers (4300 digits) are
    taken for what they mean instead of failing the request (a 500, and the
    file opened for it leaked): a first position past the end makes the
    range unsatisfiable, a last position or a suffix past it is clamped.
    """
    assert parseRange(header, 10) == expected


@pytest.mark.parametrize(
    "header",
    [
        b"bytes=" + _HUGE + b"-1",
        b"bytes=" + _HUGE + b"9-" + _HUGE,
        b"bytes=" + b"1" + b"0" * 5000 + b"-" + b"9" * 5000,
    ],
)
def test_hugeInvertedIgnored(header: bytes) -> None:
    """
    A range whose last position is before its first is malformed (the
    header is ignored) whatever the lengths of the two numbers.
    """
    assert parseRange(header, 10) is None


def test_hugeFile() -> None:
    """
    Positions are compared with sizes beyond 64 bits exactly.
    """
    size = 10**30
    assert parseRange(b"bytes=%d-" % (size - 1,), size) == [(size - 1, size - 1)]
    assert parseRange(b"bytes=%d-" % (size,), size) == []
    assert parseRange(b"bytes=-%d" % (size + 1,), size) == [(0, size - 1)]


_numberish = st.one_of(
    st.integers(0, 10**6).map(lambda n: b"%d" % n),
    st.integers(4000, 6000).map(lambda n: b"9" * n),
    st.integers(4000, 6000).map(lambda n: b"0" * n + b"1"),
    st.binary(max_size=8),
)


@given(
    st.one_of(
        st.binary(max_size=2000),
        st.lists(
            st.tuples(_numberish, st.sampled_from([b"-", b"", b" - "]), _numberish),
            min_size=1,
            max_size=5,
        ).map(lambda specs: b"bytes=" + b",".join(a + d + b for a, d, b in specs)),
    ),
    st.integers(-1, 2**64),
)
def test_neverRaises(header: bytes, size: int) -> None:
    """
    No header makes parsing raise (the file is already open when the range
    is parsed); whatever it returns lies within the file.
    """
    ranges = parseRange(header, size)
    if ranges is None:
        return
    previousEnd = -2
    for start, end in ranges:
        assert 0 <= start <= end < size
        assert start > previousEnd + 1
        previousEnd = end
