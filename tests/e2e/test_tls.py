"""
End to end over TLS: the real C{twistd -n cgiserve} with a certificate made
for the test, spoken to by Python's ssl module and curl (HTTP/2).
"""

from __future__ import annotations

import contextlib
import os
import shutil
import signal
import ssl
import subprocess
import time
import warnings
from collections.abc import Callable, Iterator
from pathlib import Path
from typing import IO

import h2.events
import pytest
from cryptography import x509
from hpack import Encoder

from tests.support.certs import CertFiles, makeCertificate
from tests.support.h2client import H2Client
from tests.support.probes import rssOf, scriptRunning, statusField
from tests.support.raw import Conn
from tests.support.server import TWISTD, Server, makeDocroot, runTwistd, waitFor
from tests.support.shell import writeFile

pytestmark = pytest.mark.e2e

TIMEOUT = 10

CURL = shutil.which("curl")
needsCurl = pytest.mark.skipif(CURL is None, reason="curl is not installed")

ECHO_ENV = """#!/bin/sh
printf 'Content-Type: text/plain\\r\\n\\r\\n'
echo "protocol=$SERVER_PROTOCOL https=$HTTPS scheme=$REQUEST_SCHEME"
"""

ECHO_BODY = """#!/bin/sh
printf 'Content-Type: application/octet-stream\\r\\n\\r\\n'
exec cat
"""

SLOW = """#!/bin/sh
sleep 1
printf 'Content-Type: text/plain\\r\\n\\r\\n'
echo finished
"""


@pytest.fixture
def site() -> Iterator[Path]:
    """
    A document root with a file, a large file and CGI scripts, readable by
    the scripts' user.
    """
    root = makeDocroot("cgiserve-tls-")
    yield root
    shutil.rmtree(root, ignore_errors=True)


@pytest.fixture(autouse=True)
def _content(site: Path) -> None:
    docroot = site
    (docroot / "a.txt").write_bytes(b"hello over TLS\n")
    (docroot / "big.bin").write_bytes(bytes(range(256)) * 8192)
    cgi = docroot / "cgi-bin"
    cgi.mkdir(mode=0o755)
    for name, text in [("env.sh", ECHO_ENV), ("echo.sh", ECHO_BODY), ("slow.sh", SLOW)]:
        writeFile(cgi / name, text.encode())


@pytest.fixture
def cert(tmp_path: Path) -> CertFiles:
    return makeCertificate(tmp_path / "tls")


def tlsArgs(cert: CertFiles) -> list[str]:
    return [
        "--bind", "127.0.0.1", "--port", "0",
        "--tls-cert", str(cert.cert), "--tls-key", str(cert.key),
    ]  # fmt: skip


def clientContext(
    minimum: ssl.TLSVersion = ssl.TLSVersion.TLSv1_2,
    maximum: ssl.TLSVersion = ssl.TLSVersion.MAXIMUM_SUPPORTED,
) -> ssl.SSLContext:
    """
    A client context that does not check the (self-signed) certificate and
    that, for the old-version tests, is itself willing to speak TLS 1.0 and
    1.1 (OpenSSL 3 refuses them at its default security level): so a
    refusal comes from the server.
    """
    context = ssl.SSLContext(ssl.PROTOCOL_TLS_CLIENT)
    context.check_hostname = False
    context.verify_mode = ssl.CERT_NONE
    context.set_ciphers("DEFAULT:@SECLEVEL=0")
    with warnings.catch_warnings():
        warnings.simplefilter("ignore", DeprecationWarning)
        context.minimum_version = minimum
        context.maximum_version = maximum
    return context


def handshake(server: Server, context: ssl.SSLContext) -> ssl.SSLSocket:
    sock = Conn(server.port, 10, host=server.host).sock
    return context.wrap_socket(sock, server_hostname="localhost")


def peerSerial(server: Server) -> int:
    with handshake(server, clientContext()) as tls:
        der = tls.getpeercert(binary_form=True)
    assert der is not None
    return x509.load_der_x509_certificate(der).serial_number


def curl(
    *args: str, stdin: IO[bytes] | None = None
) -> subprocess.CompletedProcess[bytes]:
    assert CURL is not None
    return subprocess.run(
        [CURL, "--silent", "--show-error", "--insecure", *args],
        capture_output=True,
        timeout=30,
        stdin=stdin if stdin is not None else subprocess.DEVNULL,
    )


def fetch(url: str, *args: str) -> tuple[str, dict[str, str], bytes]:
    """
    GET C{url} with curl: the HTTP version it spoke, the response headers
    (lower-cased names) and the body.
    """
    result = curl("--include", "--write-out", "\n%{http_version}", *args, url)
    assert result.returncode == 0, result.stderr
    raw, _, version = result.stdout.rpartition(b"\n")
    head, _, body = raw.partition(b"\r\n\r\n")
    lines = head.decode("latin-1").split("\r\n")
    headers = {}
    for line in lines[1:]:
        name, _, value = line.partition(":")
        headers[name.strip().lower()] = value.strip()
    headers[":status"] = lines[0].split()[1]
    return version.decode(), headers, body


def test_tlsVersions(serve: Callable[..., Server], site: Path, cert: CertFiles) -> None:
    """
    TLS 1.0 and 1.1 are refused by the server (a protocol_version alert);
    1.2 and 1.3 are accepted; 1.2 uses a forward-secret AEAD cipher.
    """
    server = serve(site, tlsArgs(cert))
    assert server.scheme == "https"
    for old in (ssl.TLSVersion.TLSv1, ssl.TLSVersion.TLSv1_1):
        with pytest.raises(ssl.SSLError, match="ALERT_PROTOCOL_VERSION"):
            handshake(server, clientContext(old, old))
    v13 = ssl.TLSVersion.TLSv1_3
    with handshake(server, clientContext(v13, v13)) as tls:
        assert tls.version() == "TLSv1.3"
    v12 = ssl.TLSVersion.TLSv1_2
    with handshake(server, clientContext(v12, v12)) as tls:
        assert tls.version() == "TLSv1.2"
        cipher = tls.cipher()
        assert cipher is not None
        assert cipher[0].startswith("ECDHE-")
        assert "GCM" in cipher[0] or "CHACHA20" in cipher[0]
    # A TLS 1.2 client offering only CBC suites finds none it may use.
    cbc = clientContext(v12, v12)
    cbc.set_ciphers("AES128-SHA:ECDHE-ECDSA-AES128-SHA:@SECLEVEL=0")
    with pytest.raises(ssl.SSLError):
        handshake(server, cbc)
    # The server still serves after the refused handshakes.
    with handshake(server, clientContext()) as tls:
        tls.sendall(b"GET /a.txt HTTP/1.0\r\n\r\n")
        assert tls.recv(65536).startswith(b"HTTP/1.0 200 ")
    assert "Serving HTTPS on 127.0.0.1 port" in server.log()
    assert "TLS certificate from " in server.log()
    assert "Traceback" not in server.log()


@needsCurl
def test_http2StaticAndCGI(
    serve: Callable[..., Server], site: Path, cert: CertFiles
) -> None:
    """
    ALPN offers HTTP/2: a static file (small and large, and a range) and a
    CGI script are served over it, and scripts see HTTPS=on.
    """
    server = serve(site, [*tlsArgs(cert), "--cgi-user", "nobody"])
    version, headers, body = fetch(server.url("/a.txt"), "--http2")
    assert (version, headers[":status"], body) == ("2", "200", b"hello over TLS\n")
    assert headers["server"].startswith("twisted-cgiserve/")

    version, headers, body = fetch(server.url("/big.bin"), "--http2")
    assert version == "2"
    assert body == (site / "big.bin").read_bytes()

    version, headers, body = fetch(server.url("/big.bin"), "--http2", "-r", "10-19")
    assert (version, headers[":status"], body) == ("2", "206", bytes(range(10, 20)))

    version, headers, body = fetch(server.url("/cgi-bin/env.sh"), "--http2")
    assert (version, headers[":status"]) == ("2", "200")
    assert body == b"protocol=HTTP/2 https=on scheme=https\n"


@needsCurl
def test_http11Fallback(
    serve: Callable[..., Server], site: Path, cert: CertFiles
) -> None:
    """
    A client that offers only HTTP/1.1 (or no ALPN at all) gets HTTP/1.1.
    """
    server = serve(site, [*tlsArgs(cert), "--cgi-user", "nobody"])
    version, _, body = fetch(server.url("/cgi-bin/env.sh"), "--http1.1")
    assert version == "1.1"
    assert body == b"protocol=HTTP/1.1 https=on scheme=https\n"
    version, _, body = fetch(server.url("/a.txt"), "--no-alpn", "--http1.1")
    assert (version, body) == ("1.1", b"hello over TLS\n")


@needsCurl
def test_http2RequestBodies(
    serve: Callable[..., Server], site: Path, cert: CertFiles, tmp_path: Path
) -> None:
    """
    A request body reaches a script intact over HTTP/2 (spooled to disk
    past 1 MiB); one over --max-body-size is answered 413, not stored.
    """
    server = serve(
        site, [*tlsArgs(cert), "--cgi-user", "nobody", "--max-body-size", "3000000"]
    )
    payload = tmp_path / "payload"
    payload.write_bytes(bytes(range(256)) * 6000)  # 1.5 MB
    result = curl(
        "--http2", "--data-binary", f"@{payload}", server.url("/cgi-bin/echo.sh")
    )
    assert result.returncode == 0, result.stderr
    assert result.stdout == payload.read_bytes()

    payload.write_bytes(b"x" * 3_500_000)
    for framing in ([], ["-H", "Transfer-Encoding:"]):
        result = curl(
            "--http2", "--data-binary", f"@{payload}", "--write-out",
            "%{http_code} %{http_version}", "--output", "/dev/null",
            *framing, server.url("/cgi-bin/echo.sh"),
        )  # fmt: skip
        assert result.stdout == b"413 2"
    # Without a length announced, the limit applies as the body arrives.
    with payload.open("rb") as body:
        result = curl(
            "--http2", "--data-binary", "@-", "--write-out", "%{http_code}",
            "--output", "/dev/null", server.url("/cgi-bin/echo.sh"),
            stdin=body,
        )  # fmt: skip
    assert result.returncode == 0, result.stderr
    assert result.stdout == b"413"


def test_combinedPEMAndPassword(
    serve: Callable[..., Server], site: Path, tmp_path: Path
) -> None:
    """
    As with http.server: one PEM file with certificate and key needs only
    --tls-cert; an encrypted key is opened with --tls-password-file.
    """
    combined = makeCertificate(tmp_path / "one")
    server = serve(
        site,
        ["--bind", "127.0.0.1", "--port", "0", "--tls-cert", str(combined.combined)],
    )
    assert peerSerial(server) == combined.serial

    locked = makeCertificate(tmp_path / "locked", password=b"correct horse")
    password = tmp_path / "password"
    password.write_text("correct horse\n")
    server = serve(
        site,
        [*tlsArgs(locked), "--tls-password-file", str(password)],
    )
    assert peerSerial(server) == locked.serial


def test_sslAndTLSDescriptions(
    serve: Callable[..., Server], site: Path, cert: CertFiles, tmp_path: Path
) -> None:
    """
    Twisted's ssl: syntax is served with this server's settings (TLS 1.1
    refused); Twisted's own tls:DIRECTORY endpoint (certbot's layout) works
    too.
    """
    server = serve(
        site,
        [
            "--port",
            f"ssl:0:interface=127.0.0.1:privateKey={cert.key}:certKey={cert.cert}",
        ],
    )
    assert server.scheme == "https"
    assert peerSerial(server) == cert.serial
    old = ssl.TLSVersion.TLSv1_1
    with pytest.raises(ssl.SSLError, match="ALERT_PROTOCOL_VERSION"):
        handshake(server, clientContext(old, old))

    live = tmp_path / "live"
    live.mkdir()
    (live / "localhost.pem").write_bytes(cert.combined.read_bytes())
    server = serve(site, ["--port", f"tls:{live}:port=0:interface=127.0.0.1"])
    assert server.scheme == "https"
    assert peerSerial(server) == cert.serial


def test_reloadOnSIGHUP(
    serve: Callable[..., Server], site: Path, tmp_path: Path
) -> None:
    """
    SIGHUP (certbot's deploy hook) makes new connections get the renewed
    certificate while an open connection goes on undisturbed; a reload with
    broken files keeps the certificate in use and says why.
    """
    first = makeCertificate(tmp_path / "first")
    renewed = makeCertificate(tmp_path / "renewed")
    live = tmp_path / "live"
    live.mkdir()
    (live / "cert.pem").write_bytes(first.cert.read_bytes())
    (live / "key.pem").write_bytes(first.key.read_bytes())
    server = serve(
        site,
        [
            "--bind", "127.0.0.1", "--port", "0",
            "--tls-cert", str(live / "cert.pem"), "--tls-key", str(live / "key.pem"),
        ],
    )  # fmt: skip
    assert peerSerial(server) == first.serial

    with handshake(server, clientContext()) as kept:
        kept.sendall(b"GET /a.txt HTTP/1.1\r\nHost: x\r\n\r\n")
        assert kept.recv(65536).startswith(b"HTTP/1.1 200 ")

        (live / "cert.pem").write_bytes(renewed.cert.read_bytes())
        (live / "key.pem").write_bytes(renewed.key.read_bytes())
        server.process.send_signal(signal.SIGHUP)
        assert waitFor(lambda: "TLS certificate reloaded" in server.log(), TIMEOUT)
        assert peerSerial(server) == renewed.serial

        # The connection opened before the reload still works.
        kept.sendall(b"GET /a.txt HTTP/1.1\r\nHost: x\r\n\r\n")
        assert kept.recv(65536).startswith(b"HTTP/1.1 200 ")

    (live / "key.pem").write_bytes(first.key.read_bytes())
    server.process.send_signal(signal.SIGHUP)
    assert waitFor(lambda: "TLS certificate not reloaded" in server.log(), TIMEOUT)
    assert "does not match the certificate" in server.log()
    assert peerSerial(server) == renewed.serial
    assert server.process.poll() is None
    assert server.stop() == 0


@needsCurl
def test_http2GracefulShutdown(
    serve: Callable[..., Server], site: Path, cert: CertFiles
) -> None:
    """
    SIGTERM during an HTTP/2 request: the response is completed, then the
    connection is closed and the server exits 0 at once (it knows its HTTP/2
    connections as well as its HTTP/1 ones).
    """
    server = serve(site, [*tlsArgs(cert), "--cgi-user", "nobody"])
    assert CURL is not None
    client = subprocess.Popen(
        [CURL, "-sk", "--http2", server.url("/cgi-bin/slow.sh")],
        stdout=subprocess.PIPE,
    )
    assert waitFor(
        lambda: (
            "slow.sh" in server.log() or scriptRunning(site / "cgi-bin" / "slow.sh")
        ),
        timeout=5,
    )
    time.sleep(0.3)
    started = time.monotonic()
    server.process.send_signal(signal.SIGTERM)
    out, _ = client.communicate(timeout=10)
    assert out == b"finished\n"
    assert server.process.wait(10) == 0
    assert time.monotonic() - started < 3


def badArguments(case: str, cert: CertFiles, directory: Path) -> list[str]:
    """
    The TLS arguments of one mistake an admin can make.
    """
    other = makeCertificate(directory / "other")
    locked = makeCertificate(directory / "locked", password=b"pw")
    return {
        "missing": ["--tls-cert", str(directory / "missing.pem")],
        "no key": ["--tls-cert", str(cert.cert)],
        "mismatched": ["--tls-cert", str(cert.cert), "--tls-key", str(other.key)],
        "encrypted": ["--tls-cert", str(locked.cert), "--tls-key", str(locked.key)],
        "key only": ["--tls-key", str(cert.key)],
    }[case]


@pytest.mark.parametrize(
    ("case", "message"),
    [
        ("missing", "cannot read --tls-cert"),
        ("no key", "no PEM private key in --tls-cert"),
        ("mismatched", "does not match the certificate"),
        ("encrypted", "is encrypted: give its password with --tls-password-file"),
        ("key only", "--tls-key requires --tls-cert"),
    ],
)
def test_badTLSConfiguration(
    case: str,
    message: str,
    docroot: Path,
    cert: CertFiles,
    tmp_path: Path,
) -> None:
    """
    Each mistake is one line on standard error and exit status 2: no
    traceback, no server half started.
    """
    arguments = badArguments(case, cert, tmp_path)
    result = runTwistd(["--bind", "127.0.0.1", "--port", "0", *arguments], docroot)
    assert result.returncode == 2
    lines = result.stderr.strip().splitlines()
    assert len(lines) == 1, result.stderr
    assert message in lines[0]
    assert "Traceback" not in result.stdout + result.stderr


def test_unreadableKey(site: Path) -> None:
    """
    A key the server's user may not read (the usual mode of a private key)
    is named with the reason.
    """
    cert = makeCertificate(site / "tls")
    (site / "tls").chmod(0o755)
    cert.cert.chmod(0o644)
    cert.key.chmod(0o600)
    docroot = site
    command = [
        "--bind", "127.0.0.1", "--port", "0",
        "--tls-cert", str(cert.cert), "--tls-key", str(cert.key),
    ]  # fmt: skip
    setpriv = shutil.which("setpriv")
    if os.getuid() == 0:
        if setpriv is None:
            pytest.skip("running as root and setpriv is not installed")
        # Root without the capabilities that bypass file permissions, and a
        # key that belongs to another user: unreadable, while the checkout
        # (possibly in a directory only root may enter) stays runnable.
        os.chown(cert.key, 65534, 65534)
        result = subprocess.run(
            [
                setpriv, "--bounding-set=-dac_override,-dac_read_search",
                TWISTD, "-n", "--pidfile=", "cgiserve", *command,
            ],
            cwd=docroot, capture_output=True, text=True, timeout=20,
        )  # fmt: skip
    else:
        cert.key.chmod(0o000)
        result = runTwistd(command, docroot)
    assert result.returncode == 2
    assert result.stderr.strip() == (
        f"twistd cgiserve: error: cannot read --tls-key '{cert.key}': "
        "Permission denied (see 'twistd cgiserve --help')"
    )


class _Never:
    """
    An event that never comes: read until the connection closes.
    """


@needsCurl
@pytest.mark.skipif(os.getuid() != 0, reason="needs root to start, as systemd does")
def test_keyOutOfScriptsReach(serve: Callable[..., Server], site: Path) -> None:
    """
    Started as root with twistd's --uid/--gid (deployment.md's unit): the
    key, readable by root only, is read before privileges are dropped, so
    the server speaks TLS while its scripts (running as the same unprivileged
    user) cannot read the key. A later SIGHUP cannot read it either: that is
    logged, and the certificate in use stays.
    """
    private = makeDocroot("cgiserve-key-")
    try:
        private.chmod(0o700)
        cert = makeCertificate(private)
        (site / "cgi-bin" / "steal.sh").write_text(
            "#!/bin/sh\nprintf 'Content-Type: text/plain\\r\\n\\r\\n'\n"
            f"id -u\ncat {cert.key} 2>&1\n"
        )
        (site / "cgi-bin" / "steal.sh").chmod(0o755)
        server = serve(
            site,
            tlsArgs(cert),
            twistdArgs=["--uid", "65534", "--gid", "65534"],
        )
        assert peerSerial(server) == cert.serial
        # The server itself now runs as the unprivileged user, and its
        # scripts as that same user, which cannot read the key.
        assert statusField(server.process.pid, "Uid") == ["65534"] * 4
        _, headers, body = fetch(server.url("/cgi-bin/steal.sh"))
        assert headers[":status"] == "200"
        assert body.startswith(b"65534\n")
        assert b"Permission denied" in body
        assert b"PRIVATE KEY" not in body

        server.process.send_signal(signal.SIGHUP)
        assert waitFor(lambda: "TLS certificate not reloaded" in server.log(), TIMEOUT)
        assert "Permission denied" in server.log()
        assert peerSerial(server) == cert.serial
    finally:
        shutil.rmtree(private, ignore_errors=True)


@pytest.mark.skipif(
    shutil.which("h2load") is None, reason="h2load (nghttp2-client) is not installed"
)
def test_connectionsForgottenWhenClosed(
    serve: Callable[..., Server], site: Path, cert: CertFiles
) -> None:
    """
    Many HTTP/2 connections, and TLS handshakes that fail, leave nothing
    behind: at shutdown there is no connection left to wait for, so the
    server exits 0 at once.
    """
    server = serve(site, tlsArgs(cert))
    result = subprocess.run(
        ["h2load", "-n", "2000", "-c", "100", "-m", "5", server.url("/a.txt")],
        capture_output=True, text=True, timeout=60,
    )  # fmt: skip
    assert "2000 succeeded" in result.stdout, result.stdout
    old = ssl.TLSVersion.TLSv1_1
    for _ in range(20):
        with pytest.raises(ssl.SSLError):
            handshake(server, clientContext(old, old))
        with Conn(server.port, host=server.host) as plain:
            plain.send(b"GET / HTTP/1.0\r\n\r\n")
    time.sleep(0.5)
    started = time.monotonic()
    assert server.stop() == 0
    assert time.monotonic() - started < 2
    assert "Traceback" not in server.log()


@pytest.mark.parametrize("streams", [2, 10, 60])
def test_streamsResetWithTheirRequest(
    serve: Callable[..., Server], site: Path, cert: CertFiles, streams: int
) -> None:
    """
    A client (a browser leaving a page) sends requests and cancels them in
    the same packet: the connection survives, the next request on it is
    answered, and nothing goes wrong in the log.
    """
    server = serve(site, [*tlsArgs(cert), "--cgi-user", "nobody"])
    client = H2Client(server.host, server.port)
    try:
        for n in range(streams):
            client.get("/a.txt" if n % 2 else "/cgi-bin/env.sh", reset=True)
        client.flush()
        time.sleep(0.3)
        last = client.get("/a.txt")
        client.flush()
        events = client.events(until=h2.events.StreamEnded)
        data = b"".join(
            e.data
            for e in events
            if isinstance(e, h2.events.DataReceived) and e.stream_id == last
        )
        assert data == b"hello over TLS\n"
    finally:
        client.close()
    assert "Traceback" not in server.log()
    assert "Unhandled" not in server.log()


def test_http2ConnectRefusedLikeHTTP11(
    serve: Callable[..., Server], site: Path, cert: CertFiles
) -> None:
    """
    An HTTP/2 C{CONNECT} (no C{:path}) gets the 501 HTTP/1.1's C{CONNECT}
    gets, and the connection goes on serving its other streams: Twisted
    alone fails unhandled when such a stream ends and drops the connection.
    """
    server = serve(site, tlsArgs(cert))
    client = H2Client(server.host, server.port)
    try:
        client.conn.send_headers(
            1, [(":method", "CONNECT"), (":authority", "example.com:443")]
        )
        client.conn.end_stream(1)
        client.nextStream = 3
        following = client.get("/a.txt")
        client.flush()
        responses: dict[int, str] = {}
        ended: set[int] = set()
        deadline = time.monotonic() + 10
        while ended != {1, following} and time.monotonic() < deadline:
            for event in client.events(until=h2.events.StreamEnded, timeout=2):
                assert event != "EOF"
                if isinstance(event, h2.events.ResponseReceived):
                    responses[event.stream_id] = dict(event.headers)[
                        b":status"
                    ].decode()
                if isinstance(event, h2.events.StreamEnded):
                    ended.add(event.stream_id)
        assert responses == {1: "501", following: "200"}
    finally:
        client.close()
    log = server.log()
    assert "Unhandled" not in log and "Traceback" not in log, log
    assert '"CONNECT example.com:443 HTTP/2" 501' in log


def test_http2ProtocolErrorEndsConnection(
    serve: Callable[..., Server], site: Path, cert: CertFiles
) -> None:
    """
    A header block that never ends (a CONTINUATION flood) is a protocol
    error: the client gets GOAWAY and the connection is closed, and what it
    goes on sending is not kept (the server's memory stays where it was).
    """
    server = serve(site, tlsArgs(cert))
    before = rssOf(server.process.pid) // 1024
    client = H2Client(server.host, server.port)
    block = Encoder().encode(client.headers("/a.txt"))
    sent = 0
    started = time.monotonic()
    try:
        client.sock.sendall(client.frame(1, 0, 1, block))  # HEADERS, no END_HEADERS
        chunk = client.frame(9, 0, 1, b"a" * 16000)  # CONTINUATION
        with contextlib.suppress(OSError):
            while sent < 64 * 1024 * 1024 and time.monotonic() - started < 15:
                client.sock.sendall(chunk)
                sent += len(chunk)
        # GOAWAY, then the close; the client may see only the close when its
        # own writes fail first.
        events = client.events(until=h2.events.ConnectionTerminated, timeout=5)
        assert events[-1] == "EOF" or isinstance(
            events[-1], h2.events.ConnectionTerminated
        ), events
        if events[-1] != "EOF":
            # After GOAWAY the server closes the connection.
            assert client.events(until=_Never, timeout=5)[-1:] == ["EOF"]
        assert time.monotonic() - started < 15
    finally:
        client.close()
    time.sleep(0.5)
    after = rssOf(server.process.pid) // 1024
    assert after - before < 20 * 1024, (before, after, sent)
    # The server goes on serving.
    assert peerSerial(server) == cert.serial


@needsCurl
def test_idleTLSConnectionsClosedAtShutdown(
    serve: Callable[..., Server], site: Path, cert: CertFiles
) -> None:
    """
    SIGTERM with idle HTTPS connections open, HTTP/1.1 and HTTP/2: both are
    closed at once (the HTTP/2 client is told with GOAWAY), and the server
    exits 0 without waiting for them.
    """
    server = serve(site, tlsArgs(cert))
    h1 = handshake(server, clientContext())
    h1.sendall(b"GET /a.txt HTTP/1.1\r\nHost: x\r\n\r\n")
    assert h1.recv(65536).startswith(b"HTTP/1.1 200 ")
    h2client = H2Client(server.host, server.port)
    h2client.get("/a.txt")
    h2client.flush()
    assert any(
        isinstance(e, h2.events.StreamEnded)
        for e in h2client.events(until=h2.events.StreamEnded)
    )
    started = time.monotonic()
    server.process.send_signal(signal.SIGTERM)
    try:
        events = h2client.events(until=h2.events.ConnectionTerminated, timeout=5)
        assert any(isinstance(e, h2.events.ConnectionTerminated) for e in events)
        h1.settimeout(5)
        assert h1.recv(65536) == b""
        assert time.monotonic() - started < 2
        # The clients keep their sockets open and never answer TLS's
        # close_notify, as idle clients do: the server does not wait for them.
        assert server.process.wait(TIMEOUT) == 0
        assert time.monotonic() - started < 2
    finally:
        h1.close()
        h2client.close()
