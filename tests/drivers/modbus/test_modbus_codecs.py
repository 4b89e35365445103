"""Register codecs of drivers/icd.py (ICD section 2): round trips and refusals.

High word first for 32-bit values, IEEE 754 float32, strings of 8 registers with
the first character in the high byte, NUL padded.
"""

from __future__ import annotations

import math
import struct

import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from drivers import icd
from drivers.modbus import ModbusSettings, RtuEndpoint, TcpEndpoint

SETTINGS = settings(deadline=None, max_examples=200)
REG = st.integers(min_value=0, max_value=0xFFFF)
SAMPLE_ID = st.from_regex(r"[A-Za-z0-9._-]{1,16}", fullmatch=True)


@SETTINGS
@given(st.integers(min_value=0, max_value=0xFFFFFFFF))
def test_u32_round_trip_high_word_first(value: int) -> None:
    regs = icd.encode_u32(value)
    assert len(regs) == 2 and all(0 <= r <= 0xFFFF for r in regs)
    assert regs[0] == value >> 16  # high word first
    assert icd.decode_u32(regs) == value


@SETTINGS
@given(REG, REG)
def test_u32_decode_then_encode_gives_the_registers(hi: int, lo: int) -> None:
    assert icd.encode_u32(icd.decode_u32([hi, lo])) == [hi, lo]


@pytest.mark.parametrize("value", [-1, 0x1_0000_0000])
def test_u32_refuses_values_that_do_not_fit(value: int) -> None:
    with pytest.raises(ValueError):
        icd.encode_u32(value)


@SETTINGS
@given(st.floats(width=32, allow_nan=False))
def test_f32_round_trip_is_exact_for_float32_values(value: float) -> None:
    regs = icd.encode_f32(value)
    assert len(regs) == 2 and all(0 <= r <= 0xFFFF for r in regs)
    back = icd.decode_f32(regs)
    assert back == value
    assert math.copysign(1.0, back) == math.copysign(1.0, value)  # -0.0 stays -0.0


@SETTINGS
@given(st.floats(allow_nan=False, allow_infinity=False, min_value=-3e38, max_value=3e38))
def test_f32_of_a_double_is_its_nearest_float32(value: float) -> None:
    expected = struct.unpack(">f", struct.pack(">f", value))[0]
    assert icd.decode_f32(icd.encode_f32(value)) == expected


@SETTINGS
@given(REG, REG)
def test_f32_decode_then_encode_gives_the_registers(hi: int, lo: int) -> None:
    value = icd.decode_f32([hi, lo])
    if math.isnan(value):
        assert math.isnan(icd.decode_f32(icd.encode_f32(value)))
    else:
        assert icd.encode_f32(value) == [hi, lo]


def test_f32_word_order_and_nan() -> None:
    assert icd.encode_f32(1.0) == [0x3F80, 0x0000]
    assert icd.decode_f32([0x4048, 0xF5C3]) == pytest.approx(3.14, rel=1e-6)
    assert math.isnan(icd.decode_f32(icd.encode_f32(math.nan)))


@SETTINGS
@given(SAMPLE_ID)
def test_sample_id_round_trips_through_eight_registers(sample_id: str) -> None:
    regs = icd.encode_string(sample_id)
    assert len(regs) == icd.STRING_REGS
    assert all(0 <= r <= 0xFFFF for r in regs)
    assert regs[0] >> 8 == ord(sample_id[0])  # first character in the high byte
    assert icd.decode_string(regs) == sample_id


@SETTINGS
@given(st.text(alphabet=st.characters(min_codepoint=1, max_codepoint=127), max_size=16))
def test_any_ascii_without_nul_round_trips(text: str) -> None:
    assert icd.decode_string(icd.encode_string(text)) == text


def test_string_is_nul_padded() -> None:
    assert icd.encode_string("ABC") == [0x4142, 0x4300, 0, 0, 0, 0, 0, 0]
    assert icd.decode_string([0x4142, 0x4300, 0, 0, 0, 0, 0, 0]) == "ABC"


@SETTINGS
@given(st.text(min_size=17, max_size=40, alphabet="ab"))
def test_strings_longer_than_sixteen_are_refused(text: str) -> None:
    with pytest.raises(ValueError):
        icd.encode_string(text)


@pytest.mark.parametrize("text", ["é", "S1\u2603"])
def test_non_ascii_is_refused(text: str) -> None:
    with pytest.raises(ValueError):
        icd.encode_string(text)


def test_non_ascii_registers_are_refused_on_decode() -> None:
    with pytest.raises(ValueError):
        icd.decode_string([0xC3A9, 0, 0, 0, 0, 0, 0, 0])


@pytest.mark.parametrize(
    ("text", "expected"),
    [
        ("127.0.0.1:5020", TcpEndpoint("127.0.0.1", 5020)),
        ("cellq1", TcpEndpoint("cellq1", icd.DEFAULT_CELLQ_PORT)),
        ("[::1]:502", TcpEndpoint("::1", 502)),
    ],
)
def test_tcp_endpoint_parses_host_port(text: str, expected: TcpEndpoint) -> None:
    assert TcpEndpoint.parse(text) == expected


@pytest.mark.parametrize("text", ["host:", ":502", "host:port"])
def test_tcp_endpoint_refuses_malformed_addresses(text: str) -> None:
    with pytest.raises(ValueError):
        TcpEndpoint.parse(text)


# --------------------------------------------------------------------------- RTU line
def test_rtu_endpoint_defaults_to_the_icd_line() -> None:
    ep = RtuEndpoint("/dev/ttyUSB0")
    assert ep.line == icd.SerialLine(19200, 8, "N", 1)
    assert str(ep) == "rtu:/dev/ttyUSB0 (19200 8N1)"


@pytest.mark.parametrize(
    ("kwargs", "field"),
    [
        ({"baudrate": 12345}, "baudrate"),
        ({"baudrate": True}, "baudrate"),
        ({"bytesize": 9}, "bytesize"),
        ({"parity": "X"}, "parity"),
        ({"stopbits": 3}, "stopbits"),
    ],
)
def test_rtu_endpoint_refuses_line_settings_no_uart_has(
    kwargs: dict[str, object], field: str
) -> None:
    with pytest.raises(ValueError, match=rf"/dev/ttyS1: serial line: {field}"):
        RtuEndpoint("/dev/ttyS1", **kwargs)  # type: ignore[arg-type]


def test_serial_line_names_every_bad_field_at_once() -> None:
    with pytest.raises(ValueError) as raised:
        icd.SerialLine(baudrate=0, parity="Q")
    assert "baudrate 0" in str(raised.value) and "parity 'Q'" in str(raised.value)


@pytest.mark.parametrize(
    "kwargs",
    [{"timeout": 0}, {"poll_interval": -1}, {"device_id": 0}, {"backoff_initial": 9.0}],
)
def test_modbus_settings_refuse_nonsense(kwargs: dict[str, float]) -> None:
    with pytest.raises(ValueError, match=r"ModbusSettings|device id"):
        ModbusSettings(**kwargs)  # type: ignore[arg-type]
