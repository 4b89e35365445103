"""`cellfab sim`: the software twins of one cell (shuttle, Cell Q, balance) on one world.

This module owns the command's options (and ``add_world_arguments``, the options of a
simulated world that ``demo`` shares) and starts ``simulators.cell.run_sim`` when the
command runs; simulators/ is imported only then.
"""

from __future__ import annotations

import argparse


def add_world_arguments(p: argparse.ArgumentParser, *, time_scale: float) -> None:
    """Time scale, seed and listen address of a simulated cell."""
    p.add_argument(
        "--time-scale",
        type=float,
        default=time_scale,
        metavar="N",
        help=f"process seconds per wall second (default {time_scale:g})",
    )
    p.add_argument("--seed", type=int, default=0, help="world seed (default 0)")
    p.add_argument("--host", default="127.0.0.1", help="address to listen on (default 127.0.0.1)")


def register(subparsers: argparse._SubParsersAction) -> None:
    sim = subparsers.add_parser("sim", help="run the software twins of one cell")
    add_world_arguments(sim, time_scale=3600.0)  # the embedded default site's (daemon.config)
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
    sim.set_defaults(func=run)


def run(args: argparse.Namespace) -> int:
    from simulators.cell import run_sim

    return run_sim(args)
