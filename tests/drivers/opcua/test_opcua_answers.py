"""What the OPC UA driver accepts from an instrument: every variable's rule
(drivers/opcua/values.py) and GetResult checked against the ICD program table
(drivers/opcua/results.py). Garbage is a typed error, never a value passed on."""

from __future__ import annotations

import json
import math
from typing import Any

import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from drivers import icd
from drivers.base import InvalidAnswer, TaskResult
from drivers.opcua.results import OUTPUTS_MAX, parse_result
from drivers.opcua.values import (
    FAULT_TEXT_MAX,
    BadValue,
    check,
    check_capabilities,
    check_run_id,
)

R = icd.ResultStatus


# ------------------------------------------------------------------ the program table
def test_every_output_of_the_program_table_has_a_kind() -> None:
    for spec in icd.PROGRAMS.values():
        for name in spec.outputs:
            assert name in icd.OUTPUT_KINDS, (spec.name, name)
    assert icd.OUTPUT_KINDS["bag_ids"] is icd.OutputKind.IDS
    assert icd.OUTPUT_KINDS["sample_id"] is icd.OutputKind.SAMPLE_ID


# ------------------------------------------------------------------ variables
@pytest.mark.parametrize(
    ("key", "value", "expected"),
    [
        (("INC01", "State"), "Running", "Running"),
        (("Transport", "State"), "Moving", "Moving"),
        (("INC01", "CartridgeId"), None, ""),  # an OPC UA null String reads empty
        (("INC01", "TaskId"), "B0007/expand/2", "B0007/expand/2"),
        (("INC01", "FaultCode"), 4294967295, 4294967295),
        (("INC01", "Progress"), 1, 1.0),
        (("INC01", "pv:pH"), 7, 7.0),
        (("OutputPort", "CartridgeIds"), ["C1", "C2"], ("C1", "C2")),
        (("OutputPort", "CartridgeIds"), None, ()),
    ],
)
def test_values_within_the_icd_are_taken(key: tuple[str, str], value: Any, expected: Any) -> None:
    assert check(key, value) == expected


@pytest.mark.parametrize(
    ("key", "value"),
    [
        (("INC01", "State"), "Moving"),  # a transport state on a unit
        (("Transport", "State"), "Held"),
        (("INC01", "State"), "Finished"),
        (("INC01", "State"), 3),
        (("INC01", "CartridgeId"), "C" * 33),
        (("INC01", "CartridgeId"), "bad id!"),
        (("LoadPort", "CartridgeId"), b"C1"),
        (("INC01", "TaskId"), "T" * 65),
        (("INC01", "Program"), "x y"),
        (("INC01", "Progress"), 1.5),
        (("INC01", "Progress"), math.nan),
        (("INC01", "RemainingSeconds"), -1.0),
        (("INC01", "RemainingSeconds"), math.inf),
        (("INC01", "FaultCode"), -1),
        (("INC01", "FaultCode"), 2**32),
        (("INC01", "FaultCode"), True),
        (("INC01", "FaultCode"), 1.0),
        (("INC01", "FaultText"), "x" * (FAULT_TEXT_MAX + 1)),
        (("INC01", "pv:pH"), math.nan),
        (("INC01", "pv:pH"), "7"),
        (("OutputPort", "CartridgeIds"), ["C1", "bad id!"]),
        (("OutputPort", "CartridgeIds"), "C1"),
    ],
)
def test_values_outside_the_icd_are_garbage(key: tuple[str, str], value: Any) -> None:
    with pytest.raises(BadValue) as err:
        check(key, value)
    assert err.value.key == key and "/".join(key) in str(err.value)


_ANY = st.recursive(
    st.none()
    | st.booleans()
    | st.integers()
    | st.floats()
    | st.text(max_size=80)
    | st.binary(max_size=8),
    lambda inner: st.lists(inner, max_size=4) | st.dictionaries(st.text(max_size=4), inner),
    max_leaves=8,
)
_KEYS = [
    (loc, var)
    for loc in ("INC01", "Transport", "LoadPort", "OutputPort")
    for var in (
        "State",
        "CartridgeId",
        "CartridgeIds",
        "TaskId",
        "Program",
        "Progress",
        "RemainingSeconds",
        "FaultCode",
        "FaultText",
        "pv:pH",
    )
]


@settings(max_examples=300, deadline=None)
@given(st.sampled_from(_KEYS), _ANY)
def test_any_value_is_taken_or_garbage_never_a_crash(key: tuple[str, str], value: Any) -> None:
    try:
        checked = check(key, value)
    except BadValue:
        return
    hash(checked)  # the cache compares values: every accepted one is hashable


def test_run_ids_and_capabilities() -> None:
    assert check_run_id("R" * 64) == "R" * 64
    for bad in ("", "R" * 65, None, 7):
        with pytest.raises(ValueError):
            check_run_id(bad)
    # names outside the ICD table are not offered (nothing could check their parameters)
    assert check_capabilities(["expansion", "teleport"]) == ("expansion",)
    with pytest.raises(ValueError):
        check_capabilities(["expansion", "bad name!"])
    with pytest.raises(ValueError):
        check_capabilities("expansion")


# ------------------------------------------------------------------ GetResult
EXPANSION = {"cells_out": 1.5e9, "viability_pct": 93.2}


def _parse(status: Any, outputs: Any, program: str | None = "expansion") -> TaskResult:
    raw = outputs if isinstance(outputs, str) or outputs is None else json.dumps(outputs)
    return parse_result("S1", "result T1", "T1", [status, raw], program)


def test_a_complete_result_is_typed_by_the_program_table() -> None:
    res = _parse("Complete", EXPANSION)
    assert res.status is R.COMPLETE and res.program == "expansion"
    assert res.number("cells_out") == 1.5e9
    fill = _parse(
        "Complete", {"bags": 2, "volume_ml": 100.0, "bag_ids": ["B1", "B2"]}, "fill_finish"
    )
    assert fill.ids("bag_ids") == ("B1", "B2") and fill.number("bags") == 2.0
    with pytest.raises(TypeError):
        fill.ident("bag_ids")
    sample = _parse("Complete", {"sample_id": "S1-2", "volume_ml": 0.5}, "sample")
    assert sample.ident("sample_id") == "S1-2"


def test_stopped_is_not_complete_and_may_hold_part_of_the_outputs() -> None:
    res = _parse("Stopped", {"cells_out": 1e9})
    assert res.status is R.STOPPED
    assert res.status != R.COMPLETE and res.status != "Complete"
    with pytest.raises(InvalidAnswer, match="missing output viability_pct"):
        _parse("Complete", {"cells_out": 1e9})


@pytest.mark.parametrize(
    ("status", "outputs", "program", "why"),
    [
        ("Done", EXPANSION, "expansion", "unknown result Status"),
        ("complete", EXPANSION, "expansion", "unknown result Status"),
        ("Complete", "not json", "expansion", "not strict JSON"),
        ("Complete", '{"cells_out": NaN, "viability_pct": 90}', "expansion", "not strict JSON"),
        ("Complete", '{"cells_out": Infinity, "viability_pct": 9}', None, "not strict JSON"),
        ("Complete", "[1, 2]", "expansion", "not a JSON object"),
        ("Complete", "[" * 50_000, "expansion", "not strict JSON"),
        ("Complete", "{" + " " * OUTPUTS_MAX + "}", "expansion", "longer than"),
        ("Complete", {**EXPANSION, "extra": 1}, "expansion", "unknown output"),
        ("Complete", {**EXPANSION, "purity_pct": 1}, "expansion", "unknown output"),
        ("Complete", {**EXPANSION, "nonsense": 1}, None, "not an output"),
        ("Complete", {"cells_out": "many", "viability_pct": 9}, "expansion", "must be a number"),
        ("Complete", {"cells_out": True, "viability_pct": 9}, "expansion", "must be a number"),
        ("Complete", {"cells_out": 10**400, "viability_pct": 9}, "expansion", "out of range"),
        ("Complete", {"sample_id": "S" * 17, "volume_ml": 1}, "sample", "SampleId"),
        ("Complete", {"bags": 1, "volume_ml": 5, "bag_ids": ["ok", 3]}, "fill_finish", "array"),
        ("Complete", {"bags": 1, "volume_ml": 5, "bag_ids": "B1"}, "fill_finish", "array"),
        ("Running", {"cells_out": 1}, "expansion", "has outputs"),
        ("Aborted", EXPANSION, "expansion", "has outputs"),
        ("Complete", 42, "expansion", "not a String"),
    ],
)
def test_garbage_results_are_invalid_answers(
    status: Any, outputs: Any, program: str | None, why: str
) -> None:
    raw = outputs if isinstance(outputs, str | int) else json.dumps(outputs)
    with pytest.raises(InvalidAnswer, match=why) as err:
        parse_result("S1", "result T1", "T1", [status, raw], program)
    assert err.value.instrument == "S1" and err.value.operation == "result T1"


def test_wrong_number_of_output_arguments_is_garbage() -> None:
    for outs in ([], ["Complete"], ["Complete", "{}", "x"]):
        with pytest.raises(InvalidAnswer, match="GetResult answered"):
            parse_result("S1", "op", "T1", outs, None)


def test_not_finished_results_have_no_outputs() -> None:
    for status in ("Running", "Held", "Aborted", "Faulted", "Unknown"):
        res = _parse(status, "{}")
        assert res.status == status and dict(res.outputs) == {}
    assert _parse("Unknown", None).outputs == {}  # a null String reads as {}


@settings(max_examples=200, deadline=None)
@given(
    st.sampled_from([*R, "Nope"]),
    st.dictionaries(st.sampled_from([*icd.OUTPUT_KINDS, "x"]), _ANY, max_size=4),
    st.sampled_from([None, *icd.PROGRAMS]),
)
def test_any_result_is_checked_or_refused_never_passed_on_unchecked(
    status: str, outputs: dict[str, Any], program: str | None
) -> None:
    try:
        raw = json.dumps(outputs)
    except (TypeError, ValueError):
        return
    try:
        res = parse_result("S1", "op", "T1", [status, raw], program)
    except InvalidAnswer:
        return
    for name, value in res.outputs.items():
        plain = list(value) if isinstance(value, tuple) else value
        assert icd.check_output(name, plain) is None
        if program is not None:
            assert name in icd.PROGRAMS[program].outputs
