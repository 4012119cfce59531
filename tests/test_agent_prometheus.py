"""Acceptance for the agent (issue 6): a real Prometheus scrapes the real agent while known
TCP traffic runs between lab pods, and PromQL gives back exactly what was sent."""

from __future__ import annotations

import textwrap

import pytest
from agentlab import by_label, query, running_agent, running_prometheus, wait_until
from conftest import needs_tool

from netsprint.lab.pods import PodNode

pytestmark = [pytest.mark.interop, pytest.mark.bpf, pytest.mark.lab]

SERVER_PORT = 8080
# Different sizes per connection, so a count off by one connection shows in the bytes too.
PAYLOADS = [100_000 + 7_919 * i for i in range(5)]

SERVER = textwrap.dedent("""
    import socket, sys
    n = int(sys.argv[1])
    with socket.create_server(("0.0.0.0", %d)) as listener:
        print("listening", flush=True)
        total = 0
        for _ in range(n):
            conn, _ = listener.accept()
            with conn:
                while chunk := conn.recv(65536):
                    total += len(chunk)
        print(total, flush=True)
""" % SERVER_PORT)

CLIENT = textwrap.dedent("""
    import socket, sys
    server, sizes = sys.argv[1], [int(s) for s in sys.argv[2:]]
    for size in sizes:
        with socket.create_connection((server, %d), timeout=10) as conn:
            conn.sendall(b"x" * size)
    print("sent", sum(sizes), flush=True)
""" % SERVER_PORT)


@pytest.fixture
def node(needs_bcc, needs_netns, tmp_path):
    with PodNode(pods=["client-0", "server-0"], map_path=tmp_path / "pods.json") as node:
        yield node


def test_prometheus_sees_exact_per_pod_bytes_and_connections(node, tmp_path):
    needs_tool("prometheus", "prometheus")
    python = __import__("sys").executable
    with running_agent(tmp_path, pod_map=node.map_path) as (agent, _), \
            running_prometheus(tmp_path, agent.removeprefix("http://")) as prometheus:
        server = node.popen("server-0", [python, "-c", SERVER, str(len(PAYLOADS))],
                            stdout=__import__("subprocess").PIPE, text=True)
        try:
            assert server.stdout.readline().strip() == "listening"
            client = node.exec("client-0", [python, "-c", CLIENT, node.address("server-0"),
                                            *map(str, PAYLOADS)],
                               capture_output=True, text=True, timeout=60)
            assert client.returncode == 0, client.stderr
            received = int(server.stdout.readline())
            server.wait(10)
        finally:
            if server.poll() is None:
                server.kill()
                server.wait()
        sent = sum(PAYLOADS)
        assert received == sent

        def settled():
            bytes_out = by_label(query(prometheus, 'sum by (pod) '
                                       '(netsprint_tcp_sent_bytes_total{namespace="default"})'),
                                 "pod")
            bytes_in = by_label(query(prometheus, 'sum by (pod) '
                                      '(netsprint_tcp_received_bytes_total{namespace="default"})'),
                                "pod")
            closed = by_label(query(prometheus, 'sum by (pod) '
                                    '(netsprint_tcp_connections_closed_total{namespace="default"})'),
                              "pod")
            done = (bytes_out.get("client-0") == sent and bytes_in.get("server-0") == sent
                    and closed.get("client-0") == len(PAYLOADS)
                    and closed.get("server-0") == len(PAYLOADS))
            return (bytes_out, bytes_in, closed) if done else None

        try:
            bytes_out, bytes_in, _ = wait_until(settled, 20, "the scraped counts")
        except AssertionError:
            raise AssertionError(f"last scrape: {settled.__name__} never matched; "
                                 f"sent={sent}, Prometheus has "
                                 f"{query(prometheus, 'netsprint_tcp_sent_bytes_total')} and "
                                 f"{query(prometheus, 'netsprint_tcp_received_bytes_total')}")
        # Exactly: nothing in the other direction, and the bytes go to the right peer.
        assert bytes_out.get("server-0", 0) == 0 and bytes_in.get("client-0", 0) == 0
        to_server = query(prometheus, 'netsprint_tcp_sent_bytes_total{pod="client-0"}')
        assert by_label(to_server, "peer") == {"default/server-0": sent}

        opened = query(prometheus, 'sum by (pod, direction) '
                                   '(netsprint_tcp_connections_opened_total{namespace="default"})')
        counts = {(r["metric"]["pod"], r["metric"]["direction"]): float(r["value"][1])
                  for r in opened}
        assert counts.get(("client-0", "outbound")) == len(PAYLOADS)
        assert counts.get(("server-0", "inbound")) == len(PAYLOADS)
        assert counts.get(("client-0", "inbound"), 0) == 0
        assert counts.get(("server-0", "outbound"), 0) == 0
        active = by_label(query(prometheus, 'sum by (pod) '
                                '(netsprint_tcp_active_connections{namespace="default"})'), "pod")
        assert active.get("client-0", 0) == 0 and active.get("server-0", 0) == 0
        latency = query(prometheus, 'sum(netsprint_tcp_connect_duration_seconds_count'
                                    '{pod="client-0"})')
        assert float(latency[0]["value"][1]) == len(PAYLOADS)
