# -*- test-case-name: tests.cgi.test_privileges -*-
"""
Who CGI scripts run as.

A server started as root (to bind port 80, or in a container) must not run
scripts as root: http.server ran them as C{nobody}, and so does this server
(C{--cgi-user}). The user is looked up once, when the served tree is built:
twistd's C{--uid} drops the server's own privileges after that, and the
lookup must fail at start-up, not at the first request. Whether to switch
is decided each time a script starts, from the server's effective user at
that moment: a server that has already dropped root cannot switch, and
needs not.
"""

from __future__ import annotations

import os
import pwd
import shutil
import stat
from collections.abc import Sequence
from typing import Any

__all__ = [
    "SETPRIV",
    "readableBy",
    "runAs",
    "runnableBy",
    "scriptUser",
    "switchUserCommand",
]

# util-linux's setpriv, which changes user between the vfork and the
# script's exec; looked up in the system's directories only, never on the
# server's PATH.
SETPRIV = shutil.which("setpriv", path="/usr/bin:/bin:/usr/sbin:/sbin")


def scriptUser(name: str | None) -> tuple[int, int] | None:
    """
    The user and group (uid, gid) scripts run as while the server runs as
    root; L{None} when no user is configured.

    @param name: A user name, or a user ID in ASCII digits.
    @raise KeyError: There is no such user (this function's only
        L{KeyError}: callers may say "no such user" for it).
    """
    if name is None:
        return None
    if name.isascii() and name.isdigit():
        entry = pwd.getpwuid(int(name))
    else:
        entry = pwd.getpwnam(name)
    return entry.pw_uid, entry.pw_gid


def runAs(user: tuple[int, int] | None, euid: int) -> tuple[int, int] | None:
    """
    The user a script starting now switches to: the configured C{user}
    while the server's effective user ID C{euid} is root, unless that user
    is root itself; L{None} (run as the server's user) otherwise.
    """
    if user is None or euid != 0 or user[0] == 0:
        return None
    return user


def _permitted(
    filename: str, user: tuple[int, int], bits: tuple[int, int, int]
) -> bool:
    """
    Whether C{user} (uid, gid) has the permission whose owner, group and
    other bits are C{bits} on C{filename}, by its mode bits, as the kernel
    chooses the class: the owner's if it owns the file, else the group's if
    it is the file's group, else the others'.

    The server, as root, cannot ask C{os.access}: root may read any file,
    and execute any file with any execute bit, so a script only its owner
    may run would pass and then fail in the child.

    @raise OSError: C{filename} cannot be examined.
    """
    st = os.stat(filename)
    uid, gid = user
    owner, group, other = bits
    if st.st_uid == uid:
        return bool(st.st_mode & owner)
    if st.st_gid == gid:
        return bool(st.st_mode & group)
    return bool(st.st_mode & other)


def runnableBy(filename: str, user: tuple[int, int]) -> bool:
    """
    Whether C{user} (uid, gid) may execute C{filename}, by its mode bits
    (see L{_permitted}).

    @raise OSError: C{filename} cannot be examined.
    """
    return _permitted(filename, user, (stat.S_IXUSR, stat.S_IXGRP, stat.S_IXOTH))


def readableBy(filename: str, user: tuple[int, int]) -> bool:
    """
    Whether C{user} (uid, gid) may read C{filename}, by its mode bits (see
    L{_permitted}): an interpreter running as that user must open the
    script.

    @raise OSError: C{filename} cannot be examined.
    """
    return _permitted(filename, user, (stat.S_IRUSR, stat.S_IRGRP, stat.S_IROTH))


def switchUserCommand(
    executable: str, args: Sequence[str], user: tuple[int, int]
) -> tuple[str, list[str], dict[str, Any]]:
    """
    How to start C{executable} with C{args} as C{user} from a server running
    as root: the executable and arguments to give C{subprocess.Popen}, and
    its keyword arguments for the switch.

    With L{SETPRIV}, the switch happens in the child, after C{Popen}'s
    vfork: the standard library itself forks the whole server when it must
    change user. Without it, C{Popen} changes user (and clears the
    supplementary groups) itself.
    """
    uid, gid = user
    setpriv = SETPRIV
    if setpriv is None:
        return executable, list(args), {"user": uid, "group": gid, "extra_groups": []}
    command = [setpriv, f"--reuid={uid}", f"--regid={gid}", "--clear-groups", "--"]
    return setpriv, [*command, executable, *args[1:]], {}
