"""What every command that talks to the daemon's API shares (``batch``, ``user``,
``login``, ``logout``, ``audit export``, ``recipe submit|approve|retire``).

* ``common()``: ``--api URL`` or ``--site FILE`` (where the daemon is, as
  ``daemon.api.client.resolve`` works it out) and ``--json``;
* ``run(command, prog)``: resolves the target, sends the sign-in token kept for it
  (``daemon.cli.tokens``), and turns failures into the exit contract (decision 0064):
  0 ok, 1 refused by the daemon (its error on stderr; a 401 says to sign in), 2 usage,
  3 unreachable;
* ``ask_password``: the password, never echoed (``getpass`` on a terminal; one line of
  standard input otherwise, for scripts and tests).
"""

from __future__ import annotations

import argparse
import getpass
import sys
from collections.abc import Callable
from typing import Final

from daemon.api.client import Client, ClientError, Refused, Unreachable, resolve
from daemon.cli import tokens

EXIT_OK: Final = 0
EXIT_REFUSED: Final = 1
EXIT_USAGE: Final = 2
EXIT_UNREACHABLE: Final = 3

Command = Callable[[argparse.Namespace, Client], int]


def common() -> argparse.ArgumentParser:
    parent = argparse.ArgumentParser(add_help=False)
    where = parent.add_mutually_exclusive_group()
    where.add_argument("--api", metavar="URL", help="http(s)://host:port or unix:PATH")
    where.add_argument("--site", metavar="FILE", help="reach the API this site binds")
    parent.add_argument("--json", action="store_true", help="print the API's JSON unchanged")
    return parent


def reason_argument(parser: argparse.ArgumentParser, what: str = "the change") -> None:
    parser.add_argument(
        "--reason", required=True, help=f"why {what} (required; kept in the audit trail)"
    )


def login_name() -> str:
    """The operating-system login name ("" when there is none)."""
    try:
        return getpass.getuser()
    except (KeyError, OSError):
        return ""


def ask_password(prompt: str = "Password: ") -> str:
    if sys.stdin is not None and sys.stdin.isatty():
        return getpass.getpass(prompt)
    line = sys.stdin.readline() if sys.stdin is not None else ""
    if not line:
        raise ClientError("a password is needed: type it at the prompt or give it on stdin")
    return line.rstrip("\n")


def run(
    command: Command, prog: str, *, signed_in: bool = True
) -> Callable[[argparse.Namespace], int]:
    """The exit status of ``command`` against the daemon the arguments name."""

    def go(args: argparse.Namespace) -> int:
        try:
            target = resolve(args.api, args.site)
            token = None
            if signed_in:
                kept = tokens.load(target.url)
                token = kept["token"] if kept else None
            with Client(target, token=token) as api:
                return command(args, api)
        except (ClientError, tokens.TokenFileError) as exc:
            print(f"{prog}: {exc}", file=sys.stderr)
            return EXIT_USAGE
        except Refused as exc:
            if args.json and exc.body:
                print(exc.text, file=sys.stderr)
            else:
                hint = "; sign in: cellfab login" if exc.status == 401 else ""
                print(f"{prog}: refused ({exc.status}): {exc}{hint}", file=sys.stderr)
            return EXIT_REFUSED
        except Unreachable as exc:
            print(f"{prog}: {exc}", file=sys.stderr)
            return EXIT_UNREACHABLE

    return go
