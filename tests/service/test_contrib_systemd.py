"""
The systemd units in contrib/systemd: systemd accepts them
(C{systemd-analyze verify}), rates the service's sandbox as OK
(C{systemd-analyze security}), and they say what docs/deployment.md
promises. Nothing here starts a unit.
"""

from __future__ import annotations

import os
import re
import shutil
import subprocess
import sys
from pathlib import Path

import pytest

from tests.support.checkout import ROOT
from twisted_cgiserve.tap import Options

UNITS = ROOT / "contrib" / "systemd"
SERVICE = UNITS / "twisted-cgiserve.service"
SOCKET = UNITS / "twisted-cgiserve.socket"
NAMES = (SERVICE.name, SOCKET.name)

# Where the units expect the server; the tests point them at this venv's.
INSTALLED_TWISTD = "/opt/twisted-cgiserve/bin/twistd"
TWISTD = Path(sys.executable).with_name("twistd")

# After --shutdown-grace, a stop takes at most 10 s more: up to 5 s for the
# scripts still running to end (SIGKILL 3 s after SIGTERM, reaped 2 s later
# at most), 5 s to flush connections (docs/operations.md, "Shutdown").
STOP_OVERHEAD = 10.0

# The exposure "systemd-analyze security" may give the service: "OK" or
# better (0 is best, 10 worst).
MAX_EXPOSURE = 2.5


def _directives(path: Path) -> dict[str, dict[str, list[str]]]:
    """
    A unit file as {section: {key: [values, in order]}}; systemd's syntax as
    far as these units use it (no line continuations).
    """
    sections: dict[str, dict[str, list[str]]] = {}
    current: dict[str, list[str]] | None = None
    for number, raw in enumerate(path.read_text().splitlines(), 1):
        line = raw.strip()
        if not line or line[0] in "#;":
            continue
        assert not line.endswith("\\"), f"{path.name}:{number}: continuation"
        if line.startswith("[") and line.endswith("]"):
            current = sections.setdefault(line[1:-1], {})
            continue
        assert current is not None, f"{path.name}:{number}: outside a section"
        key, sep, value = line.partition("=")
        assert sep, f"{path.name}:{number}: not KEY=VALUE: {raw!r}"
        current.setdefault(key.strip(), []).append(value.strip())
    return sections


def _one(unit: dict[str, list[str]], key: str) -> str:
    """
    The value of a directive that must be set exactly once.
    """
    values = unit.get(key, [])
    assert len(values) == 1, f"{key}= set {len(values)} times: {values}"
    return values[0]


def _seconds(value: str) -> float:
    """
    A systemd time span such as C{45}, C{45s} or C{1min 30s}, in seconds.
    """
    units = {"": 1, "s": 1, "sec": 1, "m": 60, "min": 60, "h": 3600}
    parts = re.findall(r"(\d+(?:\.\d+)?)\s*([a-z]*)", value)
    assert parts, f"not a time span: {value!r}"
    return sum(float(number) * units[unit] for number, unit in parts)


def _systemdAnalyze() -> str:
    found = shutil.which("systemd-analyze")
    if found is None:
        pytest.skip("systemd-analyze is not on the PATH (systemd not installed)")
    return found


@pytest.fixture
def units(tmp_path: Path) -> Path:
    """
    Copies of both units whose ExecStart= runs this venv's twistd (verify
    checks that the program exists); nothing else is changed.
    """
    text = SERVICE.read_text()
    assert INSTALLED_TWISTD in text
    assert TWISTD.exists(), TWISTD
    (tmp_path / SERVICE.name).write_text(text.replace(INSTALLED_TWISTD, str(TWISTD)))
    shutil.copy(SOCKET, tmp_path / SOCKET.name)
    return tmp_path


def _run(command: list[str], cwd: Path) -> subprocess.CompletedProcess[str]:
    env = dict(os.environ, SYSTEMD_COLORS="0", SYSTEMD_PAGER="", LC_ALL="C.UTF-8")
    return subprocess.run(
        command, cwd=cwd, env=env, capture_output=True, text=True, timeout=60
    )


def test_systemdAnalyzeVerify(units: Path) -> None:
    """
    C{systemd-analyze verify} accepts both units: exit status 0 and not one
    line (warning or error) about either of them. Lines about other units of
    the host, should there be any, are not ours to judge.
    """
    analyze = _systemdAnalyze()
    result = _run(
        [analyze, "verify", str(units / SOCKET.name), str(units / SERVICE.name)],
        cwd=units,
    )
    output = result.stdout + result.stderr
    ours = [
        line
        for line in output.splitlines()
        if str(units) in line or any(name in line for name in NAMES)
    ]
    assert ours == [], output
    assert result.returncode == 0, output


def test_systemdAnalyzeSecurity(units: Path) -> None:
    """
    C{systemd-analyze security --offline=yes} rates the service's exposure
    at most 2.5 ("OK" or better).
    """
    analyze = _systemdAnalyze()
    if "--offline" not in _run([analyze, "--help"], cwd=units).stdout:
        pytest.skip("this systemd-analyze has no --offline (systemd < 250)")
    result = _run(
        [analyze, "security", "--offline=yes", "--no-pager", str(units / SERVICE.name)],
        cwd=units,
    )
    output = result.stdout + result.stderr
    match = re.search(
        r"Overall exposure level for " + re.escape(SERVICE.name) + r": ([\d.]+) (\w+)",
        output,
    )
    assert match, output
    assert float(match.group(1)) <= MAX_EXPOSURE, output


def test_serviceReadiness() -> None:
    """
    The service waits for the server's own READY=1 and accepts it from the
    server only; a reload is a SIGHUP to the server.
    """
    service = _directives(SERVICE)["Service"]
    assert _one(service, "Type") == "notify"
    assert _one(service, "NotifyAccess") == "main"
    # The shell's kill: /bin/kill (procps) is missing on minimal systems.
    assert _one(service, "ExecReload") == "/bin/sh -c 'kill -HUP $MAINPID'"


def test_serviceStop() -> None:
    """
    SIGTERM goes to the server alone (it ends its own scripts), and systemd
    waits longer than the server's default shutdown grace period plus the
    time it takes to end scripts and flush connections.
    """
    service = _directives(SERVICE)["Service"]
    assert _one(service, "KillMode") == "mixed"
    assert _one(service, "KillSignal") in ("SIGTERM", "TERM", "15")
    grace = float(Options()["shutdown-grace"])
    assert _seconds(_one(service, "TimeoutStopSec")) > grace + STOP_OVERHEAD


def test_serviceSandbox() -> None:
    """
    The server runs as an unprivileged user, on a read-only system, with no
    capabilities, and without MemoryDenyWriteExecute= (it would break CGI
    interpreters that compile code at run time).
    """
    service = _directives(SERVICE)["Service"]
    dynamic = service.get("DynamicUser", ["no"])[-1] in ("yes", "true", "1", "on")
    user = service.get("User", [""])[-1]
    assert dynamic or user not in ("", "root", "0")
    assert _one(service, "ProtectSystem") == "strict"
    assert _one(service, "NoNewPrivileges") == "yes"
    assert service["CapabilityBoundingSet"] == [""]
    assert service.get("AmbientCapabilities", [""]) == [""]
    assert "MemoryDenyWriteExecute" not in service


def test_serviceCommandLine() -> None:
    """
    ExecStart= runs twistd by full path in the foreground without a pidfile,
    on the socket the .socket unit names, with the certificate and key that
    LoadCredential= provides; every cgiserve option it uses exists.
    """
    unit = _directives(SERVICE)
    service = unit["Service"]
    socket = _directives(SOCKET)["Socket"]
    argv = _one(service, "ExecStart").split()
    assert argv[0] == INSTALLED_TWISTD
    split = argv.index("cgiserve")
    assert "--nodaemon" in argv[:split]
    assert "--pidfile=" in argv[:split]

    options = argv[split + 1 :]
    name = _one(socket, "FileDescriptorName")
    assert f"systemd:domain=INET6:name={name}" in options
    assert _one(socket, "ListenStream").startswith("[::]:")
    assert _one(socket, "BindIPv6Only") == "both"

    credentials = dict(value.split(":", 1) for value in service["LoadCredential"])
    for option in ("--tls-cert", "--tls-key"):
        path = options[options.index(option) + 1]
        assert path.startswith("%d/"), path
        assert path.removeprefix("%d/") in credentials

    assert options[options.index("--directory") + 1] == _one(
        service, "WorkingDirectory"
    )
    assert SOCKET.name in _one(unit["Unit"], "Requires").split()
    assert SOCKET.name in _one(unit["Unit"], "After").split()

    helpText = subprocess.run(
        [str(TWISTD), "cgiserve", "--help"],
        capture_output=True,
        text=True,
        timeout=60,
    ).stdout
    for option in options:
        if option.startswith("--"):
            assert re.search(rf"{re.escape(option)}[= ]", helpText), option


DROPIN = UNITS / "isolate-key.conf"


def test_isolateKeyDropIn(units: Path) -> None:
    """
    The drop-in that keeps the key from scripts: systemd accepts the unit
    with it, and its command line is the unit's with twistd's --uid/--gid
    added (the mechanism itself is tested end to end in test_e2e_tls).
    """
    analyze = _systemdAnalyze()
    dropins = units / f"{SERVICE.name}.d"
    dropins.mkdir()
    (dropins / DROPIN.name).write_text(
        DROPIN.read_text().replace(INSTALLED_TWISTD, str(TWISTD))
    )
    env = dict(os.environ, SYSTEMD_UNIT_PATH=f"{units}:")
    result = subprocess.run(
        [analyze, "verify", str(units / SERVICE.name)],
        cwd=units, env=env, capture_output=True, text=True, timeout=60,
    )  # fmt: skip
    output = result.stdout + result.stderr
    assert result.returncode == 0, output
    assert not [line for line in output.splitlines() if str(units) in line], output

    service = _directives(SERVICE)["Service"]
    override = _directives(DROPIN)["Service"]
    assert override["ExecStart"][0] == ""
    argv = override["ExecStart"][1].split()
    assert "--uid=twisted-cgiserve" in argv
    assert "--gid=twisted-cgiserve" in argv
    unchanged = [a for a in argv if not a.startswith(("--uid=", "--gid="))]
    assert unchanged == _one(service, "ExecStart").split()
    assert override["DynamicUser"] == ["no"]
    assert override["CapabilityBoundingSet"] == ["CAP_SETUID CAP_SETGID"]
    # Root without CAP_KILL may not signal the server once it has switched
    # users: the reload runs with "+" (full privileges), the same command.
    assert override["ExecReload"] == ["", "+" + _one(service, "ExecReload")]
