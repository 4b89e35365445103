"""Cell Q faults: each one surfaces a typed error or a lost/restored pair, the driver
recovers by itself, and no job is ever created twice (the ICD 1.1 jobs-created counter
when the analyzer has it).

FaultProxy faults (drop, refuse, stall, slow, garbage) sit on the TCP path and run on
any analyzer; the twin's own faults (exception answers, silence, lost answers) skip
elsewhere.
"""

from __future__ import annotations

from collections.abc import AsyncIterator, Callable, Iterator
from typing import Final

import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from drivers.base import (
    Busy,
    CommunicationLost,
    ConnectionLost,
    ConnectionRestored,
    Event,
    InstrumentError,
    InstrumentTimeout,
    InvalidArgument,
    InvalidState,
)
from drivers.icd import Assay, Command, SlotState
from drivers.modbus import ModbusAnalyzer, ModbusSettings
from simulators.cellq_controls import CellQControls
from simulators.faults import ModbusFaults
from tests.support import eventually, fresh, next_event
from tests.support.cellq import CellQBench, assert_created, jobs_created

pytestmark = pytest.mark.hil

LONG_PANEL: Final = Assay.STERILITY
# One request at a time and no poll in between: a lost answer hits the step it names.
QUIET: Final = ModbusSettings(
    timeout=0.3, poll_interval=3600, heartbeat_timeout=3600, backoff_initial=0.02, backoff_max=0.05
)


@pytest.fixture
def faults(cellq_bench: CellQBench) -> Iterator[ModbusFaults]:
    faults = cellq_bench.faults  # skips on an analyzer that is not the in-process twin
    faults.clear()
    yield faults
    faults.clear()


async def _lost_then_restored(stream: AsyncIterator[Event]) -> None:
    lost = await next_event(stream, ConnectionLost)
    assert lost.reason
    await next_event(stream, ConnectionRestored)


async def _once_back(call: Callable[[], object]) -> object:
    """``call()`` once the driver is back (CommunicationLost means "not yet")."""

    async def attempt() -> object:
        try:
            return await call()  # type: ignore[misc]
        except CommunicationLost:
            return _NOT_YET

    return await eventually(attempt, "driver back", lambda v: v is not _NOT_YET)


_NOT_YET: Final = object()


async def _submit_after_recovery(
    driver: ModbusAnalyzer, controls: CellQControls, seq: int, before: int | None
) -> int:
    slot = await _once_back(lambda: driver.submit(seq, "NOSUCH.F", LONG_PANEL))
    assert isinstance(slot, int)
    assert (await driver.job(seq)).slot == slot
    await assert_created(controls, before, 1)
    return slot


# --------------------------------------------------------------------------- TCP path
async def test_dropped_connection_is_a_lost_restored_pair(
    proxied: ModbusAnalyzer,
    cellq_bench: CellQBench,
    controls: CellQControls,
    job_seqs: Callable[[], int],
) -> None:
    before = await jobs_created(controls)
    seq = job_seqs()
    slot = await proxied.submit(seq, "NOSUCH.F", LONG_PANEL)
    events = proxied.events()
    assert await cellq_bench.proxy.drop_connections() >= 1
    await _lost_then_restored(events)
    assert proxied.connected
    assert await _submit_after_recovery(proxied, controls, seq, before) == slot


async def test_refused_reconnects_fail_fast_until_the_port_opens(
    proxied: ModbusAnalyzer,
    cellq_bench: CellQBench,
    controls: CellQControls,
    job_seqs: Callable[[], int],
) -> None:
    events = proxied.events()
    await cellq_bench.proxy.refuse(True)
    await cellq_bench.proxy.drop_connections()
    await next_event(events, ConnectionLost)
    with pytest.raises(CommunicationLost):
        await proxied.status()
    before = await jobs_created(controls)
    with pytest.raises(CommunicationLost):
        await proxied.submit(job_seqs(), "NOSUCH.R", LONG_PANEL)
    await cellq_bench.proxy.refuse(False)
    await next_event(events, ConnectionRestored)
    await _submit_after_recovery(proxied, controls, job_seqs(), before)


async def test_stalled_link_times_out_and_never_doubles_a_submit(
    proxied: ModbusAnalyzer,
    cellq_bench: CellQBench,
    controls: CellQControls,
    job_seqs: Callable[[], int],
) -> None:
    events = proxied.events()
    before = await jobs_created(controls)
    seq = job_seqs()
    await cellq_bench.proxy.stall(2.0)  # > the 0.5 s request timeout
    with pytest.raises(CommunicationLost):  # InstrumentTimeout, or lost already by a poll
        await proxied.submit(seq, "NOSUCH.F", LONG_PANEL)
    await _lost_then_restored(events)
    slot = await _submit_after_recovery(proxied, controls, seq, before)
    assert await proxied.submit(seq, "NOSUCH.F", LONG_PANEL) == slot
    await assert_created(controls, before, 1)


async def test_garbage_answer_is_communication_lost_and_recovers(
    proxied: ModbusAnalyzer,
    cellq_bench: CellQBench,
    controls: CellQControls,
    job_seqs: Callable[[], int],
) -> None:
    events = proxied.events()
    await cellq_bench.proxy.garbage(9)
    await _lost_then_restored(events)
    await _submit_after_recovery(proxied, controls, job_seqs(), await jobs_created(controls))


async def test_slow_link_under_the_timeout_still_answers(
    proxied: ModbusAnalyzer,
    cellq_bench: CellQBench,
    controls: CellQControls,
    job_seqs: Callable[[], int],
) -> None:
    before = await jobs_created(controls)
    await cellq_bench.proxy.slow(0.02)
    seq = job_seqs()
    slot = await proxied.submit(seq, "NOSUCH.W", LONG_PANEL)
    assert (await proxied.job(seq)).slot == slot
    await assert_created(controls, before, 1)


async def test_slow_link_over_the_timeout_is_lost_then_restored(
    proxied: ModbusAnalyzer,
    cellq_bench: CellQBench,
    controls: CellQControls,
    job_seqs: Callable[[], int],
) -> None:
    events = proxied.events()
    await cellq_bench.proxy.slow(0.6)  # per chunk, both ways: > the 0.5 s timeout
    await next_event(events, ConnectionLost)
    await cellq_bench.proxy.slow(0)
    await next_event(events, ConnectionRestored)
    await _submit_after_recovery(proxied, controls, job_seqs(), await jobs_created(controls))


# --------------------------------------------------------------------------- twin faults
@pytest.mark.parametrize(
    ("code", "error"),
    [(2, InvalidArgument), (3, InvalidArgument), (4, InvalidState), (6, Busy), (1, None)],
)
async def test_exception_answers_map_to_typed_errors(
    proxied: ModbusAnalyzer, faults: ModbusFaults, code: int, error: type[InstrumentError] | None
) -> None:
    faults.exception(code, None)
    try:
        with pytest.raises(error or CommunicationLost) as raised:
            await proxied.status()
        if error is not None:  # an ICD code: typed, and not a transport failure
            assert not isinstance(raised.value, CommunicationLost)
        assert f"{code:02d}" in str(raised.value)
    finally:
        faults.clear()
    status = await _once_back(proxied.status)
    assert status.free_slots >= 0  # type: ignore[attr-defined]


async def test_busy_answer_to_submit_then_one_job(
    proxied: ModbusAnalyzer,
    faults: ModbusFaults,
    controls: CellQControls,
    job_seqs: Callable[[], int],
) -> None:
    before = await jobs_created(controls)
    seq = job_seqs()
    faults.exception(6, None)  # every slot answers "not free", the scan included
    with pytest.raises(Busy):
        await proxied.submit(seq, "NOSUCH.F", LONG_PANEL)
    faults.clear()
    await assert_created(controls, before, 0)
    await _submit_after_recovery(proxied, controls, seq, before)


async def test_silent_analyzer_times_out_then_recovers(
    proxied: ModbusAnalyzer,
    faults: ModbusFaults,
    controls: CellQControls,
    job_seqs: Callable[[], int],
) -> None:
    events = proxied.events()
    before = await jobs_created(controls)
    seq = job_seqs()
    faults.silence(None)
    with pytest.raises(CommunicationLost):
        await proxied.submit(seq, "NOSUCH.F", LONG_PANEL)
    await next_event(events, ConnectionLost)
    faults.clear()
    await next_event(events, ConnectionRestored)
    await _submit_after_recovery(proxied, controls, seq, before)


# --------------------------------------------------------------------------- lost answers
async def _retry_after_lost_answers(
    driver: ModbusAnalyzer, faults: ModbusFaults, plan: list[int], call: Callable[[], object]
) -> object:
    """Run ``call`` once per entry of ``plan``, losing the answer of request number
    ``plan[i]`` of that attempt (counted from 0; an attempt that makes fewer requests
    is not hit and succeeds), until an attempt succeeds; then once more unhurt."""
    for skip in plan:
        await _connected(driver)
        faults.lose_answers(1, skip=skip)
        try:
            return await call()  # type: ignore[misc]
        except InstrumentTimeout:
            continue
        finally:
            faults.clear()
    return await _once_back(call)


async def _connected(driver: ModbusAnalyzer) -> None:
    async def check() -> bool:
        return driver.connected

    await eventually(check, "driver reconnected")


@settings(
    max_examples=12,
    deadline=None,
    suppress_health_check=[HealthCheck.function_scoped_fixture],
)
@given(plan=st.lists(st.integers(0, 2), min_size=1, max_size=3))
async def test_lost_submit_answers_never_make_a_second_job(
    cellq_bench: CellQBench,
    faults: ModbusFaults,
    controls: CellQControls,
    job_seqs: Callable[[], int],
    plan: list[int],
) -> None:
    """The answer of the write, of the read that confirms it or of the read of a
    repeat is lost, once or several times in a row: the caller retries, the driver
    resolves by reading, and exactly one job exists, in the slot the driver reports."""
    before, lost = await jobs_created(controls), faults.answers_lost
    seq = job_seqs()
    async with ModbusAnalyzer("cellq-lost", cellq_bench.endpoint, QUIET) as driver:
        slot = await _retry_after_lost_answers(
            driver, faults, plan, lambda: driver.submit(seq, "NOSUCH.L", LONG_PANEL)
        )
        held = [j.slot for j in await driver.jobs() if j.job_seq == seq]
    assert held == [slot]
    assert faults.answers_lost > lost or plan[0] > 1  # a new submit is 1 write + 1 read
    await assert_created(controls, before, 1)


@pytest.mark.parametrize("command", [Command.ABORT, Command.RELEASE], ids=lambda c: c.name)
async def test_abort_and_release_read_the_slot_before_a_repeat(
    cellq_bench: CellQBench, faults: ModbusFaults, job_seqs: Callable[[], int], command: Command
) -> None:
    """ICD 1.1: abort and release are not repeatable. The command lands, its answer
    is lost; the caller repeats it; the driver reads the slot first and sends nothing."""
    twin = cellq_bench.twin
    assert twin is not None
    seq = job_seqs()
    # abort: a job that runs for days; release: one that failed at once (no tube)
    sample = cellq_bench.sample() if command is Command.ABORT else fresh("NEVER")
    target = SlotState.RUNNING if command is Command.ABORT else SlotState.FAILED
    async with ModbusAnalyzer("cellq-lost", cellq_bench.endpoint, QUIET) as driver:
        await driver.submit(seq, sample, LONG_PANEL)
        await eventually(lambda: driver.job(seq), "job started", lambda j: j.state is target)
        act = driver.abort if command is Command.ABORT else driver.release
        sent = twin.commands[command]
        faults.lose_answers(1, skip=2)  # find (one read), holding read, then the write
        with pytest.raises(InstrumentTimeout):
            await act(seq)
        assert twin.commands[command] == sent + 1  # it landed
        await _connected(driver)
        await act(seq)  # the repeat: no InvalidState (06), no InvalidArgument (03)
        assert twin.commands[command] == sent + 1  # and was not sent again
        if command is Command.ABORT:
            assert (await driver.job(seq)).state is SlotState.ABORTED
        else:
            assert all(j.job_seq != seq for j in await driver.jobs())
