"""
Tests for L{twisted_cgiserve._ranges}.
"""

from __future__ import annotations

import pytest
from hypothesis import given
from hypothesis import strategies as st

from twisted_cgiserve._ranges import MAX_RANGES, parseRange


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
