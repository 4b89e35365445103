"""Helpers for the balance tests: plain pyserial, nothing from drivers/ but the ICD.
Twins come from tests/support/balance.py."""

from __future__ import annotations

import time
from collections.abc import Callable, Iterator
from contextlib import contextmanager

import serial

from drivers import icd
from simulators.balance import BalanceTwin
from tests.support import HANG_GUARD


@contextmanager
def line(twin: BalanceTwin) -> Iterator[serial.Serial]:
    port = serial.Serial(twin.port_path, **icd.BALANCE_LINE.serial_settings(), timeout=HANG_GUARD)
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
    """Ask until ``done`` holds for the answer (the pan settles); hang-guarded."""
    deadline = time.monotonic() + HANG_GUARD
    while True:
        answer = ask(port, command)
        if done(answer):
            return answer
        assert time.monotonic() < deadline, f"hang guard: last answer {answer!r}"
        time.sleep(0.01)
