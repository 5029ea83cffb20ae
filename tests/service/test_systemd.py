"""
The sd_notify protocol, spoken to a real datagram socket as systemd's
would receive it.
"""

from __future__ import annotations

import os
import socket
from collections.abc import Iterator
from pathlib import Path

import pytest
from twisted.internet.defer import Deferred, succeed
from twisted.internet.testing import MemoryReactorClock

from twisted_cgiserve._service.systemd import Notifier, ReadinessService


@pytest.fixture
def listener(tmp_path: Path) -> Iterator[tuple[socket.socket, str]]:
    sock = socket.socket(socket.AF_UNIX, socket.SOCK_DGRAM)
    path = str(tmp_path / "notify")
    sock.bind(path)
    sock.settimeout(5)
    yield sock, path
    sock.close()


def test_pathSocket(listener: tuple[socket.socket, str]) -> None:
    sock, path = listener
    notifier = Notifier({"NOTIFY_SOCKET": path})
    assert notifier.enabled
    assert notifier.notify("READY=1", "STATUS=Serving on http://[::]:8000/")
    assert sock.recv(4096) == b"READY=1\nSTATUS=Serving on http://[::]:8000/"


def test_abstractSocket() -> None:
    """
    An C{@} names a socket in the abstract namespace, as systemd uses.
    """
    name = f"cgiserve-test-{os.getpid()}"
    with socket.socket(socket.AF_UNIX, socket.SOCK_DGRAM) as sock:
        sock.bind(b"\0" + name.encode())
        sock.settimeout(5)
        assert Notifier({"NOTIFY_SOCKET": "@" + name}).notify("STOPPING=1")
        assert sock.recv(4096) == b"STOPPING=1"


def test_notUnderSystemd() -> None:
    """
    Without NOTIFY_SOCKET (or with a value that is no socket address)
    nothing is sent and nothing fails.
    """
    for environ in ({}, {"NOTIFY_SOCKET": ""}, {"NOTIFY_SOCKET": "relative"}):
        notifier = Notifier(environ)
        assert not notifier.enabled
        assert notifier.notify("READY=1") is False


def test_goneManagerIsNoError(tmp_path: Path) -> None:
    """
    A socket that is not there (the manager went away) is reported, not
    raised: serving goes on.
    """
    notifier = Notifier({"NOTIFY_SOCKET": str(tmp_path / "gone")})
    assert notifier.notify("READY=1") is False


def test_watchdogInterval() -> None:
    assert Notifier({"WATCHDOG_USEC": "30000000"}).watchdogInterval == 30.0
    mine = {"WATCHDOG_USEC": "2000000", "WATCHDOG_PID": str(os.getpid())}
    assert Notifier(mine).watchdogInterval == 2.0
    # Meant for another process (the watchdog is per main PID).
    other = {"WATCHDOG_USEC": "2000000", "WATCHDOG_PID": "1"}
    assert Notifier(other).watchdogInterval is None
    assert Notifier({"WATCHDOG_USEC": "0"}).watchdogInterval is None
    assert Notifier({}).watchdogInterval is None


class _Listening:
    def __init__(self, address: str) -> None:
        self._address = address

    def whenListening(self) -> Deferred[None]:
        return succeed(None)

    def address(self) -> str:
        return self._address


def test_readinessAndWatchdog(listener: tuple[socket.socket, str]) -> None:
    """
    Once the reactor runs and every port listens: READY=1 with the
    addresses, then WATCHDOG=1 every half watchdog interval; reloads are
    announced while running; STOPPING=1 on stop, and after it no pings and
    no reload messages.
    """
    sock, path = listener
    reactor = MemoryReactorClock()
    notifier = Notifier({"NOTIFY_SOCKET": path, "WATCHDOG_USEC": "4000000"})
    service = ReadinessService(
        [_Listening("http://[::]:80/"), _Listening("/run/web.sock")], reactor, notifier
    )
    service.startService()
    for hook in reactor.whenRunningHooks:
        hook[0](*hook[1], **hook[2])
    ready = sock.recv(4096).decode().splitlines()
    assert ready[:2] == ["READY=1", "STATUS=Serving on http://[::]:80/, /run/web.sock"]
    assert ready[2] == f"MAINPID={os.getpid()}"
    assert sock.recv(4096) == b"WATCHDOG=1"
    reactor.advance(2)
    assert sock.recv(4096) == b"WATCHDOG=1"
    service.reloading()
    service.reloaded()
    assert sock.recv(4096).startswith(b"RELOADING=1\nMONOTONIC_USEC=")
    assert sock.recv(4096).startswith(b"READY=1\nSTATUS=Serving on ")
    service.stopService()
    assert sock.recv(4096) == b"STOPPING=1\nSTATUS=Stopping"
    # A SIGHUP during shutdown must not announce readiness again.
    service.reloading()
    service.reloaded()
    reactor.advance(10)
    sock.settimeout(0.2)
    with pytest.raises(TimeoutError):
        sock.recv(4096)
