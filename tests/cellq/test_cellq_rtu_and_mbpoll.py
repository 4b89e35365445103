"""The same register map over Modbus RTU (a pty null modem), and a third-party client.

`mbpoll` (Debian package `mbpoll`, libmodbus) is a Modbus master that is not our code
and not pymodbus: if it reads and writes the twin as the ICD says, the twin's framing
and register map are standard. Install it with `apt-get install mbpoll`; the mbpoll
tests skip when the binary is absent.
"""

from __future__ import annotations

import asyncio
import math
import re
import shutil
from collections.abc import Iterator

import pytest
import serial
from cellq_support import CellQ, exc_code
from hypothesis import HealthCheck, assume, given, settings
from hypothesis import strategies as st
from pymodbus.exceptions import ModbusIOException

from drivers import icd
from simulators.cellq import CellQTwin
from simulators.modbus_server import rtu_frame, split_rtu
from tests.support import HANG_GUARD
from tests.support.cellq import CellQRig, RtuRig, draw_sample

S = icd.SlotState
C = icd.Command

# --------------------------------------------------------------------------- RTU


async def test_rtu_status_and_a_job_end_to_end(cellq_rtu_rig: RtuRig, rtu: CellQ) -> None:
    regs = await rtu.status()
    assert regs[icd.IR_ICD_VERSION] == 1
    assert regs[icd.IR_FREE_SLOTS] == icd.SLOT_COUNT
    sample = draw_sample(cellq_rtu_rig.rig.world)
    assert await rtu.command(3, C.SUBMIT, job_seq=31, sample_id=sample, panel=3) is None
    assert await rtu.command(3, C.SUBMIT, job_seq=31, sample_id=sample, panel=3) is None
    assert cellq_rtu_rig.twin.submitted[31] == 1
    view = await rtu.wait_state(3, S.DONE)
    assert not math.isnan(view.results[icd.Assay.VIABILITY])
    assert math.isnan(view.results[icd.Assay.STERILITY])
    assert await rtu.command(3, C.RELEASE, job_seq=31) is None
    assert (await rtu.slot(3)).raw == [0] * icd.SLOT_STRIDE


async def test_rtu_exception_codes(rtu: CellQ) -> None:
    assert exc_code(await rtu.read_ir(50, 1)) == icd.EXC_ILLEGAL_ADDRESS
    assert await rtu.command(0, C.SUBMIT, job_seq=0, sample_id="S1") == icd.EXC_ILLEGAL_VALUE
    assert await rtu.command(0, C.RELEASE, job_seq=0) == icd.EXC_DEVICE_BUSY


async def test_rtu_other_device_id_gets_no_answer(cellq_rtu_rig: RtuRig, rtu: CellQ) -> None:
    before = cellq_rtu_rig.twin.requests
    other = CellQ(rtu.client, device_id=9)
    async with asyncio.timeout(HANG_GUARD):
        with pytest.raises(ModbusIOException):
            await other.read_ir(0, 1)
    assert cellq_rtu_rig.twin.requests == before
    assert (await rtu.status())[icd.IR_ICD_VERSION] == 1


VERSION_REQUEST = rtu_frame(icd.CELLQ_DEVICE_ID, bytes([4, 0, icd.IR_ICD_VERSION, 0, 1]))
VERSION_ANSWER = rtu_frame(icd.CELLQ_DEVICE_ID, bytes([4, 2, 0, icd.ICD_VERSION]))


@pytest.fixture
def line(cellq_rtu_rig: RtuRig) -> Iterator[serial.Serial]:
    """The client end of the null modem, blocking reads bounded by the hang guard."""
    cellq_rtu_rig.reset()
    port = serial.Serial(cellq_rtu_rig.client_path, 19200, timeout=HANG_GUARD)
    yield port
    port.close()


@settings(
    max_examples=40, deadline=None, suppress_health_check=[HealthCheck.function_scoped_fixture]
)
@given(noise=st.binary(max_size=300), cut=st.integers(0, len(VERSION_REQUEST) - 1))
def test_rtu_resynchronises_after_noise_and_a_truncated_frame(
    line: serial.Serial, noise: bytes, cut: int
) -> None:
    """Noise, a request cut short, then a whole request, all in one write: the twin
    drops what made no request and answers the request, once (ICD 1.1: RTU
    resynchronises). Formerly a pymodbus framer could stay silent after random noise."""
    junk = noise + VERSION_REQUEST[:cut]
    assume(not split_rtu(bytearray(junk)))  # the noise holds no whole request by chance
    line.write(junk + VERSION_REQUEST)
    assert line.read(len(VERSION_ANSWER)) == VERSION_ANSWER
    line.write(VERSION_REQUEST)  # and the line is in step for the next one
    assert line.read(len(VERSION_ANSWER)) == VERSION_ANSWER


def test_rtu_requests_back_to_back_are_each_answered_in_order(line: serial.Serial) -> None:
    status = rtu_frame(icd.CELLQ_DEVICE_ID, bytes([4, 0, 0, 0, 3]))
    other_unit = rtu_frame(9, bytes([4, 0, 0, 0, 1]))
    line.write(VERSION_REQUEST + other_unit + status + VERSION_REQUEST)
    assert line.read(len(VERSION_ANSWER)) == VERSION_ANSWER
    answer = line.read(3 + 6 + 2)
    assert answer[:3] == bytes([1, 4, 6]) and answer == rtu_frame(1, answer[1:-2])
    assert line.read(len(VERSION_ANSWER)) == VERSION_ANSWER


@pytest.mark.parametrize(
    ("pdu", "code"),
    [
        (bytes([0x41, 0, 0, 0, 1]), icd.EXC_ILLEGAL_FUNCTION),  # a function not served
        (bytes([0x2B, 0x0E, 1, 0]), icd.EXC_ILLEGAL_FUNCTION),  # read device identification
        (bytes([16, 0, 100, 0, 1, 2, 0, 5, 0]), icd.EXC_ILLEGAL_VALUE),  # byte count wrong
    ],
)
def test_rtu_whole_frames_that_are_no_request_get_an_exception(
    line: serial.Serial, pdu: bytes, code: int
) -> None:
    """A frame with a good CRC whose length no request of the ICD has: the twin knows
    it is whole once the line is silent, and answers 01 or 03."""
    line.write(rtu_frame(icd.CELLQ_DEVICE_ID, pdu))
    assert line.read(5) == rtu_frame(icd.CELLQ_DEVICE_ID, bytes([pdu[0] | 0x80, code]))
    line.write(VERSION_REQUEST)
    assert line.read(len(VERSION_ANSWER)) == VERSION_ANSWER


# --------------------------------------------------------------------------- mbpoll

MBPOLL = shutil.which("mbpoll")
needs_mbpoll = pytest.mark.skipif(
    MBPOLL is None, reason="mbpoll is not installed (apt-get install mbpoll)"
)


async def _mbpoll(
    cellq_twin: CellQTwin, *args: str, write: tuple[int, ...] = ()
) -> tuple[int, str]:
    assert MBPOLL is not None
    proc = await asyncio.create_subprocess_exec(
        MBPOLL,
        "-m",
        "tcp",
        "-p",
        str(cellq_twin.port),
        "-a",
        str(icd.CELLQ_DEVICE_ID),
        "-0",  # PDU addressing, as the ICD counts
        "-1",  # poll once
        "-o",
        "5",
        *args,
        "127.0.0.1",
        *map(str, write),
        stdout=asyncio.subprocess.PIPE,
        stderr=asyncio.subprocess.STDOUT,
    )
    async with asyncio.timeout(HANG_GUARD):
        out, _ = await proc.communicate()
    return proc.returncode or 0, out.decode(errors="replace")


def _values(text: str) -> dict[int, str]:
    return {int(m[1]): m[2] for m in re.finditer(r"^\[(\d+)\]:\s+(\S+)", text, re.M)}


@needs_mbpoll
async def test_mbpoll_reads_the_status_registers(cellq_twin: CellQTwin) -> None:
    code, out = await _mbpoll(cellq_twin, "-t", "3", "-r", "0", "-c", "6")
    assert code == 0, out
    values = _values(out)
    assert values[icd.IR_ICD_VERSION] == "1"
    assert values[icd.IR_FREE_SLOTS] == str(icd.SLOT_COUNT)
    assert values[icd.IR_STATE] == "0"


@needs_mbpoll
async def test_mbpoll_float_word_order_and_write(
    cellq_rig: CellQRig, cellq_twin: CellQTwin
) -> None:
    # -B: big-endian word order, the ICD's "high word first".
    code, out = await _mbpoll(cellq_twin, "-t", "4:float", "-B", "-r", str(icd.TWIN_HR_TIME_SCALE))
    assert code == 0, out
    assert float(_values(out)[icd.TWIN_HR_TIME_SCALE]) == pytest.approx(cellq_rig.clock.scale)
    # Write a whole SampleId (ICD 1.1: a string is written in one request) and read it
    # back with pymodbus-independent code; half of one is refused (03).
    base = icd.slot_base(1) + icd.HR_SAMPLE_ID
    words = icd.encode_string("AB-12")
    code, out = await _mbpoll(cellq_twin, "-t", "4", "-r", str(base), write=tuple(words))
    assert code == 0, out
    code, out = await _mbpoll(cellq_twin, "-t", "4:hex", "-r", str(base), "-c", "8")
    assert [int(_values(out)[base + i], 16) for i in range(8)] == words
    code, out = await _mbpoll(cellq_twin, "-t", "4", "-r", str(base), write=(words[0],))
    assert code != 0 and "illegal data value" in out.lower(), out


@needs_mbpoll
async def test_mbpoll_sees_exception_02(cellq_twin: CellQTwin) -> None:
    code, out = await _mbpoll(cellq_twin, "-t", "3", "-r", "50")
    assert code != 0
    assert "illegal data address" in out.lower(), out
