"""The names a recipe uses and what they stand for.

This module owns the vocabulary shared by the checker, the ``Recipe`` value and the
batch engine: ``${name}`` parameter references (``PARAM_REF``), the names a recipe may
not declare (``RESERVED_NAMES``), what a sample step can bind (``SAMPLE_RESULTS``), the
CEL type of each program output and parameter type, and ``Variable``, what a step binds.

* ``viable_cells_total`` is derived: viable cells per mL x ``culture_ml`` (the culture
  volume the sample came from).
* ``sterility_growth`` and ``mycoplasma_positive`` are bools (ICD value 1 -> true).
* Program outputs (ICD table) are doubles, except ids (strings) and ``bag_ids`` (a list
  of strings).
"""

from __future__ import annotations

import re
from dataclasses import dataclass
from typing import Final

from daemon.recipe.guards import BOOL, DOUBLE, INT, STRING, list_type
from drivers.icd import Assay

PARAM_REF: Final = re.compile(r"^\$\{([A-Za-z_][A-Za-z0-9_]*)\}$")
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
