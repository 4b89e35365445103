"""`cellfab batch`: start, list, show, command, confirm and watch batches through the API.

This module is a client of a running daemon's HTTP API (``daemon.api.client``); it
changes nothing itself. Every subcommand takes:

* ``--api URL``: ``http://127.0.0.1:8470``, ``https://host:port`` or ``unix:PATH``;
  by default the ``api.bind`` of ``--site FILE``, else that of the embedded default site;
* ``--json``: print the API's JSON answer unchanged (one object per line for ``watch``);
  by default readable tables.

Subcommands: ``start RECIPE --cartridge ID [--param name=value ...] [--params-json
JSON] [--version V | --sha256 H] [--priority N] [--shuttle S]`` (``--param`` values are
typed by the recipe's parameter types; a value that does not fit is sent as written and
the daemon's error names it), ``start --batch ID --reason TEXT`` (the ISA-88 Start of a
reset batch), ``list [--state S ...]``, ``show ID [--records | --signatures]``,
``hold|restart|pause|resume|stop|abort|reset ID --reason TEXT``, ``confirm ID STEP
--reason TEXT``, ``release ID --reason TEXT``, ``watch [ID ...]`` (live progress until
every watched batch is final; without ids, the batches not final when it starts),
``report ID [-o FILE] [--pdf]`` (the electronic batch record, one self-contained HTML
file, or PDF with ``--pdf`` or a FILE ending in .pdf; default ``ID-record.html`` here;
prints the file's path).

Who asks is the user signed in with ``cellfab login`` (its token is sent); stop, abort,
release and a confirmation of a qa prompt are electronic signatures: the password is
asked again (no echo; one line of standard input when it is not a terminal).

Exit status, for scripts:

  0  done (``watch``: every watched batch is final)
  1  the daemon refused the request (4xx; a 5xx too) and said why, on stderr
  2  usage: bad options or arguments, or no way to work out where the daemon is
  3  the daemon cannot be reached (nothing listens there, or the connection broke)
"""

from __future__ import annotations

import argparse
import contextlib
import json
import sys
from collections.abc import Iterator
from pathlib import Path
from typing import Any, Final

from daemon.api.client import Client, ClientError
from daemon.cli.api_cli import (
    EXIT_OK,
    EXIT_REFUSED,
    EXIT_UNREACHABLE,
    EXIT_USAGE,
    ask_password,
    common,
    reason_argument,
    run,
)

__all__ = ["EXIT_OK", "EXIT_REFUSED", "EXIT_UNREACHABLE", "EXIT_USAGE", "register", "typed"]

COMMANDS: Final = ("hold", "restart", "pause", "resume", "stop", "abort", "reset")
SIGNED: Final = frozenset({"stop", "abort"})
FINAL: Final = frozenset({"Complete", "Stopped", "Aborted"})
WATCH_KINDS: Final = ("batch", "step", "deviation", "unit", "progress")


def register(subparsers: argparse._SubParsersAction) -> None:
    parent = common()
    batch = subparsers.add_parser(
        "batch", help="start, list, command and watch batches", description=__doc__.split("\n\n")[0]
    )
    sub = batch.add_subparsers(dest="batch_command", required=True, metavar="SUBCOMMAND")

    start = sub.add_parser("start", parents=[parent], help="start a batch on a library recipe")
    start.add_argument("recipe", nargs="?", metavar="RECIPE")
    start.add_argument("--batch", metavar="ID", help="Start an existing (reset) batch instead")
    start.add_argument("--cartridge", metavar="ID", help="the patient's cartridge id")
    pin = start.add_mutually_exclusive_group()
    pin.add_argument("--version", help="the recipe's version")
    pin.add_argument("--sha256", help="the recipe's hash (pins the exact text)")
    start.add_argument("--param", action="append", default=[], metavar="NAME=VALUE")
    start.add_argument("--params-json", metavar="JSON", help="e.g. '{\"dose_moi\": 5}'")
    start.add_argument("--priority", type=int, default=0)
    start.add_argument("--shuttle", default="", help="the shuttle the cartridge arrives at")
    start.add_argument("--reason", default="", help="why (required with --batch)")
    start.set_defaults(func=_run(cmd_start))

    lst = sub.add_parser("list", parents=[parent], help="list batches")
    lst.add_argument("--state", action="append", default=[], help="only batches in STATE")
    lst.set_defaults(func=_run(cmd_list))

    show = sub.add_parser("show", parents=[parent], help="show one batch")
    show.add_argument("batch_id", metavar="ID")
    shown = show.add_mutually_exclusive_group()
    shown.add_argument("--records", action="store_true", help="its journal records instead")
    shown.add_argument("--signatures", action="store_true", help="its e-signatures instead")
    show.set_defaults(func=_run(cmd_show))

    for name in COMMANDS:
        signed = " (e-signed: your password)" if name in SIGNED else ""
        cmd = sub.add_parser(
            name, parents=[parent], help=f"issue the ISA-88 {name.title()}{signed}"
        )
        cmd.add_argument("batch_id", metavar="ID")
        reason_argument(cmd, f"you {name} it")
        cmd.set_defaults(func=_run(cmd_command), command=name)

    confirm = sub.add_parser("confirm", parents=[parent], help="answer a confirm prompt")
    confirm.add_argument("batch_id", metavar="ID")
    confirm.add_argument("step", metavar="STEP", help="the confirm step (as the prompt names it)")
    reason_argument(confirm, "you confirm (what you checked)")
    confirm.set_defaults(func=_run(cmd_confirm))

    release = sub.add_parser(
        "release", parents=[parent], help="QA: release a Complete batch (e-signed)"
    )
    release.add_argument("batch_id", metavar="ID")
    reason_argument(release, "you release it")
    release.set_defaults(func=_run(cmd_release))

    report = sub.add_parser(
        "report", parents=[parent], help="write the electronic batch record (HTML or PDF)"
    )
    report.add_argument("batch_id", metavar="ID")
    report.add_argument("-o", "--output", metavar="FILE", help="where (default: ID-record.html)")
    report.add_argument("--pdf", action="store_true", help="PDF instead of HTML")
    report.set_defaults(func=_run(cmd_report))

    watch = sub.add_parser("watch", parents=[parent], help="live progress until final")
    watch.add_argument("batch_ids", nargs="*", metavar="ID")
    watch.set_defaults(func=_run(cmd_watch))


Event = tuple[str, dict[str, Any], str]


def _run(command: Any) -> Any:
    return run(command, "cellfab batch")


# --------------------------------------------------------------------------- commands
def cmd_start(args: argparse.Namespace, api: Client) -> int:
    if args.batch:
        if args.recipe or args.cartridge:
            raise ClientError("start --batch ID takes no RECIPE or --cartridge")
        if not args.reason.strip():
            raise ClientError("start --batch ID needs --reason (why it starts again)")
        body = {"reason": args.reason}
        return _print_batch(args, api.post(f"/batches/{args.batch}/commands/start", body))
    if not args.recipe or not args.cartridge:
        raise ClientError("start needs RECIPE and --cartridge ID (or --batch ID)")
    query = {"version": args.version, "sha256": args.sha256}
    recipe = api.get(f"/recipes/{args.recipe}", {k: v for k, v in query.items() if v}).data
    types = {p["name"]: p["type"] for p in recipe["parameters"]}
    body: dict[str, Any] = {
        "recipe": args.recipe,
        "params": {**_params_json(args.params_json), **_params(args.param, types)},
        "cartridge_id": args.cartridge,
        "priority": args.priority,
        "shuttle": args.shuttle,
        "reason": args.reason,
        **{k: v for k, v in query.items() if v},
    }
    return _print_batch(args, api.post("/batches", body))


def _params_json(text: str | None) -> dict[str, Any]:
    if not text:
        return {}
    try:
        value = json.loads(text)
    except ValueError as exc:
        raise ClientError(f"--params-json is not JSON: {exc}") from None
    if not isinstance(value, dict):
        raise ClientError("--params-json must be a JSON object of name: value")
    return value


def _params(pairs: list[str], types: dict[str, str]) -> dict[str, Any]:
    out: dict[str, Any] = {}
    for pair in pairs:
        name, sep, text = pair.partition("=")
        if not sep or not name:
            raise ClientError(f"--param {pair!r}: write NAME=VALUE")
        out[name] = typed(text, types.get(name, "string"))
    return out


def typed(text: str, kind: str) -> Any:
    """``text`` as a value of the recipe parameter type ``kind``; as written when it is
    not one (the daemon's answer then names the parameter and what it wants)."""
    try:
        if kind == "number":
            return float(text)
        if kind == "int":
            return int(text)
    except ValueError:
        return text
    if kind == "bool":
        return {"true": True, "yes": True, "1": True, "false": False, "no": False, "0": False}.get(
            text.lower(), text
        )
    return text


def cmd_list(args: argparse.Namespace, api: Client) -> int:
    answer = api.get("/batches", {"state": args.state} if args.state else None)
    if args.json:
        print(answer.text)
        return EXIT_OK
    from daemon.cli import batch_view

    batch_view.console().print(batch_view.batches_table(answer.data))
    return EXIT_OK


def cmd_show(args: argparse.Namespace, api: Client) -> int:
    if args.signatures:
        answer = api.get(f"/batches/{args.batch_id}/signatures")
        if args.json:
            print(answer.text)
        else:
            from daemon.audit.export import text

            sys.stdout.write(text(answer.data) or "no signatures\n")
        return EXIT_OK
    if args.records:
        answer = api.get(f"/batches/{args.batch_id}/records")
        if args.json:
            print(answer.text)
            return EXIT_OK
        from daemon.cli import batch_view

        batch_view.console().print(batch_view.records_table(answer.data))
        return EXIT_OK
    return _print_batch(args, api.get(f"/batches/{args.batch_id}"), detail=True)


def cmd_command(args: argparse.Namespace, api: Client) -> int:
    body: dict[str, Any] = {"reason": args.reason}
    if args.command in SIGNED:
        body["password"] = ask_password(
            f"{args.command.title()} {args.batch_id}: password to sign: "
        )
    answer = api.post(f"/batches/{args.batch_id}/commands/{args.command}", body)
    return _print_batch(args, answer)


def cmd_confirm(args: argparse.Namespace, api: Client) -> int:
    body: dict[str, Any] = {"step": args.step, "reason": args.reason}
    waiting = api.get(f"/batches/{args.batch_id}").data.get("waiting") or {}
    if waiting.get("step") == args.step and waiting.get("role") == "qa":
        body["password"] = ask_password(f"Confirm {args.step} (qa): password to sign: ")
    return _print_batch(args, api.post(f"/batches/{args.batch_id}/confirm", body))


def cmd_release(args: argparse.Namespace, api: Client) -> int:
    api.get(f"/batches/{args.batch_id}")  # 404 before the password is asked
    body = {
        "reason": args.reason,
        "password": ask_password(f"Release {args.batch_id}: password to sign: "),
    }
    return _print_batch(args, api.post(f"/batches/{args.batch_id}/release", body), detail=True)


def cmd_report(args: argparse.Namespace, api: Client) -> int:
    as_pdf = args.pdf or (args.output or "").lower().endswith(".pdf")
    path = Path(args.output or f"{args.batch_id}-record.{'pdf' if as_pdf else 'html'}")
    if path.is_dir():
        raise ClientError(f"-o {path}: is a folder; name a file")
    document, _media = api.download(
        f"/batches/{args.batch_id}/record", {"format": "pdf" if as_pdf else "html"}
    )
    try:
        path.write_bytes(document)
    except OSError as exc:
        raise ClientError(f"cannot write {path}: {exc.strerror or exc}") from None
    print(json.dumps({"path": str(path.resolve())}) if args.json else path.resolve())
    return EXIT_OK


def _print_batch(args: argparse.Namespace, answer: Any, *, detail: bool = False) -> int:
    if args.json:
        print(answer.text)
        return EXIT_OK
    from daemon.cli import batch_view

    out = batch_view.console()
    if detail:
        batch_view.print_detail(out, answer.data)
    else:
        out.print(batch_view.one_line(answer.data))
    return EXIT_OK


def cmd_watch(args: argparse.Namespace, api: Client) -> int:
    ids = list(dict.fromkeys(args.batch_ids))
    with contextlib.closing(api.events(WATCH_KINDS, ids)) as stream:
        next(stream)  # subscribed: nothing from here on is missed
        return _watch(args, api, ids, stream)


def _watch(args: argparse.Namespace, api: Client, ids: list[str], stream: Iterator[Event]) -> int:
    from daemon.cli.batch_view import Watch

    if ids:
        rows = {bid: api.get(f"/batches/{bid}").data for bid in ids}
    else:
        rows = {b["batch_id"]: b for b in api.get("/batches").data if b["state"] not in FINAL}
    with Watch(rows, live=not args.json and sys.stdout.isatty(), quiet=args.json) as watch:
        if not rows and not args.json:
            print("cellfab batch watch: no batch is active")
        while not watch.done():
            kind, event, raw = next(stream)
            bid = event.get("batch_id")
            if args.json and (bid in rows or kind == "overflow"):
                print(raw, flush=True)
            if kind == "overflow":
                for known in rows:
                    watch.update(api.get(f"/batches/{known}").data)
            elif bid in rows and kind in ("batch", "step", "deviation"):
                watch.update(api.get(f"/batches/{bid}").data, event)
            elif bid in rows:
                watch.instrument(bid, kind, event.get("data", {}))
    return EXIT_OK
