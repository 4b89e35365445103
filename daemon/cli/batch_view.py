"""How ``cellfab batch`` shows batches: rich tables, one-line summaries, the live watch.

This module owns the readable output of the batch commands (``--json`` bypasses it):
it takes the API's JSON (``daemon.api.schemas`` shapes, as plain dicts) and never asks
the daemon anything. ``Watch`` keeps one row per watched batch, redrawn live on a
terminal (rich ``Live``) or printed as one line per change elsewhere.
"""

from __future__ import annotations

import sys
import time
from collections.abc import Iterable, Mapping
from typing import Any, Final

from rich import box
from rich.console import Console
from rich.live import Live
from rich.table import Table

FINAL: Final = frozenset({"Complete", "Stopped", "Aborted"})
_STATE_STYLE: Final = {
    "Running": "green",
    "Complete": "bold green",
    "Held": "yellow",
    "Holding": "yellow",
    "Paused": "cyan",
    "Pausing": "cyan",
    "Stopped": "red",
    "Aborted": "bold red",
    "Aborting": "red",
    "Stopping": "red",
}


def console() -> Console:
    """Stdout; a pipe gets a wide page and no colour, so lines are not cut."""
    tty = sys.stdout.isatty()
    return Console(width=None if tty else 200, no_color=not tty, highlight=False)


def _state(state: str) -> str:
    style = _STATE_STYLE.get(state)
    return f"[{style}]{state}[/]" if style else state


def _waiting(b: Mapping[str, Any]) -> str:
    w = b.get("waiting")
    return f"confirm {w['step']} ({w['role']})" if w else ""


def _step(b: Mapping[str, Any]) -> str:
    return f"{b['step']} #{b['step_visit']}" if b.get("step") else ""


def one_line(b: Mapping[str, Any]) -> str:
    parts = [b["batch_id"], _state(b["state"]), f"{b['recipe_name']} {b['recipe_version']}"]
    parts += [f"cartridge {b['cartridge_id']}"]
    if b.get("step"):
        parts.append(f"step {_step(b)}")
    if b.get("outcome"):
        parts.append(f"outcome {b['outcome']}")
    if b.get("waiting"):
        parts.append(f"waiting for {_waiting(b)}")
    return "  ".join(parts)


COLUMNS: Final = ("batch", "recipe", "cartridge", "state", "step", "at", "outcome", "dev")


def batches_table(
    batches: Iterable[Mapping[str, Any]],
    title: str = "",
    extra: Mapping[str, tuple[str, ...]] | None = None,
    extra_columns: tuple[str, ...] = (),
) -> Table:
    """One row per batch; ``extra`` adds ``extra_columns`` cells by batch id."""
    t = Table(box=box.SIMPLE_HEAD, title=title or None)
    for col in (*COLUMNS, "waiting", *extra_columns):
        t.add_column(col, no_wrap=col in ("batch", "state"))
    for b in batches:
        t.add_row(
            b["batch_id"],
            f"{b['recipe_name']} {b['recipe_version']}",
            b["cartridge_id"],
            _state(b["state"]),
            _step(b),
            b.get("location", ""),
            b.get("outcome", ""),
            str(b.get("deviation_count", 0) or ""),
            _waiting(b),
            *(extra or {}).get(b["batch_id"], ("",) * len(extra_columns)),
        )
    return t


def _pairs(title: str, items: Iterable[tuple[str, Any]]) -> Table:
    t = Table(box=box.SIMPLE_HEAD, title=title, title_justify="left", show_header=False)
    t.add_column("name", style="bold")
    t.add_column("value")
    for name, value in items:
        t.add_row(name, str(value))
    return t


def print_detail(out: Console, b: Mapping[str, Any]) -> None:
    out.print(one_line(b))
    rows: list[tuple[str, Any]] = [
        ("recipe", f"{b['recipe_name']} {b['recipe_version']} sha256:{b['recipe_hash']}"),
        ("state", f"{b['state']} (run {b['run']})"),
        ("step", _step(b) or (f"next {b['next_step']}" if b["next_step"] else "-")),
        ("shuttle", f"{b['shuttle'] or '-'} at {b['location'] or '-'}"),
        ("priority", b["priority"]),
        ("created", f"{_time(b['created_at'])} by {b['created_by'] or '-'}"),
    ]
    if b["held_by"]:
        rows.append(("held by", f"{b['held_by']}: {b['hold_reason']}"))
    if b["outcome"]:
        rows.append(("outcome", f"{b['outcome']}: {b['outcome_reason']}"))
    if b["unapproved"]:
        rows.append(("UNAPPROVED", "the recipe is not approved (a development site)"))
    out.print(_pairs("batch", rows))
    if w := b.get("waiting"):
        out.print(f"[bold]waiting for a {w['role']}[/] to confirm {w['step']}: {w['prompt']}")
    out.print(_pairs("parameters", sorted(b["params"].items())))
    if b["variables"]:
        out.print(_pairs("variables", sorted(b["variables"].items())))
    if task := b.get("task"):
        status = f", {task['status']}" if task["status"] else ""
        what = f"{task['program']} on {task['unit']} ({task['phase']}{status})"
        out.print(_pairs("task", [(task["task_id"], what)]))
    jobs = [
        (f"job {j['job_seq']}", f"{j['sample_id']} {j['step']} {j['phase']} {j['state']}")
        for j in b["jobs"]
    ]
    if jobs:
        out.print(_pairs("QC jobs", jobs))
    deviations = [
        (f"{_time(d['at'])} {d['kind']}", f"{d['step']}: {d['message']}") for d in b["deviations"]
    ]
    if deviations:
        out.print(_pairs("deviations", deviations))


def records_table(records: Iterable[Mapping[str, Any]]) -> Table:
    t = Table(box=box.SIMPLE_HEAD)
    for col in ("seq", "time", "record", "detail"):
        t.add_column(col)
    for rec in records:
        data = {k: v for k, v in rec["data"].items() if k not in ("batch_id", "recipe_text")}
        detail = " ".join(f"{k}={v}" for k, v in data.items() if v not in ("", None, {}, []))
        t.add_row(str(rec["seq"]), _time(rec["at"]), rec["type"], detail)
    return t


def _time(at: float) -> str:
    return time.strftime("%Y-%m-%d %H:%M:%S", time.localtime(at))


class Watch:
    """The rows of ``cellfab batch watch``: updated from the event stream."""

    def __init__(self, rows: Mapping[str, Mapping[str, Any]], *, live: bool, quiet: bool) -> None:
        self.rows = {bid: dict(b) for bid, b in rows.items()}
        self.units: dict[str, dict[str, Any]] = {bid: {} for bid in rows}
        self.quiet = quiet
        self.out = console()
        self._live = Live(self._table(), console=self.out, auto_refresh=False) if live else None

    def __enter__(self) -> Watch:
        if self._live is not None:
            self._live.__enter__()
        elif not self.quiet:
            for b in self.rows.values():
                self.out.print(one_line(b))
        return self

    def __exit__(self, exc_type: object, *_exc: object) -> None:
        if self._live is not None:
            self._live.update(self._table(), refresh=True)
            self._live.__exit__(None, None, None)
        elif not self.quiet and exc_type is None:
            self.out.print(batches_table(self.rows.values(), "final"))

    def done(self) -> bool:
        return all(b["state"] in FINAL for b in self.rows.values())

    def update(self, batch: Mapping[str, Any], event: Mapping[str, Any] | None = None) -> None:
        self.rows[batch["batch_id"]] = dict(batch)
        if self._live is not None:
            self._live.update(self._table(), refresh=True)
        elif not self.quiet and event is not None:
            data = event.get("data", {})
            what = data.get("record", event.get("kind", ""))
            extra = data.get("message") or data.get("step") or data.get("command") or ""
            self.out.print(f"{one_line(batch)}  <- {what} {extra}".rstrip())

    def instrument(self, batch_id: str, kind: str, data: Mapping[str, Any]) -> None:
        unit = self.units.setdefault(batch_id, {})
        if kind == "unit":
            unit.update(unit=data.get("unit", ""), program=data.get("program", ""))
            unit["unit_state"] = data.get("state", "")
        elif kind == "progress":
            unit.update(unit=data.get("unit", ""), progress=data.get("progress", 0.0))
        if self._live is not None:
            self._live.update(self._table(), refresh=True)

    def _table(self) -> Table:
        extra = {}
        for bid, u in self.units.items():
            progress = u.get("progress")
            shown = "" if progress is None else f"{100 * progress:.0f}%"
            extra[bid] = (u.get("unit", ""), u.get("program", ""), shown)
        return batches_table(self.rows.values(), extra=extra, extra_columns=_UNIT_COLUMNS)


_UNIT_COLUMNS: Final = ("unit", "program", "progress")
