"""Cell Q conformance: ModbusAnalyzer against the ICD section 2 analyzer (the twin, a
third-party twin or a real one: CELLFAB_CELLQ_ADDR).

What needs the world (a known sample) or the section 4 controls (a fault, the
jobs-created counter) says so and skips on an analyzer without them; see conftest.
"""

from __future__ import annotations

import math
from collections.abc import Callable

import pytest

from drivers import base, icd
from drivers.base import (
    AnalyzerStatusChanged,
    Busy,
    InvalidArgument,
    InvalidState,
    JobChanged,
    JobStatus,
)
from drivers.icd import AnalyzerState, Assay, JobFault, SlotState
from drivers.modbus import ModbusAnalyzer
from simulators.cellq_controls import CellQControls
from tests.support import eventually, fresh, next_event
from tests.support.cellq import CellQBench, assert_created, jobs_created, require

pytestmark = pytest.mark.hil

COUNT_PANEL = Assay.CELL_COUNT | Assay.VIABILITY
LONG_PANEL = Assay.STERILITY  # 7 days of process time: stays queued/running for minutes
ACTIVE = (SlotState.QUEUED, SlotState.RUNNING)


async def _job_until(
    analyzer: ModbusAnalyzer, seq: int, ok: Callable[[JobStatus], bool]
) -> JobStatus:
    return await eventually(lambda: analyzer.job(seq), f"job {seq}", ok)


async def test_driver_implements_the_analyzer_protocol(analyzer: ModbusAnalyzer) -> None:
    assert isinstance(analyzer, base.Analyzer)
    assert analyzer.connected


async def test_status_reads_the_analyzer_state(analyzer: ModbusAnalyzer) -> None:
    status = await analyzer.status()
    assert isinstance(status.state, AnalyzerState)
    assert 0 <= status.free_slots <= icd.SLOT_COUNT
    occupied = await analyzer.jobs()
    assert status.free_slots == icd.SLOT_COUNT - len(occupied)


async def test_submit_is_idempotent_by_job_seq(
    analyzer: ModbusAnalyzer,
    cellq_bench: CellQBench,
    controls: CellQControls,
    job_seqs: Callable[[], int],
) -> None:
    before = await jobs_created(controls)
    seq = job_seqs()
    slot = await analyzer.submit(seq, "NOSUCH1", LONG_PANEL)
    assert 0 <= slot < icd.SLOT_COUNT
    assert await analyzer.submit(seq, "NOSUCH1", LONG_PANEL) == slot
    # A lost answer and a restart look the same: a new driver (no memory of the slot)
    # writes into another slot it believes free; ICD 1.1 refuses a JobSeq that another
    # slot holds (03), and the driver finds the job where it is.
    async with ModbusAnalyzer("cellq-restarted", cellq_bench.endpoint) as again:
        assert await again.submit(seq, "NOSUCH1", LONG_PANEL) == slot
    job = await analyzer.job(seq)
    assert (job.slot, job.job_seq) == (slot, seq)
    assert job.state in (*ACTIVE, SlotState.FAILED)
    assert [j.slot for j in await analyzer.jobs() if j.job_seq == seq] == [slot]
    await assert_created(controls, before, 1)


async def test_two_jobs_get_two_slots(
    analyzer: ModbusAnalyzer, controls: CellQControls, job_seqs: Callable[[], int]
) -> None:
    before = await jobs_created(controls)
    a, b = job_seqs(), job_seqs()
    slot_a = await analyzer.submit(a, "NOSUCH2", LONG_PANEL)
    slot_b = await analyzer.submit(b, "NOSUCH3", LONG_PANEL)
    assert slot_a != slot_b
    assert {(await analyzer.job(a)).slot, (await analyzer.job(b)).slot} == {slot_a, slot_b}
    await assert_created(controls, before, 2)


@pytest.mark.parametrize(
    ("job_seq", "sample_id", "panel"),
    [
        (0, "S1", COUNT_PANEL),
        (2**32, "S1", COUNT_PANEL),
        (5, "", COUNT_PANEL),
        (5, "TOO-LONG-SAMPLE-ID", COUNT_PANEL),
        (5, "bad id", COUNT_PANEL),
        (5, "S1", Assay(0)),
        (5, "S1", 0x80),
    ],
)
async def test_malformed_submits_are_invalid_arguments(
    analyzer: ModbusAnalyzer, job_seq: int, sample_id: str, panel: Assay
) -> None:
    with pytest.raises(InvalidArgument):
        await analyzer.submit(job_seq, sample_id, panel)
    assert all(j.job_seq != job_seq for j in await analyzer.jobs())


async def test_unknown_job_is_an_invalid_argument(analyzer: ModbusAnalyzer) -> None:
    with pytest.raises(InvalidArgument):
        await analyzer.job(4_294_967_295)
    with pytest.raises(InvalidArgument):
        await analyzer.abort(4_294_967_295)
    await analyzer.release(4_294_967_295)  # released already: changes nothing


async def test_job_runs_to_done_with_the_panel_results(
    analyzer: ModbusAnalyzer,
    cellq_bench: CellQBench,
    controls: CellQControls,
    job_seqs: Callable[[], int],
) -> None:
    require(controls, "a job that completes in test time")
    sample = cellq_bench.sample()
    seq = job_seqs()
    await analyzer.submit(seq, sample, COUNT_PANEL)
    done = await _job_until(analyzer, seq, lambda j: j.state not in ACTIVE)
    assert done.state is SlotState.DONE, done
    assert done.fault is JobFault.NONE
    assert done.progress_permille == 1000
    assert set(done.results) == {Assay.CELL_COUNT, Assay.VIABILITY}
    assert done.results[Assay.CELL_COUNT] > 0
    assert 0 < done.results[Assay.VIABILITY] <= 100
    assert all(math.isfinite(v) for v in done.results.values())
    await analyzer.release(seq)
    with pytest.raises(InvalidArgument):
        await analyzer.job(seq)
    await analyzer.release(seq)  # a repeat finds the slot free: nothing sent


async def test_a_never_drawn_sample_fails_with_job_fault_1_when_it_starts(
    analyzer: ModbusAnalyzer, job_seqs: Callable[[], int]
) -> None:
    """ICD 1.1: a sample is known once a shuttle of its cell drew it; no tube, no job."""
    seq = job_seqs()
    await analyzer.submit(seq, fresh("NEVER"), Assay.CELL_COUNT)
    failed = await _job_until(analyzer, seq, lambda j: j.state is SlotState.FAILED)
    assert failed.fault is JobFault.UNKNOWN_SAMPLE
    assert failed.results == {}


async def test_a_drawn_sample_is_known(
    analyzer: ModbusAnalyzer, cellq_bench: CellQBench, job_seqs: Callable[[], int]
) -> None:
    sample = cellq_bench.sample()
    seq = job_seqs()
    await analyzer.submit(seq, sample, LONG_PANEL)
    running = await _job_until(analyzer, seq, lambda j: j.state is not SlotState.QUEUED)
    assert running.state is SlotState.RUNNING and running.fault is JobFault.NONE


async def test_abort_a_running_job_and_repeat_it(
    analyzer: ModbusAnalyzer,
    cellq_bench: CellQBench,
    controls: CellQControls,
    job_seqs: Callable[[], int],
) -> None:
    sample = cellq_bench.sample()
    before = await jobs_created(controls)
    seq = job_seqs()
    await analyzer.submit(seq, sample, LONG_PANEL)
    await _job_until(analyzer, seq, lambda j: j.state is SlotState.RUNNING)
    await analyzer.abort(seq)
    assert (await analyzer.job(seq)).state is SlotState.ABORTED
    await analyzer.abort(seq)  # the read shows it aborted: nothing sent
    assert (await analyzer.job(seq)).state is SlotState.ABORTED
    await analyzer.release(seq)
    with pytest.raises(InvalidArgument):
        await analyzer.job(seq)
    await assert_created(controls, before, 1)


async def test_abort_of_a_finished_job_is_invalid_state(
    analyzer: ModbusAnalyzer, job_seqs: Callable[[], int]
) -> None:
    seq = job_seqs()
    await analyzer.submit(seq, fresh("NEVER"), Assay.VIABILITY)
    await _job_until(analyzer, seq, lambda j: j.state is SlotState.FAILED)
    with pytest.raises(InvalidState):
        await analyzer.abort(seq)


async def test_release_of_a_running_job_is_invalid_state(
    analyzer: ModbusAnalyzer, cellq_bench: CellQBench, job_seqs: Callable[[], int]
) -> None:
    sample = cellq_bench.sample()
    seq = job_seqs()
    await analyzer.submit(seq, sample, LONG_PANEL)
    await _job_until(analyzer, seq, lambda j: j.state is SlotState.RUNNING)
    with pytest.raises(InvalidState):
        await analyzer.release(seq)
    assert (await analyzer.job(seq)).state is SlotState.RUNNING


async def test_full_analyzer_answers_busy(
    analyzer: ModbusAnalyzer, controls: CellQControls, job_seqs: Callable[[], int]
) -> None:
    free = (await analyzer.status()).free_slots
    before = await jobs_created(controls)
    seqs = [job_seqs() for _ in range(free)]
    slots = [await analyzer.submit(seq, "NOSUCH9", LONG_PANEL) for seq in seqs]
    assert len(set(slots)) == free
    assert (await analyzer.status()).free_slots == 0
    with pytest.raises(Busy):
        await analyzer.submit(job_seqs(), "NOSUCH9", LONG_PANEL)
    # a resubmit of a job already in a slot still answers its slot when full
    assert await analyzer.submit(seqs[-1], "NOSUCH9", LONG_PANEL) == slots[-1]
    await assert_created(controls, before, free)


async def test_events_follow_a_job_to_done(
    analyzer: ModbusAnalyzer,
    cellq_bench: CellQBench,
    controls: CellQControls,
    job_seqs: Callable[[], int],
) -> None:
    require(controls, "a job that completes in test time")
    sample = cellq_bench.sample()
    first, second = analyzer.events(), analyzer.events()
    seq = job_seqs()
    await analyzer.submit(seq, sample, COUNT_PANEL)

    def done(e: JobChanged) -> bool:
        return e.job.job_seq == seq and e.job.state is SlotState.DONE

    event = await next_event(first, JobChanged, done)
    assert set(event.job.results) == {Assay.CELL_COUNT, Assay.VIABILITY}
    # the second subscriber gets the same events, independently
    again = await next_event(second, JobChanged, done)
    assert again.job == event.job
    await analyzer.release(seq)
    freed = await next_event(first, JobChanged, lambda e: e.job.job_seq == seq)
    assert freed.job.state is SlotState.FREE


async def test_analyzer_fault_fails_running_jobs_and_refuses_submits(
    analyzer: ModbusAnalyzer,
    cellq_bench: CellQBench,
    controls: CellQControls,
    job_seqs: Callable[[], int],
) -> None:
    require(controls, "raising an analyzer fault")
    sample = cellq_bench.sample()
    seq = job_seqs()
    events = analyzer.events()
    await analyzer.submit(seq, sample, LONG_PANEL)
    await _job_until(analyzer, seq, lambda j: j.state is SlotState.RUNNING)
    await controls.raise_fault(42)
    try:
        faulted = await next_event(
            events, AnalyzerStatusChanged, lambda e: e.state is AnalyzerState.FAULTED
        )
        assert faulted.fault_code == 42
        failed = await next_event(
            events, JobChanged, lambda e: e.job.job_seq == seq and e.job.state is SlotState.FAILED
        )
        assert failed.job.fault is JobFault.ASSAY_FAILURE
        before = await jobs_created(controls)
        with pytest.raises(InvalidState):  # exception 04
            await analyzer.submit(job_seqs(), sample, COUNT_PANEL)
        await assert_created(controls, before, 0)
    finally:
        await controls.clear_fault()
    cleared = await next_event(events, AnalyzerStatusChanged)
    assert cleared.state is not AnalyzerState.FAULTED and cleared.fault_code == 0
