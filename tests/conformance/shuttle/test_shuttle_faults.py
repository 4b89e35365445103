"""Wire faults between the driver and the shuttle (a FaultProxy in front of the target):
typed errors or a lost/restored pair, recovery without help, and never a program
started twice (proved by the twin controls' ``Twin/StartedPrograms``)."""

from __future__ import annotations

import random
from datetime import timedelta
from typing import Any

import pytest
from asyncua import ua
from asyncua.ua.ua_binary import nodeid_to_binary

from drivers import icd
from drivers.base import (
    CommunicationLost,
    ConnectionLost,
    ConnectionRestored,
    FaultChanged,
    UnitStateChanged,
)
from drivers.opcua.connection import Connection
from tests.support import events_until, next_event, task_id
from tests.support.shuttle import LONG, short
from tests.support.shuttle_target import Rig, Target

pytestmark = pytest.mark.hil

# A Call request on the wire (policy None): its encoding id, as asyncua writes it.
CALL_REQUEST: bytes = nodeid_to_binary(ua.NodeId(ua.ObjectIds.CallRequest_Encoding_DefaultBinary))


def _twin(target: Target) -> Any:
    if target.twin is None:
        pytest.skip("needs the twin in this process (its clock), not a separate instrument")
    return target.twin


async def _lost_then_restored(stream: Any) -> None:
    await next_event(stream, ConnectionLost)
    await next_event(stream, ConnectionRestored)


async def _start_once(rig: Rig, unit: str) -> tuple[str, str, str]:
    cid = await rig.load(unit)
    tid = task_id("F")
    run = await rig.drv.start(unit, *LONG, tid, cid)
    assert await rig.ctl.times_started(tid, unit) == 1
    return cid, tid, run


async def _resend_after_recovery(rig: Rig, unit: str, cid: str, tid: str) -> None:
    """What the daemon does after a lost answer: re-send the same TaskId."""
    run = await rig.drv.start(unit, *LONG, tid, cid)
    assert run
    assert await rig.ctl.times_started(tid, unit) == 1
    assert (await rig.drv.result(tid)).status is icd.ResultStatus.RUNNING
    await rig.drv.abort(unit, tid)


async def test_dropped_connections_give_lost_then_restored(
    shuttle_proxied_rig: Rig, shuttle_target: Target
) -> None:
    rig = shuttle_proxied_rig
    stream = rig.drv.events()
    cid, tid, _ = await _start_once(rig, "INC09")
    await shuttle_target.proxy.drop_connections()
    await _lost_then_restored(stream)
    status = await rig.drv.unit_status("INC09")
    assert status.task_id == tid and status.state == "Running"
    await _resend_after_recovery(rig, "INC09", cid, tid)


async def test_stall_times_out_or_is_lost_and_recovers(
    shuttle_proxied_rig: Rig, shuttle_target: Target
) -> None:
    rig = shuttle_proxied_rig
    stream = rig.drv.events()
    cid = await rig.load("INC10")
    tid = task_id("F")
    await shuttle_target.proxy.stall(3.0)
    with pytest.raises(CommunicationLost):  # InstrumentTimeout is one: outcome unknown
        await rig.drv.start("INC10", *LONG, tid, cid)
    await _lost_then_restored(stream)
    await shuttle_target.proxy.clear()
    await _resend_after_recovery(rig, "INC10", cid, tid)


async def test_refused_reconnects_fail_fast_then_recover(
    shuttle_proxied_rig: Rig, shuttle_target: Target
) -> None:
    rig = shuttle_proxied_rig
    stream = rig.drv.events()
    cid, tid, _ = await _start_once(rig, "INC11")
    await shuttle_target.proxy.refuse(True)
    await shuttle_target.proxy.drop_connections()
    await next_event(stream, ConnectionLost)
    with pytest.raises(CommunicationLost, match="not connected"):
        await rig.drv.start("INC11", *LONG, tid, cid)
    assert rig.drv.state == "lost"
    await shuttle_target.proxy.refuse(False)
    await next_event(stream, ConnectionRestored)
    await _resend_after_recovery(rig, "INC11", cid, tid)


async def test_garbage_on_the_wire_is_a_loss_not_a_crash(
    shuttle_proxied_rig: Rig, shuttle_target: Target
) -> None:
    rig = shuttle_proxied_rig
    stream = rig.drv.events()
    cid, tid, _ = await _start_once(rig, "INC12")
    await shuttle_target.proxy.garbage(64)
    try:  # the next answer is garbage: a typed error, or nothing if a publish took it
        await rig.drv.unit_status("INC12")
    except CommunicationLost:
        pass
    await _lost_then_restored(stream)
    await shuttle_target.proxy.clear()
    await _resend_after_recovery(rig, "INC12", cid, tid)


async def test_slow_answers_still_work(shuttle_proxied_rig: Rig, shuttle_target: Target) -> None:
    rig = shuttle_proxied_rig
    cid = await rig.load("INC13")
    await shuttle_target.proxy.slow(0.01)
    tid = task_id("F")
    run = await rig.drv.start("INC13", *LONG, tid, cid)
    assert run and await rig.ctl.times_started(tid, "INC13") == 1
    await shuttle_target.proxy.clear()
    await rig.drv.abort("INC13", tid)
    assert rig.drv.state == "connected"


async def test_a_lost_start_answer_is_resent_and_starts_nothing_twice(
    shuttle_proxied_rig: Rig, shuttle_target: Target
) -> None:
    """The StartProgram reaches the instrument, its answer is lost: the daemon re-sends
    the same TaskId after the loss, and the instrument started it once."""
    if shuttle_target.security.is_none is False:
        pytest.skip("finding the request on the wire needs policy None")
    rig = shuttle_proxied_rig
    stream = rig.drv.events()
    cid = await rig.load("INC14")
    tid = task_id("F")
    await shuttle_target.proxy.lose_answer_to(CALL_REQUEST)
    with pytest.raises(CommunicationLost):
        await rig.drv.start("INC14", *LONG, tid, cid)
    await _lost_then_restored(stream)
    assert await rig.ctl.times_started(tid, "INC14") == 1  # it did start
    await _resend_after_recovery(rig, "INC14", cid, tid)


async def test_a_lost_clear_answer_is_safe_to_repeat(
    shuttle_proxied_rig: Rig, shuttle_target: Target
) -> None:
    """ICD 1.1: Clear and Transport.Clear are not repeatable. Their answer is lost; the
    repeat reads the state first and has nothing to do (a blind re-send would get
    BadInvalidState)."""
    if shuttle_target.security.is_none is False:
        pytest.skip("finding the request on the wire needs policy None")
    rig = shuttle_proxied_rig
    unit = "INC14"
    _cid, tid, _ = await _start_once(rig, unit)
    await rig.drv.abort(unit, tid)
    stream = rig.drv.events()
    await shuttle_target.proxy.lose_answer_to(CALL_REQUEST)
    with pytest.raises(CommunicationLost):
        await rig.drv.clear(unit)
    await _lost_then_restored(stream)
    assert (await rig.drv.unit_status(unit)).state == icd.UnitState.IDLE  # it was cleared
    await rig.drv.clear(unit)  # the repeat: nothing to do, no error
    assert shuttle_target.proxy.counters.answers_lost >= 1

    await rig.free_load_port()
    await rig.ctl.inject_fault(icd.TRANSPORT, 5, "jam")
    await shuttle_target.proxy.lose_answer_to(CALL_REQUEST)
    with pytest.raises(CommunicationLost):
        await rig.drv.clear_transport()
    await _lost_then_restored(stream)
    assert (await rig.drv.transport_status()).state == icd.TransportState.IDLE
    await rig.drv.clear_transport()
    await stream.aclose()


async def test_no_stale_event_after_restore(
    shuttle_proxied_rig: Rig, shuttle_target: Target
) -> None:
    """A change made while the driver is cut off shows up once, before Restored ends it."""
    rig = shuttle_proxied_rig
    await _start_once(rig, "INC15")
    stream = rig.drv.events()
    await shuttle_target.proxy.refuse(True)
    await shuttle_target.proxy.drop_connections()
    await next_event(stream, ConnectionLost)
    # the world moves on while we are blind (through the controls' own connection)
    await rig.ctl.inject_fault("INC15", 7, "while lost")
    await shuttle_target.proxy.refuse(False)
    seen = await events_until(stream, ConnectionRestored)
    states = [e.state for e in seen if isinstance(e, UnitStateChanged) and e.unit == "INC15"]
    assert states == ["Faulted"]  # the current state, once, not a replay of the old one
    assert rig.drv.cached_status("INC15").fault_code == 7
    await rig.drv.clear("INC15")


class _SteppingClock:
    """The twin's datetime, stepping back and forth by whole days (NTP, a reboot without
    RTC): source timestamps that are not monotonic."""

    real: Any = None
    rng = random.Random(5)

    @classmethod
    def now(cls, tz: Any = None) -> Any:
        return cls.real.now(tz) - timedelta(days=cls.rng.randrange(-3, 4))


async def test_an_instrument_clock_stepping_back_loses_no_change(
    shuttle_proxied_rig: Rig, shuttle_target: Target, monkeypatch: pytest.MonkeyPatch
) -> None:
    """The ICD promises every change of FaultCode/CartridgeId and start writes in order,
    not monotonic timestamps: with a clock stepping back and forth the changes still
    reach the daemon, and starts still pair with their TaskIds by stream order."""
    twin = _twin(shuttle_target)
    import simulators.shuttle as twin_module

    rig = shuttle_proxied_rig
    cid = await rig.load("INC16")
    stream = rig.drv.events()
    _SteppingClock.real = twin_module.datetime
    monkeypatch.setattr(twin_module, "datetime", _SteppingClock)
    await rig.ctl.inject_fault("INC16", 9, "clock stepped back")
    ev = await next_event(stream, FaultChanged, lambda e: e.location == "INC16")
    assert ev.code == 9
    assert rig.drv.cached_status("INC16").fault_code == 9
    await rig.drv.clear("INC16")
    tasks = [task_id() for _ in range(4)]
    for tid in tasks:
        await rig.drv.start("INC16", *short(), tid, cid)
        await rig.drv.stop("INC16", tid)
    seen = await events_until(
        stream, UnitStateChanged, lambda e: e.task_id == tasks[-1] and e.state == "Complete"
    )
    running = [e.task_id for e in seen if isinstance(e, UnitStateChanged) and e.state == "Running"]
    assert running == tasks
    assert twin.serial_number  # the twin in this process was the one stepped


async def test_a_failed_resync_attempt_does_not_hide_changes_from_the_next(
    shuttle_proxied_rig: Rig, shuttle_target: Target, monkeypatch: pytest.MonkeyPatch
) -> None:
    """A reconnect attempt that fails after its subscription filled the cache (the link
    drops during the Read) must not make the next attempt forget what changed while lost."""
    rig = shuttle_proxied_rig
    drv = rig.drv
    real = Connection._read_snapshot
    attempts = 0

    async def flaky(self: Connection, client: Any, space: Any) -> None:
        nonlocal attempts
        attempts += 1
        await real(self, client, space)
        if attempts == 1:
            raise CommunicationLost(drv.name, "connect", "link dropped during the Read")

    unit = "INC16"
    st = await drv.unit_status(unit)
    if st.state in (icd.UnitState.FAULTED, icd.UnitState.ABORTED):
        await drv.clear(unit)
    stream = drv.events()
    await shuttle_target.proxy.refuse(True)
    await shuttle_target.proxy.drop_connections()
    await next_event(stream, ConnectionLost)
    await rig.ctl.inject_fault(unit, 11, "while lost")
    monkeypatch.setattr(Connection, "_read_snapshot", flaky)
    await shuttle_target.proxy.refuse(False)
    seen = await events_until(stream, ConnectionRestored)
    assert attempts >= 2
    faults = [e for e in seen if isinstance(e, FaultChanged) and e.location == unit]
    assert [e.code for e in faults] == [11]
    await drv.clear(unit)


async def test_a_close_the_server_never_answers_leaves_no_asyncua_task(
    shuttle_target: Target,
) -> None:
    """A driver closed while the wire is stalled cannot finish asyncua's disconnect (the
    CloseSession request is never answered, the driver gives up after its limit); no
    task of the asyncua client (publish loop, channel renewal, connection supervisor)
    may outlive the close, or it logs a traceback every second and could reconnect a
    client nobody owns."""
    import asyncio
    import os

    from drivers.opcua import OpcUaShuttle
    from tests.support.shuttle_target import FAST

    def asyncua_tasks() -> list[str]:
        """Tasks running a coroutine defined in asyncua's own files."""
        found = []
        for task in asyncio.all_tasks():
            code = getattr(task.get_coro(), "cr_code", None)
            if code is not None and f"{os.sep}asyncua{os.sep}" in code.co_filename:
                found.append(code.co_qualname)
        return sorted(found)

    proxy = shuttle_target.proxy
    await proxy.clear()
    before = asyncua_tasks()
    try:
        async with OpcUaShuttle(
            "shuttle", shuttle_target.proxy_url, shuttle_target.security, FAST
        ) as drv:
            await drv.units()
            assert len(asyncua_tasks()) > len(before)  # connected: asyncua's tasks run
            await proxy.stall(None)
        await asyncio.sleep(0)  # let the cancelled tasks end
        assert asyncua_tasks() == before
    finally:
        await proxy.clear()
