"""
End to end: the real server behind a load balancer.

First the server alone, driven as a balancer would drive it: PROXY protocol
headers (v1 and v2, over plain TCP, TLS and C{--workers}) written by hand
on raw sockets, so that the client they name can be any address (one that
is not loopback, for C{--cgi-debug}), and forwarded headers from a trusted
and an untrusted peer, over HTTP/1.1 and HTTP/2.

Then a real haproxy (Debian's 2.6, with the shipped
C{contrib/haproxy/haproxy.cfg}) in front of two servers, each with a PROXY
port and a plain one: round robin, the client's address as scripts and the
access log see it (the client connects from 127.0.0.2, haproxy from
127.0.0.1), health checks on a static file, and one server stopped with
C{SIGTERM} while clients keep sending, without a failed request.
"""

from __future__ import annotations

import http.client
import ipaddress
import shutil
import socket
import ssl
import struct
import subprocess
import threading
import time
from collections.abc import Iterator
from pathlib import Path

import pytest

from tests.support.certs import makeCertificate
from tests.support.haproxy import CONTRIB, HAPROXY, HAProxy, configure, startHAProxy
from tests.support.server import (
    ScriptTree,
    Server,
    freePort,
    makeScriptTree,
    sharedServer,
    startServer,
    staysHealthy,
    waitFor,
)
from tests.support.shell import sh

pytestmark = pytest.mark.e2e

TIMEOUT = 10.0
CURL = shutil.which("curl")
# The client's address on this machine, distinct from haproxy's 127.0.0.1.
CLIENT = "127.0.0.2"
# What --cgi-debug's page always says of itself.
DEBUG_MARK = "<strong>--cgi-debug</strong> output"
V2 = b"\r\n\r\n\x00\r\nQUIT\n"

WHO = sh(
    """
    printf 'Content-Type: text/plain\\r\\n\\r\\n'
    printf '%s %s %s %s %s xff=%s\\n' "$BACKEND" "$REMOTE_ADDR" "${REMOTE_PORT:--}" \\
        "$REQUEST_SCHEME" "${HTTPS:-off}" "${HTTP_X_FORWARDED_FOR:--}"
    """
)
SLOW = sh(
    """
    sleep 0.2
    printf 'Content-Type: text/plain\\r\\n\\r\\n%s\\n' "$BACKEND"
    """
)
FAIL = sh("echo failing >&2\nexit 1\n")


def scripts(state: Path) -> dict[str, bytes]:
    return {
        "cgi-bin/who.sh": WHO,
        "cgi-bin/slow.sh": SLOW,
        "cgi-bin/fail.sh": FAIL,
        "health.txt": b"ok\n",
    }


@pytest.fixture(scope="module")
def tree(tmp_path_factory: pytest.TempPathFactory) -> ScriptTree:
    return makeScriptTree(
        "cgiserve-haproxy-", scripts, tmp_path_factory.mktemp("haproxy-logs")
    )


def _raw(
    port: int, data: bytes, source: str = "127.0.0.1", timeout: float = TIMEOUT
) -> bytes:
    """
    Send C{data} on a new connection and read until the server closes it.
    """
    with socket.socket() as s:
        s.settimeout(timeout)
        s.bind((source, 0))
        s.connect(("127.0.0.1", port))
        s.sendall(data)
        chunks = []
        try:
            while chunk := s.recv(65536):
                chunks.append(chunk)
        except ConnectionResetError:
            pass
        return b"".join(chunks)


def _v1(source: str, port: int) -> bytes:
    family = "TCP6" if ":" in source else "TCP4"
    destination = "::1" if ":" in source else "127.0.0.1"
    return f"PROXY {family} {source} {destination} {port} 80\r\n".encode()


def _v2(source: str, port: int) -> bytes:
    ip = ipaddress.ip_address(source)
    if ip.version == 4:
        family, body = 0x11, ip.packed + bytes([127, 0, 0, 1])
    else:
        family, body = 0x21, ip.packed + ipaddress.IPv6Address("::1").packed
    body += struct.pack("!HH", port, 80)
    return V2 + struct.pack("!BBH", 0x21, family, len(body)) + body


def _get(path: str) -> bytes:
    return f"GET {path} HTTP/1.0\r\nHost: a\r\n\r\n".encode()


def _body(response: bytes) -> str:
    return response.partition(b"\r\n\r\n")[2].decode("utf-8", "replace")


# The server alone, with --proxy-protocol


@pytest.fixture(scope="module")
def proxied(tree: ScriptTree) -> Iterator[Server]:
    """
    A server whose bare-number port expects a PROXY header, with
    --cgi-debug for loopback clients and a 1 s header timeout.
    """
    port = freePort()
    server = startServer(
        tree.root,
        [
            "--proxy-protocol", "--bind", "127.0.0.1", "--port", str(port),
            "--header-timeout", "1", "--cgi-debug", "--access-log", "-",
            "--cgi-set-env", "BACKEND=alone",
        ],
        tree.logs,
    )  # fmt: skip
    with sharedServer(server):
        yield server


@pytest.mark.parametrize("version", [_v1, _v2])
@pytest.mark.parametrize(
    ("source", "port"), [("203.0.113.9", 4711), ("2001:db8::7", 65535)]
)
def test_proxyHeader(proxied: Server, version: object, source: str, port: int) -> None:
    """
    The client a PROXY header names, v1 or v2, IPv4 or IPv6, is
    C{REMOTE_ADDR} and C{REMOTE_PORT}, and the access log's client.
    """
    with staysHealthy(proxied):
        header = version(source, port)  # type: ignore[operator]
        query = f"{version.__name__}-{source}"  # type: ignore[attr-defined]
        response = _raw(proxied.port, header + _get(f"/cgi-bin/who.sh?{query}"))
        assert _body(response) == f"alone {source} {port} http off xff=-\n"
        [line] = proxied.logLines(f"GET /cgi-bin/who.sh?{query} ", "200")
        assert line.startswith(f"{source} - - [")


def test_proxyCGIDebugSeesTheClient(proxied: Server) -> None:
    """
    --cgi-debug's loopback check sees the client the header names: a
    loopback client behind the proxy gets the page, another does not,
    whatever the proxy's own address.
    """
    with staysHealthy(proxied):
        local = _raw(proxied.port, _v1("127.0.0.1", 1000) + _get("/cgi-bin/fail.sh"))
        assert local.startswith(b"HTTP/1.0 502 ")
        assert DEBUG_MARK in _body(local)
        remote = _raw(proxied.port, _v2("198.51.100.3", 1) + _get("/cgi-bin/fail.sh"))
        assert remote.startswith(b"HTTP/1.0 502 ")
        assert DEBUG_MARK not in _body(remote)


@pytest.mark.parametrize(
    "data", [_get("/health.txt"), b"PROXY TCP4 nonsense\r\n" + _get("/")]
)
def test_proxyGarbageClosed(proxied: Server, data: bytes) -> None:
    """
    A connection that does not start with a PROXY header (a client talking
    to the port directly) is closed at once, unanswered.
    """
    with staysHealthy(proxied):
        start = time.monotonic()
        assert _raw(proxied.port, data) == b""
        assert time.monotonic() - start < 0.5


@pytest.mark.parametrize("data", [b"", b"PROXY TCP4 203.0.113.9 127.0"])
def test_proxySilenceClosed(proxied: Server, data: bytes) -> None:
    """
    A peer that sends nothing, or half a header, is closed when the header
    timeout passes: it holds no descriptor for longer.
    """
    with staysHealthy(proxied):
        start = time.monotonic()
        assert _raw(proxied.port, data) == b""
        assert 0.9 < time.monotonic() - start < 3


def test_proxyBeforeTLS(tree: ScriptTree, tmp_path: Path) -> None:
    """
    With --tls-cert, the PROXY header comes first, then the TLS handshake;
    the script sees the header's client and HTTPS.
    """
    cert = makeCertificate(tmp_path / "tls")
    port = freePort()
    server = startServer(
        tree.root,
        [
            "--proxy-protocol", "--bind", "127.0.0.1", "--port", str(port),
            "--tls-cert", str(cert.cert), "--tls-key", str(cert.key),
            "--cgi-set-env", "BACKEND=tls",
        ],
        tree.logs,
    )  # fmt: skip
    with sharedServer(server):
        context = ssl.create_default_context(cafile=str(cert.cert))
        with socket.create_connection(("127.0.0.1", port), TIMEOUT) as raw:
            raw.sendall(_v2("203.0.113.10", 4000))
            with context.wrap_socket(raw, server_hostname="localhost") as s:
                s.sendall(_get("/cgi-bin/who.sh"))
                response = b""
                while chunk := s.recv(65536):
                    response += chunk
        assert _body(response) == "tls 203.0.113.10 4000 https on xff=-\n"


def test_proxyWithWorkers(tree: ScriptTree) -> None:
    """
    With --workers, each worker wraps the socket it adopts the same way.
    """
    port = freePort()
    server = startServer(
        tree.root,
        [
            "--proxy-protocol", "--bind", "127.0.0.1", "--port", str(port),
            "--workers", "2", "--cgi-set-env", "BACKEND=workers",
        ],
        tree.logs,
    )  # fmt: skip
    with sharedServer(server):
        for n in range(4):
            response = _raw(
                port, _v1("203.0.113.11", 5000 + n) + _get("/cgi-bin/who.sh")
            )
            assert (
                _body(response) == f"workers 203.0.113.11 {5000 + n} http off xff=-\n"
            )
        assert _raw(port, _get("/health.txt")) == b""


def test_haproxyDescriptionAndTrustedProxy(tree: ScriptTree) -> None:
    """
    A C{haproxy:} description (Twisted's own PROXY wrapper) still works,
    and --trusted-proxy then judges the peer the PROXY header names: a
    trusted one's X-Forwarded-For is believed, another's is not.
    """
    server = startServer(
        tree.root,
        [
            "--port", "haproxy:tcp:0:interface=127.0.0.1",
            "--trusted-proxy", "10.0.0.0/8", "--cgi-set-env", "BACKEND=described",
        ],
        tree.logs,
    )  # fmt: skip
    with sharedServer(server):
        forwarded = b"X-Forwarded-For: 198.51.100.30\r\n\r\n"
        request = _get("/cgi-bin/who.sh")[:-2] + forwarded
        trusted = _raw(server.port, _v2("10.1.1.1", 9) + request)
        assert _body(trusted) == (
            "described 198.51.100.30 - http off xff=198.51.100.30\n"
        )
        untrusted = _raw(server.port, _v1("192.0.2.99", 9) + request)
        assert _body(untrusted) == "described 192.0.2.99 9 http off xff=198.51.100.30\n"


# The server alone, with --trusted-proxy


@pytest.fixture(scope="module")
def trusting(
    tree: ScriptTree, tmp_path_factory: pytest.TempPathFactory
) -> Iterator[Server]:
    """
    A TLS server that trusts 127.0.0.1's X-Forwarded-For, with --cgi-debug
    for loopback clients.
    """
    cert = makeCertificate(tmp_path_factory.mktemp("tls"))
    tls = f"ssl:0:interface=127.0.0.1:privateKey={cert.key}:certKey={cert.cert}"
    server = startServer(
        tree.root,
        [
            "--port", tls,
            "--trusted-proxy", "127.0.0.1", "--trusted-proxy", "10.0.0.0/8",
            "--cgi-debug", "--access-log", "-", "--cgi-set-env", "BACKEND=trusting",
        ],
        tree.logs,
    )  # fmt: skip
    server.cafile = cert.cert  # type: ignore[attr-defined]
    with sharedServer(server):
        yield server


def _curl(server: Server, path: str, *args: str) -> str:
    assert CURL is not None
    result = subprocess.run(
        [
            CURL, "-sS", "--max-time", str(TIMEOUT), "--cacert",
            str(server.cafile),  # type: ignore[attr-defined]
            *args, server.url(path),
        ],
        capture_output=True,
        text=True,
        check=True,
    )  # fmt: skip
    out: str = result.stdout
    return out


@pytest.mark.skipif(CURL is None, reason="curl is not installed")
@pytest.mark.parametrize("version", ["--http1.1", "--http2"])
def test_trustedProxyNamesTheClient(trusting: Server, version: str) -> None:
    """
    From a trusted peer, over HTTP/1.1 and HTTP/2: the rightmost untrusted
    X-Forwarded-For hop is C{REMOTE_ADDR} (no C{REMOTE_PORT}: the proxy's
    would be wrong), X-Forwarded-Proto the scheme, and the access log's
    client; what the client claimed further left changes nothing.
    """
    with staysHealthy(trusting):
        out = _curl(
            trusting,
            f"/cgi-bin/who.sh?{version}",
            version,
            "-H", "X-Forwarded-For: 127.0.0.9, 198.51.100.20, 10.1.2.3",
            "-H", "X-Forwarded-Proto: http",
        )  # fmt: skip
        assert out == (
            "trusting 198.51.100.20 - http off xff=127.0.0.9, 198.51.100.20, 10.1.2.3\n"
        )
        [line] = trusting.logLines(f"GET /cgi-bin/who.sh?{version} ")
        assert line.startswith("198.51.100.20 - - [")


@pytest.mark.skipif(CURL is None, reason="curl is not installed")
def test_trustedProxyCGIDebug(trusting: Server) -> None:
    """
    --cgi-debug's loopback check sees the forwarded client: a request
    forwarded for a remote client gets the bare error page.
    """
    with staysHealthy(trusting):
        remote = _curl(
            trusting, "/cgi-bin/fail.sh", "-H", "X-Forwarded-For: 198.51.100.21"
        )
        assert DEBUG_MARK not in remote
        local = _curl(trusting, "/cgi-bin/fail.sh", "-H", "X-Forwarded-For: 127.0.0.1")
        assert DEBUG_MARK in local


@pytest.mark.skipif(CURL is None, reason="curl is not installed")
def test_untrustedPeerChangesNothing(trusting: Server) -> None:
    """
    From a peer that is not trusted (127.0.0.2), the headers reach the
    script as they were sent and change nothing else.
    """
    with staysHealthy(trusting):
        out = _curl(
            trusting, "/cgi-bin/who.sh?untrusted", "--interface", CLIENT,
            "-H", "X-Forwarded-For: 127.0.0.1", "-H", "X-Forwarded-Proto: http",
        )  # fmt: skip
        _, addr, port, scheme, https, xff = out.split()
        assert (addr, scheme, https, xff) == (CLIENT, "https", "on", "xff=127.0.0.1")
        assert port != "-"
        [line] = trusting.logLines("GET /cgi-bin/who.sh?untrusted ")
        assert line.startswith(f"{CLIENT} - - [")


# Behind a real haproxy

requiresHAProxy = pytest.mark.skipif(
    HAPROXY is None, reason="haproxy is not installed (apt-get install haproxy)"
)


class _Farm:
    """
    haproxy in front of two servers, each with a PROXY port and a plain
    port trusting 127.0.0.1's forwarded headers.
    """

    def __init__(self, tree: ScriptTree, directory: Path) -> None:
        self.servers: dict[str, Server] = {}
        replacements = {}
        self.proxyFront, self.httpFront = freePort(), freePort()
        for name, address in (("web1", "192.0.2.11"), ("web2", "192.0.2.12")):
            proxyPort, httpPort = freePort(), freePort()
            self.servers[name] = startServer(
                tree.root,
                [
                    "--proxy-protocol", "--bind", "127.0.0.1", "--port", str(proxyPort),
                    "--port", f"tcp:{httpPort}:interface=127.0.0.1",
                    "--trusted-proxy", "127.0.0.1", "--access-log", "-",
                    "--cgi-set-env", f"BACKEND={name}",
                ],
                tree.logs,
            )  # fmt: skip
            replacements[f"{address}:8000"] = f"127.0.0.1:{proxyPort}"
            replacements[f"{address}:8001"] = f"127.0.0.1:{httpPort}"
        replacements["bind :80\n"] = f"bind 127.0.0.1:{self.proxyFront}\n"
        replacements["bind :8080\n"] = f"bind 127.0.0.1:{self.httpFront}\n"
        config = configure(CONTRIB.read_text(), replacements)
        self.haproxy: HAProxy = startHAProxy(
            config, directory, [self.proxyFront, self.httpFront]
        )

    def get(
        self, front: int, path: str, headers: dict[str, str] | None = None
    ) -> tuple[int, str, int]:
        """
        GET C{path} through a frontend from L{CLIENT}: the status, the
        body, and the client's own port.
        """
        connection = http.client.HTTPConnection(
            "127.0.0.1", front, timeout=TIMEOUT, source_address=(CLIENT, 0)
        )
        try:
            connection.request("GET", path, headers=headers or {})
            response = connection.getresponse()
            port: int = connection.sock.getsockname()[1]
            return response.status, response.read().decode(), port
        finally:
            connection.close()

    def stop(self) -> None:
        self.haproxy.stop()
        for server in self.servers.values():
            server.stop()


@pytest.fixture(scope="module")
def farm(tree: ScriptTree, tmp_path_factory: pytest.TempPathFactory) -> Iterator[_Farm]:
    if HAPROXY is None:
        pytest.skip("haproxy is not installed (apt-get install haproxy)")
    farm = _Farm(tree, tmp_path_factory.mktemp("haproxy"))
    try:
        yield farm
    finally:
        farm.stop()


@requiresHAProxy
def test_roundRobinProxyV2(farm: _Farm) -> None:
    """
    Through the PROXY v2 frontend, requests alternate between the servers,
    and each script sees the client's own address and port.
    """
    backends = []
    for _ in range(4):
        status, body, port = farm.get(farm.proxyFront, "/cgi-bin/who.sh?v2")
        assert status == 200
        backend, addr, remotePort, scheme, https, _xff = body.split()
        assert (addr, remotePort, scheme, https) == (CLIENT, str(port), "http", "off")
        backends.append(backend)
    assert sorted(backends) == ["web1", "web1", "web2", "web2"]
    assert backends[0] != backends[1]
    for server in farm.servers.values():
        lines = server.logLines("GET /cgi-bin/who.sh?v2 ")
        assert lines and all(line.startswith(f"{CLIENT} - - [") for line in lines)


@requiresHAProxy
def test_roundRobinForwardedFor(farm: _Farm) -> None:
    """
    Through the plain HTTP frontend (X-Forwarded-For, X-Forwarded-Proto
    set by haproxy), requests alternate, and each script sees the client's
    address; an address the client put in X-Forwarded-For itself, and its
    own X-Forwarded-Proto, are not believed.
    """
    backends = []
    spoof = {"X-Forwarded-For": "127.0.0.1", "X-Forwarded-Proto": "https"}
    for _ in range(4):
        status, body, _ = farm.get(farm.httpFront, "/cgi-bin/who.sh?xff", spoof)
        assert status == 200
        backend, addr, remotePort, scheme, https, xff = body.split(" ", 5)
        assert (addr, remotePort, scheme, https) == (CLIENT, "-", "http", "off")
        assert xff == f"xff=127.0.0.1, {CLIENT}\n"
        backends.append(backend)
    assert sorted(backends) == ["web1", "web1", "web2", "web2"]
    for server in farm.servers.values():
        lines = server.logLines("GET /cgi-bin/who.sh?xff ")
        assert lines and all(line.startswith(f"{CLIENT} - - [") for line in lines)


@requiresHAProxy
def test_healthChecks(farm: _Farm) -> None:
    """
    haproxy's health checks fetch the static file from both servers, on
    both ports (the PROXY port's checks start with a header too).
    """
    # "UP 1/2" while the first checks run.
    assert waitFor(
        lambda: set(farm.haproxy.serverStatus().values()) == {"UP"}, TIMEOUT
    ), farm.haproxy.serverStatus()
    for server in farm.servers.values():
        assert server.logLines('"GET /health.txt HTTP/1.1" 200')


@requiresHAProxy
def test_gracefulStopOfOneServer(farm: _Farm) -> None:
    """
    One server stopped with SIGTERM while four clients keep sending through
    both frontends: no request fails; haproxy marks the server down, and
    every request then goes to the other. (Last in the module: it stops a
    server for good.)
    """
    stop = threading.Event()
    results: list[object] = []

    def client(front: int) -> None:
        while not stop.is_set():
            try:
                status, body, _ = farm.get(front, "/cgi-bin/slow.sh")
                results.append(status if status != 200 else body.strip())
            except Exception as e:
                results.append(e)

    threads = [
        threading.Thread(target=client, args=(front,))
        for front in (farm.proxyFront, farm.httpFront) * 2
    ]
    for thread in threads:
        thread.start()
    try:
        time.sleep(1.0)
        assert farm.servers["web2"].stop() == 0
        time.sleep(1.5)
    finally:
        stop.set()
        for thread in threads:
            thread.join(TIMEOUT)
    failed = [r for r in results if r not in ("web1", "web2")]
    assert not failed, failed
    assert results.count("web2") > 0 and results.count("web1") > results.count("web2")
    # Requests in progress when the signal came were answered, not cut.
    log = farm.servers["web2"].log().partition("Received SIGTERM; stopping.")[2]
    assert '"GET /cgi-bin/slow.sh HTTP/1.1" 200' in log, log

    def web2Down() -> bool:
        # Both of web2's entries (PROXY and HTTP frontends): each is marked
        # down after its own two failed checks, a second or so apart.
        states = farm.haproxy.serverStatus().items()
        down = [key for key, state in states if key[1] == "web2" and "DOWN" in state]
        return len(down) == 2

    assert waitFor(web2Down, timeout=TIMEOUT), farm.haproxy.serverStatus()
    for front in (farm.proxyFront, farm.httpFront):
        for _ in range(3):
            status, body, _ = farm.get(front, "/cgi-bin/who.sh")
            assert (status, body.split()[0]) == (200, "web1")
