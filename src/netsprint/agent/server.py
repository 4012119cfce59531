"""The agent's HTTP endpoint: `/metrics` and `/healthz` on one port.

Why wsgiref + `make_wsgi_app` rather than prometheus_client's `start_http_server`: the
latter answers *every* path with the metrics and has no health endpoint. Wrapping
`make_wsgi_app(registry)` keeps what it does well (content negotiation: OpenMetrics when
the scraper's Accept header asks for it, gzip, `?name[]=` filtering) and adds `/healthz`
and a 404 for anything else. The server is single-threaded on purpose: scrapes are
serialised, so one scrape's map read and series admissions never interleave with another's
(a scrape takes milliseconds; a stalled client is cut off after `CLIENT_TIMEOUT`).
"""

from __future__ import annotations

import logging
import socket
import threading
from collections.abc import Callable, Iterable
from typing import Any
from wsgiref.simple_server import WSGIRequestHandler, WSGIServer, make_server

from prometheus_client import make_wsgi_app
from prometheus_client.registry import CollectorRegistry

log = logging.getLogger(__name__)

METRICS_PATH = "/metrics"
HEALTH_PATH = "/healthz"
CLIENT_TIMEOUT = 10.0  # seconds a client may take to send its request

# What /healthz asks: (healthy, reason). The reason is the 503 body ("ok" when healthy).
HealthCheck = Callable[[], tuple[bool, str]]


class _QuietHandler(WSGIRequestHandler):
    """Logs requests at DEBUG instead of writing every scrape to stderr."""

    timeout = CLIENT_TIMEOUT  # socketserver.StreamRequestHandler applies it to the socket

    def log_message(self, fmt: str, *args: Any) -> None:
        log.debug("%s %s", self.address_string(), fmt % args)


def agent_app(registry: CollectorRegistry, health: HealthCheck) -> Callable[..., Iterable[bytes]]:
    """The WSGI app: /metrics from `registry`, /healthz from `health`, 404 elsewhere."""
    metrics = make_wsgi_app(registry)

    def app(environ: dict[str, Any], start_response: Callable[..., Any]) -> Iterable[bytes]:
        path = environ.get("PATH_INFO", "")
        if path == METRICS_PATH:
            return metrics(environ, start_response)
        if path == HEALTH_PATH:
            return _health(health, start_response)
        start_response("404 Not Found", [("Content-Type", "text/plain; charset=utf-8")])
        return [f"not found: try {METRICS_PATH} or {HEALTH_PATH}\n".encode()]

    return app


def _health(health: HealthCheck, start_response: Callable[..., Any]) -> list[bytes]:
    healthy, reason = health()
    status = "200 OK" if healthy else "503 Service Unavailable"
    start_response(status, [("Content-Type", "text/plain; charset=utf-8")])
    return [(reason if not healthy else "ok").encode() + b"\n"]


class MetricsServer:
    """Serves the agent's app on (host, port) from a background thread. Owns the listening
    socket and that thread; does not own the registry. Port 0 picks a free port (`port`)."""

    def __init__(self, registry: CollectorRegistry, health: HealthCheck,
                 host: str = "127.0.0.1", port: int = 0) -> None:
        # Binding here, not in serve(): a busy port fails the start-up, with its errno.
        self._server: WSGIServer = make_server(host, port, agent_app(registry, health),
                                               server_class=_server_class(host),
                                               handler_class=_QuietHandler)
        self._thread: threading.Thread | None = None

    @property
    def host(self) -> str:
        return self._server.server_address[0]

    @property
    def port(self) -> int:
        return self._server.server_address[1]

    @property
    def url(self) -> str:
        host = f"[{self.host}]" if ":" in self.host else self.host
        return f"http://{host}:{self.port}"

    def serve(self) -> None:
        """Start answering requests (returns at once)."""
        if self._thread is not None:
            return
        self._thread = threading.Thread(target=self._server.serve_forever,
                                        kwargs={"poll_interval": 0.2},
                                        name="netsprint-agent-http", daemon=True)
        self._thread.start()

    def shutdown(self) -> None:
        """Stop serving and close the socket (the port is free when this returns)."""
        if self._thread is not None:
            self._server.shutdown()  # waits for serve_forever to return
            self._thread.join()
            self._thread = None
        self._server.server_close()

    def __enter__(self) -> MetricsServer:
        self.serve()
        return self

    def __exit__(self, *exc_info: object) -> None:
        self.shutdown()


class _IPv6WSGIServer(WSGIServer):
    address_family = socket.AF_INET6


def _server_class(host: str) -> type[WSGIServer]:
    """WSGIServer for the host's address family (wsgiref's binds IPv4 only)."""
    return _IPv6WSGIServer if ":" in host else WSGIServer
