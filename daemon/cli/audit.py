"""`cellfab audit`: verify the audit trail, and export it for people.

* ``verify [--site FILE | --journal PATH] [--anchor SEQ:HASH]``: reads the journal file
  (read-only; safe while the daemon runs) and names every altered, deleted, inserted or
  reordered row, every row whose indexed columns disagree with it, every signature whose
  signed record changed, and every person's journal record without its audit row; with
  ``--anchor`` (a seq and hash noted earlier: the daemon logs ``audit_head`` at start),
  that the chain up to it is the one noted. Exit 0 when all holds, 1 otherwise.
* ``export [--batch ID] [--csv] [--output FILE]``: a readable extract (or CSV) over the
  API (signed in, QA or admin), or from the file with ``--journal PATH``.
"""

from __future__ import annotations

import argparse
import sys
from pathlib import Path
from typing import Any

from daemon.api.client import Client
from daemon.cli.api_cli import EXIT_OK, EXIT_REFUSED, EXIT_USAGE, common, run


def register(subparsers: argparse._SubParsersAction) -> None:
    audit = subparsers.add_parser(
        "audit", help="verify and export the audit trail", description=__doc__.split("\n\n")[0]
    )
    sub = audit.add_subparsers(dest="audit_command", required=True, metavar="SUBCOMMAND")

    verify = sub.add_parser("verify", help="find altered, deleted, inserted, reordered rows")
    where = verify.add_mutually_exclusive_group()
    where.add_argument("--site", metavar="FILE", help="the journal of this site")
    where.add_argument("--journal", type=Path, metavar="PATH", help="the journal file")
    verify.add_argument("--anchor", metavar="SEQ:HASH", help="a row noted earlier")
    verify.set_defaults(func=cmd_verify)

    export = sub.add_parser("export", parents=[common()], help="a readable extract, or CSV")
    export.add_argument("--batch", metavar="ID", help="only this batch's rows")
    export.add_argument("--csv", action="store_true", help="CSV instead of text")
    export.add_argument("--output", type=Path, metavar="FILE", help="write here (default stdout)")
    export.add_argument("--journal", type=Path, metavar="PATH", help="read this file, not the API")
    export.set_defaults(func=cmd_export)


def _journal_of(args: argparse.Namespace) -> Path:
    if args.journal:
        return Path(args.journal)
    from daemon.config.defaults import default_site
    from daemon.config.load import load_site

    return Path((load_site(args.site) if args.site else default_site()).journal)


def cmd_verify(args: argparse.Namespace) -> int:
    from daemon.audit.verify import verify
    from daemon.config.load import SiteError
    from daemon.journal.errors import JournalError

    anchor = None
    if args.anchor:
        seq, _, digest = args.anchor.partition(":")
        if not seq.isdigit() or len(digest) != 64:
            print("cellfab audit verify: --anchor is SEQ:HASH (64 hex digits)", file=sys.stderr)
            return EXIT_USAGE
        anchor = (int(seq), digest)
    try:
        path = _journal_of(args)
        report = verify(path, anchor)
    except SiteError as exc:
        print(f"cellfab audit verify: the site does not load: {exc}", file=sys.stderr)
        return EXIT_USAGE
    except JournalError as exc:
        print(f"cellfab audit verify: {exc}", file=sys.stderr)
        return EXIT_REFUSED
    seq, head = report.head
    print(
        f"{path}: {report.rows} audit rows, {report.signatures} signatures; head seq {seq} {head}"
    )
    for problem in report.problems:
        print(f"{path}: {problem}", file=sys.stderr)
    if report.unlisted:
        print(f"{path}: ... and {report.unlisted} more problems", file=sys.stderr)
    total = len(report.problems) + report.unlisted
    print("verify: ok" if report.ok else f"verify: {total} problem{'s' if total != 1 else ''}")
    return EXIT_OK if report.ok else EXIT_REFUSED


def cmd_export(args: argparse.Namespace) -> int:
    if args.journal:
        from daemon.audit.export import rows_of
        from daemon.journal.errors import JournalError

        try:
            rows = rows_of(args.journal, batch_id=args.batch)
        except JournalError as exc:
            print(f"cellfab audit export: {exc}", file=sys.stderr)
            return EXIT_REFUSED
        return _write(args, rows)
    return run(_export_api, "cellfab audit export")(args)


def _export_api(args: argparse.Namespace, api: Client) -> int:
    rows: list[Any] = []
    after = 0
    while True:  # page through: the API answers at most 10 000 rows at a time
        params: dict[str, Any] = {"after": after, "limit": 10_000}
        if args.batch:
            params["batch"] = args.batch
        page = api.get("/audit", params).data
        rows += page
        if len(page) < 10_000:
            break
        after = page[-1]["seq"]
    return _write(args, rows)


def _write(args: argparse.Namespace, rows: list[Any]) -> int:
    from daemon.audit.export import csv_text, text

    out = csv_text(rows) if args.csv else text(rows)
    if args.output:
        args.output.write_text(out, encoding="utf-8")
    else:
        sys.stdout.write(out)
    return EXIT_OK
