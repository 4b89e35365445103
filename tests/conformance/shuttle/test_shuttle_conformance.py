"""Cell Shuttle conformance through the OPC UA driver: the ICD's rules, seen by the daemon.

Runs against the twin, or against a real shuttle when CELLFAB_SHUTTLE_URL is set. Only
the ICD is assumed: units and capabilities are discovered, set-up uses ICD section 4.
"""

from __future__ import annotations

import asyncio

import pytest
from shuttle_support import LONG, SHORT, Rig, fresh, next_event, task

from drivers import icd
from drivers.base import (
    CartridgeChanged,
    FaultChanged,
    IdentityMismatch,
    InvalidArgument,
    InvalidState,
    NotSupported,
    Shuttle,
    TransportChanged,
    UnitStateChanged,
)
from drivers.opcua import OpcUaShuttle
from simulators.controls import TwinControls

pytestmark = pytest.mark.hil


def incubators(units: dict[str, object], n: int) -> list[str]:
    return [u for u in sorted(units) if "expansion" in units[u].capabilities][:n]  # type: ignore[attr-defined]


async def test_driver_is_a_shuttle_and_discovers_units_and_namespace(
    driver: OpcUaShuttle, controls: TwinControls
) -> None:
    assert isinstance(driver, Shuttle)
    units = await driver.units()
    assert units, "no units under Objects/Shuttle/Units"
    for info in units.values():
        assert icd.is_id(info.unit_id)
        assert set(info.capabilities) <= set(icd.PROGRAMS)
    ns_array = await controls.client.get_namespace_array()
    assert driver.namespace_index == ns_array.index(icd.SHUTTLE_NS)
    status = await driver.unit_status(next(iter(units)))
    assert status.state in set(icd.UnitState)


async def test_unknown_task_is_unknown_on_every_unit(driver: OpcUaShuttle) -> None:
    res = await driver.result(task("never"))
    assert res.status is icd.ResultStatus.UNKNOWN and dict(res.outputs) == {}
    with pytest.raises(InvalidArgument):
        await driver.result("bad task id with spaces")


async def test_start_is_idempotent_by_task_id(rig: Rig, target: object) -> None:
    unit = incubators(await rig.drv.units(), 1)[0]
    cid, tid = await rig.start_long(unit)
    first = (await rig.drv.result(tid, unit)).status
    assert first is icd.ResultStatus.RUNNING
    run1 = await rig.drv.start(unit, *LONG, tid, cid)
    # whatever the other arguments, a known TaskId starts nothing (ICD StartProgram 1.)
    run2 = await rig.drv.start(unit, "fill_finish", {"nonsense": True}, tid, "other")
    assert run1 == run2 and run1
    twin = getattr(target, "twin", None)
    if twin is not None:
        assert twin.started_programs[tid] == 1
    await rig.drv.abort(unit, tid)


async def test_status_codes_reach_the_caller_as_typed_errors(rig: Rig) -> None:
    units = await rig.drv.units()
    unit = incubators(units, 2)[1]
    cid = await rig.load(unit)
    unsupported = next(p for p in icd.PROGRAMS if p not in units[unit].capabilities)
    with pytest.raises(InvalidArgument):
        await rig.drv.start(unit, *LONG, "bad task id", cid)
    with pytest.raises(NotSupported):
        await rig.drv.start(unit, unsupported, {}, task(), cid)
    with pytest.raises(InvalidArgument):
        await rig.drv.start(
            unit, "expansion", {"temperature_c": 99, "duration_h": 1, "feed": "batch"}, task(), cid
        )
    with pytest.raises(IdentityMismatch):
        await rig.drv.start(unit, *LONG, task(), fresh("WRONG"))
    tid = task()
    await rig.drv.start(unit, *LONG, tid, cid)
    with pytest.raises(InvalidState):
        await rig.drv.start(unit, *LONG, task(), cid)
    with pytest.raises(InvalidArgument):
        await rig.drv.hold(unit, task("other"))
    with pytest.raises(InvalidArgument):
        await rig.drv.start("NO_SUCH_UNIT", *LONG, task(), cid)
    await rig.drv.abort(unit, tid)
    await rig.drv.abort(unit, tid)  # target state reached: Good, nothing changes
    with pytest.raises(InvalidState):
        await rig.drv.unhold(unit, tid)


async def test_hold_unhold_stop_and_results_with_and_without_unit(rig: Rig) -> None:
    unit = incubators(await rig.drv.units(), 3)[2]
    _cid, tid = await rig.start_long(unit)
    await rig.drv.hold(unit, tid)
    assert (await rig.drv.result(tid)).status is icd.ResultStatus.HELD
    await rig.drv.unhold(unit, tid)
    await rig.drv.stop(unit, tid)
    await rig.wait_state(unit, icd.UnitState.COMPLETE)
    by_unit = await rig.drv.result(tid, unit)
    anywhere = await rig.drv.result(tid)
    assert by_unit == anywhere
    assert by_unit.status is icd.ResultStatus.COMPLETE
    assert set(by_unit.outputs) == set(icd.PROGRAMS["expansion"].outputs)


async def test_every_state_transition_arrives_in_order_none_merged(rig: Rig) -> None:
    """A burst of commands inside one publishing interval: each State change is seen."""
    unit = incubators(await rig.drv.units(), 4)[3]
    cid = await rig.load(unit)
    stream = rig.drv.events()
    tid = task()
    await rig.drv.start(unit, *LONG, tid, cid)
    for _ in range(5):
        await rig.drv.hold(unit, tid)
        await rig.drv.unhold(unit, tid)
    await rig.drv.abort(unit, tid)
    await rig.drv.clear(unit)
    expected = ["Running", *["Held", "Running"] * 5, "Aborted", "Idle"]
    seen: list[str] = []
    async with asyncio.timeout(20):
        async for ev in stream:
            if isinstance(ev, UnitStateChanged) and ev.unit == unit and ev.task_id == tid:
                if not seen or seen[-1] != ev.state:
                    seen.append(ev.state)
                if ev.state == "Idle":
                    break
    assert seen == expected
    await stream.aclose()


async def test_short_program_completes_with_the_icd_outputs(rig: Rig) -> None:
    unit = incubators(await rig.drv.units(), 5)[4]
    cid = await rig.load(unit)
    stream = rig.drv.events()
    tid = task()
    program, params = SHORT
    await rig.drv.start(unit, program, params, tid, cid)
    ev = await next_event(
        stream,
        lambda e: isinstance(e, UnitStateChanged) and e.unit == unit and e.state == "Complete",
    )
    assert isinstance(ev, UnitStateChanged) and ev.task_id == tid and ev.program == program
    res = await rig.drv.result(tid)
    assert res.status is icd.ResultStatus.COMPLETE
    assert res.outputs["sample_id"] == "S1"


async def test_fault_and_clear_are_events(rig: Rig) -> None:
    unit = incubators(await rig.drv.units(), 6)[5]
    _cid, tid = await rig.start_long(unit)
    stream = rig.drv.events()
    await rig.ctl.inject_fault(unit, 42, "door open")
    fault = await next_event(
        stream, lambda e: isinstance(e, FaultChanged) and e.location == unit and e.code == 42
    )
    assert isinstance(fault, FaultChanged)
    await next_event(
        stream,
        lambda e: isinstance(e, UnitStateChanged) and e.unit == unit and e.state == "Faulted",
    )
    assert (await rig.drv.result(tid)).status is icd.ResultStatus.FAULTED
    await rig.drv.clear(unit)
    await next_event(
        stream, lambda e: isinstance(e, FaultChanged) and e.location == unit and e.code == 0
    )
    assert (await rig.drv.unit_status(unit)).state == "Idle"


async def test_moves_show_as_cartridge_and_transport_events(rig: Rig) -> None:
    unit = incubators(await rig.drv.units(), 7)[6]
    await rig.empty(unit)
    stream = rig.drv.events()
    cid = fresh("C")
    await rig.ctl.insert(cid)
    await next_event(
        stream,
        lambda e: (
            isinstance(e, CartridgeChanged)
            and e.location == icd.LOAD_PORT
            and e.cartridge_id == cid
        ),
    )
    await rig.wait_transport_idle()
    mtid = task("M")
    run = await rig.drv.move(cid, unit, mtid)
    assert run == await rig.drv.move(cid, unit, mtid)  # idempotent by TaskId
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
        await rig.drv.move(fresh("GHOST"), unit, task("M"))
    await rig.wait_transport_idle()
    await rig.move(cid, icd.OUTPUT_PORT)
    assert cid in await rig.drv.output_port()
    await rig.ctl.remove(cid)


async def test_each_events_call_is_an_independent_subscriber(rig: Rig) -> None:
    unit = incubators(await rig.drv.units(), 8)[7]
    cid = await rig.load(unit)
    a, b = rig.drv.events(), rig.drv.events()
    tid = task()
    await rig.drv.start(unit, *SHORT, tid, cid)

    def done(e: object) -> bool:
        return isinstance(e, UnitStateChanged) and e.task_id == tid and e.state == "Complete"

    assert await next_event(a, done) == await next_event(b, done)
    await a.aclose()
    await b.aclose()
