"""Rule family "guards": branch lists and the CEL conditions on them.

This module owns the rules of ``next: [...]`` and ``decide: [...]`` lists (not empty,
only the last branch without ``when``, the last one a fallback) and the compilation
of each ``when`` by ``daemon.recipe.guards`` against the declared names (parameters,
bound variables, ``visits.<step>``, ``elapsed_h``), with each problem placed at its
column inside the guard when the guard is written on one line. Compiled guards go to
``ctx.guards`` keyed by (step, branch index).
"""

from __future__ import annotations

from typing import Any

from daemon.recipe.check.context import Context, Path
from daemon.recipe.guards import compile_guard
from daemon.recipe.models import DecideStep, branches_of
from daemon.recipe.names import PARAM_CEL_TYPES


def check_guard_list(ctx: Context, name: str, step: Any) -> None:
    """The shape of a step's list of branches."""
    if isinstance(step, DecideStep):
        items, key = step.decide, "decide"
    elif isinstance(getattr(step, "next", None), list):
        items, key = step.next, "next"
    else:
        return
    path = ("steps", name, key)
    if not items:
        ctx.error(path, "the guard list is empty", "add at least a final '- goto: <step>'")
        return
    for i, g in enumerate(items[:-1]):
        if g.when is None:
            ctx.error(
                (*path, i),
                "only the last branch may omit 'when'",
                "the branches after it could never be taken; move it to the end",
            )
    if items[-1].when is not None:
        ctx.error(
            (*path, len(items) - 1),
            "the last branch needs no 'when': it is the fallback when no guard holds",
            "add a final '- goto: <step>' (for example to a fail step)",
        )


def check_guards(ctx: Context) -> None:
    """Compile every guard of every well-formed step (after all bindings are known)."""
    types = {n: PARAM_CEL_TYPES[p.type] for n, p in ctx.params.items()}
    types.update({n: v.type for n, v in ctx.variables.items()})
    steps = frozenset(ctx.names)
    for name, step in ctx.steps.items():
        key = "decide" if isinstance(step, DecideStep) else "next"
        for i, (when, _target) in enumerate(branches_of(step)):
            if when is None:
                continue
            path = ("steps", name, key, i, "when")
            guard, problems = compile_guard(when, types, steps)
            if guard is not None:
                ctx.guards[(name, i)] = guard
            for problem in problems:
                ctx.error_at(
                    guard_pos(ctx, path, when, problem.column),
                    path,
                    f"in guard '{_clip(when)}': {problem.message}",
                    problem.hint,
                )


def guard_pos(ctx: Context, path: Path, text: str, column: int) -> tuple[int, int]:
    """Where ``column`` of the guard text is in the file, when the text is on one line."""
    line, col = ctx.loc.value_pos(path)
    if 0 < line <= len(ctx.lines) and "\n" not in text:
        source = ctx.lines[line - 1]
        quote = 1 if ctx.loc.styles.get(path) in ("'", '"') else 0
        if source.startswith(text, col - 1 + quote):  # no copy: a line may be the file
            return line, col + quote + column - 1
    return line, col


def _clip(text: str, width: int = 60) -> str:
    """A guard as a message quotes it: long ones shortened in the middle."""
    return text if len(text) <= width else f"{text[: width - 20]}...{text[-17:]}"
