"""Wire faults between the driver and the shuttle (FaultProxy): typed errors or a
lost/restored pair, recovery without help, and never a program started twice."""

from __future__ import annotations

from collections.abc import AsyncIterator
from datetime import timedelta
from typing import Any

import pytest
from shuttle_support import FAST, LONG, Rig, events_until, next_event, task

from drivers import icd
from drivers.base import CommunicationLost, ConnectionLost, ConnectionRestored, FaultChanged
from drivers.opcua import OpcUaShuttle
from simulators.controls import TwinControls


@pytest.fixture
async def proxied(target: Any) -> AsyncIterator[OpcUaShuttle]:
    if target.proxy is None:
        pytest.skip("fault injection needs the FaultProxy in front of a twin (not on HIL)")
    await target.proxy.clear()
    async with OpcUaShuttle("shuttle", target.proxy_url, target.security, FAST) as drv:
        yield drv
    await target.proxy.clear()


@pytest.fixture
async def frig(proxied: OpcUaShuttle, controls: TwinControls) -> Rig:
    return Rig(proxied, controls)


async def _lost_then_restored(stream: object) -> None:
    await next_event(stream, lambda e: isinstance(e, ConnectionLost))
    await next_event(stream, lambda e: isinstance(e, ConnectionRestored))


async def _start_once(rig: Rig, target: Any, unit: str) -> tuple[str, str, str]:
    cid = await rig.load(unit)
    tid = task("F")
    run = await rig.drv.start(unit, *LONG, tid, cid)
    assert target.twin is not None and target.twin.started_programs[tid] == 1
    return cid, tid, run


async def _resend_after_recovery(rig: Rig, target: Any, unit: str, cid: str, tid: str) -> None:
    """What the daemon does after a lost answer: re-send the same TaskId."""
    run = await rig.drv.start(unit, *LONG, tid, cid)
    assert run
    assert target.twin is not None and target.twin.started_programs[tid] == 1
    assert (await rig.drv.result(tid)).status is icd.ResultStatus.RUNNING
    await rig.drv.abort(unit, tid)


async def test_dropped_connections_give_lost_then_restored(frig: Rig, target: Any) -> None:
    assert target.proxy is not None
    stream = frig.drv.events()
    cid, tid, _ = await _start_once(frig, target, "INC09")
    await target.proxy.drop_connections()
    await _lost_then_restored(stream)
    status = await frig.drv.unit_status("INC09")
    assert status.task_id == tid and status.state == "Running"
    await _resend_after_recovery(frig, target, "INC09", cid, tid)


async def test_stall_times_out_or_is_lost_and_recovers(frig: Rig, target: Any) -> None:
    assert target.proxy is not None
    stream = frig.drv.events()
    cid = await frig.load("INC10")
    tid = task("F")
    await target.proxy.stall(3.0)
    with pytest.raises(CommunicationLost):  # InstrumentTimeout is one: outcome unknown
        await frig.drv.start("INC10", *LONG, tid, cid)
    await _lost_then_restored(stream)
    await target.proxy.clear()
    await _resend_after_recovery(frig, target, "INC10", cid, tid)


async def test_refused_reconnects_fail_fast_then_recover(frig: Rig, target: Any) -> None:
    assert target.proxy is not None
    stream = frig.drv.events()
    cid, tid, _ = await _start_once(frig, target, "INC11")
    await target.proxy.refuse(True)
    await target.proxy.drop_connections()
    await next_event(stream, lambda e: isinstance(e, ConnectionLost))
    with pytest.raises(CommunicationLost, match="not connected"):
        await frig.drv.start("INC11", *LONG, tid, cid)
    assert frig.drv.state == "lost"
    await target.proxy.refuse(False)
    await next_event(stream, lambda e: isinstance(e, ConnectionRestored))
    await _resend_after_recovery(frig, target, "INC11", cid, tid)


async def test_garbage_on_the_wire_is_a_loss_not_a_crash(frig: Rig, target: Any) -> None:
    assert target.proxy is not None
    stream = frig.drv.events()
    cid, tid, _ = await _start_once(frig, target, "INC12")
    await target.proxy.garbage(64)
    try:  # the next answer is garbage: a typed error, or nothing if a publish took it
        await frig.drv.unit_status("INC12")
    except CommunicationLost:
        pass
    await _lost_then_restored(stream)
    await target.proxy.clear()
    await _resend_after_recovery(frig, target, "INC12", cid, tid)


async def test_slow_answers_still_work(frig: Rig, target: Any) -> None:
    assert target.proxy is not None
    cid = await frig.load("INC13")
    await target.proxy.slow(0.01)
    tid = task("F")
    run = await frig.drv.start("INC13", *LONG, tid, cid)
    assert run and target.twin is not None and target.twin.started_programs[tid] == 1
    await target.proxy.clear()
    await frig.drv.abort("INC13", tid)
    assert frig.drv.state == "connected"


async def test_no_stale_event_after_restore(frig: Rig, target: Any) -> None:
    """A change made while the driver is cut off shows up once, before Restored ends it."""
    assert target.proxy is not None
    cid, tid, _ = await _start_once(frig, target, "INC14")
    stream = frig.drv.events()
    await target.proxy.refuse(True)
    await target.proxy.drop_connections()
    await next_event(stream, lambda e: isinstance(e, ConnectionLost))
    # the world moves on while we are blind (through the controls' own connection)
    await frig.ctl.inject_fault("INC14", 7, "while lost")
    await target.proxy.refuse(False)
    seen = await events_until(stream, lambda e: isinstance(e, ConnectionRestored), 20)
    states = [e.state for e in seen if getattr(e, "unit", None) == "INC14" and hasattr(e, "state")]
    assert states == ["Faulted"]  # the current state, once, not a replay of the old one
    assert frig.drv.cached_status("INC14").fault_code == 7
    await frig.drv.clear("INC14")
    del cid, tid


async def test_an_instrument_clock_stepping_back_loses_no_change(
    frig: Rig, target: Any, monkeypatch: pytest.MonkeyPatch
) -> None:
    """The ICD promises every change of FaultCode/CartridgeId, not monotonic timestamps:
    after an NTP step or a reboot without RTC the changes still reach the daemon."""
    if target.twin is None:
        pytest.skip("needs the twin to step its clock back")
    import simulators.shuttle as twin_module

    real = twin_module.datetime

    class _Behind:
        @staticmethod
        def now(tz: Any = None) -> Any:
            return real.now(tz) - timedelta(days=1)

    stream = frig.drv.events()
    monkeypatch.setattr(twin_module, "datetime", _Behind)
    await frig.ctl.inject_fault("INC15", 9, "clock stepped back")
    ev = await next_event(stream, lambda e: isinstance(e, FaultChanged) and e.location == "INC15")
    assert isinstance(ev, FaultChanged) and ev.code == 9
    assert frig.drv.cached_status("INC15").fault_code == 9
    await frig.drv.clear("INC15")


async def test_a_failed_resync_attempt_does_not_hide_changes_from_the_next(
    frig: Rig, target: Any, monkeypatch: pytest.MonkeyPatch
) -> None:
    """A reconnect attempt that fails after its subscription filled the cache (the link
    drops during the Read) must not make the next attempt forget what changed while lost."""
    assert target.proxy is not None
    drv = frig.drv
    real = drv._conn._read_snapshot
    attempts = 0

    async def flaky(client: Any, space: Any) -> None:
        nonlocal attempts
        attempts += 1
        await real(client, space)
        if attempts == 1:
            raise CommunicationLost(drv.name, "connect", "link dropped during the Read")

    st = await drv.unit_status("INC16")
    if st.state in (icd.UnitState.FAULTED, icd.UnitState.ABORTED):
        await drv.clear("INC16")
    stream = drv.events()
    await target.proxy.refuse(True)
    await target.proxy.drop_connections()
    await next_event(stream, lambda e: isinstance(e, ConnectionLost))
    await frig.ctl.inject_fault("INC16", 11, "while lost")
    monkeypatch.setattr(drv._conn, "_read_snapshot", flaky)
    await target.proxy.refuse(False)
    seen = await events_until(stream, lambda e: isinstance(e, ConnectionRestored), 20)
    assert attempts >= 2
    faults = [e for e in seen if isinstance(e, FaultChanged) and e.location == "INC16"]
    assert [e.code for e in faults] == [11]
    await drv.clear("INC16")
