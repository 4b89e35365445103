"""Recipes as text for people: one-line step descriptions, Mermaid, Graphviz DOT, tables.

This module owns how a validated ``Recipe`` is shown: ``describe_step`` (what a step
does, in one line), ``to_mermaid`` and ``to_dot`` (the state machine, guards on the
edges, fault edges dotted or dashed) and ``show_text`` (header, parameters, steps and
variables as aligned tables). ``cellfab recipe graph`` and ``show`` print them.
"""

from __future__ import annotations

from collections.abc import Sequence
from typing import Any

from daemon.recipe.models import (
    AwaitStep,
    CompleteStep,
    ConfirmStep,
    DecideStep,
    FailStep,
    OpStep,
    SampleStep,
    WaitStep,
)
from daemon.recipe.names import SAMPLE_RESULTS
from daemon.recipe.value import Recipe


# --------------------------------------------------------------------------- graph
def describe_step(step: Any) -> str:
    """One line saying what a step does."""
    if isinstance(step, OpStep):
        params = ", ".join(f"{k}={v}" for k, v in step.params.items())
        return f"{step.op}({params})"
    if isinstance(step, SampleStep):
        wait = "" if step.wait else ", no wait"
        return f"sample {step.sample.volume_ml} mL: {', '.join(step.sample.panel)}{wait}"
    if isinstance(step, AwaitStep):
        return f"await {step.await_}"
    if isinstance(step, ConfirmStep):
        return f"confirm ({step.role}): {step.confirm}"
    if isinstance(step, WaitStep):
        return f"wait {step.wait}"
    if isinstance(step, DecideStep):
        return "decide"
    if isinstance(step, CompleteStep):
        return f"complete: {step.complete}"
    if isinstance(step, FailStep):
        return f"fail: {step.fail}"
    return type(step).__name__  # pragma: no cover


def _edges(recipe: Recipe, name: str) -> list[tuple[str, str, bool]]:
    """(target, label, is_fault) for each way out of a step."""
    out: list[tuple[str, str, bool]] = []
    branches = recipe.branches(name)
    for guard, target in branches:
        label = guard.text if guard is not None else ("else" if len(branches) > 1 else "")
        out.append((target, label, False))
    on_fault = getattr(recipe.steps[name], "on_fault", "hold")
    if on_fault != "hold":
        out.append((on_fault, "on fault", True))
    return out


def _mermaid_text(text: str) -> str:
    return (
        text.replace("&", "#amp;").replace('"', "#quot;").replace("<", "#lt;").replace(">", "#gt;")
    )


def to_mermaid(recipe: Recipe) -> str:
    """A Mermaid flowchart: one node per step, guards on the edges, faults dotted."""
    lines = [f"%% {recipe.name} {recipe.version} sha256:{recipe.hash}", "flowchart TD"]
    lines.append("  __start__((start))")
    for name, step in recipe.steps.items():
        label = _mermaid_text(f"{name}\n{describe_step(step)}").replace("\n", "<br/>")
        limits = _limits(step)
        if limits:
            label += "<br/>" + _mermaid_text(limits)
        kind = recipe.kind(name)
        shape = {
            "decide": ('{"', '"}'),
            "complete": ('(["', '"])'),
            "fail": ('[["', '"]]'),
            "confirm": ('[/"', '"/]'),
        }.get(kind, ('["', '"]'))
        lines.append(f"  {name}{shape[0]}{label}{shape[1]}")
    lines.append(f"  __start__ --> {recipe.start}")
    for name in recipe.steps:
        for target, label, fault in _edges(recipe, name):
            arrow = "-.->" if fault else "-->"
            text = f'|"{_mermaid_text(label)}"|' if label else ""
            lines.append(f"  {name} {arrow}{text} {target}")
    return "\n".join(lines) + "\n"


def _dot_text(text: str) -> str:
    return text.replace("\\", "\\\\").replace('"', '\\"').replace("\n", "\\n")


def to_dot(recipe: Recipe) -> str:
    """A Graphviz digraph: one node per step, guards on the edges, faults dashed."""
    lines = [
        f"// {recipe.name} {recipe.version} sha256:{recipe.hash}",
        f'digraph "{_dot_text(recipe.name)}" {{',
        "  rankdir=TB;",
        '  node [shape=box, style=rounded, fontname="Helvetica"];',
        '  edge [fontname="Helvetica", fontsize=10];',
        "  __start__ [shape=point];",
    ]
    shapes = {"decide": "diamond", "complete": "doubleoctagon", "fail": "octagon"}
    for name, step in recipe.steps.items():
        label = f"{name}\n{describe_step(step)}"
        if limits := _limits(step):
            label += f"\n{limits}"
        shape = shapes.get(recipe.kind(name), "box")
        lines.append(f'  "{name}" [label="{_dot_text(label)}", shape={shape}];')
    lines.append(f'  __start__ -> "{recipe.start}";')
    for name in recipe.steps:
        for target, label, fault in _edges(recipe, name):
            attrs = [f'label="{_dot_text(label)}"'] if label else []
            if fault:
                attrs.append("style=dashed")
            suffix = f" [{', '.join(attrs)}]" if attrs else ""
            lines.append(f'  "{name}" -> "{target}"{suffix};')
    lines.append("}")
    return "\n".join(lines) + "\n"


def _limits(step: Any) -> str:
    parts = []
    if step.max_visits is not None:
        parts.append(f"max_visits {step.max_visits}")
    if getattr(step, "timeout", None):
        parts.append(f"timeout {step.timeout}")
    if step.hold_max is not None:
        parts.append(f"hold_max {step.hold_max}")
    return ", ".join(parts)


# --------------------------------------------------------------------------- show
def table(headers: Sequence[str], rows: Sequence[Sequence[str]]) -> str:
    """Columns aligned on the widest cell; a rule under the headers."""
    widths = [len(h) for h in headers]
    for row in rows:
        widths = [max(w, len(c)) for w, c in zip(widths, row, strict=True)]

    def line(cells: Sequence[str]) -> str:
        return "  ".join(c.ljust(w) for c, w in zip(cells, widths, strict=True)).rstrip()

    out = [line(headers), line(["-" * w for w in widths])]
    out += [line(r) for r in rows]
    return "\n".join(out) + "\n"


def _num(value: Any) -> str:
    if value is None:
        return "-"
    if isinstance(value, float):
        return f"{value:g}"
    return str(value)


def show_text(recipe: Recipe) -> str:
    doc = recipe.doc
    header = table(
        ("field", "value"),
        [
            ("recipe", doc.recipe),
            ("version", doc.version),
            ("approval", doc.approval),
            ("author", doc.author or "-"),
            ("description", doc.description or "-"),
            ("start", doc.start),
            ("hash", f"sha256:{recipe.hash}"),
        ],
    )
    params = table(
        ("parameter", "type", "unit", "default", "min", "max", "description"),
        [
            (
                name,
                p.type + (f" {'|'.join(p.choices)}" if p.choices else ""),
                p.unit or "-",
                _num(p.default),
                _num(p.min),
                _num(p.max),
                p.description or "-",
            )
            for name, p in recipe.parameters.items()
        ],
    )
    steps = table(
        ("step", "kind", "does", "next", "limits"),
        [
            (
                name,
                recipe.kind(name),
                _clip(describe_step(step), 60),
                ", ".join(t for t, _l, _f in _edges(recipe, name)) or "-",
                _limits(step) or "-",
            )
            for name, step in recipe.steps.items()
        ],
    )
    variables = table(
        ("variable", "type", "unit", "bound by", "holds"),
        [
            (v.name, v.type, v.unit or "-", ", ".join(v.steps), _holds(v.source, v.origin))
            for v in recipe.variables.values()
        ],
    )
    return "\n".join([header, params, steps, variables])


def _holds(source: str, origin: str) -> str:
    info = SAMPLE_RESULTS.get(source)
    if origin == "assay" and info is not None:
        return f"{source} ({info[3]})"
    return f"{source} (program output)"


def _clip(text: str, width: int) -> str:
    return text if len(text) <= width else text[: width - 3] + "..."
