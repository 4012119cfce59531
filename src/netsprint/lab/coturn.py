"""Debian coturn as an outside referee: its `turnserver` and `turnutils_natdiscovery`.

`start_turnserver()` runs a STUN server we did not write, so our client can be checked
against it and our server can be checked by its client. `run_natdiscovery()` runs coturn's
RFC 5780 behaviour discovery and reads its verdict in the vocabulary our own detector uses
("endpoint-independent", "address-dependent", "address-and-port-dependent", "unknown").
"""

from __future__ import annotations

import re
import shutil
import signal
import socket
import subprocess
import tempfile
import time
from collections.abc import Callable
from dataclasses import dataclass, field
from pathlib import Path

from netsprint.errors import CapabilityError
from netsprint.lab import LabError
from netsprint.lab.topology import netns_argv, socket_in_netns
from netsprint.stun.client import binding_request
# One vocabulary with our own detector, so verdicts compare as plain strings.
from netsprint.stun.nat import (ADDRESS_AND_PORT_DEPENDENT, ADDRESS_DEPENDENT, BEHAVIOURS,
                                ENDPOINT_INDEPENDENT, UNKNOWN)

INSTALL_HINT = "install Debian's coturn: `apt-get install coturn` (scripts/provision.sh does)"
READY_TIMEOUT = 10.0  # seconds for turnserver to answer its first Binding request
STOP_GRACE = 3.0  # seconds between SIGTERM and SIGKILL
PROBE_INTERVAL = 0.1  # seconds one readiness probe waits for its answer
PORT_PAIR_TRIES = 50  # random port pairs free_port_pair tries before giving up


def _require(tool: str) -> str:
    path = shutil.which(tool)
    if path is None:
        raise CapabilityError(f"`{tool}` not found", INSTALL_HINT)
    return path


# --- turnserver ------------------------------------------------------------------------------

@dataclass
class TurnServer:
    """Owns one running `turnserver` process and its working directory (log, pidfile).

    It does not own the namespace it runs in. Use it as a context manager: leaving the block
    stops the process by its PID (SIGTERM, then SIGKILL after a grace period), even when the
    block raises. `alt_port` is the second port RFC 5780's CHANGE-REQUEST answers from.
    """

    ips: list[str]
    port: int
    alt_port: int
    netns: str | None
    workdir: Path
    process: subprocess.Popen
    owns_workdir: bool = False
    _stopped: bool = field(default=False, repr=False)

    @property
    def pid(self) -> int:
        return self.process.pid

    @property
    def address(self) -> tuple[str, int]:
        """The primary transport address (first IP, main port)."""
        return self.ips[0], self.port

    @property
    def log_path(self) -> Path:
        return self.workdir / "turnserver.log"

    def log_text(self) -> str:
        """The server's log and stderr so far (for failure messages)."""
        parts = []
        for path in (self.log_path, self.workdir / "stderr.txt"):
            if path.exists():
                parts.append(path.read_text(errors="replace"))
        return "\n".join(parts)

    def stop(self) -> None:
        """Terminate the process by PID; kill it if it ignores SIGTERM. Idempotent."""
        if self._stopped:
            return
        self._stopped = True
        try:
            terminate(self.process)
        finally:
            if self.owns_workdir:
                shutil.rmtree(self.workdir, ignore_errors=True)

    def __enter__(self) -> TurnServer:
        return self

    def __exit__(self, *exc_info: object) -> None:
        self.stop()


def terminate(process: subprocess.Popen, grace: float = STOP_GRACE) -> None:
    """Stop a child we started, by its PID: SIGTERM, SIGKILL after `grace` s, then reap it."""
    if process.poll() is not None:
        return
    process.send_signal(signal.SIGTERM)
    try:
        process.wait(timeout=grace)
    except subprocess.TimeoutExpired:
        process.kill()
        process.wait(timeout=grace)


def turnserver_argv(ips: list[str], port: int, workdir: Path, alt_port: int | None) -> list[str]:
    """The command line: no config file, STUN only, plain UDP/TCP, our log and pidfile.

    `-n` skips /etc/turnserver.conf, whose Debian default sets `no-rfc5780`; two
    `--listening-ip` give RFC 5780's second address (OTHER-ADDRESS, CHANGE-REQUEST).
    """
    argv = [_require("turnserver"), "-n", "--stun-only", "--no-tls", "--no-dtls", "--no-cli",
            "--listening-port", str(port)]
    for ip in ips:
        argv += ["--listening-ip", ip]
    if alt_port is not None:
        argv += ["--alt-listening-port", str(alt_port)]
    argv += ["--log-file", str(workdir / "turnserver.log"), "--simple-log", "--no-stdout-log",
             "--pidfile", str(workdir / "turnserver.pid")]
    return argv


def free_port_pair(ips: list[str]) -> int:
    """A port P with P and P+1 free now for UDP and TCP on every IP in `ips` (turnserver
    listens on both protocols, and on P+1 as its RFC 5780 alternate port).

    For shared hosts (loopback): inside a fresh lab namespace every port is free anyway.
    Another program may still take the pair before turnserver binds it; that shows as a
    `LabError` from `start_turnserver`, never as a hang.
    """
    for _ in range(PORT_PAIR_TRIES):
        with socket.socket(socket.AF_INET, socket.SOCK_DGRAM) as probe:
            probe.bind((ips[0], 0))
            port = probe.getsockname()[1]
        if port < 65535 and _ports_free(ips, (port, port + 1)):
            return port
    raise LabError(f"no free port pair on {', '.join(ips)} after {PORT_PAIR_TRIES} tries")


def _ports_free(ips: list[str], ports: tuple[int, ...]) -> bool:
    held: list[socket.socket] = []
    try:
        for kind in (socket.SOCK_DGRAM, socket.SOCK_STREAM):
            for ip in ips:
                for port in ports:
                    sock = socket.socket(socket.AF_INET, kind)
                    held.append(sock)
                    sock.bind((ip, port))
        return True
    except OSError:
        return False
    finally:
        for sock in held:
            sock.close()


def start_turnserver(ips: list[str], port: int = 3478, *, netns: str | None = None,
                     alt_port: int | None = None, log_dir: str | Path | None = None) -> TurnServer:
    """Start coturn's STUN server on `ips` (two IPs: RFC 5780) and wait until it answers.

    Runs inside `ip netns exec <netns>` when `netns` is given. The returned `TurnServer` is a
    context manager that stops the process. Raises `CapabilityError` when coturn is missing,
    `LabError` when the server exits or stays silent for `READY_TIMEOUT` seconds.
    """
    if not ips:
        raise ValueError("start_turnserver needs at least one listening IP")
    owns_workdir = log_dir is None
    workdir = Path(tempfile.mkdtemp(prefix="netsprint-turn-") if owns_workdir else log_dir)
    workdir.mkdir(parents=True, exist_ok=True)
    try:
        argv = netns_argv(netns, turnserver_argv(ips, port, workdir, alt_port))
    except CapabilityError:
        if owns_workdir:
            shutil.rmtree(workdir, ignore_errors=True)
        raise
    with open(workdir / "stderr.txt", "wb") as stderr:
        # Own session: a Ctrl-C meant for the test runner must not reach the server before
        # our clean-up does; we stop it ourselves by PID.
        process = subprocess.Popen(argv, stdin=subprocess.DEVNULL, stdout=subprocess.DEVNULL,
                                   stderr=stderr, start_new_session=True)
    server = TurnServer(list(ips), port, alt_port if alt_port is not None else port + 1,
                        netns, workdir, process, owns_workdir)
    try:
        wait_for_binding(server)
    except BaseException:
        server.stop()
        raise
    return server


def wait_for_binding(server: TurnServer, timeout: float = READY_TIMEOUT) -> None:
    """Probe the server with Binding requests until one is answered (bounded in time)."""
    wait_until_answering(server.address, server.process, netns=server.netns, timeout=timeout,
                         name="turnserver", log=server.log_text)


def wait_until_answering(address: tuple[str, int], process: subprocess.Popen, *,
                         netns: str | None = None, timeout: float = READY_TIMEOUT,
                         name: str = "the STUN server",
                         log: Callable[[], str] = lambda: "") -> None:
    """Probe `address` from `netns` with Binding requests until one is answered. LabError,
    with the tail of `log()`, when `process` (the server) exits first or `timeout` s pass."""
    deadline = time.monotonic() + timeout
    with socket_in_netns(netns) as sock:
        while time.monotonic() < deadline:
            if process.poll() is not None:
                raise LabError(f"{name} exited with status {process.returncode}:\n"
                               f"{log()[-2000:]}")
            if binding_answered(sock, address):
                return
    raise LabError(f"{name} on {address[0]}:{address[1]} did not answer a Binding request "
                   f"within {timeout:.0f} s:\n{log()[-2000:]}")


def binding_answered(sock: socket.socket, address: tuple[str, int]) -> bool:
    """One Binding request from `sock`; True if a success response comes within
    PROBE_INTERVAL. Silence and ICMP port-unreachable (not listening yet) are both False."""
    result = binding_request(address, sock=sock, timeout=PROBE_INTERVAL)
    return result is not None and result.ok


# --- turnutils_natdiscovery -----------------------------------------------------------------

@dataclass(frozen=True)
class NatDiscovery:
    """coturn's RFC 5780 verdict: mapping and filtering behaviour, plus what it saw.

    `nat_present` is False when coturn saw its own local address reflected (it can only
    tell when run with a local address, `-L`); `mapped_address` is the first reflexive
    address; `raw` keeps the whole output for reports.
    """

    mapping: str
    filtering: str
    raw: str
    rfc5780: bool = False
    nat_present: bool | None = None
    mapped_address: tuple[str, int] | None = None
    local_address: tuple[str, int] | None = None


# The verdict lines natdiscovery prints (coturn 4.6 src/apps/natdiscovery/natdiscovery.c).
_MAPPING_VERDICTS = {
    "NAT with Endpoint Independent Mapping!": ENDPOINT_INDEPENDENT,
    "NAT with Address Dependent Mapping!": ADDRESS_DEPENDENT,
    "NAT with Address and Port Dependent Mapping!": ADDRESS_AND_PORT_DEPENDENT,
}
_FILTERING_VERDICTS = {
    "NAT with Endpoint Independent Filtering!": ENDPOINT_INDEPENDENT,
    "NAT with Address Dependent Filtering!": ADDRESS_DEPENDENT,
    "NAT with Address and Port Dependent Filtering!": ADDRESS_AND_PORT_DEPENDENT,
}
_NO_NAT = "No NAT!"
_MAPPING_HEADER = "-= Mapping Behavior Discovery =-"
_FILTERING_HEADER = "-= Filtering Behavior Discovery =-"
_ADDRESS = r"[: ]+(\d{1,3}(?:\.\d{1,3}){3}):(\d+)"
_REFLEXIVE = re.compile(r"UDP reflexive addr" + _ADDRESS)
_LOCAL = re.compile(r"Local addr" + _ADDRESS)


def _section(text: str, header: str) -> str:
    """The part of natdiscovery's output after `header` up to the next `-= ... =-` header."""
    start = text.find(header)
    if start < 0:
        return ""
    body = text[start + len(header):]
    end = body.find("\n-= ")
    return body if end < 0 else body[:end]


def _verdict(section: str, verdicts: dict[str, str]) -> str:
    lines = {line.strip() for line in section.splitlines()}
    found = [behaviour for line, behaviour in verdicts.items() if line in lines]
    return found[0] if len(found) == 1 else UNKNOWN


def _first_address(pattern: re.Pattern, text: str) -> tuple[str, int] | None:
    match = pattern.search(text)
    return (match.group(1), int(match.group(2))) if match else None


def parse_natdiscovery(output: str) -> NatDiscovery:
    """Read `turnutils_natdiscovery -m -f` output; a missing or garbled verdict is "unknown"."""
    mapping_part = _section(output, _MAPPING_HEADER)
    filtering_part = _section(output, _FILTERING_HEADER)
    mapping = _verdict(mapping_part, _MAPPING_VERDICTS)
    filtering = _verdict(filtering_part, _FILTERING_VERDICTS)
    saw_result = mapping != UNKNOWN or filtering != UNKNOWN
    nat_present = False if _NO_NAT in output else (True if saw_result else None)
    first_part = mapping_part or filtering_part
    return NatDiscovery(
        mapping=mapping, filtering=filtering, raw=output,
        rfc5780="RFC 5780 response" in output, nat_present=nat_present,
        mapped_address=_first_address(_REFLEXIVE, first_part),
        local_address=_first_address(_LOCAL, first_part))


def natdiscovery_argv(server_ip: str, port: int, local_ip: str | None) -> list[str]:
    argv = [_require("turnutils_natdiscovery"), "-m", "-f", "-p", str(port)]
    if local_ip is not None:
        # With -L natdiscovery compares the reflexive address with a real local address,
        # so it can say "No NAT!"; without it the local address is 0.0.0.0.
        argv += ["-L", local_ip]
    return argv + [server_ip]


def run_natdiscovery(server_ip: str, port: int = 3478, *, netns: str | None = None,
                     local_ip: str | None = None, timeout: float = 60) -> NatDiscovery:
    """Run coturn's mapping (-m) and filtering (-f) discovery against `server_ip:port`.

    Each unanswered test costs natdiscovery a 3 s receive timeout, so a port-restricted
    NAT takes about 6 s. Raises `LabError` when it fails or runs longer than `timeout`.
    """
    argv = netns_argv(netns, natdiscovery_argv(server_ip, port, local_ip))
    try:
        done = subprocess.run(argv, capture_output=True, text=True, timeout=timeout,
                              stdin=subprocess.DEVNULL)
    except subprocess.TimeoutExpired as exc:
        raise LabError(f"turnutils_natdiscovery ran longer than {timeout:.0f} s") from exc
    if done.returncode != 0:
        raise LabError(f"turnutils_natdiscovery exited with {done.returncode}: "
                       f"{(done.stderr or done.stdout).strip()[-1000:]}")
    return parse_natdiscovery(done.stdout)


__all__ = [
    "ADDRESS_AND_PORT_DEPENDENT", "ADDRESS_DEPENDENT", "BEHAVIOURS", "ENDPOINT_INDEPENDENT",
    "NatDiscovery", "TurnServer", "UNKNOWN", "free_port_pair", "parse_natdiscovery",
    "run_natdiscovery", "start_turnserver", "terminate", "wait_until_answering",
]
