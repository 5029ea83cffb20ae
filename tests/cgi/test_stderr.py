"""
Tests for L{twisted_cgiserve._cgi.stderr}: a script's standard error, cut
into bounded lines, and its bounded tail for --cgi-debug.
"""

from __future__ import annotations

from hypothesis import given
from hypothesis import strategies as st

from twisted_cgiserve._cgi.stderr import MAX_LINE, MAX_TAIL, LineSplitter, StderrTail


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


def test_tailKeepsTheEnd() -> None:
    """
    The tail is the last 64 KiB of the stream, and says how much came
    before it.
    """
    tail = StderrTail()
    assert (tail.value(), tail.dropped) == (b"", 0)
    tail.feed(b"a" * MAX_TAIL)
    assert (tail.value(), tail.dropped) == (b"a" * MAX_TAIL, 0)
    tail.feed(b"Traceback\n")
    assert tail.value() == b"a" * (MAX_TAIL - 10) + b"Traceback\n"
    assert tail.dropped == 10
    assert tail.total == MAX_TAIL + 10


def test_tailOfOneLargeWrite() -> None:
    """
    A single write larger than the tail keeps only its end.
    """
    tail = StderrTail(size=4)
    tail.feed(b"ab")
    tail.feed(b"0123456789")
    assert (tail.value(), tail.dropped, tail.total) == (b"6789", 8, 12)


@given(st.lists(st.binary(max_size=40), max_size=30), st.integers(1, 16))
def test_tailIsTheStreamsEnd(chunks: list[bytes], size: int) -> None:
    """
    However the stream is cut, the tail is its last C{size} bytes, what it
    dropped is the rest, and memory never holds more than twice the size.
    """
    tail = StderrTail(size=size)
    for chunk in chunks:
        tail.feed(chunk)
        assert len(tail._buffer) <= 2 * size
    stream = b"".join(chunks)
    assert tail.value() == stream[-size:]
    assert tail.dropped + len(tail.value()) == len(stream)
