"""
The architecture docs/architecture.md describes, enforced: the layers
import one way, every code module names its unit tests and has them in the
mirrored folder, and tests share helpers only through L{tests.support}.

Imports are read with L{ast} from the source, not by importing it: a layer
that imports a higher one inside a function, or only for type checking, is
caught as well.
"""

from __future__ import annotations

import ast
import re
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest

from tests.support.checkout import ROOT

PACKAGE = ROOT / "twisted_cgiserve"
TESTS = ROOT / "tests"
PLUGIN = ROOT / "twisted" / "plugins" / "twisted_cgiserve_plugin.py"

# The subpackages below the service layer and what each may not import.
# _http is the bottom; _static and _cgi build on it and never on each other.
_ABOVE_THE_CORE = (
    "twisted_cgiserve._service",
    "twisted_cgiserve.tap",
    "twisted_cgiserve._root",
    "twisted_cgiserve._settings",
)
FORBIDDEN = {
    "twisted_cgiserve._http": (
        "twisted_cgiserve._static",
        "twisted_cgiserve._cgi",
        *_ABOVE_THE_CORE,
    ),
    "twisted_cgiserve._static": ("twisted_cgiserve._cgi", *_ABOVE_THE_CORE),
    "twisted_cgiserve._cgi": ("twisted_cgiserve._static", *_ABOVE_THE_CORE),
    "twisted_cgiserve._settings": (
        "twisted_cgiserve._root",
        "twisted_cgiserve._service",
        "twisted_cgiserve.tap",
    ),
    "twisted_cgiserve._root": ("twisted_cgiserve._service", "twisted_cgiserve.tap"),
    "twisted_cgiserve._service": ("twisted_cgiserve.tap",),
    "twisted_cgiserve._version": ("twisted_cgiserve.",),
    # The public API re-exports; it must not pull in the twistd plugin.
    "twisted_cgiserve": ("twisted_cgiserve.tap",),
}

# Modules whose unit tests are not at the mirrored path: the public API's
# names (and the version) are what tests/test_exports.py checks.
MIRROR_EXCEPTIONS = {
    "twisted_cgiserve": "tests.test_exports",
    "twisted_cgiserve._version": "tests.test_exports",
    "twisted_cgiserve.__main__": "tests.service.test_cli",
}

_HEADER = re.compile(r"# -\*- test-case-name: (?P<names>[\w., ]+) -\*-")


def moduleName(path: Path, root: Path = ROOT) -> str:
    """
    The dotted name of the module at C{path}, below C{root}.
    """
    parts = list(path.relative_to(root).with_suffix("").parts)
    if parts[-1] == "__init__":
        parts.pop()
    return ".".join(parts)


def importsOf(path: Path, root: Path = ROOT) -> set[str]:
    """
    Every module C{path} imports, anywhere in it, as absolute dotted names;
    C{from package import name} counts as importing C{package.name} too
    (the name may be a submodule).
    """
    tree = ast.parse(path.read_text("utf-8"), str(path))
    package = moduleName(path, root)
    if path.name != "__init__.py":
        package = package.rpartition(".")[0]
    found: set[str] = set()
    for node in ast.walk(tree):
        if isinstance(node, ast.Import):
            found.update(alias.name for alias in node.names)
        elif isinstance(node, ast.ImportFrom):
            if node.level:
                base = package.split(".")
                base = base[: len(base) - node.level + 1]
                module = ".".join([*base, *([node.module] if node.module else [])])
            else:
                module = node.module or ""
            found.add(module)
            found.update(f"{module}.{alias.name}" for alias in node.names)
    return found


def codeModules() -> Iterator[Path]:
    """
    The package's modules that hold code: all but the subpackages'
    docstring-only C{__init__.py}.
    """
    for path in sorted(PACKAGE.rglob("*.py")):
        body = ast.parse(path.read_text("utf-8")).body
        if path.name == "__init__.py" and all(
            isinstance(node, ast.Expr) and isinstance(node.value, ast.Constant)
            for node in body
        ):
            continue
        yield path


def testModules() -> Iterator[Path]:
    return iter(sorted(TESTS.rglob("*.py")))


def _ids(paths: Iterator[Path]) -> list[Any]:
    return [pytest.param(p, id=str(p.relative_to(ROOT))) for p in paths]


def _under(name: str, prefix: str) -> bool:
    if prefix.endswith("."):
        return name.startswith(prefix)
    return name == prefix or name.startswith(prefix + ".")


def _layerOf(name: str) -> str | None:
    """
    The most specific key of L{FORBIDDEN} that C{name} lies in.
    """
    layers = [layer for layer in FORBIDDEN if _under(name, layer)]
    return max(layers, key=len) if layers else None


def test_layerOfNamesTheRightLayer() -> None:
    """
    The helpers this module's checks rest on: a module's layer is the
    longest matching prefix, and relative imports are resolved.
    """
    assert _layerOf("twisted_cgiserve._http.site") == "twisted_cgiserve._http"
    assert _layerOf("twisted_cgiserve._httpx") == "twisted_cgiserve"
    assert _layerOf("twisted_cgiserve") == "twisted_cgiserve"
    assert _layerOf("twisted.web") is None


def test_importsOfResolvesRelativeImports(tmp_path: Path) -> None:
    """
    L{importsOf} sees relative imports, imports inside functions and names
    imported from a package.
    """
    package = tmp_path / "twisted_cgiserve" / "_cgi"
    package.mkdir(parents=True)
    fake = package / "fake.py"
    fake.write_text(
        "from twisted_cgiserve import _static\n"
        "from ..tap import Options\n"
        "from . import head\n"
        "def f():\n"
        "    import twisted_cgiserve._root\n"
    )
    found = importsOf(fake, tmp_path)
    assert {
        "twisted_cgiserve._static",
        "twisted_cgiserve.tap",
        "twisted_cgiserve.tap.Options",
        "twisted_cgiserve._cgi.head",
        "twisted_cgiserve._root",
    } <= found


@pytest.mark.parametrize("path", _ids(codeModules()))
def test_importsRunOneWay(path: Path) -> None:
    """
    _static never imports _cgi nor _cgi _static; nothing in _http, _static
    or _cgi imports the service layer, tap, _root or _settings; _settings
    only the core; nothing but the twistd dropin imports tap.
    """
    layer = _layerOf(moduleName(path))
    assert layer is not None, path
    wrong = sorted(
        name
        for name in importsOf(path)
        for forbidden in FORBIDDEN[layer]
        if _under(name, forbidden)
    )
    assert wrong == [], f"{layer} must not import {wrong}"


def test_onlyTheDropinNamesTap() -> None:
    """
    The twistd dropin is what names C{twisted_cgiserve.tap} (lazily, as a
    string), and it imports nothing of the package.
    """
    text = PLUGIN.read_text("utf-8")
    assert '"twisted_cgiserve.tap"' in text
    assert not any(name.startswith("twisted_cgiserve") for name in importsOf(PLUGIN))


@pytest.mark.parametrize("path", _ids(codeModules()))
def test_testCaseNameHeader(path: Path) -> None:
    """
    Every code module's first line names its unit test modules (for
    C{trial}, editors and readers), and they exist.
    """
    first = path.read_text("utf-8").splitlines()[0]
    match = _HEADER.fullmatch(first)
    assert match, f"first line is {first!r}"
    for listed in match["names"].split(","):
        name = listed.strip()
        assert name.startswith("tests."), name
        target = ROOT.joinpath(*name.split(".")).with_suffix(".py")
        assert target.is_file(), f"{name} does not exist"


@pytest.mark.parametrize("path", _ids(codeModules()))
def test_unitTestsMirrorTheCode(path: Path) -> None:
    """
    twisted_cgiserve/_LAYER/MODULE.py has its unit tests in
    tests/LAYER/test_MODULE.py (and twisted_cgiserve/MODULE.py in
    tests/test_MODULE.py), and its header names them.
    """
    name = moduleName(path)
    expected = MIRROR_EXCEPTIONS.get(name)
    if expected is None:
        parts = [part.lstrip("_") for part in name.split(".")[1:]]
        expected = ".".join(["tests", *parts[:-1], "test_" + parts[-1]])
    target = ROOT.joinpath(*expected.split(".")).with_suffix(".py")
    assert target.is_file(), f"no {target.relative_to(ROOT)}"
    first = path.read_text("utf-8").splitlines()[0]
    match = _HEADER.fullmatch(first)
    names = [n.strip() for n in match["names"].split(",")] if match else []
    assert expected in names, f"{first!r} does not name {expected}"


@pytest.mark.parametrize("path", _ids(testModules()))
def test_testsShareOnlyTheSupportPackage(path: Path) -> None:
    """
    No module under tests/ imports conftest or a test module: shared
    helpers live in tests.support, fixtures in conftest (which pytest
    loads itself).
    """
    wrong = sorted(
        name
        for name in importsOf(path)
        if any(
            part == "conftest" or part.startswith("test_") for part in name.split(".")
        )
    )
    assert wrong == [], wrong


def test_everyTestFolderIsAPackage() -> None:
    """
    tests/ and each folder in it are packages, so that test modules of the
    same name in different layers do not clash.
    """
    for directory in [TESTS, *(p for p in TESTS.rglob("*") if p.is_dir())]:
        if directory.name == "__pycache__":
            continue
        assert (directory / "__init__.py").is_file(), directory


def test_endToEndTestsAreMarked() -> None:
    """
    Every module in tests/e2e is marked e2e, so that C{-m "not e2e"} runs
    the unit tests alone.
    """
    for path in sorted((TESTS / "e2e").glob("test_*.py")):
        tree = ast.parse(path.read_text("utf-8"))
        marks = [
            node
            for node in tree.body
            if isinstance(node, ast.Assign)
            and any(
                isinstance(t, ast.Name) and t.id == "pytestmark" for t in node.targets
            )
        ]
        assert marks, f"{path.name} has no pytestmark"
        assert "pytest.mark.e2e" in ast.unparse(marks[0].value), path.name


def test_noNamespacePackageBreakers() -> None:
    """
    twisted/ and twisted/plugins/ have no C{__init__.py}: one would shadow
    Twisted itself (and every other project's dropins) once installed.
    """
    assert not (ROOT / "twisted" / "__init__.py").exists()
    assert not (ROOT / "twisted" / "plugins" / "__init__.py").exists()
