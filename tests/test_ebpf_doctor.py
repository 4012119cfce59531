"""`netsprint doctor --fix` (netsprint.ebpf.doctor): the decisions against temporary directory
trees and fake /proc/mounts text, and one real run on this machine that must find nothing to
fix and change nothing."""

from __future__ import annotations

import json
import os
import subprocess
import sys
from pathlib import Path

import pytest

from netsprint.ebpf import doctor as fixes
from netsprint.ebpf.doctor import Fix

RELEASE = "6.18.0-test"
MOUNTED = "sysfs /sys sysfs rw 0 0\nnodev /sys/kernel/tracing tracefs rw,relatime 0 0\n"
DEBUG_MOUNTED = "debugfs /sys/kernel/debug debugfs rw 0 0\ntracefs /sys/kernel/debug/tracing tracefs rw 0 0\n"
NOT_MOUNTED = "proc /proc proc rw 0 0\nsysfs /sys sysfs rw 0 0\n"


def _headers(src: Path, name: str, makefile: bool = True) -> Path:
    path = src / name
    path.mkdir(parents=True)
    if makefile:
        (path / "Makefile").write_text("# kbuild\n")
    return path


def _completed(code: int, stderr: str = "") -> subprocess.CompletedProcess:
    return subprocess.CompletedProcess(["mount"], code, "", stderr)


# --- the Fix record -------------------------------------------------------------------------

@pytest.mark.unit
def test_fix_status_says_fixed_nothing_or_cannot():
    assert Fix("a", True, "did it").status == "fixed"
    assert Fix("a", False, "no root", "sudo ...").status == "cannot fix"
    assert fixes.nothing_to_fix("a", "fine").status == "nothing to fix"


# --- tracefs ----------------------------------------------------------------------------------

@pytest.mark.unit
def test_tracefs_mount_point_from_mounts_text():
    assert fixes.tracefs_mount_point(MOUNTED) == "/sys/kernel/tracing"
    assert fixes.tracefs_mount_point(DEBUG_MOUNTED) == "/sys/kernel/debug/tracing"
    assert fixes.tracefs_mount_point(NOT_MOUNTED) is None
    # a tracefs somewhere bcc does not look does not count
    assert fixes.tracefs_mount_point("nodev /mnt/t tracefs rw 0 0\n") is None


@pytest.mark.unit
def test_tracefs_already_mounted_is_never_mounted_again(tmp_path):
    calls = []
    fix = fixes.fix_tracefs(MOUNTED, tmp_path, root=True, mount=lambda t: calls.append(t))
    assert fix.status == "nothing to fix" and "/sys/kernel/tracing" in fix.detail
    assert calls == []


@pytest.mark.unit
def test_tracefs_missing_is_mounted_at_the_target(tmp_path):
    calls = []

    def mount(target):
        calls.append(target)
        return _completed(0)

    fix = fixes.fix_tracefs(NOT_MOUNTED, tmp_path, root=True, mount=mount)
    assert fix.done and str(tmp_path) in fix.detail
    assert calls == [tmp_path]


@pytest.mark.unit
def test_tracefs_mount_failure_and_no_root_are_explained(tmp_path):
    failed = fixes.fix_tracefs(NOT_MOUNTED, tmp_path, root=True,
                               mount=lambda t: _completed(32, "mount: unknown filesystem type 'tracefs'"))
    assert failed.status == "cannot fix" and "unknown filesystem type" in failed.detail and failed.hint

    calls = []
    no_root = fixes.fix_tracefs(NOT_MOUNTED, tmp_path, root=False, mount=lambda t: calls.append(t))
    assert no_root.status == "cannot fix" and "sudo" in no_root.hint and calls == []


# --- kernel headers ---------------------------------------------------------------------------

@pytest.mark.unit
def test_pick_headers_takes_the_newest_of_this_arch(tmp_path):
    src = tmp_path / "src"
    _headers(src, "linux-headers-6.1.0-9-amd64")
    newest = _headers(src, "linux-headers-6.1.0-56-amd64")
    _headers(src, "linux-headers-6.1.0-56-common")
    _headers(src, "linux-headers-6.12.0-1-arm64")
    _headers(src, "linux-headers-6.2.0-1-amd64", makefile=False)  # an empty leftover directory
    assert fixes.pick_headers(src, "amd64") == newest  # 56 > 9 numerically, not as text
    assert fixes.pick_headers(src, "arm64") == src / "linux-headers-6.12.0-1-arm64"
    assert fixes.pick_headers(src, "riscv64") is None
    assert fixes.pick_headers(tmp_path / "absent", "amd64") is None


@pytest.mark.unit
def test_debian_arch_names():
    assert fixes.debian_arch("x86_64") == "amd64"
    assert fixes.debian_arch("aarch64") == "arm64"
    assert fixes.debian_arch("mips64") == "mips64"


@pytest.mark.unit
def test_missing_build_is_linked_with_source_and_a_layout_warning(tmp_path):
    src, modules = tmp_path / "src", tmp_path / "modules"
    headers = _headers(src, "linux-headers-6.1.0-56-amd64")
    common = _headers(src, "linux-headers-6.1.0-56-common")
    fix = fixes.fix_kernel_headers(RELEASE, modules, src, "amd64", root=True)
    build, source = modules / RELEASE / "build", modules / RELEASE / "source"
    assert fix.done
    assert build.is_symlink() and build.resolve() == headers.resolve()
    assert source.is_symlink() and source.resolve() == common.resolve()
    assert "struct layouts may differ" in fix.detail and "tracepoint" in fix.detail

    again = fixes.fix_kernel_headers(RELEASE, modules, src, "amd64", root=True)
    assert again.status == "nothing to fix" and build.resolve() == headers.resolve()


@pytest.mark.unit
def test_matching_headers_get_no_warning_and_no_common_is_fine(tmp_path):
    src, modules = tmp_path / "src", tmp_path / "modules"
    headers = _headers(src, f"linux-headers-{RELEASE}-amd64")
    fix = fixes.fix_kernel_headers(f"{RELEASE}-amd64", modules, src, "amd64", root=True)
    assert fix.done and "WARNING" not in fix.detail and "source" not in fix.detail
    assert (modules / f"{RELEASE}-amd64" / "build").resolve() == headers.resolve()
    assert not (modules / f"{RELEASE}-amd64" / "source").exists()


@pytest.mark.unit
def test_existing_build_is_left_alone(tmp_path):
    src, modules = tmp_path / "src", tmp_path / "modules"
    _headers(src, "linux-headers-6.1.0-56-amd64")
    real = modules / RELEASE / "build"
    real.mkdir(parents=True)
    (real / "Makefile").write_text("# the kernel's own\n")
    fix = fixes.fix_kernel_headers(RELEASE, modules, src, "amd64", root=True)
    assert fix.status == "nothing to fix" and not real.is_symlink()
    assert "struct layouts" not in fix.detail  # its own headers: no warning


@pytest.mark.unit
def test_dangling_build_link_is_replaced(tmp_path):
    src, modules = tmp_path / "src", tmp_path / "modules"
    headers = _headers(src, "linux-headers-6.1.0-56-amd64")
    build = modules / RELEASE / "build"
    build.parent.mkdir(parents=True)
    build.symlink_to(src / "linux-headers-5.10.0-1-amd64")  # removed package
    assert fixes.fix_kernel_headers(RELEASE, modules, src, "amd64", root=True).done
    assert build.resolve() == headers.resolve()


@pytest.mark.unit
def test_no_headers_or_no_root_names_what_to_do(tmp_path):
    src, modules = tmp_path / "src", tmp_path / "modules"
    none = fixes.fix_kernel_headers(RELEASE, modules, src, "amd64", root=True)
    assert none.status == "cannot fix" and "linux-headers-amd64" in none.hint
    _headers(src, "linux-headers-6.1.0-56-amd64")
    no_root = fixes.fix_kernel_headers(RELEASE, modules, src, "amd64", root=False)
    assert no_root.status == "cannot fix" and "sudo" in no_root.hint
    assert not (modules / RELEASE / "build").exists()


# --- explained, not fixed ---------------------------------------------------------------------

@pytest.mark.unit
@pytest.mark.parametrize("text, mode", [
    ("[none] integrity confidentiality\n", "none"),
    ("none [integrity] confidentiality\n", "integrity"),
    ("none integrity [confidentiality]\n", "confidentiality"),
    ("none integrity confidentiality\n", None),
    ("", None),
])
def test_parse_lockdown(text, mode):
    assert fixes.parse_lockdown(text) == mode


@pytest.mark.unit
def test_lockdown_explained_from_a_file(tmp_path):
    path = tmp_path / "lockdown"
    assert fixes.explain_lockdown(path).status == "nothing to fix"  # absent: no lockdown LSM
    path.write_text("[none] integrity confidentiality\n")
    assert fixes.explain_lockdown(path).status == "nothing to fix"
    path.write_text("none [integrity] confidentiality\n")
    integrity = fixes.explain_lockdown(path)
    assert integrity.status == "cannot fix" and "[integrity]" in integrity.detail
    path.write_text("none integrity [confidentiality]\n")
    confidentiality = fixes.explain_lockdown(path)
    assert confidentiality.status == "cannot fix" and "read" in confidentiality.detail
    assert "Secure Boot" in confidentiality.hint


@pytest.mark.unit
def test_btf_and_privileges_explained(tmp_path):
    btf = tmp_path / "vmlinux"
    missing = fixes.explain_btf(btf)
    assert missing.status == "cannot fix" and "fentry" in missing.detail and "tracepoint" in missing.detail
    btf.write_bytes(b"\x9f\xeb")
    assert fixes.explain_btf(btf).status == "nothing to fix"
    assert fixes.explain_privileges(root=True).status == "nothing to fix"
    assert "sudo .venv/bin/netsprint doctor --fix" in fixes.explain_privileges(root=False).hint


@pytest.mark.unit
def test_missing_packages_are_named():
    packages = {"bcc": ("module:bcc", "python3-bpfcc"), "bpftool": ("tool:bpftool", "bpftool")}
    fix = fixes.explain_packages(packages, present=lambda probe: probe == "tool:bpftool")
    assert fix.status == "cannot fix" and "bcc" in fix.detail and "bpftool" not in fix.detail
    assert "apt-get install python3-bpfcc" in fix.hint
    assert fixes.explain_packages(packages, present=lambda probe: True).status == "nothing to fix"


@pytest.mark.unit
def test_a_failing_fix_does_not_hide_the_others():
    def fix_broken():
        raise PermissionError("read-only file system")

    broken, fine = fixes.run_fixes([fix_broken, lambda: fixes.nothing_to_fix("x", "ok")])
    assert broken.name == "broken" and broken.status == "cannot fix" and "read-only" in broken.detail
    assert fine.status == "nothing to fix"


# --- on this machine ----------------------------------------------------------------------------

@pytest.mark.bpf
def test_fix_on_a_working_machine_changes_nothing(needs_bcc):
    """`doctor --fix --json` here: tracefs is mounted and headers are linked (make provision),
    so both report "nothing to fix", and both are exactly as they were afterwards."""
    build = Path("/lib/modules", os.uname().release, "build")
    before = (fixes.tracefs_mount_point(Path("/proc/mounts").read_text()),
              os.readlink(build) if build.is_symlink() else str(build))
    proc = subprocess.run([sys.executable, "-m", "netsprint.cli", "doctor", "--fix", "--json"],
                          capture_output=True, text=True, timeout=300)
    assert proc.stderr == ""
    data = json.loads(proc.stdout)
    by_name = {f["name"]: f for f in data["fixes"]}
    for name in ("root", "tracefs", "kernel headers"):
        assert by_name[name]["status"] == "nothing to fix", by_name[name]
        assert by_name[name]["done"] is False
    after = (fixes.tracefs_mount_point(Path("/proc/mounts").read_text()),
             os.readlink(build) if build.is_symlink() else str(build))
    assert after == before
    assert "lockdown" in {c["name"] for c in data["checks"]}
    assert data["ok"] and proc.returncode == 0
