"""
The wheel, not the checkout: built from this tree, installed into a fresh
virtual environment outside it, its C{twistd -n cgiserve} serves a file and
runs a script.
"""

from __future__ import annotations

import os
import shutil
import subprocess
import sys
import sysconfig
import urllib.request
import zipfile
from pathlib import Path

import pytest

from tests.support.checkout import ROOT
from tests.support.server import makeDocroot, waitFor

pytestmark = pytest.mark.e2e

HELLO = b"""#!/bin/sh
printf 'Content-Type: text/plain\\r\\n\\r\\nhello from the wheel\\n'
"""


@pytest.fixture(scope="module")
def wheel(tmp_path_factory: pytest.TempPathFactory) -> Path:
    """
    The wheel this checkout builds.
    """
    out = tmp_path_factory.mktemp("wheel")
    subprocess.run(
        [sys.executable, "-m", "pip", "wheel", "--no-deps", "--no-build-isolation",
         "-q", "-w", str(out), str(ROOT)],
        check=True,
    )  # fmt: skip
    (built,) = out.glob("twisted_cgiserve-*.whl")
    return built


def test_wheelContents(wheel: Path) -> None:
    """
    The wheel ships the package and the dropin but never
    C{twisted/__init__.py}, C{twisted/plugins/__init__.py} (which would
    overwrite Twisted's own) or a C{dropin.cache}; nor the tests, the
    benchmark or the docs.
    """
    names = set(zipfile.ZipFile(wheel).namelist())
    assert "twisted/plugins/twisted_cgiserve_plugin.py" in names
    assert "twisted_cgiserve/__init__.py" in names
    assert "twisted_cgiserve/py.typed" in names
    assert not {
        n for n in names if n.startswith("twisted/") and n.endswith("__init__.py")
    }
    assert not {n for n in names if n.endswith("dropin.cache")}
    assert not {n for n in names if n.startswith(("tests/", "bench/", "docs/"))}
    assert any(n.endswith(".dist-info/licenses/LICENSE") for n in names)


def test_dropinFolderStaysANamespace() -> None:
    """
    The checkout's C{twisted/} and C{twisted/plugins/} have no
    C{__init__.py}: an installed one would replace Twisted's own package.
    """
    assert (ROOT / "twisted" / "plugins" / "twisted_cgiserve_plugin.py").is_file()
    assert not (ROOT / "twisted" / "__init__.py").exists()
    assert not (ROOT / "twisted" / "plugins" / "__init__.py").exists()


@pytest.fixture(scope="module")
def installed(wheel: Path, tmp_path_factory: pytest.TempPathFactory) -> Path:
    """
    A fresh virtual environment, outside the checkout, with the wheel
    installed; its dependencies are this environment's (a path file points
    at them), so the test needs no network.
    """
    venv = tmp_path_factory.mktemp("venv") / "venv"
    subprocess.run(
        [sys.executable, "-m", "venv", "--without-pip", str(venv)], check=True
    )
    python = venv / "bin" / "python"
    purelib = subprocess.run(
        [python, "-c", "import sysconfig; print(sysconfig.get_paths()['purelib'])"],
        check=True, capture_output=True, text=True,
    ).stdout.strip()  # fmt: skip
    Path(purelib, "dependencies.pth").write_text(
        sysconfig.get_paths()["purelib"] + "\n"
    )
    subprocess.run(
        [sys.executable, "-m", "pip", "--python", str(python), "install", "-q",
         "--no-deps", str(wheel)],
        check=True,
    )  # fmt: skip
    return venv


def test_installedWheelServes(installed: Path) -> None:
    """
    The installed wheel's twistd finds the cgiserve plugin, imports the
    package from the new environment (not from this checkout), serves a
    file and runs a script.
    """
    python = installed / "bin" / "python"
    where = subprocess.run(
        [python, "-c", "import twisted_cgiserve; print(twisted_cgiserve.__file__)"],
        check=True, capture_output=True, text=True, cwd=installed,
        env={k: v for k, v in os.environ.items() if k != "PYTHONPATH"},
    ).stdout.strip()  # fmt: skip
    assert where.startswith(str(installed)), where
    root = makeDocroot("cgiserve-wheel-")
    try:
        (root / "a.txt").write_bytes(b"a file from the wheel\n")
        (root / "cgi-bin").mkdir(mode=0o755)
        (root / "cgi-bin" / "hello.sh").write_bytes(HELLO)
        (root / "cgi-bin" / "hello.sh").chmod(0o755)
        log = installed / "twistd.log"
        with log.open("wb") as out:
            process = subprocess.Popen(
                # Twisted's own scripts are not in the new environment (its
                # packages are reached through the path file): run its twistd.
                [python, "-c", "from twisted.scripts.twistd import run; run()",
                 "-n", "--pidfile=", "cgiserve",
                 "--port", "tcp:0:interface=127.0.0.1", "--directory", str(root)],
                cwd=installed, stdout=out, stderr=subprocess.STDOUT,
                stdin=subprocess.DEVNULL,
                env={k: v for k, v in os.environ.items() if k != "PYTHONPATH"},
            )  # fmt: skip
        try:
            found = waitFor(lambda: _port(log), 20)
            assert found, log.read_text()
            base = f"http://127.0.0.1:{found}"
            with urllib.request.urlopen(f"{base}/a.txt", timeout=10) as response:
                assert response.read() == b"a file from the wheel\n"
            with urllib.request.urlopen(
                f"{base}/cgi-bin/hello.sh", timeout=10
            ) as response:
                assert response.read() == b"hello from the wheel\n"
        finally:
            process.terminate()
            process.wait(10)
        assert process.returncode == 0, log.read_text()
    finally:
        shutil.rmtree(root, ignore_errors=True)


def _port(log: Path) -> int | None:
    for line in log.read_text(errors="replace").splitlines():
        if "Serving HTTP on 127.0.0.1 port " in line:
            return int(line.split(" port ")[1].split()[0])
    return None
