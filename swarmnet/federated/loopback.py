"""Whether an address stays on this machine: the one place plaintext gRPC is harmless.

Session tokens and operator tokens travel in call metadata and request fields; without TLS anyone
on the path reads them. Both ends ask this module whether the path can have anyone on it. Only
literal loopback addresses, ``localhost`` and Unix sockets count: a host name is not resolved
(resolution can be slow, and what it resolves to can change), so every other name is treated as
reachable from the network.
"""

from __future__ import annotations

import ipaddress

__all__ = ["is_local_target", "is_loopback_host"]


def is_loopback_host(host: str) -> bool:
    """``True`` for ``localhost``, ``127.0.0.0/8``, ``::1`` (bracketed or not); ``False`` for anything else,
    including the wildcard binds ``0.0.0.0`` and ``::`` and every name that would need resolving."""
    host = host.strip().strip("[]").lower()
    if host == "localhost" or host.endswith(".localhost"):
        return True
    try:
        return ipaddress.ip_address(host).is_loopback
    except ValueError:
        return False


def is_local_target(address: str) -> bool:
    """Whether every host of a gRPC target (``host:port``, ``[v6]:port``, ``dns:///host:port``,
    ``ipv4:a:1,b:2``, ``unix:path``) is loopback; a Unix socket never leaves the machine."""
    target = address.strip()
    if target.startswith(("unix:", "unix-abstract:")):
        return True
    for scheme in ("dns:///", "dns:", "ipv4:", "ipv6:"):
        if target.startswith(scheme):
            target = target[len(scheme) :]
            break
    return all(is_loopback_host(_host(part)) for part in target.split(","))


def _host(target: str) -> str:
    if target.startswith("["):
        return target[1 : target.find("]")] if "]" in target else target[1:]
    if target.count(":") > 1:  # a bare IPv6 address without a port
        return target
    return target.rsplit(":", 1)[0] if ":" in target else target
