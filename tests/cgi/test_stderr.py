"""
Tests for L{twisted_cgiserve._cgi.stderr}: a script's standard error, cut
into bounded lines.
"""

from __future__ import annotations

from hypothesis import given
from hypothesis import strategies as st

from twisted_cgiserve._cgi.stderr import MAX_LINE, LineSplitter


def test_completeLinesOnly() -> None:
    """
    Only ended lines come out, without their newline; the rest waits for
    more (or for the end).
    """
    splitter = LineSplitter()
    assert splitter.feed(b"one\ntw") == [b"one"]
    assert splitter.feed(b"o\n\nthree") == [b"two", b""]
    assert splitter.flush() == [b"three"]
    assert splitter.flush() == []


def test_carriageReturnsKept() -> None:
    """
    The splitter cuts at C{\\n} only: what a line holds is the caller's.
    """
    assert LineSplitter().feed(b"dos\r\n") == [b"dos\r"]


def test_longLineSplit() -> None:
    """
    A line longer than the bound comes out in pieces of at most
    L{MAX_LINE} bytes.
    """
    splitter = LineSplitter()
    line = b"x" * (MAX_LINE * 2 + 10)
    assert splitter.feed(line + b"\n") == [
        b"x" * MAX_LINE,
        b"x" * MAX_LINE,
        b"x" * 10,
    ]


def test_unendedLineBounded() -> None:
    """
    A script that never ends its line does not grow the buffer past the
    bound: each full piece comes out as soon as it is there.
    """
    splitter = LineSplitter(maxLength=4)
    assert splitter.feed(b"abc") == []
    assert splitter.feed(b"defghij") == [b"abcd", b"efgh"]
    assert splitter.feed(b"k\n") == [b"ijk"]
    assert splitter.flush() == []


@given(st.lists(st.binary(max_size=40), max_size=20), st.integers(1, 16))
def test_nothingLostNothingTooLong(chunks: list[bytes], size: int) -> None:
    """
    However the stream is cut, the pieces put back together are the stream
    (less its newlines), and none is longer than the bound.
    """
    splitter = LineSplitter(maxLength=size)
    pieces: list[bytes] = []
    for chunk in chunks:
        pieces.extend(splitter.feed(chunk))
    pieces.extend(splitter.flush())
    assert all(len(piece) <= size for piece in pieces)
    assert b"".join(pieces) == b"".join(chunks).replace(b"\n", b"")
