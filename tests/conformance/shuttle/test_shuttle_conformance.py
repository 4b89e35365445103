"""Cell Shuttle conformance through the OPC UA driver: the ICD's rules, seen by the daemon.

Runs against the twin, or against any instrument that CELLFAB_SHUTTLE_URL names. Only
the ICD is assumed: units and capabilities are discovered; set-up uses the ICD section 4
twin controls when the instrument offers them (tests that need them skip otherwise).
"""

from __future__ import annotations

import asyncio
from collections.abc import Mapping

import pytest

from drivers import icd
from drivers.base import (
    CartridgeChanged,
    FaultChanged,
    IdentityMismatch,
    InvalidAnswer,
    InvalidArgument,
    InvalidState,
    NotSupported,
    Shuttle,
    TransportChanged,
    UnitInfo,
    UnitStateChanged,
)
from drivers.opcua import OpcUaShuttle
from simulators.controls import TwinControls
from tests.support import events_until, fresh, next_event, task_id
from tests.support.shuttle import LONG, SCALE, short
from tests.support.shuttle_target import Rig

pytestmark = pytest.mark.hil

R = icd.ResultStatus


def incubators(units: Mapping[str, UnitInfo], n: int) -> list[str]:
    found = [u for u in sorted(units) if "expansion" in units[u].capabilities][:n]
    if len(found) < n:
        pytest.skip(f"needs {n} units that run expansion and sample, found {len(found)}")
    return found


async def test_driver_is_a_shuttle_and_discovers_units_and_namespace(
    shuttle_driver: OpcUaShuttle, shuttle_controls: TwinControls
) -> None:
    driver = shuttle_driver
    assert isinstance(driver, Shuttle)
    units = await driver.units()
    assert units, "no units under Objects/Shuttle/Units"
    for info in units.values():
        assert icd.is_id(info.unit_id)
        assert set(info.capabilities) <= set(icd.PROGRAMS)
    ns_array = await shuttle_controls.client.get_namespace_array()
    assert driver.namespace_index == ns_array.index(icd.SHUTTLE_NS)
    status = await driver.unit_status(next(iter(units)))
    assert status.state in set(icd.UnitState)
    transport = await driver.transport_status()
    assert transport.state in set(icd.TransportState)


async def test_unknown_task_is_unknown_on_every_unit(shuttle_driver: OpcUaShuttle) -> None:
    res = await shuttle_driver.result(task_id("never"))
    assert res.status is R.UNKNOWN and dict(res.outputs) == {}
    with pytest.raises(InvalidArgument):
        await shuttle_driver.result("bad task id with spaces")
    with pytest.raises(InvalidArgument, match="not a program"):
        await shuttle_driver.result(task_id("never"), program="teleport")


async def test_start_is_idempotent_by_task_id(shuttle_rig: Rig) -> None:
    rig = shuttle_rig
    unit = incubators(await rig.drv.units(), 1)[0]
    cid, tid = await rig.start_long(unit)
    first = (await rig.drv.result(tid, unit)).status
    assert first is R.RUNNING
    run1 = await rig.drv.start(unit, *LONG, tid, cid)
    # whatever the other arguments, a known TaskId starts nothing (ICD StartProgram 1.)
    run2 = await rig.drv.start(unit, "fill_finish", {"nonsense": True}, tid, "other")
    assert run1 == run2 and run1
    assert await rig.ctl.times_started(tid, unit) == 1
    await rig.drv.abort(unit, tid)


async def test_status_codes_reach_the_caller_as_typed_errors(shuttle_rig: Rig) -> None:
    rig = shuttle_rig
    units = await rig.drv.units()
    unit = incubators(units, 2)[1]
    cid = await rig.load(unit)
    unsupported = next(p for p in icd.PROGRAMS if p not in units[unit].capabilities)
    with pytest.raises(InvalidArgument):
        await rig.drv.start(unit, *LONG, "bad task id", cid)
    with pytest.raises(NotSupported):
        await rig.drv.start(unit, unsupported, {}, task_id(), cid)
    with pytest.raises(InvalidArgument):
        await rig.drv.start(
            unit,
            "expansion",
            {"temperature_c": 99, "duration_h": 1, "feed": "batch"},
            task_id(),
            cid,
        )
    with pytest.raises(IdentityMismatch):
        await rig.drv.start(unit, *LONG, task_id(), fresh("WRONG"))
    tid = task_id()
    await rig.drv.start(unit, *LONG, tid, cid)
    with pytest.raises(InvalidState):
        await rig.drv.start(unit, *LONG, task_id(), cid)
    with pytest.raises(InvalidArgument):
        await rig.drv.hold(unit, task_id("other"))
    with pytest.raises(InvalidArgument):
        await rig.drv.start("NO_SUCH_UNIT", *LONG, task_id(), cid)
    await rig.drv.abort(unit, tid)
    await rig.drv.abort(unit, tid)  # target state reached: Good, nothing changes
    with pytest.raises(InvalidState):
        await rig.drv.unhold(unit, tid)


async def test_hold_unhold_stop_and_results_with_and_without_unit(shuttle_rig: Rig) -> None:
    rig = shuttle_rig
    unit = incubators(await rig.drv.units(), 3)[2]
    _cid, tid = await rig.start_long(unit)
    await rig.drv.hold(unit, tid)
    assert (await rig.drv.result(tid)).status is R.HELD
    await rig.drv.unhold(unit, tid)
    await rig.drv.stop(unit, tid)
    await rig.wait_state(unit, icd.UnitState.COMPLETE)
    by_unit = await rig.drv.result(tid, unit, program="expansion")
    anywhere = await rig.drv.result(tid, program="expansion")
    assert by_unit == anywhere
    assert by_unit.status is R.STOPPED
    assert set(by_unit.outputs) <= set(icd.PROGRAMS["expansion"].outputs)


async def test_stopped_is_never_mistaken_for_complete(shuttle_rig: Rig) -> None:
    """ICD 1.1: Stop ends a program Complete in the unit's State, Stopped in its result;
    the driver's result carries Stopped, and nothing that checks for Complete passes."""
    rig = shuttle_rig
    unit = incubators(await rig.drv.units(), 4)[3]
    _cid, tid = await rig.start_long(unit)
    stream = rig.drv.events()
    await rig.drv.stop(unit, tid)
    ev = await next_event(
        stream, UnitStateChanged, lambda e: e.unit == unit and e.state == "Complete"
    )
    assert ev.task_id == tid  # the unit reads Complete after a Stop, as after a full run
    assert (await rig.drv.unit_status(unit)).state == icd.UnitState.COMPLETE
    res = await rig.drv.result(tid, unit, program="expansion")
    assert res.status is R.STOPPED
    assert res.status != R.COMPLETE and res.status != "Complete"
    assert res.status not in {R.COMPLETE}
    assert res.number("cells_out") >= 0  # outputs computed for the part that ran
    # a full run of the same program is Complete, with every output of the table
    cid2 = await rig.load(unit)
    full = task_id()
    await rig.drv.start(unit, "expansion", {**LONG[1], "duration_h": 1}, full, cid2)
    await rig.wait_state(unit, icd.UnitState.COMPLETE)
    done = await rig.drv.result(full, unit, program="expansion")
    assert done.status is R.COMPLETE
    assert set(done.outputs) == set(icd.PROGRAMS["expansion"].outputs)
    await stream.aclose()


async def test_every_state_transition_arrives_in_order_none_merged(shuttle_rig: Rig) -> None:
    """A burst of commands inside one publishing interval: each State change is seen."""
    rig = shuttle_rig
    unit = incubators(await rig.drv.units(), 4)[3]
    cid = await rig.load(unit)
    stream = rig.drv.events()
    tid = task_id()
    await rig.drv.start(unit, *LONG, tid, cid)
    for _ in range(5):
        await rig.drv.hold(unit, tid)
        await rig.drv.unhold(unit, tid)
    await rig.drv.abort(unit, tid)
    await rig.drv.clear(unit)
    seen = await events_until(
        stream,
        UnitStateChanged,
        lambda e: e.unit == unit and e.task_id == tid and e.state == "Idle",
    )
    # (events of the set-up, sent before the start, may still be in the stream: skip them)
    states = [
        e.state
        for e in seen
        if isinstance(e, UnitStateChanged) and e.unit == unit and e.task_id == tid
    ]
    assert states == ["Running", *["Held", "Running"] * 5, "Aborted", "Idle"]
    await stream.aclose()


async def test_starts_pair_with_their_task_ids_by_stream_order(shuttle_rig: Rig) -> None:
    """ICD 1.1: TaskId and Program are written before State. Five starts (each stopped
    at once) inside about one publish: every Running carries its own TaskId and Program."""
    rig = shuttle_rig
    unit = incubators(await rig.drv.units(), 5)[4]
    cid = await rig.load(unit)
    stream = rig.drv.events()
    tasks = [task_id() for _ in range(5)]
    for tid in tasks:
        await rig.drv.start(unit, *short(), tid, cid)
        await rig.drv.stop(unit, tid)
    seen = await events_until(
        stream,
        UnitStateChanged,
        lambda e: e.unit == unit and e.task_id == tasks[-1] and e.state == "Complete",
    )
    pairs = [
        (e.state, e.task_id, e.program)
        for e in seen
        if isinstance(e, UnitStateChanged) and e.unit == unit
    ]
    assert pairs == [
        pair for tid in tasks for pair in (("Running", tid, "sample"), ("Complete", tid, "sample"))
    ]
    await stream.aclose()


async def test_short_program_completes_with_the_icd_outputs(shuttle_rig: Rig) -> None:
    rig = shuttle_rig
    unit = incubators(await rig.drv.units(), 5)[4]
    cid = await rig.load(unit)
    stream = rig.drv.events()
    tid = task_id()
    program, params = short()
    await rig.drv.start(unit, program, params, tid, cid)
    ev = await next_event(
        stream, UnitStateChanged, lambda e: e.unit == unit and e.state == "Complete"
    )
    assert ev.task_id == tid and ev.program == program
    res = await rig.drv.result(tid, program="sample")
    assert res.status is R.COMPLETE
    assert res.ident("sample_id") == params["sample_id"]
    # the result checked against another program's outputs is not passed on
    with pytest.raises(InvalidAnswer, match="unknown output"):
        await rig.drv.result(tid, unit, program="activation")
    await stream.aclose()


async def test_a_used_sample_id_is_refused(shuttle_rig: Rig) -> None:
    """ICD 1.1: a SampleId is unique per shuttle, whatever the earlier program's outcome."""
    rig = shuttle_rig
    units = incubators(await rig.drv.units(), 7)
    unit, other = units[5], units[6]
    cid = await rig.load(unit)
    program, params = short()
    first = task_id()
    await rig.ctl.set_time_scale(1.0)  # the sample takes five minutes: still running below
    try:
        await rig.drv.start(unit, program, params, first, cid)
        with pytest.raises(InvalidArgument):  # the active one included
            await rig.drv.start(unit, program, params, task_id(), cid)
        await rig.drv.abort(unit, first)
    finally:
        await rig.ctl.set_time_scale(SCALE)
    await rig.drv.clear(unit)
    with pytest.raises(InvalidArgument):  # an aborted one too, and on another unit
        await rig.drv.start(other, program, params, task_id(), fresh("NOT-HERE"))
    assert await rig.drv.start(unit, program, params, first, cid)  # a repeat is no new use
    assert await rig.ctl.times_started(first) == 1


async def test_clear_reads_the_state_first(shuttle_rig: Rig) -> None:
    """ICD 1.1: Clear is not repeatable on the wire; the driver's clear() is, because it
    reads the State first (Idle: nothing to do; not Aborted|Faulted: InvalidState)."""
    rig = shuttle_rig
    unit = incubators(await rig.drv.units(), 6)[5]
    _cid, tid = await rig.start_long(unit)
    with pytest.raises(InvalidState, match="Running"):
        await rig.drv.clear(unit)
    await rig.drv.abort(unit, tid)
    await rig.drv.clear(unit)
    assert (await rig.drv.unit_status(unit)).state == icd.UnitState.IDLE
    await rig.drv.clear(unit)  # a repeat: nothing to do, no error
    assert (await rig.drv.unit_status(unit)).state == icd.UnitState.IDLE
    await rig.drv.clear_transport()  # an Idle transport: nothing to do
    await rig.free_load_port()
    await rig.ctl.inject_fault(icd.TRANSPORT, 3, "jam")
    await rig.drv.clear_transport()
    await rig.drv.clear_transport()
    assert (await rig.drv.transport_status()).state == icd.TransportState.IDLE


async def test_fault_and_clear_are_events(shuttle_rig: Rig) -> None:
    rig = shuttle_rig
    unit = incubators(await rig.drv.units(), 6)[5]
    _cid, tid = await rig.start_long(unit)
    stream = rig.drv.events()
    await rig.ctl.inject_fault(unit, 42, "door open")
    fault = await next_event(stream, FaultChanged, lambda e: e.location == unit and e.code == 42)
    assert fault.text == "door open"
    await next_event(stream, UnitStateChanged, lambda e: e.unit == unit and e.state == "Faulted")
    assert (await rig.drv.result(tid)).status is R.FAULTED
    await rig.drv.clear(unit)
    await next_event(stream, FaultChanged, lambda e: e.location == unit and e.code == 0)
    assert (await rig.drv.unit_status(unit)).state == "Idle"
    await stream.aclose()


async def test_moves_show_as_cartridge_and_transport_events(shuttle_rig: Rig) -> None:
    rig = shuttle_rig
    unit = incubators(await rig.drv.units(), 7)[6]
    await rig.empty(unit)
    await rig.free_load_port()
    stream = rig.drv.events()
    cid = fresh("C")
    await rig.ctl.insert(cid)
    await next_event(
        stream,
        CartridgeChanged,
        lambda e: e.location == icd.LOAD_PORT and e.cartridge_id == cid,
    )
    await rig.wait_transport_idle()
    mtid = task_id("M")
    run = await rig.drv.move(cid, unit, mtid)
    assert run == await rig.drv.move(cid, unit, mtid)  # idempotent by TaskId
    assert await rig.ctl.times_started(mtid, icd.TRANSPORT) == 1
    # the ICD orders changes of one variable, not across variables: wait for both
    wanted = {"moving", "arrived"}
    async with asyncio.timeout(20):
        async for e in stream:
            if isinstance(e, TransportChanged) and e.task_id == mtid and e.state == "Moving":
                wanted.discard("moving")
            if isinstance(e, CartridgeChanged) and e.location == unit and e.cartridge_id == cid:
                wanted.discard("arrived")
            if not wanted:
                break
    with pytest.raises(IdentityMismatch):
        await rig.drv.move(fresh("GHOST"), unit, task_id("M"))
    await rig.wait_transport_idle()
    await rig.move(cid, icd.OUTPUT_PORT)
    assert cid in await rig.drv.output_port()
    await rig.ctl.remove(cid)
    await stream.aclose()


async def test_each_events_call_is_an_independent_subscriber(shuttle_rig: Rig) -> None:
    rig = shuttle_rig
    unit = incubators(await rig.drv.units(), 8)[7]
    cid = await rig.load(unit)
    a, b = rig.drv.events(), rig.drv.events()
    tid = task_id()
    await rig.drv.start(unit, *short(), tid, cid)

    def done(e: UnitStateChanged) -> bool:
        return e.task_id == tid and e.state == "Complete"

    assert await next_event(a, UnitStateChanged, done) == await next_event(
        b, UnitStateChanged, done
    )
    await a.aclose()
    await b.aclose()
