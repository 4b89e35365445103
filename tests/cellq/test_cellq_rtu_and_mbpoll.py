"""The same register map over Modbus RTU (a pty null modem), and a third-party client.

`mbpoll` (Debian package `mbpoll`, libmodbus) is a Modbus master that is not our code
and not pymodbus: if it reads and writes the twin as the ICD says, the twin's framing
and register map are standard. Install it with `apt-get install mbpoll`; the mbpoll
tests skip when the binary is absent.
"""

from __future__ import annotations

import asyncio
import math
import os
import re
import shutil

import pytest
import serial
from cellq_support import CellQ, exc_code
from pymodbus.exceptions import ModbusIOException

from drivers import icd
from simulators.cellq import CellQTwin
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


def test_rtu_garbage_on_the_line_does_not_stop_the_twin(cellq_rtu_rig: RtuRig) -> None:
    """Raw bytes on the line: no crash; a well-formed RTU frame after them is answered."""
    line = serial.Serial(cellq_rtu_rig.modem.path_b, 19200, timeout=0.3)
    try:
        line.write(os.urandom(64) + b"\x01\x04\x00")  # noise and a truncated frame
        line.read(256)  # whatever comes back (likely nothing)
        line.reset_input_buffer()
        # After the RTU silent interval the framer resynchronises on a valid frame.
        frame = _rtu_frame(bytes([icd.CELLQ_DEVICE_ID, 4, 0, 5, 0, 1]))
        answer = b""
        for _ in range(20):  # the framer may need a few tries to drop the noise
            line.write(frame)
            answer = line.read(7)
            if answer[:3] == bytes([1, 4, 2]):
                break
        assert answer == _rtu_frame(bytes([1, 4, 2, 0, icd.ICD_VERSION]))
    finally:
        line.close()


def _rtu_frame(pdu: bytes) -> bytes:
    crc = 0xFFFF
    for byte in pdu:
        crc ^= byte
        for _ in range(8):
            crc = (crc >> 1) ^ 0xA001 if crc & 1 else crc >> 1
    return pdu + bytes([crc & 0xFF, crc >> 8])


# --------------------------------------------------------------------------- mbpoll

MBPOLL = shutil.which("mbpoll")
needs_mbpoll = pytest.mark.skipif(
    MBPOLL is None, reason="mbpoll is not installed (apt-get install mbpoll)"
)


async def _mbpoll(twin: CellQTwin, *args: str, write: tuple[int, ...] = ()) -> tuple[int, str]:
    assert MBPOLL is not None
    proc = await asyncio.create_subprocess_exec(
        MBPOLL,
        "-m",
        "tcp",
        "-p",
        str(twin.port),
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
async def test_mbpoll_reads_the_status_registers(twin: CellQTwin) -> None:
    code, out = await _mbpoll(twin, "-t", "3", "-r", "0", "-c", "6")
    assert code == 0, out
    values = _values(out)
    assert values[icd.IR_ICD_VERSION] == "1"
    assert values[icd.IR_FREE_SLOTS] == str(icd.SLOT_COUNT)
    assert values[icd.IR_STATE] == "0"


@needs_mbpoll
async def test_mbpoll_float_word_order_and_write(cellq_rig: CellQRig, twin: CellQTwin) -> None:
    # -B: big-endian word order, the ICD's "high word first".
    code, out = await _mbpoll(twin, "-t", "4:float", "-B", "-r", str(icd.TWIN_HR_TIME_SCALE))
    assert code == 0, out
    assert float(_values(out)[icd.TWIN_HR_TIME_SCALE]) == pytest.approx(cellq_rig.clock.scale)
    # Write a SampleId register and read it back with pymodbus-independent code.
    base = icd.slot_base(1)
    word = icd.encode_string("AB")[0]
    code, out = await _mbpoll(twin, "-t", "4", "-r", str(base + icd.HR_SAMPLE_ID), write=(word,))
    assert code == 0, out
    code, out = await _mbpoll(twin, "-t", "4:hex", "-r", str(base + icd.HR_SAMPLE_ID))
    assert _values(out)[base + icd.HR_SAMPLE_ID].lower() == f"0x{word:04x}"


@needs_mbpoll
async def test_mbpoll_sees_exception_02(twin: CellQTwin) -> None:
    code, out = await _mbpoll(twin, "-t", "3", "-r", "50")
    assert code != 0
    assert "illegal data address" in out.lower(), out
