"""
The embedding guide's example, run for real.
"""

from __future__ import annotations

import re
import subprocess
import sys
import time
from pathlib import Path

import requests

EXAMPLE = Path(__file__).parent.parent / "docs" / "examples" / "embed.py"


def test_embedExample(tmp_path: Path) -> None:
    """
    docs/examples/embed.py mounts the served tree under /files and the
    static half under /assets of its own application.
    """
    root = tmp_path / "www"
    (root / "sub").mkdir(parents=True)
    (root / "a.txt").write_text("embedded\n")
    (root / "cgi-bin").mkdir()
    (root / "cgi-bin" / "s.sh").write_text("#!/bin/sh\nsecret\n")
    process = subprocess.Popen(
        [sys.executable, str(EXAMPLE), str(root), "tcp:0:interface=127.0.0.1"],
        stdout=subprocess.PIPE,
        stderr=subprocess.STDOUT,
        text=True,
    )
    try:
        assert process.stdout is not None
        line = process.stdout.readline()
        match = re.search(r"port=(\d+)", line)
        assert match, line
        base = f"http://127.0.0.1:{match.group(1)}"
        assert "files" in requests.get(base + "/", timeout=5).text
        assert requests.get(base + "/files/a.txt", timeout=5).text == "embedded\n"
        redirect = requests.get(base + "/files", allow_redirects=False, timeout=5)
        assert (redirect.status_code, redirect.headers["Location"]) == (301, "/files/")
        listing = requests.get(base + "/files/", timeout=5).text
        assert "Directory listing for /files/" in listing
        script = requests.get(base + "/files/cgi-bin/s.sh", timeout=5)
        assert script.status_code == 403 and "secret" not in script.text
        assert requests.get(base + "/assets/a.txt", timeout=5).text == "embedded\n"
        assert requests.get(base + "/assets/sub/", timeout=5).status_code == 404
    finally:
        process.terminate()
        deadline = time.monotonic() + 10
        while process.poll() is None and time.monotonic() < deadline:
            time.sleep(0.05)
        if process.poll() is None:
            process.kill()
        process.wait()
        process.stdout.close()
