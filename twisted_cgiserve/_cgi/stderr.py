# -*- test-case-name: tests.cgi.test_stderr -*-
"""
A script's standard error, cut into lines for the log.

The splitter knows nothing of processes or logging: bytes go in as they
arrive, complete lines come out. A script that writes without ever ending a
line must not grow the server's memory, so a line is bounded: a longer one
comes out in pieces of at most L{MAX_LINE} bytes.
"""

from __future__ import annotations

__all__ = ["MAX_LINE", "LineSplitter"]

# The longest line given out in one piece; longer lines are split.
MAX_LINE = 4096


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
