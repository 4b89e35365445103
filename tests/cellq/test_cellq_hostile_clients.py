"""A hostile client of the Cell Q twin: whatever it sends (raw bytes, frames with any
header, any function, any register write), every request gets an ICD answer (the
registers, or exception 01, 02, 03, 04 or 06) or the connection is closed (an
unparsable frame, ICD 1.1), in bounded time and memory, and the twin keeps serving: a
normal request on a new connection is answered after each example.
"""

from __future__ import annotations

import struct
from collections.abc import Iterator

import pytest
from cellq_support import RawTcp, mbap, read_pdu
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from drivers import icd
from simulators.cellq import CellQTwin

ICD_CODES = {1, 2, 3, 4, 6}
FINAL_TID = 0xBEEF
SETTINGS = settings(
    max_examples=60, deadline=None, suppress_health_check=[HealthCheck.function_scoped_fixture]
)

addresses = st.one_of(
    st.integers(0, 0xFFFF),
    st.sampled_from([0, 5, 9, 10, 99, 100, 111, 131, 611, 612, 899, 900, 901, 902, 903, 904]),
)
pdus = st.one_of(
    st.binary(min_size=1, max_size=30),  # any function, any body
    st.builds(
        lambda fc, a, n: struct.pack(">BHH", fc, a, n),
        st.sampled_from([3, 4]),
        addresses,
        st.integers(0, 0xFFFF),
    ),
    st.builds(lambda a, v: struct.pack(">BHH", 6, a, v), addresses, st.integers(0, 0xFFFF)),
    st.builds(
        lambda a, vs: struct.pack(f">BHHB{len(vs)}H", 16, a, len(vs), 2 * len(vs), *vs),
        addresses,
        st.lists(st.integers(0, 0xFFFF), min_size=1, max_size=20),
    ),
)
frames = st.one_of(
    st.builds(lambda tid, pdu: mbap(tid, pdu), st.integers(0, 0xFFFE), pdus),
    st.builds(
        lambda tid, unit, pdu: mbap(tid, pdu, unit),
        st.integers(0, 0xFFFE),
        st.integers(0, 255),
        pdus,
    ),
    st.binary(min_size=1, max_size=40),  # stray bytes
)


@pytest.fixture
def hostile_twin(cellq_twin: CellQTwin) -> Iterator[CellQTwin]:
    cellq_twin.server.frame_timeout = 0.2  # an incomplete frame closes quickly here
    yield cellq_twin
    cellq_twin.server.frame_timeout = 1.0


def check_answer(pdu: bytes) -> None:
    fc = pdu[0]
    if fc & 0x80:
        assert len(pdu) == 2 and pdu[1] in ICD_CODES, pdu
    else:
        assert fc in icd.FUNCTION_CODES, pdu


async def serves(cellq_twin: CellQTwin) -> None:
    conn = await RawTcp.open(cellq_twin.port)
    try:
        assert await conn.ask(read_pdu(icd.IR_ICD_VERSION, 1)) == bytes([4, 2, 0, 1])
    finally:
        conn.close()


@SETTINGS
@given(sent=st.lists(frames, min_size=1, max_size=6))
async def test_any_bytes_get_icd_answers_or_a_close(
    hostile_twin: CellQTwin, sent: list[bytes]
) -> None:
    """The client sends its bytes and then ends its side (a TCP half close): the twin
    answers what it could parse, each answer an ICD answer, and closes in bounded
    time (the hang guard of ``answer``), never leaving the connection silent."""
    conn = await RawTcp.open(hostile_twin.port)
    try:
        await conn.send(b"".join(sent) + mbap(FINAL_TID, read_pdu(icd.IR_ICD_VERSION, 1)))
        conn.writer.write_eof()
        while (got := await conn.answer()) is not None:  # hang guard inside
            _tid, unit, pdu = got
            assert unit == icd.CELLQ_DEVICE_ID  # another unit id gets no answer
            check_answer(pdu)
    finally:
        conn.close()
    await serves(hostile_twin)


async def test_requests_sent_before_a_half_close_are_all_answered(cellq_twin: CellQTwin) -> None:
    conn = await RawTcp.open(cellq_twin.port)
    try:
        await conn.send(b"".join(mbap(i, read_pdu(icd.IR_ICD_VERSION, 1)) for i in range(5)))
        conn.writer.write_eof()
        got = [await conn.answer() for _ in range(6)]
    finally:
        conn.close()
    assert [g[0] if g else None for g in got] == [0, 1, 2, 3, 4, None]


@SETTINGS
@given(address=addresses, values=st.lists(st.integers(0, 0xFFFF), min_size=1, max_size=123))
async def test_any_register_write_gets_an_icd_answer(
    hostile_twin: CellQTwin, address: int, values: list[int]
) -> None:
    conn = await RawTcp.open(hostile_twin.port)
    try:
        pdu = struct.pack(
            f">BHHB{len(values)}H", 16, address, len(values), 2 * len(values), *values
        )
        answer = await conn.ask(pdu)
        assert answer is not None
        check_answer(answer)
        if not answer[0] & 0x80:
            assert answer == struct.pack(">BHH", 16, address, len(values))
    finally:
        conn.close()
    await serves(hostile_twin)


async def test_a_frame_that_never_ends_closes_the_connection(hostile_twin: CellQTwin) -> None:
    conn = await RawTcp.open(hostile_twin.port)
    try:
        await conn.send(struct.pack(">HHHB", 1, 0, 200, 1) + b"\x04\x00")  # 197 bytes short
        assert await conn.answer() is None
    finally:
        conn.close()
    await serves(hostile_twin)


async def test_a_flood_is_answered_in_order_in_bounded_memory(cellq_twin: CellQTwin) -> None:
    """2000 requests sent without reading a single answer: the twin stops reading
    while its answers are not read (TCP flow control), then answers every one."""
    n = 2000
    conn = await RawTcp.open(cellq_twin.port)
    try:
        await conn.send(b"".join(mbap(i, read_pdu(icd.IR_ICD_VERSION, 1)) for i in range(n)))
        tids = [(await conn.answer() or (-1, 0, b""))[0] for _ in range(n)]
    finally:
        conn.close()
    assert tids == list(range(n))
