"""
Tests for L{twisted_cgiserve._service.config.ServerConfig}: frozen,
keyword-only, and without defaults of its own.
"""

from __future__ import annotations

import dataclasses
from typing import Any

import pytest

from twisted_cgiserve._service.config import ServerConfig
from twisted_cgiserve._service.ports import parsePort
from twisted_cgiserve._settings import Settings

FIELDS: dict[str, Any] = {
    "directory": "/srv",
    "settings": Settings(),
    "listen": (parsePort("8000", None),),
    "accessLog": None,
    "idleTimeout": 60.0,
    "headerTimeout": 20.0,
    "sendTimeout": 60.0,
    "maxBodySize": 1024,
    "shutdownGrace": 30.0,
    "headers": ((b"X-A", b"1"),),
    "authFile": None,
    "authRealm": "twisted-cgiserve",
    "authPaths": (),
    "workers": 1,
}


def test_frozen() -> None:
    """
    Nothing changes a configuration once made.
    """
    config = ServerConfig(**FIELDS)
    with pytest.raises(dataclasses.FrozenInstanceError):
        config.directory = "/tmp"  # type: ignore[misc]


def test_keywordOnly() -> None:
    """
    No field can be given by position.
    """
    with pytest.raises(TypeError):
        ServerConfig(*FIELDS.values())  # type: ignore[misc]


@pytest.mark.parametrize("name", sorted(FIELDS))
def test_noDefaults(name: str) -> None:
    """
    Every field must be given: the options' defaults are the only ones.
    """
    fields = {k: v for k, v in FIELDS.items() if k != name}
    with pytest.raises(TypeError, match=name):
        ServerConfig(**fields)


def test_comparable() -> None:
    """
    Two configurations of the same values are equal (and hashable), so a
    configuration can be compared with the one a test expects.
    """
    assert ServerConfig(**FIELDS) == ServerConfig(**FIELDS)
    assert hash(ServerConfig(**FIELDS)) == hash(ServerConfig(**FIELDS))
