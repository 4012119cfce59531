"""`netsprint ...`: one entry point, one subcommand per tool.

Each handler imports its module lazily so `netsprint doctor` works even where a heavy or
optional dependency (bcc, nbgrader) is missing.
"""

from __future__ import annotations

import argparse
import importlib
import sys
from collections.abc import Callable
from pathlib import Path

from netsprint.errors import NetsprintError


def _cmd_echo_server(args: argparse.Namespace) -> int:
    from netsprint.reactor.echo import run_server

    run_server(args.host, args.port, sub_reactors=args.sub_reactors, backend=args.backend,
               edge=args.edge)
    return 0


def _cmd_doctor(args: argparse.Namespace) -> int:
    from netsprint.doctor import main as doctor_main

    return doctor_main(as_json=args.json, fix=args.fix)


def _cmd_progress(args: argparse.Namespace) -> int:
    from netsprint.course.progress import main as progress_main

    return progress_main(start=args.start, as_json=args.json, chart=args.chart, root=args.root)


def _cmd_release(args: argparse.Namespace) -> int:
    from netsprint.course.release import main as release_main

    return release_main(args.weeks, check=args.check, force=args.force, root=args.root)


def _cmd_grade(args: argparse.Namespace) -> int:
    from netsprint.course.grading import main as grade_main

    return grade_main(args.weeks, notebooks=args.notebooks, as_json=args.json, root=args.root,
                      jobs=args.jobs)


def _cmd_config(args: argparse.Namespace) -> int:
    from netsprint.config import dump_config, load_config

    fmt = "json" if args.json else "toml"
    config = None if args.example else load_config(args.file)
    print(dump_config(config, fmt=fmt), end="")
    return 0


def _delegate(module: str, function: str) -> Callable[[argparse.Namespace], int]:
    """A handler that imports `module` when the command runs and calls `function(args)`."""
    def handler(args: argparse.Namespace) -> int:
        return getattr(importlib.import_module(module), function)(args)

    return handler


def build_parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(prog="netsprint", description=__doc__.splitlines()[0])
    sub = parser.add_subparsers(dest="command", required=True)

    from netsprint.course.problems.command import (
        add_course_root as course_root, add_practice_arguments, add_problems_arguments,
    )

    p = sub.add_parser("echo-server", help="week 1: the epoll echo server")
    p.add_argument("--host", default="127.0.0.1")
    p.add_argument("--port", type=int, default=7000)
    p.add_argument("--sub-reactors", type=int, default=0,
                   help="threads running sub-reactors (0: one reactor does everything)")
    p.add_argument("--backend", choices=["epoll", "poll", "select"], default="epoll")
    p.add_argument("--edge", action="store_true",
                   help="edge-triggered connections (epoll only; default: level-triggered)")
    p.set_defaults(handler=_cmd_echo_server)

    p = sub.add_parser("doctor", help="check this machine for every week's needs")
    p.add_argument("--json", action="store_true")
    p.add_argument("--fix", action="store_true",
                   help="as root: mount tracefs, link kernel headers, then check again")
    p.set_defaults(handler=_cmd_doctor)

    p = sub.add_parser("progress", help="where you stand against the 26-week plan")
    p.add_argument("--start", help="the day you started week 1, YYYY-MM-DD (remembered)")
    p.add_argument("--json", action="store_true")
    p.add_argument("--chart", type=Path, default=None,
                   help="where to write the PNG chart (default: .netsprint/progress.png)")
    course_root(p)
    p.set_defaults(handler=_cmd_progress)

    p = sub.add_parser("release", help="regenerate notebooks/ from solutions/")
    p.add_argument("weeks", nargs="*", help="week00 .. week26 (default: all)")
    p.add_argument("--check", action="store_true", help="only compare; exit 1 naming files that differ")
    p.add_argument("--force", action="store_true",
                   help="overwrite notebooks you edited (a backup is kept)")
    course_root(p)
    p.set_defaults(handler=_cmd_release)

    p = sub.add_parser("problems", help="the algorithm problem bank (算法题): id, title, "
                                        "category, week, solved")
    add_problems_arguments(p)
    p.set_defaults(handler=_delegate("netsprint.course.problems.command", "run_problems"))
    p = sub.add_parser("practice", help="today's mistakes to redo (错题重做), offered again "
                                        "1, 2 and 4 days apart")
    add_practice_arguments(p)
    p.set_defaults(handler=_delegate("netsprint.course.problems.command", "run_practice"))

    p = sub.add_parser("grade", help="autograde your notebooks against the hidden tests")
    p.add_argument("weeks", nargs="*", help="week00 .. week26 (default: all released)")
    p.add_argument("--notebooks", type=Path, default=None, help="default: notebooks/")
    p.add_argument("--json", action="store_true")
    p.add_argument("--jobs", type=int, default=None,
                   help="notebooks graded side by side (default: one per CPU, at most 4; "
                        "notebooks that use the machine always run one at a time)")
    course_root(p)
    p.set_defaults(handler=_cmd_grade)

    from netsprint.signaling.core import HEARTBEAT_TIMEOUT
    from netsprint.signaling.framing import MAX_FRAME_BYTES

    p = sub.add_parser("signal-server", help="week 2: the signaling server")
    p.add_argument("--listen", default="127.0.0.1:7001", metavar="HOST:PORT")
    p.add_argument("--heartbeat-timeout", type=float, default=HEARTBEAT_TIMEOUT,
                   metavar="SECONDS", help="close a client silent for this long")
    p.add_argument("--max-frame-bytes", type=int, default=MAX_FRAME_BYTES, metavar="BYTES")
    p.add_argument("--relay", action="store_true",
                   help="week 5: also relay UDP for peers that cannot punch (same port number)")
    p.add_argument("--config", type=Path, default=None, metavar="FILE",
                   help="JSON or TOML config; its [relay] section sets the relay's limits")
    p.set_defaults(handler=_delegate("netsprint.signaling.command", "run_signal_server"))

    p = sub.add_parser("config", help="weeks 6-7: check a config file, or print an example")
    p.add_argument("file", nargs="?", type=Path, default=None,
                   help="a JSON or TOML config to check (default: $NETSPRINT_CONFIG)")
    p.add_argument("--example", action="store_true", help="print a full config with defaults")
    p.add_argument("--json", action="store_true", help="JSON instead of TOML")
    p.set_defaults(handler=_cmd_config)

    p = sub.add_parser("peer", help="weeks 4-7: chat and send files to another peer (P2P)")
    from netsprint.p2p.command import add_arguments as peer_arguments
    peer_arguments(p)
    p.set_defaults(handler=_delegate("netsprint.p2p.command", "run_peer"))

    p = sub.add_parser("stun-server", help="week 3: a STUN server (RFC 5780 with --alt)")
    p.add_argument("--listen", default="127.0.0.1:3478", metavar="IP:PORT")
    p.add_argument("--alt", default=None, metavar="IP2",
                   help="a second address: serve RFC 5780 on 2 IPs x 2 ports (PORT, PORT+1)")
    p.set_defaults(handler=_delegate("netsprint.stun.command", "run_stun_server"))

    from netsprint.stun.nat import DEFAULT_TEST_TIMEOUT

    p = sub.add_parser("nat-type", help="week 3: find the NAT type in front of this host")
    p.add_argument("--server", required=True, metavar="IP:PORT",
                   help="a STUN server; RFC 5780 support gives the full answer")
    p.add_argument("--json", action="store_true")
    p.add_argument("--timeout", type=float, default=None, metavar="SECONDS",
                   help=f"per-test timeout (default {DEFAULT_TEST_TIMEOUT}: silence is an "
                        "answer in the filtering "
                        "tests; RFC 5389's full schedule would wait 39.5 s per silent test)")
    p.set_defaults(handler=_delegate("netsprint.stun.command", "run_nat_type"))

    p = sub.add_parser("lab", help="weeks 3-7: the NAT lab in network namespaces; weeks "
                                   "14-15: pods on one node (root)")
    lab = p.add_subparsers(dest="lab_command", required=True)
    from netsprint.lab.pods_command import add_arguments as pods_arguments
    pods_arguments(lab)
    q = lab.add_parser("up", help="build a lab: internet, two NAT routers, a peer behind each")
    q.add_argument("--name", default="ns", help="the lab's name")
    q.add_argument("--nat-a", default="port-restricted", help="NAT type of router a")
    q.add_argument("--nat-b", default="port-restricted", help="NAT type of router b")
    q = lab.add_parser("down", help="tear a lab down")
    q.add_argument("--name", default="ns")
    q.add_argument("--all", action="store_true", help="every netsprint lab on this machine")
    q = lab.add_parser("nat", help="change a router's NAT type")
    q.add_argument("type", help="none, full-cone, restricted, port-restricted or symmetric")
    q.add_argument("--side", choices=["a", "b"], default="a")
    q.add_argument("--name", default="ns")
    q = lab.add_parser("shell", help="a shell (or a command) inside one of the lab's nodes")
    q.add_argument("node", help="peer-a, peer-b, nat-a, nat-b or internet")
    q.add_argument("cmd", nargs=argparse.REMAINDER, help="the command (default: $SHELL)")
    q.add_argument("--name", default="ns")
    q = lab.add_parser("classify", help="our NAT detector beside coturn's, behind every NAT type")
    q.add_argument("--json", action="store_true")
    q.add_argument("--types", nargs="*", default=None, help="default: all")
    q = lab.add_parser("matrix", help="weeks 4-7: two peers connect behind every pair of NAT types")
    q.add_argument("--json", action="store_true")
    q.add_argument("--types", nargs="*", default=None, help="default: all five")
    q.add_argument("--birthday-trials", type=int, default=0, metavar="N",
                   help="instead: N symmetric <-> port-restricted trials in birthday mode")
    p.set_defaults(handler=_delegate("netsprint.lab.command", "run"))

    p = sub.add_parser("trace", help="weeks 10-11: trace TCP connections or bytes with eBPF (root)")
    from netsprint.ebpf.command import add_arguments as trace_arguments
    trace_arguments(p)
    p.set_defaults(handler=_delegate("netsprint.ebpf.command", "run"))

    p = sub.add_parser("agent", help="weeks 12-19: eBPF TCP metrics for Prometheus (root)")
    from netsprint.agent.runner import add_arguments as agent_arguments
    agent_arguments(p)
    p.set_defaults(handler=_delegate("netsprint.agent.runner", "run"))
    return parser


def main(argv: list[str] | None = None) -> int:
    args = build_parser().parse_args(argv)
    try:
        return args.handler(args)
    except NetsprintError as exc:
        print(f"netsprint {args.command}: {exc}", file=sys.stderr)
        return 2
    except KeyboardInterrupt:
        return 130


if __name__ == "__main__":
    sys.exit(main())
