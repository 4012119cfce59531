"""The agent as its own process (`python -m netsprint.agent`, the DaemonSet's command) for
the acceptance test; Prometheus and the waiting come from `netsprint.agent.promlab`."""

from __future__ import annotations

import contextlib
import subprocess
import sys
import urllib.request
from collections.abc import Iterator
from pathlib import Path

from netsprint.agent.promlab import HOST, free_port, wait_for
from netsprint.lab import LabError
from netsprint.lab.coturn import terminate

START_TIMEOUT = 60.0  # seconds: the agent compiles its BPF program before /healthz answers


def healthy(url: str) -> bool:
    try:
        with urllib.request.urlopen(url + "/healthz", timeout=2) as response:
            return response.status == 200
    except OSError:  # not listening yet, or 503 before the first map read
        return False


@contextlib.contextmanager
def running_agent(tmp: Path, pod_map: Path | None = None) -> Iterator[str]:
    """`python -m netsprint.agent` with a config file reading `pod_map` (or no pods) on each
    scrape; yields its base URL once /healthz is 200, stops it by PID afterwards."""
    config = tmp / "agent.yaml"
    pods = f"pods: {{source: lab, file: '{pod_map}'}}\n" if pod_map else "pods: {source: none}\n"
    config.write_text(f"collect_interval: 0\n{pods}")
    url = f"http://{HOST}:{free_port()}"
    log = tmp / "agent.log"
    with open(log, "w") as stderr:
        process = subprocess.Popen(
            [sys.executable, "-m", "netsprint.agent", "--config", str(config),
             "--listen", url.removeprefix("http://")], stdout=subprocess.DEVNULL, stderr=stderr)
    try:
        try:
            wait_for(lambda: healthy(url), START_TIMEOUT, "agent /healthz", process)
        except LabError as exc:
            raise AssertionError(f"{exc}; the agent's log:\n{log.read_text()[-2000:]}") from None
        yield url
    finally:
        terminate(process, 10.0)
