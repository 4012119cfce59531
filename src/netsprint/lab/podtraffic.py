"""Known TCP traffic between lab pods (weeks 16-19): a sink in one pod, senders in others.

The agent's figures are checked against traffic whose every byte is known: `serve()` starts a
sink that reads each connection to its end and answers `ok` (so a sender's close waits for the
sink to have read everything), `send_from()` opens one connection per size from a pod and
sends that many bytes. Both run as processes inside the pods (`PodNode.popen`/`exec`), so the
agent attributes them by cgroup, as it would a real pod's processes.
"""

from __future__ import annotations

import subprocess
import sys
import textwrap
from collections.abc import Iterable

from netsprint.lab import LabError
from netsprint.lab.pods import PodNode

SERVER_PORT = 8080
REPLY = b"ok"  # what the sink answers per connection: its bytes count as the sink's sent bytes

_SINK = textwrap.dedent("""
    import socket, sys
    with socket.create_server(("0.0.0.0", int(sys.argv[2])), backlog=128) as listener:
        print("listening", flush=True)
        for _ in range(int(sys.argv[1])):
            conn, _ = listener.accept()
            with conn:
                while conn.recv(65536):
                    pass
                conn.sendall(%r)
""" % REPLY)
_SENDER = textwrap.dedent("""
    import socket, sys
    server, port, sizes = sys.argv[1], int(sys.argv[2]), [int(s) for s in sys.argv[3:]]
    for size in sizes:
        with socket.create_connection((server, port), timeout=20) as conn:
            conn.sendall(b"x" * size)
            conn.shutdown(socket.SHUT_WR)
            conn.recv(16)
""")


def serve(node: PodNode, pod: str, connections: int,
          port: int = SERVER_PORT) -> subprocess.Popen:
    """Start the sink in `pod` for `connections` connections; returns once it listens."""
    server = node.popen(pod, [sys.executable, "-c", _SINK, str(connections), str(port)],
                        stdout=subprocess.PIPE, text=True)
    if server.stdout.readline().strip() != "listening":
        server.kill()
        server.wait()
        raise LabError(f"the sink in {pod} did not start listening on port {port}")
    return server


def send_from(node: PodNode, pod: str, server_pod: str, sizes: Iterable[int],
              port: int = SERVER_PORT) -> None:
    """One connection per size from `pod` to `server_pod`, each sending that many bytes."""
    done = node.exec(pod, [sys.executable, "-c", _SENDER, node.address(server_pod), str(port),
                           *map(str, sizes)], capture_output=True, text=True, timeout=60)
    if done.returncode != 0:
        last = (done.stderr.strip().splitlines() or [f"exit {done.returncode}"])[-1]
        raise LabError(f"the sender in {pod} failed: {last}")  # the traceback's last line


def finish(server: subprocess.Popen, timeout: float = 15.0) -> None:
    """Wait for the sink to have served its connections; stop it if a sender failed."""
    try:
        server.wait(timeout)
    finally:
        if server.poll() is None:
            server.kill()
            server.wait()
