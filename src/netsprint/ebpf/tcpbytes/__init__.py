"""tcpbytes (week 11): payload bytes per TCP connection and per remote IP, from tracepoints.

`loader` holds the ctypes mirrors, the pure `decode()` and `TcpBytesTracer`; `command`
is `netsprint trace bytes`. Importing this package does not import bcc.
"""

from netsprint.ebpf.tcpbytes.loader import ConnBytes, IpTotals, TcpBytesTracer, decode

__all__ = ["ConnBytes", "IpTotals", "TcpBytesTracer", "decode"]
