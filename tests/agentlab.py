"""Running the real agent and a real Prometheus for tests and benchmarks: both are child
processes on loopback, stopped by PID when the `with` ends (even on failure)."""

from __future__ import annotations

import contextlib
import json
import signal
import socket
import subprocess
import sys
import time
import urllib.parse
import urllib.request
from pathlib import Path
from typing import Iterator

HOST = "127.0.0.1"


def free_port() -> int:
    with socket.socket() as s:
        s.bind((HOST, 0))
        return s.getsockname()[1]


def http_get(url: str, timeout: float = 2.0) -> tuple[int, str]:
    try:
        with urllib.request.urlopen(url, timeout=timeout) as response:
            return response.status, response.read().decode()
    except urllib.error.HTTPError as exc:
        return exc.code, exc.read().decode()
    except OSError:
        return 0, ""


def wait_until(predicate, timeout: float, what: str, process: subprocess.Popen | None = None):
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        value = predicate()
        if value:
            return value
        if process is not None and process.poll() is not None:
            raise AssertionError(f"{what}: the process exited with {process.returncode}: "
                                 f"{process.stderr.read() if process.stderr else ''}")
        time.sleep(0.1)
    raise AssertionError(f"{what}: not within {timeout:g} s")


def stop(process: subprocess.Popen, timeout: float = 10.0) -> int:
    """SIGTERM, then SIGKILL after `timeout`; returns the exit code."""
    if process.poll() is None:
        process.send_signal(signal.SIGTERM)
        try:
            process.wait(timeout)
        except subprocess.TimeoutExpired:
            process.kill()
            process.wait()
    return process.returncode


@contextlib.contextmanager
def running_agent(tmp: Path, pod_map: Path | None = None,
                  extra: str = "") -> Iterator[tuple[str, subprocess.Popen]]:
    """The agent as `python -m netsprint.agent`; yields its base URL once /healthz is 200."""
    port = free_port()
    config = tmp / "agent.yaml"
    pods = f"pods: {{source: lab, file: {pod_map}}}\n" if pod_map else "pods: {source: none}\n"
    config.write_text(f"collect_interval: 0\n{pods}{extra}")
    process = subprocess.Popen(
        [sys.executable, "-m", "netsprint.agent", "--config", str(config),
         "--listen", f"{HOST}:{port}"],
        stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True)
    url = f"http://{HOST}:{port}"
    try:
        wait_until(lambda: http_get(url + "/healthz")[0] == 200, 60, "agent /healthz", process)
        yield url, process
    finally:
        stop(process)


@contextlib.contextmanager
def running_prometheus(tmp: Path, target: str,
                       interval: float = 1.0) -> Iterator[str]:
    """Debian's prometheus scraping `target` (host:port) every `interval` s; yields its URL."""
    port = free_port()
    config = tmp / "prometheus.yml"
    config.write_text(
        f"global: {{scrape_interval: {interval:g}s, scrape_timeout: {interval:g}s}}\n"
        "scrape_configs:\n"
        f"  - job_name: agent\n    static_configs: [{{targets: ['{target}']}}]\n")
    process = subprocess.Popen(
        ["prometheus", f"--config.file={config}", f"--storage.tsdb.path={tmp / 'tsdb'}",
         f"--web.listen-address={HOST}:{port}"],
        stdout=subprocess.DEVNULL, stderr=subprocess.PIPE, text=True)
    url = f"http://{HOST}:{port}"
    try:
        wait_until(lambda: http_get(url + "/-/ready")[0] == 200, 60, "prometheus ready",
                   process)
        yield url
    finally:
        stop(process)


def query(prometheus: str, promql: str) -> list[dict]:
    """An instant query through the HTTP API: the result vector."""
    status, body = http_get(f"{prometheus}/api/v1/query?"
                            + urllib.parse.urlencode({"query": promql}))
    if status != 200:
        raise AssertionError(f"query {promql!r}: HTTP {status}: {body[:300]}")
    return json.loads(body)["data"]["result"]


def by_label(result: list[dict], label: str) -> dict[str, float]:
    return {r["metric"].get(label, ""): float(r["value"][1]) for r in result}
