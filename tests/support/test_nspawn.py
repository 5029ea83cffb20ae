"""
The parts of L{tests.support.nspawn} that decide something without booting
a container: whether this machine can, where the rootfs cache is, when it
is rebuilt, and which commands of the guide the e2e suite runs. Booting is
tested by tests/e2e/test_systemd.py, which cannot pass without it.
"""

from __future__ import annotations

import os
from pathlib import Path

import pytest

from tests.support.nspawn import (
    PACKAGES,
    SUITE,
    Container,
    Unavailable,
    cacheDirectory,
    docBlock,
    ensureRootfs,
    rootfsKey,
    whyUnavailable,
)

TOOLS = {
    "systemd-nspawn": "/usr/bin/systemd-nspawn",
    "debootstrap": "/usr/sbin/debootstrap",
    "nsenter": "/usr/bin/nsenter",
}


def test_available() -> None:
    """
    Root with all three tools: nothing stands in the way.
    """
    assert whyUnavailable(uid=0, which=TOOLS) is None


def test_notRoot() -> None:
    """
    Not root is the first reason given, whatever else is missing.
    """
    reason = whyUnavailable(uid=1000, which=dict.fromkeys(TOOLS))
    assert reason == "not root: systemd-nspawn and debootstrap need root"


@pytest.mark.parametrize(
    ("tool", "package"),
    [
        ("systemd-nspawn", "systemd-container"),
        ("debootstrap", "debootstrap"),
        ("nsenter", "util-linux"),
    ],
)
def test_missingTool(tool: str, package: str) -> None:
    """
    A missing tool is named with the Debian package that has it.
    """
    which: dict[str, str | None] = {**TOOLS, tool: None}
    reason = whyUnavailable(uid=0, which=which)
    assert reason == f"no {tool} on PATH (Debian package {package})"


def test_cacheDirectory() -> None:
    """
    Outside the checkout by default; CGISERVE_TEST_CACHE moves it (and an
    empty value is no value).
    """
    default = Path("/var/cache/twisted-cgiserve-tests")
    assert cacheDirectory({}) == default
    assert cacheDirectory({"CGISERVE_TEST_CACHE": ""}) == default
    assert cacheDirectory({"CGISERVE_TEST_CACHE": "/srv/c"}) == Path("/srv/c")


def test_rootfsKey() -> None:
    """
    The same for the same suite and packages in any order or repeated;
    different when the suite or the packages change.
    """
    key = rootfsKey("bookworm", ["curl", "systemd"])
    assert len(key) == 16
    assert rootfsKey("bookworm", ["systemd", "curl", "curl"]) == key
    assert rootfsKey("trixie", ["curl", "systemd"]) != key
    assert rootfsKey("bookworm", ["curl", "systemd", "procps"]) != key
    assert rootfsKey("bookworm", ["curl"]) != key


def test_packagesLackProcps() -> None:
    """
    The rootfs is as minimal as the guide's reader's may be: no procps,
    whose /bin/kill a unit must therefore not need.
    """
    assert "procps" not in PACKAGES
    assert {"systemd", "python3-venv", "curl"} <= set(PACKAGES)


def _fakeDebootstrap(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch, body: str
) -> Path:
    """
    Put a C{debootstrap} first on PATH that runs C{body} with the target
    directory in C{$4}; it logs its arguments to C{calls}.
    """
    bin = tmp_path / "bin"
    bin.mkdir()
    calls = tmp_path / "calls"
    script = bin / "debootstrap"
    script.write_text(f'#!/bin/sh\necho "$@" >> {calls}\n{body}\n')
    script.chmod(0o755)
    monkeypatch.setenv("PATH", f"{bin}:{os.environ['PATH']}")
    return calls


def test_ensureRootfsBuildsOnce(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    """
    A missing rootfs is built by debootstrap (minbase, the packages, the
    suite, the mirror) in a temporary directory renamed into place, with
    the container's own hostname; a second call reuses it; leftovers of an
    interrupted build are removed and never used.
    """
    calls = _fakeDebootstrap(
        tmp_path, monkeypatch, 'mkdir -p "$4/etc" && echo host > "$4/etc/hostname"'
    )
    cache = tmp_path / "cache"
    key = rootfsKey(SUITE, ["b", "a"])
    stale = cache / f".building-{key}-old"
    (stale / "etc").mkdir(parents=True)

    rootfs = ensureRootfs(cache, packages=["b", "a"], mirror="http://m/debian")
    assert rootfs == cache / f"debian-{SUITE}-{key}"
    assert (rootfs / "etc" / "hostname").read_text() == "cgiserve-test\n"
    assert rootfs.stat().st_mode & 0o777 == 0o755
    assert not stale.exists()
    [line] = calls.read_text().splitlines()
    args = line.split()
    assert args[:2] == ["--variant=minbase", "--include=a,b"]
    assert args[2] == SUITE
    assert args[4] == "http://m/debian"
    assert sorted(p.name for p in cache.iterdir()) == [f".{key}.lock", rootfs.name]

    assert ensureRootfs(cache, packages=["a", "b"]) == rootfs
    assert len(calls.read_text().splitlines()) == 1


def test_ensureRootfsFails(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    """
    A failed debootstrap is L{Unavailable} with its exit status and its
    last lines, and leaves nothing a later run could take for a rootfs.
    """
    _fakeDebootstrap(
        tmp_path,
        monkeypatch,
        'mkdir -p "$4/etc"; echo "E: Failed getting release file" >&2; exit 1',
    )
    cache = tmp_path / "cache"
    with pytest.raises(Unavailable) as failed:
        ensureRootfs(cache, packages=["a"])
    assert str(failed.value) == (
        "debootstrap failed (exit 1): E: Failed getting release file"
    )
    assert [p.name for p in cache.iterdir()] == [f".{rootfsKey(SUITE, ['a'])}.lock"]


def test_ensureRootfsTimeout(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    """
    A debootstrap that hangs is stopped after the timeout and reported.
    """
    _fakeDebootstrap(tmp_path, monkeypatch, "exec sleep 30")
    with pytest.raises(Unavailable) as failed:
        ensureRootfs(tmp_path / "cache", packages=["a"], timeout=0.5)
    assert str(failed.value) == "debootstrap failed: no result in 0.5 s"


GUIDE = """\
# Guide

## 1. Install

```sh
apt install thing
cp /path/to/site/. /srv/
```

text

```sh
second block
```

## 2. Other

```ini
[Service]
```

```sh
under two
```
"""


def test_docBlock() -> None:
    """
    The first sh block after the heading, placeholders replaced.
    """
    assert docBlock(GUIDE, "## 1. Install", {}) == (
        "apt install thing\ncp /path/to/site/. /srv/\n"
    )
    assert docBlock(GUIDE, "## 1.", {"/path/to/site": "/mnt/site"}) == (
        "apt install thing\ncp /mnt/site/. /srv/\n"
    )
    assert docBlock(GUIDE, "## 2. Other", {}) == "under two\n"
    assert docBlock(GUIDE, "text", {}) == "second block\n"


@pytest.mark.parametrize(
    ("heading", "replacements", "message"),
    [
        ("## 3. Missing", {}, "no heading '## 3. Missing'"),
        ("under two", {}, "no sh block after 'under two'"),
        ("## 1. Install", {"/old/path": "x"}, "'/old/path' is not in the block"),
    ],
)
def test_docBlockChanged(
    heading: str, replacements: dict[str, str], message: str
) -> None:
    """
    When the guide no longer has what the test expects, the test says so
    instead of running something else.
    """
    with pytest.raises(ValueError, match=message):
        docBlock(GUIDE, heading, replacements)


def test_powerOffBeforeBoot(tmp_path: Path) -> None:
    """
    Powering off a container that never booted does nothing, so that
    cleanup may always call it.
    """
    container = Container(tmp_path, "never", tmp_path / "log")
    container.powerOff()
    container.powerOff()
