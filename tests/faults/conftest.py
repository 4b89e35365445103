"""Twins for the fault-injection tests.

A session Cell Q twin runs on a BackgroundLoop; each test gets a fresh FaultProxy in
front of it (fresh counters) on the same loop, and drives it from its own loop (the
switches are awaitable from any loop). Balance twins are per test (cheap ptys).
"""

from __future__ import annotations

from collections.abc import AsyncIterator, Iterator

import pytest

from simulators.balance import BalanceTwin
from simulators.cellq import CellQTwin
from simulators.clock import Clock
from simulators.faults import FaultProxy, SerialFaults
from simulators.runner import BackgroundLoop
from simulators.world import World


@pytest.fixture(scope="session")
def bg() -> Iterator[BackgroundLoop]:
    loop = BackgroundLoop("fault-twins")
    yield loop
    loop.close()


@pytest.fixture(scope="session")
def session_cellq(bg: BackgroundLoop) -> Iterator[CellQTwin]:
    twin = CellQTwin(World(seed=3), Clock(100_000.0))
    bg.run(twin.start())
    yield twin
    bg.run(twin.stop())


@pytest.fixture
def cellq(bg: BackgroundLoop, session_cellq: CellQTwin) -> CellQTwin:
    async def reset() -> None:
        session_cellq.reset()

    bg.run(reset())
    return session_cellq


@pytest.fixture
async def proxy(bg: BackgroundLoop, cellq: CellQTwin) -> AsyncIterator[FaultProxy]:
    proxy = FaultProxy("127.0.0.1", cellq.port)
    bg.run(proxy.start())
    yield proxy
    await proxy.stop()


@pytest.fixture
def balance(bg: BackgroundLoop) -> Iterator[BalanceTwin]:
    twin = BalanceTwin(World(seed=4), faults=SerialFaults(seed=1), settle_seconds=0)
    bg.run(twin.start())
    yield twin
    bg.run(twin.stop())
