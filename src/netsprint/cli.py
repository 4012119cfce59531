"""`netsprint ...`: one entry point, one subcommand per tool.

Each handler imports its module lazily so `netsprint doctor` works even where a heavy or
optional dependency (bcc, nbgrader) is missing.
"""

from __future__ import annotations

import argparse
import sys
from pathlib import Path

from netsprint.errors import NetsprintError


def _cmd_echo_server(args: argparse.Namespace) -> int:
    from netsprint.reactor.echo import run_server

    run_server(args.host, args.port, sub_reactors=args.sub_reactors, backend=args.backend)
    return 0


def _cmd_doctor(args: argparse.Namespace) -> int:
    from netsprint.doctor import main as doctor_main

    return doctor_main(as_json=args.json)


def _cmd_progress(args: argparse.Namespace) -> int:
    from netsprint.course.progress import main as progress_main

    return progress_main(start=args.start, as_json=args.json, chart=args.chart, root=args.root)


def _cmd_release(args: argparse.Namespace) -> int:
    from netsprint.course.release import main as release_main

    return release_main(args.weeks, check=args.check, force=args.force, root=args.root)


def _cmd_grade(args: argparse.Namespace) -> int:
    from netsprint.course.grading import main as grade_main

    return grade_main(args.weeks, notebooks=args.notebooks, as_json=args.json, root=args.root)


def build_parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(prog="netsprint", description=__doc__.splitlines()[0])
    sub = parser.add_subparsers(dest="command", required=True)

    def course_root(p: argparse.ArgumentParser) -> None:
        p.add_argument("--root", type=Path, default=None,
                       help="the workbook checkout (default: found from the current directory)")

    p = sub.add_parser("echo-server", help="week 1: the epoll echo server")
    p.add_argument("--host", default="127.0.0.1")
    p.add_argument("--port", type=int, default=7000)
    p.add_argument("--sub-reactors", type=int, default=0,
                   help="threads running sub-reactors (0: one reactor does everything)")
    p.add_argument("--backend", choices=["epoll", "poll", "select"], default="epoll")
    p.set_defaults(handler=_cmd_echo_server)

    p = sub.add_parser("doctor", help="check this machine for every week's needs")
    p.add_argument("--json", action="store_true")
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

    p = sub.add_parser("grade", help="autograde your notebooks against the hidden tests")
    p.add_argument("weeks", nargs="*", help="week00 .. week26 (default: all released)")
    p.add_argument("--notebooks", type=Path, default=None, help="default: notebooks/")
    p.add_argument("--json", action="store_true")
    course_root(p)
    p.set_defaults(handler=_cmd_grade)
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
