"""`netsprint lab pods up|down|list|exec`: a node of pods from the command line (root).

`up` builds (or completes) a node and writes its pod map, `/run/netsprint/pods-<node>.json`,
which later invocations (`list`, `exec`, `down`) and the agent read. Wired into the CLI as
`lab pods`: `add_arguments(lab_subparsers)` adds the parser, `run(args)` runs it. Also
runnable alone: `python -m netsprint.lab.pods_command pods up`.
"""

from __future__ import annotations

import argparse
import os
import sys

from rich.console import Console
from rich.table import Table

from netsprint.errors import NetsprintError
from netsprint.lab.pods import (DEFAULT_PODS, PodNode, check_root, node_names,
                                parse_pod_list)

DEFAULT_NODE = "node1"


def add_arguments(subparsers: argparse._SubParsersAction) -> argparse.ArgumentParser:
    """Add `pods` (and its four commands) to the `lab` sub-command's subparsers."""
    pods = subparsers.add_parser("pods", help="weeks 14-15: pods as namespaces on a bridge (root)")
    commands = pods.add_subparsers(dest="pods_command", required=True)
    q = commands.add_parser("up", help="build a node of pods (adds pods a node lacks)")
    q.add_argument("--pods", default=",".join(DEFAULT_PODS), type=parse_pod_list,
                   help="comma-separated [namespace/]name list (default: %(default)s)")
    _node_options(q)
    q = commands.add_parser("down", help="remove a node: pods, bridge, cgroups, map file")
    _node_options(q)
    q.add_argument("--all", action="store_true", help="every node with a map file")
    q = commands.add_parser("list", help="the node's pods: namespace, workload, ip, cgroup id")
    _node_options(q)
    q.add_argument("--json", action="store_true", help="print the map file's content")
    q = commands.add_parser("exec", help="run a command inside a pod (its netns and cgroup)")
    q.add_argument("pod", help="name or namespace/name")
    q.add_argument("cmd", nargs=argparse.REMAINDER, help="-- COMMAND... (default: $SHELL)")
    _node_options(q)
    return pods


def _node_options(parser: argparse.ArgumentParser) -> None:
    parser.add_argument("--node", default=DEFAULT_NODE, help="the node's name")
    parser.add_argument("--map", default=None, metavar="PATH",
                        help="the pod map file (default: /run/netsprint/pods-NODE.json)")


def run(args: argparse.Namespace) -> int:
    """Dispatch `netsprint lab pods <command>`; every command needs root."""
    check_root()
    handlers = {"up": pods_up, "down": pods_down, "list": pods_list, "exec": pods_exec}
    return handlers[args.pods_command](args)


def pods_up(args: argparse.Namespace) -> int:
    node = PodNode(args.node, args.pods, map_path=args.map).up()
    Console().print(pod_table(node))
    print(f"pod map: {node.map_path}")
    return 0


def pods_down(args: argparse.Namespace) -> int:
    names = node_names() if args.all else [args.node]
    for name in names:
        # Without a map file there may still be namespaces or cgroups of that name.
        PodNode(name, pods=(), map_path=None if args.all else args.map).down()
        print(f"pods node {name!r} removed")
    if args.all and not names:
        print("no pods nodes on this machine")
    return 0


def pod_table(node: PodNode) -> Table:
    table = Table(title=f"pods on node {node.name!r} (bridge {node.gateway}, netns {node.netns})")
    for column in ("pod", "namespace", "workload", "ip", "cgroup id"):
        table.add_column(column)
    for pod in node.pods:
        table.add_row(pod.name, pod.namespace, pod.workload, pod.ip, str(pod.cgroup_id))
    return table


def pods_list(args: argparse.Namespace) -> int:
    node = PodNode.load(args.node, args.map)
    if args.json:
        print(node.map_path.read_text(), end="")  # as written, "building" status included
    else:
        Console().print(pod_table(node))
    return 0


def split_exec_command(node: str, map_path: str | None,
                       command: list[str]) -> tuple[str, str | None, list[str]]:
    """argparse hands everything after POD to the command, so `exec web-0 --node n -- cmd`
    arrives as `["--node", "n", "--", "cmd"]`: leading options still apply, `--` ends them."""
    while len(command) >= 2 and command[0] in ("--node", "--map"):
        if command[0] == "--node":
            node = command[1]
        else:
            map_path = command[1]
        command = command[2:]
    if command[:1] == ["--"]:
        command = command[1:]
    return node, map_path, command


def pods_exec(args: argparse.Namespace) -> int:
    name, map_path, command = split_exec_command(args.node, args.map, list(args.cmd))
    node = PodNode.load(name, map_path)
    argv = node.pod_argv(args.pod, command or [os.environ.get("SHELL", "/bin/sh")])
    sys.stdout.flush()
    os.execvp(argv[0], argv)  # replaces this process: the command gets the terminal


def main(argv: list[str] | None = None) -> int:
    """`python -m netsprint.lab.pods_command pods ...`: the commands of `netsprint lab pods`
    without the rest of the CLI."""
    parser = argparse.ArgumentParser(prog="netsprint lab")
    add_arguments(parser.add_subparsers(dest="lab_command", required=True))
    args = parser.parse_args(argv)
    try:
        return run(args)
    except NetsprintError as exc:  # one line, as `netsprint` itself prints them
        print(f"netsprint lab pods: {exc}", file=sys.stderr)
        return 2


if __name__ == "__main__":
    sys.exit(main())
