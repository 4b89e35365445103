"""Rule family "numbers": every number finite and within its documented range.

This module owns the ranges of the numbers a recipe writes outside the ICD tables
(those are checked by ``ParamSpec.check``): durations (``wait``, ``timeout``,
``hold_max``) are longer than 0 and at most ``MAX_DURATION_S``; a parameter's
``min``, ``max`` and ``default`` are finite and of magnitude at most
``MAX_ABS_NUMBER``. ``max_visits`` (1..``MAX_VISITS``) is bounded by the model itself,
so editors see the range too. With these, every number a valid recipe holds is
finite, so its canonical JSON (the hash) exists.
"""

from __future__ import annotations

import math
from typing import Any

from daemon.recipe.check.context import Context
from daemon.recipe.limits import MAX_ABS_NUMBER, MAX_DURATION_S
from daemon.recipe.models import Parameter, WaitStep, duration_seconds

_DURATION_LIMIT = f"{MAX_DURATION_S / 86400:g}d"


def check_step_numbers(ctx: Context, name: str, step: Any) -> None:
    path = ("steps", name)
    durations = [(key, getattr(step, key, None), key) for key in ("timeout", "hold_max")]
    if isinstance(step, WaitStep):
        durations.append(("wait", step.wait, "a wait"))
    for key, value, what in durations:
        if value is None:
            continue
        seconds = duration_seconds(value)
        if seconds <= 0:
            ctx.error((*path, key), f"{what} must be longer than 0")
        elif not seconds <= MAX_DURATION_S:  # inf too: '1' followed by 400 zeros
            ctx.error(
                (*path, key),
                f"{what} must be at most {_DURATION_LIMIT} (the limit), not {_shown(value)}",
                "durations are process time; write one under the limit",
            )


def check_parameter_numbers(ctx: Context, name: str, p: Parameter) -> None:
    """A parameter's min, max and default are finite and not beyond MAX_ABS_NUMBER."""
    path = ("parameters", name)
    for key in ("min", "max", "default"):
        value = getattr(p, key)
        if isinstance(value, bool) or not isinstance(value, int | float):
            continue
        if isinstance(value, float) and not math.isfinite(value):
            ctx.error(
                (*path, key),
                f"{key} of parameter '{name}' must be a finite number, got {value!r}",
                "YAML reads .nan and .inf as numbers; write a bound you mean",
            )
        elif abs(value) > MAX_ABS_NUMBER:
            ctx.error(
                (*path, key),
                f"{key} of parameter '{name}' is {_shown(value)}, beyond the limit of "
                f"{MAX_ABS_NUMBER:g}",
                "numbers of a recipe are at most 1e15 in magnitude",
            )


def _shown(value: Any) -> str:
    text = f"{value:g}" if isinstance(value, float) else str(value)
    return text if len(text) <= 24 else text[:12] + "..." + text[-8:]
