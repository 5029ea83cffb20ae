"""
Shared fixtures. The helpers they use live in L{tests.support}.

Nothing here imports the reactor: pytest-twisted installs it after this
module is imported.
"""

from __future__ import annotations

import os
import secrets
from collections.abc import Callable, Iterator
from pathlib import Path

import pytest

from tests.support.server import Server, startServer


@pytest.fixture
def docroot(tmp_path: Path) -> Path:
    """
    An empty document root.
    """
    root = tmp_path / "root"
    root.mkdir()
    return root


@pytest.fixture
def serve(tmp_path: Path) -> Iterator[Callable[..., Server]]:
    """
    Start servers on demand (C{serve(root, args)}); all are stopped at the
    end of the test.
    """
    servers: list[Server] = []

    def start(root: Path, args: list[str] | None = None, **kw: object) -> Server:
        server = startServer(root, args, logDir=tmp_path, **kw)  # type: ignore[arg-type]
        servers.append(server)
        return server

    yield start
    for server in servers:
        server.stop()


@pytest.fixture
def token() -> str:
    """
    A fresh random name, for the files a test's scripts leave behind.
    """
    return secrets.token_hex(8)


@pytest.fixture(autouse=True)
def _noStrayPidfile() -> Iterator[None]:
    """
    Servers are started with C{--pidfile=}; make sure no test leaves a
    C{twistd.pid} in the checkout.
    """
    yield
    assert not os.path.exists("twistd.pid")
