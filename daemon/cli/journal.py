"""The `cellfab journal` commands: backup, restore and verify.

This module owns the command-line face of ``daemon.journal.admin``:

* ``backup FILE``: an online copy of the journal to the new file FILE (safe while the
  daemon runs; never overwrites).
* ``restore FILE``: the journal becomes a copy of the backup FILE; refused while a
  daemon holds the journal, and for a backup that is foreign, damaged or newer; the
  replaced journal is kept aside and named.
* ``verify``: integrity, every record, replay; batches by state and the record count
  on stdout; exit 1 with what and where on stderr for any problem.

Every subcommand takes ``--journal PATH`` (default ``./cellfab-journal.sqlite``).
``daemon.cli`` calls ``register(subparsers)``; every subcommand sets ``func`` to a
function of the parsed arguments that returns the exit status.
"""

from __future__ import annotations

import argparse
import sys
from collections.abc import Callable
from pathlib import Path
from typing import TextIO

from daemon.journal import admin, files
from daemon.journal.errors import JournalError
from daemon.journal.store import DEFAULT_PATH

EXIT_OK = 0
EXIT_PROBLEM = 1


def register(subparsers: argparse._SubParsersAction) -> None:
    """Add `journal` and its subcommands to the `cellfab` parser."""
    journal = subparsers.add_parser(
        "journal",
        help="back up, restore and verify the journal",
        description=__doc__.split("\n\n")[0],
    )
    sub = journal.add_subparsers(dest="journal_command", required=True, metavar="SUBCOMMAND")
    where = argparse.ArgumentParser(add_help=False)
    where.add_argument(
        "--journal",
        type=Path,
        default=DEFAULT_PATH,
        metavar="PATH",
        help=f"the journal file (default ./{DEFAULT_PATH})",
    )

    backup = sub.add_parser("backup", parents=[where], help="copy the journal, online")
    backup.add_argument("file", type=Path, metavar="FILE", help="the new backup file")
    backup.set_defaults(func=cmd_backup)

    restore = sub.add_parser(
        "restore", parents=[where], help="replace the journal by a backup (daemon stopped)"
    )
    restore.add_argument("file", type=Path, metavar="FILE", help="the backup to restore")
    restore.set_defaults(func=cmd_restore)

    verify = sub.add_parser("verify", parents=[where], help="check every record and replay")
    verify.set_defaults(func=cmd_verify)


def _backup(args: argparse.Namespace, out: TextIO) -> int:
    info = admin.backup(args.journal, args.file)
    print(f"{args.journal} -> {args.file}: {_summary(info)}", file=out)
    return EXIT_OK


def _restore(args: argparse.Namespace, out: TextIO) -> int:
    result = admin.restore(args.file, args.journal)
    print(f"{args.file} -> {args.journal}: {_summary(result.info)}", file=out)
    print(
        f"new instance tag {result.info.instance} (the backup had {result.backup_instance}): "
        "batch ids made after the backup are never made again",
        file=out,
    )
    if result.replaced is not None:
        print(f"the replaced journal is kept at {result.replaced}", file=out)
    return EXIT_OK


def _verify(args: argparse.Namespace, out: TextIO) -> int:
    report = admin.verify(args.journal)
    info = report.info
    seqs = f"seq {report.first_seq}..{info.last_seq}" if report.records else "empty"
    print(f"{args.journal}: schema v{info.schema_version}, instance {info.instance}", file=out)
    print(f"records: {report.records} ({seqs})", file=out)
    if report.ok:
        print(f"batches: {len(report.batches)}", file=out)
        states = report.by_state()
        width = max((len(s) for s in states), default=0)
        for state, count in states.items():
            print(f"  {state:<{width}}  {count}", file=out)
        print("verify: ok", file=out)
        return EXIT_OK
    for problem in report.problems:
        print(f"{args.journal}: {problem}", file=sys.stderr)
    if report.unlisted:
        print(f"{args.journal}: ... and {report.unlisted} more problems", file=sys.stderr)
    total = len(report.problems) + report.unlisted
    print(f"verify: {total} problem{'s' if total != 1 else ''}", file=out)
    return EXIT_PROBLEM


Command = Callable[[argparse.Namespace, TextIO], int]


def _command(name: str, body: Command) -> Callable[..., int]:
    """``body`` as a subcommand: a JournalError is one line on stderr and exit 1."""

    def run(args: argparse.Namespace, out: TextIO | None = None) -> int:
        try:
            return body(args, out or sys.stdout)
        except JournalError as exc:
            print(f"cellfab journal {name}: {exc}", file=sys.stderr)
            return EXIT_PROBLEM

    return run


cmd_backup = _command("backup", _backup)
cmd_restore = _command("restore", _restore)
cmd_verify = _command("verify", _verify)


def _summary(info: files.JournalInfo) -> str:
    return (
        f"schema v{info.schema_version}, instance {info.instance}, "
        f"records up to seq {info.last_seq}"
    )
