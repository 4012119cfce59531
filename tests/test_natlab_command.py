"""`netsprint lab up|down|nat|shell|classify`."""

from __future__ import annotations

import argparse
import json
import os
import subprocess
import sys

import pytest
from labutil import host_snapshot, lab_traces, require_coturn, require_lab
from rich.console import Console

from netsprint.errors import CapabilityError
from netsprint.lab import LabError, command, matrix, topology
from netsprint.lab.command import make_verdict, split_shell_command, verdict_table
from netsprint.lab.coturn import NatDiscovery
from netsprint.lab.matrix import Cell
from netsprint.lab.nat_types import NAT_TYPES
from netsprint.lab.topology import NatLab, random_lab_name

EI, AD, APD = "endpoint-independent", "address-dependent", "address-and-port-dependent"


def netsprint(*argv: str, timeout: float = 60) -> subprocess.CompletedProcess:
    return subprocess.run([sys.executable, "-m", "netsprint", *argv], capture_output=True,
                          text=True, timeout=timeout, stdin=subprocess.DEVNULL)


def lab_args(**fields) -> argparse.Namespace:
    return argparse.Namespace(**{"name": "ns", "all": False, **fields})


# --- unit ---------------------------------------------------------------------------------------

@pytest.mark.unit
def test_every_command_needs_root(monkeypatch):
    monkeypatch.setattr(os, "geteuid", lambda: 1000)
    with pytest.raises(CapabilityError, match="root") as caught:
        command.run(lab_args(lab_command="up", nat_a="none", nat_b="none"))
    assert "sudo" in caught.value.hint


@pytest.mark.unit
@pytest.mark.parametrize(("name", "rest", "expected"), [
    ("ns", [], ("ns", [])),
    ("ns", ["--", "ip", "addr"], ("ns", ["ip", "addr"])),
    ("ns", ["--name", "lab2", "--", "ip", "-4", "addr"], ("lab2", ["ip", "-4", "addr"])),
    ("ns", ["--name", "lab2"], ("lab2", [])),
    ("ns", ["sh", "-c", "echo --name x"], ("ns", ["sh", "-c", "echo --name x"])),
])
def test_shell_arguments(name, rest, expected):
    assert split_shell_command(name, rest) == expected


def coturn_saw(mapping: str, filtering: str) -> NatDiscovery:
    return NatDiscovery(mapping=mapping, filtering=filtering, raw="")


@pytest.mark.unit
def test_verdict_agrees_only_when_all_three_match():
    ours = {"mapping": EI, "filtering": AD, "nat_type": "restricted-cone"}
    assert make_verdict("restricted", coturn_saw(EI, AD), ours).agree
    wrong_class = make_verdict("restricted", coturn_saw(EI, AD), {**ours, "nat_type": "full-cone"})
    assert wrong_class.disagreement == "class should be restricted-cone"
    ours_differ = make_verdict("restricted", coturn_saw(EI, AD), {**ours, "filtering": APD})
    assert ours_differ.disagreement == "netsprint differs from coturn"
    recipe_broken = make_verdict("restricted", coturn_saw(EI, APD), {**ours, "filtering": APD})
    assert recipe_broken.disagreement == "coturn saw EI / APD, the recipe builds EI / AD"
    failed = make_verdict("symmetric", coturn_saw(APD, APD), None, "nat-type crashed")
    assert (failed.agree, failed.netsprint_mapping, failed.disagreement) == \
        (False, "-", "nat-type crashed")


@pytest.mark.unit
def test_verdict_table_and_json_say_why():
    rows = [make_verdict("none", coturn_saw(EI, EI),
                         {"mapping": EI, "filtering": EI, "nat_type": "open-internet"}),
            make_verdict("symmetric", coturn_saw(APD, APD),
                         {"mapping": EI, "filtering": APD, "nat_type": "port-restricted-cone"})]
    console = Console(record=True, width=120)
    console.print(verdict_table(rows))
    text = console.export_text()
    assert "APD / APD" in text and "EI / APD" in text
    assert "no: netsprint differs from coturn" in text
    as_json = [row.to_dict() for row in rows]
    assert [row["agree"] for row in as_json] == [True, False]
    assert set(as_json[0]) >= {"lab_type", "coturn_mapping", "netsprint_class", "disagreement"}


# --- lab: the CLI across invocations ---------------------------------------------------------

@pytest.mark.lab
def test_up_nat_shell_down_across_invocations():
    require_lab()
    name = random_lab_name()
    try:
        up = netsprint("lab", "up", "--name", name, "--nat-b", "symmetric")
        assert up.returncode == 0, up.stderr
        assert f"{name}-peer-a" in up.stdout and "198.51.100.2" in up.stdout
        assert "netsprint lab down" in up.stdout

        nat = netsprint("lab", "nat", "full-cone", "--side", "a", "--name", name)
        assert nat.returncode == 0, nat.stderr
        assert NatLab.load(name).nat == {"a": "full-cone", "b": "symmetric"}

        shell = netsprint("lab", "shell", "nat-a", "--name", name, "--", "nft", "list", "ruleset")
        assert shell.returncode == 0, shell.stderr
        assert "set mapped_ports" in shell.stdout  # the full-cone recipe, inside nat-a

        refused = netsprint("lab", "nat", "cone-ish", "--name", name)
        assert refused.returncode == 2 and "unknown NAT type" in refused.stderr

        down = netsprint("lab", "down", "--name", name)
        assert down.returncode == 0, down.stderr
        assert lab_traces(host_snapshot(), name) == []
    finally:
        NatLab(name).down()


@pytest.mark.lab
def test_down_all_removes_every_remembered_lab(monkeypatch, tmp_path, capsys):
    require_lab()
    # A private state directory: `down --all` must not touch labs other tests are using.
    monkeypatch.setattr(topology, "STATE_DIR", tmp_path)
    labs = [NatLab(), NatLab()]
    try:
        for lab in labs:
            lab.up()
        assert sorted(topology.lab_names()) == sorted(lab.name for lab in labs)
        assert command.run(lab_args(lab_command="down", all=True)) == 0
        snapshot = host_snapshot()
        assert all(lab_traces(snapshot, lab.name) == [] for lab in labs)
        assert topology.lab_names() == []
        assert capsys.readouterr().out.count("removed") == 2
    finally:
        for lab in labs:
            lab.down()


@pytest.mark.lab
def test_commands_on_a_missing_lab_say_how_to_build_it():
    require_lab()
    missing = random_lab_name()
    result = netsprint("lab", "nat", "none", "--name", missing)
    assert result.returncode == 2
    assert f"netsprint lab up --name {missing}" in result.stderr


# --- lab + interop: classify ------------------------------------------------------------------

@pytest.mark.lab
@pytest.mark.interop
def test_classify_exits_1_when_our_detector_disagrees(monkeypatch, capsys):
    require_lab()
    require_coturn()

    def confused_detector(lab, stun_ip):
        return {"mapping": APD, "filtering": APD, "nat_type": "symmetric"}

    monkeypatch.setattr(command, "detect_with_netsprint", confused_detector)
    args = argparse.Namespace(lab_command="classify", json=True, types=["full-cone"])
    assert command.run(args) == 1
    [row] = json.loads(capsys.readouterr().out)
    assert (row["coturn_mapping"], row["coturn_filtering"]) == (EI, EI)
    assert row["agree"] is False


@pytest.mark.lab
@pytest.mark.interop
def test_classify_our_detector_matches_coturn_behind_every_nat_type():
    require_lab()
    require_coturn()
    result = netsprint("lab", "classify", "--json", timeout=240)
    rows = json.loads(result.stdout) if result.stdout.strip() else []
    assert [row["lab_type"] for row in rows] == list(NAT_TYPES), result.stderr
    disagreements = {row["lab_type"]: row["disagreement"] for row in rows if not row["agree"]}
    assert disagreements == {}
    assert result.returncode == 0


@pytest.mark.unit
def test_unknown_type_is_refused_before_any_lab_is_built(monkeypatch):
    monkeypatch.setattr(os, "geteuid", lambda: 0)
    built = []
    monkeypatch.setattr(NatLab, "up", lambda self: built.append(self))
    args = argparse.Namespace(lab_command="classify", json=True, types=["cone-ish"])
    with pytest.raises(LabError, match="unknown NAT type"):
        command.run(args)
    assert built == []


@pytest.mark.unit
def test_matrix_reports_every_cell_and_exits_1_when_one_is_off_theory(monkeypatch, capsys):
    monkeypatch.setattr(os, "geteuid", lambda: 0)
    cells = [Cell("none", "none", "direct", connected=True, path="direct", time_to_connect=0.01),
             Cell("symmetric", "symmetric", "relay", connected=True, path="direct",
                  time_to_connect=0.02)]
    told = []

    def fake_matrix(types, progress):
        progress(f"{len(types)} types")
        told.append(types)
        return cells

    monkeypatch.setattr(matrix, "run_matrix", fake_matrix)
    args = argparse.Namespace(lab_command="matrix", json=True, types=None, birthday_trials=0)
    assert command.run(args) == 1
    report = json.loads(capsys.readouterr().out)
    assert [c["as_expected"] for c in report["cells"]] == [True, False]
    assert report["summary"]["as_expected"] == 1 and report["summary"]["direct"] == 2
    assert told == [NAT_TYPES]

    cells.pop()
    args.json = False
    assert command.run(args) == 0
    assert "direct (10 ms)" in capsys.readouterr().out
