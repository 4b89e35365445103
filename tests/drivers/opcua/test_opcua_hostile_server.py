"""The OPC UA driver against a hostile shuttle (issue #8): a scripted asyncua server that
speaks the ICD's address space but answers badly. Every bad answer is a typed error
(``InvalidAnswer`` for garbage), or, for subscription data, a typed loss or an ignored
sample (the rule of drivers/opcua/intake.py); never a crash, a hang, or a value passed
on unchecked."""

from __future__ import annotations

import json
import math
from collections.abc import AsyncIterator
from typing import Any

import pytest
from asyncua import Client, ua
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from drivers.base import (
    CommunicationLost,
    ConnectionLost,
    ConnectionRestored,
    InstrumentError,
    InstrumentTimeout,
    InvalidAnswer,
    ProcessValuesChanged,
    ProgressChanged,
    UnitStateChanged,
)
from drivers.icd import BrowseName as BN
from drivers.opcua import OpcUaSettings, OpcUaShuttle, SecurityConfig
from simulators.controls import TwinControls
from tests.support import eventually, next_event
from tests.support.hostile_shuttle import HANG, UNIT, HostileShuttle
from tests.support.shuttle_target import need_controls

S, D, U32, I32 = (
    ua.VariantType.String,
    ua.VariantType.Double,
    ua.VariantType.UInt32,
    ua.VariantType.Int32,
)
SETTINGS = OpcUaSettings(
    request_timeout=1.0,
    connect_timeout=20.0,  # a hang guard: a loaded CI machine took over 5 s once
    watchdog_interval=1.0,
    backoff_initial=0.05,
    backoff_max=0.2,
)


def _driver(server: HostileShuttle) -> OpcUaShuttle:
    return OpcUaShuttle("liar", server.url, SecurityConfig.insecure(), SETTINGS)


@pytest.fixture
async def driver(shuttle_hostile_server: HostileShuttle) -> AsyncIterator[OpcUaShuttle]:
    async with _driver(shuttle_hostile_server) as drv:
        yield drv


def _answer(*values: ua.Variant) -> Any:
    return lambda _args: list(values)


# ------------------------------------------------------------------ GetResult
@pytest.mark.parametrize(
    ("status", "outputs", "why"),
    [
        (ua.Variant("Complete", S), ua.Variant("not json", S), "not strict JSON"),
        (ua.Variant("Complete", S), ua.Variant('{"cells_out": NaN}', S), "not strict JSON"),
        (ua.Variant("Complete", S), ua.Variant("[1]", S), "not a JSON object"),
        (ua.Variant("Complete", S), ua.Variant(7, I32), "not a String"),
        (ua.Variant("Finished", S), ua.Variant("{}", S), "unknown result Status"),
        (ua.Variant(3, I32), ua.Variant("{}", S), "unknown result Status"),
        (ua.Variant("Running", S), ua.Variant('{"cells_out": 1}', S), "has outputs"),
        (ua.Variant("Complete", S), ua.Variant('{"cells_out": "lots"}', S), "must be a number"),
        (ua.Variant("Complete", S), ua.Variant('{"x": 1}', S), "not an output"),
        (ua.Variant("Complete", S), ua.Variant("{" * 70_000, S), "longer than"),
    ],
)
async def test_garbage_results_are_invalid_answers(
    driver: OpcUaShuttle,
    shuttle_hostile_server: HostileShuttle,
    status: ua.Variant,
    outputs: ua.Variant,
    why: str,
) -> None:
    shuttle_hostile_server.answers[BN.GET_RESULT] = _answer(status, outputs)
    with pytest.raises(InvalidAnswer, match=why):
        await driver.result("T1", UNIT)
    assert driver.connected  # garbage in an answer is not a lost connection


async def test_results_of_another_program_or_a_wrong_shape_are_invalid(
    driver: OpcUaShuttle, shuttle_hostile_server: HostileShuttle
) -> None:
    outputs = json.dumps({"cells_out": 1e9, "viability_pct": 90.0})
    shuttle_hostile_server.answers[BN.GET_RESULT] = _answer(
        ua.Variant("Complete", S), ua.Variant(outputs, S)
    )
    assert (await driver.result("T1", UNIT, program="expansion")).number("cells_out") == 1e9
    with pytest.raises(InvalidAnswer, match="unknown output 'viability_pct'"):
        await driver.result("T1", UNIT, program="activation")
    shuttle_hostile_server.answers[BN.GET_RESULT] = _answer(ua.Variant("Complete", S))
    with pytest.raises(InvalidAnswer, match="1 values, not 2"):
        await driver.result("T1", UNIT)


@settings(max_examples=40, deadline=None, suppress_health_check=list(HealthCheck))
@given(
    status=st.one_of(st.sampled_from(["Complete", "Stopped", "Unknown", "Running"]), st.text()),
    outputs=st.one_of(
        st.text(max_size=200),
        st.dictionaries(
            st.sampled_from(["cells_out", "viability_pct", "sample_id", "bag_ids", "zz"]),
            st.one_of(st.floats(), st.integers(), st.text(max_size=20), st.lists(st.text())),
            max_size=3,
        ).map(lambda d: json.dumps(d)),
    ),
)
async def test_any_result_is_checked_or_an_invalid_answer(
    driver: OpcUaShuttle, shuttle_hostile_server: HostileShuttle, status: str, outputs: str
) -> None:
    shuttle_hostile_server.answers[BN.GET_RESULT] = _answer(
        ua.Variant(status, S), ua.Variant(outputs, S)
    )
    try:
        res = await driver.result("T1", UNIT, program="expansion")
    except InvalidAnswer:
        return
    for name in res.outputs:
        assert math.isfinite(res.number(name))


# ------------------------------------------------------------------ RunIds and statuses
@pytest.mark.parametrize(
    "answer",
    [
        [ua.Variant("R" * 65, S)],
        [ua.Variant("", S)],
        [ua.Variant(12, I32)],
        [],
        [ua.Variant("R1", S), ua.Variant("R2", S)],
    ],
    ids=["65 chars", "empty", "Int32", "none", "two"],
)
async def test_a_run_id_outside_the_icd_is_an_invalid_answer(
    driver: OpcUaShuttle, shuttle_hostile_server: HostileShuttle, answer: list[ua.Variant]
) -> None:
    shuttle_hostile_server.answers[BN.START_PROGRAM] = lambda _a: answer
    shuttle_hostile_server.answers[BN.MOVE] = lambda _a: answer
    params = {"volume_ml": 1, "sample_id": "S1"}
    with pytest.raises(InvalidAnswer, match="RunId"):
        await driver.start(UNIT, "sample", params, "T1", "C1")
    with pytest.raises(InvalidAnswer, match="RunId"):
        await driver.move("C1", UNIT, "M1")
    shuttle_hostile_server.answers[BN.START_PROGRAM] = _answer(ua.Variant("R" * 64, S))
    assert await driver.start(UNIT, "sample", params, "T1", "C1") == "R" * 64


async def test_an_unknown_status_code_is_a_typed_error(
    driver: OpcUaShuttle, shuttle_hostile_server: HostileShuttle
) -> None:
    shuttle_hostile_server.answers[BN.HOLD] = lambda _a: ua.StatusCode(0x80FE0000)
    with pytest.raises(InstrumentError) as err:
        await driver.hold(UNIT, "T1")
    assert not isinstance(err.value, CommunicationLost)


async def test_a_method_that_never_answers_times_out_it_does_not_hang(
    driver: OpcUaShuttle, shuttle_hostile_server: HostileShuttle
) -> None:
    shuttle_hostile_server.answers[BN.ABORT] = lambda _a: HANG
    stream = driver.events()
    with pytest.raises(InstrumentTimeout):
        await driver.abort(UNIT, "T1")
    await next_event(stream, ConnectionLost)  # outcome unknown: the driver resyncs
    await next_event(stream, ConnectionRestored)


# ------------------------------------------------------------------ variables
@pytest.mark.parametrize(
    ("path", "value"),
    [
        ((UNIT, BN.STATE), ua.Variant("Exploded", S)),
        ((UNIT, BN.STATE), ua.Variant(1, I32)),
        ((UNIT, BN.CARTRIDGE_ID), ua.Variant("C" * 33, S)),
        ((UNIT, BN.TASK_ID), ua.Variant("T" * 65, S)),
        ((UNIT, BN.FAULT_CODE), ua.Variant("7", S)),
        ((UNIT, BN.FAULT_TEXT), ua.Variant("x" * 5000, S)),
        ((BN.TRANSPORT, BN.STATE), ua.Variant("Held", S)),
        ((BN.LOAD_PORT, BN.CARTRIDGE_ID), ua.Variant("bad id!", S)),
        ((BN.OUTPUT_PORT, BN.CARTRIDGE_IDS), ua.Variant(["C1", "bad id!"], S)),
        ((UNIT, BN.CAPABILITIES), ua.Variant([1, 2], I32)),
    ],
    ids=lambda v: "/".join(v) if isinstance(v, tuple) else None,
)
async def test_garbage_state_refuses_the_connect_with_an_invalid_answer(
    shuttle_hostile_server: HostileShuttle, path: tuple[str, ...], value: ua.Variant
) -> None:
    await shuttle_hostile_server.force(path, value)
    drv = _driver(shuttle_hostile_server)
    with pytest.raises(InvalidAnswer) as err:
        async with drv:
            pass
    assert path[-1] in str(err.value) or "Capabilities" in str(err.value)
    assert drv.state == "closed"


async def test_garbage_in_a_subscription_is_a_loss_until_the_instrument_behaves(
    driver: OpcUaShuttle, shuttle_hostile_server: HostileShuttle
) -> None:
    """A variable the ICD reports in full (here State) with a value outside the ICD:
    the connection is lost (reason names it); reconnects keep failing with
    InvalidAnswer; once the instrument answers within the ICD, Restored."""
    stream = driver.events()
    await shuttle_hostile_server.force((UNIT, BN.STATE), ua.Variant("Exploded", S))
    lost = await next_event(stream, ConnectionLost)
    assert "U1/State" in lost.reason and "outside the ICD" in lost.reason

    async def reason() -> str:
        return driver.last_loss_reason

    await eventually(reason, "a failed reconnect", lambda r: "Exploded" in r)
    with pytest.raises(CommunicationLost, match="not connected"):
        await driver.unit_status(UNIT)
    await shuttle_hostile_server.force((UNIT, BN.STATE), ua.Variant("Running", S))
    await shuttle_hostile_server.force((UNIT, BN.TASK_ID), ua.Variant("T9", S))
    seen = []
    async for event in stream:
        seen.append(event)
        if isinstance(event, ConnectionRestored):
            break
    states = [e for e in seen if isinstance(e, UnitStateChanged)]
    assert [(e.state, e.task_id) for e in states] == [("Running", "T9")]  # never "Exploded"


async def test_garbage_in_a_mergeable_variable_is_ignored(
    driver: OpcUaShuttle, shuttle_hostile_server: HostileShuttle
) -> None:
    stream = driver.events()
    await shuttle_hostile_server.force((UNIT, BN.PROGRESS), ua.Variant(math.nan, D))
    await shuttle_hostile_server.force((UNIT, BN.PROCESS_VALUES, "pH"), ua.Variant("acid", S))
    await shuttle_hostile_server.force((UNIT, BN.PROGRESS), ua.Variant(0.5, D))
    ev = await next_event(stream, ProgressChanged)
    assert ev.progress == 0.5
    assert driver._conn.intake.ignored >= 2
    assert driver.connected
    assert driver.cached_status(UNIT).progress == 0.5
    await shuttle_hostile_server.force((UNIT, BN.PROCESS_VALUES, "pH"), ua.Variant(6.9, D))
    pv = await next_event(stream, ProcessValuesChanged)
    assert dict(pv.values) == {"pH": 6.9}


async def test_a_read_of_garbage_is_an_invalid_answer(
    driver: OpcUaShuttle, shuttle_hostile_server: HostileShuttle
) -> None:
    """unit_status reads now: a value outside the ICD raises, it is never returned (the
    subscription will also report it as a loss)."""
    await shuttle_hostile_server.force((UNIT, BN.PROGRESS), ua.Variant(2.5, D))
    with pytest.raises((InvalidAnswer, CommunicationLost)):
        await driver.unit_status(UNIT)
    await shuttle_hostile_server.force((BN.TRANSPORT, BN.FAULT_CODE), ua.Variant(-1, I32))
    with pytest.raises((InvalidAnswer, CommunicationLost)):
        await driver.transport_status()


@settings(max_examples=30, deadline=None, suppress_health_check=list(HealthCheck))
@given(
    value=st.one_of(
        st.text(max_size=70).map(lambda v: ua.Variant(v, S)),
        st.floats().map(lambda v: ua.Variant(v, D)),
        st.integers(-(2**31), 2**31 - 1).map(lambda v: ua.Variant(v, I32)),
        st.lists(st.text(max_size=5), max_size=3).map(lambda v: ua.Variant(v, S)),
    ),
    var=st.sampled_from([BN.STATE, BN.CARTRIDGE_ID, BN.TASK_ID, BN.FAULT_CODE, BN.PROGRESS]),
)
async def test_any_value_read_is_checked_or_refused(
    driver: OpcUaShuttle, shuttle_hostile_server: HostileShuttle, value: ua.Variant, var: str
) -> None:
    await shuttle_hostile_server.force((UNIT, var), value)
    try:
        status = await driver.unit_status(UNIT)
    except (InvalidAnswer, CommunicationLost):
        return
    finally:
        await shuttle_hostile_server.reset()
    assert status.state in ("Idle", "Running", "Held", "Complete", "Aborted", "Faulted")
    assert 0.0 <= status.progress <= 1.0 and 0 <= status.fault_code <= 0xFFFFFFFF


# ------------------------------------------------------------------ no twin controls
async def test_an_instrument_without_twin_controls_gets_the_tests_that_need_them_skipped(
    shuttle_hostile_server: HostileShuttle,
) -> None:
    async with Client(shuttle_hostile_server.url, timeout=5) as client:
        ctl = TwinControls(client)
        assert await ctl.discover() is False
        with pytest.raises(pytest.skip.Exception, match="twin controls"):
            need_controls(ctl)
