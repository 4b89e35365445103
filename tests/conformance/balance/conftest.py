"""Balance conformance fixtures. The session's target (the balance twin on its own
world, or the serial device named by CELLFAB_BALANCE_PORT) is ``balance_bench`` of
tests/support/balance.py; here are the per-test driver and the wait for a settled pan.

Putting a bag on the pan needs the physical world: on the twin it is a ``fill_finish``
in its world (ICD section 4: "the weight on the pan follows the last bag filled");
elsewhere those tests skip with the reason. The balance has no twin controls on its
wire (section 4 names none), so nothing is probed.
"""

from __future__ import annotations

import asyncio
from collections.abc import AsyncIterator, Awaitable, Callable
from typing import TypeVar

import pytest

from drivers.base import Busy
from drivers.serial import BalanceSettings, SerialBalance
from tests.support import HANG_GUARD, POLL, eventually
from tests.support.balance import BalanceBench

T = TypeVar("T")
SETTINGS = BalanceSettings(timeout=0.5)


@pytest.fixture
async def balance(balance_bench: BalanceBench) -> AsyncIterator[SerialBalance]:
    if balance_bench.twin is not None:
        balance_bench.twin.faults.clear()
    async with SerialBalance("balance", balance_bench.port, SETTINGS) as driver:
        yield driver
    twin = balance_bench.twin
    if twin is not None:  # answers still owed to this test's commands are not the next's
        twin.faults.clear()

        async def pending() -> int:
            return twin.pending

        await eventually(pending, "balance twin idle", lambda n: n == 0)


async def settled(fn: Callable[[], Awaitable[T]]) -> T:
    """Call ``fn`` until the balance is no longer Busy (hang-guarded)."""
    async with asyncio.timeout(HANG_GUARD):
        while True:
            try:
                return await fn()
            except Busy:
                await asyncio.sleep(POLL)


@pytest.fixture
def until_settled() -> Callable[..., Awaitable[object]]:
    return settled
