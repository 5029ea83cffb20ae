# -*- test-case-name: tests.static.test_filecache -*-
"""
A bounded cache of small files' contents.

Serving a small file costs four system calls (open, fstat, read, close),
about a fifth of the server's time for a 1 KiB file. A cached file costs one
C{stat}, which also validates the entry: it is used only while the file's
inode, device, size, modification and change times are all unchanged, and
any write, replacement, C{chmod} or rename changes the change time. (A
rewrite in place that keeps the size, within the filesystem's timestamp
granularity, is the one change it cannot see; the file's ETag cannot see it
either.)
"""

from __future__ import annotations

import os
from collections import OrderedDict

__all__ = ["FileCache"]


def _identity(st: os.stat_result) -> tuple[int, int, int, int, int]:
    return (st.st_ino, st.st_dev, st.st_size, st.st_mtime_ns, st.st_ctime_ns)


class FileCache:
    """
    Least-recently-used file contents, at most C{maxTotal} bytes of files of
    at most C{maxFile} bytes each.
    """

    def __init__(self, maxFile: int = 64 * 1024, maxTotal: int = 16 * 1024 * 1024):
        self.maxFile = maxFile
        self.maxTotal = maxTotal
        self._entries: OrderedDict[str, tuple[tuple[int, ...], bytes]] = OrderedDict()
        self._total = 0

    def get(self, path: str, st: os.stat_result) -> bytes | None:
        """
        The contents of C{path} if cached and still what C{st} describes.
        """
        entry = self._entries.get(path)
        if entry is None:
            return None
        identity, data = entry
        if identity != _identity(st):
            self._discard(path)
            return None
        self._entries.move_to_end(path)
        return data

    def put(self, path: str, st: os.stat_result, data: bytes) -> None:
        """
        Remember C{data} as the contents of C{path} as C{st} describes it
        (the caller read it from a descriptor it C{fstat}ed).
        """
        if len(data) > self.maxFile or len(data) != st.st_size:
            return
        self._discard(path)
        self._entries[path] = (_identity(st), data)
        self._total += len(data)
        while self._total > self.maxTotal:
            oldest = next(iter(self._entries))
            self._discard(oldest)

    def _discard(self, path: str) -> None:
        entry = self._entries.pop(path, None)
        if entry is not None:
            self._total -= len(entry[1])
