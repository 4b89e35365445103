"""`cellfab alarm`: list, acknowledge and shelve alarms through the API.

This module is a client of a running daemon's HTTP API (``daemon.api.client``), like
``cellfab batch``; it changes nothing itself. Every subcommand takes ``--api URL`` or
``--site FILE`` (where the daemon is) and ``--json`` (the API's JSON unchanged).

Subcommands: ``list [--state S ...] [--batch ID] [--all]`` (default: the alarms that
are not normal; ``--all``: every state), ``show ID`` (with its history), ``ack ID
--reason TEXT`` (operator or supervisor), ``shelve ID --duration SECONDS --reason TEXT``
(supervisor; an electronic signature: the password is asked again, no echo; one line of
standard input when it is not a terminal).

Exit status: 0 done, 1 refused by the daemon (its reason on stderr), 2 usage, 3 the
daemon cannot be reached.
"""

from __future__ import annotations

import argparse
from collections.abc import Iterable, Mapping
from typing import Any, Final

from daemon.alarms.states import AlarmState
from daemon.api.client import Client
from daemon.cli.api_cli import EXIT_OK, ask_password, common, reason_argument, run

STATES: Final = tuple(s.value for s in AlarmState)  # the ISA-18.2 table's own names
STYLE: Final = {"critical": "bold red", "high": "red", "medium": "yellow", "low": "cyan"}


def register(subparsers: argparse._SubParsersAction) -> None:
    parent = common()
    alarm = subparsers.add_parser(
        "alarm", help="list, acknowledge and shelve alarms", description=__doc__.split("\n\n")[0]
    )
    sub = alarm.add_subparsers(dest="alarm_command", required=True, metavar="SUBCOMMAND")

    lst = sub.add_parser("list", parents=[parent], help="list alarms (default: not normal)")
    lst.add_argument("--state", action="append", default=[], choices=STATES)
    lst.add_argument("--batch", metavar="ID", help="only the alarms of this batch")
    lst.add_argument("--all", action="store_true", help="alarms in every state")
    lst.set_defaults(func=run(cmd_list, "cellfab alarm"))

    show = sub.add_parser("show", parents=[parent], help="one alarm and its history")
    show.add_argument("alarm_id", metavar="ID")
    show.set_defaults(func=run(cmd_show, "cellfab alarm"))

    ack = sub.add_parser("ack", parents=[parent], help="acknowledge an alarm")
    ack.add_argument("alarm_id", metavar="ID")
    reason_argument(ack, "you acknowledge it (what you saw or did)")
    ack.set_defaults(func=run(cmd_ack, "cellfab alarm"))

    shelve = sub.add_parser(
        "shelve", parents=[parent], help="supervisor: shelve an alarm for a time (e-signed)"
    )
    shelve.add_argument("alarm_id", metavar="ID")
    shelve.add_argument("--duration", type=int, required=True, metavar="SECONDS")
    reason_argument(shelve, "you shelve it")
    shelve.set_defaults(func=run(cmd_shelve, "cellfab alarm"))


def cmd_list(args: argparse.Namespace, api: Client) -> int:
    query: dict[str, Any] = {}
    states = list(STATES) if args.all else args.state
    if states:
        query["state"] = states
    if args.batch:
        query["batch"] = args.batch
    answer = api.get("/alarms", query or None)
    if args.json:
        print(answer.text)
        return EXIT_OK
    from daemon.cli.batch_view import console

    out = console()
    if not answer.data:
        out.print("no alarms")
    else:
        out.print(alarms_table(answer.data))
    return EXIT_OK


def cmd_show(args: argparse.Namespace, api: Client) -> int:
    return _print(args, api.get(f"/alarms/{args.alarm_id}"), history=True)


def cmd_ack(args: argparse.Namespace, api: Client) -> int:
    return _print(args, api.post(f"/alarms/{args.alarm_id}/ack", {"reason": args.reason}))


def cmd_shelve(args: argparse.Namespace, api: Client) -> int:
    body = {
        "duration_s": args.duration,
        "reason": args.reason,
        "password": ask_password(f"Shelve {args.alarm_id}: password to sign: "),
    }
    return _print(args, api.post(f"/alarms/{args.alarm_id}/shelve", body))


def _print(args: argparse.Namespace, answer: Any, *, history: bool = False) -> int:
    if args.json:
        print(answer.text)
        return EXIT_OK
    from daemon.cli.batch_view import console

    out = console()
    out.print(alarms_table([answer.data]))
    if history:
        out.print(history_table(answer.data.get("history", ())))
    return EXIT_OK


def _tied(a: Mapping[str, Any]) -> str:
    parts = [a.get("batch_id"), a.get("step"), a.get("unit"), a.get("cartridge_id")]
    if a.get("user"):
        parts.append(f"user {a['user']}")
    return " ".join(str(p) for p in parts if p) or a.get("instrument", "")


def alarms_table(alarms: Iterable[Mapping[str, Any]]) -> Any:
    from rich import box
    from rich.table import Table

    t = Table(box=box.SIMPLE_HEAD)
    for col in ("alarm", "priority", "state", "kind", "batch / step / unit / cartridge", "message"):
        t.add_column(col)
    for a in alarms:
        prio = a.get("priority", "")
        state = a.get("state", "") + (" (active)" if a.get("active") else "")
        if a.get("shelved_until_utc"):
            state += f" until {a['shelved_until_utc'][:19]}Z"
        t.add_row(
            a.get("alarm_id", ""),
            f"[{STYLE.get(prio, '')}]{prio}[/]" if prio in STYLE else prio,
            state,
            a.get("kind", ""),
            _tied(a),
            a.get("message", ""),
        )
    return t


def history_table(history: Iterable[Mapping[str, Any]]) -> Any:
    from rich import box
    from rich.table import Table

    t = Table(box=box.SIMPLE_HEAD, title="history", title_justify="left")
    for col in ("at (UTC)", "event", "from", "to", "by", "reason"):
        t.add_column(col)
    for h in history:
        by = h.get("by", "") + (f" (signed {h['signed_by']})" if h.get("signed_by") else "")
        t.add_row(h["at"][:19], h["event"], h["old"], h["new"], by, h.get("reason", ""))
    return t
