"""A real Prometheus scraping the real agent, on loopback (weeks 17 and 19, and the
acceptance test `tests/test_agent_prometheus.py`).

`running_prometheus(target)` starts Debian's `prometheus` binary on a free port with a
throw-away config and TSDB directory, returns once it has scraped `target` once, and stops
it by its PID when the `with` ends (even on failure). `agent_for(node)` runs the agent in
this process for the pods of a `netsprint.lab.pods.PodNode`. `query()` asks Prometheus'
HTTP API one instant query; `by_label()` turns its answer into a dict.

    with PodNode(pods=["web-0", "db-0"]) as node, agent_for(node) as agent, \\
            running_prometheus(agent.url.removeprefix("http://")) as prometheus:
        ...  # traffic between the pods
        by_label(query(prometheus, "sum by (pod) (netsprint_tcp_sent_bytes_total)"), "pod")
"""

from __future__ import annotations

import contextlib
import json
import shutil
import socket
import subprocess
import tempfile
import time
import urllib.error
import urllib.parse
import urllib.request
from collections.abc import Callable, Iterator
from pathlib import Path
from typing import TYPE_CHECKING, TypeVar

from netsprint.agent.config import AgentConfig, PodsConfig
from netsprint.agent.runner import Agent, build_resolver
from netsprint.agent.server import MetricsServer
from netsprint.ebpf.loader import AS_ROOT
from netsprint.errors import CapabilityError
from netsprint.lab import LabError
from netsprint.lab.coturn import terminate

if TYPE_CHECKING:
    from netsprint.lab.pods import PodNode

T = TypeVar("T")

HOST = "127.0.0.1"
START_TIMEOUT = 30.0   # seconds for Prometheus to be ready and to scrape its target once
STOP_GRACE = 10.0      # seconds between SIGTERM (Prometheus flushes its TSDB) and SIGKILL
POLL_INTERVAL = 0.2    # seconds between two looks in wait_for
QUERY_TIMEOUT = 5.0    # seconds for one HTTP API answer
INSTALL_HINT = "install Debian's prometheus: `apt-get install prometheus`"


def free_port(host: str = HOST) -> int:
    """A TCP port free on `host` now (another program may still take it before we bind)."""
    with socket.socket() as sock:
        sock.bind((host, 0))
        return sock.getsockname()[1]


def wait_for(predicate: Callable[[], T], timeout: float, what: str,
             process: subprocess.Popen | None = None) -> T:
    """Call `predicate` every POLL_INTERVAL s until it returns something true; that value.
    LabError naming `what` after `timeout` s, or as soon as `process` (if given) exits."""
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        value = predicate()
        if value:
            return value
        if process is not None and process.poll() is not None:
            raise LabError(f"waiting for {what}: the process exited ({process.returncode})")
        time.sleep(POLL_INTERVAL)
    raise LabError(f"waited {timeout:g} s for {what}")


def query(prometheus: str, promql: str, at: float | None = None) -> list[dict]:
    """One instant query through the HTTP API (`/api/v1/query`), evaluated now or at unix
    time `at`: the result vector. LabError with Prometheus' own message when it refuses."""
    params = {"query": promql} | ({"time": f"{at:.3f}"} if at is not None else {})
    url = f"{prometheus}/api/v1/query?{urllib.parse.urlencode(params)}"
    try:
        with urllib.request.urlopen(url, timeout=QUERY_TIMEOUT) as response:
            return json.loads(response.read())["data"]["result"]
    except urllib.error.HTTPError as exc:   # 400 (bad PromQL), 422 (cannot evaluate)
        raise LabError(f"Prometheus refused {promql!r}: {exc.read().decode()[:300]}") from None


def by_label(result: list[dict], *labels: str) -> dict:
    """A query's result as {value of `label`: sample value}; with several labels the keys
    are tuples of their values. A label a series lacks counts as ""."""
    def key(metric: dict) -> str | tuple[str, ...]:
        values = tuple(metric.get(label, "") for label in labels)
        return values[0] if len(values) == 1 else values

    return {key(series["metric"]): float(series["value"][1]) for series in result}


def prometheus_config(target: str, interval: float) -> str:
    """prometheus.yml with one job, `agent`, scraping `target` (host:port)."""
    return (f"global: {{scrape_interval: {interval:g}s, scrape_timeout: {interval:g}s}}\n"
            "scrape_configs:\n"
            f"  - job_name: agent\n    static_configs: [{{targets: ['{target}']}}]\n")


def _ready(url: str) -> bool:
    try:
        with urllib.request.urlopen(url + "/-/ready", timeout=1) as response:
            return response.status == 200
    except OSError:          # not listening yet, or 503 while the TSDB opens
        return False


@contextlib.contextmanager
def running_prometheus(target: str, interval: float = 1.0,
                       timeout: float = START_TIMEOUT) -> Iterator[str]:
    """Prometheus scraping `target` (host:port) every `interval` s; yields its base URL once
    it has scraped once. Its config, TSDB and log live in a temporary directory."""
    binary = shutil.which("prometheus")
    if binary is None:
        raise CapabilityError("no `prometheus` binary", INSTALL_HINT)
    with tempfile.TemporaryDirectory(prefix="netsprint-prometheus-") as tmp:
        config = Path(tmp) / "prometheus.yml"
        config.write_text(prometheus_config(target, interval))
        url = f"http://{HOST}:{free_port()}"
        # Its log goes to a file, not a pipe: nobody reads a pipe, and a full one blocks it.
        with open(Path(tmp) / "prometheus.log", "w") as log:
            process = subprocess.Popen(
                [binary, f"--config.file={config}", f"--storage.tsdb.path={tmp}/tsdb",
                 f"--web.listen-address={url.removeprefix('http://')}"],
                stdout=subprocess.DEVNULL, stderr=log)
        try:
            _wait_started(url, process, timeout, Path(tmp) / "prometheus.log")
            yield url
        finally:
            terminate(process, STOP_GRACE)


def _wait_started(url: str, process: subprocess.Popen, timeout: float, log: Path) -> None:
    """Until Prometheus is ready and has scraped once; LabError with its log's tail if not."""
    try:
        wait_for(lambda: _ready(url), timeout, "Prometheus to be ready", process)
        # Target discovery hands its first update to the scrape loop after ~5 s: wait for
        # the first scrape, so traffic sent from now on falls between two samples.
        wait_for(lambda: query(url, "up"), timeout, "the first scrape", process)
    except LabError as exc:
        raise LabError(f"{exc}; Prometheus' log ends:\n{log.read_text()[-2000:]}") from None


def lab_config(node: PodNode) -> AgentConfig:
    """The agent's config for `node`: its pod map, maps read on every scrape, /metrics on a
    free loopback port."""
    return AgentConfig(listen=f"{HOST}:0", collect_interval=0,
                       pods=PodsConfig(source="lab", file=str(node.map_path)))


@contextlib.contextmanager
def agent_for(node: PodNode, config: AgentConfig | None = None,
              run_as: str | None = None) -> Iterator[MetricsServer]:
    """The real agent in this process for `node`'s pods (`lab_config(node)` unless `config`
    is given): probes attached, serving; yields its server (`.url`). `run_as` is the command
    the "needs root" message tells the learner to run."""
    from netsprint.agent.probes import AgentProbes  # imports bcc: only when an agent runs

    config = config or lab_config(node)
    probes = AgentProbes(run_as=run_as or AS_ROOT, max_flows=config.max_flows,
                         max_sockets=config.max_sockets)
    with Agent(config, probes, build_resolver(config.pods)) as agent:
        yield agent.start()


__all__ = ["agent_for", "by_label", "free_port", "lab_config", "prometheus_config", "query",
           "running_prometheus", "wait_for"]
