"""Session twins for the Cell Q protocol tests.

One Cell Q twin on Modbus TCP and one on Modbus RTU (a null-modem pair of ptys) run on
a BackgroundLoop for the whole session; every test starts from a reset twin (all slots
free, no fault, time scale 100000 process s per wall s).
"""

from __future__ import annotations

from collections.abc import AsyncIterator, Iterator

import pytest
from cellq_support import SCALE, CellQ, Rig, RtuRig, tcp_client
from pymodbus.client import AsyncModbusSerialClient
from pymodbus.framer import FramerType

from simulators.cellq import CellQTwin
from simulators.clock import Clock
from simulators.runner import BackgroundLoop
from simulators.serialline import NullModem
from simulators.world import World


@pytest.fixture(scope="session")
def bg() -> Iterator[BackgroundLoop]:
    loop = BackgroundLoop("cellq-twins")
    yield loop
    loop.close()


@pytest.fixture(scope="session")
def rig(bg: BackgroundLoop) -> Iterator[Rig]:
    world, clock = World(seed=11), Clock(SCALE)

    async def make() -> CellQTwin:
        twin = CellQTwin(world, clock)
        await twin.start()
        return twin

    twin = bg.run(make())
    yield Rig(bg, world, clock, twin)
    bg.run(twin.stop())


@pytest.fixture(scope="session")
def rtu_rig(bg: BackgroundLoop, rig: Rig) -> Iterator[RtuRig]:
    """A second analyzer, RTU only, on the same world and clock."""
    modem = NullModem()

    async def make() -> CellQTwin:
        await modem.start()
        twin = CellQTwin(rig.world, rig.clock, port=None, serial_port=modem.path_a)
        await twin.start()
        return twin

    twin = bg.run(make())
    yield RtuRig(rig, twin, modem)
    bg.run(twin.stop())
    bg.run(modem.stop())


@pytest.fixture
def twin(rig: Rig) -> CellQTwin:
    rig.reset()
    return rig.twin


@pytest.fixture
async def cq(twin: CellQTwin) -> AsyncIterator[CellQ]:
    client = tcp_client(twin.port)
    assert await client.connect()
    yield CellQ(client)
    client.close()


@pytest.fixture
async def rtu(rtu_rig: RtuRig) -> AsyncIterator[CellQ]:
    async def _reset() -> None:
        rtu_rig.twin.reset()

    rtu_rig.rig.bg.run(_reset())
    client = AsyncModbusSerialClient(
        rtu_rig.modem.path_b, framer=FramerType.RTU, baudrate=19200, timeout=1, retries=0
    )
    assert await client.connect()
    yield CellQ(client)
    client.close()
