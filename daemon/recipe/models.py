"""The recipe document as typed pydantic models: the edge of the recipe language.

This module owns the shape of a recipe file (keys, types, which keys each step kind
takes), the ways out of a step (``branches_of``, ``edges_of``) and the rule a parameter's
value must follow (``Parameter.check``, which is ``drivers.icd.ParamSpec.check`` for
numbers and choices). Meaning is checked in ``daemon.recipe.check`` against
``drivers.icd``. ``recipes/schema.json`` is generated from ``RecipeDoc``
(``daemon.recipe.schema``), so editors and the loader agree.

Step kinds are told apart by their kind key (``op``, ``sample``, ``await``,
``confirm``, ``wait``, ``decide``, ``complete``, ``fail``); a sample step may also
carry ``wait: false``, so ``sample`` wins over ``wait``. Union tags start with ``§``
so that error locations can drop them (see ``strip_tags``).
"""

from __future__ import annotations

import re
from typing import Annotated, Any, Final, Literal

from pydantic import (
    BaseModel,
    ConfigDict,
    Discriminator,
    Field,
    StringConstraints,
    Tag,
    WithJsonSchema,
)

from daemon.diagnostics import describe
from daemon.recipe.limits import MAX_VISITS
from drivers.icd import ASSAY_NAMES, PROGRAMS, ParamKind, ParamSpec

SCHEMA_ID: Final = "https://cellfab.example/schemas/recipe-v1.json"

IDENT_PATTERN: Final = r"^[A-Za-z_][A-Za-z0-9_]*$"
RECIPE_NAME_PATTERN: Final = r"^[A-Za-z0-9._-]{1,32}$"
DURATION_PATTERN: Final = r"^(?:[0-9]+(?:\.[0-9]+)?[smhd])+$"
DURATION_RE: Final = re.compile(r"([0-9]+(?:\.[0-9]+)?)([smhd])")
_UNIT_SECONDS: Final = {"s": 1.0, "m": 60.0, "h": 3600.0, "d": 86400.0}

KIND_KEYS: Final = ("op", "sample", "await", "confirm", "wait", "decide", "complete", "fail")

Ident = Annotated[str, StringConstraints(pattern=IDENT_PATTERN)]
Duration = Annotated[
    str,
    StringConstraints(pattern=DURATION_PATTERN),
    Field(description="Process time: a number and a unit s, m, h or d; parts add: 1d12h"),
]
# A program parameter: a literal of the ICD type, or "${name}" naming a recipe parameter.
ParamValue = Annotated[
    Any,
    WithJsonSchema(
        {
            "anyOf": [
                {"type": "number"},
                {"type": "string"},
            ],
            "description": "A literal value, or ${name} to use the recipe parameter name",
        }
    ),
]


def duration_seconds(text: str) -> float:
    """``"1d12h"`` -> 129600.0. The text must match DURATION_PATTERN."""
    if re.fullmatch(DURATION_PATTERN, text) is None:
        raise ValueError(f"{text!r} is not a duration")
    return sum(float(n) * _UNIT_SECONDS[u] for n, u in DURATION_RE.findall(text))


# Completion lists for editors; the loader checks names itself, with better messages.
ProgramName = Annotated[
    str,
    WithJsonSchema(
        {
            "type": "string",
            "enum": [p for p in PROGRAMS if p != "sample"],
            "description": "A program of the ICD table (sample steps run 'sample')",
        }
    ),
]
AssayName = Annotated[
    str, WithJsonSchema({"type": "string", "enum": list(ASSAY_NAMES), "description": "ICD assay"})
]


class _Model(BaseModel):
    model_config = ConfigDict(extra="forbid", strict=True, frozen=True, populate_by_name=True)


class Parameter(_Model):
    """A typed, ranged value chosen when a batch starts."""

    type: Literal["number", "int", "string", "bool"] = Field(
        description="number and int are ranged with min/max; string may list choices"
    )
    unit: str = ""
    description: str = ""
    default: float | int | str | bool | None = Field(
        None, description="Used when the batch does not give a value; omit to require one"
    )
    min: float | None = None
    max: float | None = None
    choices: list[str] | None = Field(None, description="For string parameters: allowed values")

    def spec(self, name: str) -> ParamSpec | None:
        """The ICD rule of this parameter's values (type, range, choices), labelled
        ``parameter 'name'`` for messages; None for bool and free text."""
        label = f"parameter {name!r}"
        if self.type in ("number", "int"):
            kind = ParamKind.NUMBER if self.type == "number" else ParamKind.INT
            return ParamSpec(label, kind, self.min, self.max)
        if self.type == "string" and self.choices is not None:
            return ParamSpec(label, ParamKind.ENUM, choices=tuple(self.choices))
        return None

    def check(self, name: str, value: Any) -> str | None:
        """Why ``value`` does not fit this parameter, or None. Numbers and choices follow
        ``ParamSpec.check`` (the one copy of those rules); bool and text are type checks."""
        if (spec := self.spec(name)) is not None:
            return spec.check(value)
        if self.type == "bool":
            return None if isinstance(value, bool) else f"parameter {name!r} must be true or false"
        if not isinstance(value, str):
            return f"parameter {name!r} must be text, got {describe(value)}"
        return None


class Guard(_Model):
    """One branch: ``when`` is a CEL expression; the last branch has no ``when``."""

    when: str | None = Field(None, description="CEL expression; omit in the final fallback")
    goto: Ident


def _next_tag(value: Any) -> str | None:
    if isinstance(value, str):
        return "§name"
    if isinstance(value, list):
        return "§guards"
    return None


Next = Annotated[
    Annotated[Ident, Tag("§name")] | Annotated[list[Guard], Tag("§guards")],
    Discriminator(
        _next_tag,
        custom_error_type="next_type",
        custom_error_message="next must be a step name or a list of guards",
    ),
]
OnFault = Annotated[
    str,
    StringConstraints(pattern=IDENT_PATTERN),
    Field(description="'hold' (keep the cells safe, ask the operator) or a step to go to"),
]


class _Step(_Model):
    description: str = ""
    max_visits: int | None = Field(
        None, ge=1, le=MAX_VISITS, description="Needed on at least one step of a loop"
    )
    hold_max: Duration | None = Field(
        None, description="Longest the cells may wait after this step before the next starts"
    )


class OpStep(_Step):
    op: ProgramName = Field(description="A program of the ICD table, run on a unit offering it")
    params: dict[str, ParamValue] = Field(default_factory=dict)
    bind: dict[Ident, str] = Field(
        default_factory=dict, description="variable: program output (e.g. cells: cells_out)"
    )
    timeout: Duration | None = None
    on_fault: OnFault = "hold"
    next: Next


class SampleSpec(_Model):
    volume_ml: ParamValue = Field(description="Sample volume, mL (ICD sample program range)")
    panel: list[AssayName] = Field(min_length=1, description="Assay names of the Cell Q panel")
    culture_ml: ParamValue | None = Field(
        None, description="Culture volume, mL; needed to bind viable_cells_total"
    )


class SampleStep(_Step):
    sample: SampleSpec
    bind: dict[Ident, str] = Field(
        default_factory=dict, description="variable: assay result (e.g. via: viability_pct)"
    )
    wait: bool = Field(True, description="false: go on while the assays run (see await)")
    timeout: Duration | None = None
    on_fault: OnFault = "hold"
    next: Next


class AwaitStep(_Step):
    await_: Ident = Field(alias="await", description="The sample step whose results to wait for")
    timeout: Duration | None = None
    on_fault: OnFault = "hold"
    next: Next


class ConfirmStep(_Step):
    confirm: str = Field(description="The prompt shown to the operator")
    role: Literal["operator", "supervisor", "qa"] = "operator"
    timeout: Duration | None = None
    next: Next


class WaitStep(_Step):
    wait: Duration
    next: Next


class DecideStep(_Step):
    decide: list[Guard] = Field(min_length=1, description="Ordered guards, last one a fallback")


class CompleteStep(_Step):
    complete: str = Field(description="What the batch achieved")


class FailStep(_Step):
    fail: str = Field(description="The reason the batch failed")


STEP_MODELS: Final[dict[str, type[_Step]]] = {
    "op": OpStep,
    "sample": SampleStep,
    "await": AwaitStep,
    "confirm": ConfirmStep,
    "wait": WaitStep,
    "decide": DecideStep,
    "complete": CompleteStep,
    "fail": FailStep,
}


def step_kind(value: Any) -> str | None:
    """The kind of a raw step mapping: its first kind key in KIND_KEYS order."""
    if isinstance(value, dict):
        for kind in KIND_KEYS:
            if kind in value:
                return kind
    elif isinstance(value, _Step):
        return next(k for k, m in STEP_MODELS.items() if isinstance(value, m))
    return None


def _step_tag(value: Any) -> str | None:
    kind = step_kind(value)
    return None if kind is None else f"§{kind}"


Step = Annotated[
    Annotated[OpStep, Tag("§op")]
    | Annotated[SampleStep, Tag("§sample")]
    | Annotated[AwaitStep, Tag("§await")]
    | Annotated[ConfirmStep, Tag("§confirm")]
    | Annotated[WaitStep, Tag("§wait")]
    | Annotated[DecideStep, Tag("§decide")]
    | Annotated[CompleteStep, Tag("§complete")]
    | Annotated[FailStep, Tag("§fail")],
    Discriminator(
        _step_tag,
        custom_error_type="step_kind",
        custom_error_message="a step needs exactly one kind key",
    ),
]


class RecipeDoc(_Model):
    """A recipe file: header, parameters, the start step and the steps."""

    model_config = ConfigDict(title="cellfab recipe", json_schema_extra={"$id": SCHEMA_ID})

    recipe: Annotated[str, StringConstraints(pattern=RECIPE_NAME_PATTERN)] = Field(
        description="Recipe name, [A-Za-z0-9._-]{1,32}"
    )
    version: str = Field(description="Version of this recipe, as text (quote numbers: '1.0')")
    description: str = ""
    author: str = ""
    approval: Literal["draft", "approved", "retired"] = "draft"
    parameters: dict[Ident, Parameter] = Field(default_factory=dict)
    start: Ident
    steps: dict[Ident, Step] = Field(min_length=1)


def branches_of(step: Any) -> list[tuple[str | None, str]]:
    """The ordered (when, target) pairs of a step's ``next`` or ``decide``; a plain
    ``next: name`` is ``[(None, name)]``, a step without ways out ``[]``."""
    if isinstance(step, DecideStep):
        return [(g.when, g.goto) for g in step.decide]
    nxt = getattr(step, "next", None)
    if nxt is None:
        return []
    if isinstance(nxt, str):
        return [(None, nxt)]
    return [(g.when, g.goto) for g in nxt]


def edges_of(step: Any) -> list[str]:
    """Every step this one may go to (branches, then on_fault), in order, no repeats."""
    out = [target for _w, target in branches_of(step)]
    on_fault = getattr(step, "on_fault", "hold")
    if on_fault != "hold":
        out.append(on_fault)
    return list(dict.fromkeys(out))


def strip_tags(loc: tuple[str | int, ...]) -> tuple[str | int, ...]:
    """Drop union tags (``§op``) from a pydantic error location."""
    return tuple(p for p in loc if not (isinstance(p, str) and p.startswith("§")))
