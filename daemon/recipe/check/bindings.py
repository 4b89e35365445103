"""Rule family "bindings": the variables steps bind, one type per name.

This module owns the variable table (``ctx.variables``): a name a step binds is not
reserved, keeps one CEL type wherever it is bound (the steps binding it are
collected), and is not also a parameter. Which values a step may bind is decided by
``programs``; whether a guard reads a variable only after it is bound, by ``graph``.
"""

from __future__ import annotations

from dataclasses import replace

from daemon.recipe.check.context import Context, Path
from daemon.recipe.names import RESERVED_NAMES, Variable


def bind(
    ctx: Context, var: str, type_: str, unit: str, step: str, source: str, path: Path, origin: str
) -> None:
    """Step ``step`` binds ``var`` (of CEL type ``type_``) to ``source``."""
    if var in RESERVED_NAMES:
        ctx.error(path, f"'{var}' is a reserved name", "choose another name", key=True)
        return
    seen = ctx.variables.get(var)
    if seen is None:
        ctx.variables[var] = Variable(var, type_, unit, (step,), source, origin)
        ctx.binders[var] = [step]
    elif seen.type != type_:
        ctx.error(
            path,
            f"'{var}' is bound as {type_} here but as {seen.type} in step '{seen.steps[0]}'",
            "use another name for a different kind of value",
            key=True,
        )
    else:
        ctx.binders[var].append(step)
        ctx.variables[var] = replace(seen, unit=unit)  # the unit of the last binder


def check_bindings(ctx: Context) -> None:
    """Once every step is bound: each variable lists all the steps binding it, and no
    name is both a parameter and a bound variable."""
    ctx.variables = {
        var: replace(v, steps=tuple(ctx.binders[var])) for var, v in ctx.variables.items()
    }
    for var, v in ctx.variables.items():
        if var in ctx.params:
            ctx.error(
                ("steps", v.steps[0], "bind", var),
                f"'{var}' is both a parameter and a bound result",
                "rename one of them",
                key=True,
            )
