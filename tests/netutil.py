"""Small socket and process helpers shared by the network tests."""

from __future__ import annotations

import contextlib
import re
import socket
import subprocess
import sys
from collections.abc import Iterator

import pytest


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


@contextlib.contextmanager
def echo_server(*args: str, python_code: str | None = None
                ) -> Iterator[tuple[subprocess.Popen, int]]:
    """Start `netsprint echo-server --port 0 ARGS` (or `python -c python_code`, which must
    print the same "listening on" line) in a child; yield (process, port); always stop it."""
    cmd = ([sys.executable, "-c", python_code] if python_code else
           [sys.executable, "-m", "netsprint", "echo-server", "--port", "0", *args])
    proc = subprocess.Popen(cmd, stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True)
    try:
        line = proc.stdout.readline()
        match = re.search(r"listening on 127\.0\.0\.1:(\d+)", line)
        if not match:
            proc.kill()
            pytest.fail(f"echo server did not start: {line!r} {proc.stderr.read()}")
        yield proc, int(match.group(1))
    finally:
        if proc.poll() is None:
            proc.kill()
            proc.wait()
        proc.stdout.close()
        proc.stderr.close()
