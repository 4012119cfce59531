"""What `netsprint doctor --fix` repairs for eBPF, and what it can only explain.

Each fix is a small function returning a `Fix`: `done` says it changed the machine,
`needed=False` says there was nothing to fix. Every path is a parameter so tests can run the
decisions against a temporary directory tree; the functions that change the machine (mount,
symlink) do so only when their pure decision says so, and never undo a working setup.

Can fix (as root): tracefs not mounted; /lib/modules/<release>/build missing while some
Debian headers are installed (linked, with the warning that struct layouts may differ).
Can only explain: not root, no BTF, a locked-down kernel, missing packages.
"""

from __future__ import annotations

import os
import re
import shutil
import subprocess
from collections.abc import Callable, Iterable
from dataclasses import dataclass
from pathlib import Path

TRACEFS = Path("/sys/kernel/tracing")
TRACEFS_POINTS = ("/sys/kernel/tracing", "/sys/kernel/debug/tracing")
MODULES = Path("/lib/modules")
USR_SRC = Path("/usr/src")
BTF = Path("/sys/kernel/btf/vmlinux")
LOCKDOWN = Path("/sys/kernel/security/lockdown")
MOUNT_TIMEOUT = 15.0  # seconds for mount(8)
AS_ROOT_FIX = "run it as root: `sudo .venv/bin/netsprint doctor --fix`"
LAYOUT_WARNING = ("another kernel's headers: struct layouts may differ, so only tracepoint "
                  "arguments (and helpers) are trustworthy; never read kernel struct fields")

# `uname -m` -> the suffix of Debian's linux-headers-<version>-<arch> packages.
DEBIAN_ARCH = {"x86_64": "amd64", "aarch64": "arm64", "armv7l": "armmp", "ppc64le": "powerpc64le",
               "s390x": "s390x", "riscv64": "riscv64", "i686": "686", "i386": "686"}

# What the eBPF weeks need -> (how to tell it is there, the Debian package that provides it).
PACKAGES = {
    "bcc (Python bindings)": ("module:bcc", "python3-bpfcc"),
    "bcc tools": ("tool:execsnoop-bpfcc", "bpfcc-tools"),
    "bpftool": ("tool:bpftool", "bpftool"),
    "gcc (event-struct size tests)": ("tool:gcc", "gcc"),
}


@dataclass(frozen=True)
class Fix:
    """One repair: what was (or would have to be) done. `done`: this run changed the machine;
    `needed`: something was wrong (False: nothing to fix); `hint`: what a person must do."""

    name: str
    done: bool
    detail: str
    hint: str = ""
    needed: bool = True

    @property
    def status(self) -> str:
        if self.done:
            return "fixed"
        return "cannot fix" if self.needed else "nothing to fix"


def nothing_to_fix(name: str, detail: str) -> Fix:
    return Fix(name, False, detail, needed=False)


def is_root() -> bool:
    return os.geteuid() == 0


# --- tracefs ----------------------------------------------------------------------------------

def tracefs_mount_point(mounts_text: str) -> str | None:
    """Where tracefs is mounted according to /proc/mounts text (None: nowhere we look)."""
    points = {f[1] for f in (line.split() for line in mounts_text.splitlines())
              if len(f) >= 3 and f[2] == "tracefs"}
    return next((p for p in TRACEFS_POINTS if p in points), None)


def _mount_tracefs(target: Path) -> subprocess.CompletedProcess:
    return subprocess.run(["mount", "-t", "tracefs", "nodev", str(target)], capture_output=True,
                          text=True, timeout=MOUNT_TIMEOUT, stdin=subprocess.DEVNULL)


def fix_tracefs(mounts_text: str | None = None, target: Path = TRACEFS, root: bool | None = None,
                mount: Callable[[Path], subprocess.CompletedProcess] = _mount_tracefs) -> Fix:
    """Mount tracefs at `target` unless it is mounted already (tracepoint attach needs it:
    bcc finds a tracepoint's id under <tracefs>/events/<category>/<event>/id)."""
    name = "tracefs"
    if mounts_text is None:
        mounts_text = Path("/proc/mounts").read_text()
    point = tracefs_mount_point(mounts_text)
    if point is not None:
        return nothing_to_fix(name, f"mounted at {point}")
    if not (is_root() if root is None else root):
        return Fix(name, False, "tracefs is not mounted and mounting it needs root", AS_ROOT_FIX)
    proc = mount(target)
    if proc.returncode != 0:
        return Fix(name, False, f"`mount -t tracefs nodev {target}` failed: {proc.stderr.strip()}",
                   "the kernel needs CONFIG_TRACING (tracefs); use the Vagrant VM's kernel")
    return Fix(name, True, f"mounted tracefs at {target}")


# --- kernel headers ---------------------------------------------------------------------------

def debian_arch(machine: str | None = None) -> str:
    machine = machine or os.uname().machine
    return DEBIAN_ARCH.get(machine, machine)


def _version_key(name: str) -> tuple:
    """Sort key for linux-headers-6.1.0-56-amd64: numbers compare as numbers (6.1.0-9 < 6.1.0-56)."""
    return tuple(int(p) if p.isdigit() else p for p in re.split(r"[.\-+~]", name))


def pick_headers(src: Path, arch: str) -> Path | None:
    """The newest installed /usr/src/linux-headers-*-<arch> directory with a Makefile
    (what bcc reads as the `build` tree), or None when there is none."""
    if not src.is_dir():
        return None
    found = [d for d in src.glob(f"linux-headers-*-{arch}") if d.is_dir() and (d / "Makefile").exists()]
    return max(found, key=lambda d: _version_key(d.name), default=None)


def common_sibling(headers: Path, arch: str) -> Path | None:
    """Debian splits headers: linux-headers-X-<arch> holds the config, -common the sources
    (`source` in /lib/modules/<release> points there)."""
    sibling = headers.with_name(headers.name.removesuffix(f"-{arch}") + "-common")
    return sibling if sibling.is_dir() else None


def fix_kernel_headers(release: str | None = None, modules: Path = MODULES, src: Path = USR_SRC,
                       arch: str | None = None, root: bool | None = None) -> Fix:
    """Link the newest installed headers as /lib/modules/<release>/build when it is missing.

    bcc compiles every program against that tree; for a kernel without a headers package
    (custom or cloud kernels), a distro's generic headers are good enough for tracepoint
    programs, whose argument layouts come from tracefs, not from the headers."""
    name = "kernel headers"
    release = release or os.uname().release
    arch = arch or debian_arch()
    build, source = modules / release / "build", modules / release / "source"
    if build.exists():
        target = build.resolve()
        warn = f" ({LAYOUT_WARNING})" if build.is_symlink() and release not in str(target) else ""
        return nothing_to_fix(name, f"{build} -> {target}{warn}")
    headers = pick_headers(src, arch)
    if headers is None:
        return Fix(name, False, f"{build} is missing and no {src}/linux-headers-*-{arch} is installed",
                   f"`apt-get install linux-headers-{release}` if your distro has it, else "
                   f"`apt-get install linux-headers-{arch}`, then `netsprint doctor --fix` again")
    if not (is_root() if root is None else root):
        return Fix(name, False, f"{build} is missing; {headers} could be linked there, as root", AS_ROOT_FIX)
    if build.is_symlink():  # a dangling link (headers removed): replace it, it points nowhere
        build.unlink()
    build.parent.mkdir(parents=True, exist_ok=True)
    build.symlink_to(headers)
    linked = [f"build -> {headers}"]
    common = common_sibling(headers, arch)
    if common is not None and not source.exists():
        if source.is_symlink():
            source.unlink()
        source.symlink_to(common)
        linked.append(f"source -> {common}")
    detail = f"linked {', '.join(linked)} in {modules / release}"
    if release not in headers.name:
        detail += f"; WARNING: {LAYOUT_WARNING}"
    return Fix(name, True, detail)


# --- what cannot be fixed here ----------------------------------------------------------------

def explain_privileges(root: bool | None = None) -> Fix:
    if is_root() if root is None else root:
        return nothing_to_fix("root", "running as root")
    return Fix("root", False, f"running as uid {os.geteuid()}: loading BPF programs, mounting tracefs "
               "and linking headers need root", AS_ROOT_FIX)


def explain_btf(path: Path = BTF) -> Fix:
    if path.exists():
        return nothing_to_fix("BTF", f"{path} present")
    return Fix("BTF", False, f"{path} missing: the kernel was built without CONFIG_DEBUG_INFO_BTF, "
               "so no fentry/fexit and no CO-RE (libbpf's relocations); tracepoint programs are fine",
               "nothing to do for this workbook; for fentry/CO-RE use a kernel built with BTF")


def parse_lockdown(text: str) -> str | None:
    """The selected mode of /sys/kernel/security/lockdown text, e.g.
    "none [integrity] confidentiality" -> "integrity" (None: no bracketed mode)."""
    match = re.search(r"\[(\w+)\]", text)
    return match.group(1) if match else None


LOCKDOWN_EFFECTS = {
    # security/lockdown: modes below LOCKDOWN_INTEGRITY_MAX vs below LOCKDOWN_CONFIDENTIALITY_MAX.
    "integrity": "bpf_probe_write_user and debugfs are refused; tracepoint programs still load",
    "confidentiality": "BPF reads of kernel memory (bpf_probe_read_kernel), kprobes, perf and "
                       "tracefs are refused: most tracing programs cannot run",
}


def explain_lockdown(path: Path = LOCKDOWN) -> Fix:
    """The kernel lockdown LSM (Secure Boot kernels often enable it) refuses parts of BPF."""
    name = "lockdown"
    try:
        text = path.read_text()
    except FileNotFoundError:
        return nothing_to_fix(name, f"{path} absent: no lockdown LSM (or securityfs not mounted)")
    except OSError as exc:
        return Fix(name, False, f"cannot read {path}: {exc}", AS_ROOT_FIX)
    mode = parse_lockdown(text)
    if mode in (None, "none"):
        return nothing_to_fix(name, f"lockdown mode {mode or 'unknown'} ({text.strip()})")
    return Fix(name, False, f"kernel locked down [{mode}]: {LOCKDOWN_EFFECTS.get(mode, 'BPF is restricted')}",
               "lockdown cannot be lifted at runtime: boot with Secure Boot disabled (or "
               "`lockdown=none` where the kernel allows it), or use the Vagrant VM")


def _present(probe: str) -> bool:
    kind, _, what = probe.partition(":")
    if kind == "module":
        import importlib.util
        return importlib.util.find_spec(what) is not None
    return shutil.which(what) is not None


def explain_packages(packages: dict[str, tuple[str, str]] = PACKAGES,
                     present: Callable[[str], bool] = _present) -> Fix:
    """Installing packages is `make provision`'s job (it needs the network): name them."""
    missing = {what: pkg for what, (probe, pkg) in packages.items() if not present(probe)}
    if not missing:
        return nothing_to_fix("packages", f"{', '.join(packages)} installed")
    names = " ".join(sorted(set(missing.values())))
    return Fix("packages", False, f"missing: {', '.join(missing)}",
               f"`sudo apt-get install {names}` (or `make provision`)")


# --- all of them ------------------------------------------------------------------------------

def run_fixes(fixes: Iterable[Callable[[], Fix]] | None = None) -> list[Fix]:
    """Run every fix in order (tracefs and headers first: the re-check after depends on them)."""
    chosen = list(fixes) if fixes is not None else [
        explain_privileges, fix_tracefs, fix_kernel_headers, explain_btf, explain_lockdown,
        explain_packages]
    results = []
    for fix in chosen:
        try:
            results.append(fix())
        except (OSError, subprocess.SubprocessError) as exc:  # one failing fix must not hide the rest
            name = getattr(fix, "__name__", "fix").removeprefix("fix_").removeprefix("explain_")
            results.append(Fix(name, False, f"failed: {type(exc).__name__}: {exc}",
                               "run the step by hand to see why"))
    return results
