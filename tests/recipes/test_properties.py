"""hypothesis: whatever the text, the loader answers with a recipe or diagnostics, never
another exception; valid recipes survive dump and load with the same hash."""

from __future__ import annotations

import copy
from typing import Any

import yaml
from hypothesis import HealthCheck, assume, given, settings
from hypothesis import strategies as st

from daemon.recipe import dump_recipe, limits, load_recipe_text
from drivers.icd import PROGRAMS, ParamKind, ParamSpec
from tests.recipes.bounded import memory_cap
from tests.recipes.conftest import LIBRARY
from tests.support.mutations import assert_answered, mutated, paths_of, value_at

SETTINGS = settings(max_examples=100, deadline=None, suppress_health_check=[HealthCheck.too_slow])
LIBRARY_DATA = [yaml.safe_load(p.read_text()) for p in LIBRARY]

scalars = st.one_of(
    st.none(),
    st.booleans(),
    st.integers(-(10**6), 10**6),
    st.floats(allow_nan=True, allow_infinity=True),
    st.text(max_size=12),
    st.sampled_from(["op", "next", "steps", "${moi}", "${", "1h", "expansion", "viability"]),
)
keys = st.one_of(
    st.text(max_size=10),
    st.sampled_from(
        [
            "recipe",
            "version",
            "start",
            "steps",
            "parameters",
            "op",
            "sample",
            "next",
            "when",
            "goto",
            "params",
            "bind",
            "panel",
            "max_visits",
            "decide",
            "wait",
            "await",
            "fail",
        ]
    ),
)
trees = st.recursive(
    scalars,
    lambda children: st.one_of(
        st.lists(children, max_size=4), st.dictionaries(keys, children, max_size=4)
    ),
    max_leaves=25,
)


def check_answer(text: str) -> None:
    assert_answered(*load_recipe_text(text, "gen.yaml"))


@SETTINGS
@given(st.text(max_size=300))
def test_random_text_gives_a_recipe_or_diagnostics(text: str) -> None:
    check_answer(text)


@SETTINGS
@given(trees)
def test_random_yaml_gives_a_recipe_or_diagnostics(tree: Any) -> None:
    check_answer(yaml.safe_dump(tree, allow_unicode=True))


@SETTINGS
@given(mutated(st.sampled_from(LIBRARY_DATA), trees, keys))
def test_mutated_library_recipes_give_a_recipe_or_diagnostics(data: Any) -> None:
    check_answer(yaml.safe_dump(data, allow_unicode=True, sort_keys=False))


@SETTINGS
@given(st.sampled_from(LIBRARY), st.data())
def test_text_edits_of_library_recipes_give_a_recipe_or_diagnostics(path, data) -> None:
    text = path.read_text()
    for _ in range(data.draw(st.integers(1, 3))):
        at = data.draw(st.integers(0, len(text)))
        if data.draw(st.booleans()) and at < len(text):
            text = text[:at] + text[at + data.draw(st.integers(1, 8)) :]
        else:
            text = (
                text[:at]
                + data.draw(st.sampled_from([" ", "\n", ":", "-", "x", "'", "{"]))
                + text[at:]
            )
    check_answer(text)


# ---------------------------------------------------------------- generated valid recipes
def _value(draw: st.DrawFn, spec: ParamSpec) -> Any:
    if spec.kind is ParamKind.ENUM:
        return draw(st.sampled_from(spec.choices))
    if spec.kind in (ParamKind.STR, ParamKind.SAMPLE_ID):
        return draw(st.from_regex(r"[A-Za-z0-9._-]{1,12}", fullmatch=True))
    lo, hi = float(spec.minimum), float(spec.maximum)
    if spec.kind is ParamKind.INT:
        return draw(st.integers(int(lo), int(hi)))
    return draw(st.floats(lo, hi, allow_nan=False))


@st.composite
def valid_recipes(draw: st.DrawFn) -> dict[str, Any]:
    programs = [p for p in PROGRAMS if p != "sample"]
    n = draw(st.integers(1, 6))
    steps: dict[str, Any] = {}
    names = [f"s{i}" for i in range(n)]
    for i, name in enumerate(names):
        nxt = names[i + 1] if i + 1 < n else "done"
        kind = draw(st.sampled_from(["op", "wait", "confirm", "sample"]))
        if kind == "op":
            program = PROGRAMS[draw(st.sampled_from(programs))]
            step = {"op": program.name, "params": {p.name: _value(draw, p) for p in program.params}}
        elif kind == "wait":
            step = {"wait": f"{draw(st.integers(1, 90))}{draw(st.sampled_from('smhd'))}"}
        elif kind == "confirm":
            prompt = st.text(st.characters(categories=["L", "N", "P"]), min_size=1, max_size=20)
            step = {
                "confirm": draw(prompt),
                "role": draw(st.sampled_from(["operator", "supervisor", "qa"])),
            }
        else:
            step = {
                "sample": {"volume_ml": draw(st.floats(0.05, 5.0)), "panel": ["viability"]},
                "bind": {f"v{i}": "viability_pct"},
            }
        if kind == "sample" and draw(st.booleans()):
            step["max_visits"] = draw(st.integers(1, 5))
            step["next"] = [
                {"when": f"v{i} < {draw(st.floats(0, 100, allow_nan=False))!r}", "goto": names[0]},
                {"goto": nxt},
            ]
            # a loop back to the start needs max_visits: it is on this step
        else:
            step["next"] = nxt
        steps[name] = step
    steps["done"] = {"complete": "ok"}
    order = draw(st.permutations(list(steps)))
    return {
        "recipe": "gen",
        "version": draw(st.sampled_from(["1", "1.0", "2024-01"])),
        "start": names[0],
        "steps": {k: steps[k] for k in order},
    }


@SETTINGS
@given(valid_recipes(), st.booleans(), st.booleans())
def test_generated_recipes_validate_and_round_trip(data, flow: bool, sort: bool) -> None:
    text = yaml.safe_dump(data, sort_keys=sort, default_flow_style=flow, allow_unicode=True)
    recipe, diagnostics = load_recipe_text(text, "gen.yaml")
    assume(not any("is not a valid" in d.message for d in diagnostics))
    assert recipe is not None, [d.format() for d in diagnostics]
    again, diags = load_recipe_text(dump_recipe(recipe), "again.yaml")
    assert again is not None, [d.format() for d in diags]
    assert again.hash == recipe.hash
    other = yaml.safe_dump(data, sort_keys=not sort, default_flow_style=not flow)
    assert load_recipe_text(other, "other.yaml")[0].hash == recipe.hash


# ---------------------------------------------------------------- hostile values and shapes
HUGE = "1" + "0" * 400
hostile_scalars = st.one_of(
    st.sampled_from(
        [
            float("nan"),
            float("inf"),
            -float("inf"),
            10**30,
            -(10**19),
            1e300,
            5e-324,
            f"{HUGE}d",
            "0s",
            "366d1s",
            "${" + "x" * 300 + "}",
            "n / 0 > 1",
            "!" * 300 + "true",
            "(" * 120 + "true" + ")" * 120,
            "elapsed_h < 1e400",
            "x" * 2000,
        ]
    ),
    st.integers(-(2**70), 2**70),
    st.floats(allow_nan=True, allow_infinity=True),
)


@st.composite
def hostile_mutations(draw: st.DrawFn) -> Any:
    data = copy.deepcopy(draw(st.sampled_from(LIBRARY_DATA)))
    for _ in range(draw(st.integers(1, 6))):
        paths = [p for p in paths_of(data) if p]
        path = draw(st.sampled_from(paths))
        parent, last = value_at(data, path[:-1]), path[-1]
        if isinstance(parent, dict | list):
            parent[last] = draw(hostile_scalars)
    return data


@SETTINGS
@given(hostile_mutations())
def test_hostile_values_in_library_recipes_give_diagnostics(data: Any) -> None:
    with memory_cap():
        check_answer(yaml.safe_dump(data, allow_unicode=True, sort_keys=False))


@settings(SETTINGS, max_examples=20)  # a bomb walks up to MAX_NODES nodes before it stops
@given(st.integers(2, 12), st.integers(2, 9), st.sampled_from(["[", "{"]), st.booleans())
def test_alias_bombs_of_any_shape_stop_at_a_limit(width: int, depth: int, kind: str, flow) -> None:
    lines = ['recipe: bomb\nversion: "1"\nstart: a\nsteps:\n  a: {complete: ok}', "l0: &l0 x"]
    for i in range(1, depth + 1):
        refs = [f"*l{i - 1}"] * width
        if kind == "[":
            body = f"[{', '.join(refs)}]"
        else:
            body = "{" + ", ".join(f"k{j}: {r}" for j, r in enumerate(refs)) + "}"
        lines.append(f"l{i}: &l{i} {body}")
    if flow:
        lines.append(f"steps2: *l{depth}")
    with memory_cap():
        recipe, diagnostics = load_recipe_text("\n".join(lines) + "\n", "bomb.yaml")
    assert recipe is None
    if width**depth > limits.MAX_NODES:
        assert any("(the limit)" in d.message for d in diagnostics)


def test_a_nan_bound_of_an_int_parameter_feeding_the_icd_is_a_diagnostic() -> None:
    """Found by the hostile-values property: the ICD range check converted a NaN min to
    int and crashed the checker instead of leaving it to the numbers rule."""
    path = next(p for p in LIBRARY if p.stem == "car_t_electroporation")
    data = yaml.safe_load(path.read_text())
    data["parameters"]["pulses"]["min"] = float("nan")
    recipe, diagnostics = load_recipe_text(yaml.safe_dump(data), "gen.yaml")
    assert recipe is None
    assert any("min" in d.path_text and "finite" in d.message for d in diagnostics), diagnostics
    assert not any("internal error" in d.message for d in diagnostics)
