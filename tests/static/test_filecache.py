"""
Tests for L{twisted_cgiserve._static.filecache} and its use by the static resource:
a cached file is never served stale.
"""

from __future__ import annotations

import os
from pathlib import Path

from tests.support.requests import body, makeRequest, render
from twisted_cgiserve import StaticResource
from twisted_cgiserve._static.filecache import FileCache


def _put(cache: FileCache, path: Path) -> None:
    cache.put(str(path), os.stat(path), path.read_bytes())


def test_hitWhileUnchanged(tmp_path: Path) -> None:
    """
    An unchanged file is served from the cache.
    """
    path = tmp_path / "f"
    path.write_bytes(b"one")
    cache = FileCache()
    _put(cache, path)
    assert cache.get(str(path), os.stat(path)) == b"one"


def test_sameSizeRewriteInvalidates(tmp_path: Path) -> None:
    """
    Rewriting a file in place with the same size invalidates its entry (its
    change time moves, at nanosecond resolution).
    """
    path = tmp_path / "f"
    path.write_bytes(b"one")
    cache = FileCache()
    _put(cache, path)
    path.write_bytes(b"two")
    assert cache.get(str(path), os.stat(path)) is None


def test_replacementAndChmodInvalidate(tmp_path: Path) -> None:
    """
    Replacing a file (a new inode) or changing its mode invalidates it.
    """
    path = tmp_path / "f"
    path.write_bytes(b"one")
    cache = FileCache()
    _put(cache, path)
    other = tmp_path / "g"
    other.write_bytes(b"one")
    os.utime(other, ns=(os.stat(path).st_atime_ns, os.stat(path).st_mtime_ns))
    other.replace(path)
    assert cache.get(str(path), os.stat(path)) is None
    _put(cache, path)
    path.chmod(0o600)
    assert cache.get(str(path), os.stat(path)) is None


def test_bounded(tmp_path: Path) -> None:
    """
    Files larger than C{maxFile} are not cached, and the total stays within
    C{maxTotal}, the least recently used going first.
    """
    cache = FileCache(maxFile=10, maxTotal=20)
    paths = []
    for name in "abc":
        path = tmp_path / name
        path.write_bytes(name.encode() * 8)
        paths.append(path)
        _put(cache, path)
    assert cache.get(str(paths[0]), os.stat(paths[0])) is None
    assert cache.get(str(paths[2]), os.stat(paths[2])) == b"c" * 8
    big = tmp_path / "big"
    big.write_bytes(b"x" * 11)
    _put(cache, big)
    assert cache.get(str(big), os.stat(big)) is None


def test_staticServesFreshContent(tmp_path: Path) -> None:
    """
    Through the static resource, a rewritten file is served with its new
    content and a new ETag, however quickly it was rewritten.
    """
    path = tmp_path / "f.txt"
    path.write_bytes(b"first")
    resource = StaticResource(str(tmp_path))
    first = render(resource, makeRequest(b"/f.txt"))
    assert body(first) == b"first"
    path.write_bytes(b"secnd")
    second = render(resource, makeRequest(b"/f.txt"))
    assert body(second) == b"secnd"
    assert second.responseHeaders.getRawHeaders(
        b"etag"
    ) != first.responseHeaders.getRawHeaders(b"etag")
    path.unlink()
    assert render(resource, makeRequest(b"/f.txt")).responseCode == 404
