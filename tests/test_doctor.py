"""`netsprint doctor`: the pure parts (capabilities, rendering, exit code) and, on a capable
machine, the real eBPF probes and the throwaway namespace."""

from __future__ import annotations

import io
import json
import os
import subprocess
import sys
from pathlib import Path

import pytest
from rich.console import Console

from netsprint import doctor
from netsprint.doctor import FAIL, OK, WARN, Check

ROOT_STATUS = "Name:\tpython3\nCapInh:\t0000000000000000\nCapPrm:\t000001ffffffffff\nCapEff:\t000001ffffffffff\n"
USER_STATUS = "Name:\tpython3\nCapInh:\t0000000000000000\nCapPrm:\t0000000000000000\nCapEff:\t0000000000000000\n"


# --- unit ---------------------------------------------------------------------------------

@pytest.mark.unit
def test_parse_cap_eff_reads_the_hex_mask():
    assert doctor.parse_cap_eff(ROOT_STATUS) == 0x1FFFFFFFFFF
    assert doctor.parse_cap_eff(USER_STATUS) == 0
    with pytest.raises(ValueError):
        doctor.parse_cap_eff("Name:\tx\n")


@pytest.mark.unit
def test_missing_caps():
    assert doctor.missing_caps(0x1FFFFFFFFFF) == []
    assert doctor.missing_caps(0) == ["CAP_SYS_ADMIN", "CAP_NET_ADMIN", "CAP_BPF", "CAP_PERFMON"]
    # CAP_BPF + CAP_PERFMON + CAP_NET_ADMIN still leaves netns creation without CAP_SYS_ADMIN
    bpf_only = 1 << doctor.CAP_BPF | 1 << doctor.CAP_PERFMON | 1 << doctor.CAP_NET_ADMIN
    assert doctor.missing_caps(bpf_only) == ["CAP_SYS_ADMIN"]


@pytest.mark.unit
def test_privileges_check_from_status_text():
    assert doctor.check_privileges(ROOT_STATUS).status == OK
    no_caps = doctor.check_privileges(USER_STATUS)
    assert no_caps.status == FAIL and "CAP_BPF" in no_caps.detail and "sudo" in no_caps.hint
    assert doctor.check_privileges("garbage").status == WARN


@pytest.mark.unit
def test_tracefs_check_from_mounts_text():
    mounted = "tracefs /sys/kernel/tracing tracefs rw,nosuid 0 0\n"
    assert doctor.check_tracefs(mounted).status == OK
    assert doctor.check_tracefs("proc /proc proc rw 0 0\n").status == FAIL


@pytest.mark.unit
def test_kernel_headers_check(tmp_path):
    modules = tmp_path / "modules"
    assert doctor.check_kernel_headers("6.18.0-test", modules).status == FAIL

    own = modules / "6.18.0-test"
    (own / "build").mkdir(parents=True)
    assert doctor.check_kernel_headers("6.18.0-test", modules).status == OK

    other = tmp_path / "usr/src/linux-headers-6.1.0-56-amd64"
    other.mkdir(parents=True)
    linked = modules / "6.18.1-test"
    linked.mkdir()
    (linked / "build").symlink_to(other)
    check = doctor.check_kernel_headers("6.18.1-test", modules)
    assert check.status == WARN and "6.1.0-56-amd64" in check.detail and "tracepoint" in check.hint


@pytest.mark.unit
def test_check_rejects_unknown_status():
    with pytest.raises(ValueError):
        Check("x", "MAYBE", "detail")


def _fake_checks(*statuses):
    return [lambda s=s, i=i: Check(f"check{i}", s, f"detail {i}", f"hint {i}") for i, s in enumerate(statuses)]


@pytest.mark.unit
def test_exit_code_is_one_only_on_fail():
    assert doctor.exit_code(doctor.run_checks(_fake_checks(OK, WARN))) == 0
    assert doctor.exit_code(doctor.run_checks(_fake_checks(OK, FAIL, WARN))) == 1


@pytest.mark.unit
def test_a_crashing_check_becomes_a_fail_not_an_exception():
    def check_broken():
        raise RuntimeError("boom")

    def check_hangs():
        raise subprocess.TimeoutExpired(["sleep", "99"], 15)

    broken, hangs = doctor.run_checks([check_broken, check_hangs])
    assert broken.status == FAIL and broken.name == "broken" and "boom" in broken.detail
    assert hangs.status == FAIL and "timed out" in hangs.detail


@pytest.mark.unit
def test_outside_programs_time_out():
    with pytest.raises(subprocess.TimeoutExpired):
        doctor._run([sys.executable, "-c", "import time; time.sleep(30)"], timeout=0.5)


@pytest.mark.unit
def test_render_table_shows_every_check_and_fail_logs():
    checks = [Check("bcc", OK, "bcc 0.26"), Check("kprobe", WARN, "unavailable [here]", "use tracepoints"),
              Check("netns", FAIL, "cannot create", "run as root", log="RTNETLINK answers: nope")]
    out = io.StringIO()
    doctor.render(checks, Console(file=out, width=200, color_system=None))
    text = out.getvalue()
    for piece in ("bcc 0.26", "unavailable [here]", "use tracepoints", "run as root",
                  "RTNETLINK answers: nope", "1 OK, 1 WARN, 1 FAIL"):
        assert piece in text


@pytest.mark.unit
def test_main_json_and_exit_code(monkeypatch, capsys):
    monkeypatch.setattr(doctor, "CHECKS", _fake_checks(OK, FAIL))
    assert doctor.main(as_json=True) == 1
    data = json.loads(capsys.readouterr().out)
    assert data["ok"] is False
    assert [c["status"] for c in data["checks"]] == [OK, FAIL]
    assert set(data["checks"][0]) == {"name", "status", "detail", "hint", "log"}

    monkeypatch.setattr(doctor, "CHECKS", _fake_checks(OK, WARN))
    assert doctor.main(as_json=False) == 0
    assert "netsprint doctor" in capsys.readouterr().out


@pytest.mark.unit
def test_lockdown_check_from_a_file(tmp_path):
    path = tmp_path / "lockdown"
    assert doctor.check_lockdown(path).status == OK  # no lockdown LSM
    path.write_text("[none] integrity confidentiality\n")
    assert doctor.check_lockdown(path).status == OK
    path.write_text("none [integrity] confidentiality\n")
    integrity = doctor.check_lockdown(path)
    assert integrity.status == WARN and "bpf_probe_write_user" in integrity.detail
    path.write_text("none integrity [confidentiality]\n")
    confidentiality = doctor.check_lockdown(path)
    assert confidentiality.status == FAIL and "kernel memory" in confidentiality.detail
    assert "lockdown" in [c.__name__.removeprefix("check_") for c in doctor.CHECKS]


def _fake_fixes():
    from netsprint.ebpf.doctor import Fix, nothing_to_fix

    return [Fix("tracefs", True, "mounted tracefs at /sys/kernel/tracing"),
            nothing_to_fix("kernel headers", "build -> headers"),
            Fix("lockdown", False, "kernel locked down [integrity]", "boot without Secure Boot")]


@pytest.mark.unit
def test_main_fix_runs_the_fixes_before_the_checks(monkeypatch, capsys):
    order = []
    monkeypatch.setattr("netsprint.ebpf.doctor.run_fixes", lambda: order.append("fix") or _fake_fixes())
    monkeypatch.setattr(doctor, "CHECKS", [lambda: order.append("check") or Check("c", OK, "d")])
    assert doctor.main(as_json=True, fix=True) == 0
    assert order == ["fix", "check"]
    data = json.loads(capsys.readouterr().out)
    assert [(f["name"], f["status"], f["done"]) for f in data["fixes"]] == [
        ("tracefs", "fixed", True), ("kernel headers", "nothing to fix", False),
        ("lockdown", "cannot fix", False)]
    assert data["fixes"][2]["hint"] == "boot without Secure Boot"

    order.clear()
    assert doctor.main(as_json=True, fix=False) == 0
    assert order == ["check"] and "fixes" not in json.loads(capsys.readouterr().out)


@pytest.mark.unit
def test_render_fixes_table():
    out = io.StringIO()
    doctor.render_fixes(_fake_fixes(), Console(file=out, width=200, color_system=None))
    text = out.getvalue()
    for piece in ("netsprint doctor --fix", "fixed", "nothing to fix", "cannot fix",
                  "mounted tracefs", "boot without Secure Boot"):
        assert piece in text


@pytest.mark.unit
def test_probe_source_is_a_bpf_c_file_next_to_its_loader():
    from netsprint.ebpf.probes import feature_probe

    text = feature_probe.SOURCE.read_text()
    assert feature_probe.SOURCE.name == "feature_probe.bpf.c"
    for kind in feature_probe.KINDS:
        assert f"NETSPRINT_PROBE_{kind.upper()}" in text


# --- on a real machine ----------------------------------------------------------------------

@pytest.mark.bpf
def test_tracepoint_probe_really_loads(needs_bcc):
    check = doctor.check_tracepoint()
    assert check.status == OK, f"{check.detail}\n{check.log}"
    assert "fired" in check.detail


@pytest.mark.bpf
@pytest.mark.parametrize("check_fn", [doctor.check_kprobe, doctor.check_fentry])
def test_optional_probes_give_a_definite_answer(needs_bcc, check_fn):
    check = check_fn()
    assert check.status in (OK, WARN)
    assert check.detail and "crashed" not in check.detail and "timed out" not in check.detail
    if check.status == WARN:
        assert check.detail.startswith("unavailable") and "tracepoint" in check.hint


@pytest.mark.bpf
def test_kprobe_reports_unavailable_on_a_kernel_without_kprobes(needs_bcc):
    from netsprint.ebpf.probes.feature_probe import _kprobes_built_in

    check = doctor.check_kprobe()
    if _kprobes_built_in():  # then a WARN must give the kernel's reason, not this one
        assert "without kprobes" not in check.detail
    else:
        assert check.status == WARN and "without kprobes" in check.detail


@pytest.mark.bpf
def test_doctor_output_is_clean_json_and_finds_no_fail(needs_bcc):
    """bcc/clang warnings stay out of the doctor's output (they go to the log of a FAIL only),
    and on a provisioned machine (root + bcc) the doctor agrees that every week can run."""
    proc = subprocess.run([sys.executable, "-m", "netsprint.cli", "doctor", "--json"],
                          capture_output=True, text=True, timeout=300)
    assert proc.stderr == ""
    data = json.loads(proc.stdout)
    assert {c["name"] for c in data["checks"]} >= {"eBPF tracepoint", "eBPF kprobe", "eBPF fentry", "netns"}
    failed = [f"{c['name']}: {c['detail']} ({c['hint']})" for c in data["checks"] if c["status"] == FAIL]
    assert not failed, "make provision should have fixed these:\n" + "\n".join(failed)
    assert data["ok"] and proc.returncode == 0


@pytest.mark.lab
def test_netns_check_leaves_no_namespace(needs_netns):
    check = doctor.check_netns()
    assert check.status == OK, check.detail
    listed = subprocess.run(["ip", "netns", "list"], capture_output=True, text=True, timeout=15).stdout
    assert f"netsprint-doctor-{os.getpid()}" not in listed
    assert not Path("/run/netns", f"netsprint-doctor-{os.getpid()}").exists()


@pytest.mark.lab
def test_netns_check_removes_the_namespace_even_on_error(needs_netns, monkeypatch):
    real_run = doctor._run

    def failing_configure(argv, *args, **kwargs):
        if "link" in argv:
            raise subprocess.TimeoutExpired(list(argv), 0.1)
        return real_run(argv, *args, **kwargs)

    monkeypatch.setattr(doctor, "_run", failing_configure)
    (check,) = doctor.run_checks([doctor.check_netns])
    assert check.status == FAIL and "timed out" in check.detail
    assert not Path("/run/netns", f"netsprint-doctor-{os.getpid()}").exists()
