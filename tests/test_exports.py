"""
The public surface, the dropin and the wheel.
"""

from __future__ import annotations

import subprocess
import sys

import twisted_cgiserve


def test_publicAPI() -> None:
    """
    The package exports exactly its documented API.
    """
    assert sorted(twisted_cgiserve.__all__) == [
        "Settings",
        "StaticResource",
        "__version__",
        "journaldLogObserver",
        "makeRootResource",
    ]
    for name in twisted_cgiserve.__all__:
        assert getattr(twisted_cgiserve, name) is not None


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
