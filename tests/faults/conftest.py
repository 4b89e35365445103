"""Twins for the fault-injection tests, from tests/support: the session Cell Q twin
(reset for each test) with a fresh FaultProxy in front of it on the twin's loop (fresh
counters), driven from the test's own loop (the switches are awaitable from any loop);
balance twins per test (cheap ptys)."""

from __future__ import annotations

from collections.abc import AsyncIterator

import pytest

from simulators.balance import BalanceTwin
from simulators.cellq import CellQTwin
from simulators.faults import FaultProxy, ModbusFaults, SerialFaults
from simulators.world import World
from tests.support.balance import MakeBalance
from tests.support.cellq import CellQRig


@pytest.fixture
def cellq(cellq_twin: CellQTwin) -> CellQTwin:
    """The session twin, reset, with fresh ModbusFaults (their counters start at 0)."""
    cellq_twin.faults = ModbusFaults()
    return cellq_twin


@pytest.fixture
async def proxy(cellq_rig: CellQRig, cellq: CellQTwin) -> AsyncIterator[FaultProxy]:
    proxy = FaultProxy("127.0.0.1", cellq.port)
    cellq_rig.on_loop(proxy.start())
    yield proxy
    await proxy.stop()


@pytest.fixture
def balance(make_balance: MakeBalance) -> BalanceTwin:
    return make_balance(World(seed=4), faults=SerialFaults(seed=1), settle_seconds=0)
