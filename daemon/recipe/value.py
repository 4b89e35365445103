"""The validated recipe a batch executes: ``Recipe`` and its parameter values.

This module owns the value the loader hands to the daemon: the document, its hash,
the compiled guards, the variables steps bind, and the questions a batch asks of it
(the kind of a step, its branches and targets, the ICD Parameters of an op step with
``${name}`` filled in, a sample step's volume and panel), and
``Recipe.resolve_parameters``: defaults filled in and every value checked against its
declaration (``Parameter.check``) and every ICD parameter it feeds (``ParamSpec.check``).
"""

from __future__ import annotations

from collections.abc import Mapping
from dataclasses import dataclass, field
from typing import Any

from daemon.recipe.guards import Guard
from daemon.recipe.models import (
    OpStep,
    Parameter,
    RecipeDoc,
    SampleStep,
    branches_of,
    edges_of,
    step_kind,
)
from daemon.recipe.names import PARAM_REF, Variable
from drivers.icd import ASSAY_NAMES, Assay, ParamSpec


class ParameterError(ValueError):
    """Parameter values a batch cannot start with; ``problems`` lists every reason."""

    def __init__(self, problems: list[str]) -> None:
        self.problems = problems
        super().__init__("; ".join(problems))


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
        items = branches_of(self.doc.steps[step])
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
            why = spec.check(name, value)
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
