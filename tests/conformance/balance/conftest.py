"""Balance conformance bench: the twin by default, a real balance with CELLFAB_BALANCE_PORT.

Owns the session's balance target (a BalanceTwin on a pty, on its own world, or the
serial device named by ``CELLFAB_BALANCE_PORT``) and the per-test ``balance`` driver.
Putting a bag on the pan needs the physical world: on the twin it is a
``fill_finish`` in the shared world (ICD section 4: "the weight on the pan follows the
last bag filled"); elsewhere those tests skip with the reason.
"""

from __future__ import annotations

import asyncio
import itertools
import os
from collections.abc import AsyncIterator, Awaitable, Callable, Iterator
from dataclasses import dataclass, field
from typing import Any, TypeVar

import pytest

from drivers.base import Busy
from drivers.serial import BalanceSettings, SerialBalance
from simulators.balance import BalanceTwin
from simulators.faults import SerialFaults
from simulators.runner import BackgroundLoop
from simulators.world import World

T = TypeVar("T")
HANG_GUARD = 30.0
SETTINGS = BalanceSettings(timeout=0.5)


@dataclass
class BalanceBench:
    port: str
    bg: BackgroundLoop
    twin: BalanceTwin | None = None
    world: World | None = None
    _ids: Iterator[int] = field(default_factory=lambda: itertools.count(1))

    @property
    def faults(self) -> SerialFaults:
        if self.twin is None:
            pytest.skip("serial faults are injected by the balance twin only")
        return self.twin.faults

    def place_bag(self, volume_ml: float, world: World | None = None) -> float:
        """Fill one bag of ``volume_ml`` (it lands on the pan); returns its grams."""
        world = world or self.world
        if world is None:
            pytest.skip("putting a bag on the pan needs the twin's world (ICD section 4)")
        cid = f"BAL{next(self._ids):04d}"
        world.insert_cartridge(cid, 1e8, 90.0)
        out = world.run_program(cid, "fill_finish", {"bags": 1, "volume_ml_per_bag": volume_ml})
        assert out["bags"] == 1
        return volume_ml * 1.03


@pytest.fixture(scope="session")
def balance_bench() -> Iterator[BalanceBench]:
    bg = BackgroundLoop("balance-conformance")
    device = os.environ.get("CELLFAB_BALANCE_PORT")
    twin: BalanceTwin | None = None
    world: World | None = None
    if device:
        port = device
    else:
        world = World(seed=11)
        twin = BalanceTwin(world, faults=SerialFaults(seed=3), settle_seconds=0.2)
        bg.run(twin.start())
        port = twin.port_path
    try:
        yield BalanceBench(port, bg, twin, world)
    finally:
        if twin is not None:
            twin.faults.clear()
            bg.run(twin.stop())
        bg.close()


@pytest.fixture
async def balance(balance_bench: BalanceBench) -> AsyncIterator[SerialBalance]:
    if balance_bench.twin is not None:
        balance_bench.twin.faults.clear()
    async with SerialBalance("balance", balance_bench.port, SETTINGS) as driver:
        yield driver
    if balance_bench.twin is not None:
        balance_bench.twin.faults.clear()


async def settled(fn: Callable[[], Awaitable[T]]) -> T:
    """Call ``fn`` until the balance is no longer Busy (hang-guarded)."""
    async with asyncio.timeout(HANG_GUARD):
        while True:
            try:
                return await fn()
            except Busy:
                await asyncio.sleep(0.02)


@pytest.fixture
def until_settled() -> Callable[..., Awaitable[Any]]:
    return settled
