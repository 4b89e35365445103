"""Guards: CEL parsed by cel-python, type-checked at load, evaluated for the batch."""

from __future__ import annotations

import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from daemon.recipe.guards import Guard, GuardError, compile_guard

NAMES = {"viability": "double", "cells": "double", "dose": "double", "n": "int", "lot": "string"}
NAMES |= {"ok": "bool", "bags": "list<string>"}
STEPS = {"expand", "count"}


def ok(text: str) -> Guard:
    guard, problems = compile_guard(text, NAMES, STEPS)
    assert problems == [], problems
    assert guard is not None
    return guard


def problem(text: str) -> str:
    guard, problems = compile_guard(text, NAMES, STEPS)
    assert guard is None and problems
    return " | ".join(p.message for p in problems)


@pytest.mark.parametrize(
    "text",
    [
        "viability < 70.0",
        "cells >= dose * 1.2",
        "visits.expand < 5",
        "viability < 70",  # CEL orders int and double together
        "n % 2 == 0 && !(viability > 1.0)",
        "lot == 'LV-1' || size(lot) > 3",
        "double(n) * 1.5 > cells",
        "ok ? viability > 50.0 : viability > 80.0",
        "elapsed_h >= 48.0",
        "lot in ['a', 'b']",
        "-cells < 0.0",
    ],
)
def test_well_typed_guards_compile(text: str) -> None:
    ok(text)


@pytest.mark.parametrize(
    ("text", "message"),
    [
        ('viability < "x"', "cannot compare double < string"),
        ("viability == 5", "cannot compare double == int"),
        ("cells * 2 > 1.0", "cannot apply '*' to double and int"),
        ("nobody > 1.0", "unknown name 'nobody'"),
        ("visits.harvest < 2", "there is no step 'harvest'"),
        ("visits < 2", "cannot compare visits < int"),
        ("viability", "must be true or false, this one is double"),
        ("viability > 1.0 &&", "not a valid CEL expression"),
        ("n && ok", "'&&' needs bool operands, got int"),
        ("lot.size > 1", "string has no field 'size'"),
        ("max(n, 2) > 1", "unknown function 'max'"),
        ("n % 2.0 == 0", "'%' needs two ints"),
        ("lot in [1, 2]", "'in' needs a list of string"),
        ("b'x' == b'x'", "bytes is not supported"),
        ("", "the guard is empty"),
        ("x" * 2000, "limited to 1000 characters"),
        ("ok ? 1 : 2.0", "must have one type"),
    ],
)
def test_ill_typed_guards_are_refused_at_load(text: str, message: str) -> None:
    assert message in problem(text)


def test_problem_column_points_into_the_expression() -> None:
    _g, problems = compile_guard("viability > 1.0 && nobody", NAMES, STEPS)
    assert problems[0].column == len("viability > 1.0 && ") + 1


def test_every_unknown_name_is_reported() -> None:
    assert problem("a > 1.0 && b > 1.0").count("unknown name") == 2


def test_evaluate_uses_declared_types() -> None:
    guard = ok("cells >= dose * 1.2 && visits.expand < 5")
    assert guard.names == {"cells", "dose"}
    assert guard.visits == {"expand"}
    # an int given for a double variable is converted, not refused
    assert guard.evaluate({"cells": 300_000_000, "dose": 2e8, "visits": {"expand": 1}}) is True
    assert guard.evaluate({"cells": 3e8, "dose": 2e8, "visits": {"expand": 5}}) is False
    assert guard.evaluate({"cells": 3e8, "dose": 2e8}) is True  # no visit yet counts 0


def test_evaluate_raises_guard_error_when_it_cannot_decide() -> None:
    guard = ok("cells / dose > 1.0")
    with pytest.raises(GuardError, match="needs dose"):
        guard.evaluate({"cells": 1.0})
    with pytest.raises(GuardError, match="needs dose"):
        guard.evaluate({"cells": 1.0, "dose": None})
    with pytest.raises(GuardError, match="divide by zero"):
        ok("4 / n > 1").evaluate({"n": 0})
    with pytest.raises(GuardError, match="is not a double"):
        guard.evaluate({"cells": "many", "dose": 1.0})


def test_evaluate_lists_and_bools() -> None:
    assert ok("'B1' in bags && ok").evaluate({"bags": ["B1", "B2"], "ok": True}) is True
    assert ok("'B3' in bags").evaluate({"bags": ["B1"]}) is False


@settings(max_examples=150, deadline=None)
@given(st.text(max_size=80))
def test_any_text_compiles_or_gives_problems_never_raises(text: str) -> None:
    guard, problems = compile_guard(text, NAMES, STEPS)
    assert (guard is None) != (problems == [])


@settings(max_examples=100, deadline=None)
@given(
    viability=st.floats(0, 100),
    cells=st.floats(0, 1e10),
    dose=st.floats(1e6, 1e10),
    visits=st.integers(0, 10),
)
def test_evaluation_agrees_with_python_arithmetic(
    viability: float, cells: float, dose: float, visits: int
) -> None:
    guard = ok("viability < 70.0 || (cells >= dose * 1.2 && visits.expand < 5)")
    env = {"viability": viability, "cells": cells, "dose": dose, "visits": {"expand": visits}}
    expected = viability < 70.0 or (cells >= dose * 1.2 and visits < 5)
    assert guard.evaluate(env) is expected
