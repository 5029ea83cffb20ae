"""
HTTPS throughput: twisted-cgiserve with --tls-cert against twistd web with
an ssl: port, same certificate, same file: wrk over HTTP/1.1 keep-alive,
and h2load over HTTP/2 when it is installed (Debian's nghttp2-client);
rounds interleaved, medians and their ratio.

(python -m http.server gains TLS only in Python 3.14; run.py's servers are
compared without TLS.)

    python bench/tls.py [--rounds 3] [--duration 5] [--connections 32]
"""

from __future__ import annotations

import argparse
import os
import re
import shutil
import socket
import statistics
import subprocess
import sys
import tempfile
import time
from pathlib import Path

from run import copy_checkout

HOST = "127.0.0.1"
BINDIR = Path(sys.executable).parent

REPO = Path(__file__).resolve().parent.parent


def free_port() -> int:
    with socket.socket() as s:
        s.bind((HOST, 0))
        port: int = s.getsockname()[1]
        return port


def wait_listening(port: int, process: subprocess.Popen[bytes]) -> None:
    deadline = time.monotonic() + 20
    while time.monotonic() < deadline:
        if process.poll() is not None:
            raise SystemExit(f"server exited with {process.returncode}")
        try:
            socket.create_connection((HOST, port), timeout=1).close()
            return
        except OSError:
            time.sleep(0.1)
    raise SystemExit("server did not start listening")


def wrk(url: str, duration: float, connections: int) -> float:
    result = subprocess.run(
        ["wrk", "-t", "2", "-c", str(connections), "-d", f"{duration}s", url],
        capture_output=True,
        text=True,
        timeout=duration + 30,
    )
    match = re.search(r"Requests/sec:\s+([\d.]+)", result.stdout)
    if result.returncode != 0 or match is None:
        raise SystemExit(f"wrk failed: {result.stdout}{result.stderr}")
    return float(match.group(1))


def h2load(url: str, duration: float, connections: int) -> float:
    result = subprocess.run(
        ["h2load", "-c", str(connections), "-m", "10", "-D", str(int(duration)), url],
        capture_output=True,
        text=True,
        timeout=duration + 30,
    )
    match = re.search(r"finished in [\d.]+\w+, ([\d.]+) req/s", result.stdout)
    failed = re.search(r"(\d+) failed", result.stdout)
    if result.returncode != 0 or match is None or (failed and failed.group(1) != "0"):
        raise SystemExit(f"h2load failed: {result.stdout}{result.stderr}")
    return float(match.group(1))


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--rounds", type=int, default=3)
    parser.add_argument("--duration", type=float, default=5)
    parser.add_argument("--connections", type=int, default=32)
    args = parser.parse_args()
    for tool in ("wrk", "openssl"):
        if shutil.which(tool) is None:
            raise SystemExit(f"{tool} is not installed")

    work = Path(tempfile.mkdtemp(prefix="cgiserve-tls-bench-"))
    try:
        docroot = work / "root"
        docroot.mkdir()
        (docroot / "1k.bin").write_bytes(b"x" * 1024)
        key, cert = work / "key.pem", work / "cert.pem"
        subprocess.run(
            ["openssl", "req", "-x509", "-newkey", "ec", "-pkeyopt",
             "ec_paramgen_curve:P-256", "-nodes", "-keyout", str(key),
             "-out", str(cert), "-days", "1", "-subj", "/CN=localhost"],
            check=True, capture_output=True,
        )  # fmt: skip
        ports = {"cgiserve": free_port(), "twisted.web": free_port()}
        twistd = str(BINDIR / "twistd")
        commands = {
            "cgiserve": [
                twistd, "-n", "--pidfile=", "-l", str(work / "cgiserve.log"),
                "cgiserve", "--directory", str(docroot), "--bind", HOST,
                "--port", str(ports["cgiserve"]), "--tls-cert", str(cert),
                "--tls-key", str(key), "--access-log", str(work / "a1.log"),
            ],
            "twisted.web": [
                twistd, "-n", "--pidfile=", "-l", str(work / "web.log"), "web",
                "--logfile", str(work / "a2.log"), "--listen",
                f"ssl:{ports['twisted.web']}:interface={HOST}"
                f":privateKey={key}:certKey={cert}",
                "--path", str(docroot),
            ],
        }  # fmt: skip
        copy_checkout(work / "pysrc")
        env = {"PYTHONPATH": str(work / "pysrc")}
        processes = {
            name: subprocess.Popen(command, cwd=work, env={**os.environ, **env})
            for name, command in commands.items()
        }
        try:
            for name, process in processes.items():
                wait_listening(ports[name], process)
            loads = {"HTTP/1.1 (wrk)": wrk}
            if shutil.which("h2load"):
                loads["HTTP/2 (h2load, 10 streams each)"] = h2load
            results: dict[tuple[str, str], list[float]] = {}
            for round_ in range(args.rounds + 1):
                for load, run in loads.items():
                    for name in processes:
                        url = f"https://{HOST}:{ports[name]}/1k.bin"
                        rate = run(url, args.duration, args.connections)
                        label = "warm-up" if round_ == 0 else f"round {round_}"
                        print(f"[{label}] {load} {name}: {rate:.0f} req/s", flush=True)
                        if round_:
                            results.setdefault((load, name), []).append(rate)
        finally:
            for process in processes.values():
                process.terminate()
                process.wait(20)
        print()
        print("| 1 KiB file over HTTPS (req/s) | cgiserve | twisted.web | ratio |")
        print("|---|---|---|---|")
        for load in loads:
            ours = statistics.median(results[load, "cgiserve"])
            theirs = statistics.median(results[load, "twisted.web"])
            print(
                f"| {load}, {args.connections} connections "
                f"| {ours:.0f} | {theirs:.0f} | {ours / theirs:.2f}x |"
            )
    finally:
        shutil.rmtree(work, ignore_errors=True)
    return 0


if __name__ == "__main__":
    sys.exit(main())
