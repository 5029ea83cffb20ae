# -*- test-case-name: tests.test_pytestplugin -*-
"""
The pytest plugin installed with the package (the C{pytest11} entry point
C{cgiserve}): the C{cgiserve} fixture.

pytest imports this module before it starts a test run, before coverage
measurement starts, and before pytest-twisted installs its reactor: it
imports nothing of the server until the fixture is used.
"""

from __future__ import annotations

import contextlib
import os
from collections.abc import Callable, Iterator
from typing import TYPE_CHECKING, Any

import pytest

if TYPE_CHECKING:
    from twisted_cgiserve.testing import RunningServer

__all__ = ["cgiserve", "servers"]


def servers() -> Iterator[Callable[..., RunningServer]]:
    """
    Start servers for a test: C{cgiserve(directory, **options)} runs
    L{twisted_cgiserve.testing.serve} and returns the running server (its
    C{url}, C{port} and C{log()}); every server started is stopped at the
    end of the test::

        def test_hello(cgiserve, tmp_path):
            server = cgiserve(tmp_path, cgi=True)
            assert urlopen(server.url + "/cgi-bin/hello.sh").read() == b"hi\\n"
    """
    from twisted_cgiserve.testing import serve  # noqa: PLC0415

    with contextlib.ExitStack() as started:

        def start(directory: str | os.PathLike[str], **options: Any) -> RunningServer:
            return started.enter_context(serve(directory, **options))

        yield start


cgiserve = pytest.fixture(name="cgiserve")(servers)
