"""Helpers for the balance tests: plain pyserial, nothing from drivers/ but the ICD."""

from __future__ import annotations

import itertools
import time
from collections.abc import Callable, Iterator
from contextlib import contextmanager

import serial

from drivers import icd
from simulators.balance import BalanceTwin
from simulators.world import Bag, World

MakeBalance = Callable[..., BalanceTwin]
HANG_GUARD = 20.0  # seconds; a guard against hangs only
_ids = itertools.count(1)


def fill_bag(world: World, volume_ml: float) -> Bag:
    """A fresh cartridge filled into one bag by the world's own fill_finish program."""
    cartridge = f"BAL{next(_ids)}"
    world.insert_cartridge(cartridge, 1.0e8, 90.0)
    world.run_program(cartridge, "fill_finish", {"bags": 1, "volume_ml_per_bag": volume_ml})
    bag = world.last_bag
    assert bag is not None and bag.cartridge_id == cartridge
    return bag


@contextmanager
def line(twin: BalanceTwin) -> Iterator[serial.Serial]:
    port = serial.Serial(
        twin.port_path, icd.BALANCE_BAUD, bytesize=8, parity="N", stopbits=1, timeout=HANG_GUARD
    )
    try:
        yield port
    finally:
        port.close()


def ask(port: serial.Serial, command: bytes | str) -> str:
    """Send one command line, return its answer line without CR LF."""
    raw = command.encode("ascii") if isinstance(command, str) else command
    port.write(raw + icd.BALANCE_EOL)
    answer = port.read_until(icd.BALANCE_EOL)
    assert answer.endswith(icd.BALANCE_EOL), f"no complete answer to {raw!r}: {answer!r}"
    return answer[: -len(icd.BALANCE_EOL)].decode("ascii")


def weight(value_g: float, kind: str = "S") -> str:
    return f"S {kind} {icd.format_weight(value_g)} g"


def ask_until(port: serial.Serial, command: str, done: Callable[[str], bool]) -> str:
    deadline = time.monotonic() + HANG_GUARD
    while True:
        answer = ask(port, command)
        if done(answer):
            return answer
        assert time.monotonic() < deadline, f"hang guard: last answer {answer!r}"
        time.sleep(0.01)
