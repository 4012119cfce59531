"""Acceptance for the agent (issue 6): a real Prometheus scrapes the real agent while known
TCP traffic runs between lab pods, and PromQL gives back exactly what was sent. Also the
`netsprint.agent.promlab` pieces the weeks 17 and 19 notebooks stand on."""

from __future__ import annotations

import http.server
import subprocess
import sys
import threading
import time

import pytest
from agentlab import running_agent
from conftest import needs_tool

from netsprint.agent.promlab import by_label, free_port, query, running_prometheus, wait_for
from netsprint.lab import LabError
from netsprint.lab.podtraffic import REPLY, finish, send_from, serve
from netsprint.lab.pods import PodNode

# Different sizes per connection, so a count off by one connection shows in the bytes too.
PAYLOADS = [100_000 + 7_919 * i for i in range(5)]


# --- promlab on its own: no BPF, no root ------------------------------------------------------

@pytest.mark.unit
def test_by_label_keys_by_one_label_or_a_tuple_of_several():
    result = [{"metric": {"pod": "a", "direction": "inbound"}, "value": [1.0, "3"]},
              {"metric": {"direction": "outbound"}, "value": [1.0, "2.5"]}]
    assert by_label(result, "pod") == {"a": 3.0, "": 2.5}
    assert by_label(result, "pod", "direction") == {("a", "inbound"): 3.0, ("", "outbound"): 2.5}


@pytest.mark.unit
def test_wait_for_returns_the_first_true_value_and_names_what_it_waited_for():
    answers = iter([0, [], {"ready": 1}])
    assert wait_for(lambda: next(answers), 5, "three calls") == {"ready": 1}
    with pytest.raises(LabError, match="waited 0.3 s for nothing"):
        wait_for(lambda: None, 0.3, "nothing")


@pytest.mark.unit
def test_wait_for_stops_as_soon_as_the_process_exits():
    process = subprocess.Popen([sys.executable, "-c", "raise SystemExit(3)"])
    process.wait()
    with pytest.raises(LabError, match=r"the process exited \(3\)"):
        wait_for(lambda: False, 30, "a dead server", process)


class _OneMetric(http.server.BaseHTTPRequestHandler):
    BODY = b"# TYPE promlab_test_total counter\npromlab_test_total{pod=\"p\"} 42\n"

    def do_GET(self):
        self.send_response(200)
        self.send_header("Content-Type", "text/plain; version=0.0.4")
        self.end_headers()
        self.wfile.write(self.BODY)

    def log_message(self, *args):
        pass


@pytest.mark.interop
def test_running_prometheus_scrapes_its_target_and_is_gone_afterwards():
    needs_tool("prometheus", "prometheus")
    target = http.server.HTTPServer(("127.0.0.1", free_port()), _OneMetric)
    thread = threading.Thread(target=target.serve_forever, daemon=True)
    thread.start()
    try:
        with running_prometheus(f"127.0.0.1:{target.server_port}") as prometheus:
            # The context yields after the first scrape: the sample is there at once.
            assert by_label(query(prometheus, "promlab_test_total"), "pod") == {"p": 42.0}
            assert by_label(query(prometheus, "up"), "job") == {"agent": 1.0}
            earlier = query(prometheus, "promlab_test_total", at=time.time() - 3600)
            assert earlier == [], "an hour ago nothing was scraped yet"
            with pytest.raises(LabError, match="Prometheus refused"):
                query(prometheus, "sum by (")
        with pytest.raises(OSError):   # stopped by PID: nothing listens there any more
            query(prometheus, "up")
    finally:
        target.shutdown()
        target.server_close()


# --- the acceptance test --------------------------------------------------------------------

@pytest.fixture
def node(needs_bcc, needs_netns, tmp_path):
    with PodNode(pods=["client-0", "server-0"], map_path=tmp_path / "pods.json") as node:
        yield node


@pytest.mark.interop
@pytest.mark.bpf
@pytest.mark.lab
def test_prometheus_sees_exact_per_pod_bytes_and_connections(node, tmp_path):
    needs_tool("prometheus", "prometheus")
    with running_agent(tmp_path, pod_map=node.map_path) as agent, \
            running_prometheus(agent.removeprefix("http://")) as prometheus:
        # The sink answers each connection only after reading it to its end, so a sender
        # that got its answer knows every byte arrived.
        server = serve(node, "server-0", len(PAYLOADS))
        try:
            send_from(node, "client-0", "server-0", PAYLOADS)
        finally:
            finish(server)
        sent, replied = sum(PAYLOADS), len(REPLY) * len(PAYLOADS)

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
                    and bytes_out.get("server-0") == replied and bytes_in.get("client-0") == replied
                    and closed.get("client-0") == len(PAYLOADS)
                    and closed.get("server-0") == len(PAYLOADS))
            return (bytes_out, bytes_in, closed) if done else None

        try:
            bytes_out, bytes_in, _ = wait_for(settled, 20, "the scraped counts")
        except LabError:
            raise AssertionError(f"sent={sent} in {len(PAYLOADS)} connections, Prometheus has "
                                 f"{query(prometheus, 'netsprint_tcp_sent_bytes_total')} and "
                                 f"{query(prometheus, 'netsprint_tcp_received_bytes_total')}"
                                 ) from None
        # Exactly, and each direction's bytes go to the right peer.
        to_server = query(prometheus, 'netsprint_tcp_sent_bytes_total{pod="client-0"}')
        assert by_label(to_server, "peer") == {"default/server-0": sent}
        to_client = query(prometheus, 'netsprint_tcp_sent_bytes_total{pod="server-0"}')
        assert by_label(to_client, "peer") == {"default/client-0": replied}

        opened = query(prometheus, 'sum by (pod, direction) '
                                   '(netsprint_tcp_connections_opened_total{namespace="default"})')
        counts = by_label(opened, "pod", "direction")
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
