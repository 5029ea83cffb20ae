# -*- test-case-name: tests.service.test_twistdoptions -*-
"""
twistd's own options: the one place that reads and writes them, to choose
twistd's log observer from the plugin's options, and to run twistd with the
one C{cgiserve} subcommand from C{python -m twisted_cgiserve}.

twistd has no public way for a plugin to do either. What this relies on,
and what the canaries in L{tests.service.test_twistdoptions} check against
the installed Twisted:

  - a subcommand's options get the command's options as their C{parent}
    attribute before they are parsed (L{twisted.python.usage.Options}
    sets it; it is not documented);
  - twistd's options hold C{logger}, C{syslog}, C{logfile} and
    C{nodaemon} (C{twisted.scripts._twistd_unix.ServerOptions}), and
    resolve a C{logger} given by name in their own C{postOptions}, which
    runs after the subcommand's;
  - twistd's options list their subcommands through a C{subCommands}
    property that fills C{loadedPlugins}, from which C{runApp} takes the
    chosen plugin's service maker.

Each is read without a default, so that a change in Twisted fails loudly
rather than silently switching the choice off.
"""

from __future__ import annotations

from collections.abc import Callable, Iterator
from typing import Any, cast

from twisted.python import usage

from twisted_cgiserve._service.journald import JOURNALD_LOGGER, logsToJournal
from twisted_cgiserve._service.logfile import NODE_LOGGER, openNodeLog

__all__ = ["chooseLogger", "twistdOptions"]


def chooseLogger(parent: usage.Options | None) -> None:
    """
    Replace twistd's log observer where it would do harm, unless another
    logger (or syslog) was asked for:

      - Under systemd, write the journal's format (no timestamps, priority
        prefixes) when twistd would log to a standard output that is the
        journal.
      - A C{--logfile} that is a character device (C{/dev/null}) or a FIFO
        is written to as it is: twistd's would rotate it by renaming it,
        replacing C{/dev/null} with a regular file for the whole machine.

    @param parent: twistd's options, or L{None} when the plugin's options
        are parsed on their own (not as a twistd subcommand).

    @raise ValueError: The C{--logfile} cannot be a log; the message is fit
        for the command line.
    """
    if parent is None or parent["logger"] is not None or parent["syslog"]:
        return
    logfile = parent["logfile"]
    if logfile in (None, "", "-"):
        if parent["nodaemon"] and logsToJournal():
            parent["logger"] = JOURNALD_LOGGER
        return
    if openNodeLog(logfile):
        parent["logger"] = NODE_LOGGER


def twistdOptions(maker: Any, front: type[usage.Options]) -> usage.Options:
    """
    twistd's own options (for this platform) with one subcommand,
    C{maker}'s, whose options are parsed by C{front} instead of the
    plugin's own: so that C{python -m twisted_cgiserve} takes http.server's
    command line and still runs the very service C{twistd cgiserve} runs.
    """
    from twisted.scripts import twistd  # noqa: PLC0415

    serverOptions: type[usage.Options] = twistd.ServerOptions  # type: ignore[attr-defined]

    class Options(serverOptions):  # type: ignore[misc, valid-type]
        @property
        def subCommands(self) -> Iterator[tuple[str, None, Callable[[], Any], str]]:
            self.loadedPlugins = {maker.tapname: maker}
            yield (maker.tapname, None, front, maker.description)

    return cast(usage.Options, Options())
