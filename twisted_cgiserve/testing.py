# -*- test-case-name: tests.test_testing -*-
"""
Serving a directory to a test suite: what replaces an C{HTTPServer(('localhost',
0), CGIHTTPRequestHandler)} run in a thread.

  - L{serve}, for code without a reactor (C{unittest}, plain pytest): the
    real server in a subprocess, on an ephemeral loopback port.
  - The C{cgiserve} pytest fixture (installed with the package), which
    calls L{serve} and stops the server at teardown.
  - L{listen}, for Twisted code (trial, pytest-twisted): the server's
    resource on an ephemeral loopback port of the running reactor.

A subprocess is the only sound way to run CGI beside threads: http.server
forked inside a threaded process, the reason it was removed. The server
says which port it got ("Serving HTTP on 127.0.0.1 port N"), so nothing is
guessed, no port is picked and hoped free, and nothing sleeps and retries.

See docs/testing.md.
"""

from __future__ import annotations

import contextlib
import http.client
import os
import re
import signal
import ssl
import subprocess
import sys
import threading
from collections.abc import Iterator, Mapping
from dataclasses import dataclass, field
from typing import Any, cast

from twisted.internet.defer import Deferred, maybeDeferred

__all__ = [
    "ListeningServer",
    "RunningServer",
    "ServerStartError",
    "commandLine",
    "listen",
    "serve",
]

_SERVING = re.compile(r"^Serving (HTTPS?) on (\S+) port (\d+) ", re.MULTILINE)

# Options serve() sets itself: where to listen and what to serve.
_RESERVED = frozenset({"port", "bind", "directory", "path"})

# What a keyword may be: an option's name, with _ for -.
_OPTION_NAME = re.compile(r"[a-z][a-z0-9_]*\Z")

# How long the server may take to stop after SIGTERM before it is killed:
# the shutdown grace period of a test server (requests in flight, scripts).
_STOP_TIMEOUT = 10.0


class ServerStartError(RuntimeError):
    """
    The server did not start: a bad option, a directory that does not
    exist, a port that cannot be bound, or no answer in time.

    @ivar log: Everything the server wrote, to standard output and error.
    """

    def __init__(self, reason: str, log: str) -> None:
        super().__init__(f"{reason}; the server wrote:\n{log}")
        self.log = log


def commandLine(directory: str | os.PathLike[str], /, **options: Any) -> list[str]:
    """
    The command L{serve} runs: C{python -m twisted_cgiserve} on port 0 of
    127.0.0.1, serving C{directory}, with C{options} as command-line
    options.

    Each keyword is an option with C{_} for C{-}: C{True} gives the flag
    (C{cgi=True}: C{--cgi}), C{False} or L{None} leaves it out, a list or
    tuple repeats it (C{cgi_dir=["/cgi-bin", "/app"]}), anything else is its
    value (C{cgi_timeout=5}: C{--cgi-timeout=5}). C{header} takes
    C{"Name: value"} strings.

    Values are joined to their option (C{--name=value}), so that a value is
    never read as an option or an option's value as the port.

    @raise ValueError: An option names where to listen or what to serve,
        which are L{serve}'s to choose, or abbreviates one of them (the
        parser takes any unambiguous prefix: C{b} is C{--bind}), or is not
        an option's name.
    """
    command = [
        sys.executable,
        "-m",
        "twisted_cgiserve",
        "--bind",
        "127.0.0.1",
        "--directory",
        os.fspath(directory),
    ]
    for name, value in options.items():
        if not _OPTION_NAME.match(name):
            raise ValueError(f"{name!r} is not the name of an option")
        option = "--" + name.replace("_", "-")
        if any(reserved.startswith(option[2:]) for reserved in _RESERVED):
            raise ValueError(f"{option} is chosen by serve(); it cannot be given")
        if value is None or value is False:
            continue
        if value is True:
            command.append(option)
        elif isinstance(value, list | tuple):
            command.extend(f"{option}={item}" for item in value)
        else:
            command.append(f"{option}={value}")
    # The port last, as http.server takes it: 0 is any free port.
    command.append("0")
    return command


@dataclass
class RunningServer:
    """
    A server L{serve} started.

    @ivar url: Where it serves, without a trailing slash:
        C{server.url + "/cgi-bin/test.py"}.
    @ivar host: C{127.0.0.1}.
    @ivar port: The port it listens on.
    @ivar scheme: C{http}, or C{https} with C{tls_cert}.
    @ivar process: The server's process.
    """

    url: str
    host: str
    port: int
    scheme: str
    process: subprocess.Popen[bytes]
    _output: _Output = field(repr=False)

    def log(self) -> str:
        """
        Everything the server has written so far: the "Serving" line on
        standard output, then one line per request and the server's
        messages (a script's standard error among them) on standard error.
        """
        return self._output.text()

    def stop(self, timeout: float = _STOP_TIMEOUT) -> int:
        """
        Stop the server as Ctrl-C would: requests in progress finish,
        scripts are ended. Killed if it has not stopped after C{timeout}
        seconds. Stopping a stopped server does nothing.

        @return: Its exit status (0 when stopped in order).
        """
        if self.process.poll() is None:
            self.process.send_signal(signal.SIGTERM)
            try:
                self.process.wait(timeout)
            except subprocess.TimeoutExpired:
                self.process.kill()
                self.process.wait()
        self._output.close()
        return self.process.returncode


class _Output:
    """
    A process's output, read by a thread as it comes (the server never
    blocks on a full pipe), until the "Serving" line is seen.
    """

    def __init__(self, process: subprocess.Popen[bytes]) -> None:
        assert process.stdout is not None
        self._stream = process.stdout
        self._chunks: list[bytes] = []
        self._lock = threading.Lock()
        self.announced = threading.Event()
        self.serving: re.Match[str] | None = None
        self.ended = False
        self._thread = threading.Thread(
            target=self._read, name="twisted_cgiserve.testing output", daemon=True
        )
        self._thread.start()

    def _read(self) -> None:
        for line in iter(self._stream.readline, b""):
            with self._lock:
                self._chunks.append(line)
            if self.serving is None:
                self.serving = _SERVING.search(line.decode("utf-8", "replace"))
                if self.serving is not None:
                    self.announced.set()
        # The end of the output: the server is exiting.
        self.ended = True
        self.announced.set()

    def text(self) -> str:
        with self._lock:
            return b"".join(self._chunks).decode("utf-8", "replace")

    def close(self) -> None:
        self._thread.join(5)
        with contextlib.suppress(OSError):
            self._stream.close()


def _answers(scheme: str, host: str, port: int, timeout: float) -> None:
    """
    One request, to be sure the server answers before the test starts.

    @raise OSError: It did not answer.
    """
    connection: http.client.HTTPConnection
    if scheme == "https":
        context = ssl.create_default_context()
        context.check_hostname = False
        context.verify_mode = ssl.CERT_NONE
        connection = http.client.HTTPSConnection(
            host, port, timeout=timeout, context=context
        )
    else:
        connection = http.client.HTTPConnection(host, port, timeout=timeout)
    try:
        connection.request("HEAD", "/")
        connection.getresponse().read()
    except http.client.HTTPException as e:
        raise OSError(str(e)) from e
    finally:
        connection.close()


@contextlib.contextmanager
def serve(
    directory: str | os.PathLike[str],
    /,
    *,
    env: Mapping[str, str] | None = None,
    timeout: float = 30.0,
    **options: Any,
) -> Iterator[RunningServer]:
    """
    Run the real server on a free port of 127.0.0.1 while the block runs,
    serving C{directory} as C{python -m twisted_cgiserve} does::

        with serve(root, cgi=True) as server:
            urlopen(server.url + "/cgi-bin/hello.py")

    @param options: Command-line options, as L{commandLine} spells them:
        C{cgi=True} runs scripts (off by default, as on the command line),
        C{cgi_timeout=5} is C{--cgi-timeout 5}.
    @param env: The server's environment (default: this process's). With
        C{cgi_inherit_env=True}, scripts get it too.
    @param timeout: Seconds the server has to start and answer.

    @raise ServerStartError: The server did not start; the exception
        carries its output.
    @raise ValueError: An option is one C{serve} chooses itself.
    """
    command = commandLine(directory, **options)
    process = subprocess.Popen(
        command,
        stdin=subprocess.DEVNULL,
        stdout=subprocess.PIPE,
        stderr=subprocess.STDOUT,
        env=None if env is None else dict(env),
        # Not ended by a Ctrl-C meant for the test run: stopped below.
        start_new_session=True,
    )
    output = _Output(process)
    server: RunningServer | None = None
    try:
        output.announced.wait(timeout)
        match = output.serving
        if match is None:
            if output.ended:
                # Its output ended: it is exiting, or has.
                with contextlib.suppress(subprocess.TimeoutExpired):
                    process.wait(timeout)
            reason = (
                f"the server exited with status {process.returncode}"
                if process.poll() is not None
                else f"the server did not say where it listens within {timeout} s"
            )
            raise ServerStartError(reason, output.text())
        scheme, host, port = match[1].lower(), match[2], int(match[3])
        server = RunningServer(
            url=f"{scheme}://{host}:{port}",
            host=host,
            port=port,
            scheme=scheme,
            process=process,
            _output=output,
        )
        try:
            _answers(scheme, host, port, timeout)
        except OSError as e:
            raise ServerStartError(
                f"the server does not answer: {e}", output.text()
            ) from None
        yield server
    finally:
        if server is None:
            server = RunningServer("", "", 0, "", process, output)
        server.stop()


@dataclass
class ListeningServer:
    """
    A server L{listen} started in the running reactor.

    @ivar port: The port number.
    @ivar url: Where it serves, without a trailing slash.
    @ivar listeningPort: Twisted's port.
    @ivar site: The site serving it.
    """

    port: int
    url: str
    listeningPort: Any
    site: Any
    _shutdown: Any = field(repr=False)

    def stop(self) -> Deferred[None]:
        """
        Stop listening, let requests in progress finish (for the grace
        period), end the scripts still running and close the connections:
        nothing is left in the reactor once the L{Deferred} fires (trial's
        dirty-reactor check passes).
        """
        stopped: Deferred[Any] = maybeDeferred(self.listeningPort.stopListening)
        stopped.addCallback(lambda _: self._shutdown.stopService())
        return stopped.addCallback(lambda _: None)


def listen(
    directory: str | os.PathLike[str],
    settings: Any = None,
    *,
    reactor: Any = None,
    grace: float = 5.0,
) -> ListeningServer:
    """
    Serve C{directory} on a free port of 127.0.0.1 in the running reactor,
    for trial and pytest-twisted tests: the same resource and site as the
    server, without a subprocess::

        server = listen(root, Settings(cgiEnabled=True))
        self.addCleanup(server.stop)
        response = yield treq.get(server.url + "/cgi-bin/hello.sh")

    @param settings: A L{twisted_cgiserve.Settings} (default: its defaults).
    @param reactor: Default: the global reactor.
    @param grace: Seconds L{ListeningServer.stop} lets requests in progress
        finish before it ends their scripts.
    """
    # Imported here: importing this module must not import the reactor
    # (pytest-twisted installs it after plugins are loaded).
    from twisted_cgiserve._http.site import CGIServeSite  # noqa: PLC0415
    from twisted_cgiserve._root import makeRootResource  # noqa: PLC0415
    from twisted_cgiserve._service.shutdown import ShutdownService  # noqa: PLC0415
    from twisted_cgiserve._settings import Settings  # noqa: PLC0415

    if reactor is None:
        from twisted.internet import reactor as globalReactor  # noqa: PLC0415

        reactor = globalReactor
    root = os.path.abspath(os.fspath(directory))
    resource = makeRootResource(root, settings or Settings(), reactor)
    site = CGIServeSite(resource, reactor=reactor)
    port = reactor.listenTCP(0, site, interface="127.0.0.1")
    number: int = port.getHost().port
    return ListeningServer(
        port=number,
        url=f"http://127.0.0.1:{number}",
        listeningPort=port,
        site=site,
        _shutdown=ShutdownService(site, cast(Any, resource), grace, reactor),
    )
