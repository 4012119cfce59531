"""Host/port to a socket address, for the TCP and UDP shells."""

from __future__ import annotations

import socket

from netsprint.errors import ReactorError


def resolve(host: str | None, port: int, sock_type: int, *,
            passive: bool = False) -> tuple[int, tuple]:
    """(family, sockaddr) for the first address of `host`.

    getaddrinfo may block on DNS: the reactor calls it only when you create a socket, and
    numeric addresses (127.0.0.1, ::1) never touch the network.
    """
    flags = socket.AI_PASSIVE if passive else 0
    try:
        infos = socket.getaddrinfo(host or None, port, socket.AF_UNSPEC, sock_type, 0, flags)
    except socket.gaierror as exc:
        raise ReactorError(f"cannot resolve {host!r}: {exc}") from exc
    family, _, _, _, sockaddr = infos[0]
    return family, sockaddr


def short_addr(addr: object) -> str:
    """'127.0.0.1:7000' / '[::1]:7000' for logs."""
    if isinstance(addr, tuple) and len(addr) >= 2:
        host = addr[0]
        return f"[{host}]:{addr[1]}" if ":" in str(host) else f"{host}:{addr[1]}"
    return str(addr)
