"""The recipe library validates, runs on the default twin units, and the schema is in step."""

from __future__ import annotations

import json
from pathlib import Path

import pytest

from daemon.recipe import OpStep, ParameterError, SampleStep, load_recipe
from daemon.recipe.schema import schema_text
from drivers.icd import PROGRAMS
from tests.recipes.conftest import LIBRARY, RECIPES

# The default twin units' capabilities (issue #4; simulators/shuttle.py DEFAULT_CAPABILITIES).
DEFAULT_UNITS: dict[str, tuple[str, ...]] = {
    "SEL1": ("cell_selection",),
    "EP1": ("electroporation", "transduction", "activation"),
    **{f"INC{i:02d}": ("activation", "transduction", "expansion", "sample") for i in range(1, 17)},
    "CFC1": ("harvest_wash", "formulation", "sample"),
    "FIN1": ("fill_finish", "sample"),
}
OFFERED = {p for caps in DEFAULT_UNITS.values() for p in caps}


def test_library_has_the_three_processes() -> None:
    names = {p.stem for p in LIBRARY}
    assert {"car_t_lentiviral", "car_t_electroporation", "car_t_rapid_3day", "qc_only"} <= names


@pytest.mark.parametrize("path", LIBRARY, ids=lambda p: p.stem)
def test_library_recipe_validates_and_runs_on_default_units(path: Path) -> None:
    recipe = load_recipe(path)
    for name, step in recipe.steps.items():
        if isinstance(step, OpStep):
            assert step.op in OFFERED, f"{path.name}: {name} runs {step.op}"
            assert step.op in PROGRAMS
        if isinstance(step, SampleStep):
            assert "sample" in OFFERED
    values = recipe.resolve_parameters({})  # every default is valid on the wire
    for name, step in recipe.steps.items():
        if isinstance(step, OpStep):
            assert PROGRAMS[step.op].check_params(recipe.program_params(name, values)) == []


@pytest.mark.parametrize("path", LIBRARY, ids=lambda p: p.stem)
def test_library_recipe_points_editors_at_the_schema(path: Path) -> None:
    assert path.read_text().startswith("# yaml-language-server: $schema=schema.json")


def test_default_units_match_the_twin() -> None:
    shuttle = pytest.importorskip("simulators.shuttle")
    caps = getattr(shuttle, "DEFAULT_CAPABILITIES", None)
    if caps is None:
        pytest.skip("simulators.shuttle has no DEFAULT_CAPABILITIES")
    assert {u: set(c) for u, c in caps.items()} == {u: set(c) for u, c in DEFAULT_UNITS.items()}


def test_schema_json_is_generated_from_the_models() -> None:
    on_disk = (RECIPES / "schema.json").read_text()
    assert on_disk == schema_text(), "run: cellfab recipe schema > recipes/schema.json"
    schema = json.loads(on_disk)
    assert schema["additionalProperties"] is False
    assert set(schema["required"]) == {"recipe", "version", "start", "steps"}


def test_lentiviral_expansion_loop_is_gated_by_counts() -> None:
    recipe = load_recipe(RECIPES / "car_t_lentiviral.yaml")
    branches = recipe.branches("count")
    assert [t for _g, t in branches] == ["low_viability", "harvest", "expand", "dose_not_reached"]
    env = {
        "viability": 85.0,
        "cells": 3.0e8,
        "min_viability_pct": 70.0,
        "target_dose": 2.0e8,
        "visits": {"expand": 2},
    }

    def first_true(env: dict) -> str:
        return next(t for g, t in branches if g is None or g.evaluate(env))

    assert first_true(env) == "harvest"
    assert first_true({**env, "cells": 1.0e8}) == "expand"
    assert first_true({**env, "cells": 1.0e8, "visits": {"expand": 5}}) == "dose_not_reached"
    assert first_true({**env, "viability": 60.0}) == "low_viability"
    assert recipe.steps["expand"].max_visits == 5
    assert recipe.variables["cells"].source == "viable_cells_total"
    assert recipe.panel("release_sample").bit_count() == 5


def test_resolve_parameters_checks_types_ranges_and_icd_ranges() -> None:
    recipe = load_recipe(RECIPES / "car_t_lentiviral.yaml")
    values = recipe.resolve_parameters({"moi": 3, "bags": 4.0})
    assert values["moi"] == 3.0 and isinstance(values["moi"], float)
    assert values["bags"] == 4 and isinstance(values["bags"], int)
    assert values["vector_lot"] == "LV-CD19-0042"
    with pytest.raises(ParameterError) as info:
        recipe.resolve_parameters(
            {"moi": 11, "bags": 2.5, "vector_lot": "bad lot!", "speed": 1, "culture_ml": "x"}
        )
    problems = " | ".join(info.value.problems)
    assert "'moi'=11 is above 10" in problems
    assert "'bags' must be a whole number" in problems
    assert "not an identifier" in problems  # ICD str rule for the vector parameter
    assert "unknown parameter 'speed'" in problems
    assert "'culture_ml' must be a number" in problems


def test_required_parameter_without_default() -> None:
    from daemon.recipe import load_recipe_text

    text = (RECIPES / "car_t_rapid_3day.yaml").read_text()
    text = text.replace("    default: LV-CD19-0042\n", "")
    recipe, diags = load_recipe_text(text, "x.yaml")
    assert recipe is not None, diags
    with pytest.raises(ParameterError, match="'vector_lot' is required"):
        recipe.resolve_parameters({})
    assert recipe.resolve_parameters({"vector_lot": "LV-1"})["vector_lot"] == "LV-1"


@pytest.mark.parametrize("path", LIBRARY, ids=lambda p: p.stem)
def test_library_recipe_matches_the_json_schema_editors_use(path: Path) -> None:
    jsonschema = pytest.importorskip("jsonschema")  # optional: only when installed
    import yaml

    schema = json.loads((RECIPES / "schema.json").read_text())
    jsonschema.validate(yaml.safe_load(path.read_text()), schema)
    bad = yaml.safe_load(path.read_text())
    bad["steps"][bad["start"]]["unknown_key"] = 1
    with pytest.raises(jsonschema.ValidationError):
        jsonschema.validate(bad, schema)
