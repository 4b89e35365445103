"""`cellfab run`: the daemon (instruments, batches, journal, API) until SIGTERM.

``cellfab run [--site FILE]`` loads the site (the embedded default site of ``cellfab
sim``'s twins when no file is given), opens its journal, replays it, connects the
instruments, resumes every batch and serves the API. A site or journal that cannot be
used, or an API address it cannot listen on, is reported (what, where, what to do) with
exit status 1; SIGTERM or Ctrl-C stops cleanly with exit status 0, leaving programs
running on the instruments.
"""

from __future__ import annotations

import argparse
import sys

EXIT_OK = 0
EXIT_CONFIG = 1


def register(subparsers: argparse._SubParsersAction) -> None:
    run = subparsers.add_parser(
        "run",
        help="run the daemon: instruments, batches, journal, API",
        description=__doc__.split("\n\n")[0],
    )
    run.add_argument(
        "--site",
        metavar="FILE",
        help="the site file (default: the embedded "
        "default site, which describes `cellfab sim`'s twins)",
    )
    run.set_defaults(func=cmd_run)


def cmd_run(args: argparse.Namespace) -> int:
    from functools import partial

    import anyio

    from daemon.api.server import ApiStartError
    from daemon.config.defaults import default_site
    from daemon.config.load import SiteError, load_site
    from daemon.diagnostics import format_all
    from daemon.journal.errors import JournalError
    from daemon.supervisor import build, run_until_signalled

    try:
        site = load_site(args.site) if args.site else default_site()
    except SiteError as exc:
        print(format_all(exc.diagnostics), file=sys.stderr)
        return EXIT_CONFIG
    try:
        daemon = build(site)
    except JournalError as exc:
        print(f"cellfab run: {exc}", file=sys.stderr)
        return EXIT_CONFIG
    refused: list[BaseException] = []
    try:
        anyio.run(partial(run_until_signalled, daemon, on_ready=_freeze_built))
    except* ApiStartError as group:  # the API cannot listen where the site says
        refused.append(group)
    for exc in _leaves(refused):
        print(f"cellfab run: {exc}", file=sys.stderr)
    return EXIT_CONFIG if refused else EXIT_OK


def _freeze_built(_daemon: object) -> None:
    """Once ready: what the daemon built lives as long as the process (decision 0108)."""
    import structlog

    from daemon.ops.heap import freeze_built

    structlog.get_logger("cellfab.daemon").info("heap_frozen", objects=freeze_built())


def _leaves(excs: list[BaseException]) -> list[BaseException]:
    out: list[BaseException] = []
    for exc in excs:
        out += _leaves(list(exc.exceptions)) if isinstance(exc, BaseExceptionGroup) else [exc]
    return out
