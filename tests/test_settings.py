"""
Tests for L{twisted_cgiserve.Settings}.
"""

from __future__ import annotations

import dataclasses

import pytest

from twisted_cgiserve import Settings


def test_keywordOnly() -> None:
    """
    Every field is keyword-only: a positional argument is a L{TypeError},
    not a value silently taken for whichever field happens to come first.
    """
    assert all(field.kw_only for field in dataclasses.fields(Settings))
    with pytest.raises(TypeError):
        Settings(("/scripts",))  # type: ignore[call-arg]
    with pytest.raises(TypeError):
        Settings(("/scripts",), False)  # type: ignore[call-arg]
    settings = Settings(cgiDirectories=("/scripts",), cgiEnabled=False)
    assert (settings.cgiDirectories, settings.cgiEnabled) == (("/scripts",), False)


def test_defaults() -> None:
    """
    Built without arguments, L{Settings} has http.server's CGI directories
    and index files, and runs scripts as C{nobody}.
    """
    settings = Settings()
    assert settings.cgiDirectories == ("/cgi-bin", "/htbin")
    assert settings.cgiEnabled
    assert settings.indexNames == ("index.html", "index.htm")
    assert settings.cgiUser == "nobody"


def test_frozen() -> None:
    """
    Settings cannot be changed once built (they were validated then).
    """
    settings = Settings()
    with pytest.raises(dataclasses.FrozenInstanceError):
        settings.cgiEnabled = False  # type: ignore[misc]
