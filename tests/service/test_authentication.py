"""
Tests for L{twisted_cgiserve._service.authentication}: wrapping the tree,
and the warning about passwords over plain HTTP.
"""

from __future__ import annotations

import dataclasses
from pathlib import Path

import pytest
from twisted.internet.testing import MemoryReactorClock
from twisted.logger import capturedLogs, formatEvent
from twisted.web.resource import Resource

from twisted_cgiserve._http.basicauth import BasicAuthResource
from twisted_cgiserve._http.htpasswd import HtpasswdError
from twisted_cgiserve._http.shacrypt import shaCrypt
from twisted_cgiserve._service.authentication import (
    clearTextPorts,
    protect,
    warnClearText,
)
from twisted_cgiserve._service.config import ServerConfig
from twisted_cgiserve._service.ports import ListenSpec, parsePort
from twisted_cgiserve._service.tls import TLSFiles
from twisted_cgiserve._settings import Settings

TLS = TLSFiles(certificate="c.pem", key="k.pem")


@pytest.mark.parametrize(
    ("spec", "clear"),
    [
        (ListenSpec(None, 8000), True),
        (ListenSpec(None, 8000, tls=TLS), False),
        (ListenSpec("tcp:8000"), True),
        (ListenSpec("tcp:8000:interface=0.0.0.0"), True),
        (ListenSpec("tcp:8000:interface=192.0.2.7"), True),
        (ListenSpec("tcp:8000:interface=127.0.0.1"), False),
        (ListenSpec("tcp:8000:interface=127.1.2.3"), False),
        (ListenSpec("tcp6:8000:interface=\\:\\:1"), False),
        (ListenSpec("tcp6:8000:interface=\\:\\:"), True),
        (ListenSpec("tcp:8000:interface=localhost"), False),
        (ListenSpec("tcp:8000:interface=example.org"), True),
        (ListenSpec("ssl:8443:privateKey=k.pem"), False),
        (ListenSpec("unix:/run/cgiserve.sock"), False),
        (ListenSpec("systemd:domain=INET:index=0"), False),
        (parsePort("8000", "127.0.0.1"), False),
        (parsePort("8000", "::1"), False),
        (parsePort("8000", "192.0.2.1"), True),
        # IPv4-mapped addresses: loopback as their IPv4 address is.
        (parsePort("8000", "::ffff:127.0.0.1"), False),
        (parsePort("8000", "::ffff:192.0.2.1"), True),
        (ListenSpec("tcp6:8000:interface=\\:\\:ffff\\:127.0.0.1"), False),
        # An escaped colon, and a keyword's value with an "=".
        (ListenSpec("tcp:8000:backlog=5:interface=127.0.0.1"), False),
    ],
)
def test_clearTextPorts(spec: ListenSpec, clear: bool) -> None:
    """
    Plain HTTP on every address or a non-loopback one counts; TLS,
    loopback, UNIX sockets and systemd's sockets do not.
    """
    assert clearTextPorts([spec]) == ([spec] if clear else [])


def test_warnClearText() -> None:
    """
    One warning line per such port, naming it and what to do.
    """
    with capturedLogs() as events:
        warnClearText([ListenSpec(None, 8000), ListenSpec("tcp6:1:interface=\\:\\:1")])
    [event] = events
    text = formatEvent(event)
    assert "plain HTTP" in text and "0.0.0.0:8000" in text and "--tls-cert" in text


def config(tmp_path: Path, authFile: str | None, **kw: object) -> ServerConfig:
    fields = {
        "directory": str(tmp_path),
        "settings": Settings(),
        "listen": (ListenSpec("tcp:0:interface=127.0.0.1"),),
        "accessLog": None,
        "idleTimeout": 60.0,
        "headerTimeout": 10.0,
        "sendTimeout": 60.0,
        "maxBodySize": 0,
        "shutdownGrace": 5.0,
        "headers": (),
        "authFile": authFile,
        "authRealm": "r",
        "authPaths": (),
        "workers": 1,
    }
    known = {f.name for f in dataclasses.fields(ServerConfig)}
    fields.update(kw)
    return ServerConfig(**{k: v for k, v in fields.items() if k in known})  # type: ignore[arg-type]


def test_noAuthFile(tmp_path: Path) -> None:
    root = Resource()
    assert protect(root, config(tmp_path, None), MemoryReactorClock()) == (root, None)


def test_protect(tmp_path: Path) -> None:
    """
    With a file, the tree is wrapped and the checker returned for reloads;
    on loopback nothing is said.
    """
    path = tmp_path / "htpasswd"
    path.write_bytes(b"alice:" + shaCrypt(b"pw", b"$5$s") + b"\n")
    with capturedLogs() as events:
        wrapped, checker = protect(
            Resource(), config(tmp_path, str(path)), MemoryReactorClock()
        )
    assert isinstance(wrapped, BasicAuthResource)
    assert checker is not None and checker.users == 1
    assert events == []


def test_protectWarns(tmp_path: Path) -> None:
    """
    An empty file and a port in the clear are said at start-up.
    """
    path = tmp_path / "htpasswd"
    path.write_bytes(b"")
    with capturedLogs() as events:
        protect(
            Resource(),
            config(tmp_path, str(path), listen=(ListenSpec(None, 8000),)),
            MemoryReactorClock(),
        )
    texts = [formatEvent(e) for e in events]
    assert any("no users" in t for t in texts)
    assert any("plain HTTP" in t for t in texts)


def test_protectBadFile(tmp_path: Path) -> None:
    with pytest.raises(HtpasswdError):
        protect(Resource(), config(tmp_path, str(tmp_path / "x")), MemoryReactorClock())
