"""`netsprint lab up|down|nat|shell|classify|matrix`: the NAT lab from the command line (root).

`up` builds a named lab and remembers it in /run/netsprint/labs/<name>.json, so later
invocations (`nat`, `shell`, `down`) find it. `classify` builds its own throw-away lab and
puts our NAT detector (`netsprint nat-type`) beside coturn's `turnutils_natdiscovery`
behind every NAT type; it exits 1 when any verdict disagrees. `matrix` connects two
peers behind every pair of NAT types (`netsprint.lab.matrix`); it exits 1 when a cell does
not connect or takes another path than theory says.
"""

from __future__ import annotations

import argparse
import json
import os
import subprocess
import sys
from concurrent.futures import ThreadPoolExecutor
from dataclasses import asdict, dataclass

from rich.console import Console
from rich.table import Table

from netsprint.errors import NetsprintError
from netsprint.lab import LabError
from netsprint.lab.coturn import NatDiscovery, run_natdiscovery, start_turnserver
from netsprint.lab.nat_types import EXPECTED_BEHAVIOUR, NAT_TYPES, check_nat_type
from netsprint.lab.topology import (NODES, PLAN, SIDES, STUN_PORT, NatLab, check_root,
                                    lab_names, netns_argv)

DETECTOR_TEST_TIMEOUT = 2.0  # seconds per RFC 5780 test: the lab's links answer in < 1 ms
DETECTOR_RUN_TIMEOUT = 60.0  # seconds for one whole `netsprint nat-type` run

# The RFC 3489 class our detector should name behind each lab type.
EXPECTED_CLASS = {
    "none": "open-internet",
    "full-cone": "full-cone",
    "restricted": "restricted-cone",
    "port-restricted": "port-restricted-cone",
    "symmetric": "symmetric",
}


def run(args: argparse.Namespace) -> int:
    """Dispatch `netsprint lab <command>`; every command needs root."""
    check_root()
    from netsprint.lab import pods_command

    handlers = {"up": lab_up, "down": lab_down, "nat": lab_nat, "shell": lab_shell,
                "classify": lab_classify, "matrix": lab_matrix, "pods": pods_command.run}
    try:
        return handlers[args.lab_command](args)
    except NetsprintError:
        raise
    except ValueError as exc:
        # The lab's own ValueErrors are argument checks (NAT type, lab name, node, side):
        # the CLI shows them as one line, like every other NetsprintError.
        raise LabError(str(exc)) from exc


# --- up / down / nat / shell -------------------------------------------------------------------

def lab_up(args: argparse.Namespace) -> int:
    lab = NatLab(args.name, args.nat_a, args.nat_b).up()
    console = Console()
    console.print(topology_table(lab))
    console.print(next_steps(lab), soft_wrap=True)
    return 0


def topology_table(lab: NatLab) -> Table:
    table = Table(title=f"NAT lab {lab.name!r}")
    for column in ("node", "namespace", "address", "role"):
        table.add_column(column)
    roles = {"internet": f"bridge br0; STUN addresses {', '.join(lab.stun_addresses)}"}
    for side in SIDES:
        loss = f", loss {lab.loss[side]:g} %" if lab.loss[side] else ""
        roles[f"nat-{side}"] = f"router, NAT {lab.nat[side]}, LAN {PLAN[side].lan_prefix}{loss}"
        roles[f"peer-{side}"] = f"host behind nat-{side} (gateway {PLAN[side].gateway_ip})"
    for node in NODES:
        table.add_row(node, lab.netns(node), lab.address(node), roles[node])
    return table


def next_steps(lab: NatLab) -> str:
    name = "" if lab.name == "ns" else f" --name {lab.name}"
    primary, alternate = lab.stun_addresses
    return "\n".join([
        "Next:",
        f"  netsprint lab shell internet{name} -- turnserver -n --stun-only --no-cli "
        f"--listening-ip {primary} --listening-ip {alternate}",
        f"  netsprint lab shell peer-a{name} -- netsprint nat-type --server {primary}:{STUN_PORT}",
        f"  netsprint lab nat symmetric --side a{name}",
        f"  netsprint lab shell peer-a{name}        (a shell inside peer-a)",
        f"  netsprint lab down{name}",
    ])


def lab_down(args: argparse.Namespace) -> int:
    names = lab_names() if args.all else [args.name]
    for name in names:
        known = name in lab_names()
        # Without a state file there may still be namespaces of that name to remove.
        lab = NatLab.load(name) if known else NatLab(name)
        lab.down()
        print(f"lab {name!r} removed" if known else f"no lab named {name!r} (nothing left)")
    if args.all and not names:
        print("no netsprint labs on this machine")
    return 0


def lab_nat(args: argparse.Namespace) -> int:
    lab = NatLab.load(args.name)
    lab.set_nat(args.side, args.type)  # refuses an unknown type before touching the router
    print(f"lab {lab.name!r}: nat-{args.side} is now {args.type}")
    return 0


def split_shell_command(name: str, command: list[str]) -> tuple[str, list[str]]:
    """The lab name and the command from `shell`'s remainder arguments.

    argparse hands everything after NODE to the command, so `shell peer-a --name x -- cmd`
    arrives as `cmd == ["--name", "x", "--", "cmd"]`: a leading `--name` still names the
    lab, and a `--` ends the options.
    """
    while command[:1] == ["--name"] and len(command) >= 2:
        name, command = command[1], command[2:]
    if command[:1] == ["--"]:
        command = command[1:]
    return name, command


def shell_argv(lab: NatLab, node: str, command: list[str]) -> list[str]:
    """`ip netns exec <node's namespace> COMMAND` (default: the user's $SHELL)."""
    return netns_argv(lab.netns(node), command or [os.environ.get("SHELL", "/bin/sh")])


def lab_shell(args: argparse.Namespace) -> int:
    name, command = split_shell_command(args.name, list(args.cmd))
    argv = shell_argv(NatLab.load(name), args.node, command)
    sys.stdout.flush()
    os.execvp(argv[0], argv)  # replaces this process: the shell gets the terminal


# --- classify -------------------------------------------------------------------------------------

@dataclass(frozen=True)
class Verdict:
    """One row of `classify`: what coturn and our detector said behind one lab NAT type."""

    lab_type: str
    expected_mapping: str
    expected_filtering: str
    coturn_mapping: str
    coturn_filtering: str
    netsprint_mapping: str
    netsprint_filtering: str
    netsprint_class: str
    error: str = ""

    @property
    def disagreement(self) -> str:
        """Why this row fails, or "" when ours matches coturn's, coturn's matches the
        recipe, and our class is the one the recipe builds."""
        coturn = (self.coturn_mapping, self.coturn_filtering)
        if self.error:
            return self.error
        if coturn != (self.expected_mapping, self.expected_filtering):
            return f"coturn saw {_short(*coturn)}, the recipe builds " \
                   f"{_short(self.expected_mapping, self.expected_filtering)}"
        if (self.netsprint_mapping, self.netsprint_filtering) != coturn:
            return "netsprint differs from coturn"
        if self.netsprint_class != EXPECTED_CLASS[self.lab_type]:
            return f"class should be {EXPECTED_CLASS[self.lab_type]}"
        return ""

    @property
    def agree(self) -> bool:
        return not self.disagreement

    def to_dict(self) -> dict:
        return {**asdict(self), "agree": self.agree, "disagreement": self.disagreement}


def make_verdict(lab_type: str, coturn: NatDiscovery, ours: dict | None,
                 error: str = "") -> Verdict:
    ours = ours or {}
    expected_mapping, expected_filtering = EXPECTED_BEHAVIOUR[lab_type]
    return Verdict(lab_type, expected_mapping, expected_filtering,
                   coturn.mapping, coturn.filtering,
                   ours.get("mapping", "-"), ours.get("filtering", "-"),
                   ours.get("nat_type", "-"), error)


def detect_with_netsprint(lab: NatLab, stun_ip: str) -> dict:
    """Our detector from peer-a: `python -m netsprint nat-type --json` in its namespace."""
    argv = [sys.executable, "-m", "netsprint", "nat-type", "--server", f"{stun_ip}:{STUN_PORT}",
            "--json", "--timeout", str(DETECTOR_TEST_TIMEOUT)]
    try:
        done = lab.run("peer-a", argv, capture_output=True, text=True,
                       timeout=DETECTOR_RUN_TIMEOUT, stdin=subprocess.DEVNULL)
    except subprocess.TimeoutExpired as exc:
        raise LabError(f"netsprint nat-type ran longer than {DETECTOR_RUN_TIMEOUT:.0f} s") from exc
    if done.returncode != 0:
        raise LabError(f"netsprint nat-type exited with {done.returncode}: "
                       f"{(done.stderr or done.stdout).strip()[-500:]}")
    try:
        return json.loads(done.stdout)
    except json.JSONDecodeError as exc:
        raise LabError(f"netsprint nat-type printed no JSON: {done.stdout[:200]!r}") from exc


def classify_one(lab: NatLab, lab_type: str) -> Verdict:
    """Both detectors at once behind `lab_type`: each uses its own sockets, hence its own
    NAT flows, and their unanswered tests' timeouts overlap instead of adding up."""
    lab.set_nat("a", lab_type)
    stun_ip = lab.stun_addresses[0]
    with ThreadPoolExecutor(max_workers=2) as pool:
        coturn_job = pool.submit(run_natdiscovery, stun_ip, STUN_PORT,
                                 netns=lab.netns("peer-a"), local_ip=lab.address("peer-a"))
        ours_job = pool.submit(detect_with_netsprint, lab, stun_ip)
        coturn = coturn_job.result()
        try:
            ours = ours_job.result()
        except LabError as exc:
            return make_verdict(lab_type, coturn, None, str(exc))
    return make_verdict(lab_type, coturn, ours)


def classify(types: list[str], progress=None) -> list[Verdict]:
    """Build a lab, start coturn in its internet, and judge each NAT type in turn.

    `progress(message)` is told what runs now (the CLI shows it as a rich status line).
    """
    tell = progress or (lambda message: None)
    tell("building the lab")
    with NatLab(nat_a=types[0]) as lab:
        tell("starting coturn's turnserver")
        with start_turnserver(list(lab.stun_addresses), STUN_PORT, netns=lab.netns("internet")):
            verdicts = []
            for lab_type in types:
                tell(f"{lab_type}: coturn natdiscovery and netsprint nat-type from peer-a")
                verdicts.append(classify_one(lab, lab_type))
    return verdicts


# Short forms keep the table inside 80 columns; the caption spells them out.
ABBREVIATIONS = {"endpoint-independent": "EI", "address-dependent": "AD",
                 "address-and-port-dependent": "APD", "unknown": "?"}


def _short(mapping: str, filtering: str) -> str:
    return f"{ABBREVIATIONS.get(mapping, mapping)} / {ABBREVIATIONS.get(filtering, filtering)}"


def verdict_table(verdicts: list[Verdict]) -> Table:
    table = Table(title="NAT types: coturn's natdiscovery vs netsprint nat-type, from peer-a",
                  caption="mapping / filtering: EI endpoint-independent, AD address-dependent, "
                          "APD address-and-port-dependent")
    for column in ("lab type", "coturn", "netsprint", "netsprint class", "agree"):
        table.add_column(column)
    for v in verdicts:
        agree = "[green]yes[/]" if v.agree else f"[red]no[/]: {v.disagreement}"
        table.add_row(v.lab_type, _short(v.coturn_mapping, v.coturn_filtering),
                      _short(v.netsprint_mapping, v.netsprint_filtering), v.netsprint_class,
                      agree)
    return table


def lab_classify(args: argparse.Namespace) -> int:
    types = [check_nat_type(t) for t in (args.types or NAT_TYPES)]
    status_console = Console(stderr=True)  # progress on stderr keeps --json's stdout clean
    with status_console.status("classify") as status:
        verdicts = classify(types, status.update)
    if args.json:
        print(json.dumps([v.to_dict() for v in verdicts], indent=2))
    else:
        Console().print(verdict_table(verdicts))
    return 0 if all(v.agree for v in verdicts) else 1


# --- matrix -------------------------------------------------------------------------------------

def matrix_table(cells: list, title: str) -> Table:
    table = Table(title=title,
                  caption="path (time to connect); * where theory expects another path")
    types = list(dict.fromkeys(c.nat_a for c in cells))
    table.add_column("a \\ b")
    for nat_b in dict.fromkeys(c.nat_b for c in cells):
        table.add_column(nat_b)
    for nat_a in types:
        row = [nat_a]
        for cell in (c for c in cells if c.nat_a == nat_a):
            row.append(_cell_text(cell))
        table.add_row(*row)
    return table


def _cell_text(cell) -> str:
    if not cell.connected:
        return f"[red]failed[/]: {cell.error or 'no path'}"
    mark = "" if cell.as_expected else "[red]*[/]"
    colour = "green" if cell.path == "direct" else "yellow"
    return f"[{colour}]{cell.path}[/]{mark} ({cell.time_to_connect * 1000:.0f} ms)"


def lab_matrix(args: argparse.Namespace) -> int:
    from netsprint.lab import matrix

    types = tuple(check_nat_type(t) for t in (args.types or NAT_TYPES))
    status_console = Console(stderr=True)  # progress on stderr keeps --json's stdout clean
    with status_console.status("matrix") as status:
        if args.birthday_trials:
            cells = matrix.birthday_trials(args.birthday_trials, progress=status.update)
        else:
            cells = matrix.run_matrix(types, progress=status.update)
    figures = matrix.summary(cells)
    if args.json:
        print(json.dumps({"summary": figures, "cells": [c.to_dict() for c in cells]}, indent=2))
    elif args.birthday_trials:
        print(f"birthday mode, symmetric <-> port-restricted: {figures['direct']} of "
              f"{figures['cells']} trials direct, {figures['relay']} via relay")
    else:
        Console().print(matrix_table(cells, "Two peers behind every pair of NAT types"))
        print(json.dumps(figures))
    if args.birthday_trials:
        return 0 if figures["connected"] == figures["cells"] else 1
    return 0 if figures["as_expected"] == figures["cells"] else 1
