"""The `cellfab` command: argument parsing and dispatch to the subcommand owners.

Subcommands:
  sim     run the software twins of one cell (shuttle, Cell Q, balance) on one world
  demo    twins plus a scripted walk of one cartridge through the cell
  recipe  validate, show and graph recipes (daemon.recipe_cli)

Only `sim` and `demo` load simulators/, and only when they run.
"""

from __future__ import annotations

import argparse
import sys
from collections.abc import Sequence


def _add_sim_arguments(p: argparse.ArgumentParser, *, time_scale: float) -> None:
    p.add_argument(
        "--time-scale",
        type=float,
        default=time_scale,
        metavar="N",
        help=f"process seconds per wall second (default {time_scale:g})",
    )
    p.add_argument("--seed", type=int, default=0, help="world seed (default 0)")
    p.add_argument("--host", default="127.0.0.1", help="address to listen on (default 127.0.0.1)")


def build_parser() -> argparse.ArgumentParser:
    from daemon import recipe_cli

    parser = argparse.ArgumentParser(
        prog="cellfab", description="Control software for an automated cell-therapy cell."
    )
    sub = parser.add_subparsers(dest="command", required=True, metavar="COMMAND")

    sim = sub.add_parser("sim", help="run the software twins of one cell")
    _add_sim_arguments(sim, time_scale=1.0)
    sim.add_argument("--shuttle-port", type=int, default=4840, metavar="P")
    sim.add_argument("--cellq-port", type=int, default=5020, metavar="P")
    sim.add_argument(
        "--security",
        choices=("none", "secure", "both"),
        default="both",
        help="shuttle endpoints: None only (development), secure only, or both (default)",
    )
    sim.add_argument(
        "--cert-dir",
        default="var/sim-pki",
        help="where the shuttle twin keeps its certificate and trusted client certificates",
    )
    sim.set_defaults(func=_run_sim)

    demo = sub.add_parser("demo", help="twins plus a scripted walk of one cartridge")
    _add_sim_arguments(demo, time_scale=20000.0)
    demo.set_defaults(func=_run_demo)

    recipe_cli.register(sub)
    return parser


def _run_sim(args: argparse.Namespace) -> int:
    from simulators.cell import run_sim

    return run_sim(args)


def _run_demo(args: argparse.Namespace) -> int:
    from daemon.cli.demo import run_demo

    return run_demo(args)


def main(argv: Sequence[str] | None = None) -> int:
    parser = build_parser()
    args = parser.parse_args(argv)
    try:
        return int(args.func(args) or 0)
    except KeyboardInterrupt:
        return 130


if __name__ == "__main__":
    sys.exit(main())
