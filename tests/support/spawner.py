"""
The CGI spawner of a running server, as the end-to-end suites see it: the
server's one child that is not a script, and the parent of every script.
"""

from __future__ import annotations

import contextlib
from pathlib import Path

from tests.support.probes import childrenOf

__all__ = [
    "isSpawner",
    "isWorker",
    "scriptProcessesOf",
    "servingProcessesOf",
    "spawnerOf",
]


def isSpawner(pid: int) -> bool:
    """
    Whether process C{pid} runs the CGI spawner's program.
    """
    try:
        command = Path(f"/proc/{pid}/cmdline").read_bytes()
    except OSError:
        return False
    return b"twisted_cgiserve._cgi.spawner" in command


def spawnerOf(server: int) -> int | None:
    """
    The PID of the spawner the server process C{server} started, if any.
    """
    for child in childrenOf(server):
        if isSpawner(child):
            return child
    return None


def isWorker(pid: int) -> bool:
    """
    Whether process C{pid} is a worker of C{--workers}.
    """
    try:
        command = Path(f"/proc/{pid}/cmdline").read_bytes()
    except OSError:
        return False
    return b"twisted_cgiserve._service.workers" in command


def servingProcessesOf(server: int) -> list[int]:
    """
    The processes that answer requests for the server process C{server}:
    its workers under C{--workers}, else the server itself.
    """
    return [child for child in childrenOf(server) if isWorker(child)] or [server]


def scriptProcessesOf(server: int) -> list[int]:
    """
    The processes a server's scripts run as, zombies included: the
    children of the server, of its workers (C{--workers}) and of its CGI
    spawner that are none of those. The suites that check nothing is left
    behind ask this rather than L{childrenOf}.
    """
    found = []
    for child in childrenOf(server):
        if isSpawner(child) or isWorker(child):
            with contextlib.suppress(OSError):
                found += scriptProcessesOf(child)
        else:
            found.append(child)
    return found
