"""Attach a loaded BPF program to an interface's clsact qdisc, without bpffs or pyroute2.

`tc filter add ... bpf` only takes an ELF object or a program pinned in bpffs, and bcc's
Python side has no TC helper. The program is already loaded (we hold its fd), so we send the
one netlink message `tc` would send: RTM_NEWTFILTER with the fd in TCA_BPF_FD
(net/sched/cls_bpf.c). The qdisc itself is added and removed with the `tc` command.
Everything happens in the network namespace given (None: this process's).

Owns nothing: the caller removes the qdisc (`remove_clsact`), which takes the filter, and
the kernel's reference to the program, with it.
"""

from __future__ import annotations

import socket
import struct

from netsprint.lab.topology import (NLM_F_ACK, NLM_F_REQUEST, NLMSG_HEADER, check_netlink_ack,
                                    run_checked, call_in_netns, netns_exists, socket_in_netns)

NETLINK_ROUTE = 0           # linux/netlink.h
RTM_NEWTFILTER = 44         # linux/rtnetlink.h
NLM_F_EXCL, NLM_F_CREATE = 0x200, 0x400
TCMSG = struct.Struct("=BBHiIII")  # struct tcmsg: family, pad, pad, ifindex, handle, parent, info
NLA_HEADER = struct.Struct("=HH")  # struct nlattr: len, type
NLA_F_NESTED = 0x8000
TCA_KIND, TCA_OPTIONS = 1, 2                    # linux/rtnetlink.h
TCA_BPF_FD, TCA_BPF_NAME, TCA_BPF_FLAGS = 6, 7, 8  # linux/pkt_cls.h
TCA_BPF_FLAG_ACT_DIRECT = 1  # the program's return value is the verdict (TC_ACT_*)
# linux/pkt_sched.h: clsact's handle is ffff:, its hooks are the minor numbers fff2/fff3.
TC_H_CLSACT = 0xFFFF0000
HOOKS = {"ingress": 0xFFF2, "egress": 0xFFF3}
ETH_P_ALL = 0x0003  # linux/if_ether.h: the filter sees every protocol


def tc_argv(netns: str | None, args: list[str]) -> list[str]:
    return ["tc", *(["-n", netns] if netns else []), *args]


def add_clsact(netns: str | None, ifname: str) -> None:
    """Give `ifname` a clsact qdisc: two hooks (ingress, egress) and no queueing."""
    run_checked(tc_argv(netns, ["qdisc", "add", "dev", ifname, "clsact"]))


def remove_clsact(netns: str | None, ifname: str) -> None:
    """Delete the clsact qdisc and every filter on it; nothing to do when the namespace
    (and so the interface) is already gone."""
    if netns is not None and not netns_exists(netns):
        return
    run_checked(tc_argv(netns, ["qdisc", "del", "dev", ifname, "clsact"]))


def _attr(kind: int, payload: bytes) -> bytes:
    """One netlink attribute, padded to 4 bytes (NLA_ALIGN)."""
    length = NLA_HEADER.size + len(payload)
    return NLA_HEADER.pack(length, kind) + payload + b"\0" * (-length % 4)


def filter_request(ifindex: int, prog_fd: int, name: str, hook: str = "egress",
                   priority: int = 1, sequence: int = 1) -> bytes:
    """The RTM_NEWTFILTER message for `tc filter add dev IF HOOK prio P bpf da fd FD`."""
    parent = TC_H_CLSACT | HOOKS[hook]
    info = (priority << 16) | socket.htons(ETH_P_ALL)  # TC_H_MAKE(prio << 16, protocol)
    options = (_attr(TCA_BPF_FD, struct.pack("=I", prog_fd))
               + _attr(TCA_BPF_NAME, name.encode() + b"\0")
               + _attr(TCA_BPF_FLAGS, struct.pack("=I", TCA_BPF_FLAG_ACT_DIRECT)))
    body = (TCMSG.pack(socket.AF_UNSPEC, 0, 0, ifindex, 0, parent, info)
            + _attr(TCA_KIND, b"bpf\0") + _attr(TCA_OPTIONS | NLA_F_NESTED, options))
    flags = NLM_F_REQUEST | NLM_F_ACK | NLM_F_CREATE | NLM_F_EXCL
    return NLMSG_HEADER.pack(NLMSG_HEADER.size + len(body), RTM_NEWTFILTER, flags, sequence, 0) + body


def attach_filter(netns: str | None, ifname: str, prog_fd: int, name: str,
                  hook: str = "egress") -> None:
    """Attach the loaded SCHED_CLS program `prog_fd` to `ifname`'s clsact `hook`."""
    ifindex = (socket.if_nametoindex(ifname) if netns is None
               else call_in_netns(netns, socket.if_nametoindex, ifname))
    with socket_in_netns(netns, socket.AF_NETLINK, socket.SOCK_RAW, NETLINK_ROUTE) as sock:
        sock.settimeout(5.0)
        sock.bind((0, 0))
        sock.send(filter_request(ifindex, prog_fd, name, hook))
        check_netlink_ack(sock.recv(65536), f"tc filter add dev {ifname} {hook} bpf {name}")
