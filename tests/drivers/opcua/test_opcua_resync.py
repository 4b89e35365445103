"""The resync diff (drivers/opcua/resync.py), a pure function: what a consumer who saw
``before`` must be told to see ``after``, and nothing else. Crash recovery rests on it."""

from __future__ import annotations

from typing import Any

from hypothesis import given, settings
from hypothesis import strategies as st

from drivers.base import (
    CartridgeChanged,
    FaultChanged,
    OutputPortChanged,
    ProcessValuesChanged,
    ProgressChanged,
    TransportChanged,
    UnitStateChanged,
)
from drivers.opcua.resync import diff_events

SEEN: dict[tuple[str, str], Any] = {
    ("INC01", "State"): "Running",
    ("INC01", "TaskId"): "B1/expand/1",
    ("INC01", "Program"): "expansion",
    ("INC01", "CartridgeId"): "C1",
    ("INC01", "FaultCode"): 0,
    ("INC01", "FaultText"): "",
    ("INC01", "Progress"): 0.25,
    ("INC01", "RemainingSeconds"): 3600.0,
    ("INC01", "pv:pH"): 7.2,
    ("INC01", "pv:Temperature_C"): 37.0,
    ("INC02", "State"): "Idle",
    ("INC02", "TaskId"): "",
    ("INC02", "Program"): "",
    ("INC02", "CartridgeId"): "",
    ("Transport", "State"): "Idle",
    ("Transport", "TaskId"): "M1",
    ("Transport", "FaultCode"): 0,
    ("Transport", "FaultText"): "",
    ("LoadPort", "CartridgeId"): "",
    ("OutputPort", "CartridgeIds"): (),
}


def _after(**changes: Any) -> dict[tuple[str, str], Any]:
    after = dict(SEEN)
    for name, value in changes.items():
        loc, var = name.split("__")
        after[(loc, var)] = value
    return after


def test_first_connect_has_nothing_to_bring_up_to_date() -> None:
    assert diff_events("S", {}, SEEN) == []


def test_nothing_changed_nothing_told() -> None:
    assert diff_events("S", SEEN, dict(SEEN)) == []


def test_a_unit_that_finished_and_was_restarted_is_one_state_event_with_the_current_values() -> (
    None
):
    after = _after(INC01__State="Running", INC01__TaskId="B1/sample/1", INC01__Program="sample")
    (event,) = diff_events("S", SEEN, after)
    assert isinstance(event, UnitStateChanged)
    assert (event.source, event.unit, event.state, event.task_id, event.program) == (
        "S",
        "INC01",
        "Running",
        "B1/sample/1",
        "sample",
    )


def test_each_group_that_changed_is_told_once_in_key_order() -> None:
    after = _after(
        INC01__FaultCode=7,
        INC01__FaultText="door",
        INC01__State="Faulted",
        INC01__Progress=0.5,
        INC01__RemainingSeconds=10.0,
        INC02__CartridgeId="C2",
        Transport__State="Faulted",
        Transport__FaultCode=3,
        LoadPort__CartridgeId="C3",
        OutputPort__CartridgeIds=("C0",),
    ) | {("INC01", "pv:pH"): 7.0}
    events = diff_events("S", SEEN, after)
    kinds = [(type(e).__name__, getattr(e, "unit", getattr(e, "location", ""))) for e in events]
    assert kinds == [
        ("FaultChanged", "INC01"),
        ("ProgressChanged", "INC01"),
        ("UnitStateChanged", "INC01"),
        ("ProcessValuesChanged", "INC01"),
        ("CartridgeChanged", "INC02"),
        ("CartridgeChanged", "LoadPort"),
        ("OutputPortChanged", ""),
        ("FaultChanged", "Transport"),
        ("TransportChanged", ""),
    ]
    fault = events[0]
    assert isinstance(fault, FaultChanged) and (fault.code, fault.text) == (7, "door")
    pvs = events[3]
    assert isinstance(pvs, ProcessValuesChanged)
    assert dict(pvs.values) == {"pH": 7.0, "Temperature_C": 37.0}  # the whole set, current
    assert isinstance(events[6], OutputPortChanged) and events[6].cartridge_ids == ("C0",)
    assert isinstance(events[8], TransportChanged) and events[8].state == "Faulted"
    prog = events[1]
    assert isinstance(prog, ProgressChanged) and prog.progress == 0.5


def test_a_cartridge_that_left_shows_as_empty() -> None:
    (event,) = diff_events("S", SEEN, _after(INC01__CartridgeId=""))
    assert (
        isinstance(event, CartridgeChanged)
        and event.cartridge_id == ""
        and event.location == "INC01"
    )


def test_the_diff_reads_neither_argument_in_place() -> None:
    before, after = dict(SEEN), _after(INC01__State="Held")
    frozen = (dict(before), dict(after))
    diff_events("S", before, after)
    assert (before, after) == frozen


# ------------------------------------------------------------------ property
_GROUP = {
    "State": "state",
    "TaskId": "state",
    "Program": "state",
    "CartridgeId": "cartridge",
    "CartridgeIds": "port",
    "FaultCode": "fault",
    "FaultText": "fault",
    "Progress": "progress",
    "RemainingSeconds": "progress",
}


def _group(key: tuple[str, str]) -> tuple[str, str]:
    loc, var = key
    return loc, "pv" if var.startswith("pv:") else _GROUP[var]


def _event_group(event: Any) -> tuple[str, str]:
    if isinstance(event, UnitStateChanged):
        return event.unit, "state"
    if isinstance(event, TransportChanged):
        return "Transport", "state"
    if isinstance(event, CartridgeChanged):
        return event.location, "cartridge"
    if isinstance(event, OutputPortChanged):
        return "OutputPort", "port"
    if isinstance(event, FaultChanged):
        return event.location, "fault"
    if isinstance(event, ProgressChanged):
        return event.unit, "progress"
    assert isinstance(event, ProcessValuesChanged)
    return event.unit, "pv"


_ALT: dict[tuple[str, str], list[Any]] = {
    k: [
        v,
        *(
            {
                "State": ["Idle", "Held", "Faulted"],
                "TaskId": ["", "T9"],
                "Program": ["", "sample"],
                "CartridgeId": ["", "C9"],
                "CartridgeIds": [(), ("C9",)],
                "FaultCode": [0, 5],
                "FaultText": ["", "x"],
                "Progress": [0.0, 1.0],
                "RemainingSeconds": [0.0, 5.0],
            }.get(k[1], [1.0, 2.0])
        ),
    ]
    for k, v in SEEN.items()
}


@settings(max_examples=150, deadline=None)
@given(st.fixed_dictionaries({k: st.sampled_from(v) for k, v in _ALT.items()}))
def test_exactly_the_groups_that_differ_are_told_with_their_current_values(
    after: dict[tuple[str, str], Any],
) -> None:
    events = diff_events("S", SEEN, after)
    differing = {_group(k) for k in after if SEEN[k] != after[k]}
    told = [_event_group(e) for e in events]
    assert len(told) == len(set(told))  # once each
    assert set(told) == differing
    for e in events:
        if isinstance(e, UnitStateChanged):
            assert (e.state, e.task_id, e.program) == (
                after[(e.unit, "State")],
                after[(e.unit, "TaskId")],
                after.get((e.unit, "Program"), ""),
            )
        elif isinstance(e, FaultChanged):
            assert (e.code, e.text) == (
                after[(e.location, "FaultCode")],
                after[(e.location, "FaultText")],
            )
        elif isinstance(e, CartridgeChanged):
            assert e.cartridge_id == after[(e.location, "CartridgeId")]
