"""
The test suite on every supported Python, and the lint and type checks.

C{nox -s tests-3.13} runs the suite on Python 3.13; arguments after C{--} go to
pytest (C{nox -s tests-3.13 -- -m "not e2e"}). See CONTRIBUTING.md.
"""

from __future__ import annotations

import os
import subprocess
from pathlib import Path

import nox

__all__ = ["lint", "tests", "twistedNewest"]

# From requires-python's minimum to the newest the maintainers can test on; the
# classifiers in pyproject.toml list the same versions.
PYTHONS = ["3.11", "3.12", "3.13"]

nox.options.sessions = ["tests", "lint"]


def _runs(command: str) -> bool:
    """
    Whether C{command} on C{PATH} starts at all: a pyenv shim for a version
    that is installed but not selected is on C{PATH} and fails when run, so
    being found is not enough.
    """
    try:
        return (
            subprocess.run(
                [command, "-c", ""], capture_output=True, timeout=30
            ).returncode
            == 0
        )
    except (OSError, subprocess.TimeoutExpired):
        return False


def _addPyenvInterpreters() -> None:
    """
    Put pyenv's installed interpreters for L{PYTHONS} first on C{PATH} where
    C{PATH} has no working C{pythonX.Y} of its own.

    pyenv installs every version under C{$PYENV_ROOT/versions} but its shims
    run only the versions selected with C{pyenv global} or C{PYENV_VERSION},
    so on a machine with 3.11 selected nox would otherwise skip 3.12 and 3.13
    as missing although they are installed.
    """
    versions = Path(os.environ.get("PYENV_ROOT", Path.home() / ".pyenv")) / "versions"
    if not versions.is_dir():
        return
    found = []
    for python in PYTHONS:
        if _runs(f"python{python}"):
            continue
        # The newest patch release installed for this minor version.
        candidates = sorted(
            (
                path
                for path in versions.glob(f"{python}.*/bin/python{python}")
                if path.parent.parent.name.replace(".", "").isdigit()
            ),
            key=lambda path: [int(n) for n in path.parent.parent.name.split(".")],
        )
        if candidates:
            found.append(str(candidates[-1].parent))
    if found:
        os.environ["PATH"] = os.pathsep.join([*found, os.environ.get("PATH", "")])


_addPyenvInterpreters()


@nox.session(python=PYTHONS)
def tests(session: nox.Session) -> None:
    """
    The test suite on one Python; arguments after C{--} go to pytest.

    The README's test command: an editable install with the test extras, so the
    tests read the checkout on every Python (the packaging test builds and
    inspects the wheel itself), then C{python -m pytest}.
    """
    session.install("-e", ".[test]")
    session.run("python", "-m", "pytest", *session.posargs)


@nox.session(python=PYTHONS[0])
def lint(session: nox.Session) -> None:
    """
    ruff check, ruff format --check and mypy, as configured in pyproject.toml.

    The package is installed so that mypy sees its dependencies' types; the
    oldest supported Python, so that mypy flags any standard-library API newer
    than requires-python allows.
    """
    session.install("-e", ".[test]")
    session.run("ruff", "check", ".")
    session.run("ruff", "format", "--check", ".")
    session.run("mypy")


@nox.session(name="twisted-newest", python=PYTHONS[-1])
def twistedNewest(session: nox.Session) -> None:
    """
    The unit tests (the canaries of Twisted's private names among them) against
    the newest Twisted release, past the cap in pyproject.toml.

    The cap keeps users on a Twisted whose internals the canaries have passed
    on; this session is how a maintainer learns whether the next release may be
    allowed, before users can install it.
    """
    session.install("-e", ".[test]")
    session.install("--upgrade", "twisted[tls,http2]")
    session.run("python", "-m", "pip", "show", "twisted")
    session.run("python", "-m", "pytest", "-m", "not e2e", *session.posargs)
