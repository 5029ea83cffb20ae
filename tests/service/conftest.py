"""
Fixtures shared by the service layer's log-file tests.
"""

from __future__ import annotations

import os
from collections.abc import Iterator
from pathlib import Path

import pytest

from twisted_cgiserve._service import logfile as _logfile


@pytest.fixture
def closeOpenedLog() -> Iterator[None]:
    """
    Close the node log file a test opened, and leave the module as it found
    it.
    """
    before = _logfile._opened
    _logfile._opened = None
    yield
    if _logfile._opened is not None:
        _logfile._opened.close()
    _logfile._opened = before


@pytest.fixture
def fifo(tmp_path: Path) -> Iterator[tuple[Path, int]]:
    """
    A FIFO, and a descriptor reading it.
    """
    path = tmp_path / "log.fifo"
    os.mkfifo(path)
    reader = os.open(path, os.O_RDONLY | os.O_NONBLOCK)
    yield path, reader
    os.close(reader)
