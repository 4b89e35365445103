"""The Modbus driver against a hostile Cell Q (hostile_modbus.py: the twin behind a
proxy that rewrites one answer): a wrong transaction id, length, function or unit id,
exception codes outside the ICD, register values outside their ranges, a JobSeq that
does not match, non-ASCII strings, NaN or infinity, megabytes of garbage. Each ends in
a typed error (CommunicationLost for anything out of the ICD) in bounded time (the
request timeout; the hang guard only catches a hang), never a crash, a hang or a value
passed on unchecked; and the driver recovers by itself.
"""

from __future__ import annotations

import math
import struct
from collections.abc import AsyncIterator, Awaitable, Callable
from typing import Any, Final

import pytest
from hostile_modbus import (
    HostileCellQ,
    address_of,
    count_of,
    function_of,
    registers_of,
    with_registers,
)
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from drivers import icd
from drivers.base import (
    CommunicationLost,
    InstrumentError,
    InvalidArgument,
    InvalidState,
    JobStatus,
)
from drivers.icd import AnalyzerState, Assay, Command, JobFault, SlotState
from drivers.modbus import ModbusAnalyzer, ModbusSettings, TcpEndpoint
from simulators.cellq import CellQTwin
from tests.support import eventually
from tests.support.cellq import CellQRig, draw_sample

QUIET: Final = ModbusSettings(
    timeout=0.3, poll_interval=3600, heartbeat_timeout=3600, backoff_initial=0.02, backoff_max=0.05
)
SOME: Final = settings(
    max_examples=25, deadline=None, suppress_health_check=[HealthCheck.function_scoped_fixture]
)
REG = st.integers(0, 0xFFFF)


@pytest.fixture
async def hostile(cellq_twin: CellQTwin) -> AsyncIterator[HostileCellQ]:
    server = HostileCellQ(cellq_twin.port)
    await server.start()
    yield server
    await server.stop()


@pytest.fixture
async def driver(hostile: HostileCellQ) -> AsyncIterator[ModbusAnalyzer]:
    async with ModbusAnalyzer("hostile", TcpEndpoint("127.0.0.1", hostile.port), QUIET) as d:
        yield d


async def back(driver: ModbusAnalyzer) -> None:
    """The driver has recovered: a normal call answers."""

    async def status() -> object:
        try:
            return await driver.status()
        except CommunicationLost:
            return None

    await eventually(status, "driver recovered", lambda s: s is not None)


def reads(fc: int, address: int | None = None) -> Callable[[bytes], bool]:
    def match(request: bytes) -> bool:
        return function_of(request) == fc and (address is None or address_of(request) == address)

    return match


STATUS_READ = reads(icd.FC_READ_INPUT, 0)


async def lost_then_back(driver: ModbusAnalyzer, call: Callable[[], Awaitable[Any]]) -> str:
    with pytest.raises(CommunicationLost) as raised:
        await call()
    await back(driver)
    return str(raised.value)


# --------------------------------------------------------------------------- framing
@pytest.mark.parametrize(
    ("what", "change"),
    [
        ("transaction id", lambda q, a: struct.pack(">H", (q[0] << 8 | q[1]) ^ 0x5A5A) + a[2:]),
        ("protocol id", lambda q, a: a[:2] + b"\x00\x07" + a[4:]),
        ("unit id", lambda q, a: a[:6] + bytes([a[6] ^ 1]) + a[7:]),
        ("function code", lambda q, a: a[:7] + bytes([icd.FC_READ_HOLDING]) + a[8:]),
        ("length too long", lambda q, a: a[:4] + struct.pack(">H", len(a) - 6 + 4) + a[6:]),
        ("length too short", lambda q, a: a[:4] + struct.pack(">H", 4) + a[6:]),
        ("byte count", lambda q, a: a[:8] + bytes([a[8] - 2]) + a[9:-2]),
        ("answer cut", lambda q, a: a[:-3]),
        ("nothing but garbage", lambda q, a: bytes(range(256)) * 4),
        ("a megabyte", lambda q, a: b"\x00\x01\x00\x00\xff\xff\x01\x04" + b"\xee" * 1_000_000),
    ],
)
async def test_a_malformed_answer_is_communication_lost(
    driver: ModbusAnalyzer, hostile: HostileCellQ, what: str, change: Any
) -> None:
    hostile.rewrite(STATUS_READ, change)
    await lost_then_back(driver, driver.status)
    assert hostile.rewritten == 1, what


async def test_an_answer_sent_twice_is_taken_once(
    driver: ModbusAnalyzer, hostile: HostileCellQ
) -> None:
    """The copy is no answer to anything: pymodbus drops it before the next request,
    which gets its own answer."""
    hostile.rewrite(STATUS_READ, lambda q, a: a + a)
    assert valid_status(await driver.status())
    assert valid_status(await driver.status())
    assert driver.connected


@SOME
@given(code=st.integers(0, 255).filter(lambda c: c not in (2, 3, 4, 6)))
async def test_exception_codes_outside_the_icd_are_communication_lost(
    driver: ModbusAnalyzer, hostile: HostileCellQ, code: int
) -> None:
    hostile.rewrite(STATUS_READ, lambda q, a: a[:4] + b"\x00\x03" + a[6:7] + bytes([0x84, code]))
    with pytest.raises(CommunicationLost):
        await driver.status()
    await back(driver)


async def test_a_write_echo_that_does_not_match_is_communication_lost(
    driver: ModbusAnalyzer, hostile: HostileCellQ, cellq_twin: CellQTwin
) -> None:
    hostile.rewrite(
        lambda q: function_of(q) == icd.FC_WRITE_MULTIPLE,
        lambda q, a: a[:8] + struct.pack(">HH", address_of(q) + 32, count_of(q)),
    )
    seq = 7001
    await lost_then_back(driver, lambda: driver.submit(seq, "NOSUCH", Assay.STERILITY))
    # the write itself reached the analyzer; the retry finds it, one job
    slot = await driver.submit(seq, "NOSUCH", Assay.STERILITY)
    assert cellq_twin.submitted[seq] == 1 and (await driver.job(seq)).slot == slot


# --------------------------------------------------------------------------- values
def valid_status(s: Any) -> bool:
    return isinstance(s.state, AnalyzerState) and 0 <= s.free_slots <= icd.SLOT_COUNT


@SOME
@given(regs=st.lists(REG, min_size=icd.STATUS_REGS, max_size=icd.STATUS_REGS))
async def test_any_status_registers_are_checked(
    driver: ModbusAnalyzer, hostile: HostileCellQ, regs: list[int]
) -> None:
    hostile.rewrite(STATUS_READ, lambda q, a: with_registers(a, regs))
    try:
        status = await driver.status()
    except CommunicationLost:
        assert regs[icd.IR_STATE] > 3 or regs[icd.IR_FREE_SLOTS] > icd.SLOT_COUNT
        await back(driver)
        return
    assert valid_status(status)
    assert (int(status.state), status.free_slots) == (regs[0], regs[2])


def valid_job(job: JobStatus, seq: int) -> bool:
    if job.job_seq != seq or not 0 <= job.progress_permille <= 1000:
        return False
    if job.fault is not JobFault.NONE and job.state is not SlotState.FAILED:
        return False
    for assay, value in job.results.items():
        if not math.isfinite(value) or value < 0:
            return False
        if assay in (Assay.STERILITY, Assay.MYCOPLASMA) and value not in (0.0, 1.0):
            return False
        if assay in (Assay.VIABILITY, Assay.IDENTITY, Assay.TRANSDUCTION) and value > 100:
            return False
    return not job.results or job.state is SlotState.DONE


floats = st.one_of(
    st.floats(width=32),
    st.sampled_from([math.nan, math.inf, -math.inf, -1.0, 0.0, 1.0, 0.5, 100.0, 101.0]),
)


@SOME
@given(
    state=st.one_of(st.integers(0, 6), st.just(9), REG),
    progress=st.one_of(st.integers(0, 1001), REG),
    fault=st.one_of(st.integers(0, 4), REG),
    results=st.lists(floats, min_size=7, max_size=7),
)
async def test_any_slot_registers_are_checked(
    driver: ModbusAnalyzer,
    hostile: HostileCellQ,
    state: int,
    progress: int,
    fault: int,
    results: list[float],
) -> None:
    """A job's slot read with values out of their ranges (state 9, progress over
    1000, a fault of a job that did not fail, infinity, a viability of 101 %): the
    driver never passes one on."""
    seq = 6000
    slot = await driver.submit(seq, "NOSUCH", Assay.STERILITY)  # idempotent after the 1st

    def change(q: bytes, a: bytes) -> bytes:
        regs = registers_of(a)
        regs[icd.IR_SLOT_STATE], regs[icd.IR_PROGRESS], regs[icd.IR_JOB_FAULT] = (
            state,
            progress,
            fault,
        )
        for i, value in enumerate(results):
            regs[icd.IR_RESULTS + 2 * i : icd.IR_RESULTS + 2 * i + 2] = icd.encode_f32(value)
        return with_registers(a, regs)

    hostile.rewrite(reads(icd.FC_READ_INPUT, icd.slot_base(slot)), change)
    try:
        job = await driver.job(seq)
    except CommunicationLost:
        await back(driver)
        return
    assert valid_job(job, seq), job


async def test_a_job_seq_mismatch_after_a_submit_is_communication_lost(
    driver: ModbusAnalyzer, hostile: HostileCellQ, cellq_twin: CellQTwin
) -> None:
    """The analyzer acknowledges the submit, but the slot then shows another JobSeq:
    the driver returns no slot for it."""
    seq = 6100

    def other_job(q: bytes, a: bytes) -> bytes:
        regs = registers_of(a)
        regs[0:2] = icd.encode_u32(seq + 1)
        return with_registers(a, regs)

    confirming_read = reads(icd.FC_READ_INPUT)  # the write passes; the read after it lies
    hostile.rewrite(lambda q: confirming_read(q) and count_of(q) == 22, other_job)
    detail = await lost_then_back(driver, lambda: driver.submit(seq, "NOSUCH", Assay.STERILITY))
    assert "holds JobSeq" in detail
    assert cellq_twin.submitted[seq] == 1
    slot = await driver.submit(seq, "NOSUCH", Assay.STERILITY)  # the repeat reads: one job
    assert cellq_twin.submitted[seq] == 1 and (await driver.job(seq)).slot == slot


@pytest.mark.parametrize(
    "sample_regs",
    [
        [0xC3A9, 0, 0, 0, 0, 0, 0, 0],  # not ASCII
        [0x4142, 0x0043, 0, 0, 0, 0, 0, 0],  # a character after the NUL
        [0x2020, 0, 0, 0, 0, 0, 0, 0],  # spaces: no SampleId
    ],
)
async def test_a_strange_sample_id_read_back_is_never_written_back(
    cellq_rig: CellQRig,
    driver: ModbusAnalyzer,
    hostile: HostileCellQ,
    cellq_twin: CellQTwin,
    sample_regs: list[int],
) -> None:
    seq = 6200
    await driver.submit(seq, draw_sample(cellq_rig.world), Assay.STERILITY)
    await eventually(lambda: driver.job(seq), "running", lambda j: j.state is SlotState.RUNNING)
    aborts = cellq_twin.commands[Command.ABORT]

    def strange(q: bytes, a: bytes) -> bytes:
        regs = registers_of(a)
        regs[icd.HR_SAMPLE_ID : icd.HR_SAMPLE_ID + 8] = sample_regs
        return with_registers(a, regs)

    hostile.rewrite(reads(icd.FC_READ_HOLDING), strange)
    detail = await lost_then_back(driver, lambda: driver.abort(seq))
    assert "SampleId" in detail
    assert cellq_twin.commands[Command.ABORT] == aborts  # nothing was sent
    await driver.abort(seq)  # with honest answers it works
    assert (await driver.job(seq)).state is SlotState.ABORTED


async def test_typed_errors_only_never_anything_else(
    driver: ModbusAnalyzer, hostile: HostileCellQ
) -> None:
    """Whatever a hostile answer does, a caller sees an InstrumentError or a value."""
    for change in (
        lambda q, a: a[:7] + b"\x04\xff" + a[9:],  # a byte count of 255
        lambda q, a: a[:7] + b"\x84",  # an exception without its code
        lambda q, a: a[:4] + b"\x00\x01" + a[6:7],  # a frame of a unit id only
    ):
        hostile.rewrite(STATUS_READ, change)
        try:
            await driver.status()
        except InstrumentError as exc:
            assert not isinstance(exc, InvalidArgument | InvalidState), exc
        await back(driver)
