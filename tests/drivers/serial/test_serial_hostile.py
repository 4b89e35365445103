"""The serial driver against a hostile balance (the scripted pty): lines that never end,
megabyte lines, garbage bytes, answers to another command. Each ends in a typed error
(CommunicationLost for anything out of the ICD; InstrumentTimeout, a CommunicationLost,
for a line without its end) within the command timeout, never a crash, a hang, a
buffer that grows with the garbage or a value passed on unchecked; the next command
gets its own answer."""

from __future__ import annotations

import asyncio
import re

import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st
from scripted_balance import Scripted

from drivers.base import CommunicationLost, InstrumentError, Weight
from drivers.serial import SerialBalance
from tests.support import HANG_GUARD

STRICT_WEIGHT = re.compile(rb"S ([SD]) ( *-?\d+\.\d{3}) g")


async def recovers(balance: SerialBalance, line: Scripted) -> Weight:
    """The next honest answer is read (the tail of a flood may still be on its way:
    one more garbage answer is allowed, a hang is not)."""
    async with asyncio.timeout(HANG_GUARD):
        while True:
            line.answers.append([b"S S      5.000 g\r\n"])
            try:
                return await balance.weight_now()
            except CommunicationLost:
                line.answers.clear()


async def test_a_line_that_never_ends_is_lost_at_once_in_bounded_memory(
    balance: SerialBalance, line: Scripted
) -> None:
    line.answers.append([])  # it answers S with an endless stream instead
    stream = asyncio.ensure_future(line.flood(b"9" * 2_000_000))
    try:
        with pytest.raises(CommunicationLost, match="too long"):
            await balance.stable_weight()
        assert len(balance._buf) <= balance.settings.max_line
    finally:
        await stream
    assert await recovers(balance, line) == Weight(5.0, True)


async def test_a_megabyte_answer_line_is_communication_lost(
    balance: SerialBalance, line: Scripted
) -> None:
    line.answers.append([])
    flood = asyncio.ensure_future(line.flood(b"S S " + b"7" * 1_000_000 + b" g\r\n"))
    try:
        with pytest.raises(CommunicationLost):
            await balance.weight_now()
    finally:
        await flood
    assert await recovers(balance, line) == Weight(5.0, True)


@pytest.mark.parametrize(
    ("cmd", "answer"),
    [
        ("S", b"Z A"),
        ("S", b"T S      1.000 g"),
        ("S", b"S D      1.000 g"),  # S is stable or busy, never dynamic
        ("SI", b"T S      1.000 g"),
        ("Z", b"S S      0.000 g"),
        ("Z", b"T I"),
        ("T", b"Z A"),
        ("T", b"S S      1.000 g"),
    ],
)
async def test_an_answer_to_another_command_is_communication_lost(
    balance: SerialBalance, line: Scripted, cmd: str, answer: bytes
) -> None:
    line.answers.append([answer + b"\r\n"])
    with pytest.raises(CommunicationLost):
        await balance.command(cmd) if cmd == "Z" else await _op(balance, cmd)
    line.answers.append([b"Z A\r\n"])
    await balance.zero()


async def _op(balance: SerialBalance, cmd: str) -> object:
    return await {"S": balance.stable_weight, "SI": balance.weight_now, "T": balance.tare}[cmd]()


answers = st.one_of(
    st.binary(max_size=60),
    st.builds(
        lambda kind, field: f"S {kind} {field} g".encode(),
        st.sampled_from(["S", "D", "I", "X"]),
        st.text(alphabet="0123456789.- e+naif", max_size=14),
    ),
)


@settings(
    deadline=None, max_examples=80, suppress_health_check=[HealthCheck.function_scoped_fixture]
)
@given(answer=answers)
async def test_any_answer_bytes_give_an_icd_weight_or_a_typed_error(
    balance: SerialBalance, line: Scripted, answer: bytes
) -> None:
    """Any bytes up to a CR LF (a line without its end is the timeout tested above)."""
    line.answers.append([answer + b"\r\n"])
    try:
        weight = await balance.weight_now()
    except InstrumentError:
        return
    m = STRICT_WEIGHT.fullmatch(answer)
    assert m is not None and len(m[2]) == 10, (answer, weight)
    assert weight == Weight(float(m[2]), m[1] == b"S")
