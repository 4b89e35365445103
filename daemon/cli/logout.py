"""`cellfab logout`: revoke the kept token at the daemon and forget it."""

from __future__ import annotations

import argparse

from daemon.cli.api_cli import common, run
from daemon.cli.login import cmd_logout


def register(subparsers: argparse._SubParsersAction) -> None:
    logout = subparsers.add_parser("logout", parents=[common()], help="sign out (revoke the token)")
    logout.set_defaults(func=run(cmd_logout, "cellfab logout"))
