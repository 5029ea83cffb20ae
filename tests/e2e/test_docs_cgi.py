"""
The CGI guide's Python recipe, run for real as the guide shows it.
"""

from __future__ import annotations

import re
import shutil
import subprocess
import tempfile
from collections.abc import Iterator
from pathlib import Path

import pytest

from tests.support.checkout import ROOT
from tests.support.server import Server, startServer

pytestmark = pytest.mark.e2e

GUIDE = ROOT / "docs" / "cgi.md"


def _recipe() -> str:
    section = GUIDE.read_text().split("### A Python script", 1)[1]
    match = re.search(r"```python\n(.*?)```", section, re.DOTALL)
    assert match, "the guide has no Python recipe"
    return match.group(1)


@pytest.fixture
def server(tmp_path: Path) -> Iterator[Server]:
    if shutil.which("python3", path="/usr/local/bin:/usr/bin:/bin") is None:
        pytest.skip("no python3 on the PATH scripts get")
    # World-traversable: as root, scripts run as nobody.
    root = Path(tempfile.mkdtemp(prefix="cgiserve-doc-"))
    root.chmod(0o755)
    try:
        (root / "cgi-bin").mkdir(mode=0o755)
        script = root / "cgi-bin" / "hello.py"
        script.write_text(_recipe())
        script.chmod(0o755)
        srv = startServer(root, logDir=tmp_path)
        try:
            yield srv
        finally:
            srv.stop()
    finally:
        shutil.rmtree(root)


def test_pythonRecipe(server: Server) -> None:
    """
    The recipe's script answers the guide's two curl commands: a query, and
    a form POST read from standard input.
    """
    base = f"http://127.0.0.1:{server.port}/cgi-bin/hello.py"
    for args, expected in (
        ([base + "?name=Ada"], "Hello, Ada!\n"),
        (["--data", "name=Grace", base], "Hello, Grace!\n"),
        ([base], "Hello, world!\n"),
    ):
        result = subprocess.run(
            ["curl", "-sS", "--max-time", "10", *args],
            capture_output=True,
            text=True,
            timeout=20,
        )
        assert result.stdout == expected, (result.stderr, server.log())
