"""Rule family "references": every step name a recipe writes names a step.

This module owns the rules of the names that point at steps: ``start``, each ``next``
or ``goto``, ``on_fault`` (a step, or ``hold``) and ``await`` (a sample step with
``wait: false``). An unknown name gets a did-you-mean and the list of steps.
"""

from __future__ import annotations

from typing import Any

from daemon.recipe.check.context import Context, Path, listing
from daemon.recipe.models import AwaitStep, DecideStep, SampleStep, branches_of


def check_start(ctx: Context) -> None:
    start = ctx.raw.get("start")
    if isinstance(start, str) and ctx.names and start not in ctx.names:
        unknown_target(ctx, ("start",), start)


def check_targets(ctx: Context, name: str, step: Any) -> None:
    """The targets of one step's branches, on_fault and await."""
    path = ("steps", name)
    field_ = "decide" if isinstance(step, DecideStep) else "next"
    plain = isinstance(getattr(step, "next", None), str)
    for i, (_when, target) in enumerate(branches_of(step)):
        if target not in ctx.names:
            unknown_target(ctx, (*path, field_) if plain else (*path, field_, i, "goto"), target)
    on_fault = getattr(step, "on_fault", "hold")
    if on_fault != "hold" and on_fault not in ctx.names:
        unknown_target(ctx, (*path, "on_fault"), on_fault, extra="hold")
    if isinstance(step, AwaitStep):
        target = ctx.steps.get(step.await_)
        if step.await_ not in ctx.names:
            unknown_target(ctx, (*path, "await"), step.await_)
        elif target is not None and not (isinstance(target, SampleStep) and not target.wait):
            ctx.error(
                (*path, "await"),
                f"step '{step.await_}' is not a sample step with 'wait: false'",
                "await waits for the results of a sample step that let the batch go on",
            )


def unknown_target(ctx: Context, path: Path, target: str, extra: str = "") -> None:
    options = ctx.sorted_names + ([extra] if extra else [])
    ctx.error(
        path,
        f"there is no step '{target}'",
        ctx.suggest(target, ctx.sorted_names) + f"steps: {listing(options)}",
    )
