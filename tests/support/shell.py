"""
Scripts and files for the end-to-end suites' document roots.
"""

from __future__ import annotations

import pwd
import textwrap
from pathlib import Path

__all__ = ["NOBODY", "sh", "writeFile"]

# The account scripts run as by default when the server runs as root.
NOBODY = pwd.getpwnam("nobody")


def sh(body: str) -> bytes:
    """
    A C{/bin/sh} script.
    """
    return ("#!/bin/sh\n" + textwrap.dedent(body).lstrip("\n")).encode()


def writeFile(path: Path, data: bytes, mode: int = 0o755) -> None:
    path.parent.mkdir(parents=True, exist_ok=True)
    path.write_bytes(data)
    path.chmod(mode)
