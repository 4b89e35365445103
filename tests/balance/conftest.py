"""Balance twins for the MT-SICS tests: each test gets a fresh world and twin (a pty is
cheap) on one session BackgroundLoop, so blocking pyserial calls in the test thread
never block the twin."""

from __future__ import annotations

from collections.abc import Iterator

import pytest
from balance_support import MakeBalance

from simulators.balance import BalanceTwin
from simulators.faults import SerialFaults
from simulators.runner import BackgroundLoop
from simulators.world import World


@pytest.fixture(scope="session")
def bg() -> Iterator[BackgroundLoop]:
    loop = BackgroundLoop("balance-twins")
    yield loop
    loop.close()


@pytest.fixture
def make_balance(bg: BackgroundLoop) -> Iterator[MakeBalance]:
    started: list[BalanceTwin] = []

    def make(
        world: World | None = None, faults: SerialFaults | None = None, **kwargs: float
    ) -> BalanceTwin:
        twin = BalanceTwin(world or World(seed=5), faults=faults, **kwargs)

        async def start() -> None:
            await twin.start()

        bg.run(start())
        started.append(twin)
        return twin

    yield make
    for twin in started:
        bg.run(twin.stop())


@pytest.fixture
def world() -> World:
    return World(seed=5)
