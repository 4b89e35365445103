"""Site problems as compiler-style diagnostics: pydantic's errors rewritten for a person.

This module owns two things:

* ``Problem`` and ``RuleError``: how a rule of the site (a model validator in
  ``daemon.config.model``) says what is wrong, where below the model that checked it,
  and how to fix it. A ``RuleError`` is a ``ValueError``, so pydantic carries it in
  its error's context and a ``Site`` built in code (``sim_site``) obeys the same rules
  as one loaded from a file.
* ``validation_diagnostics``: a pydantic ``ValidationError`` of a model validated from
  YAML, as ``daemon.diagnostics.Diagnostic`` values at the line and column where the
  YAML wrote the value (or the key), with the field path and a hint: unknown keys get
  "did you mean" and the keys allowed there; a missing key gets the field's own
  description; a wrong type says what was found and how to write it.

It is driven by the model classes (their fields, aliases and descriptions), not by
knowledge of the site, so any model read from YAML can use it. The words for types
and values come from the recipe language (``describe``, ``_TYPE_WORDS``,
``_type_hint``) so both read alike.
"""

from __future__ import annotations

import difflib
import re
import types
from collections.abc import Iterable, Mapping
from dataclasses import dataclass
from typing import Annotated, Any, Union, get_args, get_origin

from pydantic import BaseModel, ValidationError
from pydantic.fields import FieldInfo

from daemon.diagnostics import Diagnostic, PathPart, describe, format_path
from daemon.recipe.check.shape import _TYPE_WORDS, _type_hint
from daemon.recipe.yaml import Located

Path = tuple[PathPart, ...]


@dataclass(frozen=True, slots=True)
class Problem:
    """One broken rule: where (below the model that found it), what, and how to fix it.

    ``key``: point at the key of ``path`` rather than at its value (a missing or
    superfluous entry is best shown where its parent's key is written).
    """

    path: Path
    message: str
    hint: str = ""
    key: bool = False


class RuleError(ValueError):
    """Raised by a model validator with every problem it found."""

    def __init__(self, problems: Iterable[Problem]) -> None:
        self.problems = tuple(problems)
        super().__init__("; ".join(p.message for p in self.problems))


def rule(message: str, hint: str = "", *path: PathPart, key: bool = False) -> RuleError:
    """A RuleError of one problem (for field validators, where the path is the field's)."""
    return RuleError([Problem(tuple(path), message, hint, key)])


def validation_diagnostics(
    exc: ValidationError,
    located: Located,
    filename: str,
    root: type[BaseModel],
    patterns: Mapping[str, str] | None = None,
) -> list[Diagnostic]:
    """Every error of ``exc`` as a Diagnostic positioned by ``located``. ``root`` is the
    model validated; ``patterns`` says in words what each of its regex patterns wants."""
    out: list[Diagnostic] = []
    for err in exc.errors(include_url=False):
        for problem in _problems(err, root, patterns or {}):
            line, col = (
                located.key_pos(problem.path) if problem.key else located.value_pos(problem.path)
            )
            out.append(Diagnostic(filename, line, col, problem.message, problem.path, problem.hint))
    return out


# --------------------------------------------------------------------------- one error
def _problems(err: Any, root: type[BaseModel], patterns: Mapping[str, str]) -> list[Problem]:
    loc: Path = tuple(p for p in err["loc"] if isinstance(p, int | str))
    kind = err["type"]
    value = err.get("input")
    ctx = err.get("ctx") or {}
    if isinstance(ctx.get("error"), RuleError):
        return [Problem((*loc, *p.path), p.message, p.hint, p.key) for p in ctx["error"].problems]
    last = loc[-1] if loc else ""
    keys = [i for i, p in enumerate(loc) if isinstance(p, str)]
    what = format_path(loc[keys[-1] :]) if keys else "the file"  # e.g. out_of_service[1]
    field = field_at(root, loc)
    if kind == "extra_forbidden":
        allowed = allowed_keys(root, loc[:-1])
        close = difflib.get_close_matches(str(last), allowed, n=1, cutoff=0.6)
        hint = f"did you mean '{close[0]}'?" if close else ""
        if allowed:
            hint = (hint + " " if hint else "") + f"keys allowed here: {', '.join(allowed)}"
        return [Problem(loc, f"unknown key '{last}'", hint, key=True)]
    if kind == "missing":
        parent = loc[:-1]
        where = format_path(parent) or "the file"
        return [
            Problem(parent, f"{where} is missing the key '{last}'", _described(field), key=True)
        ]
    if kind in _TYPE_WORDS:
        message = f"{what} must be {_TYPE_WORDS[kind]}, got {describe(value)}"
        hint = _type_hint(kind, value) or _number_text_hint(kind, value) or _described(field)
        return [Problem(loc, message, hint)]
    if kind == "literal_error":
        options = re.findall(r"'([^']*)'|(\d+)", ctx.get("expected", ""))
        choices = [a or b for a, b in options]
        same_letters = [c for c in choices if c.lower() == str(value).lower()]
        close = same_letters or difflib.get_close_matches(str(value), choices, n=1)
        hint = f"did you mean '{close[0]}'?" if close else _described(field)
        return [Problem(loc, f"{what} {describe(value)} is not one of {', '.join(choices)}", hint)]
    if kind == "string_pattern_mismatch":
        hint = patterns.get(ctx.get("pattern", ""), "") or _described(field)
        return [Problem(loc, f"{what} {describe(value)} is not valid", hint)]
    if kind == "string_too_short":
        return [Problem(loc, f"{what} must not be empty", _described(field))]
    if kind == "string_too_long":
        return [Problem(loc, f"{what} is longer than {ctx.get('max_length')} characters")]
    if kind in _BOUNDS:
        limit = ctx.get(_BOUNDS[kind][1])
        return [Problem(loc, f"{what} must be {_BOUNDS[kind][0]} {limit}, got {value!r}")]
    if kind == "finite_number":
        return [Problem(loc, f"{what} must be a finite number, got {value!r}")]
    if kind in ("too_short", "too_long"):
        n = ctx.get("min_length" if kind == "too_short" else "max_length")
        bound = "at least" if kind == "too_short" else "at most"
        return [Problem(loc, f"{what} must have {bound} {n} entr{'y' if n == 1 else 'ies'}")]
    return [Problem(loc, f"{what}: {err['msg']}", _described(field))]


_BOUNDS = {
    "greater_than_equal": ("at least", "ge"),
    "greater_than": ("more than", "gt"),
    "less_than_equal": ("at most", "le"),
    "less_than": ("less than", "lt"),
}


def _number_text_hint(kind: str, value: Any) -> str:
    if kind in ("float_type", "int_type") and isinstance(value, str):
        try:
            number = float(value)
        except ValueError:
            return ""
        return f"YAML reads {value!r} as text; write it as {number!r} (a dot before any e)"
    return ""


def _described(field: FieldInfo | None) -> str:
    return field.description or "" if field is not None else ""


# --------------------------------------------------------------------------- the model
def _models_in(annotation: Any) -> list[type[BaseModel]]:
    """The model classes an annotation holds (through Optional, unions, lists, Annotated)."""
    if isinstance(annotation, type) and issubclass(annotation, BaseModel):
        return [annotation]
    origin = get_origin(annotation)
    if origin is Annotated:
        return _models_in(get_args(annotation)[0])
    if origin in (Union, types.UnionType, list, tuple, dict):
        return [m for arg in get_args(annotation) for m in _models_in(arg)]
    return []


def _field(model: type[BaseModel], key: str) -> FieldInfo | None:
    for name, info in model.model_fields.items():
        if key in (name, info.alias):
            return info
    return None


def models_at(root: type[BaseModel], path: Path) -> list[type[BaseModel]]:
    """The model classes that may stand at ``path`` (list indexes pass through)."""
    models = [root]
    for part in path:
        if isinstance(part, int):
            continue
        fields = [f for m in models if (f := _field(m, part)) is not None]
        models = [m for f in fields for m in _models_in(f.annotation)]
    return models


def field_at(root: type[BaseModel], path: Path) -> FieldInfo | None:
    """The field the last key of ``path`` names, if the model has one."""
    keys = [i for i, p in enumerate(path) if isinstance(p, str)]
    if not keys:
        return None
    last = keys[-1]
    for model in models_at(root, path[:last]):
        if (info := _field(model, str(path[last]))) is not None:
            return info
    return None


def allowed_keys(root: type[BaseModel], path: Path) -> list[str]:
    """The keys a mapping at ``path`` may hold, in the models' order."""
    keys: dict[str, None] = {}
    for model in models_at(root, path):
        for name, info in model.model_fields.items():
            keys[info.alias or name] = None
    return list(keys)
