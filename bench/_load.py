"""
Load generators for bench/run.py: wrk, and a slow pure-Python stand-in.

wrk is the real instrument: it is written in C and uses one core, so on a
2-core machine the server under test gets the other one. The Python
generator exists only so the harness still produces *some* comparison on a
machine where wrk cannot be installed; its numbers are capped by the GIL and
are much lower, which is why the report always names the generator used.
"""

from __future__ import annotations

import contextlib
import hashlib
import http.client
import json
import os
import re
import shutil
import socket
import subprocess
import threading
import time
from collections.abc import Sequence
from dataclasses import dataclass, field
from pathlib import Path

# Printed by our Lua done() hook, because wrk's human-readable summary rounds
# byte totals to two decimals of a unit, which is too coarse for MB/s.
_WRK_DONE_LUA = r"""
done = function(summary, latency, requests)
  local e = summary.errors
  io.write(string.format(
    '\nWRK_JSON {"requests": %.0f, "bytes": %.0f, "duration_us": %.0f, '
    .. '"connect": %.0f, "read": %.0f, "write": %.0f, "status": %.0f, '
    .. '"timeout": %.0f, "p50_us": %.0f, "p99_us": %.0f}\n',
    summary.requests, summary.bytes, summary.duration,
    e.connect, e.read, e.write, e.status, e.timeout,
    latency:percentile(50), latency:percentile(99)))
end
"""

_BODY_LUA = """
local f = assert(io.open({path}, "rb"))
wrk.body = f:read("*a")
f:close()
"""

_UNITS = {"B": 1, "KB": 1024, "MB": 1024**2, "GB": 1024**3, "TB": 1024**4}


@dataclass(frozen=True)
class Request:
    """What each load request sends, so POST scenarios can reuse the plumbing."""

    host: str
    port: int
    path: str
    method: str = "GET"
    body_file: Path | None = None

    @property
    def url(self) -> str:
        return f"http://{self.host}:{self.port}{self.path}"


@dataclass
class LoadResult:
    """One timed run; error counts are kept apart so the report can flag them."""

    generator: str
    requests: int
    bytes_read: int
    duration_s: float
    connect_errors: int = 0
    read_errors: int = 0
    write_errors: int = 0
    timeout_errors: int = 0
    bad_status: int = 0
    p50_ms: float | None = None
    p99_ms: float | None = None
    problems: list[str] = field(default_factory=list)
    # Read "errors" that are how wrk ends a response delimited by the
    # connection closing (HTTP/1.0 without Content-Length): one per such
    # response, moved out of read_errors by discount_eof_reads().
    eof_reads: int = 0
    # Set when the answer was wrong (see post_echo): the number is not a
    # measurement of the scenario at all.
    failed_check: str | None = None
    # Server process RSS (post_echo only), MiB: before the request and the
    # highest sample while it ran.
    rss_before_mib: float | None = None
    rss_peak_mib: float | None = None

    @property
    def req_per_s(self) -> float:
        return self.requests / self.duration_s if self.duration_s > 0 else 0.0

    @property
    def mb_per_s(self) -> float:
        """Decimal megabytes (10**6), response headers included, as wrk counts."""
        return self.bytes_read / self.duration_s / 1e6 if self.duration_s > 0 else 0.0

    @property
    def socket_errors(self) -> int:
        return (
            self.connect_errors
            + self.read_errors
            + self.write_errors
            + self.timeout_errors
        )

    def discount_eof_reads(self) -> None:
        """
        For a server whose responses end at connection close, wrk reports one
        read error per completed response (its parser sees EOF as the end of
        the body, then counts the EOF as an error). Up to one per completed
        request is that artefact; any beyond are real.
        """
        self.eof_reads = min(self.read_errors, self.requests)
        self.read_errors -= self.eof_reads

    def flags(self) -> list[str]:
        """Why this run's number should not be trusted, if it should not."""
        out = [self.failed_check] if self.failed_check else []
        out += self.problems
        if self.bad_status:
            out.append(f"{self.bad_status} non-2xx/3xx responses")
        if self.socket_errors:
            out.append(
                f"socket errors: connect {self.connect_errors}, read "
                f"{self.read_errors}, write {self.write_errors}, timeout "
                f"{self.timeout_errors}"
            )
        if self.requests == 0:
            out.append("no request completed")
        return out


def _lua_quote(text: str) -> str:
    return '"' + text.replace("\\", "\\\\").replace('"', '\\"') + '"'


def _size(number: str, unit: str) -> int:
    return round(float(number) * _UNITS[unit])


def parse_wrk_output(text: str) -> LoadResult:
    """
    Prefer the exact numbers from our Lua hook and fall back to wrk's text, so
    a wrk build without Lua support still yields (rounded) results.
    """
    match = re.search(r"^WRK_JSON (\{.*\})\s*$", text, re.MULTILINE)
    if match:
        data = json.loads(match.group(1))
        return LoadResult(
            generator="wrk",
            requests=int(data["requests"]),
            bytes_read=int(data["bytes"]),
            duration_s=data["duration_us"] / 1e6,
            connect_errors=int(data["connect"]),
            read_errors=int(data["read"]),
            write_errors=int(data["write"]),
            timeout_errors=int(data["timeout"]),
            bad_status=int(data["status"]),
            p50_ms=data["p50_us"] / 1000,
            p99_ms=data["p99_us"] / 1000,
        )
    totals = re.search(
        r"(\d+) requests in ([\d.]+)(us|ms|s|m),\s+([\d.]+)([KMGT]?B) read", text
    )
    if not totals:
        raise ValueError(f"cannot parse wrk output:\n{text}")
    seconds = (
        float(totals.group(2))
        * {"us": 1e-6, "ms": 1e-3, "s": 1.0, "m": 60.0}[totals.group(3)]
    )
    result = LoadResult(
        generator="wrk",
        requests=int(totals.group(1)),
        bytes_read=_size(totals.group(4), totals.group(5)),
        duration_s=seconds,
    )
    errors = re.search(
        r"Socket errors: connect (\d+), read (\d+), write (\d+), timeout (\d+)", text
    )
    if errors:
        result.connect_errors, result.read_errors = (
            int(errors.group(1)),
            int(errors.group(2)),
        )
        result.write_errors, result.timeout_errors = (
            int(errors.group(3)),
            int(errors.group(4)),
        )
    bad = re.search(r"Non-2xx or 3xx responses: (\d+)", text)
    if bad:
        result.bad_status = int(bad.group(1))
    return result


class WrkGenerator:
    """Runs wrk with one thread, leaving the other core to the server."""

    name = "wrk"

    def __init__(self, wrk: str, scratch: Path) -> None:
        self.wrk = wrk
        self.scratch = scratch
        self._scripts: dict[Request, Path] = {}

    def version(self) -> str:
        proc = subprocess.run(
            [self.wrk, "-v"], capture_output=True, text=True, timeout=10, check=False
        )
        lines = (proc.stdout + proc.stderr).strip().splitlines()
        return lines[0].split(" Copyright")[0].strip() if lines else "unknown"

    def _script(self, request: Request) -> Path:
        if request not in self._scripts:
            lua = f"wrk.method = {_lua_quote(request.method)}\n"
            if request.body_file is not None:
                lua += _BODY_LUA.format(path=_lua_quote(str(request.body_file)))
            lua += _WRK_DONE_LUA
            path = self.scratch / f"wrk-{len(self._scripts)}.lua"
            path.write_text(lua)
            self._scripts[request] = path
        return self._scripts[request]

    def run(self, request: Request, connections: int, duration: float) -> LoadResult:
        # wrk's own timeout (default 2 s) would count a slow 10 MiB response
        # on a noisy machine as an error; the subprocess timeout is the
        # backstop that keeps the whole benchmark bounded.
        argv = [
            self.wrk,
            "-t1",
            f"-c{connections}",
            f"-d{max(1, round(duration))}s",
            "--timeout",
            "10s",
            "--latency",
            "-s",
            str(self._script(request)),
            request.url,
        ]
        try:
            proc = subprocess.run(
                argv,
                capture_output=True,
                text=True,
                timeout=duration + 30,
                check=False,
            )
        except subprocess.TimeoutExpired:
            return LoadResult(
                "wrk", 0, 0, duration, problems=["wrk did not finish in time"]
            )
        if proc.returncode != 0:
            detail = (proc.stderr or proc.stdout).strip().splitlines()
            return LoadResult(
                "wrk",
                0,
                0,
                duration,
                problems=[f"wrk exited {proc.returncode}: {' '.join(detail[-2:])}"],
            )
        return parse_wrk_output(proc.stdout)


class PythonGenerator:
    """
    Keep-alive http.client connections, one thread each, stopped by a deadline.

    Much weaker than wrk (GIL-bound and sharing the cores with the server), so
    it is only a fallback: compare its numbers with each other, never with wrk.
    """

    def __init__(self, why: str) -> None:
        self.name = f"python ({why})"

    def version(self) -> str:
        return "built-in python generator"

    def run(self, request: Request, connections: int, duration: float) -> LoadResult:
        body = request.body_file.read_bytes() if request.body_file else None
        lock = threading.Lock()
        totals = LoadResult("python", 0, 0, duration)
        latencies: list[float] = []
        start = time.monotonic()
        deadline = start + duration

        def worker() -> None:
            conn = http.client.HTTPConnection(request.host, request.port, timeout=10)
            requests = nbytes = bad = errors = 0
            mine: list[float] = []
            while time.monotonic() < deadline:
                began = time.monotonic()
                try:
                    conn.request(request.method, request.path, body=body)
                    response = conn.getresponse()
                    data = response.read()
                except (OSError, http.client.HTTPException):
                    errors += 1
                    conn.close()
                    continue
                mine.append(time.monotonic() - began)
                requests += 1
                # Approximates what wrk counts: status line + headers + body.
                nbytes += len(data) + len(str(response.headers)) + 17
                if response.status >= 400:
                    bad += 1
            conn.close()
            with lock:
                totals.requests += requests
                totals.bytes_read += nbytes
                totals.bad_status += bad
                totals.read_errors += errors
                latencies.extend(mine)

        threads = [
            threading.Thread(target=worker, daemon=True) for _ in range(connections)
        ]
        for thread in threads:
            thread.start()
        for thread in threads:
            thread.join(timeout=max(0.0, deadline - time.monotonic()) + 15)
        if any(thread.is_alive() for thread in threads):
            totals.problems.append("some load threads did not stop in time")
        totals.duration_s = time.monotonic() - start
        if latencies:
            latencies.sort()
            totals.p50_ms = latencies[len(latencies) // 2] * 1000
            totals.p99_ms = (
                latencies[min(len(latencies) - 1, len(latencies) * 99 // 100)] * 1000
            )
        return totals


LoadGenerator = WrkGenerator | PythonGenerator


# --- POST echo: one big streamed request, RSS sampled ------------------------

_CHUNK = 1 << 20


def sha256_of(path: Path) -> str:
    digest = hashlib.sha256()
    with path.open("rb") as f:
        while chunk := f.read(_CHUNK):
            digest.update(chunk)
    return digest.hexdigest()


def rss_mib(pid: int) -> float | None:
    """VmRSS of that one process (not its children), or None once it is gone."""
    try:
        with open(f"/proc/{pid}/status", "rb") as f:
            for line in f:
                if line.startswith(b"VmRSS:"):
                    return int(line.split()[1]) / 1024  # reported in kB
    except (OSError, ValueError, IndexError):
        return None
    return None


class RssSampler:
    """Samples one process's RSS every C{interval} seconds in a thread."""

    def __init__(self, pid: int, interval: float = 0.05) -> None:
        self.pid = pid
        self.interval = interval
        self.peak: float | None = None
        self.samples = 0
        self._stop = threading.Event()
        self._thread = threading.Thread(target=self._run, daemon=True)

    def _sample(self) -> None:
        value = rss_mib(self.pid)
        if value is not None:
            self.samples += 1
            self.peak = value if self.peak is None else max(self.peak, value)

    def _run(self) -> None:
        while not self._stop.is_set():
            self._sample()
            self._stop.wait(self.interval)

    def __enter__(self) -> RssSampler:
        self._thread.start()
        return self

    def __exit__(self, *exc: object) -> None:
        self._stop.set()
        self._thread.join()
        self._sample()  # one last look, after the response ended


class _Upload:
    """
    One POST whose body goes up from a thread (C{socket.sendfile}) while the
    caller reads the response, so that a server answering before the upload
    ends (an echo, an error) is read at once, and nothing of the body is held
    in memory. C{http.client} writes the head and parses the response; the
    body goes on the raw socket, because C{HTTPConnection} drops its socket
    when the response is HTTP/1.0 and would silently reconnect and send the
    rest of the body as a new request. Everything is cut off after
    C{timeout} seconds.
    """

    def __init__(self, request: Request, timeout: float, idle_timeout: float) -> None:
        assert request.body_file is not None
        self.request = request
        self.size = request.body_file.stat().st_size
        self.timeout = timeout
        self.conn = http.client.HTTPConnection(
            request.host, request.port, timeout=idle_timeout
        )
        self.cut = threading.Event()
        self.errors: list[str] = []
        self.began = time.monotonic()
        self.sock: socket.socket | None = None
        self._watchdog: threading.Timer | None = None
        self._uploader: threading.Thread | None = None

    def start(self) -> http.client.HTTPResponse:
        """
        Connect, send the head, start the upload, and return the response
        once its head has arrived; the time runs from the request head.
        """
        self.conn.connect()
        sock = self.conn.sock
        assert isinstance(sock, socket.socket)
        self.sock = sock

        def cut_off() -> None:
            self.cut.set()
            with contextlib.suppress(OSError):
                sock.shutdown(socket.SHUT_RDWR)

        self._watchdog = threading.Timer(self.timeout, cut_off)
        self._watchdog.daemon = True
        self._watchdog.start()

        def upload() -> None:
            assert self.request.body_file is not None
            try:
                with self.request.body_file.open("rb") as body:
                    sock.sendfile(body)
            except OSError as e:
                self.errors.append(repr(e))

        self.conn.putrequest(self.request.method, self.request.path)
        self.conn.putheader("Content-Type", "application/octet-stream")
        self.conn.putheader("Content-Length", str(self.size))
        self.began = time.monotonic()
        self.conn.endheaders()
        self._uploader = threading.Thread(target=upload, daemon=True)
        self._uploader.start()
        return self.conn.getresponse()

    def join(self) -> None:
        """
        Wait for the upload to end, within what is left of the time limit.
        """
        if self._uploader is not None:
            remaining = self.began + self.timeout - time.monotonic()
            self._uploader.join(timeout=max(0.0, remaining))

    def close(self) -> None:
        if self._watchdog is not None:
            self._watchdog.cancel()
        self.conn.close()


def post_echo(
    request: Request,
    expected_sha256: str,
    pid: int,
    *,
    timeout: float,
    idle_timeout: float = 30.0,
    end_grace: float = 5.0,
) -> LoadResult:
    """
    POST C{request.body_file} to a script that echoes its input, and check
    that exactly the same bytes come back, holding neither copy in memory:
    the upload is C{socket.sendfile} in a thread while this thread reads and
    hashes the response (an echo streams back while the upload is still
    going, so sending all before reading would deadlock once the socket
    buffers fill). C{http.client} writes the request head and parses the
    response; the body goes on the raw socket, because C{HTTPConnection}
    drops its socket when the response is HTTP/1.0 and would silently
    reconnect and send the rest of the body as a new request.

    The time runs from the request head to the last expected byte. After
    that the response must end (closing chunk, Content-Length, or connection
    close) within C{end_grace} seconds, or the run is flagged. C{pid}'s RSS
    is sampled throughout. Everything is cut off after C{timeout} seconds.
    """
    upload = _Upload(request, timeout, idle_timeout)
    size = upload.size
    result = LoadResult("python post echo", 0, 0, 0.0)
    result.rss_before_mib = rss_mib(pid)
    status: int | None = None
    received = 0
    digest = hashlib.sha256()
    try:
        with RssSampler(pid) as sampler:
            try:
                response = upload.start()
                status = response.status
                result.bad_status = int(status != 200)
                while received < size:
                    chunk = response.read1(min(_CHUNK, size - received))
                    if not chunk:
                        break
                    digest.update(chunk)
                    received += len(chunk)
                result.duration_s = time.monotonic() - upload.began
                if received == size:
                    assert upload.sock is not None
                    upload.sock.settimeout(end_grace)
                    try:
                        extra = response.read(1)
                    except TimeoutError:
                        result.problems.append(
                            f"all {size} bytes came back, but the response did "
                            f"not end within {end_grace:.0f} s after them (timed "
                            "to the last byte; the harness then closed it)"
                        )
                    else:
                        if extra:
                            result.failed_check = (
                                f"more than the {size} bytes sent came back"
                            )
                upload.join()
            except (OSError, http.client.HTTPException) as e:
                result.duration_s = time.monotonic() - upload.began
                why = (
                    f"cut off at the {timeout:.0f} s limit"
                    if upload.cut.is_set()
                    else repr(e)
                )
                result.failed_check = (
                    f"{why} after {result.duration_s:.1f} s, status {status}, "
                    f"{received} of {size} bytes echoed"
                )
        result.rss_peak_mib = sampler.peak
    finally:
        upload.close()
    upload_error = upload.errors
    if upload.cut.is_set() and result.failed_check is None:
        result.failed_check = (
            f"cut off at the {timeout:.0f} s limit, status {status}, "
            f"{received} of {size} bytes echoed"
        )
    elif result.failed_check is None:
        if status != 200:
            result.failed_check = f"status {status}, expected 200"
        elif received != size:
            result.failed_check = f"response ended after {received} of {size} bytes" + (
                f" (upload: {upload_error[0]})" if upload_error else ""
            )
        elif digest.hexdigest() != expected_sha256:
            result.failed_check = "echoed bytes differ from those sent (sha256)"
        elif upload_error:
            result.failed_check = f"upload failed: {upload_error[0]}"
    result.requests = 1
    result.bytes_read = received
    return result


def post_count(
    request: Request,
    pid: int,
    *,
    timeout: float,
    idle_timeout: float = 30.0,
) -> LoadResult:
    """
    POST C{request.body_file} to a script that answers with the number of
    bytes it read, and check that number. The upload is C{socket.sendfile}
    in a thread, so a server that answers early (an error, say) is read at
    once. The time runs from the request head to the end of the response;
    C{pid}'s RSS is sampled throughout; everything is cut off after
    C{timeout} seconds.
    """
    upload = _Upload(request, timeout, idle_timeout)
    size = upload.size
    result = LoadResult("python post count", 0, 0, 0.0)
    result.rss_before_mib = rss_mib(pid)
    status: int | None = None
    body = b""
    try:
        with RssSampler(pid) as sampler:
            try:
                response = upload.start()
                status = response.status
                result.bad_status = int(status != 200)
                body = response.read(4096)
                result.duration_s = time.monotonic() - upload.began
                upload.join()
            except (OSError, http.client.HTTPException) as e:
                result.duration_s = time.monotonic() - upload.began
                why = (
                    f"cut off at the {timeout:.0f} s limit"
                    if upload.cut.is_set()
                    else repr(e)
                )
                result.failed_check = f"{why} after {result.duration_s:.1f} s"
        result.rss_peak_mib = sampler.peak
    finally:
        upload.close()
    answer = body.strip()
    if result.failed_check is None:
        if upload.cut.is_set():
            result.failed_check = f"cut off at the {timeout:.0f} s limit"
        elif status != 200:
            result.failed_check = f"status {status}, expected 200; body {body[:200]!r}"
        elif answer != str(size).encode():
            result.failed_check = f"the script counted {answer[:100]!r}, sent {size}"
        elif upload.errors:
            result.failed_check = f"upload failed: {upload.errors[0]}"
    result.requests = 1
    result.bytes_read = size
    return result


def find_or_install_wrk(log: list[str]) -> str | None:
    """
    wrk is a Debian package; installing it is worth a try as root because the
    Python fallback's numbers are far less meaningful.
    """
    return find_or_install("wrk", "wrk", log)


def find_or_install(
    program: str, package: str, log: list[str], *, path: Sequence[str] = ()
) -> str | None:
    """
    Find C{program} on PATH (or in C{path}, for daemons in /usr/sbin), or,
    as root with apt-get, install Debian's C{package} and look again. Every
    step is logged; C{None} when it is not there afterwards. Installing a
    daemon's package does not start it when /usr/sbin/policy-rc.d forbids
    (as in containers); the harness never uses the system-wide config either
    way.
    """

    def where() -> str | None:
        search = os.pathsep.join([os.environ.get("PATH", ""), *path])
        return shutil.which(program, path=search)

    found = where()
    if found:
        return found
    if not hasattr(os, "geteuid") or os.geteuid() != 0 or not shutil.which("apt-get"):
        log.append(f"{program} not found, and not root with apt-get: not installing it")
        return None
    env = {**os.environ, "DEBIAN_FRONTEND": "noninteractive"}
    for argv in (
        ["apt-get", "install", "-y", package],
        ["apt-get", "update"],
        ["apt-get", "install", "-y", package],
    ):
        log.append(f"{program} not found: running {' '.join(argv)}")
        try:
            proc = subprocess.run(
                argv, capture_output=True, text=True, timeout=300, env=env, check=False
            )
        except subprocess.TimeoutExpired:
            log.append(f"{' '.join(argv)} timed out")
            return None
        found = where()
        if found:
            log.append(f"installed {program} at {found}")
            return found
        if proc.returncode != 0 and argv[1] == "update":
            log.append(f"apt-get update failed: {proc.stderr.strip()[-200:]}")
            return None
    log.append(f"could not install {program}")
    return None
