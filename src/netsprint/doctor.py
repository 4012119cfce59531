"""`netsprint doctor`: is this machine ready for every week of the workbook?

Each check is a small function returning a `Check`; `run_checks()` runs them all and
`main()` prints a table (or JSON) and returns 1 when any check FAILs. OK means the feature
really works here (the eBPF checks load, attach and detach a program), WARN means an optional
path is unavailable or something works with a caveat, FAIL means a week of the workbook
cannot run until the hint is followed. Checks never hang: every outside program runs with a
timeout, and eBPF probes run in a child process (`netsprint.ebpf.probes.feature_probe`) whose
bcc/clang warnings are kept out of the output unless the probe fails.
`main(fix=True)` (`netsprint doctor --fix`) first runs `netsprint.ebpf.doctor.run_fixes()`
(mount tracefs, link kernel headers; explain root, BTF, lockdown, packages), then checks.
"""

from __future__ import annotations

import dataclasses
import importlib
import importlib.metadata
import importlib.util
import json
import os
import shutil
import subprocess
import sys
from collections.abc import Callable, Sequence
from dataclasses import dataclass
from pathlib import Path

from netsprint.ebpf import doctor as ebpf_doctor
from netsprint.ebpf.doctor import (
    BTF, LOCKDOWN, LOCKDOWN_EFFECTS, MODULES, parse_lockdown, tracefs_mount_point,
)

OK, WARN, FAIL = "OK", "WARN", "FAIL"
STATUSES = (OK, WARN, FAIL)

MIN_PYTHON = (3, 11)
TOOL_TIMEOUT = 15.0  # seconds for one outside program (nft, ip, prometheus --version)
PROBE_TIMEOUT = 60.0  # seconds for one eBPF probe: compile, load, attach, trigger
PROBE_MODULE = "netsprint.ebpf.probes.feature_probe"
PROVISION = "run `make provision` (scripts/provision.sh)"
FIX = "`sudo .venv/bin/netsprint doctor --fix`"

# Capability bits (linux/capability.h) the labs need.
CAP_NET_ADMIN = 12
CAP_SYS_ADMIN = 21
CAP_PERFMON = 38
CAP_BPF = 39
CAP_NAMES = {CAP_NET_ADMIN: "CAP_NET_ADMIN", CAP_SYS_ADMIN: "CAP_SYS_ADMIN",
             CAP_PERFMON: "CAP_PERFMON", CAP_BPF: "CAP_BPF"}


@dataclass(frozen=True)
class Check:
    """One line of the report; `hint` says what to do, `log` holds tool output for a failure."""

    name: str
    status: str
    detail: str
    hint: str = ""
    log: str = ""

    def __post_init__(self) -> None:
        if self.status not in STATUSES:
            raise ValueError(f"status must be one of {STATUSES}, not {self.status!r}")


# --- pure helpers ---------------------------------------------------------------------------

def parse_cap_eff(status_text: str) -> int:
    """The effective capability mask from the text of /proc/<pid>/status."""
    for line in status_text.splitlines():
        if line.startswith("CapEff:"):
            return int(line.split(":", 1)[1].strip(), 16)
    raise ValueError("no CapEff line in the status text")


def missing_caps(cap_eff: int) -> list[str]:
    """Names of what the netns and eBPF labs need but `cap_eff` lacks (empty: all there).

    eBPF wants CAP_BPF+CAP_PERFMON (kernel >= 5.8) or CAP_SYS_ADMIN; netns and nftables want
    CAP_NET_ADMIN, and creating a namespace wants CAP_SYS_ADMIN.
    """
    def has(bit: int) -> bool:
        return bool(cap_eff >> bit & 1)

    missing = [CAP_NAMES[b] for b in (CAP_SYS_ADMIN, CAP_NET_ADMIN) if not has(b)]
    if not has(CAP_SYS_ADMIN):
        missing += [CAP_NAMES[b] for b in (CAP_BPF, CAP_PERFMON) if not has(b)]
    return missing


def _privileged() -> bool:
    try:
        return not missing_caps(parse_cap_eff(Path("/proc/self/status").read_text()))
    except (OSError, ValueError):
        return os.geteuid() == 0


def tail(text: str, lines: int = 20) -> str:
    """The last `lines` lines of a tool's output (what a report shows of a long log)."""
    return "\n".join(text.strip().splitlines()[-lines:])


def _run(argv: Sequence[str], timeout: float = TOOL_TIMEOUT, stdin: str | None = None):
    """Run a program, capturing output; raises subprocess.TimeoutExpired after `timeout`."""
    return subprocess.run(list(argv), capture_output=True, text=True, timeout=timeout,
                          input=stdin, stdin=None if stdin is not None else subprocess.DEVNULL)


NOT_ROOT = "not tried: needs root"
AS_ROOT = "run as root: `sudo .venv/bin/netsprint doctor` (and `sudo make lab`)"


# --- the checks -----------------------------------------------------------------------------

def check_python() -> Check:
    version = ".".join(map(str, sys.version_info[:3]))
    if sys.version_info[:2] >= MIN_PYTHON:
        return Check("python", OK, f"Python {version}")
    return Check("python", FAIL, f"Python {version} is older than {'.'.join(map(str, MIN_PYTHON))}",
                 "use Debian 12 / Ubuntu 24.04's python3, or the conda environment.yml")


def check_venv() -> Check:
    if sys.prefix == sys.base_prefix:
        return Check("venv", WARN, f"not inside a venv ({sys.prefix})",
                     "use the project's venv: `.venv/bin/netsprint doctor` (made by `make provision`)")
    cfg = Path(sys.prefix, "pyvenv.cfg")
    text = cfg.read_text() if cfg.exists() else ""
    system_site = any(line.replace(" ", "").lower() == "include-system-site-packages=true"
                      for line in text.splitlines())
    if not system_site:
        return Check("venv", WARN, f"{sys.prefix} hides the system site-packages, so bcc cannot import",
                     "recreate it: `rm -rf .venv && make provision`")
    return Check("venv", OK, f"{sys.prefix} (with system site-packages)")


def check_privileges(status_text: str | None = None) -> Check:
    if status_text is None:
        status_text = Path("/proc/self/status").read_text()
    try:
        cap_eff = parse_cap_eff(status_text)
    except ValueError as exc:
        return Check("privileges", WARN, f"cannot read capabilities: {exc}", AS_ROOT)
    missing = missing_caps(cap_eff)
    who = "root" if os.geteuid() == 0 else f"uid {os.geteuid()}"
    if not missing:
        return Check("privileges", OK, f"{who}, CapEff {cap_eff:#x}: BPF, PERFMON, NET_ADMIN, SYS_ADMIN")
    return Check("privileges", FAIL, f"{who} lacks {', '.join(missing)}: no netns labs, no eBPF", AS_ROOT)


def check_bcc() -> Check:
    try:
        bcc = importlib.import_module("bcc")
    except Exception as exc:  # ImportError, or OSError when libbcc is broken
        return Check("bcc", FAIL, f"`import bcc` failed: {exc}",
                     f"{PROVISION}: it installs python3-bpfcc and builds the venv with system site-packages")
    version = getattr(bcc, "__version__", "?")
    return Check("bcc", OK, f"bcc {version} from {Path(bcc.__file__).parent}")


def check_tracefs(mounts_text: str | None = None) -> Check:
    if mounts_text is None:
        mounts_text = Path("/proc/mounts").read_text()
    point = tracefs_mount_point(mounts_text)
    if point is not None:
        return Check("tracefs", OK, f"mounted at {point}")
    return Check("tracefs", FAIL, "tracefs is not mounted: tracepoints cannot attach",
                 f"{FIX} mounts it (or by hand: `mount -t tracefs nodev /sys/kernel/tracing`)")


def check_kernel_headers(release: str | None = None, modules: Path = MODULES) -> Check:
    release = release or os.uname().release
    build = modules / release / "build"
    if not build.exists():
        return Check("kernel headers", FAIL, f"{build} is missing: bcc cannot compile programs",
                     f"{FIX} links installed headers; else {PROVISION}: "
                     f"it installs linux-headers-{release} or the distro's generic headers")
    if build.is_symlink():
        target = build.resolve()
        if release not in str(target):
            return Check("kernel headers", WARN,
                         f"build -> {target.name}: another kernel's headers, struct layouts may differ",
                         "rely on tracepoint programs (the workbook's default), not kernel struct field reads")
    return Check("kernel headers", OK, str(build))


def check_btf(path: Path = BTF) -> Check:
    if path.exists():
        return Check("BTF", OK, f"{path}")
    return Check("BTF", WARN, f"{path} missing: no fentry, no CO-RE",
                 "fine for the workbook: its programs use tracepoints")


def check_lockdown(path: Path = LOCKDOWN) -> Check:
    """The lockdown LSM (on by default with Secure Boot on many distros) refuses parts of BPF."""
    try:
        text = path.read_text()
    except FileNotFoundError:
        return Check("lockdown", OK, f"{path} absent: no lockdown LSM (or securityfs not mounted)")
    except OSError as exc:
        return Check("lockdown", WARN, f"cannot read {path}: {exc}", AS_ROOT)
    mode = parse_lockdown(text)
    if mode in (None, "none"):
        return Check("lockdown", OK, f"not locked down ({text.strip()})")
    effect = LOCKDOWN_EFFECTS.get(mode, "BPF is restricted")
    return Check("lockdown", FAIL if mode == "confidentiality" else WARN, f"[{mode}]: {effect}",
                 "boot with Secure Boot off (or `lockdown=none` where allowed), or use the Vagrant VM")


def _probe(kind: str, required: bool) -> Check:
    """Run one feature probe in a child process; `required` turns trouble into FAIL, else WARN."""
    name = f"eBPF {kind}"
    trouble = FAIL if required else WARN
    if importlib.util.find_spec("bcc") is None:
        return Check(name, WARN, "not tried: bcc missing (see the bcc line)", PROVISION)
    if not _privileged():
        return Check(name, WARN, NOT_ROOT, AS_ROOT)
    try:
        proc = _run([sys.executable, "-m", PROBE_MODULE, kind], timeout=PROBE_TIMEOUT)
    except subprocess.TimeoutExpired as exc:
        out = exc.stderr.decode(errors="replace") if isinstance(exc.stderr, bytes) else exc.stderr or ""
        return Check(name, trouble, f"probe timed out after {PROBE_TIMEOUT:.0f}s", PROVISION, tail(out))
    lines = proc.stdout.strip().splitlines()
    try:
        result = json.loads(lines[-1])
        status = result["status"] if result["status"] == OK or required else WARN
        return Check(name, status, result["detail"], result.get("hint", ""),
                     "" if status == OK else tail(proc.stderr))
    except (IndexError, ValueError, KeyError, TypeError):
        return Check(name, trouble, f"probe crashed (exit {proc.returncode})",
                     "see the log below; `make provision` sets up headers and tracefs",
                     tail(proc.stderr + proc.stdout))


def check_tracepoint() -> Check:
    return _probe("tracepoint", required=True)


def check_kprobe() -> Check:
    return _probe("kprobe", required=False)


def check_fentry() -> Check:
    return _probe("fentry", required=False)


NFT_PROBE = """table ip netsprint_doctor {
    chain post { type nat hook postrouting priority 100; policy accept; masquerade; }
}
"""


def check_nft() -> Check:
    nft = shutil.which("nft")
    if nft is None:
        return Check("nftables", FAIL, "`nft` not found: no NAT lab", f"{PROVISION} (installs nftables)")
    version = _run([nft, "--version"]).stdout.strip()
    if not _privileged():
        return Check("nftables", WARN, f"{version}; {NOT_ROOT}", AS_ROOT)
    proc = _run([nft, "--check", "-f", "-"], stdin=NFT_PROBE)  # --check: validated, never applied
    if proc.returncode != 0:
        return Check("nftables", FAIL, "the kernel refused a NAT table (nf_tables/nft_nat missing?)",
                     "use a kernel with nf_tables NAT support (the Vagrant VM has one)", tail(proc.stderr))
    return Check("nftables", OK, f"{version}; a NAT table validates")


def check_netns() -> Check:
    ip = shutil.which("ip")
    if ip is None:
        return Check("netns", FAIL, "`ip` not found", f"{PROVISION} (installs iproute2)")
    if not _privileged():
        return Check("netns", WARN, NOT_ROOT, AS_ROOT)
    name = f"netsprint-doctor-{os.getpid()}"
    try:
        add = _run([ip, "netns", "add", name])
        if add.returncode != 0:
            return Check("netns", FAIL, f"cannot create a namespace: {add.stderr.strip()}",
                         "run as root on a kernel with network namespaces", tail(add.stderr))
        lo = _run([ip, "-n", name, "link", "set", "lo", "up"])
        if lo.returncode != 0:
            return Check("netns", FAIL, f"created {name} but cannot configure it: {lo.stderr.strip()}",
                         "check that iproute2 matches the kernel", tail(lo.stderr))
    finally:
        _run([ip, "netns", "delete", name])
    if Path("/run/netns", name).exists():
        return Check("netns", FAIL, f"{name} could not be removed", f"remove it: `ip netns delete {name}`")
    return Check("netns", OK, "created, configured and removed a throwaway namespace")


def check_coturn() -> Check:
    server = shutil.which("turnserver")
    if server is None:
        return Check("coturn", FAIL, "`turnserver` not found: no STUN peer for weeks 3-5",
                     f"{PROVISION} (installs coturn)")
    client = shutil.which("turnutils_stunclient")
    extra = "" if client else " (turnutils_stunclient missing)"
    return Check("coturn", OK if client else WARN, f"{server}{extra}",
                 "" if client else f"{PROVISION} (installs coturn's utilities)")


def check_prometheus() -> Check:
    found = {tool: shutil.which(tool) for tool in ("prometheus", "promtool")}
    absent = [tool for tool, path in found.items() if path is None]
    if absent:
        return Check("prometheus", FAIL, f"{' and '.join(absent)} not found: no scrape tests (weeks 12-19)",
                     f"{PROVISION} (installs prometheus)")
    versions = []
    for tool, path in found.items():
        proc = _run([path, "--version"])
        first = (proc.stdout or proc.stderr).strip().splitlines()
        if proc.returncode != 0 or not first:
            return Check("prometheus", FAIL, f"`{tool} --version` failed", "reinstall: `apt-get install --reinstall prometheus`",
                         tail(proc.stderr))
        versions.append(first[0].split(" (")[0])
    return Check("prometheus", OK, "; ".join(versions))


def check_jupyter() -> Check:
    versions = {}
    for dist, module in (("jupyterlab", "jupyterlab"), ("nbgrader", "nbgrader")):
        try:
            importlib.import_module(module)
            versions[dist] = importlib.metadata.version(dist)
        except Exception as exc:
            return Check("jupyter", FAIL, f"`import {module}` failed: {exc}",
                         f"{PROVISION} (pip installs the workbook's dependencies into .venv)")
    if not versions["jupyterlab"].startswith("4."):
        return Check("jupyter", FAIL, f"JupyterLab {versions['jupyterlab']} is not 4.x",
                     f"{PROVISION} (pins jupyterlab>=4.2,<5)")
    return Check("jupyter", OK, f"JupyterLab {versions['jupyterlab']}, nbgrader {versions['nbgrader']}")


CHECKS: list[Callable[[], Check]] = [
    check_python, check_venv, check_privileges, check_bcc, check_tracefs, check_kernel_headers,
    check_btf, check_lockdown, check_tracepoint, check_kprobe, check_fentry, check_nft, check_netns,
    check_coturn, check_prometheus, check_jupyter,
]


def _safe(check: Callable[[], Check]) -> Check:
    name = check.__name__.removeprefix("check_")
    try:
        return check()
    except subprocess.TimeoutExpired as exc:
        return Check(name, FAIL, f"timed out after {exc.timeout:.0f}s: {' '.join(map(str, exc.cmd))}",
                     "something hangs on this machine; run the command by hand to see why")
    except Exception as exc:  # one broken check must not hide the others
        return Check(name, FAIL, f"the check itself crashed: {type(exc).__name__}: {exc}",
                     "report this as a netsprint bug, with `netsprint doctor --json`")


def run_checks(checks: Sequence[Callable[[], Check]] | None = None) -> list[Check]:
    return [_safe(check) for check in (CHECKS if checks is None else checks)]


def exit_code(checks: Sequence[Check]) -> int:
    return 1 if any(c.status == FAIL for c in checks) else 0


def to_json(checks: Sequence[Check], fixes: Sequence | None = None) -> str:
    """The report as JSON; `fixes` (netsprint.ebpf.doctor.Fix, from --fix) come first when given."""
    data = {"ok": exit_code(checks) == 0}
    if fixes is not None:
        data["fixes"] = [{**dataclasses.asdict(f), "status": f.status} for f in fixes]
    data["checks"] = [dataclasses.asdict(c) for c in checks]
    return json.dumps(data, indent=2)


STYLE = {OK: "bold green", WARN: "bold yellow", FAIL: "bold red"}
FIX_STYLE = {"fixed": "bold green", "nothing to fix": "green", "cannot fix": "bold yellow"}


def _print_table(console, title: str, columns: tuple[str, str], rows: Sequence,
                 styles: dict[str, str]) -> None:
    """One row per Check or Fix: name, status (coloured by `styles`), detail, what to do."""
    from rich.table import Table
    from rich.text import Text

    table = Table(title=title, show_lines=False)
    for column in columns:
        table.add_column(column, no_wrap=True)
    table.add_column("detail", overflow="fold")
    table.add_column("what to do", overflow="fold")
    for r in rows:
        table.add_row(r.name, Text(r.status, style=styles[r.status]), Text(r.detail), Text(r.hint))
    console.print(table)


def render_fixes(fixes: Sequence, console=None) -> None:
    """Print what `--fix` did as a rich table (before the re-check's report)."""
    from rich.console import Console

    _print_table(console or Console(), "netsprint doctor --fix", ("fix", "result"), fixes,
                 FIX_STYLE)


def render(checks: Sequence[Check], console=None) -> None:
    """Print the report as a rich table, then the captured log of each FAIL."""
    from rich.console import Console

    console = console or Console()
    _print_table(console, "netsprint doctor", ("check", "status"), checks, STYLE)
    for c in checks:
        if c.status == FAIL and c.log:
            console.rule(f"{c.name}: tool output")
            console.print(c.log, markup=False, highlight=False)
    counts = {s: sum(c.status == s for c in checks) for s in STATUSES}
    console.print(f"{counts[OK]} OK, {counts[WARN]} WARN, {counts[FAIL]} FAIL")


def main(as_json: bool = False, fix: bool = False) -> int:
    """Check (after fixing what `--fix` can: tracefs, kernel headers), print, exit 1 on a FAIL."""
    fixes = ebpf_doctor.run_fixes() if fix else None
    checks = run_checks()
    if as_json:
        print(to_json(checks, fixes))
    else:
        if fixes is not None:
            render_fixes(fixes)
        render(checks)
    return exit_code(checks)


if __name__ == "__main__":
    args = sys.argv[1:]
    sys.exit(main(as_json="--json" in args, fix="--fix" in args))
