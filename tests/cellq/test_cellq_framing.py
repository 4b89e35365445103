"""ICD 1.1 Modbus framing on the Cell Q twin, one rule at a time, with raw TCP frames
(a client library would refuse to send most of these).

Function codes other than 03, 04, 06, 16 answer 01; a read of 0 or more than 125
registers or a write of 0 or more than 123 answers 03; a 32-bit value or a string is
written whole (part of one answers 03); requests back to back in one segment are each
answered, in order; a frame that cannot be parsed closes the connection.
"""

from __future__ import annotations

import struct

import pytest
from cellq_support import CellQ, RawTcp, mbap, read_pdu, write_pdu
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from drivers import icd
from simulators.cellq import CellQTwin

HYPOTHESIS = settings(
    max_examples=40, deadline=None, suppress_health_check=[HealthCheck.function_scoped_fixture]
)
SERVED = sorted(icd.FUNCTION_CODES)


def exception_of(pdu: bytes | None, fc: int) -> int | None:
    assert pdu is not None, "the twin closed the connection instead of answering"
    if pdu[0] == (fc | 0x80) & 0xFF and len(pdu) == 2:
        return pdu[1]
    assert pdu[0] == fc, pdu
    return None


@pytest.fixture
async def raw(cellq_twin: CellQTwin) -> RawTcp:
    conn = await RawTcp.open(cellq_twin.port)
    yield conn  # type: ignore[misc]
    conn.close()


# --------------------------------------------------------------------------- 01
@pytest.mark.parametrize("fc", [1, 2, 5, 7, 8, 11, 15, 17, 20, 22, 23, 24, 43, 0x41, 0x7F])
async def test_function_codes_outside_the_icd_answer_01(raw: RawTcp, fc: int) -> None:
    pdu = bytes([fc]) + struct.pack(">HH", 0, 1)
    assert exception_of(await raw.ask(pdu), fc) == icd.EXC_ILLEGAL_FUNCTION
    assert exception_of(await raw.ask(read_pdu(0, 1)), icd.FC_READ_INPUT) is None  # in step


@HYPOTHESIS
@given(
    fc=st.integers(0, 255).filter(lambda f: f not in icd.FUNCTION_CODES),
    body=st.binary(max_size=20),
)
async def test_any_other_function_code_answers_01_whatever_follows(
    raw: RawTcp, fc: int, body: bytes
) -> None:
    assert exception_of(await raw.ask(bytes([fc]) + body), fc) == icd.EXC_ILLEGAL_FUNCTION


# --------------------------------------------------------------------------- counts
@pytest.mark.parametrize("fc", [icd.FC_READ_HOLDING, icd.FC_READ_INPUT])
@pytest.mark.parametrize("count", [0, 126, 2000, 0xFFFF])
async def test_a_read_of_0_or_more_than_125_answers_03(raw: RawTcp, fc: int, count: int) -> None:
    assert exception_of(await raw.ask(read_pdu(icd.SLOT_BASE, count, fc)), fc) == 3


async def test_a_read_of_125_answers(raw: RawTcp) -> None:
    pdu = await raw.ask(read_pdu(icd.SLOT_BASE, 125))
    assert exception_of(pdu, icd.FC_READ_INPUT) is None
    assert pdu is not None and pdu[1] == 250 and len(pdu) == 252


@pytest.mark.parametrize("count", [0, 124, 200])
async def test_a_write_of_0_or_more_than_123_answers_03(raw: RawTcp, count: int) -> None:
    values = [0] * min(count, 123)  # a PDU holds at most 123 registers
    pdu = struct.pack(">BHHB", 16, icd.SLOT_BASE, count, (2 * count) & 0xFF)
    pdu += struct.pack(f">{len(values)}H", *values)
    assert exception_of(await raw.ask(pdu), 16) == 3


@pytest.mark.parametrize(
    "pdu",
    [
        bytes([4]) + struct.pack(">HHB", 0, 1, 0),  # a read one byte too long
        bytes([3, 0, 0, 0]),  # a read one byte short
        bytes([6, 0, 100]),  # a write-single without its value
        struct.pack(">BHHB", 16, 100, 2, 3) + b"\0\0\0",  # byte count is not 2 x count
        struct.pack(">BHHB", 16, 100, 2, 4) + b"\0\0",  # fewer bytes than the byte count
        struct.pack(">BHHB", 16, 100, 1, 2) + b"\0\0\0\0",  # more bytes than the byte count
    ],
)
async def test_a_pdu_of_the_wrong_size_answers_03(raw: RawTcp, pdu: bytes) -> None:
    assert exception_of(await raw.ask(pdu), pdu[0]) == 3


# --------------------------------------------------------------------------- whole values
@pytest.mark.parametrize(
    ("offset", "values"),
    [
        (icd.HR_JOB_SEQ, [7]),  # high word of JobSeq alone
        (icd.HR_JOB_SEQ + 1, [7, 1]),  # low word of JobSeq and the panel
        (icd.HR_SAMPLE_ID, [0x4142] * 4),  # half a SampleId
        (icd.HR_SAMPLE_ID + 7, [0x4100, 1]),  # the last SampleId register and the command
        (icd.HR_PANEL, [1, 0x4142]),  # the panel and the first SampleId register
    ],
)
async def test_a_write_of_part_of_a_value_answers_03_and_changes_nothing(
    cq: CellQ, offset: int, values: list[int]
) -> None:
    base = icd.slot_base(4)
    before = await cq.holding(4)
    assert (await cq.write(base + offset, values)).exception_code == 3
    assert await cq.holding(4) == before
    single = await cq.client.write_register(base + offset, values[0], device_id=1)
    expected = 3 if offset in (icd.HR_JOB_SEQ, icd.HR_JOB_SEQ + 1) or offset > 2 else None
    assert (single.exception_code if single.isError() else None) == expected


@pytest.mark.parametrize("address", [icd.TWIN_HR_TIME_SCALE, icd.TWIN_HR_TIME_SCALE + 1])
async def test_half_a_time_scale_answers_03(cq: CellQ, address: int) -> None:
    before = (await cq.read_hr(icd.TWIN_HR_TIME_SCALE, 2)).registers
    assert (await cq.write(address, [0x4000])).exception_code == 3
    assert (await cq.read_hr(icd.TWIN_HR_TIME_SCALE, 2)).registers == before


async def test_whole_values_are_written(cq: CellQ) -> None:
    base = icd.slot_base(4)
    assert not (await cq.write(base, [0, 9, 1, *icd.encode_string("WHOLE")])).isError()
    assert not (await cq.client.write_register(base + icd.HR_PANEL, 3, device_id=1)).isError()
    held = await cq.holding(4)
    assert held[:3] == [0, 9, 3] and icd.decode_string(held[3:11]) == "WHOLE"


# --------------------------------------------------------------------------- order
@pytest.mark.parametrize("n", [2, 10, 64])
async def test_requests_back_to_back_are_each_answered_in_order(raw: RawTcp, n: int) -> None:
    frames = b"".join(mbap(100 + i, read_pdu(i % icd.STATUS_REGS, 1)) for i in range(n))
    await raw.send(frames)  # one segment
    answers = [await raw.answer() for _ in range(n)]
    assert [a[0] if a else None for a in answers] == [100 + i for i in range(n)]
    versions = [a[2] for i, a in enumerate(answers) if a and i % icd.STATUS_REGS == 5]
    assert all(v == bytes([4, 2, 0, icd.ICD_VERSION]) for v in versions)


async def test_mixed_requests_back_to_back_keep_their_order(raw: RawTcp) -> None:
    base = icd.slot_base(6)
    await raw.send(
        mbap(1, write_pdu(base + icd.HR_PANEL, [5]))
        + mbap(2, read_pdu(base + icd.HR_PANEL, 1, icd.FC_READ_HOLDING))
        + mbap(3, bytes([0x2B, 14, 1, 0]))  # read device identification: not served
        + mbap(4, write_pdu(base + icd.HR_PANEL, [6]))
        + mbap(5, read_pdu(base + icd.HR_PANEL, 1, icd.FC_READ_HOLDING))
    )
    got = [await raw.answer() for _ in range(5)]
    assert [g[0] for g in got if g] == [1, 2, 3, 4, 5]
    assert got[1] is not None and got[1][2] == bytes([3, 2, 0, 5])
    assert got[2] is not None and got[2][2] == bytes([0xAB, 1])
    assert got[4] is not None and got[4][2] == bytes([3, 2, 0, 6])


# --------------------------------------------------------------------------- unparsable
@pytest.mark.parametrize(
    "header",
    [
        struct.pack(">HHHB", 1, 1, 6, 1),  # protocol id 1
        struct.pack(">HHHB", 1, 0, 0, 1),  # length 0
        struct.pack(">HHHB", 1, 0, 1, 1),  # length 1: no function code
        struct.pack(">HHHB", 1, 0, 256, 1),  # longer than any Modbus PDU
        b"\xde\xad\xbe\xef\xca\xfe\x01",  # stray bytes
    ],
)
async def test_an_unparsable_frame_closes_the_connection(
    cellq_twin: CellQTwin, raw: RawTcp, header: bytes
) -> None:
    await raw.send(mbap(7, read_pdu(5, 1)) + header + mbap(8, read_pdu(5, 1)))
    first = await raw.answer()
    assert first is not None and first[0] == 7  # what came before is answered
    assert await raw.answer() is None  # then the connection ends, not silence
    again = await RawTcp.open(cellq_twin.port)  # and the twin keeps serving
    try:
        assert exception_of(await again.ask(read_pdu(5, 1)), icd.FC_READ_INPUT) is None
    finally:
        again.close()


async def test_another_unit_id_gets_no_answer_but_the_next_request_does(raw: RawTcp) -> None:
    await raw.send(mbap(1, read_pdu(5, 1), unit=9) + mbap(2, read_pdu(5, 1)))
    got = await raw.answer()
    assert got is not None and got[0] == 2
