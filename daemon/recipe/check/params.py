"""Rule family "parameters": declarations, ``${name}`` references and the ICD ranges.

This module owns the rules of a recipe's ``parameters`` (reserved names; min, max and
choices only where the type has them; the default fits, by ``Parameter.check``) and of
every value written where the ICD expects a program parameter: a literal must pass the
ICD's own ``ParamSpec.check``; a ``${name}`` reference must name a declared parameter
whose type fits the ICD kind and whose min/max (or choices) lie inside the ICD range,
so every value a batch may choose is valid on the wire. It records which ICD
parameters each recipe parameter feeds (``ctx.param_uses``) for
``Recipe.resolve_parameters``.
"""

from __future__ import annotations

import math
from typing import Any

from daemon.diagnostics import format_path
from daemon.recipe.check.context import Context, Path, listing
from daemon.recipe.models import Parameter
from daemon.recipe.names import PARAM_REF, RESERVED_NAMES
from drivers.icd import ParamKind, ParamSpec, is_id

# which recipe parameter types may feed each ICD parameter kind
_FITS = {
    ParamKind.NUMBER: ("number", "int"),
    ParamKind.INT: ("int",),
    ParamKind.STR: ("string",),
    ParamKind.ENUM: ("string",),
    ParamKind.SAMPLE_ID: ("string",),
}


def check_parameter(ctx: Context, name: str, p: Parameter) -> None:
    """The declaration of one recipe parameter."""
    path = ("parameters", name)
    if name in RESERVED_NAMES:
        ctx.error(path, f"'{name}' is a reserved name", "choose another name", key=True)
    if p.type not in ("number", "int"):
        for bound in ("min", "max"):
            if getattr(p, bound) is not None:
                ctx.error((*path, bound), f"a {p.type} parameter has no {bound}")
    if p.type != "string" and p.choices is not None:
        ctx.error((*path, "choices"), f"a {p.type} parameter has no choices")
    if p.min is not None and p.max is not None and p.min > p.max:
        ctx.error((*path, "min"), f"min {p.min:g} is above max {p.max:g}")
    if p.default is not None and (why := p.check(name, p.default)) is not None:
        hint = ""
        if isinstance(p.default, str) and _is_float_text(p.default):
            hint = "YAML reads 2.0e8 as text: write the exponent with a sign, 2.0e+8"
        ctx.error((*path, "default"), f"default: {why}", hint)


def param_ref(ctx: Context, path: Path, value: Any) -> tuple[str | None, bool]:
    """(parameter name, ok) when ``value`` is a ``${name}`` reference; (None, True) else."""
    if not isinstance(value, str) or "${" not in value:
        return None, True
    m = PARAM_REF.match(value)
    if m is None:
        ctx.error(
            path,
            f"'{value}' is not a parameter reference",
            "a reference is the whole value: '${name}'",
        )
        return None, False
    ref = m.group(1)
    if ref not in ctx.params:
        hint = ctx.suggest(ref, ctx.params, "${", "}")
        ctx.error(
            path,
            f"unknown parameter '{ref}'",
            hint + f"parameters: {listing(ctx.params) or 'none'}",
        )
        return ref, False
    return ref, True


def check_icd_value(ctx: Context, path: Path, spec: ParamSpec, value: Any) -> None:
    """A value written where the ICD parameter ``spec`` goes: a literal or a reference."""
    ref, ok = param_ref(ctx, path, value)
    if not ok:
        return
    if ref is None:
        if (why := spec.check(value)) is not None:
            ctx.error(path, why, f"the ICD allows {spec.name}: {spec.describe()}")
        return
    p = ctx.params[ref]
    ctx.param_uses.setdefault(ref, []).append(spec)
    want = _FITS[spec.kind]
    if p.type not in want:
        ctx.error(
            path,
            f"parameter '{ref}' is a {p.type}, {spec.name} needs {' or '.join(want)}",
            f"the ICD defines {spec.name}: {spec.describe()}",
        )
        return
    if spec.kind in (ParamKind.NUMBER, ParamKind.INT):
        _range_inside(ctx, path, ref, p, spec)
    elif spec.kind is ParamKind.ENUM:
        _choices_inside(ctx, ref, p, spec)
    else:
        ppath = ("parameters", ref)
        for i, c in enumerate(p.choices or ()):
            if not is_id(c):
                ctx.error((*ppath, "choices", i), f"choice '{c}' is not an identifier")
        if isinstance(p.default, str) and (why := spec.check(p.default)) is not None:
            ctx.error((*ppath, "default"), why)


def _range_inside(ctx: Context, path: Path, ref: str, p: Parameter, spec: ParamSpec) -> None:
    ppath = ("parameters", ref)
    for bound, icd in (("min", spec.minimum), ("max", spec.maximum)):
        own = getattr(p, bound)
        if icd is None:
            continue
        if own is None:
            ctx.error(
                ppath,
                f"parameter '{ref}' feeds {spec.name} but has no {bound}",
                f"add '{bound}:' inside the ICD range {spec.describe()}",
                key=True,
            )
        elif not math.isfinite(own):
            continue  # refused by the numbers rule (daemon.recipe.check.numbers)
        elif spec.check(int(own) if spec.kind is ParamKind.INT else own) is not None:
            ctx.error(
                (*ppath, bound),
                f"{bound} {own:g} of parameter '{ref}' is outside the ICD range of "
                f"{spec.name} ({spec.describe()})",
                f"used at {format_path(path)}; keep min and max inside the ICD range",
            )


def _choices_inside(ctx: Context, ref: str, p: Parameter, spec: ParamSpec) -> None:
    ppath = ("parameters", ref)
    if p.choices is None:
        ctx.error(
            ppath,
            f"parameter '{ref}' feeds {spec.name} but lists no choices",
            f"add 'choices: [{', '.join(spec.choices)}]' (or some of them)",
            key=True,
        )
        return
    for i, c in enumerate(p.choices):
        if c not in spec.choices:
            ctx.error(
                (*ppath, "choices", i),
                f"choice '{c}' is not a value of {spec.name}",
                f"the ICD allows: {', '.join(spec.choices)}",
            )


def _is_float_text(text: str) -> bool:
    try:
        float(text)
    except ValueError:
        return False
    return True
