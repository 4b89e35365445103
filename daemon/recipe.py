"""Recipes: load, validate, hash and resolve the YAML state machines batches execute.

This module owns the public face of the recipe language: the loader (``load_recipe``,
``load_recipe_text``), the ``Recipe`` value the daemon executes, the canonical hash,
``dump_recipe``, and parameter resolution (``Recipe.resolve_parameters``). The rules
and their diagnostics live in ``daemon.recipe_check``, the file's shape in
``daemon.recipe_models`` (pydantic, source of ``recipes/schema.json``), guards in
``daemon.recipe_guards`` (CEL), positions in ``daemon.recipe_yaml``.

Facts of the wire come only from ``drivers.icd``: program names, their parameters,
types and ranges (``ProgramSpec.check_params``, ``ParamSpec.check``), their outputs,
and assay names (``ASSAY_NAMES``).

Language decisions (the README documents them for authors):

* A program parameter is a literal or ``"${name}"``, the whole value naming a recipe
  parameter; the parameter's type must fit the ICD kind and its min/max (or choices)
  must lie inside the ICD range, so every value a batch may choose is valid on the wire.
* A sample step runs the ICD ``sample`` program (``volume_ml`` in its range, the batch
  picks the SampleId) and submits the panel to an analyzer. Results it can bind, by name:
  see ``SAMPLE_RESULTS``. ``viable_cells_total`` is derived:
  viable cells per mL x ``culture_ml`` (the culture volume the sample came from).
  ``sterility_growth`` and ``mycoplasma_positive`` are bools (ICD value 1 -> true).
* An op step may bind program outputs (ICD table): numbers are doubles, ids strings,
  ``bag_ids`` a list of strings.
* Guards see parameters (number -> double, int -> int, string, bool), bound variables,
  ``visits.<step>`` (int: how many times the step has started) and ``elapsed_h``.
* ``max_visits``: a step may start at most that many times; starting it once more is a
  fault of the step (its ``on_fault`` applies, ``hold`` by default).
"""

from __future__ import annotations

import hashlib
import json
from collections.abc import Mapping
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, Final

import yaml

from daemon.diagnostics import Diagnostic, format_all
from daemon.recipe_check import (
    PARAM_REF,
    SAMPLE_RESULTS,
    Checker,
    Variable,
    branches_of,
    check_param_value,
    edges_of,
)
from daemon.recipe_guards import Guard, GuardError
from daemon.recipe_models import (
    AwaitStep,
    CompleteStep,
    ConfirmStep,
    DecideStep,
    FailStep,
    OpStep,
    Parameter,
    RecipeDoc,
    SampleStep,
    WaitStep,
    duration_seconds,
    step_kind,
)
from drivers.icd import ASSAY_NAMES, Assay, ParamSpec

__all__ = [
    "SAMPLE_RESULTS",
    "AwaitStep",
    "CompleteStep",
    "ConfirmStep",
    "DecideStep",
    "Diagnostic",
    "FailStep",
    "Guard",
    "GuardError",
    "OpStep",
    "ParameterError",
    "Recipe",
    "RecipeError",
    "SampleStep",
    "Variable",
    "WaitStep",
    "dump_recipe",
    "duration_seconds",
    "load_recipe",
    "load_recipe_text",
]

HASH_DOMAIN: Final = "cellfab-recipe-v1"


# --------------------------------------------------------------------------- errors
class RecipeError(Exception):
    """A recipe that does not validate; ``diagnostics`` says every reason."""

    def __init__(self, diagnostics: list[Diagnostic]) -> None:
        self.diagnostics = diagnostics
        super().__init__(format_all(diagnostics) or "invalid recipe")


class ParameterError(ValueError):
    """Parameter values a batch cannot start with; ``problems`` lists every reason."""

    def __init__(self, problems: list[str]) -> None:
        self.problems = problems
        super().__init__("; ".join(problems))


# --------------------------------------------------------------------------- the value
@dataclass(frozen=True, slots=True)
class Recipe:
    """A validated recipe, pinned by ``hash``. Steps are the pydantic step models."""

    doc: RecipeDoc
    hash: str
    filename: str
    guards: Mapping[tuple[str, int], Guard] = field(repr=False)  # (step, branch index)
    variables: Mapping[str, Variable] = field(repr=False)
    param_uses: Mapping[str, tuple[ParamSpec, ...]] = field(repr=False)

    @property
    def name(self) -> str:
        return self.doc.recipe

    @property
    def version(self) -> str:
        return self.doc.version

    @property
    def start(self) -> str:
        return self.doc.start

    @property
    def parameters(self) -> Mapping[str, Parameter]:
        return self.doc.parameters

    @property
    def steps(self) -> Mapping[str, Any]:
        return self.doc.steps

    def kind(self, step: str) -> str:
        kind = step_kind(self.doc.steps[step])
        assert kind is not None
        return kind

    def branches(self, step: str) -> list[tuple[Guard | None, str]]:
        """The ordered (guard, target) pairs of a step's ``next``/``decide``; the final
        fallback has guard None. A plain ``next: name`` is ``[(None, name)]``."""
        s = self.doc.steps[step]
        items = branches_of(s)
        return [(self.guards.get((step, i)), target) for i, (_when, target) in enumerate(items)]

    def targets(self, step: str) -> list[str]:
        """Every step this one may go to (branches and on_fault), in order, no repeats."""
        return edges_of(self.doc.steps[step])

    def resolve_parameters(self, values: Mapping[str, Any]) -> dict[str, Any]:
        """Defaults filled in, every value checked (type, min/max, choices and every ICD
        range it feeds). Raises ParameterError with every problem."""
        problems: list[str] = []
        out: dict[str, Any] = {}
        for name in values:
            if name not in self.parameters:
                problems.append(
                    f"unknown parameter {name!r} (parameters: {', '.join(self.parameters)})"
                )
        for name, spec in self.parameters.items():
            if name in values:
                value = values[name]
            elif spec.default is not None:
                value = spec.default
            else:
                problems.append(f"parameter {name!r} is required (it has no default)")
                continue
            why = check_param_value(name, spec, value)
            if why is None:
                value = _coerce(spec, value)
                for icd in self.param_uses.get(name, ()):
                    if (icd_why := icd.check(value)) is not None:
                        problems.append(f"parameter {name!r}: {icd_why}")
                        why = icd_why
            else:
                problems.append(why)
            if why is None:
                out[name] = value
        if problems:
            raise ParameterError(problems)
        return out

    def program_params(self, step: str, values: Mapping[str, Any]) -> dict[str, Any]:
        """The ICD Parameters of an op step with ``${name}`` replaced from resolved values."""
        s = self.doc.steps[step]
        if not isinstance(s, OpStep):
            raise ValueError(f"step {step!r} is not an op step")
        return {k: _substitute(v, values) for k, v in s.params.items()}

    def sample_volume_ml(self, step: str, values: Mapping[str, Any]) -> float:
        s = self.doc.steps[step]
        if not isinstance(s, SampleStep):
            raise ValueError(f"step {step!r} is not a sample step")
        return float(_substitute(s.sample.volume_ml, values))

    def panel(self, step: str) -> Assay:
        """The Cell Q panel mask of a sample step."""
        s = self.doc.steps[step]
        if not isinstance(s, SampleStep):
            raise ValueError(f"step {step!r} is not a sample step")
        mask = Assay(0)
        for name in s.sample.panel:
            mask |= ASSAY_NAMES[name]
        return mask


def _substitute(value: Any, values: Mapping[str, Any]) -> Any:
    if isinstance(value, str) and (m := PARAM_REF.match(value)):
        return values[m.group(1)]
    return value


def _coerce(spec: Parameter, value: Any) -> Any:
    if spec.type == "number":
        return float(value)
    if spec.type == "int":
        return int(value)
    return value


# --------------------------------------------------------------------------- loading
def load_recipe(path: str | Path) -> Recipe:
    """Load and validate a recipe file; raises RecipeError with every diagnostic."""
    p = Path(path)
    try:
        text = p.read_text(encoding="utf-8")
    except (OSError, UnicodeDecodeError) as exc:
        raise RecipeError([Diagnostic(str(path), 1, 1, f"cannot read the file: {exc}")]) from exc
    recipe, diagnostics = load_recipe_text(text, str(path))
    if recipe is None:
        raise RecipeError(diagnostics)
    return recipe


def load_recipe_text(
    text: str, filename: str = "<recipe>"
) -> tuple[Recipe | None, list[Diagnostic]]:
    """Validate recipe text. Returns ``(recipe, [])`` or ``(None, diagnostics)``; never
    raises (an internal error becomes a diagnostic that says so)."""
    try:
        checked, diagnostics = Checker(text, filename).run()
    except Exception as exc:  # a bug of ours must not look like a crash to an author
        return None, [
            Diagnostic(
                filename,
                1,
                1,
                f"internal error while checking this recipe: {type(exc).__name__}: {exc}",
                hint="this is a bug in cellfab, not in the recipe; please report it",
            )
        ]
    if checked is None:
        return None, diagnostics
    recipe = Recipe(
        doc=checked.doc,
        hash=canonical_hash(checked.doc),
        filename=filename,
        guards=checked.guards,
        variables=checked.variables,
        param_uses=checked.param_uses,
    )
    return recipe, []


# --------------------------------------------------------------------------- hash, dump
def _normalize(value: Any) -> Any:
    if isinstance(value, dict):
        return {str(k): _normalize(v) for k, v in value.items()}
    if isinstance(value, list):
        return [_normalize(v) for v in value]
    if isinstance(value, float) and value.is_integer():
        return int(value)
    return value


def canonical_content(doc: RecipeDoc) -> dict[str, Any]:
    """The normalized content of a recipe: defaults made explicit, numbers 2.0 -> 2."""
    return _normalize(doc.model_dump(mode="json", by_alias=True))


def canonical_hash(doc: RecipeDoc) -> str:
    """sha256 over the canonical JSON (sorted keys, no spaces) of the normalized content."""
    text = json.dumps(
        {"format": HASH_DOMAIN, "recipe": canonical_content(doc)},
        sort_keys=True,
        separators=(",", ":"),
        ensure_ascii=False,
        allow_nan=False,
    )
    return hashlib.sha256(text.encode("utf-8")).hexdigest()


def dump_recipe(recipe: Recipe | RecipeDoc) -> str:
    """YAML text of a recipe (defaults left out); loading it gives the same hash."""
    doc = recipe.doc if isinstance(recipe, Recipe) else recipe
    data = doc.model_dump(mode="json", by_alias=True, exclude_defaults=True)
    return yaml.safe_dump(data, sort_keys=False, allow_unicode=True, width=100)
