"""Load the tiny programs of `feature_probe.bpf.c` to learn what this kernel really allows.

Run one probe per process: `python -m netsprint.ebpf.probes.feature_probe tracepoint|kprobe|fentry`.
It prints one JSON line `{"status", "detail", "hint"}` on stdout and leaves bcc's and clang's
chatter on stderr, for the caller to keep or drop. A process per probe lets the caller kill a
probe that hangs, and its exit closes every BPF file descriptor, so nothing stays attached.

Owns: compiling, attaching and triggering one probe. Does not own: deciding how a result is
shown (that is `netsprint.doctor`).
"""

from __future__ import annotations

import ctypes
import json
import os
import sys
from pathlib import Path

SOURCE = Path(__file__).with_name("feature_probe.bpf.c")
TRACEPOINTS = (("syscalls", "sys_enter_getpid"), ("raw_syscalls", "sys_enter"))
FENTRY_TARGET = "bpf_fentry_test1"
TRACEPOINT_FIRST = "use the tracepoint programs (the workbook's default); this path stays optional here"


def _result(status: str, detail: str, hint: str = "") -> dict[str, str]:
    return {"status": status, "detail": detail, "hint": hint}


def _compile(kind: str):
    from bcc import BPF

    cflags = [f"-DNETSPRINT_PROBE_{kind.upper()}", f"-DNETSPRINT_TGID={os.getpid()}"]
    return BPF(src_file=str(SOURCE).encode(), cflags=cflags)


def _fire_and_count(bpf) -> int:
    for _ in range(5):
        os.getpid()  # one getpid(2) each: glibc does not cache the pid
    return int(bpf["hits"][ctypes.c_int(0)].value)


def probe_tracepoint() -> dict[str, str]:
    from bcc import BPF

    found = [f"{c}:{e}" for c, e in TRACEPOINTS if BPF.tracepoint_exists(c, e)]
    if not found:
        return _result("FAIL", "no syscall tracepoints under tracefs",
                       "mount tracefs (make provision) on a kernel built with CONFIG_FTRACE_SYSCALLS")
    bpf = _compile("tracepoint")
    try:
        bpf.attach_tracepoint(tp=found[0].encode(), fn_name=b"probe_tracepoint")
        hits = _fire_and_count(bpf)
    finally:
        bpf.cleanup()
    if hits == 0:
        return _result("FAIL", f"attached to {found[0]} but it never fired",
                       "check that tracefs is mounted at /sys/kernel/tracing (make provision)")
    return _result("OK", f"loaded, attached to {found[0]}, fired {hits}x, detached")


def _kprobes_built_in() -> bool:
    return any(Path(p).exists() for p in (
        "/sys/bus/event_source/devices/kprobe",
        "/sys/kernel/tracing/kprobe_events",
        "/sys/kernel/debug/tracing/kprobe_events",
    ))


def probe_kprobe() -> dict[str, str]:
    bpf = _compile("kprobe")
    try:
        target = bpf.get_syscall_fnname(b"getpid").decode()
        try:
            bpf.attach_kprobe(event=target.encode(), fn_name=b"probe_kprobe")
        except Exception as exc:  # bcc raises bare Exception
            why = "this kernel is built without kprobes" if not _kprobes_built_in() else str(exc)
            return _result("WARN", f"unavailable: attaching to {target} failed: {why}", TRACEPOINT_FIRST)
        hits = _fire_and_count(bpf)
    finally:
        bpf.cleanup()
    if hits == 0:
        return _result("WARN", f"attached to {target} but it never fired", TRACEPOINT_FIRST)
    return _result("OK", f"loaded, attached to {target}, fired {hits}x, detached")


def probe_fentry() -> dict[str, str]:
    from bcc import BPF

    if not BPF.support_kfunc():
        return _result("WARN", "unavailable: no BTF trampolines on this kernel", TRACEPOINT_FIRST)
    if BPF.ksymname(FENTRY_TARGET) == -1:
        return _result("WARN", f"unavailable: kernel has no {FENTRY_TARGET} to attach to", TRACEPOINT_FIRST)
    try:
        bpf = _compile("fentry")  # bcc loads and attaches kfunc__* programs right here
    except Exception as exc:
        reason = str(exc)
        if "super-user" in reason:  # bcc's wording for any EPERM from the kernel, even as root
            reason = "load refused with EPERM" + ("" if os.geteuid() else " although running as root")
        return _result("WARN", f"unavailable: bcc says fentry is supported, but the kernel refused it ({reason})",
                       TRACEPOINT_FIRST)
    bpf.cleanup()
    return _result("OK", f"loaded and attached to {FENTRY_TARGET}, detached")


PROBES = {"tracepoint": probe_tracepoint, "kprobe": probe_kprobe, "fentry": probe_fentry}
KINDS = tuple(PROBES)


def main(argv: list[str]) -> int:
    if len(argv) != 1 or argv[0] not in PROBES:
        print(f"usage: python -m netsprint.ebpf.probes.feature_probe {{{'|'.join(KINDS)}}}", file=sys.stderr)
        return 2
    try:
        result = PROBES[argv[0]]()
    except Exception as exc:  # report, don't crash: the caller shows stderr for context
        # FAIL: the doctor turns it into WARN for the optional probes
        result = _result("FAIL", f"{type(exc).__name__}: {exc}",
                         "see the bcc output below; make provision sets up headers and tracefs")
    print(json.dumps(result), flush=True)
    return 0


if __name__ == "__main__":
    sys.exit(main(sys.argv[1:]))
