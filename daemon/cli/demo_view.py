"""What `cellfab demo` shows: event lines, the live table, and the summary's wording.

This module owns the demo's presentation and nothing else: it reads the engine's
batches, the cell view and the event bus, and never acts on them (``daemon.cli.demo``
runs the demo). Two outputs, one content:

* on a terminal, a live table (rich) redrawn a few times a second: the batches (state,
  step, unit, program progress, the latest QC results, deviations), the units of the
  shuttle, the LoadPort, transport, OutputPort and Cell Q, and the latest events;
* otherwise (a pipe, a CI log) one plain line per event, as it happens.

Event lines come from the records the engine publishes on its bus (the same records
the journal holds), plus what the demo's people do (``Feed.say``).
"""

from __future__ import annotations

import collections
import time
from collections.abc import Callable, Iterable, Mapping
from typing import Any

from rich import box
from rich.console import Group, RenderableType
from rich.table import Table
from rich.text import Text

from daemon.batch.machine import Batch
from daemon.batch.states import BatchState
from daemon.cell import CellView, ShuttleView
from daemon.events import BusEvent
from drivers import icd

Out = Callable[[str], None]

# how each Cell Q assay reads in a line (results keyed by the assay's lower-case name)
_BOOL_ASSAYS = {"sterility": ("no growth", "GROWTH"), "mycoplasma": ("negative", "POSITIVE")}
_SHORT_BOOL = {"sterility": ("sterile", "GROWTH"), "mycoplasma": ("myco-", "MYCO+")}

STATE_STYLE: Mapping[str, str] = {
    BatchState.IDLE: "dim",
    BatchState.RUNNING: "green",
    BatchState.PAUSING: "yellow",
    BatchState.PAUSED: "yellow",
    BatchState.HOLDING: "bold red",
    BatchState.HELD: "bold red",
    BatchState.RESTARTING: "yellow",
    BatchState.STOPPING: "magenta",
    BatchState.STOPPED: "magenta",
    BatchState.ABORTING: "magenta",
    BatchState.ABORTED: "magenta",
    BatchState.COMPLETE: "bold blue",
}
UNIT_STYLE: Mapping[str, str] = {
    "Idle": "dim",
    "Running": "green",
    "Held": "yellow",
    "Complete": "cyan",
    "Aborted": "magenta",
    "Faulted": "bold red",
}


def qc_text(results: Mapping[str, float], *, short: bool = False) -> str:
    """Cell Q results in words: ``count 2.1e+06/mL, viability 93.0%, CD3 97.1%``."""
    parts: list[str] = []
    for assay, value in results.items():
        if assay in _BOOL_ASSAYS:
            positive = value >= 0.5
            if short:
                parts.append(_SHORT_BOOL[assay][positive])
            else:
                parts.append(f"{assay} {_BOOL_ASSAYS[assay][positive]}")
        elif assay == "cell_count":
            parts.append(f"{_e(value)}/mL" if short else f"count {value:.3g} viable/mL")
        elif assay == "viability":
            parts.append(f"{value:.0f}% viable" if short else f"viability {value:.1f}%")
        elif assay == "identity":
            parts.append(f"CD3 {value:.0f}%" if short else f"CD3 {value:.1f}%")
        elif assay == "transduction":
            parts.append(f"CAR {value:.0f}%" if short else f"CAR+ {value:.1f}%")
        elif assay == "endotoxin":
            parts.append(f"{value:.2g} EU" if short else f"endotoxin {value:.2g} EU/mL")
        else:
            parts.append(f"{assay} {value:.3g}")
    return ", ".join(parts)


def _e(value: float) -> str:
    """2.1e+06 -> 2.1e6"""
    mantissa, _, exp = f"{value:.1e}".partition("e")
    return f"{mantissa}e{int(exp)}"


def outcome_text(b: Batch) -> str:
    if b.outcome == "completed":
        return "released"
    if b.outcome == "failed":
        return f"failed ({b.outcome_reason})" if b.outcome_reason else "failed"
    return ""


# --------------------------------------------------------------------------- lines
class Feed:
    """Event lines: from the bus (``on_event``) and from the demo's people (``say``).

    ``out`` gets every line as it happens (plain output); the last ``keep`` lines stay
    for the live table."""

    def __init__(self, clock_now: Callable[[], float], out: Out | None, keep: int = 9) -> None:
        self._now = clock_now
        self._wall0 = time.monotonic()
        self._pt0 = clock_now()
        self.out = out
        self.recent: collections.deque[str] = collections.deque(maxlen=keep)
        self._programs: dict[str, tuple[str, str]] = {}  # task_id -> (program, unit)
        self._faulted: set[tuple[str, str]] = set()

    def stamp(self) -> str:
        wall = time.monotonic() - self._wall0
        day = (self._now() - self._pt0) / 86400.0
        return f"{wall:5.1f}s day {day:4.1f}"

    def elapsed(self) -> tuple[float, float]:
        """(wall seconds, process days) since the demo started."""
        return time.monotonic() - self._wall0, (self._now() - self._pt0) / 86400.0

    def say(self, text: str) -> None:
        line = f"[{self.stamp()}] {text}"
        self.recent.append(line)
        if self.out is not None:
            self.out(line)

    def on_event(self, ev: BusEvent) -> None:
        d = ev.data
        text = describe(d, self._programs) if "record" in d else None
        if ev.kind == "fault":  # an instrument's own fault: code and text come one by one
            where = (d["shuttle"], d["location"])
            if d["code"] and d["text"] and where not in self._faulted:
                self._faulted.add(where)
                text = f"{where[0]} {where[1]} reports fault {d['code']}: {d['text']}"
            elif not d["code"] and where in self._faulted:
                self._faulted.discard(where)
                text = f"{where[0]} {where[1]}: fault cleared"
        if text:
            self.say(text)


def describe(d: Mapping[str, Any], programs: dict[str, tuple[str, str]]) -> str | None:
    """One line for a batch record published on the bus, or None for the routine ones
    (moves, submissions, releases, bindings) that the table shows anyway."""
    bid = d["batch_id"]
    match d["record"]:
        case "BatchCreated":
            return (
                f"{bid} created: {d['recipe_name']} {d['recipe_version']} for cartridge "
                f"{d['cartridge_id']} (by {d['by']})"
            )
        case "CommandIssued":
            if d["command"] == "Start" and d["reason"] == "created":
                return None
            who = f"{d['by']}" + (f" ({d['role']})" if d["role"] else "")
            why = f": {d['reason']}" if d["reason"] else ""
            if not d["accepted"]:
                return f"{bid} {d['command']} by {who} REFUSED: {d['detail']}"
            return f"{bid} {d['command']} by {who}{why}"
        case "StateReached":
            return f"{bid} is {d['state']}"
        case "Admitted":
            return f"{bid} admitted: its cartridge taken in from the LoadPort of {d['shuttle']}"
        case "BatchFinished":
            what = "product released" if d["outcome"] == "completed" else "FAILED"
            return f"{bid} procedure ended: {what} ({d['reason']})"
        case "StepStarted":
            visit = f" (visit {d['visit']})" if d["visit"] > 1 else ""
            return f"{bid} step {d['step']}{visit}"
        case "ProgramIntent":
            programs[d["task_id"]] = (d["program"], d["unit"])
            if d["program"] == "sample":
                return None
            return f"{bid}   {d['program']} on {d['unit']} (task {d['task_id']})"
        case "ProgramEnded" if d["status"] != icd.ResultStatus.COMPLETE:
            program, unit = programs.get(d["task_id"], ("program", "?"))
            fault = f" (fault {d['fault_code']}: {d['fault_text']})" if d["fault_code"] else ""
            return f"{bid}   {program} on {unit} ended {d['status']}{fault}"
        case "JobIntent":
            panel = ", ".join(a.name.lower() for a in icd.panel_assays(d["panel"]))
            return f"{bid}   sample {d['sample_id']} to {d['analyzer']}: {panel}"
        case "JobEnded":
            # a done job has results; a failed one its fault
            if d["fault"] or not d["results"]:
                return f"{bid}   QC job {d['job_seq']} ended without results (fault {d['fault']})"
            return f"{bid}   QC: {qc_text(d['results'])}"
        case "Confirmed":
            return f"{bid}   {d['step']} confirmed by {d['by']} ({d['role']})"
        case "Deviation":
            return f"{bid} DEVIATION {d['kind']} at {d['step'] or '-'}: {d['message']}"
        case "StepEnded" if d["outcome"] == "fault":
            return f"{bid}   step {d['step']} faulted; on_fault goes to {d['next']}"
    return None


# --------------------------------------------------------------------------- live table
def _bar(fraction: float, width: int = 8) -> str:
    full = max(0, min(width, round(fraction * width)))
    return "█" * full + "·" * (width - full)


def _hours(seconds: float) -> str:
    h = seconds / 3600.0
    return f"{h:.0f}h" if h >= 10 else f"{h:.1f}h"


def _progress(program: str, fraction: float, state: str, remaining_s: float) -> str:
    text = f"{program} {_bar(fraction)} {fraction:4.0%}"
    if state not in ("Running", ""):
        return f"{text} {state}"
    return f"{text} {_hours(remaining_s)}" if remaining_s > 0 else text


def batch_row(b: Batch, kind_of: Callable[[Batch, str], str], cell: CellView) -> list[Any]:
    """Two lines per batch: batch/recipe, cartridge/unit, state, step/program, QC/deviations."""
    state = Text(b.state.value, style=STATE_STYLE.get(b.state, ""))
    step, unit, progress = "", "", ""
    if b.final:
        step = outcome_text(b)
    elif b.step:
        step = b.step + (f" ×{b.step_visit}" if b.step_visit > 1 else "")
        kind = kind_of(b, b.step)
        if kind == "confirm" and b.confirmation is None:
            step += " (asks a person)"
        elif kind in ("await", "sample") and b.task is not None and b.task.phase == "ended":
            step += " (awaits QC)"
    elif not b.shuttle and b.state is not BatchState.IDLE:
        step = "waits for its cartridge"
    t = b.task
    view = cell.shuttles.get(b.shuttle)
    if view is not None and t is not None and t.kind == "program" and t.phase != "ended":
        unit = t.unit
        u = view.units.get(t.unit)
        if u is not None and u.task_id == t.task_id:
            progress = _progress(t.program, u.progress, u.state, u.remaining_seconds)
    elif b.location and not b.final:
        unit = b.location
    if not progress:
        pending = [j for j in b.jobs.values() if j.phase in ("intent", "submitted")]
        analyzer = cell.analyzers.get(pending[-1].analyzer) if pending else None
        job = analyzer.jobs.get(pending[-1].job_seq) if analyzer is not None else None
        if job is not None:
            progress = _progress("Cell Q", job.progress_permille / 1000, "", 0.0)
    done = [j for j in b.jobs.values() if j.results]
    qc = Text(qc_text(max(done, key=lambda j: j.job_seq).results, short=True) if done else "")
    if b.deviations:
        qc.append("\n" + ", ".join(d.kind for d in b.deviations), style="bold red")
    recipe = b.recipe_name.removeprefix("car_t_")
    return [
        Text(b.batch_id).append(f"\n{recipe}", style="dim"),
        f"{b.cartridge_id}\n{unit}",
        state,
        Text(step).append(f"\n{progress}"),
        qc,
    ]


def batches_table(
    batches: Iterable[Batch], kind_of: Callable[[Batch, str], str], cell: CellView
) -> Table:
    t = Table(box=box.SIMPLE_HEAD, pad_edge=False, show_lines=False)
    t.add_column("batch\nrecipe", no_wrap=True)
    t.add_column("cartridge\nin unit", no_wrap=True)
    t.add_column("state", no_wrap=True)
    t.add_column("step\nprogram / assay", no_wrap=True, max_width=34, overflow="ellipsis")
    t.add_column("QC (latest)\ndeviations", overflow="fold", min_width=20)
    for b in batches:
        t.add_row(*batch_row(b, kind_of, cell))
    return t


def _ranges(names: list[str]) -> str:
    """SEL1, INC03, INC06, INC07, INC08 -> SEL1, INC03, INC06-INC08 (names in order)."""
    out: list[list[str]] = []
    for name in names:
        prev = out[-1][-1] if out else ""
        if prev and _follows(prev, name):
            out[-1].append(name)
        else:
            out.append([name])
    return ", ".join(g[0] if len(g) < 3 else f"{g[0]}-{g[-1]}" for g in out)


def _follows(a: str, b: str) -> bool:
    pa, na = a.rstrip("0123456789"), a[len(a.rstrip("0123456789")) :]
    pb, nb = b.rstrip("0123456789"), b[len(b.rstrip("0123456789")) :]
    return pa == pb and na.isdigit() and nb.isdigit() and int(nb) == int(na) + 1


def units_table(view: ShuttleView) -> RenderableType:
    """The shuttle's busy units (a cartridge in them, or not Idle); the rest in a line."""
    busy = [u for u in view.units.values() if u.cartridge_id or u.state not in ("Idle", "")]
    idle = [u.unit for u in view.units.values() if u not in busy]
    t = Table(box=box.SIMPLE_HEAD, pad_edge=False)
    for name in ("unit", "state", "cartridge", "program", "fault"):
        t.add_column(name, no_wrap=True)
    for u in busy:
        running = u.state in ("Running", "Held")
        fault = Text(f"{u.fault_code} {u.fault_text}", style="bold red") if u.fault_code else ""
        t.add_row(
            u.unit,
            Text(u.state, style=UNIT_STYLE.get(u.state, "")),
            u.cartridge_id,
            _progress(u.program, u.progress, u.state, u.remaining_seconds) if running else "",
            fault,
        )
    rest = Text(f"idle and empty: {_ranges(idle) or '-'}", style="dim")
    title = Text(f"{view.name} units", style="bold")
    return Group(title, t, rest) if busy else Group(title, rest)


def cell_line(cell: CellView) -> Text:
    text = Text()
    for view in cell.shuttles.values():
        if not view.up:
            text.append(f"{view.name} DOWN ({view.reason})  ", style="bold red")
            continue
        text.append(f"{view.name}: ", style="bold")
        text.append(f"LoadPort {view.load_port or '(free)'}  ")
        move = f" {view.transport_task}" if view.transport_state == "Moving" else ""
        text.append(f"Transport {view.transport_state}{move}  ")
        out = ", ".join(view.output_port) or "(empty)"
        text.append(f"OutputPort {out}  ")
    for a in cell.analyzers.values():
        text.append(f"{a.name}: ", style="bold")
        if not a.up:
            text.append(f"DOWN ({a.reason})", style="bold red")
            continue
        state = {0: "idle", 1: "busy", 2: "FAULTED", 3: "maintenance"}.get(a.state, "?")
        text.append(f"{state}, {a.free_slots} free slots")
        for job in sorted(a.jobs.values(), key=lambda j: j.job_seq):
            text.append(f"  job {job.job_seq} {job.state.name.lower()}")
            if job.state is icd.SlotState.RUNNING:
                text.append(f" {job.progress_permille / 10:.0f}%")
    return text


def live_view(
    header: str,
    batches: Iterable[Batch],
    kind_of: Callable[[Batch, str], str],
    cell: CellView,
    feed: Feed,
) -> RenderableType:
    wall, day = feed.elapsed()
    title = Text(f"{header}   wall {wall:4.0f} s   process day {day:4.1f}", style="bold")
    parts: list[RenderableType] = [title, batches_table(batches, kind_of, cell)]
    parts.extend(units_table(view) for view in cell.shuttles.values())
    parts.append(cell_line(cell))
    parts.append(Text("\nlatest events", style="bold"))
    parts.extend(Text(line, overflow="ellipsis", no_wrap=True) for line in feed.recent)
    return Group(*parts)
