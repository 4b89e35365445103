"""Cell Q conformance fixtures. The session's target (the session twin by default, any
analyzer with CELLFAB_CELLQ_ADDR=host:port: a real one, or a third-party twin) and the
FaultProxy in front of it are ``cellq_bench`` of tests/support/cellq.py; here are the
per-test fixtures: a ``ModbusAnalyzer`` straight to the target and
one through the proxy, fresh JobSeqs that are aborted and released after each test,
and ``controls``, the ICD section 4 twin controls (holding registers 900..903, input
registers 900..901) through a plain pymodbus client, since the driver never uses them.

What each test needs from the target, and what it does without it:

* twin controls (probed: a read of them answers values, not exception 02): an analyzer
  fault, a fast clock (set to ``TIME_SCALE`` before every test), the jobs-created
  counter that proves no job was made twice. Tests that need them skip with the
  reason; a test that only uses the counter as extra proof runs without it.
* a known sample (ICD 1.1: drawn by a shuttle of the same cell): only the in-process
  twin shares its world with the test; elsewhere such tests skip with the reason.
* the twin's own Modbus faults (exception answers, silence, lost answers): the
  in-process twin only.
"""

from __future__ import annotations

import random
from collections.abc import AsyncIterator, Callable
from typing import Final

import pytest
from pymodbus.client import AsyncModbusTcpClient

from drivers.base import InstrumentError
from drivers.modbus import ModbusAnalyzer, ModbusSettings
from simulators.cellq_controls import CellQControls
from tests.support.cellq import TIME_SCALE, CellQBench

FAST: Final = ModbusSettings(
    timeout=1.0, poll_interval=0.05, heartbeat_timeout=5.0, backoff_initial=0.05, backoff_max=0.5
)
FAULTY: Final = ModbusSettings(  # for the proxied driver: faults are found quickly
    timeout=0.5, poll_interval=0.05, heartbeat_timeout=5.0, backoff_initial=0.05, backoff_max=0.3
)


@pytest.fixture
async def controls(cellq_bench: CellQBench) -> AsyncIterator[CellQControls]:
    """Section 4 controls of the target (``available`` says whether it has them); when
    it does, its clock runs at ``TIME_SCALE`` and no analyzer fault is raised."""
    ep = cellq_bench.endpoint
    client = AsyncModbusTcpClient(ep.host, port=ep.port, retries=0, timeout=5)
    assert await client.connect(), f"cannot connect to {ep}"
    ctl = CellQControls(client)
    try:
        if await ctl.discover():
            await ctl.set_time_scale(TIME_SCALE)
        yield ctl
        if ctl.available:
            await ctl.clear_fault()
    finally:
        client.close()


@pytest.fixture
async def analyzer(
    cellq_bench: CellQBench, controls: CellQControls
) -> AsyncIterator[ModbusAnalyzer]:
    async with ModbusAnalyzer("cellq", cellq_bench.endpoint, FAST) as driver:
        yield driver


@pytest.fixture
async def proxied(
    cellq_bench: CellQBench, controls: CellQControls
) -> AsyncIterator[ModbusAnalyzer]:
    """A driver connected through the FaultProxy; every switch is cleared afterwards."""
    await cellq_bench.proxy.clear()
    async with ModbusAnalyzer("cellq-proxied", cellq_bench.proxy_endpoint, FAULTY) as driver:
        yield driver
    await cellq_bench.proxy.clear()
    if cellq_bench.twin is not None:
        cellq_bench.twin.faults.clear()


@pytest.fixture
async def job_seqs(cellq_bench: CellQBench) -> AsyncIterator[Callable[[], int]]:
    """Fresh JobSeqs; every job made with one is aborted and released after the test."""
    made: list[int] = []
    base = random.Random().randrange(1_000_000, 4_000_000_000)

    def new() -> int:
        made.append(base + len(made))
        return made[-1]

    yield new
    if cellq_bench.twin is not None:
        cellq_bench.twin.faults.clear()
    await cellq_bench.proxy.clear()
    async with ModbusAnalyzer("cellq-cleanup", cellq_bench.endpoint, FAST) as driver:
        for seq in made:
            for command in (driver.abort, driver.release):
                try:
                    await command(seq)
                except InstrumentError:
                    pass
