"""
Load generators for bench/run.py: wrk, and a slow pure-Python stand-in.

wrk is the real instrument: it is written in C and uses one core, so on a
2-core machine the server under test gets the other one. The Python
generator exists only so the harness still produces *some* comparison on a
machine where wrk cannot be installed; its numbers are capped by the GIL and
are much lower, which is why the report always names the generator used.
"""

from __future__ import annotations

import http.client
import json
import os
import re
import shutil
import subprocess
import threading
import time
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

    def flags(self) -> list[str]:
        """Why this run's number should not be trusted, if it should not."""
        out = list(self.problems)
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


def find_or_install_wrk(log: list[str]) -> str | None:
    """
    wrk is a Debian package; installing it is worth a try as root because the
    Python fallback's numbers are far less meaningful.
    """
    found = shutil.which("wrk")
    if found:
        return found
    if not hasattr(os, "geteuid") or os.geteuid() != 0 or not shutil.which("apt-get"):
        log.append("wrk not found, and not root with apt-get: not installing it")
        return None
    env = {**os.environ, "DEBIAN_FRONTEND": "noninteractive"}
    for argv in (
        ["apt-get", "install", "-y", "wrk"],
        ["apt-get", "update"],
        ["apt-get", "install", "-y", "wrk"],
    ):
        log.append(f"wrk not found: running {' '.join(argv)}")
        try:
            proc = subprocess.run(
                argv, capture_output=True, text=True, timeout=300, env=env, check=False
            )
        except subprocess.TimeoutExpired:
            log.append(f"{' '.join(argv)} timed out")
            return None
        found = shutil.which("wrk")
        if found:
            log.append(f"installed wrk at {found}")
            return found
        if proc.returncode != 0 and argv[1] == "update":
            log.append(f"apt-get update failed: {proc.stderr.strip()[-200:]}")
            return None
    log.append("could not install wrk")
    return None
