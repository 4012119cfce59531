"""`netsprint signal-server`: run the signaling server until Ctrl-C (or SIGTERM)."""

from __future__ import annotations

import ipaddress
import logging
from typing import Any

from netsprint.config import load_config
from netsprint.errors import NetsprintError, ReactorError
from netsprint.log import setup_logging
from netsprint.p2p.relay import RelayLimits
from netsprint.reactor.addresses import short_addr
from netsprint.reactor.signals import StopOnSignals
from netsprint.reactor.loop import EventLoop
from netsprint.signaling.server import SignalingServer

log = logging.getLogger(__name__)

SUMMARY_COUNTERS = ("connections_opened", "registered", "frames_in", "forwarded", "errors",
                    "expired", "closed_slow", "closed_frame_too_large")
# With --relay: what it granted, carried, and refused to carry (the open-relay guards).
RELAY_SUMMARY_COUNTERS = ("relay_granted", "relay.bound", "relay.relayed_packets",
                          "relay.relayed_bytes", "relay.dropped_bad_token",
                          "relay.dropped_unbound", "relay.dropped_over_rate")


class SignalServerArgumentError(NetsprintError, ValueError):
    """A command-line value the signal server cannot use (a bad --listen, a negative timeout)."""


def parse_listen(text: str) -> tuple[str, int]:
    """'127.0.0.1:7001', '[::1]:7001' or 'localhost:7001' -> (host, port)."""
    host, sep, port_text = text.rpartition(":")
    if not sep or not host:
        raise SignalServerArgumentError(f"--listen {text!r}: expected HOST:PORT, "
                                        "e.g. 127.0.0.1:7001")
    if not port_text.isdigit() or not 0 <= int(port_text) <= 65535:
        raise SignalServerArgumentError(f"--listen {text!r}: the port must be a number "
                                        "0..65535")
    bracketed = host.startswith("[") and host.endswith("]")
    if bracketed:
        host = host[1:-1]
    if bracketed or ":" in host:
        # An IPv6 address has colons of its own, so it must come in brackets.
        if not bracketed or not _is_ipv6(host):
            raise SignalServerArgumentError(f"--listen {text!r}: write an IPv6 address in "
                                            "brackets, e.g. [::1]:7001")
    return host, int(port_text)


def _is_ipv6(host: str) -> bool:
    try:
        ipaddress.IPv6Address(host)
    except ValueError:
        return False
    return True


def run_signal_server(args: Any) -> int:
    """Serve until interrupted; print a one-line stats summary. Returns the exit status."""
    host, port = parse_listen(args.listen)
    if args.heartbeat_timeout <= 0:
        raise SignalServerArgumentError("--heartbeat-timeout must be > 0 seconds")
    if args.max_frame_bytes < 1:
        raise SignalServerArgumentError("--max-frame-bytes must be >= 1")
    relay_limits = _relay_limits(args)
    setup_logging()
    with EventLoop() as loop:
        try:
            server = SignalingServer(loop, host, port, heartbeat_timeout=args.heartbeat_timeout,
                                     max_frame_bytes=args.max_frame_bytes,
                                     relay_limits=relay_limits)
        except OSError as exc:  # EADDRINUSE, EACCES: one line, not a traceback
            raise ReactorError(f"cannot listen on {args.listen}: {exc.strerror or exc}") from exc
        log.info("signaling server listening on %s (heartbeat timeout %.1f s, frames up to "
                 "%d bytes)", short_addr(server.sockname), args.heartbeat_timeout,
                 args.max_frame_bytes)
        if relay_limits is not None:
            log.info("UDP relay on the same port: at most %d sessions, %.0f s each, "
                     "%.0f bytes/s per direction", relay_limits.max_allocations,
                     relay_limits.lifetime, relay_limits.rate_bytes_per_second)
        try:
            with StopOnSignals(loop):
                loop.run_forever()
        finally:
            server.close()
            loop.run_once(0)  # deliver connection_lost to the aborted connections
    print("netsprint signal server stopped: "
          + summary(server.stats, relay=relay_limits is not None), flush=True)
    return 0


def _relay_limits(args: Any) -> RelayLimits | None:
    """The relay's limits (from --config's [relay] section) with --relay, else None."""
    if not getattr(args, "relay", False):
        return None
    return load_config(args.config).relay


def summary(stats: dict[str, int], *, relay: bool = False) -> str:
    """'connections_opened=3 registered=2 ...' (the counters people ask about first), and
    the relay's with `relay`."""
    names = SUMMARY_COUNTERS + (RELAY_SUMMARY_COUNTERS if relay else ())
    return " ".join(f"{name}={stats.get(name, 0)}" for name in names)
