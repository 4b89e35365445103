"""Recipe validation: every rule of the recipe language, reported like a compiler.

This module owns the checks that turn an author's YAML into a validated recipe
document or into diagnostics (file, line, column, path, message, hint), all of them,
not only the first:

* shape: pydantic errors of ``daemon.recipe_models`` rewritten for authors (unknown
  keys with did-you-mean, missing keys, wrong types, bad names and durations);
* the ICD (``drivers.icd`` only): programs, parameters, types and ranges
  (``ParamSpec.check``), program outputs, assays, the sample program's volume;
* parameters and ``${name}`` references (type fits the ICD kind; min/max or choices
  inside the ICD range); bindings (``SAMPLE_RESULTS``, program outputs);
* guards (``daemon.recipe_guards``), including that every variable a guard reads is
  bound on every path to it;
* the graph: unknown targets, unreachable steps, steps that can never complete or
  fail, loops without ``max_visits``.

A step that is malformed is still checked without its bad keys, so one mistake does
not hide the others; graph rules run only when every step is well-formed. The
public entry is ``daemon.recipe.load_recipe_text``; this module is its engine.
"""

from __future__ import annotations

import difflib
import math
import re
from collections.abc import Iterable, Mapping
from dataclasses import dataclass
from typing import Any, Final

from pydantic import TypeAdapter, ValidationError

from daemon.diagnostics import Diagnostic, PathPart, format_path
from daemon.recipe_guards import BOOL, DOUBLE, INT, STRING, Guard, compile_guard, list_type
from daemon.recipe_models import (
    DURATION_PATTERN,
    IDENT_PATTERN,
    KIND_KEYS,
    RECIPE_NAME_PATTERN,
    STEP_MODELS,
    AwaitStep,
    CompleteStep,
    DecideStep,
    FailStep,
    OpStep,
    Parameter,
    RecipeDoc,
    SampleSpec,
    SampleStep,
    Step,
    WaitStep,
    duration_seconds,
    step_kind,
    strip_tags,
)
from daemon.recipe_models import Guard as GuardModel
from daemon.recipe_yaml import Located, load_located
from drivers.icd import ASSAY_NAMES, PROGRAMS, Assay, ParamKind, ParamSpec, is_id

PARAM_REF: Final = re.compile(r"^\$\{([A-Za-z_][A-Za-z0-9_]*)\}$")
HASH_DOMAIN: Final = "cellfab-recipe-v1"
RESERVED_NAMES: Final = frozenset({"visits", "elapsed_h", "true", "false", "null", "in"})

# result name -> (assay, CEL type, unit, meaning)
SAMPLE_RESULTS: Final[dict[str, tuple[Assay, str, str, str]]] = {
    "viable_cells_per_ml": (Assay.CELL_COUNT, DOUBLE, "cells/mL", "viable cell concentration"),
    "viable_cells_total": (
        Assay.CELL_COUNT,
        DOUBLE,
        "cells",
        "viable cells per mL x culture_ml of the sample step",
    ),
    "viability_pct": (Assay.VIABILITY, DOUBLE, "%", "viability"),
    "cd3_pct": (Assay.IDENTITY, DOUBLE, "%", "identity: CD3+ cells"),
    "transduction_pct": (Assay.TRANSDUCTION, DOUBLE, "%", "transduction efficiency"),
    "endotoxin_eu_per_ml": (Assay.ENDOTOXIN, DOUBLE, "EU/mL", "endotoxin"),
    "sterility_growth": (Assay.STERILITY, BOOL, "", "sterility: true when growth was seen"),
    "mycoplasma_positive": (Assay.MYCOPLASMA, BOOL, "", "mycoplasma: true when positive"),
}
PARAM_CEL_TYPES: Final = {"number": DOUBLE, "int": INT, "string": STRING, "bool": BOOL}
STEP_ADAPTER: Final = TypeAdapter(Step)


def output_type(name: str) -> str:
    """CEL type of an ICD program output (ICD: numbers, except ids and bag_ids)."""
    if name == "bag_ids":
        return list_type(STRING)
    if name.endswith("_id"):
        return STRING
    return DOUBLE


@dataclass(frozen=True, slots=True)
class Variable:
    """A name a step binds: its CEL type, unit and where it comes from."""

    name: str
    type: str
    unit: str
    steps: tuple[str, ...]  # the steps that bind it
    source: str  # the ICD program output or the sample result it holds
    origin: str = "output"  # "output" (of an op step's program) or "assay" (a sample step)


@dataclass(frozen=True, slots=True)
class Checked:
    """What a valid recipe text yields: the document and what the checks learned."""

    doc: RecipeDoc
    guards: dict[tuple[str, int], Guard]
    variables: dict[str, Variable]
    param_uses: dict[str, tuple[ParamSpec, ...]]


def check_param_value(name: str, spec: Parameter, value: Any) -> str | None:
    """Why ``value`` does not fit parameter ``spec``, or None."""
    if spec.type in ("number", "int"):
        if isinstance(value, bool) or not isinstance(value, int | float):
            return f"parameter {name!r} must be a number, got {describe(value)}"
        if not math.isfinite(value):
            return f"parameter {name!r} must be finite, got {value!r}"
        if spec.type == "int" and float(value) != int(value):
            return f"parameter {name!r} must be a whole number, got {value!r}"
        if spec.min is not None and value < spec.min:
            return f"parameter {name!r}={value!r} is below its minimum {spec.min:g}"
        if spec.max is not None and value > spec.max:
            return f"parameter {name!r}={value!r} is above its maximum {spec.max:g}"
        return None
    if spec.type == "bool":
        return None if isinstance(value, bool) else f"parameter {name!r} must be true or false"
    if not isinstance(value, str):
        return f"parameter {name!r} must be text, got {describe(value)}"
    if spec.choices is not None and value not in spec.choices:
        return f"parameter {name!r}={value!r} is not one of {', '.join(spec.choices)}"
    return None


def describe(value: Any) -> str:
    if value is None:
        return "nothing"
    if isinstance(value, bool):
        return f"a bool ({str(value).lower()})"
    if isinstance(value, int | float):
        return f"a number ({value!r})"
    if isinstance(value, str):
        shown = value if len(value) <= 40 else value[:37] + "..."
        return f"text ({shown!r})"
    if isinstance(value, list):
        return "a list"
    if isinstance(value, dict):
        return "a mapping"
    return type(value).__name__


def branches_of(step: Any) -> list[tuple[str | None, str]]:
    if isinstance(step, DecideStep):
        return [(g.when, g.goto) for g in step.decide]
    nxt = getattr(step, "next", None)
    if nxt is None:
        return []
    if isinstance(nxt, str):
        return [(None, nxt)]
    return [(g.when, g.goto) for g in nxt]


def edges_of(step: Any) -> list[str]:
    out = [target for _w, target in branches_of(step)]
    on_fault = getattr(step, "on_fault", "hold")
    if on_fault != "hold":
        out.append(on_fault)
    return list(dict.fromkeys(out))


class Checker:
    """Checks one recipe text and reports every problem as a Diagnostic."""

    def __init__(self, text: str, filename: str) -> None:
        self.text = text
        self.lines = text.splitlines()
        self.filename = filename
        self.diags: list[Diagnostic] = []
        self.loc: Located = Located(None)
        self.raw: dict[str, Any] = {}

    # -- reporting
    def error(self, path: Iterable[PathPart], message: str, hint: str = "", *, key: bool = False):
        p = tuple(path)
        line, col = self.loc.key_pos(p) if key else self.loc.value_pos(p)
        self.diags.append(Diagnostic(self.filename, line, col, message, p, hint))

    def error_at(self, pos: tuple[int, int], path: Iterable[PathPart], message: str, hint: str):
        self.diags.append(Diagnostic(self.filename, pos[0], pos[1], message, tuple(path), hint))

    def result(self, checked: Checked | None) -> tuple[Checked | None, list[Diagnostic]]:
        diags = sorted(set(self.diags), key=lambda d: (d.line, d.column, d.message))
        return (checked if not diags else None), diags

    # -- the passes
    def run(self) -> tuple[Checked | None, list[Diagnostic]]:
        """``(checked, [])`` for a valid recipe, ``(None, diagnostics)`` otherwise."""
        located, diags = load_located(self.text, self.filename)
        self.diags += diags
        if located is None:
            return self.result(None)
        self.loc = located
        if not isinstance(located.data, dict):
            self.error(
                (),
                f"a recipe is a mapping of keys, this file holds {describe(located.data)}",
                "start with 'recipe: <name>', 'version:', 'start:' and 'steps:'",
            )
            return self.result(None)
        self.raw = located.data
        doc: RecipeDoc | None = None
        try:
            doc = RecipeDoc.model_validate(self.raw)
        except ValidationError as exc:
            for err in exc.errors(include_url=False):
                self.pydantic_error(err)
        if doc is not None:
            params, steps, complete = dict(doc.parameters), dict(doc.steps), True
        else:
            params, steps, complete = self.partial()
        raw_steps = self.raw.get("steps")
        names = set(raw_steps) if isinstance(raw_steps, dict) else set(steps)
        self.semantics(params, steps, names, complete)
        if doc is None or self.diags:
            return self.result(None)
        return self.result(self.build(doc))

    def partial(self) -> tuple[dict[str, Parameter], dict[str, Any], bool]:
        """Parameters and steps that are well-formed on their own, so that one broken
        step does not hide the problems of the others."""
        params: dict[str, Parameter] = {}
        steps: dict[str, Any] = {}
        complete = True
        raw_params = self.raw.get("parameters")
        if isinstance(raw_params, dict):
            for name, value in raw_params.items():
                try:
                    params[name] = Parameter.model_validate(value)
                except ValidationError:
                    pass
        raw_steps = self.raw.get("steps")
        if isinstance(raw_steps, dict):
            for name, value in raw_steps.items():
                if re.match(IDENT_PATTERN, name) is None:
                    complete = False
                    continue
                step = _lenient_step(value)
                if step is not None:
                    steps[name] = step
                complete = False
        else:
            complete = False
        if not isinstance(self.raw.get("start"), str):
            complete = False
        return params, steps, complete

    # -- pydantic errors as an author reads them
    def pydantic_error(self, err: Any) -> None:
        loc = strip_tags(tuple(err["loc"]))
        kind = err["type"]
        value = err.get("input")
        if loc and loc[-1] == "[key]":
            path = loc[:-1]
            self.error(
                path,
                f"'{path[-1]}' is not a valid name",
                "names start with a letter or _ and use only letters, digits and _",
                key=True,
            )
            return
        path = loc
        last = path[-1] if path else ""
        if kind == "extra_forbidden":
            allowed = self.allowed_keys(path[:-1])
            close = difflib.get_close_matches(str(last), allowed, n=1, cutoff=0.6)
            hint = f"did you mean '{close[0]}'?" if close else ""
            if allowed:
                hint = (hint + " " if hint else "") + f"keys allowed here: {', '.join(allowed)}"
            self.error(path, f"unknown key '{last}'", hint, key=True)
        elif kind == "missing":
            parent = path[:-1]
            where = (
                f"step '{parent[1]}'"
                if parent[:1] == ("steps",) and len(parent) == 2
                else (format_path(parent) or "the recipe")
            )
            self.error(
                parent,
                f"{where} is missing the key '{last}'",
                _MISSING_HINTS.get(str(last), ""),
                key=bool(parent),
            )
        elif kind == "step_kind":
            if isinstance(value, dict):
                close = [c for k in value for c in difflib.get_close_matches(str(k), KIND_KEYS, 1)]
                hint = f"did you mean '{close[0]}'? " if close else ""
                self.error(
                    path,
                    f"step '{last}' does not say what it does",
                    hint + f"give it one of: {', '.join(KIND_KEYS)}",
                    key=True,
                )
            else:
                self.error(
                    path,
                    f"step '{last}' must be a mapping of keys, got {describe(value)}",
                    f"write for example '{last}: {{wait: 1h, next: ...}}'",
                )
        elif kind == "next_type":
            self.error(
                path,
                f"next must be a step name or a list of guards, got {describe(value)}",
                "write 'next: step_name' or a list of '- when: <condition>' / 'goto: <step>'",
            )
        elif kind in _TYPE_WORDS:
            self.error(
                path,
                f"{format_path(path) or 'the recipe'} must be {_TYPE_WORDS[kind]}, "
                f"got {describe(value)}",
                _type_hint(kind, value),
            )
        elif kind == "string_pattern_mismatch":
            pattern = (err.get("ctx") or {}).get("pattern")
            if pattern == DURATION_PATTERN:
                self.error(
                    path,
                    f"'{value}' is not a duration",
                    "write a number and a unit s, m, h or d: 30m, 48h, 7d, 1d12h",
                )
            elif pattern == RECIPE_NAME_PATTERN:
                self.error(
                    path,
                    f"'{value}' is not a valid recipe name",
                    "use 1 to 32 letters, digits, '.', '_' or '-'",
                )
            else:
                self.error(
                    path,
                    f"'{value}' is not a valid name",
                    "names start with a letter or _ and use only letters, digits and _",
                )
        elif kind == "literal_error":
            expected = (err.get("ctx") or {}).get("expected", "")
            options = re.findall(r"'([^']*)'", expected)
            close = difflib.get_close_matches(str(value), options, n=1)
            self.error(
                path,
                f"{last} {describe(value)} is not one of {expected}",
                f"did you mean '{close[0]}'?" if close else "",
            )
        elif kind in ("too_short", "greater_than_equal"):
            what = format_path(path) or "the recipe"
            if kind == "too_short":
                self.error(path, f"{what} must not be empty")
            else:
                self.error(path, f"{what} must be at least {(err.get('ctx') or {}).get('ge')}")
        else:  # pragma: no cover - a pydantic error type we did not foresee
            self.error(path, f"{format_path(path)}: {err['msg']}")

    def allowed_keys(self, path: tuple[PathPart, ...]) -> list[str]:
        model: Any = None
        if path == ():
            model = RecipeDoc
        elif len(path) == 2 and path[0] == "parameters":
            model = Parameter
        elif len(path) >= 2 and path[0] == "steps":
            raw_steps = self.raw.get("steps")
            raw = raw_steps.get(path[1]) if isinstance(raw_steps, dict) else None
            kind = step_kind(raw)
            if len(path) == 2 and kind:
                model = STEP_MODELS[kind]
            elif len(path) == 3 and path[2] == "sample":
                model = SampleSpec
            elif len(path) == 4 and path[2] in ("next", "decide"):
                model = GuardModel
        if model is None:
            return []
        return [f.alias or n for n, f in model.model_fields.items()]

    # -- meaning
    def semantics(
        self, params: dict[str, Parameter], steps: dict[str, Any], names: set[str], complete: bool
    ) -> None:
        self.param_uses: dict[str, list[ParamSpec]] = {}
        self.variables: dict[str, Variable] = {}
        for name, spec in params.items():
            self.check_parameter(name, spec)
        start = self.raw.get("start")
        if isinstance(start, str) and names and start not in names:
            self.unknown_target(("start",), start, names)
        for name, step in steps.items():
            self.check_step(name, step, params, steps, names)
        self.check_bindings(params)
        self.guards: dict[tuple[str, int], Guard] = {}
        types = {n: PARAM_CEL_TYPES[p.type] for n, p in params.items()}
        types.update({n: v.type for n, v in self.variables.items()})
        for name, step in steps.items():
            self.check_guards(name, step, types, names)
        if complete and isinstance(start, str) and start in steps:
            self.check_graph(start, steps)

    def check_parameter(self, name: str, p: Parameter) -> None:
        path = ("parameters", name)
        if name in RESERVED_NAMES:
            self.error(path, f"'{name}' is a reserved name", "choose another name", key=True)
        if p.type not in ("number", "int"):
            for bound in ("min", "max"):
                if getattr(p, bound) is not None:
                    self.error((*path, bound), f"a {p.type} parameter has no {bound}")
        if p.type != "string" and p.choices is not None:
            self.error((*path, "choices"), f"a {p.type} parameter has no choices")
        if p.min is not None and p.max is not None and p.min > p.max:
            self.error((*path, "min"), f"min {p.min:g} is above max {p.max:g}")
        if p.default is not None:
            why = check_param_value(name, p, p.default)
            if why is not None:
                hint = ""
                if isinstance(p.default, str) and _is_float_text(p.default):
                    hint = "YAML reads 2.0e8 as text: write the exponent with a sign, 2.0e+8"
                self.error((*path, "default"), f"default: {why}", hint)

    def check_step(
        self,
        name: str,
        step: Any,
        params: dict[str, Parameter],
        steps: dict[str, Any],
        names: set[str],
    ) -> None:
        path = ("steps", name)
        for i, (_when, target) in enumerate(branches_of(step)):
            if target not in names:
                field_ = "decide" if isinstance(step, DecideStep) else "next"
                tpath = (
                    (*path, field_)
                    if isinstance(getattr(step, "next", None), str)
                    else (
                        *path,
                        field_,
                        i,
                        "goto",
                    )
                )
                self.unknown_target(tpath, target, names)
        on_fault = getattr(step, "on_fault", "hold")
        if on_fault != "hold" and on_fault not in names:
            self.unknown_target((*path, "on_fault"), on_fault, names, extra="hold")
        self.check_guard_list(name, step)
        if isinstance(step, OpStep):
            self.check_op(name, step, params)
        elif isinstance(step, SampleStep):
            self.check_sample(name, step, params)
        elif isinstance(step, AwaitStep):
            target = steps.get(step.await_)
            if step.await_ not in names:
                self.unknown_target((*path, "await"), step.await_, names)
            elif target is not None and not (isinstance(target, SampleStep) and not target.wait):
                self.error(
                    (*path, "await"),
                    f"step '{step.await_}' is not a sample step with 'wait: false'",
                    "await waits for the results of a sample step that let the batch go on",
                )
        for key in ("timeout", "hold_max"):
            value = getattr(step, key, None)
            if value is not None and duration_seconds(value) <= 0:
                self.error((*path, key), f"{key} must be longer than 0")
        if isinstance(step, WaitStep) and duration_seconds(step.wait) <= 0:
            self.error((*path, "wait"), "a wait must be longer than 0")

    def check_guard_list(self, name: str, step: Any) -> None:
        if isinstance(step, DecideStep):
            items, key = step.decide, "decide"
        elif isinstance(getattr(step, "next", None), list):
            items, key = step.next, "next"
        else:
            return
        path = ("steps", name, key)
        if not items:
            self.error(path, "the guard list is empty", "add at least a final '- goto: <step>'")
            return
        for i, g in enumerate(items[:-1]):
            if g.when is None:
                self.error(
                    (*path, i),
                    "only the last branch may omit 'when'",
                    "the branches after it could never be taken; move it to the end",
                )
        if items[-1].when is not None:
            self.error(
                (*path, len(items) - 1),
                "the last branch needs no 'when': it is the fallback when no guard holds",
                "add a final '- goto: <step>' (for example to a fail step)",
            )

    def unknown_target(
        self, path: tuple[PathPart, ...], target: str, names: set[str], extra: str = ""
    ) -> None:
        close = difflib.get_close_matches(target, sorted(names), n=1)
        hint = f"did you mean '{close[0]}'? " if close else ""
        options = sorted(names) + ([extra] if extra else [])
        self.error(path, f"there is no step '{target}'", hint + f"steps: {', '.join(options)}")

    def param_ref(
        self, path: tuple[PathPart, ...], value: Any, params: dict[str, Parameter]
    ) -> tuple[str | None, bool]:
        """(parameter name, ok) when ``value`` is a ``${name}`` reference; (None, True) else."""
        if not isinstance(value, str) or "${" not in value:
            return None, True
        m = PARAM_REF.match(value)
        if m is None:
            self.error(
                path,
                f"'{value}' is not a parameter reference",
                "a reference is the whole value: '${name}'",
            )
            return None, False
        ref = m.group(1)
        if ref not in params:
            close = difflib.get_close_matches(ref, list(params), n=1)
            hint = f"did you mean '${{{close[0]}}}'? " if close else ""
            declared = ", ".join(params) or "none"
            self.error(path, f"unknown parameter '{ref}'", hint + f"parameters: {declared}")
            return ref, False
        return ref, True

    def check_icd_value(
        self,
        path: tuple[PathPart, ...],
        spec: ParamSpec,
        value: Any,
        params: dict[str, Parameter],
    ) -> None:
        ref, ok = self.param_ref(path, value, params)
        if not ok:
            return
        if ref is None:
            if (why := spec.check(value)) is not None:
                self.error(path, why, f"the ICD allows {spec.name}: {spec.describe()}")
            return
        p = params[ref]
        self.param_uses.setdefault(ref, []).append(spec)
        ppath = ("parameters", ref)
        want = {
            ParamKind.NUMBER: ("number", "int"),
            ParamKind.INT: ("int",),
            ParamKind.STR: ("string",),
            ParamKind.ENUM: ("string",),
            ParamKind.SAMPLE_ID: ("string",),
        }[spec.kind]
        if p.type not in want:
            self.error(
                path,
                f"parameter '{ref}' is a {p.type}, {spec.name} needs {' or '.join(want)}",
                f"the ICD defines {spec.name}: {spec.describe()}",
            )
            return
        if spec.kind in (ParamKind.NUMBER, ParamKind.INT):
            for bound, icd in (("min", spec.minimum), ("max", spec.maximum)):
                own = getattr(p, bound)
                if icd is None:
                    continue
                if own is None:
                    self.error(
                        ppath,
                        f"parameter '{ref}' feeds {spec.name} but has no {bound}",
                        f"add '{bound}:' inside the ICD range {spec.describe()}",
                        key=True,
                    )
                elif (
                    why := spec.check(int(own) if spec.kind is ParamKind.INT else own)
                ) is not None:
                    self.error(
                        (*ppath, bound),
                        f"{bound} {own:g} of parameter '{ref}' is outside the ICD range of "
                        f"{spec.name} ({spec.describe()})",
                        f"used at {format_path(path)}; keep min and max inside the ICD range",
                    )
        elif spec.kind is ParamKind.ENUM:
            if p.choices is None:
                self.error(
                    ppath,
                    f"parameter '{ref}' feeds {spec.name} but lists no choices",
                    f"add 'choices: [{', '.join(spec.choices)}]' (or some of them)",
                    key=True,
                )
            else:
                for i, c in enumerate(p.choices):
                    if c not in spec.choices:
                        self.error(
                            (*ppath, "choices", i),
                            f"choice '{c}' is not a value of {spec.name}",
                            f"the ICD allows: {', '.join(spec.choices)}",
                        )
        else:
            for i, c in enumerate(p.choices or ()):
                if not is_id(c):
                    self.error((*ppath, "choices", i), f"choice '{c}' is not an identifier")
            if isinstance(p.default, str) and (why := spec.check(p.default)) is not None:
                self.error((*ppath, "default"), why)

    def check_op(self, name: str, step: OpStep, params: dict[str, Parameter]) -> None:
        path = ("steps", name)
        program = PROGRAMS.get(step.op)
        if step.op == "sample":
            self.error(
                (*path, "op"),
                "the sample program is run by a sample step",
                "write 'sample: {volume_ml: ..., panel: [...]}' instead of 'op: sample'",
            )
            return
        if program is None:
            close = difflib.get_close_matches(step.op, list(PROGRAMS), n=1)
            hint = f"did you mean '{close[0]}'? " if close else ""
            offered = [p for p in PROGRAMS if p != "sample"]
            self.error(
                (*path, "op"),
                f"unknown program '{step.op}'",
                hint + f"programs: {', '.join(offered)}",
            )
            return
        for spec in program.params:
            if spec.name not in step.params:
                self.error(
                    (*path, "params") if "params" in self.raw_step(name) else path,
                    f"{step.op} needs the parameter {spec.name} ({spec.describe()})",
                    f"{step.op} takes: {', '.join(program.param_names)}",
                    key="params" not in self.raw_step(name),
                )
        for key, value in step.params.items():
            spec = program.param(key)
            if spec is None:
                close = difflib.get_close_matches(key, program.param_names, n=1)
                hint = f"did you mean '{close[0]}'? " if close else ""
                self.error(
                    (*path, "params", key),
                    f"{step.op} has no parameter '{key}'",
                    hint + f"{step.op} takes: {', '.join(program.param_names)}",
                    key=True,
                )
                continue
            self.check_icd_value((*path, "params", key), spec, value, params)
        for var, output in step.bind.items():
            if output not in program.outputs:
                self.error(
                    (*path, "bind", var),
                    f"{step.op} has no output '{output}'",
                    f"{step.op} outputs: {', '.join(program.outputs)}",
                )
                continue
            self.bind(var, output_type(output), "", name, output, (*path, "bind", var), "output")

    def raw_step(self, name: str) -> dict[str, Any]:
        steps = self.raw.get("steps")
        raw = steps.get(name) if isinstance(steps, dict) else None
        return raw if isinstance(raw, dict) else {}

    def check_sample(self, name: str, step: SampleStep, params: dict[str, Parameter]) -> None:
        path = ("steps", name, "sample")
        volume = PROGRAMS["sample"].param("volume_ml")
        assert volume is not None
        self.check_icd_value((*path, "volume_ml"), volume, step.sample.volume_ml, params)
        assays: set[Assay] = set()
        for i, assay in enumerate(step.sample.panel):
            if assay not in ASSAY_NAMES:
                close = difflib.get_close_matches(assay, list(ASSAY_NAMES), n=1)
                hint = f"did you mean '{close[0]}'? " if close else ""
                self.error(
                    (*path, "panel", i),
                    f"unknown assay '{assay}'",
                    hint + f"assays: {', '.join(ASSAY_NAMES)}",
                )
            elif ASSAY_NAMES[assay] in assays:
                self.error((*path, "panel", i), f"assay '{assay}' is twice in the panel")
            else:
                assays.add(ASSAY_NAMES[assay])
        culture = step.sample.culture_ml
        if culture is not None:
            culture_spec = ParamSpec("culture_ml", ParamKind.NUMBER, 0.001, 100000.0, unit="mL")
            ref, ok = self.param_ref((*path, "culture_ml"), culture, params)
            if ok and ref is None and (why := culture_spec.check(culture)) is not None:
                self.error((*path, "culture_ml"), why, "the culture volume in mL, above 0")
            elif ok and ref is not None and params[ref].type != "number":
                self.error((*path, "culture_ml"), f"parameter '{ref}' must be a number")
        for var, result in step.bind.items():
            bpath = ("steps", name, "bind", var)
            info = SAMPLE_RESULTS.get(result)
            if info is None:
                close = difflib.get_close_matches(result, list(SAMPLE_RESULTS), n=1)
                hint = f"did you mean '{close[0]}'? " if close else ""
                self.error(
                    bpath,
                    f"'{result}' is not an assay result",
                    hint + f"results: {', '.join(SAMPLE_RESULTS)}",
                )
                continue
            assay, type_, unit, _meaning = info
            if assay not in assays and all(a in ASSAY_NAMES for a in step.sample.panel):
                self.error(
                    bpath,
                    f"'{result}' comes from the {assay.name.lower()} assay, "  # type: ignore[union-attr]
                    "which is not in the panel",
                    f"add {assay.name.lower()} to the panel",  # type: ignore[union-attr]
                )
            if result == "viable_cells_total" and culture is None:
                self.error(
                    bpath,
                    "viable_cells_total needs the culture volume",
                    "add 'culture_ml: <mL>' to the sample (cells per mL x culture_ml)",
                )
            self.bind(var, type_, unit, name, result, bpath, "assay")

    def bind(
        self,
        var: str,
        type_: str,
        unit: str,
        step: str,
        source: str,
        path: tuple[PathPart, ...],
        origin: str,
    ) -> None:
        if var in RESERVED_NAMES:
            self.error(path, f"'{var}' is a reserved name", "choose another name", key=True)
            return
        seen = self.variables.get(var)
        if seen is None:
            self.variables[var] = Variable(var, type_, unit, (step,), source, origin)
        elif seen.type != type_:
            self.error(
                path,
                f"'{var}' is bound as {type_} here but as {seen.type} in step '{seen.steps[0]}'",
                "use another name for a different kind of value",
                key=True,
            )
        else:
            self.variables[var] = Variable(
                var, type_, unit, (*seen.steps, step), seen.source, seen.origin
            )

    def check_bindings(self, params: dict[str, Parameter]) -> None:
        for var, v in self.variables.items():
            if var in params:
                self.error(
                    ("steps", v.steps[0], "bind", var),
                    f"'{var}' is both a parameter and a bound result",
                    "rename one of them",
                    key=True,
                )

    def check_guards(self, name: str, step: Any, types: dict[str, str], names: set[str]) -> None:
        key = "decide" if isinstance(step, DecideStep) else "next"
        for i, (when, _target) in enumerate(branches_of(step)):
            if when is None:
                continue
            path = ("steps", name, key, i, "when")
            guard, problems = compile_guard(when, types, names)
            if guard is not None:
                self.guards[(name, i)] = guard
            for problem in problems:
                self.error_at(
                    self.guard_pos(path, when, problem.column),
                    path,
                    f"in guard '{when}': {problem.message}",
                    problem.hint,
                )

    def guard_pos(self, path: tuple[PathPart, ...], text: str, column: int) -> tuple[int, int]:
        """Where ``column`` of the guard text is in the file, when the text is on one line."""
        line, col = self.loc.value_pos(path)
        if 0 < line <= len(self.lines) and "\n" not in text:
            source = self.lines[line - 1]
            quote = 1 if self.loc.styles.get(path) in ("'", '"') else 0
            if source[col - 1 + quote :].startswith(text):
                return line, col + quote + column - 1
        return line, col

    def check_graph(self, start: str, steps: dict[str, Any]) -> None:
        edges = {n: [t for t in edges_of(s) if t in steps] for n, s in steps.items()}
        reached = _reach(start, edges)
        for n in steps:
            if n not in reached:
                self.error(
                    ("steps", n),
                    f"step '{n}' is never reached from the start step '{start}'",
                    "no step goes to it: remove it, or add a next/goto to it",
                    key=True,
                )
        reverse: dict[str, list[str]] = {n: [] for n in steps}
        for n, ts in edges.items():
            for t in ts:
                reverse[t].append(n)
        finishing: set[str] = set()
        for n, s in steps.items():
            if isinstance(s, CompleteStep | FailStep):
                finishing |= _reach(n, reverse)
        for n in steps:
            if n in reached and n not in finishing:
                self.error(
                    ("steps", n),
                    f"from step '{n}' the batch can never complete or fail",
                    "give it a path to a 'complete' or 'fail' step",
                    key=True,
                )
        self.check_bound_before_use(start, steps, reached)
        unbounded = {n: [t for t in ts if not _bounded(steps[t])] for n, ts in edges.items()}
        unbounded = {n: ts for n, ts in unbounded.items() if not _bounded(steps[n])}
        order = list(steps)
        for component in _cycles(unbounded):
            first = min(component, key=order.index)
            loop = " -> ".join(sorted(component, key=order.index))
            self.error(
                ("steps", first),
                f"steps {loop} -> {first} form a loop without max_visits"
                if len(component) > 1
                else f"step '{first}' goes to itself without max_visits",
                f"set max_visits on one step of the loop (for example '{first}') "
                "so a batch cannot cycle forever",
                key=True,
            )

    def check_bound_before_use(self, start: str, steps: dict[str, Any], reached: set[str]) -> None:
        """Every variable a guard reads has a value on every path to it (a must-analysis:
        a step's results exist after it ends normally; those of a 'wait: false' sample
        only after its await; a fault edge carries only what was bound before the step)."""

        def after(name: str, bound: frozenset[str]) -> frozenset[str]:
            step = steps[name]
            if isinstance(step, OpStep) or (isinstance(step, SampleStep) and step.wait):
                return bound | frozenset(step.bind)
            if isinstance(step, AwaitStep) and isinstance(steps.get(step.await_), SampleStep):
                return bound | frozenset(steps[step.await_].bind)
            return bound

        everything = frozenset(self.variables)
        entry: dict[str, frozenset[str]] = {n: everything for n in reached}
        entry[start] = frozenset()
        order = [n for n in steps if n in reached]
        changed = True
        while changed:
            changed = False
            for n in order:
                out = after(n, entry[n])
                flows = [(t, out) for _w, t in branches_of(steps[n])]
                on_fault = getattr(steps[n], "on_fault", "hold")
                if on_fault != "hold":
                    flows.append((on_fault, entry[n]))
                for target, bound in flows:
                    if target in entry and not entry[target] <= bound:
                        entry[target] = entry[target] & bound
                        changed = True
        for (name, i), guard in self.guards.items():
            if name not in entry:
                continue
            available = after(name, entry[name])
            for var in sorted(guard.names & everything - available):
                v = self.variables[var]
                key = "decide" if isinstance(steps[name], DecideStep) else "next"
                path = ("steps", name, key, i, "when")
                late = [s for s in v.steps if isinstance(steps.get(s), SampleStep)]
                late = [s for s in late if not steps[s].wait]
                hint = f"'{var}' is bound by step {', '.join(v.steps)}; run one on every path here"
                if late:
                    hint += f" (results of '{late[0]}' arrive at its await step)"
                self.error(
                    path,
                    f"in guard '{guard.text}': '{var}' may have no value yet after step '{name}'",
                    hint,
                )

    def build(self, doc: RecipeDoc) -> Checked:
        return Checked(
            doc=doc,
            guards=dict(self.guards),
            variables=dict(self.variables),
            param_uses={k: tuple(v) for k, v in self.param_uses.items()},
        )


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


def _is_float_text(text: str) -> bool:
    try:
        float(text)
    except ValueError:
        return False
    return True


def _bounded(step: Any) -> bool:
    return getattr(step, "max_visits", None) is not None


def _reach(start: str, edges: Mapping[str, list[str]]) -> set[str]:
    seen = {start}
    todo = [start]
    while todo:
        for t in edges.get(todo.pop(), ()):
            if t not in seen:
                seen.add(t)
                todo.append(t)
    return seen


def _cycles(edges: Mapping[str, list[str]]) -> list[set[str]]:
    """Strongly connected components of ``edges`` that contain a cycle (Kosaraju)."""
    nodes = [n for n in edges]
    reach = {n: _reach(n, edges) for n in nodes}  # recipes are small: O(n^2) is fine
    out: list[set[str]] = []
    done: set[str] = set()
    for n in nodes:
        if n in done:
            continue
        component = {m for m in reach[n] if n in reach[m]}
        done |= component
        if len(component) > 1 or n in edges[n]:
            out.append(component)
    return out


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
