"""The timeline picture of a batch record: its steps per unit, drawn with matplotlib.

One row per unit (and one for the transport, one per Cell Q analyzer), one bar per
program from its intent to its end (open bars run to the record's last moment),
coloured by how it ended; process hours since the batch was created on the x axis.
Drawn with matplotlib's object API straight on its SVG canvas (no pyplot, no global
state, thread-safe per figure), returned as SVG text; the renderer embeds it as an
image (a data: URI), so nothing in it can run in the page.
"""

from __future__ import annotations

import io
from typing import Final

from matplotlib.backends.backend_svg import FigureCanvasSVG
from matplotlib.figure import Figure
from matplotlib.patches import Patch

from daemon.record.model import BatchRecord

__all__ = ["svg"]

COLOURS: Final = {
    "Complete": "#4c9a2a",
    "ok": "#8fb8de",
    "Faulted": "#d1495b",
    "failed": "#d1495b",
    "Aborted": "#d1495b",
    "Stopped": "#edae49",
    "": "#bbbbbb",  # still running (or no outcome recorded)
}
QC_COLOURS: Final = {"done": "#6a4c93", "failed": "#d1495b", "aborted": "#d1495b", "": "#bbbbbb"}
TRANSPORT: Final = "transport"
MAX_LABEL: Final = 24


def _short(text: str) -> str:
    return text if len(text) <= MAX_LABEL else text[: MAX_LABEL - 1] + "…"


def svg(record: BatchRecord) -> str:
    """The timeline as SVG text (an empty chart saying so when nothing ran)."""
    bars: list[tuple[str, float, float, str, str]] = []  # row, start h, end h, colour, label
    last = max(
        [record.created.hours]
        + [t.end.hours for t in record.tasks if t.end]
        + [t.start.hours for t in record.tasks]
        + [j.end.hours for j in record.jobs if j.end]
        + [s.end.hours for s in record.steps if s.end],
    )
    for step in record.steps:
        for t in step.tasks:
            end = t.end.hours if t.end else last
            row = TRANSPORT if t.kind == "move" else t.unit
            label = (
                ""
                if t.kind == "move"
                else f"{step.step}" + (f" #{t.attempt}" if t.attempt > 1 else "")
            )
            bars.append((row, t.start.hours, end, COLOURS.get(t.status, "#bbbbbb"), label))
    for j in record.jobs:
        end = j.end.hours if j.end else last
        bars.append((j.analyzer or "Cell Q", j.start.hours, end, QC_COLOURS.get(j.state, "#bbbbbb"),
                     j.step))  # fmt: skip
    rows = list(dict.fromkeys(row for row, *_ in bars))
    units = sorted(r for r in rows if r != TRANSPORT and not any(
        j.analyzer == r for j in record.jobs))  # fmt: skip
    analyzers = [r for r in rows if r not in units and r != TRANSPORT]
    order = units + analyzers + ([TRANSPORT] if TRANSPORT in rows else [])
    height = 1.2 + 0.42 * max(len(order), 1)
    fig = Figure(figsize=(10, height), dpi=100)
    FigureCanvasSVG(fig)
    ax = fig.add_subplot()
    span = max(last - record.created.hours, 1e-6)
    for row, start, end, colour, label in bars:
        y = order.index(row)
        width = max(end - start, span / 400)
        ax.barh(y, width, left=start, height=0.6, color=colour, edgecolor="#333333", lw=0.4)
        if label and width > span / 14:
            ax.text(start + width / 2, y, _short(label), ha="center", va="center", fontsize=7)
    ax.set_yticks(range(len(order)), [_short(r) for r in order], fontsize=8)
    ax.invert_yaxis()
    ax.set_xlabel("process hours since the batch was created", fontsize=8)
    ax.tick_params(axis="x", labelsize=8)
    ax.set_xlim(record.created.hours, record.created.hours + span * 1.02)
    ax.grid(axis="x", color="#dddddd", lw=0.5)
    ax.set_axisbelow(True)
    if not bars:
        ax.text(0.5, 0.5, "no instrument task ran", transform=ax.transAxes, ha="center")
    legend = [
        Patch(color=COLOURS["Complete"], label="program complete"),
        Patch(color=COLOURS["Faulted"], label="faulted / failed"),
        Patch(color=COLOURS["Stopped"], label="stopped"),
        Patch(color=COLOURS["ok"], label="move"),
        Patch(color=QC_COLOURS["done"], label="Cell Q job"),
        Patch(color=COLOURS[""], label="no outcome"),
    ]
    ax.legend(handles=legend, fontsize=7, ncols=6, loc="lower center", bbox_to_anchor=(0.5, 1.0),
              frameon=False)  # fmt: skip
    fig.tight_layout()
    out = io.StringIO()
    fig.savefig(out, format="svg", metadata={"Date": None})
    return out.getvalue()
