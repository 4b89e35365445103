"""Cell Q faults: each one surfaces a typed error or a lost/restored pair, the driver
recovers by itself, and no job is ever created twice (the twin's ``submitted`` counter).

FaultProxy faults (drop, refuse, stall, slow, garbage) sit on the TCP path and run on
a real analyzer too; ModbusFaults (exception answers, silence, slow answers) are the
twin's own and skip elsewhere.
"""

from __future__ import annotations

import asyncio
import threading
from collections.abc import AsyncIterator, Awaitable, Callable, Iterator
from typing import Any

import pytest

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
from drivers.icd import Assay, SlotState
from drivers.modbus import ModbusAnalyzer, ModbusSettings
from simulators.cellq import CellQTwin
from simulators.faults import ModbusFaults

pytestmark = pytest.mark.hil

WaitFor = Callable[..., Awaitable[Any]]
LONG_PANEL = Assay.STERILITY
HANG_GUARD = 30.0


@pytest.fixture
def twin(cellq_bench: Any) -> Iterator[CellQTwin]:
    if cellq_bench.twin is None:
        pytest.skip("Modbus exception/silence/slow answers are injected by the twin only")
    cellq_bench.twin.faults.clear()
    yield cellq_bench.twin
    cellq_bench.twin.faults.clear()


async def _expect_lost_then_restored(stream: AsyncIterator[Event], wait_for: WaitFor) -> None:
    lost = await wait_for(stream, ConnectionLost)
    assert lost.reason
    await wait_for(stream, ConnectionRestored)


async def _submit_after_recovery(
    driver: ModbusAnalyzer, cellq_bench: Any, seq: int, sample: str = "NOSUCH.F"
) -> int:
    """Submit once the driver is back; a CommunicationLost means "not yet"."""
    async with asyncio.timeout(HANG_GUARD):
        while True:
            try:
                slot = await driver.submit(seq, sample, LONG_PANEL)
                break
            except CommunicationLost:
                await asyncio.sleep(0.05)
    assert (await driver.job(seq)).slot == slot
    assert cellq_bench.submitted(seq) in (1, None)
    return slot


# --------------------------------------------------------------------------- TCP path
async def test_dropped_connection_is_a_lost_restored_pair(
    proxied: ModbusAnalyzer, cellq_bench: Any, job_seqs: Callable[[], int], wait_for: WaitFor
) -> None:
    seq = job_seqs()
    slot = await proxied.submit(seq, "NOSUCH.D", LONG_PANEL)
    events = proxied.events()
    assert await cellq_bench.proxy.drop_connections() >= 1
    await _expect_lost_then_restored(events, wait_for)
    assert proxied.connected
    assert await _submit_after_recovery(proxied, cellq_bench, seq, "NOSUCH.D") == slot


async def test_refused_reconnects_fail_fast_until_the_port_opens(
    proxied: ModbusAnalyzer, cellq_bench: Any, job_seqs: Callable[[], int], wait_for: WaitFor
) -> None:
    events = proxied.events()
    await cellq_bench.proxy.refuse(True)
    await cellq_bench.proxy.drop_connections()
    await wait_for(events, ConnectionLost)
    with pytest.raises(CommunicationLost):
        await proxied.status()
    with pytest.raises(CommunicationLost):
        await proxied.submit(job_seqs(), "NOSUCH.R", LONG_PANEL)
    await cellq_bench.proxy.refuse(False)
    await wait_for(events, ConnectionRestored)
    await _submit_after_recovery(proxied, cellq_bench, job_seqs())


async def test_stalled_link_times_out_and_never_doubles_a_submit(
    proxied: ModbusAnalyzer, cellq_bench: Any, job_seqs: Callable[[], int], wait_for: WaitFor
) -> None:
    events = proxied.events()
    seq = job_seqs()
    await cellq_bench.proxy.stall(2.0)  # > the 0.5 s request timeout
    with pytest.raises(CommunicationLost):  # InstrumentTimeout, or lost already by a poll
        await proxied.submit(seq, "NOSUCH.S", LONG_PANEL)
    await _expect_lost_then_restored(events, wait_for)
    slot = await _submit_after_recovery(proxied, cellq_bench, seq, "NOSUCH.S")
    assert await proxied.submit(seq, "NOSUCH.S", LONG_PANEL) == slot


async def test_garbage_answer_is_communication_lost_and_recovers(
    proxied: ModbusAnalyzer, cellq_bench: Any, job_seqs: Callable[[], int], wait_for: WaitFor
) -> None:
    events = proxied.events()
    await cellq_bench.proxy.garbage(9)
    await _expect_lost_then_restored(events, wait_for)
    await _submit_after_recovery(proxied, cellq_bench, job_seqs())


async def test_slow_link_under_the_timeout_still_answers(
    proxied: ModbusAnalyzer, cellq_bench: Any, job_seqs: Callable[[], int]
) -> None:
    await cellq_bench.proxy.slow(0.02)
    seq = job_seqs()
    slot = await proxied.submit(seq, "NOSUCH.W", LONG_PANEL)
    assert (await proxied.job(seq)).slot == slot
    assert cellq_bench.submitted(seq) in (1, None)


async def test_slow_link_over_the_timeout_is_lost_then_restored(
    proxied: ModbusAnalyzer, cellq_bench: Any, job_seqs: Callable[[], int], wait_for: WaitFor
) -> None:
    events = proxied.events()
    await cellq_bench.proxy.slow(0.6)  # per chunk, both ways: > the 0.5 s timeout
    await wait_for(events, ConnectionLost)
    await cellq_bench.proxy.slow(0)
    await wait_for(events, ConnectionRestored)
    await _submit_after_recovery(proxied, cellq_bench, job_seqs())


# --------------------------------------------------------------------------- twin faults
@pytest.mark.parametrize(
    ("code", "error"),
    [(2, InvalidArgument), (3, InvalidArgument), (4, InvalidState), (6, Busy), (1, None)],
)
async def test_exception_answers_map_to_typed_errors(
    proxied: ModbusAnalyzer, twin: CellQTwin, code: int, error: type[InstrumentError] | None
) -> None:
    twin.faults.exception(code, None)
    try:
        with pytest.raises(error or CommunicationLost) as raised:
            await proxied.status()
        if error is not None:  # an ICD code: typed, and not a transport failure
            assert not isinstance(raised.value, CommunicationLost)
        assert f"{code:02d}" in str(raised.value)
    finally:
        twin.faults.clear()
    async with asyncio.timeout(HANG_GUARD):
        while True:
            try:
                status = await proxied.status()
                break
            except CommunicationLost:
                await asyncio.sleep(0.05)
    assert status.free_slots >= 0


async def test_busy_answer_to_submit_then_one_job(
    proxied: ModbusAnalyzer, twin: CellQTwin, cellq_bench: Any, job_seqs: Callable[[], int]
) -> None:
    seq = job_seqs()
    twin.faults.exception(6, None)
    with pytest.raises(Busy):
        await proxied.submit(seq, "NOSUCH.B", LONG_PANEL)
    twin.faults.clear()
    assert twin.submitted[seq] == 0
    await _submit_after_recovery(proxied, cellq_bench, seq, "NOSUCH.B")


async def test_silent_analyzer_times_out_then_recovers(
    proxied: ModbusAnalyzer,
    twin: CellQTwin,
    cellq_bench: Any,
    job_seqs: Callable[[], int],
    wait_for: WaitFor,
) -> None:
    events = proxied.events()
    seq = job_seqs()
    twin.faults.silence(None)
    with pytest.raises(CommunicationLost):
        await proxied.submit(seq, "NOSUCH.Q", LONG_PANEL)
    await wait_for(events, ConnectionLost)
    twin.faults.clear()
    await wait_for(events, ConnectionRestored)
    await _submit_after_recovery(proxied, cellq_bench, seq, "NOSUCH.Q")


class _SlowNth(ModbusFaults):
    """Delay only the ``nth`` request from now (the twin still executes it)."""

    def __init__(self, nth: int, seconds: float) -> None:
        super().__init__()
        self._left, self._seconds = nth, seconds
        self._guard = threading.Lock()

    def take(self) -> tuple[float, bool, int | None]:
        with self._guard:
            self._left -= 1
            if self._left == 0:
                return self._seconds, False, None
        return super().take()


async def test_lost_answer_to_a_submit_write_is_not_resent(
    twin: CellQTwin, cellq_bench: Any, job_seqs: Callable[[], int], wait_for: WaitFor
) -> None:
    """The write runs in the analyzer but its answer comes too late: the caller gets
    InstrumentTimeout, nothing is re-sent, and the caller's retry finds the slot."""
    quiet = ModbusSettings(timeout=0.5, poll_interval=3600, backoff_initial=0.05)
    seq = job_seqs()
    async with ModbusAnalyzer("cellq-lost-answer", cellq_bench.endpoint, quiet) as driver:
        events = driver.events()
        saved = twin.faults
        twin.faults = _SlowNth(5, 1.5)  # submit = 4 slot-scan reads, then the write
        try:
            with pytest.raises(InstrumentTimeout):
                await driver.submit(seq, "NOSUCH.L", LONG_PANEL)
            await wait_for(events, ConnectionLost)
            async with asyncio.timeout(HANG_GUARD):  # the late write lands in the twin
                while twin.submitted[seq] == 0:  # noqa: ASYNC110 (a counter in another thread)
                    await asyncio.sleep(0.02)
        finally:
            twin.faults = saved
        await wait_for(events, ConnectionRestored)
        slot = await _submit_after_recovery(driver, cellq_bench, seq, "NOSUCH.L")
        job = await driver.job(seq)
        assert job.slot == slot and job.state is not SlotState.FREE
        assert twin.submitted[seq] == 1
