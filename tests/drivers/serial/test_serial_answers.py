"""SerialBalance over a real pseudo-terminal against scripted answers.

The balance twin cannot produce every MT-SICS answer (an overload needs a 2.2 kg
load, EL/ET are outside the ICD), so these tests drive the real driver I/O path with
a scripted instrument on the pty master: every answer of the mapping table, framing
across chunks, garbage, overlong lines, silence and late answers.
"""

from __future__ import annotations

import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st
from scripted_balance import Scripted

from drivers.base import (
    Busy,
    CommunicationLost,
    InstrumentError,
    InstrumentTimeout,
    InvalidArgument,
    InvalidState,
    NotSupported,
    Weight,
)
from drivers.icd import format_weight
from drivers.serial import BalanceSettings, SerialBalance
from tests.support import eventually


async def _value(x: int) -> int:
    return x


OPS = {
    "S": lambda b: b.stable_weight(),
    "SI": lambda b: b.weight_now(),
    "Z": lambda b: b.zero(),
    "T": lambda b: b.tare(),
}


@pytest.mark.parametrize(
    ("cmd", "answer", "expected"),
    [
        ("S", b"S S     12.345 g", 12.345),
        ("S", b"S S    -12.345 g", -12.345),
        ("S", b"S S   2200.000 g", 2200.0),
        ("S", b"S I", Busy),
        ("S", b"S +", InvalidState),
        ("S", b"S -", InvalidState),
        ("S", b"S D      1.000 g", CommunicationLost),  # S never answers dynamic
        ("SI", b"S S      1.500 g", Weight(1.5, True)),
        ("SI", b"S D      0.250 g", Weight(0.25, False)),
        ("SI", b"S +", InvalidState),  # ICD 1.1: SI answers overload and underload too
        ("SI", b"S -", InvalidState),
        ("Z", b"Z A", None),
        ("Z", b"Z I", Busy),
        ("Z", b"Z +", InvalidState),
        ("Z", b"Z -", InvalidState),
        ("T", b"T S     10.000 g", 10.0),
        ("T", b"T I", Busy),
        ("T", b"T +", InvalidState),
        ("S", b"ES", NotSupported),
        ("T", b"EL", InvalidArgument),
        ("Z", b"ET", CommunicationLost),
        ("S", b"Z A", CommunicationLost),  # an answer to another command
        ("S", b"S S 12.3 kg", CommunicationLost),
        ("S", b"", CommunicationLost),
        ("S", b"\xff\xfeS S      1.000 g", CommunicationLost),
        ("T", b"T S", CommunicationLost),
    ],
)
async def test_each_answer_is_mapped(
    balance: SerialBalance, line: Scripted, cmd: str, answer: bytes, expected: object
) -> None:
    line.answers.append([answer + b"\r\n"])
    if isinstance(expected, type) and issubclass(expected, InstrumentError):
        with pytest.raises(expected):
            await OPS[cmd](balance)
    else:
        assert await OPS[cmd](balance) == expected
    assert line.received == [cmd.encode()]


@pytest.mark.parametrize(("answer", "word"), [(b"S +", "overload"), (b"S -", "underload")])
async def test_weight_now_names_overload_and_underload(
    balance: SerialBalance, line: Scripted, answer: bytes, word: str
) -> None:
    line.answers.append([answer + b"\r\n"])
    with pytest.raises(InvalidState, match=word):
        await balance.weight_now()


async def test_answer_split_across_chunks_is_framed(balance: SerialBalance, line: Scripted) -> None:
    line.answers.append([b"S S ", b"    42.0", b"00 g\r", b"\n"])
    assert await balance.stable_weight() == 42.0


async def test_silence_is_a_timeout_and_a_late_answer_is_never_taken(
    balance: SerialBalance, line: Scripted
) -> None:
    line.answers.append([])  # nothing
    with pytest.raises(InstrumentTimeout):
        await balance.stable_weight()
    seen = balance.lines_received
    line.pty.write(b"S S      1.000 g\r\n")  # the late answer, before the next command
    await eventually(lambda: _value(balance.lines_received), "late answer read", lambda n: n > seen)
    line.answers.append([b"S S      2.000 g\r\n"])
    assert await balance.stable_weight() == 2.0


async def test_garbage_then_resynchronised(balance: SerialBalance, line: Scripted) -> None:
    line.answers.append([b"\x00\x13garbage without end"])
    with pytest.raises(InstrumentTimeout):
        await balance.weight_now()
    line.answers.append([b"S S      3.000 g\r\n"])
    assert await balance.weight_now() == Weight(3.0, True)
    line.answers.append([b"x" * 500])  # longer than any line: dropped up to CR LF
    with pytest.raises(CommunicationLost):
        await balance.weight_now()
    line.answers.append([b"S D      4.000 g\r\n"])
    assert await balance.weight_now() == Weight(4.0, False)


async def test_closed_port_is_communication_lost_and_reopens(line: Scripted) -> None:
    async with SerialBalance("bal", line.pty.path, BalanceSettings(timeout=0.3)) as bal:
        line.answers.append([b"Z A\r\n"])
        await bal.zero()
        bal._close()  # as if the USB adapter went away and came back: reopened by path
        line.answers.append([b"Z A\r\n"])
        await bal.zero()
    with pytest.raises(CommunicationLost):
        async with SerialBalance("bal", "/dev/does-not-exist-cellfab"):
            pass


@settings(
    deadline=None, max_examples=60, suppress_health_check=[HealthCheck.function_scoped_fixture]
)
@given(
    grams=st.floats(min_value=-99999.999, max_value=999999.999, allow_nan=False),
    stable=st.booleans(),
)
async def test_any_formatted_weight_is_read_back(
    balance: SerialBalance, line: Scripted, grams: float, stable: bool
) -> None:
    text = format_weight(grams)
    line.answers.append([f"S {'S' if stable else 'D'} {text} g\r\n".encode()])
    weight = await balance.weight_now()
    assert weight == Weight(float(text), stable)
