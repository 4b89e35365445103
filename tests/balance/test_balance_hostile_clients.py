"""A hostile client of the balance twin: whatever bytes it sends (any length, any byte,
line ends anywhere, floods), every line gets exactly one whole ICD answer line, in
order and in bounded time, and the twin keeps serving."""

from __future__ import annotations

import re

from balance_support import line
from hypothesis import given, settings
from hypothesis import strategies as st

from drivers import icd
from simulators.balance import MAX_LINE
from tests.support.balance import MakeBalance

ANSWER = re.compile(rb"(S [SD] .{10} g|T S .{10} g|S [I+-]|Z [AI]|T I|ES)\r\n")

chunks = st.one_of(
    st.binary(max_size=40),
    st.sampled_from([b"S", b"SI", b"Z", b"T", b"\r\n", b"\n", b"\r", b"S\r\n", b"\xff\x00"]),
    st.builds(
        lambda n, b: bytes([b]) * n, st.integers(MAX_LINE - 2, 3 * MAX_LINE), st.integers(0, 255)
    ),
)


def test_any_bytes_get_one_whole_answer_per_line(make_balance: MakeBalance) -> None:
    twin = make_balance(settle_seconds=0)
    with line(twin) as port:

        @settings(max_examples=80, deadline=None)
        @given(parts=st.lists(chunks, max_size=12))
        def check(parts: list[bytes]) -> None:
            junk = b"".join(parts) + b"\r\n"
            port.write(junk + b"S\r\n")
            answers = [port.read_until(icd.BALANCE_EOL) for _ in range(junk.count(b"\n") + 1)]
            for answer in answers:
                assert ANSWER.fullmatch(answer), answer
            assert answers[-1] == b"S S      0.000 g\r\n"
            assert port.in_waiting == 0 or port.read(port.in_waiting) == b""

        check()
    assert twin.counters.answers_dropped == 0
