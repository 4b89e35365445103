"""The one set of test helpers: hang guard, waits, event matching and fresh ids.

Every test module imports these from here (``from tests.support import ...``); no
test file keeps a copy. Twin fixtures shared by the whole session live beside this
module (``tests/support/twins.py`` and friends) and are registered as a pytest plugin
by ``tests/conftest.py``.

Waits are hang guards only: a test never asserts how long something took (speed
belongs to ``bench/``). ``HANG_GUARD`` is generous so that a loaded 2-core CI machine
never turns a slow pass into a failure.
"""

from __future__ import annotations

import asyncio
import itertools
import os
import sys
from collections.abc import AsyncIterator, Awaitable, Callable
from pathlib import Path
from typing import Final, TypeVar

from drivers.base import Event

__all__ = [
    "CELLFAB",
    "HANG_GUARD",
    "POLL",
    "events_until",
    "eventually",
    "fresh",
    "next_event",
    "task_id",
]

# the `cellfab` command of the venv the tests run in (its console script)
CELLFAB: Final = str(Path(sys.executable).with_name("cellfab"))

HANG_GUARD: Final = 30.0  # wall seconds: only ever a guard against a hang, never asserted
POLL: Final = 0.005  # wall seconds between two polls of an instrument or a condition

T = TypeVar("T")
E = TypeVar("E", bound=Event)

_ids = itertools.count(1)
_RUN: Final = f"{os.getpid() % 10000}"


def fresh(prefix: str = "X") -> str:
    """A new identifier for this run (cartridge and sample ids are never reused on an
    instrument, and session twins outlive a test). Matches the ICD's id rules while
    ``prefix`` is short."""
    return f"{prefix}{_RUN}-{next(_ids)}"


def task_id(prefix: str = "T") -> str:
    """A new TaskId shaped like the daemon's (``batch/step/attempt``)."""
    return f"{prefix}{_RUN}/step/{next(_ids)}"


async def eventually(
    check: Callable[[], Awaitable[T]],
    what: str,
    ok: Callable[[T], bool] = bool,
    limit: float = HANG_GUARD,
) -> T:
    """Call ``check`` until ``ok`` holds for its value; return that value.

    ``what`` names the condition in the failure message of a hang."""
    last: T | None = None
    try:
        async with asyncio.timeout(limit):
            while True:
                last = await check()
                if ok(last):
                    return last
                await asyncio.sleep(POLL)
    except TimeoutError:
        raise AssertionError(f"hang guard: {what} not reached; last value {last!r}") from None


async def events_until(
    stream: AsyncIterator[Event],
    kind: type[E] = Event,  # type: ignore[assignment]
    where: Callable[[E], bool] = lambda _e: True,
    limit: float = HANG_GUARD,
) -> list[Event]:
    """Every event read from ``stream`` up to and including the first ``kind`` event
    for which ``where`` holds."""
    seen: list[Event] = []
    try:
        async with asyncio.timeout(limit):
            async for event in stream:
                seen.append(event)
                if isinstance(event, kind) and where(event):
                    return seen
    except TimeoutError:
        tail = ", ".join(type(e).__name__ for e in seen[-5:])
        raise AssertionError(
            f"hang guard: no matching {kind.__name__} after {len(seen)} events (last: {tail})"
        ) from None
    raise AssertionError(f"event stream ended before a matching {kind.__name__}")


async def next_event(
    stream: AsyncIterator[Event],
    kind: type[E] = Event,  # type: ignore[assignment]
    where: Callable[[E], bool] = lambda _e: True,
    limit: float = HANG_GUARD,
) -> E:
    """The next ``kind`` event from ``stream`` for which ``where`` holds."""
    last = (await events_until(stream, kind, where, limit))[-1]
    assert isinstance(last, kind)
    return last
