"""ICD section 3 (MT-SICS level 0 subset) with plain pyserial on the twin's pty."""

from __future__ import annotations

import os
import re

from balance_support import ask, ask_until, line, weight
from hypothesis import given, settings
from hypothesis import strategies as st

from drivers import icd
from simulators.world import World
from tests.support.balance import MakeBalance, fill_bag

STABLE = re.compile(r"^S S (.{10}) g$")


def test_empty_pan_answers_a_stable_zero_in_the_icd_format(make_balance: MakeBalance) -> None:
    twin = make_balance(settle_seconds=0)
    with line(twin) as port:
        answer = ask(port, "S")
        assert answer == "S S      0.000 g"
        m = STABLE.match(answer)
        assert m is not None and len(m[1]) == icd.BALANCE_VALUE_WIDTH
        assert ask(port, "SI") == "S S      0.000 g"


def test_weight_follows_the_last_bag_and_settles(make_balance: MakeBalance, world: World) -> None:
    twin = make_balance(world, settle_seconds=0.2)
    with line(twin) as port:
        fill_bag(world, 50.0)
        answer = ask_until(port, "S", lambda a: a.startswith("S S"))
        assert answer == weight(50.0 * 1.03)
        assert answer == "S S     51.500 g"
        assert ask(port, "SI") == "S S     51.500 g"
        world.insert_cartridge("TWO", 1e8, 90.0)
        world.run_program("TWO", "fill_finish", {"bags": 2, "volume_ml_per_bag": 12.5})
        assert ask_until(port, "S", lambda a: a.startswith("S S")) == weight(12.5 * 1.03)


def test_a_new_bag_is_dynamic_first(make_balance: MakeBalance, world: World) -> None:
    twin = make_balance(world, settle_seconds=3600)  # stays dynamic for this whole test
    with line(twin) as port:
        fill_bag(world, 80.0)
        assert ask(port, "S") == "S I"
        answer = ask(port, "SI")
        m = re.fullmatch(r"S D (.{10}) g", answer)
        assert m is not None, answer
        assert 0.0 <= float(m[1]) <= 82.4
        assert ask(port, "Z") == "Z I"
        assert ask(port, "T") == "T I"


def test_tare_and_zero(make_balance: MakeBalance, world: World) -> None:
    twin = make_balance(world, settle_seconds=0)
    with line(twin) as port:
        fill_bag(world, 50.0)
        assert ask(port, "T") == f"T S {icd.format_weight(51.5)} g"
        assert ask(port, "S") == weight(0.0)
        fill_bag(world, 20.0)  # lighter than the tare: a negative net weight
        assert ask(port, "S") == weight(20.6 - 51.5)
        assert ask(port, "Z") == "Z A"  # zero clears the tare
        assert ask(port, "S") == weight(0.0)
        fill_bag(world, 30.0)
        assert ask(port, "SI") == weight(10.3)


def test_underload_and_overload(make_balance: MakeBalance, world: World) -> None:
    twin = make_balance(world, settle_seconds=0)
    with line(twin) as port:
        fill_bag(world, 100.0)
        assert ask(port, "Z") == "Z A"
        fill_bag(world, 5.0)  # 97.85 g below the zero point
        assert ask(port, "S") == "S -"
        assert ask(port, "SI") == "S -"
        assert ask(port, "T") == "T I"

    small = World(seed=6)
    twin = make_balance(small, settle_seconds=0, capacity_g=50.0)
    with line(twin) as port:
        fill_bag(small, 60.0)
        assert ask(port, "S") == "S +"
        assert ask(port, "SI") == "S +"
        assert ask(port, "Z") == "Z I"


def test_anything_else_answers_es_and_the_twin_keeps_serving(make_balance: MakeBalance) -> None:
    twin = make_balance(settle_seconds=0)
    with line(twin) as port:
        for junk in (b"", b"X", b"s", b"si", b"S ", b" S", b"SIR", b"TA", b"@", b"\xff\xfe\x00"):
            assert ask(port, junk) == "ES", junk
        assert ask(port, os.urandom(40).replace(b"\n", b"")) == "ES"
        # A line longer than any command with no end in sight is noise: ES at once,
        # then dropped up to its end.
        port.write(b"A" * 300)
        assert port.read_until(icd.BALANCE_EOL) == b"ES\r\n"
        port.write(b"AAS\r\n")  # the end of that line: no second answer
        assert ask(port, "S") == weight(0.0)
    assert twin.counters.overlong_lines == 1


def test_commands_answer_in_order(make_balance: MakeBalance) -> None:
    twin = make_balance(settle_seconds=0)
    with line(twin) as port:
        port.write(b"S\r\nX\r\nZ\r\nSI\r\n")
        answers = [port.read_until(icd.BALANCE_EOL) for _ in range(4)]
    assert answers == [b"S S      0.000 g\r\n", b"ES\r\n", b"Z A\r\n", b"S S      0.000 g\r\n"]


def test_every_other_command_is_es(make_balance: MakeBalance) -> None:
    twin = make_balance(settle_seconds=0)
    with line(twin) as port:

        @settings(max_examples=80, deadline=None)
        @given(st.text(alphabet=st.characters(min_codepoint=32, max_codepoint=126), max_size=20))
        def check(command: str) -> None:
            if command not in ("S", "SI", "Z", "T"):
                assert ask(port, command) == "ES"

        check()
    assert twin.counters.errors >= 50


def test_a_flood_of_commands_gets_every_answer_whole(make_balance: MakeBalance) -> None:
    """Thousands of commands written before one answer is read: every answer arrives
    whole, in order, none truncated and joined to the next line."""
    twin = make_balance(settle_seconds=0)
    n = 3000
    with line(twin) as port:
        port.write(b"S\r\nX\r\n" * (n // 2))
        answers = [port.read_until(icd.BALANCE_EOL) for _ in range(n)]
    assert answers == [b"S S      0.000 g\r\n", b"ES\r\n"] * (n // 2)
    assert twin.counters.answers_dropped == 0


def test_an_endless_line_costs_one_es_and_the_next_command_is_answered(
    make_balance: MakeBalance,
) -> None:
    twin = make_balance(settle_seconds=0)
    with line(twin) as port:
        port.write(b"Z" * 100_000)  # a megabyte-ish line without an end, then its end
        port.write(b"\r\nS\r\n")
        assert port.read_until(icd.BALANCE_EOL) == b"ES\r\n"
        assert port.read_until(icd.BALANCE_EOL) == b"S S      0.000 g\r\n"
    assert twin.counters.overlong_lines == 1
