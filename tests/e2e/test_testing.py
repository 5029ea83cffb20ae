"""
End-to-end tests of L{twisted_cgiserve.testing} as its users use it, each
in a project of its own run in a subprocess: a C{unittest} suite using
C{serve()} (the docs/testing.md migration), a separate pytest project using
the C{cgiserve} fixture the installed package provides, and a trial suite
using C{listen()}.
"""

from __future__ import annotations

import os
import subprocess
import sys
import textwrap
from pathlib import Path

import pytest

pytestmark = pytest.mark.e2e

# Each suite makes its own document root under /tmp, mode 0755: scripts run
# as nobody when the tests run as root, and pytest's tmp_path is not
# reachable for nobody.
DOCROOT = textwrap.dedent("""
    import os
    import shutil
    import tempfile

    HELLO = (
        b"#!/bin/sh\\necho 'Content-Type: text/plain'\\necho\\n"
        b"echo hello $QUERY_STRING\\n"
    )

    def makeRoot():
        root = tempfile.mkdtemp(prefix="cgiserve-e2e-testing-", dir="/tmp")
        os.chmod(root, 0o755)
        os.mkdir(os.path.join(root, "cgi-bin"), 0o755)
        script = os.path.join(root, "cgi-bin", "hello.sh")
        with open(script, "wb") as f:
            f.write(HELLO)
        os.chmod(script, 0o755)
        with open(os.path.join(root, "a.txt"), "wb") as f:
            f.write(b"a file\\n")
        return root

    def removeRoot(root):
        shutil.rmtree(root, ignore_errors=True)
""")

UNITTEST = textwrap.dedent("""
    import unittest
    from urllib.error import HTTPError
    from urllib.request import urlopen

    from twisted_cgiserve.testing import serve

    from docroot import makeRoot, removeRoot


    class CGITests(unittest.TestCase):
        def setUp(self):
            root = makeRoot()
            self.addCleanup(removeRoot, root)
            self.server = self.enterContext(serve(root, cgi=True))

        def test_script(self):
            with urlopen(self.server.url + "/cgi-bin/hello.sh?x") as r:
                self.assertEqual(r.read(), b"hello x\\n")

        def test_file(self):
            with urlopen(self.server.url + "/a.txt") as r:
                self.assertEqual(r.read(), b"a file\\n")

        def test_missing(self):
            with self.assertRaises(HTTPError) as e:
                urlopen(self.server.url + "/nothing")
            self.assertEqual(e.exception.code, 404)

        def test_log(self):
            with urlopen(self.server.url + "/a.txt") as r:
                r.read()
            self.assertIn("Serving HTTP on 127.0.0.1 port", self.server.log())


    if __name__ == "__main__":
        unittest.main()
""")

PYTEST_PROJECT = textwrap.dedent("""
    from urllib.request import urlopen

    from docroot import makeRoot, removeRoot


    def test_fixture(cgiserve):
        root = makeRoot()
        try:
            server = cgiserve(root, cgi=True, cgi_timeout=5)
            with urlopen(server.url + "/cgi-bin/hello.sh?fixture") as r:
                assert r.read() == b"hello fixture\\n"
            assert server.port > 0
            plain = cgiserve(root)
            with urlopen(plain.url + "/cgi-bin/hello.sh") as r:
                assert r.read().startswith(b"#!/bin/sh")
        finally:
            removeRoot(root)
""")

TRIAL = textwrap.dedent("""
    from twisted.internet import reactor
    from twisted.internet.defer import inlineCallbacks
    from twisted.trial.unittest import TestCase
    from twisted.web.client import Agent, readBody

    from twisted_cgiserve import Settings
    from twisted_cgiserve.testing import listen

    from docroot import makeRoot, removeRoot


    class ListenTests(TestCase):
        @inlineCallbacks
        def test_script(self):
            root = makeRoot()
            self.addCleanup(removeRoot, root)
            server = listen(root, Settings(cgiEnabled=True))
            self.addCleanup(server.stop)
            agent = Agent(reactor)
            response = yield agent.request(
                b"GET", (server.url + "/cgi-bin/hello.sh?trial").encode("ascii")
            )
            body = yield readBody(response)
            self.assertEqual(body, b"hello trial\\n")
""")


def project(tmp_path: Path, files: dict[str, str]) -> Path:
    directory = tmp_path / "project"
    directory.mkdir()
    (directory / "docroot.py").write_text(DOCROOT)
    for name, text in files.items():
        (directory / name).write_text(text)
    return directory


def run(command: list[str], cwd: Path) -> subprocess.CompletedProcess[str]:
    env = {k: v for k, v in os.environ.items() if not k.startswith("PYTEST_")}
    return subprocess.run(
        command,
        cwd=cwd,
        capture_output=True,
        text=True,
        timeout=120,
        stdin=subprocess.DEVNULL,
        env=env,
    )


def test_unittestSuite(tmp_path: Path) -> None:
    """
    A C{unittest} suite using C{serve()}, run with C{python -m unittest}:
    every test gets a running server, stopped after it.
    """
    cwd = project(tmp_path, {"test_cgi.py": UNITTEST})
    done = run([sys.executable, "-m", "unittest", "-v", "test_cgi"], cwd)
    assert done.returncode == 0, done.stdout + done.stderr
    assert "Ran 4 tests" in done.stderr
    assert "OK" in done.stderr


def test_pytestProject(tmp_path: Path) -> None:
    """
    A separate pytest project gets the C{cgiserve} fixture from the
    installed package (the C{pytest11} entry point), with no conftest.
    """
    cwd = project(tmp_path, {"test_fixture.py": PYTEST_PROJECT, "pytest.ini": ""})
    (cwd / "pytest.ini").write_text("[pytest]\n")
    done = run([sys.executable, "-m", "pytest", "-v", "-p", "no:cacheprovider"], cwd)
    assert done.returncode == 0, done.stdout + done.stderr
    assert "test_fixture.py::test_fixture PASSED" in done.stdout


def test_trialSuite(tmp_path: Path) -> None:
    """
    A trial suite using C{listen()} in its reactor: the script answers, and
    stopping leaves the reactor clean (trial fails a test that leaves
    connections, ports or processes behind).
    """
    cwd = project(tmp_path, {"test_listen.py": TRIAL})
    done = run([sys.executable, "-m", "twisted.trial", "test_listen"], cwd)
    assert done.returncode == 0, done.stdout + done.stderr
    assert "PASSED (successes=1)" in done.stdout
