"""The NAT lab (weeks 3-7): namespaces, nftables NAT recipes and coturn as an outside referee.

- `topology`: `NatLab`, an "internet" bridge with two STUN addresses, two NAT routers and a
  peer behind each, all inside network namespaces (the root namespace gets nothing).
- `nat_types`: one nftables script per NAT type, loaded into a router's own namespace.
- `coturn`: Debian coturn's `turnserver` and `turnutils_natdiscovery`, started and parsed.
- `matrix`: two peers (STUN, signaling, relay) behind every pair of NAT types, in one lab.
- `command`: `netsprint lab up|down|nat|shell|classify|matrix`.
- `vethpair`: two namespaces joined by one veth, the smallest lab for XDP and TC (weeks 10-11).
- `pods`: `PodNode`, a Kubernetes-style node of pods (namespaces on a bridge, a mini CNI with
  IPAM, a cgroup per pod, a pod map for the agent) (weeks 14-15); `pods_command`:
  `netsprint lab pods up|down|list|exec`; `podtraffic`: known TCP traffic between pods (a sink
  and senders) that weeks 16-19 check the agent against.

`LabError` is defined here (not in a submodule) so every submodule can raise it without
importing another; it derives from the one error root.
"""

from __future__ import annotations

from netsprint.errors import NetsprintError


class LabError(NetsprintError):
    """A lab command failed: `ip`/`nft` refused, a process did not come up, a run timed out."""


__all__ = ["LabError"]
