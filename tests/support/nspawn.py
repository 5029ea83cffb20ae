"""
A real systemd to run the shipped units under: a Debian rootfs made once
with C{debootstrap} and cached outside the checkout, booted with
C{systemd-nspawn -b} in its own network namespace, driven from the host
with C{nsenter}.

The rootfs is cached because debootstrap takes a minute or more and needs
the Debian mirror; its directory name carries a hash of the suite and the
package list, so changing either builds a new one. It is built into a
temporary directory and renamed into place, so an interrupted build is
never mistaken for a finished one. Each boot runs it with
C{--volatile=overlay}: the cached tree stays read-only under a tmpfs, so
every boot starts from the same fresh system and leaves nothing behind.

Nothing here imports the reactor or pytest: the e2e suites turn
L{Unavailable} into a skip with its reason.
"""

from __future__ import annotations

import atexit
import contextlib
import fcntl
import hashlib
import os
import re
import shutil
import signal
import subprocess
import sys
import tempfile
import time
from collections.abc import Iterable, Mapping, Sequence
from pathlib import Path

__all__ = [
    "CONTAINER_PATH",
    "PACKAGES",
    "SUITE",
    "Container",
    "Unavailable",
    "buildWheelhouse",
    "cacheDirectory",
    "docBlock",
    "ensureRootfs",
    "rootfsKey",
    "whyUnavailable",
]

SUITE = "bookworm"
# What docs/deployment.md needs on a minimal Debian (python3-venv), what
# boots it (systemd, dbus) and starts user managers (libpam-systemd, there
# wherever systemd is installed with its recommendations), and the clients
# the tests drive from inside: curl (built with nghttp2, for --http2) and
# openssl (s_client). Not procps: the units must work without it.
PACKAGES = (
    "curl",
    "dbus",
    "libpam-systemd",
    "openssl",
    "python3-venv",
    "systemd",
    "systemd-sysv",
)
DEFAULT_MIRROR = "http://deb.debian.org/debian"
DEFAULT_CACHE = "/var/cache/twisted-cgiserve-tests"

# The container's Python, which the dependencies' wheels must suit.
CONTAINER_PYTHON = "3.11"
# Debian 12's glibc is 2.36: every manylinux wheel up to that will do (pip
# does not infer the older tags from the newest). The container's
# architecture is the host's.
_ARCH = os.uname().machine
CONTAINER_PLATFORMS = [
    *(f"manylinux_2_{minor}_{_ARCH}" for minor in range(5, 37)),
    *(f"manylinux{legacy}_{_ARCH}" for legacy in ("1", "2010", "2014")),
]

# The environment of every command run in the container: nothing of the
# host's leaks in, and systemctl and journalctl print plain text.
CONTAINER_PATH = "/usr/local/sbin:/usr/local/bin:/usr/sbin:/usr/bin:/sbin:/bin"
_ENVIRONMENT = {
    "PATH": CONTAINER_PATH,
    "LANG": "C.UTF-8",
    "HOME": "/root",
    "SYSTEMD_PAGER": "",
    "SYSTEMD_COLORS": "0",
    "TERM": "dumb",
}


class Unavailable(Exception):
    """
    A real systemd cannot be had here; the message says why, for a skip.
    """


def whyUnavailable(
    uid: int | None = None, which: Mapping[str, str | None] | None = None
) -> str | None:
    """
    Why this machine cannot boot the container, or C{None} if it can.

    @param uid: The effective user id (default: this process's).
    @param which: Where each needed tool is (default: looked up on PATH).
    """
    if uid is None:
        uid = os.geteuid()
    if uid != 0:
        return "not root: systemd-nspawn and debootstrap need root"
    tools = {
        "systemd-nspawn": "systemd-container",
        "debootstrap": "debootstrap",
        "nsenter": "util-linux",
    }
    for tool, package in tools.items():
        found = which[tool] if which is not None else shutil.which(tool)
        if found is None:
            return f"no {tool} on PATH (Debian package {package})"
    return None


def cacheDirectory(environ: Mapping[str, str] | None = None) -> Path:
    """
    Where built rootfs trees are kept between runs: outside the checkout,
    since CI starts from a clean clone. C{CGISERVE_TEST_CACHE} overrides it.
    """
    environ = os.environ if environ is None else environ
    return Path(environ.get("CGISERVE_TEST_CACHE") or DEFAULT_CACHE)


def rootfsKey(suite: str, packages: Iterable[str]) -> str:
    """
    A short name for a rootfs with these contents: the same for the same
    suite and set of packages, whatever their order, and different as soon
    as either changes.
    """
    names = sorted(set(packages))
    text = "\n".join([suite, *names])
    return hashlib.sha256(text.encode()).hexdigest()[:16]


def _tail(text: str, lines: int = 5) -> str:
    return " | ".join(text.strip().splitlines()[-lines:])


def ensureRootfs(
    cache: Path | None = None,
    suite: str = SUITE,
    packages: Sequence[str] = PACKAGES,
    mirror: str | None = None,
    timeout: float = 1200,
) -> Path:
    """
    The cached rootfs for C{suite} with C{packages}, built first if it is
    missing. Concurrent callers wait for one build (a lock file).

    @raise Unavailable: debootstrap failed (its last lines say why).
    """
    cache = cacheDirectory() if cache is None else cache
    mirror = mirror or os.environ.get("CGISERVE_TEST_DEBIAN_MIRROR") or DEFAULT_MIRROR
    key = rootfsKey(suite, packages)
    final = cache / f"debian-{suite}-{key}"
    if final.is_dir():
        return final
    cache.mkdir(parents=True, exist_ok=True)
    with open(cache / f".{key}.lock", "w") as lock:
        fcntl.flock(lock, fcntl.LOCK_EX)
        if final.is_dir():
            return final
        for stale in cache.glob(f".building-{key}-*"):
            shutil.rmtree(stale, ignore_errors=True)
        building = Path(tempfile.mkdtemp(prefix=f".building-{key}-", dir=cache))
        try:
            result = subprocess.run(
                ["debootstrap", "--variant=minbase",
                 "--include=" + ",".join(sorted(set(packages))),
                 suite, str(building), mirror],
                capture_output=True, text=True, timeout=timeout,
            )  # fmt: skip
        except subprocess.TimeoutExpired:
            shutil.rmtree(building, ignore_errors=True)
            raise Unavailable(
                f"debootstrap failed: no result in {timeout:g} s"
            ) from None
        if result.returncode != 0:
            shutil.rmtree(building, ignore_errors=True)
            raise Unavailable(
                f"debootstrap failed (exit {result.returncode}): "
                + _tail(result.stdout + result.stderr)
            )
        # The host's hostname would otherwise be the container's; and /
        # must not keep mkdtemp's 0700.
        (building / "etc" / "hostname").write_text("cgiserve-test\n")
        building.chmod(0o755)
        os.rename(building, final)
    return final


def buildWheelhouse(checkout: Path, into: Path, timeout: float = 600) -> Path:
    """
    The project's wheel, built from C{checkout}, and every dependency's
    wheel for the container's Python, in C{into}: what
    C{pip install --no-index --find-links} needs inside the container.
    Downloading happens here, on the host; the container has no network.

    @return: The project's wheel.
    """
    into.mkdir(parents=True, exist_ok=True)
    pip = [sys.executable, "-m", "pip", "--disable-pip-version-check"]
    subprocess.run(
        [*pip, "wheel", "--no-deps", "--no-build-isolation", "-q",
         "-w", str(into), str(checkout)],
        check=True, capture_output=True, timeout=timeout,
    )  # fmt: skip
    [wheel] = into.glob("twisted_cgiserve-*.whl")
    platforms = [f"--platform={name}" for name in CONTAINER_PLATFORMS]
    subprocess.run(
        [*pip, "download", "-q", "-d", str(into), "--only-binary=:all:",
         "--python-version", CONTAINER_PYTHON, "--implementation", "cp",
         "--abi", "cp" + CONTAINER_PYTHON.replace(".", ""), "--abi", "abi3",
         "--abi", "none", *platforms, str(wheel)],
        check=True, capture_output=True, timeout=timeout,
    )  # fmt: skip
    return wheel


def docBlock(markdown: str, heading: str, replacements: Mapping[str, str]) -> str:
    """
    The first C{```sh} block after C{heading} in a Markdown document, with
    each of C{replacements} applied: what an admin following the document
    would type, with our paths for its placeholders.

    @raise ValueError: There is no such heading or block, or a placeholder
        to replace is not in it (the document changed: so must the test).
    """
    start = markdown.find(heading)
    if start < 0:
        raise ValueError(f"no heading {heading!r}")
    match = re.compile(r"^```sh\n(.*?)^```", re.M | re.S).search(markdown, start)
    if match is None:
        raise ValueError(f"no sh block after {heading!r}")
    block = match.group(1)
    for old, new in replacements.items():
        if old not in block:
            raise ValueError(f"{old!r} is not in the block under {heading!r}")
        block = block.replace(old, new)
    return block


class Container:
    """
    A booted systemd-nspawn container of a cached rootfs, with its own
    network namespace (only C{lo}), and a tmpfs over the rootfs.

    @ivar leader: The host's pid of the container's PID 1 (systemd).
    """

    leader: int

    def __init__(
        self,
        rootfs: Path,
        name: str,
        log: Path,
        binds: Sequence[tuple[Path, str]] = (),
    ) -> None:
        self.rootfs = rootfs
        self.name = name
        self.log = log
        self.binds = binds
        self._process: subprocess.Popen[bytes] | None = None

    def boot(self, timeout: float = 90) -> None:
        """
        Start the container and wait until its systemd has finished booting
        (C{running}, or C{degraded} if some unit of Debian's own failed).

        @raise Unavailable: It did not boot; the end of its console says why.
        """
        # setpriv: SIGTERM to systemd-nspawn (which then powers the
        # container off) when this process dies, however it dies, even
        # where atexit and fixture finalizers never run.
        command = [
            "setpriv", "--pdeathsig=TERM", "--",
            "systemd-nspawn", "--quiet", "--register=no", "--keep-unit", "--boot",
            "--private-network", "--volatile=overlay", "--console=read-only",
            "--resolv-conf=off", "--timezone=off", "--link-journal=no",
            f"--machine={self.name}", f"--directory={self.rootfs}",
        ]  # fmt: skip
        command += [f"--bind-ro={host}:{inside}" for host, inside in self.binds]
        with open(self.log, "wb") as output:
            self._process = subprocess.Popen(
                command,
                stdin=subprocess.DEVNULL,
                stdout=output,
                stderr=subprocess.STDOUT,
                start_new_session=True,
            )
        atexit.register(self.powerOff)
        deadline = time.monotonic() + timeout
        leader = None
        while leader is None:
            leader = self._findLeader()
            if leader is None:
                if self._process.poll() is not None or time.monotonic() > deadline:
                    self.powerOff()
                    raise Unavailable(
                        "systemd-nspawn did not start a container: "
                        + _tail(self.log.read_text(errors="replace"))
                    )
                time.sleep(0.1)
        self.leader = leader
        # Until the container's systemd has its private socket, systemctl
        # cannot reach it; after that, --wait waits for the boot to end.
        state = ""
        while state not in ("running", "degraded"):
            left = deadline - time.monotonic()
            if self._process.poll() is not None or left <= 0:
                self.powerOff()
                raise Unavailable(
                    f"the container's systemd did not boot: {state!r}, "
                    + _tail(self.log.read_text(errors="replace"))
                )
            result = self.run(
                ["systemctl", "is-system-running", "--wait"],
                timeout=max(left, 1),
                check=False,
            )
            state = result.stdout.strip() or result.stderr.strip()
            if not result.stdout.strip():
                time.sleep(0.2)

    def _findLeader(self) -> int | None:
        """
        The container's PID 1, as the host sees it: the child of
        systemd-nspawn that is PID 1 of its own pid namespace.
        """
        assert self._process is not None
        pid = self._process.pid
        children: list[str] = []
        for task in Path(f"/proc/{pid}/task").glob("*"):
            with contextlib.suppress(OSError):
                children += (task / "children").read_text().split()
        for child in children:
            with contextlib.suppress(OSError):
                status = Path(f"/proc/{child}/status").read_text()
                nspid = re.search(r"^NSpid:\s+(.*)$", status, re.M)
                if nspid and nspid.group(1).split()[-1] == "1":
                    return int(child)
        return None

    def _command(
        self, command: str | Sequence[str], env: Mapping[str, str]
    ) -> list[str]:
        argv = ["/bin/sh", "-c", command] if isinstance(command, str) else command
        environment = [f"{k}={v}" for k, v in {**_ENVIRONMENT, **env}.items()]
        return [
            "nsenter", f"--target={self.leader}", "--all",
            "--", "/usr/bin/env", "-i", *environment, *argv,
        ]  # fmt: skip

    def run(
        self,
        command: str | Sequence[str],
        *,
        timeout: float = 30,
        check: bool = True,
        input: str | None = None,
        env: Mapping[str, str] | None = None,
    ) -> subprocess.CompletedProcess[str]:
        """
        Run a command in the container as root (a string goes to
        C{/bin/sh -c}), in all of its namespaces, with a clean environment.

        @raise subprocess.CalledProcessError: With C{check}, it failed;
            the message includes what it printed.
        """
        result = subprocess.run(
            self._command(command, env or {}),
            capture_output=True,
            text=True,
            timeout=timeout,
            input=input,
            stdin=None if input is not None else subprocess.DEVNULL,
        )
        if check and result.returncode != 0:
            raise AssertionError(
                f"{command!r} exited {result.returncode}:\n"
                f"{result.stdout}\n{result.stderr}"
            )
        return result

    def popen(self, command: str | Sequence[str]) -> subprocess.Popen[str]:
        """
        Start a command in the container without waiting for it: the
        caller must C{communicate(timeout=...)} with it.
        """
        return subprocess.Popen(
            self._command(command, {}),
            stdin=subprocess.DEVNULL,
            stdout=subprocess.PIPE,
            stderr=subprocess.PIPE,
            text=True,
        )

    def powerOff(self, timeout: float = 30) -> None:
        """
        Shut the container down and wait for it: SIGTERM to systemd-nspawn
        asks the container's systemd to power off; if that takes too long,
        SIGKILL to its PID 1 (which ends every process in it) and to
        systemd-nspawn. Safe to call more than once.
        """
        process = self._process
        if process is None or process.returncode is not None:
            return
        with contextlib.suppress(ProcessLookupError):
            process.send_signal(signal.SIGTERM)
        try:
            process.wait(timeout)
        except subprocess.TimeoutExpired:
            leader = getattr(self, "leader", None)
            if leader is not None:
                with contextlib.suppress(ProcessLookupError):
                    os.kill(leader, signal.SIGKILL)
            with contextlib.suppress(ProcessLookupError):
                os.killpg(process.pid, signal.SIGKILL)
            process.wait(10)
        # systemd-nspawn leaves this behind when the host has no systemd.
        shutil.rmtree(f"/run/systemd/nspawn/propagate/{self.name}", ignore_errors=True)
