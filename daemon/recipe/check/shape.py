"""Rule family "shape": the keys and types of the file, as an author reads them.

This module owns turning pydantic's validation errors of ``daemon.recipe.models`` into
diagnostics (unknown keys with did-you-mean and the keys allowed there, missing keys
with a hint, wrong types in words, bad names and durations), and ``partial``: the
parameters and steps that are well-formed on their own when the document is not, so
one broken step does not hide the problems of the others.
"""

from __future__ import annotations

import re
from typing import Any, Final

from pydantic import TypeAdapter, ValidationError

from daemon.diagnostics import describe, format_path
from daemon.recipe.check.context import Context, Path, did_you_mean
from daemon.recipe.limits import Limits
from daemon.recipe.models import (
    DURATION_PATTERN,
    IDENT_PATTERN,
    KIND_KEYS,
    RECIPE_NAME_PATTERN,
    STEP_MODELS,
    Parameter,
    RecipeDoc,
    SampleSpec,
    Step,
    step_kind,
    strip_tags,
)
from daemon.recipe.models import Guard as GuardModel

STEP_ADAPTER: Final = TypeAdapter(Step)

_MISSING_HINTS: Final = {
    "recipe": "name the recipe: 'recipe: car_t_lenti'",
    "version": "give the version as text: version: '1.0'",
    "start": "name the first step: 'start: <step>'",
    "steps": "add 'steps:' with at least one step",
    "next": "say where the batch goes after this step: 'next: <step>'",
    "goto": "each branch needs 'goto: <step>'",
    "type": "give the parameter a type: number, int, string or bool",
    "volume_ml": "the sample volume in mL, e.g. volume_ml: 0.5",
    "panel": "the assays to run, e.g. panel: [cell_count, viability]",
}
_TYPE_WORDS: Final = {
    "string_type": "text",
    "int_type": "a whole number",
    "float_type": "a number",
    "bool_type": "true or false",
    "dict_type": "a mapping of keys",
    "model_type": "a mapping of keys",
    "model_attributes_type": "a mapping of keys",
    "list_type": "a list",
}
_NAME_HINT: Final = "names start with a letter or _ and use only letters, digits and _"


def too_many(ctx: Context, limits: Limits) -> bool:
    """True (and reported) when ``steps`` or ``parameters`` has more entries than the
    limit: such a recipe is not checked any further."""
    over = False
    for key, limit in (("steps", limits.steps), ("parameters", limits.parameters)):
        value = ctx.raw.get(key)
        if isinstance(value, dict) and len(value) > limit:
            ctx.error(
                (key,),
                f"the recipe has more than {limit} {key} (the limit): {len(value)}",
                "split the process into several recipes",
                key=True,
            )
            over = True
    return over


def validate(ctx: Context) -> RecipeDoc | None:
    """The document when the whole file has the right shape; every shape problem is
    reported, and ``ctx.params``/``ctx.steps`` hold what is well-formed either way.
    Returns None when the graph cannot be trusted as written (a step is malformed)."""
    try:
        doc = RecipeDoc.model_validate(ctx.raw)
    except ValidationError as exc:
        for err in exc.errors(include_url=False):
            report(ctx, err)
        partial(ctx)
        return None
    ctx.params, ctx.steps = dict(doc.parameters), dict(doc.steps)
    return doc


def partial(ctx: Context) -> None:
    """Parameters and steps that are well-formed on their own."""
    raw_params = ctx.raw.get("parameters")
    if isinstance(raw_params, dict):
        for name, value in raw_params.items():
            try:
                ctx.params[name] = Parameter.model_validate(value)
            except ValidationError:
                pass
    raw_steps = ctx.raw.get("steps")
    if isinstance(raw_steps, dict):
        for name, value in raw_steps.items():
            if re.match(IDENT_PATTERN, name) is not None:
                step = _lenient_step(value)
                if step is not None:
                    ctx.steps[name] = step


def report(ctx: Context, err: Any) -> None:
    """One pydantic error as an author reads it."""
    loc = strip_tags(tuple(err["loc"]))
    kind = err["type"]
    value = err.get("input")
    if loc and loc[-1] == "[key]":
        path = loc[:-1]
        ctx.error(path, f"'{path[-1]}' is not a valid name", _NAME_HINT, key=True)
        return
    path = loc
    last = path[-1] if path else ""
    if kind == "extra_forbidden":
        allowed = allowed_keys(ctx, path[:-1])
        hint = did_you_mean(str(last), allowed)
        if allowed:
            hint += f"keys allowed here: {', '.join(allowed)}"
        ctx.error(path, f"unknown key '{last}'", hint.strip(), key=True)
    elif kind == "missing":
        parent = path[:-1]
        where = (
            f"step '{parent[1]}'"
            if parent[:1] == ("steps",) and len(parent) == 2
            else (format_path(parent) or "the recipe")
        )
        ctx.error(
            parent,
            f"{where} is missing the key '{last}'",
            _MISSING_HINTS.get(str(last), ""),
            key=bool(parent),
        )
    elif kind == "step_kind":
        _step_kind_error(ctx, path, str(last), value)
    elif kind == "next_type":
        ctx.error(
            path,
            f"next must be a step name or a list of guards, got {describe(value)}",
            "write 'next: step_name' or a list of '- when: <condition>' / 'goto: <step>'",
        )
    elif kind in _TYPE_WORDS:
        ctx.error(
            path,
            f"{format_path(path) or 'the recipe'} must be {_TYPE_WORDS[kind]}, "
            f"got {describe(value)}",
            _type_hint(kind, value),
        )
    elif kind == "string_pattern_mismatch":
        _pattern_error(ctx, path, value, (err.get("ctx") or {}).get("pattern"))
    elif kind == "literal_error":
        expected = (err.get("ctx") or {}).get("expected", "")
        options = re.findall(r"'([^']*)'", expected)
        ctx.error(
            path,
            f"{last} {describe(value)} is not one of {expected}",
            did_you_mean(str(value), options).strip(),
        )
    elif kind == "too_short":
        ctx.error(path, f"{format_path(path) or 'the recipe'} must not be empty")
    elif kind == "greater_than_equal":
        what = format_path(path) or "the recipe"
        ctx.error(path, f"{what} must be at least {(err.get('ctx') or {}).get('ge')}")
    elif kind == "less_than_equal":
        what = format_path(path) or "the recipe"
        ctx.error(path, f"{what} must be at most {(err.get('ctx') or {}).get('le')} (the limit)")
    else:  # pragma: no cover - a pydantic error type we did not foresee
        ctx.error(path, f"{format_path(path)}: {err['msg']}")


def _step_kind_error(ctx: Context, path: Path, name: str, value: Any) -> None:
    if isinstance(value, dict):
        hint = ""
        for key in value:
            if hint := did_you_mean(str(key), KIND_KEYS):
                break
        ctx.error(
            path,
            f"step '{name}' does not say what it does",
            hint + f"give it one of: {', '.join(KIND_KEYS)}",
            key=True,
        )
    else:
        ctx.error(
            path,
            f"step '{name}' must be a mapping of keys, got {describe(value)}",
            f"write for example '{name}: {{wait: 1h, next: ...}}'",
        )


def _pattern_error(ctx: Context, path: Path, value: Any, pattern: str | None) -> None:
    if pattern == DURATION_PATTERN:
        ctx.error(
            path,
            f"'{value}' is not a duration",
            "write a number and a unit s, m, h or d: 30m, 48h, 7d, 1d12h",
        )
    elif pattern == RECIPE_NAME_PATTERN:
        ctx.error(
            path,
            f"'{value}' is not a valid recipe name",
            "use 1 to 32 letters, digits, '.', '_' or '-'",
        )
    else:
        ctx.error(path, f"'{value}' is not a valid name", _NAME_HINT)


def allowed_keys(ctx: Context, path: Path) -> list[str]:
    """The keys the model at ``path`` takes (aliases as written), or []."""
    model: Any = None
    if path == ():
        model = RecipeDoc
    elif len(path) == 2 and path[0] == "parameters":
        model = Parameter
    elif len(path) >= 2 and path[0] == "steps":
        kind = step_kind(ctx.raw_step(str(path[1])) or None)
        if len(path) == 2 and kind:
            model = STEP_MODELS[kind]
        elif len(path) == 3 and path[2] == "sample":
            model = SampleSpec
        elif len(path) == 4 and path[2] in ("next", "decide"):
            model = GuardModel
    if model is None:
        return []
    return [f.alias or n for n, f in model.model_fields.items()]


def _lenient_step(value: Any) -> Any:
    """A step model from ``value``, leaving out keys whose problems are already reported
    (unknown or ill-typed optional keys), so the rest of the step is still checked."""
    try:
        return STEP_ADAPTER.validate_python(value)
    except ValidationError as exc:
        if not isinstance(value, dict):
            return None
        bad = {strip_tags(tuple(e["loc"]))[:1] for e in exc.errors(include_url=False)}
        kind = step_kind(value)
        keep = {k: v for k, v in value.items() if (k,) not in bad or k in (kind, "next")}
        if len(keep) == len(value):
            return None
    try:
        return STEP_ADAPTER.validate_python(keep)
    except ValidationError:
        return None


def _type_hint(kind: str, value: Any) -> str:
    if kind == "string_type" and isinstance(value, int | float) and not isinstance(value, bool):
        return f"quote it to make it text: '{value}'"
    if kind == "string_type" and isinstance(value, bool):
        return "YAML reads yes, no, on, off, true and false as true/false: quote the text"
    if kind == "list_type":
        return "write a list as [a, b] or as lines starting with '- '"
    if kind in ("dict_type", "model_type", "model_attributes_type"):
        return "write 'key: value' pairs, indented under this key"
    return ""
