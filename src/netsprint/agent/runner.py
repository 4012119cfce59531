"""`netsprint agent`: probes + pod resolver + collectors + /metrics server, until a signal.

`Agent` is the wiring, testable with any `SnapshotSource` and `PodResolver`; `run(args)` /
`main(argv)` build the real ones (`AgentProbes`, the configured pod source), lazily, so
this module imports without bcc.
"""

from __future__ import annotations

import argparse
import dataclasses
import logging
import signal
import sys
import threading
from collections.abc import Callable
from pathlib import Path

from prometheus_client.registry import CollectorRegistry

from netsprint.agent.collectors import AgentCollector, SnapshotReader, TcpCollector
from netsprint.agent.config import AgentConfig, PodsConfig, load_agent_config, parse_listen
from netsprint.agent.labels import LabelPolicy
from netsprint.agent.model import PodRef, PodResolver, SnapshotSource, close_if_closable
from netsprint.agent.server import MetricsServer
from netsprint.errors import NetsprintError
from netsprint.log import setup_logging

log = logging.getLogger(__name__)

STOP_SIGNALS = (signal.SIGINT, signal.SIGTERM)


class AgentError(NetsprintError):
    """The agent cannot start: its port is taken, or the pod source cannot be opened."""


class NoPods:
    """The resolver for `pods.source: none`: no address or cgroup is a pod, so local
    sockets are "host" and peers "external"."""

    def local_pod(self, cgroup_id: int, local_ip: str) -> PodRef | None:
        return None

    def peer_pod(self, ip: str) -> PodRef | None:
        return None


class Agent:
    """Wires a snapshot source and a pod resolver to the collectors, a private registry and
    the HTTP server. Owns all of them: `stop()` shuts the server and closes the source and
    the resolver (whichever have a `close()`), once, even if `start()` never ran."""

    def __init__(self, config: AgentConfig, source: SnapshotSource, resolver: PodResolver,
                 version: str | None = None) -> None:
        self.config = config
        self.source, self.resolver = source, resolver
        self.reader = SnapshotReader(source, on_scrape=config.collect_interval == 0)
        policy = LabelPolicy(config.peer_label, config.raw_ips)
        self.tcp = TcpCollector(self.reader, resolver, policy, config.max_series)
        self.registry = CollectorRegistry()
        self.registry.register(self.tcp)  # first: the scrape's map read happens here
        self.registry.register(AgentCollector(self.reader, self.tcp, version))
        self.server: MetricsServer | None = None
        self._stopping = threading.Event()
        self._scheduler: threading.Thread | None = None
        self._stopped = False

    def health(self) -> tuple[bool, str]:
        """(healthy, reason) for /healthz: probes attached and the last read succeeded."""
        last = self.reader.last
        if last is None:
            return False, "no collect yet"
        if last.snapshot is None:
            return False, f"last collect failed: {last.error}"
        if last.snapshot.probes_attached < 1:
            return False, "no probes attached"
        return True, "ok"

    def start(self) -> MetricsServer:
        """Read the maps once (so /healthz knows), bind, serve; schedule reads if configured."""
        host, port = self.config.listen_address
        self.reader.read()
        try:
            self.server = MetricsServer(self.registry, self.health, host, port)
        except OSError as exc:  # EADDRINUSE, EACCES, an address not on this host
            raise AgentError(f"cannot listen on {self.config.listen}: "
                             f"{exc.strerror or exc}") from exc
        if self.config.collect_interval > 0:
            self._scheduler = threading.Thread(target=self._read_on_schedule,
                                               name="netsprint-agent-collect", daemon=True)
            self._scheduler.start()
        self.server.serve()
        log.info("agent serving %s/metrics (%s)", self.server.url, self.health()[1])
        return self.server

    def _read_on_schedule(self) -> None:
        while not self._stopping.wait(self.config.collect_interval):
            self.reader.read()

    def wait(self, stop: threading.Event) -> None:
        """Serve until `stop` is set (a signal handler, or a test)."""
        # A timed wait: the main thread runs signal handlers between waits on any Python.
        while not stop.wait(0.5):
            pass

    def stop(self) -> None:
        """Graceful shutdown: stop reading, stop serving, detach the probes. Idempotent."""
        if self._stopped:
            return
        self._stopped = True
        self._stopping.set()
        if self._scheduler is not None:
            self._scheduler.join()
        if self.server is not None:
            self.server.shutdown()
        try:
            close_if_closable(self.source)  # detaches every tracepoint program
        finally:
            close_if_closable(self.resolver)
        log.info("agent stopped")

    def __enter__(self) -> Agent:
        return self

    def __exit__(self, *exc_info: object) -> None:
        self.stop()


# --- building the real parts ----------------------------------------------------------------

def build_probes(config: AgentConfig) -> SnapshotSource:
    """The BPF probes (bcc is imported only here); BpfLoadError says what is missing."""
    from netsprint.agent.probes import AgentProbes

    return AgentProbes(max_flows=config.max_flows, max_sockets=config.max_sockets)


def build_resolver(pods: PodsConfig) -> PodResolver:
    """The pod resolver `pods.source` names (netsprint.agent.pods, imported lazily)."""
    if pods.source == "none":
        return NoPods()
    from netsprint.agent import pods as pod_sources

    if pods.source == "lab":
        return pod_sources.LabPods(Path(pods.file))
    return pod_sources.kubernetes_resolver()  # cgroup first, then the API server's pods


def stop_event_on_signals() -> tuple[threading.Event, Callable[[], None]]:
    """An Event SIGINT/SIGTERM set, and a function that puts the old handlers back."""
    stop = threading.Event()
    previous = {signum: signal.signal(signum, lambda *_: stop.set()) for signum in STOP_SIGNALS}

    def restore() -> None:
        for signum, handler in previous.items():
            signal.signal(signum, handler)

    return stop, restore


def serve_until_signal(agent: Agent) -> None:
    """Start `agent`, serve until SIGINT/SIGTERM, then stop it (also on any failure)."""
    stop, restore = stop_event_on_signals()
    try:
        agent.start()
        agent.wait(stop)
    finally:
        restore()
        agent.stop()


# --- the command line ------------------------------------------------------------------------

def add_arguments(parser: argparse.ArgumentParser) -> None:
    parser.add_argument("--config", type=Path, default=None, metavar="FILE",
                        help="the agent's YAML config (docs/agent.md); default: all defaults")
    parser.add_argument("--listen", default=None, metavar="HOST:PORT",
                        help="where to serve /metrics and /healthz (overrides the config's "
                             "`listen`)")


def load_config_for(args: argparse.Namespace) -> AgentConfig:
    """The config file's settings, `--listen` winning; ConfigError naming the key if wrong."""
    config = load_agent_config(args.config)
    if args.listen is not None:
        parse_listen(args.listen)
        config = dataclasses.replace(config, listen=args.listen)
    return config


def run(args: argparse.Namespace) -> int:
    """`netsprint agent`: serve until a signal. NetsprintError (config, BPF) propagates for
    the CLI to print as one line with exit status 2."""
    config = load_config_for(args)
    setup_logging(config.log_level)
    resolver = build_resolver(config.pods)
    source = None
    try:
        source = build_probes(config)
        agent = Agent(config, source, resolver)
    except BaseException:  # nothing owns them yet: close what was built, then re-raise
        close_if_closable(source)
        close_if_closable(resolver)
        raise
    serve_until_signal(agent)
    return 0


def main(argv: list[str] | None = None) -> int:
    """A standalone entry point (e.g. a container's): like `netsprint agent`, errors as one
    line on stderr with exit status 2."""
    parser = argparse.ArgumentParser(prog="netsprint agent",
                                     description="eBPF TCP metrics for Prometheus")
    add_arguments(parser)
    args = parser.parse_args(argv)
    try:
        return run(args)
    except NetsprintError as exc:  # ConfigError, BpfLoadError (with its hint), AgentError
        print(f"netsprint agent: {exc}", file=sys.stderr)
        return 2
