"""
Tests for L{twisted_cgiserve._pytestplugin}: the C{cgiserve} fixture,
driven with a fake L{twisted_cgiserve.testing.serve} (a separate pytest
project uses the real one in tests/e2e/test_testing.py).
"""

from __future__ import annotations

import contextlib
import importlib.metadata
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest

from twisted_cgiserve import _pytestplugin, testing


def test_registered() -> None:
    """
    The package registers the plugin as C{cgiserve} under pytest's
    C{pytest11} entry point, so installing the package provides the
    fixture.
    """
    [entry] = [
        e
        for e in importlib.metadata.entry_points(group="pytest11")
        if e.name == "cgiserve"
    ]
    assert entry.value == "twisted_cgiserve._pytestplugin"
    assert entry.load() is _pytestplugin


def test_fixtureStartsAndStops(monkeypatch: pytest.MonkeyPatch, tmp_path: Path) -> None:
    """
    Each call starts a server with the directory and options given and
    returns it; all are stopped when the test ends, the last one first.
    """
    events: list[Any] = []

    @contextlib.contextmanager
    def fakeServe(directory: Path, **options: Any) -> Iterator[str]:
        events.append(("start", directory, options))
        yield f"server-{len(events)}"
        events.append(("stop", directory))

    monkeypatch.setattr(testing, "serve", fakeServe)
    fixture = _pytestplugin.servers()
    start = next(fixture)
    assert start(tmp_path, cgi=True) == "server-1"
    assert start(tmp_path / "b") == "server-2"
    assert events == [("start", tmp_path, {"cgi": True}), ("start", tmp_path / "b", {})]
    with pytest.raises(StopIteration):
        next(fixture)
    assert events[2:] == [("stop", tmp_path / "b"), ("stop", tmp_path)]
