"""
Tests for L{twisted_cgiserve._cgi.privileges}: who scripts run as.
"""

from __future__ import annotations

import os
import pwd
from collections.abc import Callable
from pathlib import Path

import pytest

from twisted_cgiserve._cgi import privileges
from twisted_cgiserve._cgi.privileges import (
    SETPRIV,
    readableBy,
    runAs,
    runnableBy,
    scriptUser,
    switchUserCommand,
)

MISSING_USER = "cgiserve-no-such-user"


def test_noUser() -> None:
    """
    No configured user: scripts run as the server's user.
    """
    assert scriptUser(None) is None


def test_userByNameAndByNumber() -> None:
    """
    A user is found by name or by its ID, as its uid and primary gid.
    """
    entry = pwd.getpwuid(os.getuid())
    expected = (entry.pw_uid, entry.pw_gid)
    assert scriptUser(entry.pw_name) == expected
    assert scriptUser(str(entry.pw_uid)) == expected


def test_noSuchUser() -> None:
    """
    A missing user, by name or by number, is a L{KeyError}, the one
    callers turn into "no such user".
    """
    unused = max(entry.pw_uid for entry in pwd.getpwall()) + 1
    for name in (MISSING_USER, str(unused)):
        with pytest.raises(KeyError):
            scriptUser(name)


def test_onlyASCIIDigitsAreAUserID() -> None:
    """
    Only ASCII digits are a user ID: C{"\\u0660"} (ARABIC-INDIC DIGIT ZERO,
    which L{int} reads as 0) is looked up as a name, never as root.
    """
    assert int("\u0660") == 0
    with pytest.raises(KeyError):
        scriptUser("\u0660")


@pytest.mark.parametrize(
    ("user", "euid", "expected"),
    [
        ((65534, 65534), 0, (65534, 65534)),
        ((65534, 65534), 1000, None),
        ((0, 0), 0, None),
        (None, 0, None),
        (None, 1000, None),
    ],
)
def test_runAs(
    user: tuple[int, int] | None, euid: int, expected: tuple[int, int] | None
) -> None:
    """
    Scripts switch to the configured user only while the server runs as
    root, and only to someone else than root.
    """
    assert runAs(user, euid) == expected


_RUN = (runnableBy, "x.sh", "#!/bin/sh\n")
_READ = (readableBy, "x.pl", "print 1;\n")


@pytest.mark.parametrize(
    ("check", "mode", "who", "permitted"),
    [
        (_RUN, 0o700, "owner", True),
        (_RUN, 0o600, "owner", False),
        (_RUN, 0o070, "owner", False),
        (_RUN, 0o070, "group", True),
        (_RUN, 0o707, "group", False),
        (_RUN, 0o001, "other", True),
        (_RUN, 0o770, "other", False),
        (_READ, 0o400, "owner", True),
        (_READ, 0o300, "owner", False),
        (_READ, 0o047, "owner", False),
        (_READ, 0o040, "group", True),
        (_READ, 0o404, "group", False),
        (_READ, 0o004, "other", True),
        (_READ, 0o440, "other", False),
    ],
)
def test_permittedByModeBits(
    tmp_path: Path,
    check: tuple[Callable[[str, tuple[int, int]], bool], str, str],
    mode: int,
    who: str,
    permitted: bool,
) -> None:
    """
    Whether a user may execute a script (L{runnableBy}), or read it for an
    interpreter (L{readableBy}), follows the mode bits the kernel would
    check for it: the owner's if it owns the file, else the group's if it
    is the file's group, else the others' (whoever the server is: as root
    it cannot ask C{os.access}).
    """
    function, name, text = check
    script = tmp_path / name
    script.write_text(text)
    script.chmod(mode)
    st = script.stat()
    user = {
        "owner": (st.st_uid, st.st_gid + 1),
        "group": (st.st_uid + 1, st.st_gid),
        "other": (st.st_uid + 1, st.st_gid + 1),
    }[who]
    assert function(str(script), user) is permitted


@pytest.mark.parametrize("function", [runnableBy, readableBy])
def test_permittedMissingFile(
    tmp_path: Path, function: Callable[[str, tuple[int, int]], bool]
) -> None:
    """
    A file that cannot be examined is an L{OSError}, not a silent no.
    """
    with pytest.raises(FileNotFoundError):
        function(str(tmp_path / "missing"), (1, 1))


def test_switchWithSetpriv(monkeypatch: pytest.MonkeyPatch) -> None:
    """
    With setpriv the script is started through it: real and effective
    user and group set, supplementary groups cleared, then the script with
    its own arguments.
    """
    monkeypatch.setattr(privileges, "SETPRIV", "/x/setpriv")
    executable, args, keywords = switchUserCommand(
        "/srv/cgi-bin/x.sh", ["/srv/cgi-bin/x.sh", "a", "-b"], (33, 44)
    )
    assert executable == "/x/setpriv"
    assert args == [
        "/x/setpriv",
        "--reuid=33",
        "--regid=44",
        "--clear-groups",
        "--",
        "/srv/cgi-bin/x.sh",
        "a",
        "-b",
    ]
    assert keywords == {}


def test_switchWithoutSetpriv(monkeypatch: pytest.MonkeyPatch) -> None:
    """
    Without setpriv, C{Popen} switches itself: the command is unchanged.
    """
    monkeypatch.setattr(privileges, "SETPRIV", None)
    executable, args, keywords = switchUserCommand(
        "/srv/cgi-bin/x.sh", ["/srv/cgi-bin/x.sh", "a"], (33, 44)
    )
    assert (executable, args) == ("/srv/cgi-bin/x.sh", ["/srv/cgi-bin/x.sh", "a"])
    assert keywords == {"user": 33, "group": 44, "extra_groups": []}


def test_setprivFromSystemDirectories() -> None:
    """
    The setpriv used by default is an absolute path in a system directory
    (never one found on the server's C{PATH}), when there is one.
    """
    if SETPRIV is None:
        pytest.skip("no setpriv on this machine")
    assert os.path.dirname(SETPRIV) in ("/usr/bin", "/bin", "/usr/sbin", "/sbin")
    executable, _args, _keywords = switchUserCommand("/x", ["/x"], (1, 1))
    assert executable == SETPRIV
