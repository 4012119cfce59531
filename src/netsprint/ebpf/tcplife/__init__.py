"""Week 10: TCP connect, accept and close events with connect latency and lifetime, from the
`sock:inet_sock_set_state` tracepoint (`tcplife.bpf.c`; `netsprint trace tcp`).

Importing this package does not import bcc: `decode` and `classify` are pure, `TcpLifeTracer`
needs root.
"""

from netsprint.ebpf.tcplife.lifecycle import Lifecycle, LifecycleTracker, classify
from netsprint.ebpf.tcplife.loader import (EventKind, TcpEvent, TcpLifeDecodeError, TcpLifeTracer,
                                           decode, kprobe_check)

__all__ = ["EventKind", "Lifecycle", "LifecycleTracker", "TcpEvent", "TcpLifeDecodeError",
           "TcpLifeTracer", "classify", "decode", "kprobe_check"]
