"""
The shipped units under a real systemd: Debian 12 (systemd 252) booted in
systemd-nspawn with its own network namespace, the server installed from
this checkout's wheel and set up by running the commands of
docs/deployment.md as they are written there (placeholders aside), then
driven as an admin would, with systemctl, journalctl and curl inside the
container.

One container serves the whole module; before each test the service is
stopped and the shipped units are put back, so each test starts from the
state section 4 of the guide leaves: the socket listening, the service
not running.

Needs root, systemd-nspawn, debootstrap and, the first time, the Debian
mirror (tests/support/nspawn.py caches the rootfs); otherwise every test
skips, saying which is missing.
"""

from __future__ import annotations

import json
import os
import re
import shutil
import time
from collections.abc import Iterator
from pathlib import Path

import pytest
from cryptography.hazmat.primitives import hashes

from tests.support.certs import CertFiles, makeCertificate
from tests.support.checkout import ROOT
from tests.support.nspawn import (
    Container,
    Unavailable,
    buildWheelhouse,
    docBlock,
    ensureRootfs,
    whyUnavailable,
)
from tests.support.shell import sh, writeFile

pytestmark = pytest.mark.e2e

SERVICE = "twisted-cgiserve.service"
SOCKET = "twisted-cgiserve.socket"
DEPLOYMENT = ROOT / "docs" / "deployment.md"
# Where the container sees the checkout and this module's files (read-only).
CHECKOUT = "/usr/src/twisted-cgiserve"
STAGE = "/mnt/stage"
URL = "https://localhost"
CREDENTIALS = f"/run/credentials/{SERVICE}"
# Seconds by which journald may take in a line after one sent later through
# another socket (CI once saw systemd's "Started" stored before the server's
# line it follows; in order, 0.1 to 4 ms apart). The server's start-up in the
# container, what Type=notify waits for, takes about 1.2 s.
JOURNAL_SLACK = 0.1
# What the files in /home and /root say, which no script may read.
SECRET = "private-words-of-alice-and-root"
# Two tests create the same user, as the guide does in two sections.
ONCE = {"useradd ": "id twisted-cgiserve >/dev/null 2>&1 || useradd "}

SCRIPTS = {
    "hello.sh": sh(
        r"""
        printf 'Content-Type: text/plain\r\n\r\n'
        echo "hello from cgi"
        """
    ),
    "noisy.sh": sh(
        r"""
        echo "noisy-stderr-line" >&2
        printf 'Content-Type: text/plain\r\n\r\n'
        echo ok
        """
    ),
    "broken.sh": sh(
        """
        echo "this is no CGI header"
        """
    ),
    "slow.sh": sh(
        r"""
        echo "slow-started" >&2
        sleep 3
        printf 'Content-Type: text/plain\r\n\r\n'
        echo "slow done"
        """
    ),
    "sandbox.sh": sh(
        r"""
        printf 'Content-Type: text/plain\r\n\r\n'
        grep CapEff /proc/self/status
        touch /etc/probe 2>&1
        touch /srv/www/probe 2>&1
        ls -A /home /root 2>&1
        cat /home/alice/notes /root/notes 2>&1
        echo probe > /tmp/tmp-probe && echo tmp-written
        echo probe > /var/tmp/vartmp-probe && echo vartmp-written
        """
    ),
    "steal.sh": sh(
        rf"""
        printf 'Content-Type: text/plain\r\n\r\n'
        echo "uid=$(id -u)"
        cat {CREDENTIALS}/tls.key 2>&1
        """
    ),
}


def _certificate(directory: Path) -> CertFiles:
    """
    A self-signed certificate for localhost, also under the names the
    guide uses (C{fullchain.pem}, C{privkey.pem}).
    """
    cert = makeCertificate(directory)
    shutil.copy(cert.cert, directory / "fullchain.pem")
    shutil.copy(cert.key, directory / "privkey.pem")
    return cert


def _fingerprint(cert: CertFiles) -> str:
    return cert.certificate().fingerprint(hashes.SHA256()).hex().upper()


class Deployment:
    """
    The booted container with the server installed as the guide says, and
    the certificates it was given.
    """

    def __init__(self, machine: Container, first: CertFiles, renewed: CertFiles):
        self.machine = machine
        self.first = first
        self.renewed = renewed

    def run(self, command: str, timeout: float = 30) -> str:
        return self.machine.run(command, timeout=timeout).stdout

    def curl(self, path: str, version: str = "--http1.1") -> tuple[str, str, str]:
        """
        Fetch C{path} from inside the container, checking the certificate
        against the one installed first.

        @return: The HTTP version curl negotiated, the status and the body.
        """
        out = self.machine.run(
            ["curl", "-sS", "--max-time", "20", version,
             "--cacert", f"{STAGE}/first/fullchain.pem",
             "-w", r"\n%{http_version} %{http_code}", URL + path],
            check=False,
        ).stdout  # fmt: skip
        body, _, last = out.rpartition("\n")
        negotiated, _, status = last.partition(" ")
        return negotiated, status, body

    def show(self, unit: str, *properties: str) -> dict[str, str]:
        out = self.run(
            f"systemctl show {unit} " + " ".join(f"-p {p}" for p in properties)
        )
        return dict(line.split("=", 1) for line in out.splitlines() if "=" in line)

    def waitForState(self, unit: str, timeout: float = 15, **expected: str) -> None:
        """
        Wait until C{systemctl show} gives C{unit} the C{expected}
        properties: systemd takes in a READY=1 a moment after the server
        sent it, and may not have when the first response arrives.
        """
        deadline = time.monotonic() + timeout
        while (found := self.show(unit, *expected)) != expected:
            assert time.monotonic() < deadline, found
            time.sleep(0.1)

    def cursor(self) -> str:
        out = self.run("journalctl -o json -n 1")
        return str(json.loads(out.splitlines()[-1])["__CURSOR"])

    def journal(self, after: str) -> list[dict[str, str]]:
        """
        The service's journal entries since C{after} (a cursor).
        """
        out = self.run(f"journalctl -u {SERVICE} -o json --after-cursor '{after}'")
        return [json.loads(line) for line in out.splitlines() if line.strip()]

    def messages(self, after: str) -> list[str]:
        return [str(entry.get("MESSAGE", "")) for entry in self.journal(after)]

    def waitForMessage(self, after: str, text: str, timeout: float = 15) -> None:
        deadline = time.monotonic() + timeout
        while not any(text in m for m in self.messages(after)):
            assert time.monotonic() < deadline, (text, self.messages(after))
            time.sleep(0.2)

    def servedFingerprint(self) -> str:
        out = self.run(
            "openssl s_client -connect 127.0.0.1:443 -servername localhost"
            " </dev/null 2>/dev/null | openssl x509 -noout -fingerprint -sha256"
        )
        return out.strip().split("=", 1)[1].replace(":", "")


@pytest.fixture(scope="module")
def deployment(tmp_path_factory: pytest.TempPathFactory) -> Iterator[Deployment]:
    """
    Boot the container and follow the guide's sections 1 to 4 in it.
    """
    reason = whyUnavailable()
    if reason is not None:
        pytest.skip(reason)
    try:
        rootfs = ensureRootfs()
    except Unavailable as e:
        pytest.skip(str(e))
    stage = tmp_path_factory.mktemp("systemd")
    buildWheelhouse(ROOT, stage / "wheels")
    first = _certificate(stage / "first")
    renewed = _certificate(stage / "renewed")
    site = stage / "site"
    writeFile(site / "index.html", b"<h1>It works</h1>\n", 0o644)
    writeFile(site / "a.txt", b"static text\n", 0o644)
    for name, script in SCRIPTS.items():
        writeFile(site / "cgi-bin" / name, script)

    machine = Container(
        rootfs,
        f"cgiserve-{os.getpid()}",
        stage / "console.log",
        binds=[(ROOT, CHECKOUT), (stage, STAGE)],
    )
    try:
        machine.boot()
        guide = DEPLOYMENT.read_text()
        steps = [
            ("## 1. Install the server", {}, "/", 300),
            ("## 2. Put the site", {"/path/to/site": f"{STAGE}/site"}, "/", 30),
            ("## 3. Install the certificate", {}, f"{STAGE}/first", 30),
            ("## 4. Install and start the units", {}, CHECKOUT, 60),
        ]
        # pip finds the wheels built on the host: the container is offline.
        offline = {"PIP_NO_INDEX": "1", "PIP_FIND_LINKS": f"{STAGE}/wheels"}
        for heading, placeholders, directory, timeout in steps:
            block = docBlock(guide, heading, placeholders)
            machine.run(
                f"set -e\ncd {directory}\n{block}", timeout=timeout, env=offline
            )
        machine.run(f"mkdir -p /home/alice && echo {SECRET} > /home/alice/notes")
        machine.run(f"echo {SECRET} > /root/notes && ls /home/alice/notes /root/notes")
        yield Deployment(machine, first, renewed)
    finally:
        machine.powerOff()


@pytest.fixture
def deployed(deployment: Deployment) -> Deployment:
    """
    The deployment as the guide's section 4 leaves it: the shipped units,
    the socket listening, the service stopped and its failures forgotten.
    """
    deployment.run(
        f"rm -rf /etc/systemd/system/{SERVICE}.d"
        f" && cp {CHECKOUT}/contrib/systemd/{SERVICE} /etc/systemd/system/"
        f" && systemctl daemon-reload && systemctl stop {SERVICE}"
        f" && systemctl reset-failed {SERVICE}",
        timeout=60,
    )
    return deployment


def test_socketListensServiceWaits(deployed: Deployment) -> None:
    """
    After section 4, systemd listens on port 443 (one socket, IPv6 and
    IPv4) while the service has not been started.
    """
    socket = deployed.show(SOCKET, "ActiveState", "SubState", "Listen")
    assert socket["ActiveState"] == "active"
    assert socket["SubState"] == "listening"
    assert socket["Listen"] == "[::]:443 (Stream)"
    service = deployed.show(SERVICE, "ActiveState", "MainPID")
    assert service == {"ActiveState": "inactive", "MainPID": "0"}
    # The kernel's view: something listens on 443 (01BB), state 0A.
    tcp6 = deployed.run("cat /proc/net/tcp6")
    assert re.search(r"^\s*\d+: 0+:01BB 0+:0000 0A ", tcp6, re.M), tcp6


def _exposure(deployed: Deployment) -> str:
    """
    What C{systemd-analyze security} says of the loaded service, as the
    guide quotes it: C{1.3 "OK"}.
    """
    out = deployed.run(f"systemd-analyze security --no-pager {SERVICE}")
    found = re.search(rf"Overall exposure level for {SERVICE}: ([\d.]+) (\w+)", out)
    assert found, out
    return f'{found[1]} "{found[2]}"'


def test_systemdAnalyze(deployed: Deployment) -> None:
    """
    On the minimal system, C{systemd-analyze verify} prints nothing about
    the installed units, as the guide's troubleshooting section promises
    (every program they run exists: no /bin/kill without procps), and the
    exposure the guide quotes for the shipped unit is what systemd 252
    rates the loaded unit.
    """
    units = f"/etc/systemd/system/{SOCKET} /etc/systemd/system/{SERVICE}"
    verify = deployed.machine.run(f"systemd-analyze verify {units}", check=False)
    assert (verify.returncode, verify.stdout, verify.stderr) == (0, "", "")
    exposure = _exposure(deployed)
    assert f"rates the shipped unit {exposure}" in DEPLOYMENT.read_text()


def test_firstRequestStartsService(deployed: Deployment) -> None:
    """
    The first connection (the guide's check of section 5) starts the
    service; systemd reports it running only once the server said
    READY=1, with the server's status text.
    """
    after = deployed.cursor()
    check = docBlock(
        DEPLOYMENT.read_text(),
        "## 5. Check it",
        {"https://www.example.org/": f"--cacert {STAGE}/first/fullchain.pem {URL}/"},
    )
    assert deployed.run(check) == "2 200\n"
    # systemd says the start is done only once the server listens. The
    # server's line comes through its standard output and systemd's through
    # its own socket, which journald may read in either order: their
    # reception times are compared, with a slack far below the server's
    # start-up (Type=simple would say "Started" that long before).
    entries = deployed.journal(after)
    messages = [str(entry.get("MESSAGE", "")) for entry in entries]
    listening = [
        e for e in entries if str(e.get("MESSAGE")).startswith("[cgiserve.listen]")
    ]
    started = [e for e in entries if str(e.get("MESSAGE")).startswith("Started ")]
    assert len(listening) == len(started) == 1, messages
    heard = int(listening[0]["__MONOTONIC_TIMESTAMP"])
    said = int(started[0]["__MONOTONIC_TIMESTAMP"])
    assert said >= heard - JOURNAL_SLACK * 1e6, (said - heard, messages)
    # The first line the guide's section 5 mentions.
    loaded = f"[cgiserve.tls] TLS certificate from {CREDENTIALS}/tls.crt: localhost ("
    assert any(m.startswith(loaded) for m in messages), messages
    deployed.waitForState(
        SERVICE,
        ActiveState="active",
        SubState="running",
        StatusText="Serving on https://[::]:443/",
    )
    status = deployed.machine.run(["systemctl", "status", SERVICE], check=False).stdout
    assert re.search(r"^\s+Active: active \(running\) since ", status, re.M), status
    assert f"TriggeredBy: ● {SOCKET}" in status, status
    assert 'Status: "Serving on https://[::]:443/"' in status, status


@pytest.mark.parametrize(
    ("option", "version"), [("--http1.1", "1.1"), ("--http2", "2")]
)
def test_staticAndCGIOverTLS(deployed: Deployment, option: str, version: str) -> None:
    """
    Static files and CGI scripts, over TLS, with HTTP/1.1 and with HTTP/2
    (negotiated by ALPN): what section 5 of the guide checks.
    """
    assert deployed.curl("/", option) == (version, "200", "<h1>It works</h1>\n")
    assert deployed.curl("/a.txt", option) == (version, "200", "static text\n")
    assert deployed.curl("/cgi-bin/hello.sh", option) == (
        version, "200", "hello from cgi\n",
    )  # fmt: skip
    assert deployed.curl("/nope", option)[:2] == (version, "404")


def test_journalPriorities(deployed: Deployment) -> None:
    """
    Every line reaches the journal with its own priority: access lines are
    information (6), what a script writes to stderr a warning (4), a
    script's bad output an error (3).
    """
    after = deployed.cursor()
    assert deployed.curl("/cgi-bin/noisy.sh")[1] == "200"
    assert deployed.curl("/cgi-bin/broken.sh")[1] == "502"
    deployed.waitForMessage(after, '"GET /cgi-bin/broken.sh HTTP/1.1" 502')
    entries = deployed.journal(after)

    def priorities(pattern: str) -> set[str]:
        return {
            e["PRIORITY"] for e in entries if re.search(pattern, e.get("MESSAGE", ""))
        }

    assert priorities(r'^\[cgiserve\.access\] .*"GET /cgi-bin/noisy\.sh ') == {"6"}
    assert priorities(r"^\[cgiserve\.cgi\] /cgi-bin/noisy\.sh .*noisy-stderr-line") == {
        "4"
    }
    assert priorities(r"^\[cgiserve\.cgi\] .*broken\.sh") == {"3"}, entries
    identifiers = {
        e.get("SYSLOG_IDENTIFIER")
        for e in entries
        if e.get("MESSAGE", "").startswith("[cgiserve.")
    }
    assert identifiers == {"twisted-cgiserve"}, identifiers


def test_reloadShippedUnit(deployed: Deployment) -> None:
    """
    C{systemctl reload} works with the shipped unit on a minimal Debian
    (no procps): the server gets SIGHUP and re-reads its certificate; the
    main process stays the same.
    """
    assert deployed.curl("/a.txt")[1] == "200"
    pid = deployed.show(SERVICE, "MainPID")["MainPID"]
    assert deployed.run("command -v kill; test ! -e /bin/kill && echo no-procps")
    after = deployed.cursor()
    deployed.run(f"systemctl reload {SERVICE}")
    deployed.waitForMessage(after, "TLS certificate reloaded")
    assert "[cgiserve.reload] Received SIGHUP; reloading." in deployed.messages(after)
    assert deployed.show(SERVICE, "MainPID", "ActiveState") == {
        "MainPID": pid,
        "ActiveState": "active",
    }


def test_reloadPicksUpNewCertificate(deployed: Deployment) -> None:
    """
    The guide's dedicated-user variant: a renewal by its deploy hook's
    commands is a reload (same main process) after which new connections
    get the new certificate.
    """
    guide = DEPLOYMENT.read_text()
    setup = docBlock(
        guide,
        "### Reloading instead of restarting: a dedicated user",
        {
            **ONCE,
            "fullchain.pem": f"{STAGE}/first/fullchain.pem",
            "privkey.pem": f"{STAGE}/first/privkey.pem",
        },
    )
    deployed.run(f"set -e\ncd {CHECKOUT}\n{setup}", timeout=60)
    assert deployed.curl("/a.txt")[1] == "200"
    assert deployed.servedFingerprint() == _fingerprint(deployed.first)
    pid = deployed.show(SERVICE, "MainPID")["MainPID"]

    hook = docBlock(
        guide,
        "The deploy hook's last three lines",
        {"$RENEWED_LINEAGE": f"{STAGE}/renewed"},
    )
    after = deployed.cursor()
    deployed.run(f"set -e\n{hook}", timeout=60)
    deployed.waitForMessage(after, "TLS certificate reloaded")
    assert deployed.servedFingerprint() == _fingerprint(deployed.renewed)
    assert deployed.show(SERVICE, "MainPID")["MainPID"] == pid


def _stopWithRequestInFlight(deployed: Deployment, after: str) -> None:
    """
    C{systemctl stop} while a slow script runs: its request completes
    (200, whole body) and the unit ends inactive, with success.
    """
    client = deployed.machine.popen(
        ["curl", "-sS", "-k", "--max-time", "30", "-w", r"\n%{http_code}",
         URL + "/cgi-bin/slow.sh"]
    )  # fmt: skip
    try:
        deployed.waitForMessage(after, "slow-started")
        deployed.run(f"systemctl stop {SERVICE}", timeout=60)
        out, err = client.communicate(timeout=30)
    finally:
        client.kill()
    assert out == "slow done\n\n200", err
    assert deployed.show(SERVICE, "ActiveState", "Result") == {
        "ActiveState": "inactive",
        "Result": "success",
    }


def _cgroupProcesses(deployed: Deployment) -> set[str]:
    """
    The pids in the service's cgroup, in whichever hierarchy the host
    gives the container (unified, or systemd's own under cgroup v1); none
    when the cgroup is gone.
    """
    return set(
        deployed.run(
            "for d in /sys/fs/cgroup/unified /sys/fs/cgroup/systemd /sys/fs/cgroup;"
            f" do cat $d/system.slice/{SERVICE}/cgroup.procs 2>/dev/null; done; true"
        ).split()
    )


def test_stopWithRequestInFlight(deployed: Deployment) -> None:
    """
    C{systemctl stop} while a script runs: the request completes (200,
    whole body), then the unit is inactive and nothing of it is left.
    """
    assert deployed.curl("/a.txt")[1] == "200"
    after = deployed.cursor()
    _stopWithRequestInFlight(deployed, after)
    assert _cgroupProcesses(deployed) == set(), deployed.run(
        f"systemctl status {SERVICE}; true"
    )
    left = deployed.run("grep -l '[s]low.sh' /proc/[0-9]*/cmdline 2>/dev/null; true")
    assert left.strip() == ""


def test_sandboxForScripts(deployed: Deployment) -> None:
    """
    What the unit's sandbox promises scripts, seen by a script: no
    capabilities, a read-only system and document root, no /home or
    /root, and a /tmp and /var/tmp of their own.
    """
    _, status, body = deployed.curl("/cgi-bin/sandbox.sh")
    assert status == "200", body
    assert "CapEff:\t0000000000000000" in body
    assert "touch: cannot touch '/etc/probe': Read-only file system" in body
    assert "touch: cannot touch '/srv/www/probe': Read-only file system" in body
    assert "ls: cannot open directory '/home': Permission denied" in body
    assert "ls: cannot open directory '/root': Permission denied" in body
    assert SECRET not in body
    assert "tmp-written\nvartmp-written" in body
    # Written, but not where the rest of the system sees it.
    assert "probe" not in deployed.run("ls -A /tmp /var/tmp")


def test_restartsUnderLoad(deployed: Deployment) -> None:
    """
    Eight clients request without pause while the service is restarted
    four times: not one request fails, because systemd's socket keeps the
    connections that arrive meanwhile until the new server takes them.
    """
    assert deployed.curl("/a.txt")[1] == "200"
    load = deployed.machine.popen(
        "rm -f /run/load-stop; for n in 1 2 3 4 5 6 7 8; do"
        " (while [ ! -e /run/load-stop ]; do"
        f"  curl -s -o /dev/null --cacert {STAGE}/first/fullchain.pem"
        f"   --max-time 30 -w '%{{http_code}}\\n' {URL}/cgi-bin/hello.sh;"
        " done) & done; wait"
    )
    try:
        pids = {deployed.show(SERVICE, "MainPID")["MainPID"]}
        for _ in range(4):
            time.sleep(1)
            deployed.run(f"systemctl restart {SERVICE}", timeout=60)
            pids.add(deployed.show(SERVICE, "MainPID")["MainPID"])
        time.sleep(1)
        deployed.run("touch /run/load-stop")
        out, err = load.communicate(timeout=60)
    finally:
        load.kill()
    codes = out.split()
    assert len(pids) == 5, pids
    assert len(codes) > 40, (codes, err)
    assert set(codes) == {"200"}, (codes, err)


def test_workers(deployed: Deployment) -> None:
    """
    The guide's "Several worker processes", in the sandbox: with
    C{--workers 2} added in a drop-in, the service is ready once both
    serve, a reload reaches both, and a stop with a script running lets
    it finish and leaves nothing behind.
    """
    unit = (ROOT / "contrib" / "systemd" / SERVICE).read_text()
    [execStart] = re.findall(r"^ExecStart=.*$", unit, re.M)
    deployed.run(
        f"mkdir -p /etc/systemd/system/{SERVICE}.d && printf '%s\\n' '[Service]'"
        f" 'ExecStart=' '{execStart} --workers 2'"
        f" > /etc/systemd/system/{SERVICE}.d/workers.conf && systemctl daemon-reload"
    )
    after = deployed.cursor()
    assert deployed.curl("/cgi-bin/hello.sh", "--http2")[:2] == ("2", "200")
    # Ready only once both workers serve (the first response may come
    # from one while the other is still starting).
    deployed.waitForState(
        SERVICE, SubState="running", StatusText="Serving on https://[::]:443/"
    )
    # The parent, two workers and the CGI spawner.
    assert len(_cgroupProcesses(deployed)) == 4

    deployed.run(f"systemctl reload {SERVICE}")
    deployed.waitForMessage(after, "passing it to 2 worker(s)")
    deadline = time.monotonic() + 15
    while sum("TLS certificate reloaded" in m for m in deployed.messages(after)) < 2:
        assert time.monotonic() < deadline, deployed.messages(after)
        time.sleep(0.2)

    _stopWithRequestInFlight(deployed, after)
    assert _cgroupProcesses(deployed) == set()


def test_isolateKeyDropIn(deployed: Deployment) -> None:
    """
    The guide's "Keeping the key from CGI scripts": the server serves TLS,
    a script (and the server) cannot read the key, and a reload works: it
    says it cannot re-read the files and keeps the certificate in use.
    """
    guide = DEPLOYMENT.read_text()
    block = docBlock(guide, "### Keeping the key from CGI", ONCE)
    deployed.run(f"set -e\ncd {CHECKOUT}\n{block}", timeout=60)
    uid = deployed.run("id -u twisted-cgiserve").strip()
    assert deployed.curl("/a.txt", "--http2") == ("2", "200", "static text\n")
    _, status, body = deployed.curl("/cgi-bin/steal.sh")
    assert status == "200"
    # Scripts run as nobody: the server's --cgi-user when started as root.
    assert "uid=65534\n" in body
    assert "Permission denied" in body
    assert "PRIVATE KEY" not in body
    pid = deployed.show(SERVICE, "MainPID")["MainPID"]
    assert deployed.run(f"stat -c %u /proc/{pid}").strip() == uid
    exposure = _exposure(deployed)
    assert f"rates it {exposure}" in " ".join(guide.split())

    after = deployed.cursor()
    deployed.run(f"systemctl reload {SERVICE}")
    deployed.waitForMessage(after, "TLS certificate not reloaded")
    messages = deployed.messages(after)
    assert "[cgiserve.reload] Received SIGHUP; reloading." in messages
    [line] = [m for m in messages if "TLS certificate not reloaded" in m]
    logged = line.split("] ", 1)[1].replace(CREDENTIALS, "...")
    assert logged == (
        "TLS certificate not reloaded, still using the previous one: "
        "cannot read --tls-cert '.../tls.crt': Permission denied"
    )
    # The guide quotes it.
    assert logged.replace(" '.../tls.crt'", " ...") in " ".join(guide.split())
    assert deployed.servedFingerprint() == _fingerprint(deployed.first)
    # The access log (the journal, with this drop-in) goes on.
    assert deployed.curl("/a.txt?after-reload")[1] == "200"
    deployed.waitForMessage(after, '"GET /a.txt?after-reload HTTP/1.1" 200')
    assert deployed.show(SERVICE, "MainPID", "ActiveState") == {
        "MainPID": pid,
        "ActiveState": "active",
    }


def test_userServiceForDevelopment(deployed: Deployment) -> None:
    """
    The guide's user service, installed by an ordinary user as written:
    under that user's systemd (C{systemctl --user}, the user lingering as
    the guide suggests), ready with its status text, serving
    C{~/public_html} and its scripts, as that user, on loopback port 8000.
    """
    deployed.run(
        "id dev >/dev/null 2>&1 || useradd --create-home --shell /bin/sh dev;"
        " loginctl enable-linger dev && systemctl start user@$(id -u dev).service"
        " && rm -rf /opt/wheels && cp -r /mnt/stage/wheels /opt/wheels"
        " && chmod -R a+rX /opt/wheels",
        timeout=60,
    )
    uid = deployed.run("id -u dev").strip()
    block = docBlock(DEPLOYMENT.read_text(), "### A user service for development", {})
    whoami = sh(
        r"""
        printf 'Content-Type: text/plain\r\n\r\n'
        echo "uid=$(id -u)"
        """
    ).decode()
    # Everything as the user, in the environment a login gives.
    environment = (
        f"HOME=/home/dev USER=dev LOGNAME=dev XDG_RUNTIME_DIR=/run/user/{uid}"
        f" PIP_NO_INDEX=1 PIP_FIND_LINKS=/opt/wheels"
    )
    # The user's own copy of the units: the checkout is bound in as the
    # host has it, and a clone in a 0700 directory (mktemp -d) is closed to
    # everyone but root.
    deployed.run(
        f"rm -rf /home/dev/src && mkdir -p /home/dev/src"
        f" && cp -r {CHECKOUT}/contrib /home/dev/src/"
        f" && chown -R dev: /home/dev/src",
        timeout=30,
    )
    script = (
        f"set -e\ncd /home/dev/src\n{block}"
        "mkdir -p ~/public_html/cgi-bin\n"
        "echo 'my page' > ~/public_html/index.html\n"
        f"cat > ~/public_html/cgi-bin/whoami.sh <<'END'\n{whoami}END\n"
        "chmod 755 ~/public_html/cgi-bin/whoami.sh\n"
    )
    deployed.machine.run(
        ["runuser", "-u", "dev", "--", "/usr/bin/env", *environment.split(),
         "/bin/sh", "-c", script],
        timeout=180,
    )  # fmt: skip
    show = deployed.machine.run(
        ["runuser", "-u", "dev", "--", "/usr/bin/env", *environment.split(),
         "systemctl", "--user", "show", "twisted-cgiserve.service",
         "-p", "ActiveState", "-p", "SubState", "-p", "StatusText"],
    ).stdout  # fmt: skip
    assert dict(line.split("=", 1) for line in show.splitlines()) == {
        "ActiveState": "active",
        "SubState": "running",
        "StatusText": "Serving on http://127.0.0.1:8000/",
    }
    page = deployed.run("curl -sS --max-time 20 http://127.0.0.1:8000/")
    assert page == "my page\n"
    out = deployed.run("curl -sS --max-time 20 http://127.0.0.1:8000/cgi-bin/whoami.sh")
    assert out == f"uid={uid}\n"
    # Loopback only: not on the container's other addresses (it has none
    # but loopback, so ::1, which the unit does not listen on, stands in).
    refused = deployed.machine.run(
        ["curl", "-sS", "--max-time", "5", "http://[::1]:8000/"], check=False
    )
    assert refused.returncode == 7, refused
