"""The `cellfab` command: global options, logging, and lazy dispatch to command groups.

Command groups, one module each under ``daemon/cli/`` (``GROUPS``):

  recipe  validate, show and graph recipes (daemon.cli.recipe)
  sim     run the software twins of one cell (daemon.cli.sim)
  demo    four batches through a simulated cell on the batch engine (daemon.cli.demo)
  run     the daemon: instruments, batches, journal, API (daemon.cli.run)
  site    validate and show sites (daemon.cli.site)
  journal back up, restore and verify the journal (daemon.cli.journal)
  batch   start, list, command and watch batches (daemon.cli.batch; an API client)
  user    users (admin) and one's own password (daemon.cli.user; the first admin locally)
  login   sign in to the daemon, keep the token (daemon.cli.login); logout revokes it
  audit   verify and export the audit trail (daemon.cli.audit)

Only the module of the command being run is imported: ``cellfab recipe validate``
never loads asyncua, pymodbus or simulators/ (a test holds this). A group module has
``register(subparsers)``, which adds its parser and sets ``func`` (parsed arguments ->
exit status). Global options, before the command: ``--log-json`` (JSON lines on
stderr) and ``--log-level``; logging is configured once, here (``daemon.cli.logs``).
"""

from __future__ import annotations

import argparse
import importlib
import sys
from collections.abc import Sequence
from typing import Final

from daemon.cli import logs

# command -> (module, one-line help); the module is imported only to run its command
GROUPS: Final[dict[str, tuple[str, str]]] = {
    "recipe": ("daemon.cli.recipe", "validate, show and graph recipes"),
    "sim": ("daemon.cli.sim", "run the software twins of one cell"),
    "demo": ("daemon.cli.demo", "four batches through a simulated cell on the batch engine"),
    "run": ("daemon.cli.run", "run the daemon: instruments, batches, journal, API"),
    "site": ("daemon.cli.site", "validate and show sites (instruments, journal, API)"),
    "journal": ("daemon.cli.journal", "back up, restore and verify the journal"),
    "batch": ("daemon.cli.batch", "start, list, command and watch batches (a client of the API)"),
    "user": ("daemon.cli.user", "users (admin), your password, the first admin"),
    "login": ("daemon.cli.login", "sign in to the daemon (the token is kept for you)"),
    "logout": ("daemon.cli.logout", "sign out: revoke the kept token"),
    "audit": ("daemon.cli.audit", "verify and export the audit trail"),
    "alarm": ("daemon.cli.alarm", "list, acknowledge and shelve alarms (a client of the API)"),
}


def build_parser(command: str | None = None) -> argparse.ArgumentParser:
    """The parser; only ``command``'s group is loaded, the others are named with
    their help line (enough for ``cellfab --help``)."""
    parser = argparse.ArgumentParser(
        prog="cellfab", description="Control software for an automated cell-therapy cell."
    )
    parser.add_argument(
        "--log-json",
        action="store_true",
        help="log JSON lines on stderr (default: readable; JSON under systemd)",
    )
    parser.add_argument(
        "--log-level", choices=logs.LEVELS, default=logs.DEFAULT_LEVEL, help="default: info"
    )
    sub = parser.add_subparsers(dest="command", required=True, metavar="COMMAND")
    for name, (module, help_) in GROUPS.items():
        if name == command:
            importlib.import_module(module).register(sub)
        else:
            sub.add_parser(name, help=help_, add_help=False)
    return parser


def _command(argv: Sequence[str]) -> str | None:
    """The command group named in ``argv`` (the first word that is one)."""
    return next((arg for arg in argv if arg in GROUPS), None)


def main(argv: Sequence[str] | None = None) -> int:
    argv = list(sys.argv[1:] if argv is None else argv)
    parser = build_parser(_command(argv))
    args = parser.parse_args(argv)
    logs.configure(json=args.log_json, level=args.log_level)
    try:
        return int(args.func(args) or 0)
    except KeyboardInterrupt:
        return 130


if __name__ == "__main__":
    sys.exit(main())
