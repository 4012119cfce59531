"""Small socket helpers shared by the network tests."""

from __future__ import annotations

import socket


def echo(sock: socket.socket, message: bytes) -> bytes:
    """Send `message` on a blocking socket and read until as many bytes came back (or EOF)."""
    sock.sendall(message)
    got = b""
    while len(got) < len(message):
        chunk = sock.recv(65536)
        if not chunk:
            break
        got += chunk
    return got
