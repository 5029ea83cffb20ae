# -*- test-case-name: tests.service.test_authentication -*-
"""
C{--auth-file}, C{--auth-realm} and C{--auth-path} in the service: the
htpasswd file read at start-up (before twistd drops privileges, so it may
be readable by root alone; reloading it on C{SIGHUP} then needs it readable
by the user the server runs as), the served tree wrapped in Basic
authentication, and a warning when passwords would cross the network in
clear text.
"""

from __future__ import annotations

import ipaddress
from collections.abc import Sequence
from typing import Any

from twisted.logger import Logger
from twisted.web.resource import IResource

from twisted_cgiserve._http.basicauth import BasicAuthResource
from twisted_cgiserve._http.credentials import HtpasswdChecker
from twisted_cgiserve._service.config import ServerConfig
from twisted_cgiserve._service.ports import ListenSpec, splitDescription

__all__ = ["clearTextPorts", "protect", "warnClearText"]

_log = Logger(namespace="cgiserve.auth")


def _interface(description: str) -> str | None:
    """
    The C{interface=} of a C{tcp:}/C{tcp6:} endpoint description, unescaped;
    L{None} when it has none (every address).
    """
    return splitDescription(description)[1].get("interface")


def _isLoopback(address: str) -> bool:
    """
    Whether C{address} is a loopback address, IPv4-mapped ones
    (C{::ffff:127.0.0.1}) included.
    """
    try:
        ip = ipaddress.ip_address(address.strip("[]"))
    except ValueError:
        return address == "localhost"
    if isinstance(ip, ipaddress.IPv6Address) and ip.ipv4_mapped is not None:
        return ip.ipv4_mapped.is_loopback
    return ip.is_loopback


def clearTextPorts(specs: Sequence[ListenSpec]) -> list[ListenSpec]:
    """
    The ports that speak plain HTTP on an address other machines can reach:
    every address (a bare port number) or a TCP address that is not
    loopback. UNIX sockets and ports systemd passes (whose address this
    server does not choose) are not counted.
    """
    found = []
    for spec in specs:
        if spec.secure:
            continue
        if spec.description is None:
            found.append(spec)
            continue
        kind = spec.description.split(":", 1)[0]
        if kind not in ("tcp", "tcp6"):
            continue
        interface = _interface(spec.description)
        if interface is None or not _isLoopback(interface):
            found.append(spec)
    return found


def warnClearText(specs: Sequence[ListenSpec]) -> None:
    """
    Warn, once per port, that Basic authentication sends passwords readable
    by anyone on the path between client and server.
    """
    for spec in clearTextPorts(specs):
        _log.warn(
            "--auth-file is used over plain HTTP on {port}, which is not a "
            "loopback address: passwords cross the network readable by "
            "anyone on the way. Serve HTTPS (--tls-cert and --tls-key) or "
            "bind to 127.0.0.1.",
            port=str(spec),
        )


def protect(
    root: IResource, config: ServerConfig, reactor: Any
) -> tuple[IResource, HtpasswdChecker | None]:
    """
    The tree to serve: C{root} itself without C{--auth-file}, or C{root}
    behind Basic authentication against it.

    @return: The tree, and the checker to reload on C{SIGHUP} (or L{None}).
    @raise twisted_cgiserve._http.htpasswd.HtpasswdError: The file cannot
        be used.
    """
    if config.authFile is None:
        return root, None
    checker = HtpasswdChecker(config.authFile, reactor)
    if not checker.users:
        _log.warn(
            "--auth-file {path} has no users: every protected request gets 401.",
            path=config.authFile,
        )
    warnClearText(config.listen)
    return (
        BasicAuthResource(root, checker, config.authRealm, config.authPaths),
        checker,
    )
