"""Guards a hostile author could write: refused at load when they can only fail, and
evaluation that raises nothing but GuardError and stays far from the recursion limit."""

from __future__ import annotations

import math
import subprocess
import sys
import textwrap
from pathlib import Path
from typing import Any

import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from daemon.recipe import limits
from daemon.recipe.guards import GuardError, compile_guard
from tests.recipes.bounded import load_bounded, memory_cap
from tests.support import HANG_GUARD

HOSTILE = Path(__file__).resolve().parent / "hostile"
ROOT = Path(__file__).resolve().parents[2]
NAMES = {"n": "int", "m": "int", "x": "double", "y": "double", "s": "string", "b": "bool"}
NAMES |= {"bags": "list<string>"}
STEPS = {"expand"}
SETTINGS = settings(max_examples=150, deadline=None, suppress_health_check=[HealthCheck.too_slow])

# Each construct nests one level per call; the deepest n the loader accepts is found below.
NESTING = {
    "parens": lambda k: "(" * k + "b" + ")" * k,
    "not": lambda k: "!" * k + "b",
    "neg": lambda k: "-" * k + "n < 1",
    "sum": lambda k: " + ".join(["n"] * (k + 1)) + " > 1",
    "calls": lambda k: "int(" * k + "n" + ")" * k + " > 1",
    "ternary": lambda k: "(b ? " * k + "b" + " : b)" * k,
    "lists": lambda k: "[" * k + "1" + "]" * k + " == " + "[" * k + "1" + "]" * k,
}


def refused(text: str) -> str:
    guard, problems = compile_guard(text, NAMES, STEPS)
    assert guard is None, f"{text!r} was accepted"
    return " | ".join(p.message for p in problems)


def deepest_accepted(make: Any) -> int:
    """The largest nesting the loader accepts for one construct (it must refuse some)."""
    k = 1
    while compile_guard(make(k), NAMES, STEPS)[0] is not None:
        k += 1
        assert len(make(k)) <= limits.MAX_GUARD_CHARS + 10, "no depth limit before the size"
    return k - 1


# --------------------------------------------------------------------------- at load
def test_the_hostile_guard_fixture_is_refused_branch_by_branch() -> None:
    answer = load_bounded(HOSTILE / "hostile_guards.yaml")
    assert not answer.ok
    text = answer.text
    assert text.count("division by a literal zero") == 2  # n / 0 and x / -0.0
    assert "modulo by a literal zero" in text  # n % (0)
    assert "9223372036854775808 is outside CEL's int range" in text
    assert "1e400 is not a finite number" in text
    assert text.count("the guard is nested too deeply") == 2  # 480 '-' and 480 '!'
    assert len(answer.diagnostics) == 7


@pytest.mark.parametrize(
    ("text", "why"),
    [
        ("n / 0 > 1", "division by a literal zero"),
        ("n % 0 == 1", "modulo by a literal zero"),
        ("n / (-(0)) > 1", "division by a literal zero"),
        ("x / 0.0 > 1.0", "division by a literal zero"),
        ("x / 0e0 > 1.0", "division by a literal zero"),
        ("n / 0x0 > 1", "division by a literal zero"),
        ("n < 9223372036854775808", "outside CEL's int range"),
        ("n < 0x8000000000000000", "outside CEL's int range"),
        ("18446744073709551616u > 1u", "outside CEL's uint range"),
        ("x < 1e309", "not a finite number"),
        ("x > -1e999", "not a finite number"),
    ],
)
def test_what_can_only_fail_is_refused_at_load(text: str, why: str) -> None:
    assert why in refused(text)


def test_the_extremes_that_can_succeed_are_accepted() -> None:
    for text in (
        "n < 9223372036854775807",
        "n > -9223372036854775808",
        "x < 1.7976931348623157e308",
        "n / 2 > 0",
        "x / 0.5 > 0.0",
    ):
        guard, problems = compile_guard(text, NAMES, STEPS)
        assert guard is not None, (text, problems)


@pytest.mark.parametrize("construct", sorted(NESTING))
def test_every_construct_has_a_nesting_limit_below_the_size_limit(construct: str) -> None:
    make = NESTING[construct]
    k = deepest_accepted(make)
    assert k >= 12, "CEL implementations must accept a dozen nested levels"
    assert "nested too deeply" in refused(make(k + 1))


def test_too_many_parse_tree_nodes_are_refused() -> None:
    text = "&&".join(["b"] * 300)  # flat, shallow, but large: 899 characters
    assert f"(the limit is {limits.MAX_GUARD_NODES})" in refused(text)


# --------------------------------------------------------------------------- evaluation
@pytest.mark.parametrize(
    ("text", "env", "why"),
    [
        ("n / m > 1", {"n": 4, "m": 0}, "divide by zero"),
        ("n % m == 1", {"n": 4, "m": 0}, "divide by zero"),
        ("n + m > 1", {"n": 2**63 - 1, "m": 1}, "overflow"),
        ("n * m > 1", {"n": 2**62, "m": 4}, "overflow"),
        ("-n > 1", {"n": -(2**63)}, "overflow"),
        ("n - m < 1", {"n": -(2**63), "m": 1}, "overflow"),
        ("int(x) > 1", {"x": 1e300}, "overflow"),
        ("int(x) > 1", {"x": math.nan}, "."),
        ("int(x) > 1", {"x": math.inf}, "."),
        ("n > 1", {"n": 2**70}, "is not an int"),
        ("visits.expand > 1", {"visits": {"expand": "many"}}, "is not an int"),
        ("visits.expand > 1", {"visits": {"expand": 2**80}}, "is not an int"),
        ("s == 'a'", {"s": type("Odd", (), {"__str__": lambda self: 1 / 0})()}, "Zero"),
        ("size(s) > 1", {}, "needs s"),
    ],
)
def test_evaluation_raises_only_guard_error(text: str, env: dict[str, Any], why: str) -> None:
    guard, problems = compile_guard(text, NAMES, STEPS)
    assert guard is not None, problems
    with pytest.raises(GuardError, match=why) as info:
        guard.evaluate(env)
    assert text in str(info.value)  # the engine reports the step fault with the guard's text


def test_the_deepest_accepted_guards_evaluate_with_the_recursion_limit_far_away() -> None:
    """Each construct at its deepest accepted nesting evaluates in a fresh interpreter
    whose recursion limit leaves it only FRAMES frames above the caller: the bound that
    MAX_GUARD_DEPTH promises, with more than half of cel-python's 2500 left over."""
    frames = 1200
    guards = {name: make(deepest_accepted(make)) for name, make in NESTING.items()}
    code = textwrap.dedent(
        f"""
        import sys
        from daemon.recipe.guards import compile_guard
        guards, names = {guards!r}, {NAMES!r}
        env = {{"n": 1, "m": 2, "x": 1.0, "y": 2.0, "s": "a", "b": True, "bags": []}}
        compiled = {{}}
        for name, text in guards.items():
            guard, problems = compile_guard(text, names, {{"expand"}})
            assert guard is not None, (name, problems)
            compiled[name] = guard
        depth, f = 0, sys._getframe()
        while f is not None:
            depth, f = depth + 1, f.f_back
        sys.setrecursionlimit(depth + {frames})
        for name, guard in compiled.items():
            print(name, guard.evaluate(env))
        """
    )
    proc = subprocess.run(
        [sys.executable, "-c", code], capture_output=True, text=True, cwd=ROOT, timeout=HANG_GUARD
    )
    assert proc.returncode == 0, proc.stderr[-2000:]
    assert len(proc.stdout.splitlines()) == len(NESTING)


# --------------------------------------------------------------------------- hypothesis
LEAVES = {
    "int": st.sampled_from(
        [
            *("0", "1", "-1", "2", "9223372036854775807", "0x7fffffffffffffff"),
            *("n", "m", "size(s)", "visits.expand"),
        ]
    ),
    "double": st.sampled_from(["0.0", "-0.0", "1.5", "1e308", "x", "y", "elapsed_h"]),
    "bool": st.sampled_from(["b", "true", "false", "'a' in bags"]),
    "string": st.sampled_from(["s", "'a'", "''"]),
}
_OPS = {"int": ["+", "-", "*", "/", "%"], "double": ["+", "-", "*", "/"], "string": ["+"]}
_CMP = st.sampled_from(["<", "<=", ">", ">=", "==", "!="])


def _combine(kind: str, inner: st.SearchStrategy[str]) -> st.SearchStrategy[str]:
    """One level of CEL over ``inner`` (expressions of CEL type ``kind``); other types
    enter through their leaves, so every expression is well-typed."""
    options = [
        inner.map(lambda a: f"({a})"),
        st.tuples(LEAVES["bool"], inner, inner).map(lambda t: f"({t[0]} ? {t[1]} : {t[2]})"),
    ]
    if kind in _OPS:
        ops = st.sampled_from(_OPS[kind])
        options.append(st.tuples(inner, ops, inner).map(" ".join))
    if kind in ("int", "double"):
        options.append(inner.map(lambda a: f"-{a}"))
        other, cast = ("double", "int") if kind == "int" else ("int", "double")
        options.append(LEAVES[other].map(lambda a: f"{cast}({a})"))
    if kind == "bool":
        options += [
            inner.map(lambda a: f"!{a}"),
            st.tuples(inner, st.sampled_from(["&&", "||"]), inner).map(" ".join),
        ]
        for typed in ("int", "double", "string"):
            options.append(st.tuples(EXPRS[typed], _CMP, EXPRS[typed]).map(" ".join))
    return st.one_of(options)


EXPRS: dict[str, st.SearchStrategy[str]] = {}
for _kind in ("int", "double", "string", "bool"):  # bool last: it compares the others
    EXPRS[_kind] = st.recursive(
        LEAVES[_kind], lambda inner, k=_kind: _combine(k, inner), max_leaves=10
    )


ENVS = st.fixed_dictionaries(
    {
        "n": st.one_of(st.integers(-(2**63), 2**63 - 1), st.sampled_from([0, -(2**63)])),
        "m": st.one_of(st.integers(-5, 5), st.sampled_from([2**63 - 1, 0])),
        "x": st.floats(allow_nan=True, allow_infinity=True),
        "y": st.floats(allow_nan=True, allow_infinity=True),
        "s": st.text(max_size=5),
        "b": st.booleans(),
        "bags": st.lists(st.sampled_from(["a", "b"]), max_size=3),
        "visits": st.fixed_dictionaries({"expand": st.integers(0, 2**63 - 1)}),
        "elapsed_h": st.floats(0, 1e6),
    }
)


def _answer(text: str, env: dict[str, Any]) -> None:
    guard, problems = compile_guard(text, NAMES, STEPS)  # never raises
    if guard is None:
        assert problems
        return
    try:
        assert guard.evaluate(env) in (True, False)
    except GuardError as exc:
        assert "nested too deeply" not in str(exc)


@SETTINGS
@given(EXPRS["bool"], ENVS)
def test_typed_random_guards_answer_a_bool_or_guard_error(text: str, env: dict) -> None:
    with memory_cap():
        _answer(text, env)


@SETTINGS
@given(
    st.lists(st.sampled_from(sorted(NESTING)), min_size=1, max_size=6),
    st.integers(1, 120),
    ENVS,
)
def test_deep_mixed_nesting_is_refused_or_evaluates(kinds: list[str], k: int, env) -> None:
    text = "b"
    for i in range(k):
        kind = kinds[i % len(kinds)]
        text = {
            "parens": f"({text})",
            "not": f"!{text}",
            "neg": f"(-{i} < 1) && {text}",
            "sum": f"(n + {i} > 1) || {text}",
            "calls": f"(int(double({i})) > 1) || {text}",
            "ternary": f"(b ? {text} : false)",
            "lists": f"([{i}] == [{i}]) && {text}",
        }[kind]
    with memory_cap():
        _answer(text, env)


@SETTINGS
@given(
    st.text(alphabet=st.sampled_from(list("nmxybs()!-+*/%<>=&|?:.0123456789 '\"[]u")), max_size=200)
)
def test_random_guard_text_never_raises(text: str) -> None:
    with memory_cap():
        _answer(text, {"n": 1, "m": 0, "x": 0.0, "y": 1.0, "s": "", "b": True, "bags": []})
