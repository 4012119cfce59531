"""Compile, load, attach and detach one bcc program, with errors a learner can act on.

Every program of the workbook goes through `BpfProgram`: it checks first that this machine
can run BPF at all (bcc, privileges, tracefs, kernel headers) and says what to do if not;
it keeps bcc's and clang's chatter (warnings, the verifier log) off the notebook, where any
stderr in a graded cell would score 0, and hands it back inside `BpfLoadError` when
something fails; and it detaches everything it attached on `close()`, also on errors.

Owns: one `bcc.BPF` object and every attachment made through it. Does not own: the events
it produces (each program's loader decodes its own) or the network namespace it may attach
in (the caller enters it).
"""

from __future__ import annotations

import contextlib
import ctypes
import functools
import os
import re
import subprocess
import sys
import tempfile
from collections.abc import Callable, Iterator, Sequence
from pathlib import Path
from typing import TypeVar

from netsprint.doctor import (CAP_BPF, CAP_NET_ADMIN, CAP_PERFMON, CAP_SYS_ADMIN, parse_cap_eff,
                              tail)
from netsprint.ebpf.doctor import TRACEFS_POINTS
from netsprint.errors import NetsprintError

T = TypeVar("T")
COMPILE_TIMEOUT = 60.0  # seconds for clang in the child
EBPF_DIR = Path(__file__).parent
INCLUDE_DIR = EBPF_DIR / "include"  # shared headers (netsprint_common.h), on every -I path
AS_ROOT = "run it as root, e.g. `sudo .venv/bin/netsprint ...` (or `sudo .venv/bin/netsprint grade weekNN`)"
FIX = "`sudo .venv/bin/netsprint doctor --fix` repairs what it can and explains the rest"


class BpfLoadError(NetsprintError):
    """A BPF program could not be compiled, loaded or attached.

    `hint` says what to do next; `log` keeps what clang, bcc or the verifier printed."""

    def __init__(self, message: str, hint: str = "", log: str = "") -> None:
        super().__init__(message)
        self.message, self.hint, self.log = message, hint, log

    def __str__(self) -> str:
        text = self.message
        if self.hint:
            text += f"\n  what to do: {self.hint}"
        if self.log:
            text += "\n  log (last lines):\n    " + "\n    ".join(tail(self.log, 25).splitlines())
        return text


# --- can this machine run BPF? --------------------------------------------------------------

def has_bpf_privileges(net_admin: bool = False, status_text: str | None = None) -> bool:
    """Loading tracing programs needs CAP_BPF and CAP_PERFMON (kernel >= 5.8) or
    CAP_SYS_ADMIN; XDP and TC also need CAP_NET_ADMIN."""
    caps = parse_cap_eff(status_text or Path("/proc/self/status").read_text())

    def has(bit: int) -> bool:
        return bool(caps >> bit & 1)

    bpf = has(CAP_SYS_ADMIN) or (has(CAP_BPF) and has(CAP_PERFMON))
    return bpf and (has(CAP_NET_ADMIN) or not net_admin)


def tracefs_path() -> Path | None:
    for point in map(Path, TRACEFS_POINTS):
        if (point / "events").is_dir():
            return point
    return None


def require_bpf(*, run_as: str = AS_ROOT, tracing: bool = True, net_admin: bool = False) -> None:
    """Raise `BpfLoadError` saying what to do unless this process can load BPF programs.

    `tracing`: also needs tracefs (tracepoint programs); `net_admin`: XDP/TC programs."""
    try:
        import bcc  # noqa: F401
    except Exception as exc:  # ImportError, or OSError from a broken libbcc
        raise BpfLoadError(f"bcc cannot be imported ({exc})",
                           "`make provision` installs python3-bpfcc and makes .venv with "
                           "--system-site-packages (pip cannot install bcc)") from exc
    if not has_bpf_privileges(net_admin):
        need = "CAP_BPF+CAP_PERFMON (or CAP_SYS_ADMIN)" + (" and CAP_NET_ADMIN" if net_admin else "")
        raise BpfLoadError(f"loading BPF programs needs {need}; this process (uid {os.geteuid()}) "
                           "lacks them", run_as)
    if tracing and tracefs_path() is None:
        raise BpfLoadError("tracefs is not mounted, so no tracepoint can be attached", FIX)
    build = Path("/lib/modules", os.uname().release, "build")
    if not build.exists():
        raise BpfLoadError(f"{build} is missing: bcc needs kernel headers to compile", FIX)


def require_tracefs(*, run_as: str = AS_ROOT) -> Path:
    """Raise `BpfLoadError` saying what to do unless this process can use tracefs itself
    (enable an event in a private instance and read its trace: no BPF, so no bcc and no
    headers); return the tracefs mount."""
    try:
        root = tracefs_path()
    except PermissionError:  # mounted, but only root may look inside (mode 0700)
        root = Path(TRACEFS_POINTS[0])
    if root is None:
        raise BpfLoadError("tracefs is not mounted, so no tracepoint can be enabled", FIX)
    if not os.access(root / "instances", os.W_OK):
        raise BpfLoadError(f"enabling tracepoints needs root; this process (uid {os.geteuid()}) "
                           "cannot write to tracefs", run_as)
    return root


def tracepoint_exists(category: str, event: str) -> bool:
    root = tracefs_path()
    return root is not None and (root / "events" / category / event).is_dir()


def require_tracepoint(category: str, event: str) -> None:
    if not tracepoint_exists(category, event):
        raise BpfLoadError(f"this kernel has no tracepoint {category}:{event}",
                           "use a kernel that has it (`ls /sys/kernel/tracing/events/"
                           f"{category}`) or the Vagrant VM")


# --- keeping clang and bcc off the notebook ---------------------------------------------------

class CapturedStderr:
    text = ""


@contextlib.contextmanager
def captured_stderr() -> Iterator[CapturedStderr]:
    """Send file descriptor 2 (where clang, libbpf and the verifier write) to a temporary
    file for the block; the text is on the yielded object afterwards."""
    captured = CapturedStderr()
    saved = os.dup(2)
    with tempfile.TemporaryFile() as sink:
        try:
            os.dup2(sink.fileno(), 2)
            yield captured
        finally:
            os.dup2(saved, 2)
            os.close(saved)
            sink.seek(0)
            captured.text = sink.read().decode(errors="replace")


_CLANG_ERROR = re.compile(r"^.*?:\d+:\d+: error: .*$", re.MULTILINE)


def explain(action: str, exc: BaseException, log: str) -> BpfLoadError:
    """Turn what bcc raised (a bare Exception, mostly) and printed into one clear error."""
    reason = str(exc)
    first_error = _CLANG_ERROR.search(log)
    if first_error:
        return BpfLoadError(f"{action}: the C does not compile: {first_error.group(0).strip()}",
                            "fix the first error shown; clang's full output is below", log)
    if "Failed to load" in reason or "bpf: Failed to load program" in log:
        return BpfLoadError(f"{action}: the verifier refused the program ({reason})",
                            "read the verifier log from the bottom up: the last instruction is where "
                            "it gave up. Common causes: a map lookup's pointer used without a NULL "
                            "check, reading memory without bpf_probe_read_*(), a loop the verifier "
                            "cannot bound, a stack buffer larger than 512 bytes", log)
    if "Permission denied" in reason or "Operation not permitted" in reason or "super-user" in reason:
        return BpfLoadError(f"{action}: the kernel refused it ({reason})", AS_ROOT, log)
    if "No such file" in reason and "modules" in (reason + log):
        return BpfLoadError(f"{action}: kernel headers are missing ({reason})", FIX, log)
    return BpfLoadError(f"{action}: {type(exc).__name__}: {reason}",
                        "see the log below; `netsprint doctor` checks the whole BPF setup", log)


def guarded(action: str, call: Callable[[], T], *, keep_warnings: bool = False):
    """`call()` with clang's, libbpf's and the verifier's output kept off stderr; a failure
    becomes a BpfLoadError carrying that output. With `keep_warnings`, returns
    (result, what was printed) instead of the result."""
    with captured_stderr() as err:
        try:
            result = call()
        except Exception as exc:  # bcc raises bare Exception for every failure
            failure = exc
        else:
            failure = None
    if failure is not None:
        raise explain(action, failure, err.text) from failure
    return (result, err.text) if keep_warnings else result


_COMPILE_IN_CHILD = """
import sys
from bcc import BPF
try:
    BPF(text=sys.stdin.read().encode(), cflags=sys.argv[1:])
except Exception:
    pass  # an ordinary failure: the parent compiles again and explains it
print("survived")
"""


def survives_compiling(text: str, cflags: Sequence[str], name: str = "<text>") -> None:
    """Compile `text` once in a child process. Some mistakes (a stack over 512 bytes) make
    bcc's LLVM call exit() instead of raising, which would kill a notebook's kernel; the
    child dies instead and the parent raises BpfLoadError with what LLVM said."""
    proc = subprocess.run([sys.executable, "-c", _COMPILE_IN_CHILD, *cflags], input=text,
                          capture_output=True, text=True, timeout=COMPILE_TIMEOUT)
    if "survived" in proc.stdout:
        return
    said = [line for line in proc.stderr.splitlines() if "error" in line.lower()]
    raise BpfLoadError(f"compiling {name}: the compiler aborted ({said[-1].strip() if said else f'exit {proc.returncode}'})",
                       "a BPF stack frame holds at most 512 bytes: keep big buffers in a per-CPU "
                       "array map or a ring-buffer record instead of local variables", proc.stderr)


# --- the program --------------------------------------------------------------------------------

BPF_PROG_TYPE_TRACING = 26  # include/uapi/linux/bpf.h enum bpf_prog_type (bcc's BPF.TRACING)


# bpf(2), as the two program types bcc 0.26 cannot attach need it: map iterators and
# BTF-typed raw tracepoints (include/uapi/linux/bpf.h)
BPF_SYSCALL_NUMBER = {"x86_64": 321, "aarch64": 280}  # __NR_bpf
BPF_PROG_LOAD, BPF_RAW_TRACEPOINT_OPEN, BPF_LINK_CREATE, BPF_ITER_CREATE = 5, 17, 28, 33  # bpf_cmd
BPF_TRACE_RAW_TP, BPF_TRACE_ITER = 23, 28              # enum bpf_attach_type
VERIFIER_LOG_BYTES = 1 << 20


@functools.cache
def _libc() -> ctypes.CDLL:
    libc = ctypes.CDLL(None, use_errno=True)
    libc.syscall.restype = ctypes.c_long
    return libc


def bpf_syscall(command: int, attr: ctypes.Structure) -> int:
    """bpf(2); the new fd (or 0), or OSError with the kernel's errno."""
    import platform

    number = BPF_SYSCALL_NUMBER.get(platform.machine())
    if number is None:
        raise BpfLoadError(f"no bpf() system call number known for {platform.machine()}",
                           "add it to loader.BPF_SYSCALL_NUMBER (asm/unistd.h: __NR_bpf)")
    fd = _libc().syscall(number, command, ctypes.byref(attr), ctypes.sizeof(attr))
    if fd < 0:
        code = ctypes.get_errno()
        raise OSError(code, os.strerror(code))
    return fd


def program_fdinfo(fd: int) -> dict[str, int]:
    """The numbers the kernel reports for a BPF program fd in /proc/self/fdinfo: prog_id,
    run_cnt and run_time_ns (while BPF_ENABLE_STATS is on), recursion_misses (runs it
    skipped because another BPF program was running on that CPU), ..."""
    numbers = {}
    for line in Path(f"/proc/self/fdinfo/{fd}").read_text().splitlines():
        name, _, value = line.partition(":")
        if value.strip().isdigit():
            numbers[name] = int(value)
    return numbers


class _MapIterLinkInfo(ctypes.Structure):
    """union bpf_iter_link_info, its `map` member: which map an element iterator walks."""

    _fields_ = [("map_fd", ctypes.c_uint32)]


class _LinkCreateAttr(ctypes.Structure):
    """union bpf_attr for BPF_LINK_CREATE with an iterator's link info."""

    _fields_ = [("prog_fd", ctypes.c_uint32), ("target_fd", ctypes.c_uint32),
                ("attach_type", ctypes.c_uint32), ("flags", ctypes.c_uint32),
                ("iter_info", ctypes.c_uint64), ("iter_info_len", ctypes.c_uint32),
                ("pad", ctypes.c_uint32)]


class _IterCreateAttr(ctypes.Structure):
    """union bpf_attr for BPF_ITER_CREATE."""

    _fields_ = [("link_fd", ctypes.c_uint32), ("flags", ctypes.c_uint32)]


class MapIterator:
    """Owns the BPF link of one iterator over a map's elements (a `bpf_iter__bpf_map_elem`
    program, kernel >= 5.9). `read()` runs the program once over every element and returns
    what it wrote with bpf_seq_write; `close()` drops the link (idempotent)."""

    def __init__(self, prog_fd: int, map_fd: int) -> None:
        self._link_fd = -1
        info = _MapIterLinkInfo(map_fd)
        attr = _LinkCreateAttr(prog_fd=prog_fd, attach_type=BPF_TRACE_ITER,
                               iter_info=ctypes.addressof(info), iter_info_len=ctypes.sizeof(info))
        try:
            self._link_fd = bpf_syscall(BPF_LINK_CREATE, attr)
        except OSError as exc:
            raise BpfLoadError(f"creating a map iterator's link failed: {exc.strerror}",
                               "map iterators need kernel >= 5.9 with CONFIG_DEBUG_INFO_BTF=y") from exc

    def read(self) -> bytes:
        if self._link_fd < 0:
            raise BpfLoadError("this map iterator is closed")
        try:
            fd = bpf_syscall(BPF_ITER_CREATE, _IterCreateAttr(link_fd=self._link_fd))
        except OSError as exc:
            raise BpfLoadError(f"starting a map iterator failed: {exc.strerror}") from exc
        chunks = []
        try:
            while chunk := os.read(fd, 1 << 16):
                chunks.append(chunk)
        finally:
            os.close(fd)
        return b"".join(chunks)

    def close(self) -> None:
        if self._link_fd >= 0:
            fd, self._link_fd = self._link_fd, -1
            os.close(fd)


class _ProgLoadAttr(ctypes.Structure):
    """union bpf_attr for BPF_PROG_LOAD, up to attach_btf_id (include/uapi/linux/bpf.h)."""

    _fields_ = [("prog_type", ctypes.c_uint32), ("insn_cnt", ctypes.c_uint32),
                ("insns", ctypes.c_uint64), ("license", ctypes.c_uint64),
                ("log_level", ctypes.c_uint32), ("log_size", ctypes.c_uint32),
                ("log_buf", ctypes.c_uint64), ("kern_version", ctypes.c_uint32),
                ("prog_flags", ctypes.c_uint32), ("prog_name", ctypes.c_char * 16),
                ("prog_ifindex", ctypes.c_uint32), ("expected_attach_type", ctypes.c_uint32),
                ("prog_btf_fd", ctypes.c_uint32), ("func_info_rec_size", ctypes.c_uint32),
                ("func_info", ctypes.c_uint64), ("func_info_cnt", ctypes.c_uint32),
                ("line_info_rec_size", ctypes.c_uint32), ("line_info", ctypes.c_uint64),
                ("line_info_cnt", ctypes.c_uint32), ("attach_btf_id", ctypes.c_uint32),
                ("attach_prog_fd", ctypes.c_uint32)]


class _RawTracepointOpenAttr(ctypes.Structure):
    """union bpf_attr for BPF_RAW_TRACEPOINT_OPEN: no name for a BTF-typed program (the
    tracepoint is the one its attach_btf_id named at load)."""

    _fields_ = [("name", ctypes.c_uint64), ("prog_fd", ctypes.c_uint32), ("pad", ctypes.c_uint32)]


class BtfTracepoint:
    """Owns one BTF-typed raw tracepoint program (what libbpf calls tp_btf) and its
    attachment. bcc 0.26 cannot load this type, so the instructions bcc compiled (map fds
    already in them) are loaded here with the tracepoint's BTF type id. Unlike a plain raw
    tracepoint program, the verifier knows the arguments' types, so the program may read
    kernel structs with plain loads instead of bpf_probe_read_kernel (docs/ebpf.md)."""

    def __init__(self, name: str, insns: bytes, attach_btf_id: int) -> None:
        self.prog_fd = self.link_fd = -1
        code, license_text = ctypes.create_string_buffer(insns, len(insns)), ctypes.create_string_buffer(b"GPL")
        log = ctypes.create_string_buffer(VERIFIER_LOG_BYTES)
        attr = _ProgLoadAttr(prog_type=BPF_PROG_TYPE_TRACING, insn_cnt=len(insns) // 8,
                             insns=ctypes.addressof(code), license=ctypes.addressof(license_text),
                             prog_name=name.encode()[:15], expected_attach_type=BPF_TRACE_RAW_TP,
                             attach_btf_id=attach_btf_id)
        try:
            try:
                self.prog_fd = bpf_syscall(BPF_PROG_LOAD, attr)
            except OSError:  # again with the verifier's log, as libbpf does: the log costs
                attr.log_level, attr.log_size, attr.log_buf = 1, len(log), ctypes.addressof(log)
                self.prog_fd = bpf_syscall(BPF_PROG_LOAD, attr)  # time, and fills up on big ones
        except OSError as exc:
            verifier = log.value.decode(errors="replace")
            hint = ("read the verifier log from the bottom up: the last instruction is where it "
                    "gave up" if verifier else
                    "BTF-typed tracepoints need kernel >= 5.9 with CONFIG_DEBUG_INFO_BTF=y")
            raise BpfLoadError(f"loading {name} as a BTF-typed tracepoint program: {exc.strerror}",
                               hint, verifier) from exc
        self.name = name
        try:
            self.attach()
        except BpfLoadError:
            self.close()
            raise

    def attach(self) -> None:
        """Attach (again, after `detach()`); no-op while attached."""
        if self.link_fd >= 0:
            return
        try:
            self.link_fd = bpf_syscall(BPF_RAW_TRACEPOINT_OPEN, _RawTracepointOpenAttr(prog_fd=self.prog_fd))
        except OSError as exc:
            raise BpfLoadError(f"attaching {self.name}: {exc.strerror}", FIX) from exc

    def detach(self) -> None:
        """Stop running on the tracepoint; the program stays loaded (bench/hooks.py)."""
        if self.link_fd >= 0:
            fd, self.link_fd = self.link_fd, -1
            os.close(fd)

    def close(self) -> None:
        self.detach()
        if self.prog_fd >= 0:
            fd, self.prog_fd = self.prog_fd, -1
            os.close(fd)


class BpfProgram:
    """One compiled bcc module and every attachment made through it.

    Build it from a `.bpf.c` file (the package's programs) or from text (a learner's cell),
    attach with the methods below, read maps with `prog["name"]`, and `close()` (or use
    `with`) to detach everything. Creating one checks the machine first (`require_bpf`)."""

    def __init__(self, src_file: Path | str | None = None, *, text: str | None = None,
                 cflags: Sequence[str] = (), name: str | None = None, run_as: str = AS_ROOT,
                 tracing: bool = True, net_admin: bool = False) -> None:
        if (src_file is None) == (text is None):
            raise ValueError("give exactly one of src_file and text")
        self.name = name or (Path(src_file).name if src_file is not None else "<text>")
        self._closers: list[Callable[[], object]] = []
        self.btf_tracepoints: dict[str, BtfTracepoint] = {}  # function name -> its program
        self._bpf = None
        self.warnings = ""  # what clang/bcc printed on the last successful step
        require_bpf(run_as=run_as, tracing=tracing, net_admin=net_admin)
        from bcc import BPF

        flags = [f"-I{INCLUDE_DIR}", *cflags]
        if src_file is not None:
            flags.append(f"-I{Path(src_file).resolve().parent}")
        if text is not None:
            survives_compiling(text, flags, self.name)
        kwargs = {"src_file": str(src_file).encode()} if src_file is not None else {"text": text.encode()}
        self._bpf = self._guarded(f"compiling {self.name}", lambda: BPF(cflags=flags, **kwargs))

    def _guarded(self, action: str, call: Callable[[], T]) -> T:
        result, self.warnings = guarded(action, call, keep_warnings=True)
        return result

    @property
    def bpf(self):
        """The `bcc.BPF` object, for what this class does not wrap."""
        if self._bpf is None:
            raise BpfLoadError(f"{self.name} is closed")
        return self._bpf

    def __getitem__(self, map_name: str):
        return self.bpf[map_name.encode() if isinstance(map_name, str) else map_name]

    def attach_tracepoint(self, tracepoint: str, fn_name: str) -> None:
        """`tracepoint` is "category:event"; bcc detaches it in `close()`."""
        category, _, event = tracepoint.partition(":")
        require_tracepoint(category, event)
        self._guarded(f"attaching {fn_name} to {tracepoint}",
                      lambda: self.bpf.attach_tracepoint(tp=tracepoint.encode(), fn_name=fn_name.encode()))

    def attach_kprobe(self, function: str, fn_name: str) -> None:
        """Only behind a feature check that really loaded a kprobe (kernels built without
        CONFIG_KPROBES have none); bcc detaches it in `close()`."""
        self._guarded(f"attaching {fn_name} to {function}",
                      lambda: self.bpf.attach_kprobe(event=function.encode(), fn_name=fn_name.encode()))

    def load_func(self, fn_name: str, prog_type: int):
        """Load one function (e.g. BPF.XDP, BPF.SCHED_CLS) through the verifier."""
        return self._guarded(f"loading {fn_name}", lambda: self.bpf.load_func(fn_name.encode(), prog_type))

    def attach_btf_tracepoint(self, tracepoint: str, fn_name: str, attach_btf_id: int) -> None:
        """Load `fn_name` as a BTF-typed raw tracepoint program on `tracepoint`
        ("category:event"; `attach_btf_id` is its btf_trace_<event> typedef's id, from
        btf.KernelTypes) and attach it; detached in `close()`."""
        category, _, event = tracepoint.partition(":")
        require_tracepoint(category, event)
        insns = self._guarded(f"compiling {fn_name}", lambda: self.bpf.dump_func(fn_name.encode()))
        link = self.btf_tracepoints[fn_name] = BtfTracepoint(fn_name, insns, attach_btf_id)
        self.on_close(link.close)

    def map_iterator(self, map_name: str) -> MapIterator:
        """Load this module's `bpf_iter__bpf_map_elem` function (bcc takes the iterator's
        target from that name) as an iterator over `map_name`'s elements; detached in
        `close()`. Iterators run only when read: nothing is attached to any event."""
        function = self.load_func("bpf_iter__bpf_map_elem", BPF_PROG_TYPE_TRACING)
        iterator = MapIterator(function.fd, self[map_name].map_fd)
        self.on_close(iterator.close)
        return iterator

    def on_close(self, undo: Callable[[], object]) -> None:
        """Run `undo` in `close()`, last registered first (e.g. removing an XDP attachment,
        which outlives the program's file descriptor)."""
        self._closers.append(undo)

    def open_ring_buffer(self, map_name: str, on_event: Callable[[bytes], object]) -> None:
        """Call `on_event(raw_bytes)` for each record `poll()` drains from a BPF_RINGBUF_OUTPUT."""
        def callback(_ctx, data, size):
            on_event(ctypes.string_at(data, size))
        self[map_name].open_ring_buffer(callback)

    def poll(self, timeout: float) -> None:
        """Wait up to `timeout` seconds for ring-buffer records and hand them to their callbacks."""
        self.bpf.ring_buffer_poll(max(0, int(timeout * 1000)))

    def close(self) -> None:
        errors = []
        while self._closers:
            try:
                self._closers.pop()()
            except Exception as exc:  # keep detaching the rest, report after
                errors.append(exc)
        if self._bpf is not None:
            bpf, self._bpf = self._bpf, None
            with captured_stderr():
                bpf.cleanup()
        if errors:
            raise BpfLoadError(f"detaching {self.name} left errors: {errors}",
                               "check `bpftool prog show` and `bpftool net show` for leftovers")

    def __enter__(self) -> BpfProgram:
        return self

    def __exit__(self, *exc_info) -> None:
        self.close()

    def __del__(self) -> None:
        if getattr(self, "_bpf", None) is not None:
            self.close()
