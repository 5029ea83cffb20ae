"""
Compare twisted-cgiserve with the servers it replaces or is built on.

Run with the project's venv python, e.g. C{python bench/run.py --quick}. All
servers are started by this script on 127.0.0.1 only, on free ports, serving
one generated docroot in a temp dir; the report (a Markdown table) goes to
stdout, progress and server trouble to stderr. See bench/README.md.

Scenarios and servers are plain data (L{SCENARIOS}, L{SERVERS}) so that new
ones are one entry each.
"""

from __future__ import annotations

import argparse
import contextlib
import datetime
import grp
import http.client
import json
import os
import platform
import pwd
import shlex
import shutil
import signal
import socket
import statistics
import subprocess
import sys
import tempfile
import time
from collections.abc import Callable, Iterator, Mapping, Sequence
from dataclasses import asdict, dataclass, field
from pathlib import Path
from typing import Literal

from _load import (
    LoadGenerator,
    LoadResult,
    PythonGenerator,
    Request,
    WrkGenerator,
    find_or_install,
    find_or_install_wrk,
    post_count,
    post_echo,
    sha256_of,
)

HOST = "127.0.0.1"  # Never anything else: these servers serve a temp dir.
REPO = Path(__file__).resolve().parent.parent
BINDIR = Path(sys.executable).parent
OURS = "cgiserve"
# The same server with two worker processes (issue 12): a column of its own,
# given every scenario's cgiserve options, never a ratio baseline.
WORKERS2 = "cgiserve --workers 2"
# Ratio columns, the reference CGI host first; servers not named here come after.
RATIO_ORDER = ("lighttpd", "http.server", "twisted.web")
# The unprivileged user that the "unprivileged server" scenario starts servers
# as, and that lighttpd and nginx switch to when started as root.
UNPRIVILEGED = "nobody"
STARTUP_TIMEOUT = 15.0
STOP_TIMEOUT = 5.0
WARMUP_SECONDS = 1
ECHO_TIMEOUT = 120.0  # per POST echo, then the harness cuts the connection
COUNT_TIMEOUT = 180.0  # per 1 GiB upload

Metric = Literal["req/s", "MB/s"]
# "load": the load generator (wrk) for --duration seconds per round;
# "echo": one streamed POST per round by post_echo, which checks the echo and
# samples the server's RSS; "count": one streamed POST per round by
# post_count, to a script that answers with the number of bytes it read.
Runner = Literal["load", "echo", "count"]
Validator = Callable[[Path, int, bytes], str | None]


# --- scenarios ---------------------------------------------------------------


@dataclass(frozen=True)
class Scenario:
    """
    One URL to load. C{kind} is matched against L{ServerSpec.kinds} so a CGI
    scenario is only run on servers that can do CGI; C{server_args} lets a
    scenario ask a server for extra options (say C{--cgi}), which starts a
    separate instance of that server with them.
    """

    name: str
    path: str
    connections: int
    metric: Metric
    setup: Callable[[Path], None] | None = None
    validate: Validator | None = None
    kind: str = "static"
    server_args: Mapping[str, tuple[str, ...]] = field(default_factory=dict)
    method: str = "GET"
    body_file: str | None = None  # relative to the docroot, made by setup
    # Per-server URL path, where a server needs another one (twcgi only runs
    # files named *.cgi).
    paths: Mapping[str, str] = field(default_factory=dict)
    runner: Runner = "load"
    # Reported, never enforced: cgiserve / server at least this ratio (a key
    # "A / B" compares two other columns, say cgiserve --workers 2 / lighttpd)...
    targets: Mapping[str, float] = field(default_factory=dict)
    # ...and cgiserve's peak RSS growth (echo runner) under this many MiB.
    rss_target_mib: float | None = None
    # Start every server for this scenario as this user (setpriv), not as the
    # harness's user; part of what makes an instance.
    run_as: str | None = None
    # Why the scenario cannot run here (say, too little space), or None.
    available: Callable[[], str | None] | None = None

    @property
    def single(self) -> bool:
        """One timed request per round, not a load generator run."""
        return self.runner != "load"

    @property
    def label(self) -> str:
        if self.single:
            return f"{self.name} ({self.metric}; peak server RSS growth)"
        return f"{self.name} ({self.metric})"

    def path_for(self, server: str) -> str:
        return self.paths.get(server, self.path)


def make_file(name: str, size: int) -> Callable[[Path], None]:
    def setup(docroot: Path) -> None:
        with (docroot / name).open("wb") as f:
            for offset in range(0, size, 1 << 20):
                f.write(os.urandom(min(1 << 20, size - offset)))

    setup.__qualname__ = f"make_file({name!r}, {size})"
    return setup


def same_as_file(name: str) -> Validator:
    """Random content, so a byte-exact comparison catches truncation or mixing."""

    def validate(docroot: Path, status: int, body: bytes) -> str | None:
        expected = (docroot / name).read_bytes()
        if status != 200:
            return f"status {status}, expected 200"
        if body != expected:
            return f"body of {len(body)} bytes differs from {name} ({len(expected)})"
        return None

    return validate


# Mixed case on purpose: listing order and case handling differ between
# servers, and the listing must still name every file.
_STEMS = ("Alpha", "beta", "GAMMA", "delta", "EpSiLoN")
_EXTS = ("txt", "TXT", "Dat")
LISTING_NAMES = tuple(f"{_STEMS[i % 5]}{i:03d}.{_EXTS[i % 3]}" for i in range(200))


def make_listing_dir(docroot: Path) -> None:
    directory = docroot / "dir200"
    directory.mkdir()
    for name in LISTING_NAMES:
        (directory / name).write_bytes(name.encode() * 4)


def lists_all_names(docroot: Path, status: int, body: bytes) -> str | None:
    del docroot
    if status != 200:
        return f"status {status}, expected 200"
    text = body.decode("utf-8", "replace")
    missing = [name for name in LISTING_NAMES if name not in text]
    if missing:
        return f"listing misses {len(missing)} of {len(LISTING_NAMES)} names"
    return None


# Each script twice: cgiserve and http.server run anything under /cgi-bin;
# twistd web --path runs only *.cgi files (its processors map .cgi to
# twisted.web.twcgi.CGIScript) and would serve a .sh file's source.
HELLO_SCRIPT = '#!/bin/sh\nprintf "Content-Type: text/plain\\n\\nhello\\n"\n'
ECHO_SCRIPT = (
    '#!/bin/sh\nprintf "Content-Type: application/octet-stream\\n\\n"\nexec cat\n'
)
ECHO_BODY = "post-100m.bin"
ECHO_SIZE = 100 * 1024 * 1024
# Reads exactly CONTENT_LENGTH bytes (http.server's script reads the client
# socket itself, which never ends) and answers with how many it got.
COUNT_SCRIPT = (
    '#!/bin/sh\nprintf "Content-Type: text/plain\\n\\n"\n'
    'head -c "$CONTENT_LENGTH" | wc -c\n'
)
COUNT_BODY = "upload-1g.bin"
COUNT_SIZE = 1024 * 1024 * 1024
# The body, plus one server's spool of it (lighttpd, twcgi and cgiserve
# store a body before the script starts), plus a margin.
COUNT_SPACE = 3 * COUNT_SIZE


# As root, twcgi runs scripts as root; cgiserve by default switches each to
# nobody (--cgi-user) with one more exec (setpriv). The "trivial shell CGI"
# and POST echo scenarios compare like with like: cgiserve and lighttpd run
# scripts as root too. (http.server --cgi switches to nobody in its forked
# child, which costs it no extra exec.) The "default --cgi-user" scenario
# compares the defaults: cgiserve's nobody against lighttpd running as nobody.
AS_ROOT = os.geteuid() == 0
CGISERVE_CGI_ARGS: tuple[str, ...] = ("--cgi-user", "root") if AS_ROOT else ()
# Pseudo-options read by lighttpd_command, not passed to lighttpd.
LIGHTTPD_AS_ROOT: tuple[str, ...] = ("user=root",) if AS_ROOT else ()


def make_cgi_script(stem: str, text: str) -> Callable[[Path], None]:
    def setup(docroot: Path) -> None:
        directory = docroot / "cgi-bin"
        directory.mkdir(exist_ok=True)
        for name in (f"{stem}.sh", f"{stem}.cgi"):
            (directory / name).write_text(text)
            (directory / name).chmod(0o755)

    setup.__qualname__ = f"make_cgi_script({stem!r})"
    return setup


def make_echo_files(docroot: Path) -> None:
    make_cgi_script("echo", ECHO_SCRIPT)(docroot)
    make_file(ECHO_BODY, ECHO_SIZE)(docroot)


def make_count_files(docroot: Path) -> None:
    make_cgi_script("count", COUNT_SCRIPT)(docroot)
    make_file(COUNT_BODY, COUNT_SIZE)(docroot)


def space_for_upload() -> str | None:
    free = shutil.disk_usage(tempfile.gettempdir()).free
    if free < COUNT_SPACE:
        return (
            f"{tempfile.gettempdir()} has {free / 2**30:.1f} GiB free; the 1 GiB "
            f"upload needs {COUNT_SPACE / 2**30:.0f} GiB (body, a server's spool "
            "of it, margin)"
        )
    return None


def unprivileged_available() -> str | None:
    if not AS_ROOT:
        return "needs root to start servers as another user (the harness is not root)"
    if not shutil.which("setpriv"):
        return "needs util-linux's setpriv to start servers as another user"
    try:
        pwd.getpwnam(UNPRIVILEGED)
    except KeyError:
        return f"no user {UNPRIVILEGED!r}"
    return None


def as_root_available() -> str | None:
    return None if AS_ROOT else "the harness is not root"


def exact_body(expected: bytes) -> Validator:
    def validate(docroot: Path, status: int, body: bytes) -> str | None:
        del docroot
        if status != 200:
            return f"status {status}, expected 200; body {body[:200]!r}"
        if body != expected:
            return f"body {body[:200]!r}, expected {expected!r}"
        return None

    return validate


def open_to_all(docroot: Path) -> None:
    """
    As root, cgiserve and http.server --cgi run scripts as nobody, who must
    be able to reach and read them: directories 0755, files world-readable.
    """
    docroot.chmod(0o755)
    for directory, dirnames, filenames in os.walk(docroot):
        for name in dirnames:
            (Path(directory) / name).chmod(0o755)
        for name in filenames:
            path = Path(directory) / name
            path.chmod(path.stat().st_mode | 0o444)


SCENARIOS: tuple[Scenario, ...] = (
    Scenario(
        "1 KiB file",
        "/1k.bin",
        32,
        "req/s",
        setup=make_file("1k.bin", 1024),
        validate=same_as_file("1k.bin"),
        targets={"twisted.web": 1.5, f"{WORKERS2} / {OURS}": 1.7},
    ),
    Scenario(
        "10 MiB file",
        "/10m.bin",
        4,
        "MB/s",
        setup=make_file("10m.bin", 10 * 1024 * 1024),
        validate=same_as_file("10m.bin"),
        targets={"lighttpd": 0.9, "http.server": 2.0},
    ),
    Scenario(
        "listing of 200 entries",
        "/dir200/",
        32,
        "req/s",
        setup=make_listing_dir,
        validate=lists_all_names,
    ),
    # A process per request, so CPU goes to fork/exec and piping: 4
    # connections keep both cores busy; 8 measured the same or lower.
    Scenario(
        "trivial shell CGI",
        "/cgi-bin/hello.sh",
        4,
        "req/s",
        setup=make_cgi_script("hello", HELLO_SCRIPT),
        validate=exact_body(b"hello\n"),
        kind="cgi",
        server_args={
            "http.server": ("--cgi",),
            OURS: CGISERVE_CGI_ARGS,
            "lighttpd": LIGHTTPD_AS_ROOT,
        },
        paths={"twisted.web": "/cgi-bin/hello.cgi"},
        targets={"twisted.web": 3.0, "http.server": 2.0},
    ),
    # The defaults as root: cgiserve switches every script to nobody
    # (--cgi-user's default); lighttpd, started as root, switches itself to
    # nobody (server.username) and runs scripts as that, its own user.
    Scenario(
        "trivial shell CGI, as root with the default --cgi-user",
        "/cgi-bin/hello.sh",
        4,
        "req/s",
        setup=make_cgi_script("hello", HELLO_SCRIPT),
        validate=exact_body(b"hello\n"),
        kind="cgi",
        server_args={"http.server": ("--cgi",)},
        paths={"twisted.web": "/cgi-bin/hello.cgi"},
        targets={"lighttpd": 0.75, f"{WORKERS2} / lighttpd": 1.0},
        available=as_root_available,
    ),
    # Every server started as nobody (setpriv), so nobody switches users.
    Scenario(
        "trivial shell CGI, unprivileged server",
        "/cgi-bin/hello.sh",
        4,
        "req/s",
        setup=make_cgi_script("hello", HELLO_SCRIPT),
        validate=exact_body(b"hello\n"),
        kind="cgi",
        server_args={"http.server": ("--cgi",)},
        paths={"twisted.web": "/cgi-bin/hello.cgi"},
        targets={"lighttpd": 0.8},
        run_as=UNPRIVILEGED,
        available=unprivileged_available,
    ),
    # MB/s: the body size over the time from the request head to the last
    # echoed byte (as many bytes again went the other way).
    Scenario(
        "100 MiB POST echo via CGI",
        "/cgi-bin/echo.sh",
        1,
        "MB/s",
        setup=make_echo_files,
        kind="cgi",
        server_args={
            "http.server": ("--cgi",),
            OURS: CGISERVE_CGI_ARGS,
            "lighttpd": LIGHTTPD_AS_ROOT,
        },
        method="POST",
        body_file=ECHO_BODY,
        paths={"twisted.web": "/cgi-bin/echo.cgi"},
        runner="echo",
        # Issue 12: at most 0.8x lighttpd's time, that is at least 1.25x its MB/s.
        targets={"lighttpd": 1.25},
        rss_target_mib=32.0,
    ),
    # MB/s: the body size over the time from the request head to the end of
    # the response (the count, after the script read the last byte).
    Scenario(
        "1 GiB upload to a counting CGI",
        "/cgi-bin/count.sh",
        1,
        "MB/s",
        setup=make_count_files,
        kind="cgi",
        server_args={
            "http.server": ("--cgi",),
            OURS: CGISERVE_CGI_ARGS,
            "lighttpd": LIGHTTPD_AS_ROOT,
        },
        method="POST",
        body_file=COUNT_BODY,
        paths={"twisted.web": "/cgi-bin/count.cgi"},
        runner="count",
        available=space_for_upload,
    ),
)


# --- servers -----------------------------------------------------------------


@dataclass(frozen=True)
class Launch:
    """Everything a command builder may need to know about one instance."""

    port: int
    docroot: Path
    workdir: Path
    log: Path
    extra_args: tuple[str, ...]
    # Where the server writes its access log when given a file of its own
    # (--access-log file); None: into twistd's log.
    access_log: Path | None = None
    # The user the process is started as (setpriv), None: the harness's.
    user: str | None = None


@dataclass(frozen=True)
class ServerSpec:
    name: str
    kinds: frozenset[str]
    command: Callable[[Launch], list[str]]
    # Extra environment; may prepare files in launch.workdir first.
    environment: Callable[[Launch], dict[str, str]] | None = None
    # What actually answers CGI scenarios, when it is not the server itself;
    # shown in the table's column headers.
    cgi_name: str | None = None
    # Scenario kinds whose responses end only at connection close (see
    # LoadResult.discount_eof_reads).
    close_delimited: frozenset[str] = frozenset()
    # Finds (or installs) the server's program: a reason when it cannot.
    prepare: Callable[[], str | None] | None = None
    # Whose per-scenario options (Scenario.server_args) this one takes: a
    # variant of a server runs with the same ones.
    args_of: str | None = None

    def args_for(self, scenario: Scenario) -> tuple[str, ...]:
        return tuple(scenario.server_args.get(self.args_of or self.name, ()))

    def supports(self, scenario: Scenario) -> bool:
        return scenario.kind in self.kinds

    def title(self, cgi: bool, short: bool = False) -> str:
        if not (cgi and self.cgi_name):
            return self.name
        return f"{self.name} ({self.cgi_name}{'' if short else ' for CGI'})"


def cgiserve_command(launch: Launch) -> list[str]:
    return [
        str(BINDIR / "twistd"),
        "-n",
        "--pidfile=",
        "-l",
        str(launch.log),
        "cgiserve",
        "--port",
        f"tcp:{launch.port}:interface={HOST}",
        "--directory",
        str(launch.docroot),
        *(["--access-log", str(launch.access_log)] if launch.access_log else []),
        *launch.extra_args,
    ]


def copy_checkout(destination: Path) -> None:
    """
    Copy the checkout's package and its twistd dropin to C{destination}, to
    be put on PYTHONPATH.
    """
    for package in ("twisted_cgiserve", "twisted"):
        shutil.copytree(
            REPO / package,
            destination / package,
            ignore=shutil.ignore_patterns("__pycache__", "*.pyc", "dropin.cache"),
        )


def checkout_environment(launch: Launch) -> dict[str, str]:
    """
    Benchmark the working tree rather than whatever the venv has installed,
    from a private copy: twistd writes dropin.cache next to the plugins it
    scans, and the harness must not write into the checkout.
    """
    copy = launch.workdir / "pysrc"
    if not copy.exists():
        copy_checkout(copy)
    existing = os.environ.get("PYTHONPATH")
    return {"PYTHONPATH": os.pathsep.join(filter(None, [str(copy), existing]))}


def http_server_command(launch: Launch) -> list[str]:
    return [
        sys.executable,
        "-m",
        "http.server",
        str(launch.port),
        "--bind",
        HOST,
        "--directory",
        str(launch.docroot),
        *launch.extra_args,
    ]


def twisted_web_command(launch: Launch) -> list[str]:
    return [
        str(BINDIR / "twistd"),
        "-n",
        "--pidfile=",
        "-l",
        str(launch.log),
        "web",
        # twistd web's own option for its access log (not twistd's -l).
        *(["--logfile", str(launch.access_log)] if launch.access_log else []),
        "--listen",
        f"tcp:{launch.port}:interface={HOST}",
        "--path",
        str(launch.docroot),
        *launch.extra_args,
    ]


def give_to(path: Path, user: str) -> None:
    """Make C{path} (a directory of this instance's own) belong to C{user}."""
    entry = pwd.getpwnam(user)
    os.chown(path, entry.pw_uid, entry.pw_gid)


def group_of(user: str) -> str:
    return grp.getgrgid(pwd.getpwnam(user).pw_gid).gr_name


def switches_to(launch: Launch) -> str | None:
    """
    The user lighttpd or nginx switches to once they listen: the unprivileged
    user when started as root (as Debian's packages run them as www-data),
    unless C{user=root} is among the extra options (scripts as root, to
    compare with twcgi and cgiserve --cgi-user root).
    """
    if launch.user is not None or not AS_ROOT or "user=root" in launch.extra_args:
        return None
    return UNPRIVILEGED


_programs: dict[str, str | None] = {}


def program(name: str) -> str | None:
    """The path of lighttpd or nginx, installed with apt-get like wrk."""
    if name not in _programs:
        log: list[str] = []
        _programs[name] = find_or_install(name, name, log, path=("/usr/sbin",))
        for line in log:
            progress(line)
    return _programs[name]


def lighttpd_command(launch: Launch) -> list[str]:
    """
    One lighttpd process (its default: no server.max-worker), mod_cgi running
    every file under /cgi-bin as an executable (C{cgi.assign = ("" => "")}),
    its defaults otherwise: request bodies are stored in server.upload-dirs
    (here in the instance's directory) before the script starts.
    """
    user = switches_to(launch)
    if user:
        give_to(launch.workdir, user)
    uploads = launch.workdir / "uploads"
    uploads.mkdir(exist_ok=True)
    if user:
        give_to(uploads, user)
    lines = [
        'server.modules = ("mod_accesslog", "mod_dirlisting", "mod_cgi")',
        f'server.document-root = "{launch.docroot}"',
        f'server.bind = "{HOST}"',
        f"server.port = {launch.port}",
        f'server.errorlog = "{launch.log}"',
        f'server.upload-dirs = ("{uploads}")',
        'index-file.names = ("index.html")',
        'dir-listing.activate = "enable"',
        'mimetype.assign = ("" => "application/octet-stream")',
        '$HTTP["url"] =~ "^/cgi-bin/" { cgi.assign = ("" => "") }',
    ]
    if launch.access_log:
        lines.append(f'accesslog.filename = "{launch.access_log}"')
    if user:
        lines += [
            f'server.username = "{user}"',
            f'server.groupname = "{group_of(user)}"',
        ]
    conf = launch.workdir / "lighttpd.conf"
    conf.write_text("\n".join(lines) + "\n")
    return [program("lighttpd") or "lighttpd", "-D", "-f", str(conf)]


def nginx_command(launch: Launch) -> list[str]:
    """
    One worker process (C{worker_processes 1}) besides nginx's master, which
    serves nothing; C{sendfile on} as in Debian's packaged nginx.conf.
    """
    user = switches_to(launch)
    if user:
        give_to(launch.workdir, user)
    temp = ("client_body", "proxy", "fastcgi", "uwsgi", "scgi")
    lines = [
        "daemon off;",
        "worker_processes 1;",
        f"pid {launch.workdir / 'nginx.pid'};",
        f"error_log {launch.log};",
        *([f"user {user} {group_of(user)};"] if user else []),
        "events { worker_connections 1024; }",
        "http {",
        f"  access_log {launch.access_log or 'off'};",
        "  sendfile on;",
        "  tcp_nopush on;",
        "  default_type application/octet-stream;",
        *(f"  {t}_temp_path {launch.workdir / t};" for t in temp),
        f"  server {{ listen {HOST}:{launch.port}; root {launch.docroot};"
        " autoindex on; }",
        "}",
    ]
    conf = launch.workdir / "nginx.conf"
    conf.write_text("\n".join(lines) + "\n")
    return [
        program("nginx") or "nginx",
        "-p",
        str(launch.workdir),
        "-e",
        str(launch.log),
        "-c",
        str(conf),
    ]


def prepare_program(name: str) -> Callable[[], str | None]:
    def prepare() -> str | None:
        if program(name) is None:
            return f"{name} is not installed and could not be installed"
        return None

    return prepare


SERVERS: tuple[ServerSpec, ...] = (
    # CGI is on by default under /cgi-bin.
    ServerSpec(
        OURS,
        frozenset({"static", "cgi"}),
        cgiserve_command,
        environment=checkout_environment,
    ),
    # Two worker processes on the same listening socket (--workers 2).
    ServerSpec(
        WORKERS2,
        frozenset({"static", "cgi"}),
        lambda launch: [*cgiserve_command(launch), "--workers", "2"],
        environment=checkout_environment,
        args_of=OURS,
    ),
    # The reference CGI host: one process, mod_cgi.
    ServerSpec(
        "lighttpd",
        frozenset({"static", "cgi"}),
        lighttpd_command,
        prepare=prepare_program("lighttpd"),
    ),
    # Static files only: nginx has no CGI.
    ServerSpec(
        "nginx",
        frozenset({"static"}),
        nginx_command,
        prepare=prepare_program("nginx"),
    ),
    # With --cgi (see the scenarios' server_args): CGIHTTPRequestHandler,
    # HTTP/1.0, a fork per request, the client socket as the script's stdin
    # and stdout.
    ServerSpec(
        "http.server",
        frozenset({"static", "cgi"}),
        http_server_command,
        close_delimited=frozenset({"cgi"}),
    ),
    # twistd web --path maps *.cgi to twisted.web.twcgi.CGIScript.
    ServerSpec(
        "twisted.web",
        frozenset({"static", "cgi"}),
        twisted_web_command,
        cgi_name="twcgi",
    ),
)


# --- running servers ---------------------------------------------------------


@dataclass
class Instance:
    """One started server process (a server may have several, see server_args)."""

    spec: ServerSpec
    extra_args: tuple[str, ...]
    tag: str
    user: str | None = None  # started as this user (setpriv), or the harness's
    argv: list[str] = field(default_factory=list)
    port: int = 0
    log: Path = Path()
    output: Path = Path()
    process: subprocess.Popen[bytes] | None = None
    error: str | None = None  # one line, for the table's notes
    details: str = ""  # command and log tails, for stderr and --json


def free_port() -> int:
    with socket.socket(socket.AF_INET, socket.SOCK_STREAM) as sock:
        sock.bind((HOST, 0))
        port: int = sock.getsockname()[1]
        return port


def tail(path: Path, lines: int = 15) -> str:
    try:
        text = path.read_text(errors="replace")
    except OSError:
        return ""
    return "\n".join(text.strip().splitlines()[-lines:])


def start(
    instance: Instance, docroot: Path, workdir: Path, access_log_mode: str = "file"
) -> None:
    """
    Start and wait until it accepts connections; on failure set .error.

    Each instance gets a directory of its own in C{workdir} for its config,
    logs and scratch files, owned by the user it runs as.
    """
    instance.port = free_port()
    home = workdir / instance.tag
    home.mkdir(mode=0o700)
    if instance.user:
        give_to(home, instance.user)
    instance.log = home / "server.log"
    instance.output = home / "output.log"
    access_log = home / "access.log" if access_log_mode == "file" else None
    launch = Launch(
        instance.port,
        docroot,
        home,
        instance.log,
        instance.extra_args,
        access_log,
        instance.user,
    )
    if instance.spec.prepare is not None:
        instance.error = instance.spec.prepare()
        if instance.error:
            instance.details = instance.error
            return
    instance.argv = instance.spec.command(launch)
    if instance.user:
        entry = pwd.getpwnam(instance.user)
        instance.argv = [
            "setpriv",
            f"--reuid={entry.pw_uid}",
            f"--regid={entry.pw_gid}",
            "--clear-groups",
            *instance.argv,
        ]
    env = dict(os.environ)
    if instance.spec.environment is not None:
        env.update(instance.spec.environment(launch))
    with instance.output.open("wb") as out:
        # Own session, so stopping it also stops any CGI children it spawned.
        instance.process = subprocess.Popen(
            instance.argv,
            stdin=subprocess.DEVNULL,
            stdout=out,
            stderr=subprocess.STDOUT,
            cwd=home,
            env=env,
            start_new_session=True,
        )
    deadline = time.monotonic() + STARTUP_TIMEOUT
    while True:
        code = instance.process.poll()
        if code is not None:
            error = f"exited with status {code} before accepting connections"
            break
        with (
            contextlib.suppress(OSError),
            socket.create_connection((HOST, instance.port), timeout=0.5),
        ):
            return
        if time.monotonic() > deadline:
            error = f"did not accept connections within {STARTUP_TIMEOUT:.0f} s"
            break
        time.sleep(0.1)
    logs = "\n".join(filter(None, [tail(instance.output), tail(instance.log)]))
    if logs:
        # The last line of a traceback usually says what is wrong.
        error += f" ({logs.splitlines()[-1].strip()})"
    instance.error = error
    instance.details = "command: " + shlex.join(instance.argv)
    if logs:
        instance.details += "\n" + logs
    stop(instance)


def stop(instance: Instance) -> None:
    process = instance.process
    if process is None or process.poll() is not None:
        return
    for sig, wait in ((signal.SIGTERM, STOP_TIMEOUT), (signal.SIGKILL, STOP_TIMEOUT)):
        with contextlib.suppress(ProcessLookupError):
            os.killpg(process.pid, sig)
        try:
            process.wait(timeout=wait)
            return
        except subprocess.TimeoutExpired:
            continue


@contextlib.contextmanager
def running(
    instances: Sequence[Instance],
    docroot: Path,
    workdir: Path,
    access_log_mode: str = "file",
) -> Iterator[None]:
    try:
        for instance in instances:
            progress(f"starting {instance.tag} ...")
            start(instance, docroot, workdir, access_log_mode)
            if instance.error:
                progress(f"!! {instance.tag} FAILED TO START: {instance.error}")
                progress("    " + instance.details.replace("\n", "\n    "))
                progress(f"!! continuing without {instance.tag}")
            else:
                progress(f"   {instance.tag} is up on {HOST}:{instance.port}")
        yield
    finally:
        for instance in instances:
            stop(instance)


# --- measuring ---------------------------------------------------------------


def check_response(instance: Instance, scenario: Scenario, docroot: Path) -> str | None:
    """One request by an independent client, so a fast but wrong server shows."""
    body = (docroot / scenario.body_file).read_bytes() if scenario.body_file else None
    conn = http.client.HTTPConnection(HOST, instance.port, timeout=30)
    try:
        conn.request(scenario.method, scenario.path_for(instance.spec.name), body=body)
        response = conn.getresponse()
        data = response.read()
    except (OSError, http.client.HTTPException) as e:
        return f"request failed: {e!r}"
    finally:
        conn.close()
    if scenario.validate is None:
        return None if 200 <= response.status < 300 else f"status {response.status}"
    return scenario.validate(docroot, response.status, data)


@dataclass
class Run:
    server: str
    scenario: str
    round: int  # 0 is the discarded warm-up
    value: float
    flags: list[str]
    result: LoadResult


def value_of(result: LoadResult, metric: Metric) -> float:
    if result.failed_check:
        return 0.0
    return result.req_per_s if metric == "req/s" else result.mb_per_s


@dataclass
class Cell:
    """What the table shows for one server and scenario."""

    median: float | None = None
    values: list[float] = field(default_factory=list)
    flags: list[str] = field(default_factory=list)
    bad_check: bool = False
    unavailable: str | None = None  # why there is no number at all
    # Echo runner: server RSS before its first echo, and every peak since.
    rss_base_mib: float | None = None
    rss_peaks_mib: list[float] = field(default_factory=list)
    info: list[str] = field(default_factory=list)  # notes that are not (!)

    @property
    def rss_growth_mib(self) -> float | None:
        """Highest RSS seen during any echo, over the RSS before the first."""
        if self.rss_base_mib is None or not self.rss_peaks_mib:
            return None
        return max(self.rss_peaks_mib) - self.rss_base_mib


Pair = tuple[ServerSpec, Scenario, Instance]


def measure(
    pairs: Sequence[Pair],
    generator: LoadGenerator,
    *,
    args: argparse.Namespace,
    docroot: Path,
    cells: dict[tuple[str, str], Cell],
    deadline: float,
) -> tuple[list[Run], bool]:
    """
    Round 0 is a short, discarded warm-up. Within every round each scenario
    is run on the servers back to back (A, B, C, A, B, C, ...), so slow drift
    of a noisy machine lands on all servers alike instead of on whichever
    went last. Returns the runs and whether the time limit cut them short.

    An echo scenario has no warm-up and runs one POST per round; after a
    failed echo that server is not asked again, so a hang costs one
    ECHO_TIMEOUT, not one per round.
    """
    runs: list[Run] = []
    digests: dict[Path, str] = {}
    for rnd in range(args.rounds + 1):
        seconds = WARMUP_SECONDS if rnd == 0 else args.duration
        what = "warm-up" if rnd == 0 else f"round {rnd}/{args.rounds}"
        for spec, scenario, instance in pairs:
            cell = cells[(spec.name, scenario.name)]
            echo = scenario.single
            if echo and (rnd == 0 or cell.bad_check):
                continue
            if time.monotonic() + (10 if echo else seconds) > deadline:
                progress(f"!! time limit of {args.time_limit:.0f} s reached")
                return runs, True
            body = docroot / scenario.body_file if scenario.body_file else None
            request = Request(
                HOST,
                instance.port,
                scenario.path_for(spec.name),
                scenario.method,
                body,
            )
            if echo:
                assert body is not None and instance.process is not None
                if body not in digests and scenario.runner == "echo":
                    digests[body] = sha256_of(body)
                if scenario.runner == "count":
                    result = post_count(
                        request,
                        instance.process.pid,
                        timeout=min(COUNT_TIMEOUT, deadline - time.monotonic()),
                    )
                else:
                    result = post_echo(
                        request,
                        digests[body],
                        instance.process.pid,
                        timeout=min(ECHO_TIMEOUT, deadline - time.monotonic()),
                    )
            else:
                conns = connections_for(scenario, args)
                result = generator.run(request, conns, seconds)
                if scenario.kind in spec.close_delimited and result.generator == "wrk":
                    result.discount_eof_reads()
                    note = (
                        "responses end at connection close (HTTP/1.0, no "
                        "Content-Length); wrk counts one read error for each, "
                        "not counted as errors here"
                    )
                    if result.eof_reads and note not in cell.info:
                        cell.info.append(note)
            value = value_of(result, scenario.metric)
            flags = result.flags()
            runs.append(Run(spec.name, scenario.name, rnd, value, flags, result))
            rss = ""
            if result.rss_before_mib is not None and result.rss_peak_mib is not None:
                if cell.rss_base_mib is None:
                    cell.rss_base_mib = result.rss_before_mib
                cell.rss_peaks_mib.append(result.rss_peak_mib)
                rss = (
                    f", server RSS {result.rss_before_mib:.1f} MiB before, "
                    f"{result.rss_peak_mib:.1f} MiB peak"
                )
            progress(
                f"[{what}] {scenario.name} @ {spec.name}: "
                f"{fmt(value, scenario.metric)} {scenario.metric}{rss}"
                + (f"  (!) {'; '.join(flags)}" if flags else "")
            )
            if result.failed_check:
                cell.bad_check = True
                cell.flags.append(f"round {rnd}: check failed: {result.failed_check}")
                cell.flags.extend(f"round {rnd}: {f}" for f in result.problems)
                if echo:
                    progress(f"!! not repeating {scenario.name} on {spec.name}")
            elif rnd == 0:
                cell.flags.extend(f"warm-up: {f}" for f in flags)
            else:
                cell.values.append(value)
                cell.flags.extend(f"round {rnd}: {f}" for f in flags)
    return runs, False


def connections_for(scenario: Scenario, args: argparse.Namespace) -> int:
    if scenario.single:
        return 1
    return int(args.connections or scenario.connections)


def progress(message: str) -> None:
    print(message, file=sys.stderr, flush=True)


# --- report ------------------------------------------------------------------


def fmt(value: float, metric: Metric) -> str:
    if metric == "MB/s":
        return f"{value:.1f}"
    return f"{value:.0f}"


def build_table(
    scenarios: Sequence[Scenario],
    servers: Sequence[ServerSpec],
    cells: Mapping[tuple[str, str], Cell],
) -> tuple[str, list[str]]:
    names = [s.name for s in servers]
    baselines = [n for n in RATIO_ORDER if n in names]
    baselines += [n for n in names if n not in (OURS, WORKERS2) and n not in baselines]
    ratio_cols = baselines if OURS in names else []
    specs = {s.name: s for s in servers}
    cgi = any(s.kind == "cgi" for s in scenarios)
    header = [
        "scenario",
        *(s.title(cgi) for s in servers),
        *(f"{OURS} / {specs[b].title(cgi, short=True)}" for b in ratio_cols),
    ]
    lines = [
        "| " + " | ".join(header) + " |",
        "|" + "---|" * len(header),
    ]
    notes: list[str] = []
    for scenario in scenarios:
        row = [scenario.label]
        for spec in servers:
            cell = cells.get((spec.name, scenario.name))
            if not spec.supports(scenario):
                row.append("-")
            elif cell and cell.unavailable:
                row.append(cell.unavailable)
            elif cell and cell.bad_check and not cell.values:
                row.append("failed (!)")
            elif cell is None or cell.median is None:
                row.append("n/a" + (" (!)" if cell and cell.flags else ""))
            else:
                text = fmt(cell.median, scenario.metric)
                if cell.rss_growth_mib is not None:
                    text += f"; {cell.rss_growth_mib:+.1f} MiB"
                row.append(text + (" (!)" if cell.flags else ""))
            if cell and cell.flags:
                for flag in dict.fromkeys(cell.flags):
                    notes.append(f"(!) {spec.name}, {scenario.name}: {flag}")
            if cell:
                notes += [f"{spec.name}, {scenario.name}: {i}" for i in cell.info]
        ours = cells.get((OURS, scenario.name))
        for base in ratio_cols:
            other = cells.get((base, scenario.name))
            if ours and other and (ours.bad_check or other.bad_check):
                row.append("n/a (!)")  # a ratio of wrong answers means nothing
            elif ours and other and ours.median and other.median:
                ratio = f"{ours.median / other.median:.2f}x"
                if ours.flags or other.flags:
                    ratio += " (!)"
                row.append(ratio)
            else:
                row.append("n/a")
        lines.append("| " + " | ".join(row) + " |")
        notes += rss_notes(scenario, servers, cells)
        notes += target_notes(scenario, specs, cells, cgi)
    return "\n".join(lines), notes


def rss_notes(
    scenario: Scenario,
    servers: Sequence[ServerSpec],
    cells: Mapping[tuple[str, str], Cell],
) -> list[str]:
    parts = []
    for spec in servers:
        cell = cells.get((spec.name, scenario.name))
        if cell and cell.rss_growth_mib is not None and cell.rss_base_mib is not None:
            peaks = ", ".join(f"{p:.1f}" for p in cell.rss_peaks_mib)
            parts.append(
                f"{spec.name} {cell.rss_growth_mib:+.1f} MiB "
                f"({cell.rss_base_mib:.1f} before; peaks {peaks})"
            )
    if not parts:
        return []
    return [
        f"{scenario.name}: server RSS growth (highest VmRSS of the server process "
        "itself during any round, sampled every 50 ms, minus VmRSS before the "
        "first): " + "; ".join(parts)
    ]


def target_notes(
    scenario: Scenario,
    specs: Mapping[str, ServerSpec],
    cells: Mapping[tuple[str, str], Cell],
    cgi: bool,
) -> list[str]:
    """The issue's targets, reported against what was measured."""
    notes = []
    for key, wanted in scenario.targets.items():
        who, _, base = key.rpartition(" / ")
        who = who or OURS
        ours = cells.get((who, scenario.name))
        other = cells.get((base, scenario.name))
        if base not in specs or who not in specs:
            continue
        what = f"{who} / {specs[base].title(cgi, short=True)} >= {wanted:g}x"
        if (
            ours
            and other
            and ours.median
            and other.median
            and not (ours.bad_check or other.bad_check)
        ):
            ratio = ours.median / other.median
            verdict = "met" if ratio >= wanted else "NOT met"
            notes.append(f"target, {scenario.name}: {what}: {ratio:.2f}x, {verdict}")
        else:
            notes.append(f"target, {scenario.name}: {what}: not measured")
    ours = cells.get((OURS, scenario.name))
    if scenario.rss_target_mib is not None and OURS in specs:
        what = f"{OURS} RSS growth < {scenario.rss_target_mib:g} MiB"
        growth = ours.rss_growth_mib if ours else None
        if ours and growth is not None and not ours.bad_check:
            verdict = "met" if growth < scenario.rss_target_mib else "NOT met"
            notes.append(
                f"target, {scenario.name}: {what}: {growth:+.1f} MiB, {verdict}"
            )
        else:
            notes.append(f"target, {scenario.name}: {what}: not measured")
    return notes


# --- main --------------------------------------------------------------------


def parse_args(argv: Sequence[str] | None) -> argparse.Namespace:
    parser = argparse.ArgumentParser(
        description=__doc__.strip().splitlines()[0] if __doc__ else None,
    )
    all_servers = ",".join(s.name for s in SERVERS)
    parser.add_argument(
        "--servers",
        default=all_servers,
        help=f"comma-separated subset, in table order (default {all_servers})",
    )
    parser.add_argument(
        "--scenarios",
        default="",
        help="comma-separated substrings of scenario names (default: all of them)",
    )
    parser.add_argument("--rounds", type=int, help="measured rounds (default 3)")
    parser.add_argument("--duration", type=int, help="seconds per load run (default 5)")
    parser.add_argument(
        "--connections",
        type=int,
        help="override every load scenario's connection count (default: 32; 4 for "
        "10 MiB and CGI; the POST echo is always one request)",
    )
    parser.add_argument("--json", type=Path, help="write raw per-round numbers here")
    parser.add_argument(
        "--quick", action="store_true", help="1 round of 2 s, for a smoke test"
    )
    parser.add_argument(
        "--generator",
        choices=["auto", "wrk", "python"],
        default="auto",
        help="auto (default): wrk, apt-get installed if missing and root; else python",
    )
    parser.add_argument(
        "--installed",
        action="store_true",
        help="run the cgiserve installed in the venv instead of this checkout",
    )
    parser.add_argument(
        "--access-log",
        choices=("file", "twistd"),
        default="file",
        help="file (default): each server writes its access log to a file of its "
        "own (cgiserve --access-log, twistd web --logfile), as deployed; twistd: "
        "both log every request into twistd's log, where twistd's observer "
        "costs both the same per request",
    )
    parser.add_argument(
        "--keep",
        action="store_true",
        help="keep the temp dir (docroot and server logs) and print its path",
    )
    parser.add_argument(
        "--time-limit",
        type=float,
        default=1800.0,
        help="stop measuring after this many seconds and report what was measured "
        "(default 1800)",
    )
    args = parser.parse_args(argv)
    args.rounds = args.rounds or (1 if args.quick else 3)
    args.duration = args.duration or (2 if args.quick else 5)
    if args.rounds < 1 or args.duration < 1:
        parser.error("--rounds and --duration must be at least 1")
    if args.connections is not None and args.connections < 1:
        parser.error("--connections must be at least 1")
    known = {s.name: s for s in SERVERS}
    wanted = [n.strip() for n in args.servers.split(",") if n.strip()]
    unknown = [n for n in wanted if n not in known]
    if unknown or not wanted:
        parser.error(f"--servers: unknown {unknown}; choose from {all_servers}")
    args.server_specs = [known[n] for n in dict.fromkeys(wanted)]
    filters = [f.strip().lower() for f in args.scenarios.split(",") if f.strip()]
    args.scenario_list = [
        s for s in SCENARIOS if not filters or any(f in s.name.lower() for f in filters)
    ]
    if not args.scenario_list:
        parser.error(
            "--scenarios matched nothing; names: "
            + ", ".join(s.name for s in SCENARIOS)
        )
    if args.installed:
        args.server_specs = [
            ServerSpec(s.name, s.kinds, s.command) if s.name == OURS else s
            for s in args.server_specs
        ]
    return args


def pick_generator(choice: str, workdir: Path) -> LoadGenerator:
    if choice == "python":
        return PythonGenerator("forced by --generator python")
    log: list[str] = []
    wrk = find_or_install_wrk(log)
    for line in log:
        progress(line)
    if wrk:
        return WrkGenerator(wrk, workdir)
    if choice == "wrk":
        raise SystemExit("wrk is required (--generator wrk) but not available")
    progress("falling back to the built-in Python load generator (much slower)")
    return PythonGenerator("fallback: wrk unavailable")


def twisted_version() -> str:
    try:
        import twisted  # noqa: PLC0415 - only for the report header
    except ImportError:
        return "not importable"
    return str(twisted.__version__)


InstanceKey = tuple[str, tuple[str, ...], str | None]


def instance_key(spec: ServerSpec, scenario: Scenario) -> InstanceKey:
    return (spec.name, spec.args_for(scenario), scenario.run_as)


def load_average() -> str:
    try:
        return " ".join(Path("/proc/loadavg").read_text().split()[:3])
    except OSError:
        return "unknown"


def machine() -> str:
    """nproc, the CPU model, the kernel and Python, for the report."""
    model = "unknown CPU"
    with contextlib.suppress(OSError):
        for line in Path("/proc/cpuinfo").read_text().splitlines():
            if line.startswith("model name"):
                model = line.split(":", 1)[1].strip()
                break
    return (
        f"nproc {len(os.sched_getaffinity(0))}, {model}, Linux {platform.release()}, "
        f"Python {platform.python_version()} ({sys.executable})"
    )


def main(argv: Sequence[str] | None = None) -> int:
    args = parse_args(argv)
    # Let SIGTERM unwind through the finally blocks that stop the servers.
    signal.signal(signal.SIGTERM, lambda *_: sys.exit(143))
    started = time.monotonic()
    deadline = started + args.time_limit
    specs: list[ServerSpec] = args.server_specs
    skipped: list[str] = []
    scenarios: list[Scenario] = []
    for scenario in args.scenario_list:
        why = scenario.available() if scenario.available else None
        if why:
            skipped.append(f"skipped {scenario.name}: {why}")
            progress(f"!! {skipped[-1]}")
        else:
            scenarios.append(scenario)
    load_before = load_average()
    # Each server's config, logs and scratch files are in a directory of its
    # own in workdir, owned by the user it runs as; workdir is 0711 so that
    # servers running as nobody reach theirs, but nobody can list it. The
    # docroot is a temp dir of its own, opened to all because as root
    # cgiserve and http.server --cgi run scripts as nobody.
    workdir = Path(tempfile.mkdtemp(prefix="cgiserve-bench-"))
    workdir.chmod(0o711)
    docroot = Path(tempfile.mkdtemp(prefix="cgiserve-bench-docroot-"))
    try:
        if not scenarios:
            raise SystemExit("no selected scenario can run here: " + "; ".join(skipped))
        for setup in dict.fromkeys(s.setup for s in scenarios if s.setup):
            setup(docroot)
        open_to_all(docroot)
        generator = pick_generator(args.generator, workdir)
        loads = sum(
            spec.supports(sc)
            for spec in specs
            for sc in scenarios
            if sc.runner == "load"
        )
        posts = sum(
            spec.supports(sc) for spec in specs for sc in scenarios if sc.single
        )
        progress(
            f"{loads} server/scenario pairs x ({WARMUP_SECONDS} s warm-up + "
            f"{args.rounds} x {args.duration} s): about "
            f"{loads * (WARMUP_SECONDS + args.rounds * args.duration)} s of load"
            + (
                f", plus {posts} x {args.rounds} big POSTs (at most "
                f"{COUNT_TIMEOUT:.0f} s each)"
                if posts
                else ""
            )
        )

        # One instance per (server, extra args, user) that some selected
        # scenario needs.
        instances: dict[InstanceKey, Instance] = {}
        for spec in specs:
            for scenario in scenarios:
                if spec.supports(scenario):
                    key = instance_key(spec, scenario)
                    if key not in instances:
                        name = "-".join(spec.name.replace("-", " ").split())
                        tag = (
                            name
                            if key == (spec.name, (), None)
                            else f"{name}-{len(instances)}"
                        )
                        instances[key] = Instance(spec, key[1], tag, key[2])

        cells: dict[tuple[str, str], Cell] = {}
        with running(list(instances.values()), docroot, workdir, args.access_log):
            pairs: list[Pair] = [
                (
                    spec,
                    scenario,
                    instances[instance_key(spec, scenario)],
                )
                for scenario in scenarios
                for spec in specs
                if spec.supports(scenario)
            ]
            for spec, scenario, instance in pairs:
                cell = cells.setdefault((spec.name, scenario.name), Cell())
                if instance.error:
                    cell.unavailable = "did not start"
                    continue
                if scenario.single:
                    continue  # every measured POST checks its own answer
                problem = check_response(instance, scenario, docroot)
                if problem:
                    cell.flags.append(f"response check failed: {problem}")
                    cell.bad_check = True
                    progress(
                        f"!! {spec.name} {scenario.method} "
                        f"{scenario.path_for(spec.name)}: {problem}"
                    )
            runs, truncated = measure(
                [p for p in pairs if p[2].error is None],
                generator,
                args=args,
                docroot=docroot,
                cells=cells,
                deadline=deadline,
            )
        for cell in cells.values():
            if cell.values:
                cell.median = statistics.median(cell.values)

        table, notes = build_table(scenarios, specs, cells)
        notes += [
            f"{i.tag} did not start: {i.error}" for i in instances.values() if i.error
        ]
        notes += skipped
        conn_text = ", ".join(f"{s.name} {connections_for(s, args)}" for s in scenarios)
        header = (
            f"{datetime.datetime.now().astimezone():%Y-%m-%d %H:%M %Z}"
            f" | Python {platform.python_version()}"
            f" | Twisted {twisted_version()}"
            f" | {os.cpu_count()} CPUs"
            f" | load: {generator.name} ({generator.version()})"
            f" | {args.rounds} round(s) x {args.duration} s, median"
            f" | connections: {conn_text}"
            f" | access logs: {args.access_log}"
            f"\n\nMachine: {machine()}. Load average (1, 5, 15 min) at the start "
            f"{load_before}, at the end {load_average()} (other work on the "
            "machine shares its cores with the run)."
        )
        command = shlex.join(sys.orig_argv)
        print(f"{header}\n\n`{command}`\n\n{table}")
        if notes or truncated:
            print()
            for note in notes:
                print(f"- {note}")
            if truncated:
                print(f"- time limit ({args.time_limit:.0f} s) reached: rounds missing")
        if args.json:
            write_json(
                args.json,
                header=header,
                command=command,
                instances=instances,
                runs=runs,
                cells=cells,
            )
            progress(f"raw numbers written to {args.json}")
        measured = any(c.median is not None for c in cells.values())
        broken = any(c.bad_check or c.unavailable for c in cells.values())
        ok = measured and not broken and not truncated
        return 0 if ok else 1
    finally:
        if args.keep:
            progress(f"kept server logs in {workdir} and the docroot in {docroot}")
        else:
            shutil.rmtree(workdir, ignore_errors=True)
            shutil.rmtree(docroot, ignore_errors=True)


def write_json(
    path: Path,
    *,
    header: str,
    command: str,
    instances: Mapping[InstanceKey, Instance],
    runs: Sequence[Run],
    cells: Mapping[tuple[str, str], Cell],
) -> None:
    data = {
        "header": header,
        "command": command,
        "servers": [
            {
                "name": i.spec.name,
                "extra_args": list(i.extra_args),
                "user": i.user,
                "argv": i.argv,
                "error": i.error,
                "details": i.details,
            }
            for i in instances.values()
        ],
        "runs": [
            {
                "server": r.server,
                "scenario": r.scenario,
                "round": r.round,
                "warmup": r.round == 0,
                "value": r.value,
                "flags": r.flags,
                **asdict(r.result),
                "req_per_s": r.result.req_per_s,
                "mb_per_s": r.result.mb_per_s,
            }
            for r in runs
        ],
        "medians": [
            {
                "server": server,
                "scenario": scenario,
                "median": c.median,
                "values": c.values,
                "flags": c.flags,
                "info": c.info,
                "rss_base_mib": c.rss_base_mib,
                "rss_peaks_mib": c.rss_peaks_mib,
                "rss_growth_mib": c.rss_growth_mib,
            }
            for (server, scenario), c in cells.items()
        ],
    }
    path.parent.mkdir(parents=True, exist_ok=True)
    path.write_text(json.dumps(data, indent=2) + "\n")


if __name__ == "__main__":
    sys.exit(main())
