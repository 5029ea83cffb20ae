"""
The public surface, the dropin and the wheel.
"""

from __future__ import annotations

import dataclasses
import importlib.metadata
import inspect
import io
import re
import subprocess
import sys
from pathlib import Path

import pytest
from twisted.logger import ILogObserver, LogLevel
from twisted.web.resource import IResource

import twisted_cgiserve
from tests.support.checkout import ROOT

# The public API as docs/embedding.md's table documents it: each name and
# its signature.
DOCUMENTED = {
    "makeRootResource": "(directory, settings=None, reactor=None)",
    "Settings": None,
    "StaticResource": None,
    "journaldLogObserver": "(outFile=None)",
    "__version__": None,
}


def test_publicAPIIsTheDocumentedOne() -> None:
    """
    C{__all__} is exactly the names docs/embedding.md documents, each once,
    and the document's table lists no other.
    """
    assert sorted(twisted_cgiserve.__all__) == sorted(DOCUMENTED)
    assert len(set(twisted_cgiserve.__all__)) == len(twisted_cgiserve.__all__)
    table = (ROOT / "docs" / "embedding.md").read_text()
    documented = set(re.findall(r"^\| `(\w+)[(` ]", table, re.MULTILINE))
    assert documented == set(DOCUMENTED)


def test_starImportGivesExactlyThePublicAPI() -> None:
    """
    C{from twisted_cgiserve import *} binds the public names and nothing
    else, and C{from twisted_cgiserve import NAME} works for each.
    """
    namespace: dict[str, object] = {}
    exec("from twisted_cgiserve import *", namespace)
    namespace.pop("__builtins__")
    assert sorted(namespace) == sorted(DOCUMENTED)
    for name in DOCUMENTED:
        imported: dict[str, object] = {}
        exec(f"from twisted_cgiserve import {name}", imported)
        assert imported[name] is getattr(twisted_cgiserve, name)


def test_documentedSignatures() -> None:
    """
    The public functions take the arguments the documentation gives them.
    """
    for name, signature in DOCUMENTED.items():
        if signature is not None:
            function = getattr(twisted_cgiserve, name)
            assert inspect.isfunction(function), name
            parameters = inspect.signature(function).parameters.values()
            text = ", ".join(
                p.name if p.default is p.empty else f"{p.name}={p.default!r}"
                for p in parameters
            )
            assert f"({text})" == signature, name


def test_settingsIsAFrozenKeywordOnlyDataclass() -> None:
    """
    L{twisted_cgiserve.Settings} is a frozen dataclass taking keywords
    only, its defaults those the documentation gives.
    """
    Settings = twisted_cgiserve.Settings
    assert inspect.isclass(Settings)
    assert dataclasses.is_dataclass(Settings)
    settings = Settings()
    assert settings.cgiDirectories == ("/cgi-bin", "/htbin")
    assert settings.cgiEnabled is True
    assert settings.indexNames == ("index.html", "index.htm")
    assert settings.cgiUser == "nobody"
    with pytest.raises(dataclasses.FrozenInstanceError):
        settings.cgiEnabled = False  # type: ignore[misc]
    with pytest.raises(TypeError):
        Settings(("/cgi-bin",))  # type: ignore[call-arg]


def test_resourcesAreResources(tmp_path: Path) -> None:
    """
    L{twisted_cgiserve.StaticResource} and what
    L{twisted_cgiserve.makeRootResource} returns provide L{IResource}, and
    both are leaves (they resolve the rest of the path themselves).
    """
    static = twisted_cgiserve.StaticResource(str(tmp_path))
    root = twisted_cgiserve.makeRootResource(
        str(tmp_path), twisted_cgiserve.Settings(cgiEnabled=False)
    )
    for resource in (static, root):
        assert IResource.providedBy(resource)
        assert resource.isLeaf


def test_journaldLogObserverIsAnObserver() -> None:
    """
    L{twisted_cgiserve.journaldLogObserver} returns an L{ILogObserver} that
    writes a journal line with its priority prefix.
    """
    out = io.StringIO()
    observer = twisted_cgiserve.journaldLogObserver(out)
    assert ILogObserver.providedBy(observer)
    observer(
        {
            "log_format": "hello",
            "log_level": LogLevel.warn,
            "log_namespace": "cgiserve.test",
            "log_time": 0.0,
        }
    )
    assert out.getvalue().startswith("<4>")
    assert "hello" in out.getvalue()


def test_versionIsTheDistributionVersion() -> None:
    """
    C{__version__} is a version string, the one the installed distribution
    declares.
    """
    version = twisted_cgiserve.__version__
    assert isinstance(version, str)
    assert re.fullmatch(r"\d+\.\d+(\.\d+)?([ab]|rc|\.dev|\.post)?\d*", version)
    assert importlib.metadata.version("twisted-cgiserve") == version


def test_dropinIsCheap() -> None:
    """
    Importing the dropin installs no reactor and imports none of the
    package: every twistd invocation on the machine imports it.
    """
    code = (
        "import sys, twisted.plugins.twisted_cgiserve_plugin as p;"
        "print('twisted.internet.reactor' in sys.modules,"
        " any(m.startswith('twisted_cgiserve') for m in sys.modules),"
        " p.twistedCGIServe.tapname)"
    )
    out = subprocess.run(
        [sys.executable, "-c", code], capture_output=True, text=True, check=True
    ).stdout
    assert out.split() == ["False", "False", "cgiserve"]


def test_pluginDiscovered() -> None:
    """
    twistd finds the C{cgiserve} subcommand.
    """
    code = (
        "from twisted.plugin import getPlugins;"
        "from twisted.application.service import IServiceMaker;"
        "print(sorted(p.tapname for p in getPlugins(IServiceMaker)))"
    )
    out = subprocess.run(
        [sys.executable, "-c", code], capture_output=True, text=True, check=True
    ).stdout
    assert "'cgiserve'" in out
