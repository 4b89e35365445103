"""Recipe validation: every rule of the recipe language, reported like a compiler.

This package turns an author's YAML into a validated document or into diagnostics
(file, line, column, path, message, hint), all of them, not only the first. This
module owns the order of the passes; each rule family is one module:

* ``shape``: the keys and types of the file (pydantic errors in words);
* ``params``: parameter declarations, ``${name}`` references, ICD ranges;
* ``programs``: op and sample steps against the ICD program table and panel;
* ``bindings``: the variables steps bind;
* ``references``: start, next/goto, on_fault and await name steps;
* ``numbers``: durations and counts;
* ``guards``: branch lists and their CEL conditions;
* ``graph``: reachability, completion, loops, bound-before-use.

A step that is malformed is still checked without its bad keys, so one mistake does
not hide the others; graph rules run only when every step is well-formed. The public
entry is ``daemon.recipe.load_recipe_text``; this package is its engine.
"""

from __future__ import annotations

from dataclasses import dataclass

from daemon.diagnostics import Diagnostic, describe
from daemon.recipe.check import bindings, graph, guards, numbers, params, programs, references
from daemon.recipe.check.context import Context
from daemon.recipe.check.shape import too_many, validate
from daemon.recipe.guards import Guard
from daemon.recipe.limits import LIMITS, Limits
from daemon.recipe.models import OpStep, RecipeDoc, SampleStep
from daemon.recipe.names import Variable
from daemon.recipe.yaml import load_located
from drivers.icd import ParamSpec


@dataclass(frozen=True, slots=True)
class Checked:
    """What a valid recipe text yields: the document and what the checks learned."""

    doc: RecipeDoc
    guards: dict[tuple[str, int], Guard]
    variables: dict[str, Variable]
    param_uses: dict[str, tuple[ParamSpec, ...]]


def check_text(
    text: str, filename: str, limits: Limits = LIMITS
) -> tuple[Checked | None, list[Diagnostic]]:
    """``(checked, [])`` for a valid recipe, ``(None, diagnostics)`` otherwise."""
    ctx = Context(text, filename)
    located, diags = load_located(text, filename, limits)
    ctx.diags += diags
    if located is None:
        return None, ctx.sorted_diagnostics()
    ctx.loc = located
    if not isinstance(located.data, dict):
        ctx.error(
            (),
            f"a recipe is a mapping of keys, this file holds {describe(located.data)}",
            "start with 'recipe: <name>', 'version:', 'start:' and 'steps:'",
        )
        return None, ctx.sorted_diagnostics()
    ctx.raw = located.data
    if too_many(ctx, limits):
        return None, ctx.sorted_diagnostics()
    doc = validate(ctx)
    raw_steps = ctx.raw.get("steps")
    ctx.names = set(raw_steps) if isinstance(raw_steps, dict) else set(ctx.steps)
    _meaning(ctx, graph_ok=doc is not None)
    if doc is None or ctx.diags:
        return None, ctx.sorted_diagnostics()
    checked = Checked(
        doc=doc,
        guards=dict(ctx.guards),
        variables=dict(ctx.variables),
        param_uses={k: tuple(v) for k, v in ctx.param_uses.items()},
    )
    return checked, []


def _meaning(ctx: Context, *, graph_ok: bool) -> None:
    for name, spec in ctx.params.items():
        params.check_parameter(ctx, name, spec)
        numbers.check_parameter_numbers(ctx, name, spec)
    references.check_start(ctx)
    for name, step in ctx.steps.items():
        references.check_targets(ctx, name, step)
        guards.check_guard_list(ctx, name, step)
        if isinstance(step, OpStep):
            programs.check_op(ctx, name, step)
        elif isinstance(step, SampleStep):
            programs.check_sample(ctx, name, step)
        numbers.check_step_numbers(ctx, name, step)
    bindings.check_bindings(ctx)
    guards.check_guards(ctx)
    start = ctx.raw.get("start")
    if graph_ok and isinstance(start, str) and start in ctx.steps:
        graph.check_graph(ctx, start)
