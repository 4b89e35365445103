"""Loader behaviour beyond the fixtures: hash, round trip, durations, positions, references."""

from __future__ import annotations

import textwrap

import pytest
import yaml

from daemon.recipe import dump_recipe, duration_seconds, load_recipe_text

BASE = textwrap.dedent(
    """\
    recipe: tiny
    version: "1"
    parameters:
      hours: {type: number, default: 24.0, min: 1.0, max: 48.0}
    start: grow
    steps:
      grow:
        op: expansion
        params: {temperature_c: 37.0, duration_h: "${hours}", feed: batch}
        max_visits: 3
        next: count
      count:
        sample: {volume_ml: 0.5, panel: [viability]}
        bind: {via: viability_pct}
        next:
          - when: via < 70.0 && visits.grow < 3
            goto: grow
          - goto: done
      done:
        complete: ok
    """
)


def load(text: str):
    recipe, diags = load_recipe_text(text, "t.yaml")
    assert recipe is not None, [d.format() for d in diags]
    return recipe


def errors(text: str) -> list[str]:
    recipe, diags = load_recipe_text(text, "t.yaml")
    assert recipe is None and diags
    return [d.format() for d in diags]


def test_same_recipe_other_spacing_and_key_order_has_the_same_hash() -> None:
    a = load(BASE)
    data = yaml.safe_load(BASE)
    flow = yaml.safe_dump(data, sort_keys=True, default_flow_style=True, width=1000)
    reordered = dict(reversed(list(data.items())))
    reordered["steps"] = dict(reversed(list(data["steps"].items())))
    block = "# a comment\n" + yaml.safe_dump(reordered, sort_keys=False, indent=4)
    assert load(flow).hash == a.hash
    assert load(block).hash == a.hash
    assert len(a.hash) == 64


def test_defaults_written_out_and_2_vs_2_0_do_not_change_the_hash() -> None:
    a = load(BASE)
    explicit = BASE.replace("max_visits: 3\n", "max_visits: 3\n    on_fault: hold\n")
    explicit = explicit.replace("temperature_c: 37.0", "temperature_c: 37")
    assert load(explicit).hash == a.hash


def test_a_different_recipe_has_another_hash() -> None:
    a = load(BASE)
    assert load(BASE.replace("via < 70.0", "via < 71.0")).hash != a.hash
    assert load(BASE.replace("complete: ok", "complete: done")).hash != a.hash


def test_dump_and_load_keep_the_hash() -> None:
    a = load(BASE)
    b = load(dump_recipe(a))
    assert b.hash == a.hash
    assert b.doc == a.doc


@pytest.mark.parametrize(
    ("text", "seconds"),
    [
        ("30m", 1800),
        ("48h", 172800),
        ("7d", 604800),
        ("1d12h", 129600),
        ("90s", 90),
        ("1.5h", 5400),
    ],
)
def test_durations(text: str, seconds: float) -> None:
    assert duration_seconds(text) == seconds


@pytest.mark.parametrize("text", ["", "h", "10", "10 m", "1w", "-1h", "1h 30m"])
def test_bad_durations(text: str) -> None:
    with pytest.raises(ValueError):
        duration_seconds(text)


def test_guard_column_points_at_the_problem_inside_a_quoted_guard() -> None:
    text = BASE.replace("when: via < 70.0 && visits.grow < 3", "when: 'via < 70.0 && nope'")
    (err,) = errors(text)
    line = text.splitlines().index("      - when: 'via < 70.0 && nope'") + 1
    col = len("      - when: '") + len("via < 70.0 && ") + 1
    assert err.startswith(f"t.yaml:{line}:{col}: error: in guard")


def test_parameter_used_in_two_places_must_fit_both_icd_ranges() -> None:
    text = BASE.replace("max: 48.0", "max: 100.0").replace(
        "complete: ok",
        "complete: ok\n  act:\n    op: activation\n"
        '    params: {reagent: R1, duration_h: "${hours}"}\n    next: done',
    )
    errs = errors(text)
    assert any(
        "max 100 of parameter 'hours' is outside the ICD range of duration_h" in e for e in errs
    )
    assert any("step 'act' is never reached" in e for e in errs)


def test_viable_cells_total_is_bound_from_count_and_culture_volume() -> None:
    text = BASE.replace(
        "sample: {volume_ml: 0.5, panel: [viability]}",
        "sample: {volume_ml: 0.5, panel: [cell_count, viability], culture_ml: 100}",
    ).replace("bind: {via: viability_pct}", "bind: {via: viability_pct, total: viable_cells_total}")
    recipe = load(text)
    assert recipe.variables["total"].type == "double"
    assert recipe.variables["total"].unit == "cells"


def test_bound_name_reused_with_another_type_is_an_error() -> None:
    text = BASE.replace(
        "bind: {via: viability_pct}", "bind: {via: viability_pct}\n    wait: true"
    ).replace("max_visits: 3\n", "max_visits: 3\n    bind: {via: viability_pct}\n")
    # expansion's viability_pct is a double too: same name, same type is fine
    load(text)
    text2 = (
        BASE.replace("panel: [viability]", "panel: [viability, sterility]")
        .replace(
            "bind: {via: viability_pct}", "bind: {via: viability_pct, sterile: sterility_growth}"
        )
        .replace("max_visits: 3\n", "max_visits: 3\n    bind: {sterile: cells_out}\n")
    )
    assert any("'sterile' is bound as bool here but as double" in e for e in errors(text2))


def test_parameter_and_bound_result_cannot_share_a_name() -> None:
    text = BASE.replace("bind: {via: viability_pct}", "bind: {hours: viability_pct}")
    assert any("'hours' is both a parameter and a bound result" in e for e in errors(text))


def test_branches_and_targets_of_a_step() -> None:
    recipe = load(BASE)
    assert recipe.targets("count") == ["grow", "done"]
    assert recipe.branches("grow") == [(None, "count")]
    assert recipe.kind("count") == "sample"
    assert recipe.program_params("grow", recipe.resolve_parameters({})) == {
        "temperature_c": 37.0,
        "duration_h": 24.0,
        "feed": "batch",
    }
    assert recipe.sample_volume_ml("count", {}) == 0.5


@pytest.mark.parametrize(
    "text", ["[" * 3000 + "]" * 3000, "a: " + "{b: " * 3000 + "1" + "}" * 3000]
)
def test_deeply_nested_yaml_is_a_diagnostic(text: str) -> None:
    assert any("nested deeper than 64 levels (the limit)" in e for e in errors(text))


def test_unsafe_yaml_tags_are_refused_not_executed() -> None:
    errs = errors(BASE.replace("complete: ok", "complete: !!python/object/apply:os.getcwd []"))
    assert any("tag:yaml.org,2002:python/object/apply:os.getcwd' is not allowed" in e for e in errs)
