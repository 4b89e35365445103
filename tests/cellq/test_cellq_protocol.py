"""ICD section 2, one rule at a time, with a plain pymodbus TCP client."""

from __future__ import annotations

import asyncio
import math
import random
import struct

import pytest
from cellq_support import CellQ, exc_code, tcp_client
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st
from pymodbus.exceptions import ModbusIOException

from drivers import icd
from simulators.cellq import CellQTwin
from simulators.world import World
from tests.support import HANG_GUARD, fresh
from tests.support.cellq import LONG_PANEL, SHORT_PANEL, CellQRig, draw_sample

S = icd.SlotState
C = icd.Command

# --------------------------------------------------------------------------- status


async def test_status_registers_of_an_idle_analyzer(cq: CellQ) -> None:
    regs = await cq.status()
    assert regs[icd.IR_STATE] == icd.AnalyzerState.IDLE
    assert regs[icd.IR_FAULT_CODE] == 0
    assert regs[icd.IR_FREE_SLOTS] == icd.SLOT_COUNT
    assert regs[icd.IR_ICD_VERSION] == 1
    assert regs[6:10] == [0, 0, 0, 0]


async def test_heartbeat_moves_with_wall_time(cq: CellQ) -> None:
    first = icd.decode_u32((await cq.status())[3:5])

    async def moved() -> int:
        while True:
            now = icd.decode_u32((await cq.status())[3:5])
            if now != first:
                return now
            await asyncio.sleep(0.05)

    async with asyncio.timeout(HANG_GUARD):
        later = await moved()
    assert later > first


# --------------------------------------------------------------------------- the map


async def test_reads_outside_the_map_answer_02(cq: CellQ) -> None:
    for address, count in ((10, 1), (9, 2), (50, 1), (612, 1), (611, 2), (0, 101)):
        assert exc_code(await cq.read_ir(address, count)) == 2, (address, count)
    for address, count in ((0, 1), (99, 2), (612, 1), (899, 1), (904, 1)):
        assert exc_code(await cq.read_hr(address, count)) == 2, (address, count)


async def test_a_whole_slot_reads_in_one_request_unnamed_offsets_zero(cq: CellQ) -> None:
    regs = await cq.holding(3)
    assert regs == [0] * icd.SLOT_STRIDE
    view = await cq.slot(3)
    assert view.raw == [0] * icd.SLOT_STRIDE  # free: results read 0, not NaN
    # Several slots at once too (the map is contiguous from 100 to 611).
    rr = await cq.read_ir(icd.slot_base(14), 2 * icd.SLOT_STRIDE)
    assert exc_code(rr) is None and len(rr.registers) == 64


async def test_writes_outside_the_map_answer_02_and_change_nothing(cq: CellQ) -> None:
    base = icd.slot_base(2)
    await cq.write(base + icd.HR_SAMPLE_ID, icd.encode_string("KEEP"))
    for address, values in (
        (0, [1]),
        (50, [1]),
        (base + 12, [1]),  # unnamed slot offset
        (base + 31, [1]),
        (base + 10, [7, 7, 7]),  # runs from SampleId into unnamed offsets
        (612, [1]),
        (899, [1, 1]),
        (904, [0]),
    ):
        assert exc_code(await cq.write(address, values)) == 2, address
    holding = await cq.holding(2)
    assert icd.decode_string(holding[icd.HR_SAMPLE_ID : icd.HR_SAMPLE_ID + 8]) == "KEEP"
    assert holding[12:] == [0] * 20
    rr = await cq.client.write_register(base + 12, 5, device_id=1)
    assert exc_code(rr) == 2


async def test_requests_for_another_device_id_get_no_answer(cellq_twin: CellQTwin) -> None:
    client = tcp_client(cellq_twin.port, timeout=0.5)
    assert await client.connect()
    before = cellq_twin.requests
    try:
        async with asyncio.timeout(HANG_GUARD):
            with pytest.raises(ModbusIOException):
                await client.read_input_registers(0, count=1, device_id=2)
        assert cellq_twin.requests == before
        other = CellQ(client, device_id=7)
        async with asyncio.timeout(HANG_GUARD):
            with pytest.raises(ModbusIOException):
                await other.write(icd.slot_base(0) + icd.HR_PANEL, [1])
    finally:
        client.close()
    # The refused write did not land on our device.
    again = tcp_client(cellq_twin.port)
    assert await again.connect()
    try:
        assert (await CellQ(again).holding(0))[icd.HR_PANEL] == 0
    finally:
        again.close()


# --------------------------------------------------------------------------- codecs


@settings(
    max_examples=60, deadline=None, suppress_health_check=[HealthCheck.function_scoped_fixture]
)
@given(
    sample_id=st.from_regex(icd.SAMPLE_ID_RE, fullmatch=True),
    job_seq=st.integers(1, 0xFFFFFFFF),
    panel=st.integers(0, 0xFFFF),
)
async def test_holding_registers_read_back_as_written(
    cq: CellQ, sample_id: str, job_seq: int, panel: int
) -> None:
    words = [*icd.encode_u32(job_seq), panel, *icd.encode_string(sample_id)]
    assert exc_code(await cq.write(icd.slot_base(5), words)) is None
    regs = await cq.holding(5)
    assert icd.decode_u32(regs[0:2]) == job_seq
    assert regs[icd.HR_PANEL] == panel
    assert icd.decode_string(regs[3:11]) == sample_id
    assert regs[3:11] == icd.encode_string(sample_id)  # first character in the high byte


async def test_results_are_float32_high_word_first(cellq_rig: CellQRig, cq: CellQ) -> None:
    """The exact value the world measures, as the ICD encodes it."""
    cartridge, sample_id = fresh("FX"), fresh("F")
    panel = int(icd.Assay.CELL_COUNT | icd.Assay.VIABILITY | icd.Assay.IDENTITY)
    twin_world = cellq_rig.world
    twin_world.insert_cartridge(cartridge, 2.0e8, 88.0)
    twin_world.run_program(cartridge, "sample", {"volume_ml": 1.0, "sample_id": sample_id})
    # A second world with the same seed makes the same cartridge, sample and draws.
    shadow = World(seed=cellq_rig.world.seed)
    shadow.insert_cartridge(cartridge, 2.0e8, 88.0)
    shadow.run_program(cartridge, "sample", {"volume_ml": 1.0, "sample_id": sample_id})
    expected = {a: shadow.measure(sample_id, a) for a in icd.panel_assays(panel)}

    assert await cq.command(0, C.SUBMIT, job_seq=42, sample_id=sample_id, panel=panel) is None
    view = await cq.wait_state(0, S.DONE)
    for assay, value in expected.items():
        off = icd.result_offset(assay)
        hi, lo = view.raw[off : off + 2]
        assert struct.pack(">HH", hi, lo) == struct.pack(">f", value)
    assert expected[icd.Assay.CELL_COUNT] > 1e5  # a real count, not a codec accident


# --------------------------------------------------------------------------- jobs


async def test_a_job_runs_to_done_with_per_mille_progress(cellq_rig: CellQRig, cq: CellQ) -> None:
    sample = draw_sample(cellq_rig.world)
    cellq_rig.clock.scale = 20_000.0  # sterility: 7 days = ~30 s wall; we abort long before
    panel = int(icd.Assay.IDENTITY | icd.Assay.STERILITY)
    assert await cq.command(1, C.SUBMIT, job_seq=5, sample_id=sample, panel=panel) is None
    first = await cq.wait_slot(1, lambda v: v.state == S.RUNNING and v.progress > 0)
    second = await cq.wait_slot(1, lambda v: v.progress > first.progress)
    assert 0 < first.progress < second.progress < 1000
    assert second.job_seq == 5
    assert all(math.isnan(x) for x in second.results.values())  # running: all NaN
    assert await cq.command(1, C.ABORT, job_seq=5) is None

    sample = draw_sample(cellq_rig.world)
    assert await cq.command(2, C.SUBMIT, job_seq=6, sample_id=sample, panel=3) is None
    done = await cq.wait_state(2, S.DONE)
    assert done.progress == 1000 and done.fault == 0


async def test_results_nan_for_assays_not_in_the_panel(cellq_rig: CellQRig, cq: CellQ) -> None:
    sample = draw_sample(cellq_rig.world)
    panel = int(icd.Assay.VIABILITY | icd.Assay.ENDOTOXIN)
    assert await cq.command(4, C.SUBMIT, job_seq=9, sample_id=sample, panel=panel) is None
    view = await cq.wait_state(4, S.DONE)
    for assay, value in view.results.items():
        if assay & panel:
            assert not math.isnan(value), assay
        else:
            assert math.isnan(value), assay
    assert 0.0 <= view.results[icd.Assay.VIABILITY] <= 100.0


async def test_unknown_sample_fails_with_job_fault_1(cq: CellQ) -> None:
    assert await cq.command(0, C.SUBMIT, job_seq=1, sample_id=fresh("NOPE")) is None
    view = await cq.wait_state(0, S.FAILED)
    assert view.fault == icd.JobFault.UNKNOWN_SAMPLE
    assert all(math.isnan(x) for x in view.results.values())


async def test_insufficient_volume_fails_with_job_fault_2(cellq_rig: CellQRig, cq: CellQ) -> None:
    sample = draw_sample(cellq_rig.world, volume_ml=0.05)  # the full panel needs 0.94 mL
    assert await cq.command(0, C.SUBMIT, job_seq=2, sample_id=sample, panel=0x7F) is None
    view = await cq.wait_state(0, S.FAILED)
    assert view.fault == icd.JobFault.INSUFFICIENT_VOLUME


async def test_four_jobs_run_at_once_the_fifth_waits(cellq_rig: CellQRig, cq: CellQ) -> None:
    sample = draw_sample(cellq_rig.world)
    for slot in range(5):
        err = await cq.command(slot, C.SUBMIT, job_seq=100 + slot, sample_id=sample, panel=32)
        assert err is None
    states = [(await cq.slot(s)).state for s in range(5)]
    assert states == [S.RUNNING] * 4 + [S.QUEUED]
    regs = await cq.status()
    assert regs[icd.IR_STATE] == icd.AnalyzerState.BUSY
    assert regs[icd.IR_FREE_SLOTS] == icd.SLOT_COUNT - 5
    # One running job ends: the queued one starts.
    assert await cq.command(2, C.ABORT, job_seq=102) is None
    await cq.wait_state(4, S.RUNNING)
    for slot in (0, 1, 3, 4):
        assert await cq.command(slot, C.ABORT, job_seq=100 + slot) is None
    assert (await cq.status())[icd.IR_STATE] == icd.AnalyzerState.IDLE  # aborted is not busy


async def test_submit_is_idempotent_by_job_seq(
    cellq_rig: CellQRig, cellq_twin: CellQTwin, cq: CellQ
) -> None:
    sample = draw_sample(cellq_rig.world)
    for _ in range(3):
        err = await cq.command(7, C.SUBMIT, job_seq=777, sample_id=sample, panel=LONG_PANEL)
        assert err is None
    assert cellq_twin.submitted[777] == 1
    # Checked first: even with arguments that would be refused now.
    assert await cq.command(7, C.SUBMIT, job_seq=777, sample_id="", panel=0) is None
    assert cellq_twin.submitted[777] == 1
    assert (await cq.slot(7)).state == S.RUNNING
    assert await cq.command(7, C.ABORT, job_seq=777) is None
    assert await cq.command(7, C.SUBMIT, job_seq=777, sample_id=sample) is None  # aborted too
    assert cellq_twin.submitted[777] == 1


@pytest.mark.parametrize(
    ("job_seq", "sample_id", "panel", "raw_sample"),
    [
        (0, "S1", 1, None),  # JobSeq 0
        (1, "", 1, None),  # empty SampleId
        (1, "a b", 1, None),  # malformed SampleId
        (1, "A", 1, [0x4100, 0x0042, 0, 0, 0, 0, 0, 0]),  # characters after the NUL
        (1, "S1", 0, None),  # empty panel
        (1, "S1", 0x80, None),  # unknown panel bit
        (1, "S1", 0x8001, None),
    ],
)
async def test_bad_submit_answers_03_and_creates_nothing(
    cellq_twin: CellQTwin,
    cq: CellQ,
    job_seq: int,
    sample_id: str,
    panel: int,
    raw_sample: list[int],
) -> None:
    before = sum(cellq_twin.submitted.values())
    err = await cq.command(
        6, C.SUBMIT, job_seq=job_seq, sample_id=sample_id, panel=panel, raw_sample=raw_sample
    )
    assert err == icd.EXC_ILLEGAL_VALUE
    assert (await cq.slot(6)).state == S.FREE
    assert (await cq.holding(6))[icd.HR_COMMAND] == 0
    assert sum(cellq_twin.submitted.values()) == before


async def test_unknown_command_answers_03(cq: CellQ) -> None:
    assert exc_code(await cq.write(icd.slot_base(0) + icd.HR_COMMAND, [4])) == 3
    assert (await cq.holding(0))[icd.HR_COMMAND] == 0


async def test_command_is_applied_after_the_data_of_the_same_write(
    cellq_rig: CellQRig, cq: CellQ
) -> None:
    """One write-multiple with the command register last: the data counts."""
    sample = draw_sample(cellq_rig.world)
    assert await cq.command(9, C.SUBMIT, job_seq=0xDEADBEEF, sample_id=sample) is None
    view = await cq.slot(9)
    assert view.job_seq == 0xDEADBEEF and view.state != S.FREE


# --------------------------------------------------------------------------- command x state


async def _put_in_state(cellq_rig: CellQRig, cq: CellQ, slot: int, state: S, job_seq: int) -> None:
    if state is S.FREE:
        return
    sample = draw_sample(cellq_rig.world)
    if state is S.QUEUED:
        for filler in range(4):
            err = await cq.command(
                12 + filler, C.SUBMIT, job_seq=9000 + filler, sample_id=sample, panel=LONG_PANEL
            )
            assert err is None
    if state is S.FAILED:
        sample = fresh("MISSING")
    panel = SHORT_PANEL if state is S.DONE else LONG_PANEL
    assert await cq.command(slot, C.SUBMIT, job_seq=job_seq, sample_id=sample, panel=panel) is None
    if state is S.ABORTED:
        assert await cq.command(slot, C.ABORT, job_seq=job_seq) is None
    await cq.wait_state(slot, state)


# (command, state) -> (exception code or None, state after)
EXPECTED: dict[tuple[C, S], tuple[int | None, S]] = {
    (C.SUBMIT, S.FREE): (None, S.RUNNING),
    (C.SUBMIT, S.QUEUED): (6, S.QUEUED),
    (C.SUBMIT, S.RUNNING): (6, S.RUNNING),
    (C.SUBMIT, S.DONE): (6, S.DONE),
    (C.SUBMIT, S.FAILED): (6, S.FAILED),
    (C.SUBMIT, S.ABORTED): (6, S.ABORTED),
    (C.ABORT, S.FREE): (6, S.FREE),
    (C.ABORT, S.QUEUED): (None, S.ABORTED),
    (C.ABORT, S.RUNNING): (None, S.ABORTED),
    (C.ABORT, S.DONE): (6, S.DONE),
    (C.ABORT, S.FAILED): (6, S.FAILED),
    (C.ABORT, S.ABORTED): (6, S.ABORTED),
    (C.RELEASE, S.FREE): (6, S.FREE),
    (C.RELEASE, S.QUEUED): (6, S.QUEUED),
    (C.RELEASE, S.RUNNING): (6, S.RUNNING),
    (C.RELEASE, S.DONE): (None, S.FREE),
    (C.RELEASE, S.FAILED): (None, S.FREE),
    (C.RELEASE, S.ABORTED): (None, S.FREE),
}


@pytest.mark.parametrize(("command", "state"), list(EXPECTED), ids=lambda x: x.name)
async def test_command_in_slot_state(
    cellq_rig: CellQRig, cellq_twin: CellQTwin, cq: CellQ, command: C, state: S
) -> None:
    slot, job_seq = 0, 50
    await _put_in_state(cellq_rig, cq, slot, state, job_seq)
    # submit uses a new JobSeq (the same one is the idempotent case); abort and release
    # name the slot's own JobSeq (0 for a free slot).
    seq = 51 if command is C.SUBMIT else (0 if state is S.FREE else job_seq)
    sample = draw_sample(cellq_rig.world)
    expected_code, expected_state = EXPECTED[(command, state)]
    err = await cq.command(slot, command, job_seq=seq, sample_id=sample, panel=LONG_PANEL)
    assert err == expected_code
    view = await cq.slot(slot)
    assert view.state == expected_state
    assert (await cq.holding(slot))[icd.HR_COMMAND] == 0
    if expected_state is S.FREE and state is not S.FREE:
        assert view.raw == [0] * icd.SLOT_STRIDE
    if (command, state) == (C.SUBMIT, S.FREE):
        assert cellq_twin.submitted[51] >= 1 and view.job_seq == 51


@pytest.mark.parametrize("command", [C.ABORT, C.RELEASE], ids=lambda c: c.name)
@pytest.mark.parametrize("state", [S.RUNNING, S.DONE, S.ABORTED], ids=lambda s: s.name)
async def test_abort_and_release_need_the_slots_job_seq(
    cellq_rig: CellQRig, cq: CellQ, command: C, state: S
) -> None:
    await _put_in_state(cellq_rig, cq, 0, state, 60)
    assert await cq.command(0, command, job_seq=61) == icd.EXC_ILLEGAL_VALUE
    view = await cq.slot(0)
    assert view.state == state and view.job_seq == 60


async def test_release_zeroes_every_register_of_the_slot(cellq_rig: CellQRig, cq: CellQ) -> None:
    sample = draw_sample(cellq_rig.world)
    assert await cq.command(8, C.SUBMIT, job_seq=88, sample_id=sample, panel=0x1F) is None
    await cq.wait_state(8, S.DONE)
    assert (await cq.holding(8))[:11] != [0] * 11
    assert await cq.command(8, C.RELEASE, job_seq=88, sample_id=sample, panel=0x1F) is None
    assert (await cq.holding(8)) == [0] * icd.SLOT_STRIDE
    assert (await cq.slot(8)).raw == [0] * icd.SLOT_STRIDE
    assert (await cq.status())[icd.IR_FREE_SLOTS] == icd.SLOT_COUNT


# --------------------------------------------------------------------------- analyzer fault


async def _raise(cq: CellQ, code: int) -> int | None:
    return exc_code(await cq.write(icd.TWIN_HR_FAULT_CODE, [code, 1]))


async def test_analyzer_fault_fails_running_jobs_and_holds_queued_ones(
    cellq_rig: CellQRig, cq: CellQ
) -> None:
    sample = draw_sample(cellq_rig.world)
    for slot in range(5):
        err = await cq.command(slot, C.SUBMIT, job_seq=200 + slot, sample_id=sample, panel=32)
        assert err is None
    assert await _raise(cq, 17) is None
    regs = await cq.status()
    assert regs[icd.IR_STATE] == icd.AnalyzerState.FAULTED
    assert regs[icd.IR_FAULT_CODE] == 17
    for slot in range(4):
        view = await cq.slot(slot)
        assert (view.state, view.fault) == (S.FAILED, icd.JobFault.ASSAY_FAILURE)
    assert (await cq.slot(4)).state == S.QUEUED
    assert (await cq.read_hr(icd.TWIN_HR_FAULT_CODE, 2)).registers == [17, 1]

    # Order of the checks: bad arguments (03) before faulted (04) before not free (06).
    assert await cq.command(5, C.SUBMIT, job_seq=0, sample_id=sample) == 3
    assert await cq.command(5, C.SUBMIT, job_seq=205, sample_id=sample) == 4
    assert await cq.command(0, C.SUBMIT, job_seq=299, sample_id=sample) == 4
    assert (await cq.slot(5)).state == S.FREE
    # Idempotency is checked before the fault.
    assert await cq.command(4, C.SUBMIT, job_seq=204, sample_id=sample, panel=32) is None
    # Queued jobs wait for as long as the fault lasts (two heartbeat-free polls).
    await asyncio.sleep(0.05)
    assert (await cq.slot(4)).state == S.QUEUED

    assert exc_code(await cq.write(icd.TWIN_HR_FAULT_RAISE, [0])) is None
    await cq.wait_state(4, S.RUNNING)
    regs = await cq.status()
    assert regs[icd.IR_STATE] == icd.AnalyzerState.BUSY and regs[icd.IR_FAULT_CODE] == 0
    assert await cq.command(4, C.ABORT, job_seq=204) is None


async def test_raising_a_fault_needs_a_code(cq: CellQ) -> None:
    assert await _raise(cq, 0) == icd.EXC_ILLEGAL_VALUE
    assert exc_code(await cq.write(icd.TWIN_HR_FAULT_RAISE, [2])) == icd.EXC_ILLEGAL_VALUE
    assert (await cq.status())[icd.IR_STATE] == icd.AnalyzerState.IDLE


async def test_time_scale_twin_register(cellq_rig: CellQRig, cq: CellQ) -> None:
    rr = await cq.read_hr(icd.TWIN_HR_TIME_SCALE, 2)
    assert icd.decode_f32(rr.registers) == pytest.approx(cellq_rig.clock.scale)
    assert exc_code(await cq.write(icd.TWIN_HR_TIME_SCALE, icd.encode_f32(3600.0))) is None
    assert cellq_rig.clock.scale == 3600.0
    rr = await cq.read_hr(icd.TWIN_HR_TIME_SCALE, 2)
    assert icd.decode_f32(rr.registers) == 3600.0
    for bad in (0.0, -1.0, math.inf, math.nan):
        err = exc_code(await cq.write(icd.TWIN_HR_TIME_SCALE, icd.encode_f32(bad)))
        assert err == icd.EXC_ILLEGAL_VALUE
    assert cellq_rig.clock.scale == 3600.0


# --------------------------------------------------------------------------- bad input


async def test_garbage_on_tcp_does_not_stop_the_twin(cellq_twin: CellQTwin, cq: CellQ) -> None:
    rng = random.Random(3)
    for size in (1, 7, 12, 300, 4000):
        reader, writer = await asyncio.open_connection("127.0.0.1", cellq_twin.port)
        writer.write(bytes(rng.randrange(256) for _ in range(size)))
        await writer.drain()
        # Whatever it answers (an exception frame, nothing, a close), it must not die.
        try:
            async with asyncio.timeout(0.2):
                await reader.read(1024)
        except TimeoutError:
            pass
        writer.close()
    # A frame with a valid header but an unknown function code answers exception 01
    # (pymodbus 3.16.1 sends it with function code 0x80, not 0xC1).
    reader, writer = await asyncio.open_connection("127.0.0.1", cellq_twin.port)
    writer.write(bytes([0, 9, 0, 0, 0, 2, 1, 0x41]))
    await writer.drain()
    async with asyncio.timeout(HANG_GUARD):
        answer = await reader.read(1024)
    writer.close()
    assert answer[7] & 0x80 and answer[8] == 1
    assert (await cq.status())[icd.IR_ICD_VERSION] == 1


async def test_a_write_single_answer_echoes_the_request(cq: CellQ) -> None:
    rr = await cq.client.write_register(icd.slot_base(0) + icd.HR_COMMAND, 2, device_id=1)
    assert exc_code(rr) == 6  # abort of a free slot (JobSeq 0 matches): not applicable
    rr = await cq.client.write_register(icd.slot_base(0) + icd.HR_PANEL, 5, device_id=1)
    assert exc_code(rr) is None and rr.registers == [5]


@settings(
    max_examples=150, deadline=None, suppress_health_check=[HealthCheck.function_scoped_fixture]
)
@given(
    address=st.integers(0, 1000),
    values=st.lists(st.integers(0, 0xFFFF), min_size=1, max_size=16),
    read_count=st.integers(1, 125),
)
async def test_any_write_or_read_gets_an_icd_answer_and_the_twin_keeps_serving(
    cellq_twin: CellQTwin, cq: CellQ, address: int, values: list[int], read_count: int
) -> None:
    assert exc_code(await cq.write(address, values)) in (None, 2, 3, 4, 6)
    assert exc_code(await cq.read_hr(address, read_count)) in (None, 2)
    assert exc_code(await cq.read_ir(address, read_count)) in (None, 2)
    regs = await cq.status()
    assert regs[icd.IR_ICD_VERSION] == 1
    assert regs[icd.IR_FREE_SLOTS] == sum(s.job is None for s in cellq_twin.slots)
    for slot in cellq_twin.slots:  # the command register never keeps a value
        assert slot.holding_registers()[icd.HR_COMMAND] == 0


# --------------------------------------------------------------------------- ICD 1.1


async def test_a_job_seq_held_by_another_slot_answers_03_and_creates_nothing(
    cellq_rig: CellQRig, cellq_twin: CellQTwin, cq: CellQ
) -> None:
    sample = draw_sample(cellq_rig.world)
    assert await cq.command(2, C.SUBMIT, job_seq=4242, sample_id=sample, panel=LONG_PANEL) is None
    created = await cq.jobs_created()
    # A re-send into the wrong slot (a client that lost the answer and forgot the slot)
    err = await cq.command(5, C.SUBMIT, job_seq=4242, sample_id=sample, panel=LONG_PANEL)
    assert err == icd.EXC_ILLEGAL_VALUE
    assert (await cq.slot(5)).state == S.FREE
    assert (await cq.holding(5))[icd.HR_COMMAND] == 0
    assert await cq.jobs_created() == created
    assert cellq_twin.submitted[4242] == 1
    # The same slot is still the idempotent answer; once released, the JobSeq is free.
    assert await cq.command(2, C.SUBMIT, job_seq=4242, sample_id=sample) is None
    assert await cq.command(2, C.ABORT, job_seq=4242) is None
    assert await cq.command(2, C.RELEASE, job_seq=4242) is None
    assert await cq.command(5, C.SUBMIT, job_seq=4242, sample_id=sample) is None
    assert await cq.jobs_created() == created + 1


async def test_jobs_created_counter_counts_jobs_not_repeats(cellq_rig: CellQRig, cq: CellQ) -> None:
    sample = draw_sample(cellq_rig.world)
    start = await cq.jobs_created()
    for slot, seq in ((0, 10), (0, 10), (1, 11), (1, 11)):  # each repeat is idempotent
        assert await cq.command(slot, C.SUBMIT, job_seq=seq, sample_id=sample) is None
    assert await cq.command(2, C.SUBMIT, job_seq=0, sample_id=sample) == 3  # refused
    assert await cq.command(2, C.SUBMIT, job_seq=11, sample_id=sample) == 3  # held by slot 1
    assert await cq.jobs_created() == start + 2
    # uint32, high word first; a read of half of it answers, a read past it is 02
    high, low = (await cq.read_ir(icd.TWIN_IR_JOBS_CREATED, 2)).registers
    assert (high << 16) | low == start + 2
    assert exc_code(await cq.read_ir(icd.TWIN_IR_JOBS_CREATED + 1, 2)) == 2
    assert exc_code(await cq.read_ir(icd.TWIN_IR_JOBS_CREATED - 1, 2)) == 2


async def test_an_unknown_sample_fails_when_the_job_starts_not_when_queued(
    cellq_rig: CellQRig, cq: CellQ
) -> None:
    """ICD 1.1: the analyzer knows a sample once a shuttle of its cell drew it (the
    tube is handed over); a job whose tube never came fails with job fault 1 when it
    starts. A sample drawn while its job waits in the queue is known by then."""
    known = draw_sample(cellq_rig.world)
    for slot in range(4):  # four long jobs take every runner
        err = await cq.command(slot, C.SUBMIT, job_seq=300 + slot, sample_id=known, panel=32)
        assert err is None
    late, never = fresh("LATE"), fresh("NEVER")
    assert await cq.command(4, C.SUBMIT, job_seq=304, sample_id=late, panel=1) is None
    assert await cq.command(5, C.SUBMIT, job_seq=305, sample_id=never, panel=1) is None
    assert [(await cq.slot(s)).state for s in (4, 5)] == [S.QUEUED, S.QUEUED]
    assert (await cq.slot(5)).fault == 0
    cart = fresh("QC")  # the tube of the first queued job arrives while it waits
    cellq_rig.world.insert_cartridge(cart, 1.0e8, 92.0)
    cellq_rig.world.run_program(cart, "sample", {"volume_ml": 1.0, "sample_id": late})
    for slot in (0, 1):  # two runners free up: both queued jobs start
        assert await cq.command(slot, C.ABORT, job_seq=300 + slot) is None
    done = await cq.wait_state(4, S.DONE)
    assert done.fault == 0 and not math.isnan(done.results[icd.Assay.CELL_COUNT])
    failed = await cq.wait_state(5, S.FAILED)
    assert failed.fault == icd.JobFault.UNKNOWN_SAMPLE


@pytest.mark.parametrize("scale", [icd.TWIN_TIME_SCALE_MIN, icd.TWIN_TIME_SCALE_MAX])
async def test_time_scale_range_ends_are_accepted(
    cellq_rig: CellQRig, cq: CellQ, scale: float
) -> None:
    assert exc_code(await cq.write(icd.TWIN_HR_TIME_SCALE, icd.encode_f32(scale))) is None
    assert cellq_rig.clock.scale == pytest.approx(scale, rel=1e-6)


@pytest.mark.parametrize("scale", [0.0009, 1.1e7, -1.0, 1e-300])
async def test_time_scale_outside_its_range_answers_03(
    cellq_rig: CellQRig, cq: CellQ, scale: float
) -> None:
    before = cellq_rig.clock.scale
    assert exc_code(await cq.write(icd.TWIN_HR_TIME_SCALE, icd.encode_f32(scale))) == 3
    assert cellq_rig.clock.scale == before
