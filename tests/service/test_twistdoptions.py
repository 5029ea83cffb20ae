"""
Tests for L{twisted_cgiserve._service.twistdoptions}: the log observer chosen
for twistd, through twistd's own option parsing (which resolves the logger
by name after the plugin's options are checked), and canaries for what it
relies on in twistd.
"""

from __future__ import annotations

import inspect
import os
import socket
from collections.abc import Iterator
from contextlib import contextmanager
from pathlib import Path
from typing import Any

import pytest
from twisted.application.app import ApplicationRunner
from twisted.python import usage
from twisted.scripts.twistd import ServerOptions

from twisted_cgiserve import journaldLogObserver
from twisted_cgiserve._service import logfile as _logfile
from twisted_cgiserve._service.logfile import nodeLogObserver
from twisted_cgiserve._service.twistdoptions import chooseLogger, twistdOptions
from twisted_cgiserve.tap import Options

pytestmark = pytest.mark.usefixtures("closeOpenedLog")


def _parseTwistd(*args: str) -> ServerOptions:
    """
    twistd's own command line parsed, with this plugin's options after it.
    """
    config = ServerOptions()
    config.parseOptions(list(args))
    return config


# Through twistd's own option parsing, which resolves the logger by name after
# the plugin's options are checked.


def test_twistdUsesNodeLogger(fifo: tuple[Path, int], tmp_path: Path) -> None:
    """
    C{twistd -l FIFO cgiserve} gets this module's observer instead of its
    rotating log file.
    """
    path, _ = fifo
    config = _parseTwistd(
        "-n", "--pidfile=", "-l", str(path), "cgiserve", "--directory", str(tmp_path)
    )
    assert config["logger"] is nodeLogObserver


@pytest.mark.parametrize(
    "extra",
    [["--logger", "twisted_cgiserve.journaldLogObserver"], ["--syslog"]],
)
def test_explicitChoiceWins(
    fifo: tuple[Path, int], tmp_path: Path, extra: list[str]
) -> None:
    """
    A logger or syslog asked for explicitly is left alone.
    """
    path, _ = fifo
    config = _parseTwistd(
        "-n", "--pidfile=", *extra, "-l", str(path),
        "cgiserve", "--directory", str(tmp_path),
    )  # fmt: skip
    assert config["logger"] is not nodeLogObserver
    assert _logfile._opened is None


def test_regularLogFileUnchanged(tmp_path: Path) -> None:
    config = _parseTwistd(
        "-n", "--pidfile=", "-l", str(tmp_path / "twistd.log"),
        "cgiserve", "--directory", str(tmp_path),
    )  # fmt: skip
    assert config["logger"] is None


def test_unwritableLogFileIsUsageError(
    tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    """
    A C{--logfile} that is a directory ends twistd with one line and exit
    status 2, not a traceback once it starts.
    """
    with pytest.raises(SystemExit) as exited:
        _parseTwistd(
            "-n", "--pidfile=", "-l", str(tmp_path),
            "cgiserve", "--directory", str(tmp_path),
        )  # fmt: skip
    assert exited.value.code == 2
    err: Any = capsys.readouterr().err
    assert err.splitlines() == [
        f"twistd cgiserve: error: --logfile {str(tmp_path)!r} is a directory; give "
        "a file, a character device or a FIFO (see 'twistd cgiserve --help')"
    ]


@contextmanager
def journal(monkeypatch: pytest.MonkeyPatch) -> Iterator[None]:
    """
    Standard output is the journal's stream, as systemd connects it (set up
    inside the test: pytest puts its own capture back on descriptor 1
    between a fixture and the test).
    """
    with socket.socket(socket.AF_UNIX) as sock:
        st = os.fstat(sock.fileno())
        monkeypatch.setenv("JOURNAL_STREAM", f"{st.st_dev}:{st.st_ino}")
        saved = os.dup(1)
        os.dup2(sock.fileno(), 1)
        try:
            yield
        finally:
            os.dup2(saved, 1)
            os.close(saved)


def test_journalUnderSystemd(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    """
    Not daemonized, logging to a standard output that is the journal: the
    journal's format.
    """
    with journal(monkeypatch):
        config = _parseTwistd(
            "-n", "--pidfile=", "cgiserve", "--directory", str(tmp_path)
        )
    assert config["logger"] is journaldLogObserver


def test_journalOnlyWhenNotDaemonized(monkeypatch: pytest.MonkeyPatch) -> None:
    """
    A daemon's standard output is not the journal's once it has detached;
    a logger or syslog asked for wins.
    """
    parent: dict[str, Any] = {
        "logger": None, "syslog": False, "logfile": None, "nodaemon": False,
    }  # fmt: skip
    with journal(monkeypatch):
        chooseLogger(parent)  # type: ignore[arg-type]
        assert parent["logger"] is None
        parent["nodaemon"] = True
        parent["syslog"] = True
        chooseLogger(parent)  # type: ignore[arg-type]
        assert parent["logger"] is None
        parent["syslog"] = False
        chooseLogger(parent)  # type: ignore[arg-type]
    assert parent["logger"] == "twisted_cgiserve.journaldLogObserver"


def test_notTheJournal(tmp_path: Path) -> None:
    """
    Without the journal's stream, twistd's own observer stays.
    """
    config = _parseTwistd("-n", "--pidfile=", "cgiserve", "--directory", str(tmp_path))
    assert config["logger"] is None


def test_standalone(tmp_path: Path) -> None:
    """
    The plugin's options parsed on their own have no parent to choose for.
    """
    options = Options()
    options.parseOptions(["--directory", str(tmp_path)])
    assert options.parent is None
    chooseLogger(None)


# Canaries: what this relies on in twistd. Each fails when Twisted changes it.


def test_canarySubcommandGetsParent(tmp_path: Path) -> None:
    """
    L{usage.Options} sets a subcommand's options' C{parent} to the
    command's options before parsing them.
    """
    seen: list[object] = []

    class Probe(usage.Options):
        def postOptions(self) -> None:
            seen.append(self.parent)

    class Command(usage.Options):
        subCommands = [["probe", None, Probe, ""]]

    command = Command()
    command.parseOptions(["probe"])
    assert seen == [command]
    config = _parseTwistd("-n", "--pidfile=", "cgiserve", "--directory", str(tmp_path))
    assert config.subOptions.parent is config


def test_canaryTwistdOptionKeys() -> None:
    """
    twistd's options hold the keys read here, with the defaults that mean
    "nothing asked for".
    """
    config = ServerOptions()
    assert config["logger"] is None
    assert config["syslog"] == 0
    assert config["logfile"] is None
    assert config["nodaemon"] == 0
    assert set(ServerOptions().keys()) >= {"logger", "syslog", "logfile", "nodaemon"}


def test_canaryLoggerResolvedAfterSubcommand(tmp_path: Path) -> None:
    """
    twistd resolves a C{logger} given by name in its own C{postOptions},
    after the subcommand's options set it.
    """
    seen: list[Any] = []

    class Setter(Options):
        def postOptions(self) -> None:
            assert self.parent is not None
            self.parent["logger"] = "twisted_cgiserve.journaldLogObserver"
            seen.append(self.parent["logger"])

    class Twistd(ServerOptions):  # type: ignore[misc]
        @property
        def subCommands(self) -> Any:
            yield ("cgiserve", None, Setter, "")

    config = Twistd()
    config.parseOptions(["-n", "--pidfile=", "cgiserve"])
    assert seen == ["twisted_cgiserve.journaldLogObserver"]
    assert config["logger"] is journaldLogObserver


class _Maker:
    """
    A service maker as twistd's plugins provide one.
    """

    tapname = "cgiserve"
    description = "the server"
    options = Options

    def makeService(self, options: usage.Options) -> Any:
        raise AssertionError("not made here")


class _Front(Options):
    """
    Options parsed in the plugin's place.
    """


def test_canaryTwistdOptionsWithOneSubcommand() -> None:
    """
    L{twistdOptions} gives twistd's own options, whose one subcommand is
    parsed by the given options class, and fills C{loadedPlugins}, where
    twistd's application runner takes the service maker from: so
    C{python -m twisted_cgiserve} runs the service C{twistd cgiserve} runs.
    """
    maker = _Maker()
    config = twistdOptions(maker, _Front)
    assert isinstance(config, ServerOptions)
    config.parseOptions(["--nodaemon", "--pidfile=", "cgiserve", "--no-cgi"])
    assert config.subCommand == "cgiserve"
    assert isinstance(config.subOptions, _Front)
    assert config.subOptions["no-cgi"]
    assert config.loadedPlugins == {"cgiserve": maker}  # type: ignore[attr-defined]
    # twistd's runner takes the maker from there (a rename in Twisted would
    # make python -m fail to start: this says why).
    source = inspect.getsource(ApplicationRunner.createOrGetApplication)
    assert "loadedPlugins[self.config.subCommand]" in source, (
        "Twisted's ApplicationRunner changed: adapt twistdOptions"
    )
    assert isinstance(inspect.getattr_static(ServerOptions, "subCommands"), property)
