"""Per-test clients of the Cell Q protocol tests: the session twins come from
tests/support/cellq.py; every test here starts from a reset twin (all slots free, no
fault, time scale ``SCALE``)."""

from __future__ import annotations

from collections.abc import AsyncIterator

import pytest
from cellq_support import CellQ, tcp_client
from pymodbus.client import AsyncModbusSerialClient
from pymodbus.framer import FramerType

from simulators.cellq import CellQTwin
from tests.support.cellq import RtuRig


@pytest.fixture
async def cq(cellq_twin: CellQTwin) -> AsyncIterator[CellQ]:
    client = tcp_client(cellq_twin.port)
    assert await client.connect()
    yield CellQ(client)
    client.close()


@pytest.fixture
async def rtu(cellq_rtu_rig: RtuRig) -> AsyncIterator[CellQ]:
    cellq_rtu_rig.reset()
    client = AsyncModbusSerialClient(
        cellq_rtu_rig.client_path, framer=FramerType.RTU, baudrate=19200, timeout=1, retries=0
    )
    assert await client.connect()
    yield CellQ(client)
    client.close()
