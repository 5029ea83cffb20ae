# -*- test-case-name: tests.cgi.test_stderr -*-
"""
A script's standard error: cut into lines for the log, and, for
C{--cgi-debug}, its last bytes kept for the page that shows a failure.

Neither knows anything of processes or logging: bytes go in as they arrive.
A script that writes without ever ending a line, or writes without end,
must not grow the server's memory, so both are bounded: a line comes out in
pieces of at most L{MAX_LINE} bytes, and the tail holds at most L{MAX_TAIL}
bytes (twice that, briefly, so that trimming costs nothing per write).
"""

from __future__ import annotations

__all__ = ["MAX_LINE", "MAX_TAIL", "LineSplitter", "StderrTail"]

# The longest line given out in one piece; longer lines are split.
MAX_LINE = 4096

# How much of the end of a script's standard error --cgi-debug shows.
MAX_TAIL = 64 * 1024


class LineSplitter:
    """
    Bytes in, lines out (without their C{\\n}), none longer than
    C{maxLength}.

    @ivar maxLength: The longest piece given out.
    """

    def __init__(self, maxLength: int = MAX_LINE) -> None:
        self.maxLength = maxLength
        self._buffer = b""

    def feed(self, data: bytes) -> list[bytes]:
        """
        Take more of the stream.

        @return: The lines it completes, in order, each split into pieces of
            at most C{maxLength} bytes (an empty line is one empty piece);
            and the first C{maxLength} bytes of a line not yet ended once
            that many are waiting.
        """
        *complete, rest = (self._buffer + data).split(b"\n")
        lines: list[bytes] = []
        for line in complete:
            lines.extend(self._pieces(line))
        while len(rest) > self.maxLength:
            lines.append(rest[: self.maxLength])
            rest = rest[self.maxLength :]
        self._buffer = rest
        return lines

    def flush(self) -> list[bytes]:
        """
        The stream has ended: what is left of a last line without its
        C{\\n}, if anything.
        """
        rest, self._buffer = self._buffer, b""
        return [rest] if rest else []

    def _pieces(self, line: bytes) -> list[bytes]:
        size = self.maxLength
        return [
            line[start : start + size] for start in range(0, max(len(line), 1), size)
        ]


class StderrTail:
    """
    The last C{size} bytes of a stream, and how many came before them.

    Kept only for C{--cgi-debug}: the end of a script's standard error is
    where the cause of its failure usually is (a traceback ends there), and
    the page must stay small whatever the script wrote.

    @ivar size: The most bytes kept.
    @ivar total: How many bytes were fed in all.
    """

    def __init__(self, size: int = MAX_TAIL) -> None:
        self.size = size
        self.total = 0
        self._buffer = bytearray()

    def feed(self, data: bytes) -> None:
        """
        Take more of the stream, forgetting what falls out of the tail.
        """
        self.total += len(data)
        if len(data) >= self.size:
            self._buffer = bytearray(data[-self.size :])
            return
        self._buffer += data
        # Trimmed only past twice the size: each byte is moved at most once.
        if len(self._buffer) > 2 * self.size:
            del self._buffer[: -self.size]

    def value(self) -> bytes:
        """
        The last C{size} bytes fed (all of them, if fewer).
        """
        return bytes(self._buffer[-self.size :])

    @property
    def dropped(self) -> int:
        """
        How many bytes came before L{value}.
        """
        return self.total - min(self.total, self.size)
