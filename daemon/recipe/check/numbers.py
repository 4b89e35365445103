"""Rule family "numbers": durations and counts a batch can live with.

This module owns the rules of the numbers on steps: ``timeout``, ``hold_max`` and a
wait's duration are longer than 0.
"""

from __future__ import annotations

from typing import Any

from daemon.recipe.check.context import Context
from daemon.recipe.models import WaitStep, duration_seconds


def check_step_numbers(ctx: Context, name: str, step: Any) -> None:
    path = ("steps", name)
    for key in ("timeout", "hold_max"):
        value = getattr(step, key, None)
        if value is not None and duration_seconds(value) <= 0:
            ctx.error((*path, key), f"{key} must be longer than 0")
    if isinstance(step, WaitStep) and duration_seconds(step.wait) <= 0:
        ctx.error((*path, "wait"), "a wait must be longer than 0")
