"""The agent over HTTP on loopback: /metrics (text and OpenMetrics), /healthz, 404, shutdown,
and a graceful stop on SIGTERM (fake probes: no kernel needed)."""

from __future__ import annotations

import os
import signal
import socket
import subprocess
import sys
import textwrap
import time
import urllib.error
import urllib.request

import pytest
from conftest import needs_tool
from prometheus_client.openmetrics.parser import text_string_to_metric_families

from netsprint.agent import model
from netsprint.agent.config import AgentConfig
from netsprint.agent.model import FlowCounters, FlowKey, PodRef, Snapshot
from netsprint.agent.runner import Agent, AgentError, NoPods

pytestmark = pytest.mark.net

LOOPBACK = AgentConfig(listen="127.0.0.1:0")
OPENMETRICS = "application/openmetrics-text; version=1.0.0; charset=utf-8"


class RecordingSource:
    """A snapshot source that can fail on demand and records close()."""

    def __init__(self, snapshot: Snapshot | None = None) -> None:
        self.value = snapshot or Snapshot(
            flows={FlowKey(7, "198.51.100.10", "198.51.100.12"): FlowCounters(sent_bytes=42)},
            probes_attached=6)
        self.error: Exception | None = None
        self.closed = 0

    def snapshot(self) -> Snapshot:
        if self.error is not None:
            raise self.error
        return self.value

    def close(self) -> None:
        self.closed += 1


class RecordingPods(NoPods):
    def __init__(self) -> None:
        self.closed = 0

    def peer_pod(self, ip: str) -> PodRef | None:
        return PodRef("data", "db-0") if ip == "198.51.100.12" else None

    def close(self) -> None:
        self.closed += 1


@pytest.fixture
def agent():
    source, pods = RecordingSource(), RecordingPods()
    running = Agent(LOOPBACK, source, pods, version="1.2.3")
    try:
        running.start()
        yield running
    finally:
        running.stop()


def get(url: str, accept: str | None = None) -> tuple[int, str, str]:
    """(status, content type, body) of a GET, error statuses included."""
    request = urllib.request.Request(url, headers={"Accept": accept} if accept else {})
    try:
        with urllib.request.urlopen(request, timeout=10) as response:
            return response.status, response.headers["Content-Type"], response.read().decode()
    except urllib.error.HTTPError as error:
        with error:
            return error.code, error.headers["Content-Type"], error.read().decode()


def assert_port_free(port: int) -> None:
    """Binding fails with EADDRINUSE while anything listens there. SO_REUSEADDR, as every
    server sets it, so the TIME_WAIT of a connection the agent closed does not count."""
    with socket.socket() as probe:
        probe.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
        probe.bind(("127.0.0.1", port))
        probe.listen()


def test_metrics_in_the_text_format(agent):
    status, content_type, body = get(agent.server.url + "/metrics")
    assert status == 200 and content_type.startswith("text/plain; version=0.0.4")
    line = ('netsprint_tcp_sent_bytes_total{namespace="host",peer="data/db-0",pod="host"} 42.0')
    assert line in body.splitlines()
    assert 'netsprint_agent_build_info{python=' in body and 'version="1.2.3"' in body


def test_metrics_in_openmetrics_when_asked(agent):
    status, content_type, body = get(agent.server.url + "/metrics", accept=OPENMETRICS)
    assert status == 200 and content_type.startswith("application/openmetrics-text")
    assert body.endswith("# EOF\n")
    families = {family.name: family for family in text_string_to_metric_families(body)}
    assert families["netsprint_agent_probes_attached"].samples[0].value == 6


@pytest.mark.interop
def test_promtool_accepts_what_the_server_serves(agent):
    promtool = needs_tool("promtool", "prometheus")
    _, _, body = get(agent.server.url + "/metrics")
    checked = subprocess.run([promtool, "check", "metrics"], input=body.encode(),
                             capture_output=True, timeout=60)
    assert checked.returncode == 0, checked.stdout.decode() + checked.stderr.decode()
    assert not (checked.stdout + checked.stderr).strip()  # not even a lint warning


def test_healthz_is_ok_with_probes_attached(agent):
    assert get(agent.server.url + "/healthz")[::2] == (200, "ok\n")


def test_healthz_is_503_without_probes(agent):
    agent.source.value = Snapshot(probes_attached=0)
    get(agent.server.url + "/metrics")  # the scrape reads the maps again
    assert get(agent.server.url + "/healthz")[::2] == (503, "no probes attached\n")


def test_healthz_is_503_after_a_failed_read_and_recovers(agent):
    agent.source.error = OSError(5, "Input/output error")
    status, _, body = get(agent.server.url + "/metrics")
    assert status == 200 and "netsprint_agent_build_info" in body
    assert not [line for line in body.splitlines() if line.startswith("netsprint_tcp_")]
    status, _, reason = get(agent.server.url + "/healthz")
    assert status == 503 and reason.startswith("last collect failed: OSError")
    agent.source.error = None
    get(agent.server.url + "/metrics")
    assert get(agent.server.url + "/healthz")[0] == 200


def test_other_paths_are_404(agent):
    for path in ("/", "/metricsx", "/healthz/extra", "/favicon.ico"):
        assert get(agent.server.url + path)[0] == 404, path


def test_stop_frees_the_port_and_closes_source_and_resolver():
    source, pods = RecordingSource(), RecordingPods()
    agent = Agent(LOOPBACK, source, pods)
    port = agent.start().port
    agent.stop()
    agent.stop()  # idempotent: closes once
    assert (source.closed, pods.closed) == (1, 1)
    assert_port_free(port)


def test_a_busy_port_is_a_one_line_error_and_still_closes_the_probes():
    with socket.socket() as holder:
        holder.bind(("127.0.0.1", 0))
        holder.listen()
        busy = AgentConfig(listen=f"127.0.0.1:{holder.getsockname()[1]}")
        source = RecordingSource()
        with pytest.raises(AgentError, match="cannot listen on 127.0.0.1:"):
            with Agent(busy, source, NoPods()) as agent:
                agent.start()
        assert source.closed == 1


def test_scheduled_reads_serve_the_latest_snapshot():
    source = RecordingSource()
    agent = Agent(AgentConfig(listen="127.0.0.1:0", collect_interval=0.05), source, NoPods())
    with agent:
        agent.start()
        source.value = Snapshot(probes_attached=6, events_lost=3)
        # Wait for the schedule (not for a time): the value appears once a read happened.
        for _ in range(200):
            if agent.reader.last_good is source.value:
                break
            time.sleep(0.05)
        body = get(agent.server.url + "/metrics")[2]
        assert "netsprint_agent_events_lost_total 3.0" in body.splitlines()


AGENT_SCRIPT = textwrap.dedent("""
    from netsprint.agent.config import AgentConfig
    from netsprint.agent.model import Snapshot
    from netsprint.agent.runner import Agent, NoPods, serve_until_signal

    class Source:
        def snapshot(self):
            return Snapshot(probes_attached=1)

        def close(self):
            print("probes closed", flush=True)

    class Announcing(Agent):
        def start(self):
            server = super().start()
            print(server.port, flush=True)
            return server

    serve_until_signal(Announcing(AgentConfig(listen="127.0.0.1:0"), Source(), NoPods()))
    print("exited", flush=True)
""")


@pytest.mark.parametrize("signum", [signal.SIGTERM, signal.SIGINT])
def test_a_signal_stops_the_agent_gracefully(signum):
    child = subprocess.Popen([sys.executable, "-c", AGENT_SCRIPT], stdout=subprocess.PIPE,
                             stderr=subprocess.PIPE, text=True)
    try:
        port = int(child.stdout.readline())
        assert get(f"http://127.0.0.1:{port}/healthz")[0] == 200
        os.kill(child.pid, signum)
        out, err = child.communicate(timeout=20)
    finally:
        if child.poll() is None:
            child.kill()
            child.wait()
    assert child.returncode == 0, err
    assert out.splitlines() == ["probes closed", "exited"]
    assert_port_free(port)


def test_the_metric_names_are_the_contracts():
    source = RecordingSource()
    with Agent(LOOPBACK, source, NoPods()) as agent:
        names = {family.name for family in agent.registry.collect()}
    expected = {model.OPENED, model.CLOSED, model.CONNECT_FAILURES, model.ACTIVE,
                model.SENT_BYTES, model.RECEIVED_BYTES, model.RETRANSMITS,
                model.CONNECT_DURATION, model.SRTT, model.SERIES_DROPPED, model.BUILD_INFO,
                model.PROBES_ATTACHED, model.MAP_ENTRIES, model.EVENTS_LOST,
                model.COLLECT_DURATION}
    # prometheus_client keeps a counter family's name without _total.
    assert {name + "_total" if name + "_total" in expected else name for name in names} \
        == expected
