"""Cell Q conformance bench: the twin by default, a real analyzer with CELLFAB_CELLQ_ADDR.

Owns the session's target (one CellQTwin on loopback, or the instrument at
``CELLFAB_CELLQ_ADDR=host:port``), a FaultProxy in front of it (TCP faults work on a
real instrument too), and the per-test fixtures: a connected ``ModbusAnalyzer``
straight to the target, one through the proxy, unique JobSeqs that are aborted and
released after each test, and the ICD section 4 twin controls (holding registers
900..903), used through a plain pymodbus client because the driver never uses them.

Tests that need the physical world (a sample the analyzer knows, a fault, a fast
clock) skip with the reason when the target lacks the twin controls.
"""

from __future__ import annotations

import asyncio
import itertools
import os
import random
from collections.abc import AsyncIterator, Awaitable, Callable, Iterator
from dataclasses import dataclass, field
from typing import Any, TypeVar

import pytest
from pymodbus.client import AsyncModbusTcpClient

from drivers import icd
from drivers.base import Event, InstrumentError
from drivers.modbus import ModbusAnalyzer, ModbusSettings, TcpEndpoint
from simulators.cellq import CellQTwin
from simulators.clock import Clock
from simulators.faults import FaultProxy
from simulators.runner import BackgroundLoop
from simulators.world import World

T = TypeVar("T")
E = TypeVar("E", bound=Event)

TIME_SCALE = 3600.0  # process seconds per wall second: a 15 min assay takes 0.25 s
HANG_GUARD = 30.0  # wall seconds; only ever a guard against a hang, never asserted

FAST = ModbusSettings(
    timeout=1.0,
    poll_interval=0.05,
    heartbeat_timeout=5.0,
    backoff_initial=0.05,
    backoff_max=0.5,
)
FAULTY = ModbusSettings(  # for the proxied driver: faults are found quickly
    timeout=0.5,
    poll_interval=0.05,
    heartbeat_timeout=5.0,
    backoff_initial=0.05,
    backoff_max=0.3,
)


@dataclass
class CellQBench:
    endpoint: TcpEndpoint
    bg: BackgroundLoop
    proxy: FaultProxy
    twin: CellQTwin | None = None
    world: World | None = None
    _ids: Iterator[int] = field(default_factory=lambda: itertools.count(1))

    @property
    def proxy_endpoint(self) -> TcpEndpoint:
        return TcpEndpoint("127.0.0.1", self.proxy.port)

    def on_bg(self, coro: Awaitable[T]) -> T:
        async def wrap() -> T:
            return await coro

        return self.bg.run(wrap())

    # -------------------------------------------------------------- twin controls
    async def _raw(self, fn: Callable[[AsyncModbusTcpClient], Awaitable[Any]]) -> Any:
        client = AsyncModbusTcpClient(
            self.endpoint.host, port=self.endpoint.port, retries=0, timeout=5
        )
        try:
            assert await client.connect(), f"cannot connect to {self.endpoint}"
            return await fn(client)
        finally:
            client.close()

    async def has_twin_controls(self) -> bool:
        rsp = await self._raw(
            lambda c: c.read_holding_registers(icd.TWIN_HR_FAULT_CODE, count=4, device_id=1)
        )
        return not rsp.isError()

    async def require_twin_controls(self, why: str) -> None:
        if not await self.has_twin_controls():
            pytest.skip(f"{why}: the analyzer has no ICD section 4 twin controls (HR 900..903)")

    async def raise_fault(self, code: int) -> None:
        await self.require_twin_controls("raising an analyzer fault")
        rsp = await self._raw(
            lambda c: c.write_registers(icd.TWIN_HR_FAULT_CODE, [code, 1], device_id=1)
        )
        assert not rsp.isError(), rsp

    async def clear_fault(self) -> None:
        rsp = await self._raw(
            lambda c: c.write_registers(icd.TWIN_HR_FAULT_RAISE, [0], device_id=1)
        )
        assert not rsp.isError(), rsp

    async def set_time_scale(self, scale: float) -> None:
        await self.require_twin_controls("setting the time scale")
        rsp = await self._raw(
            lambda c: c.write_registers(icd.TWIN_HR_TIME_SCALE, icd.encode_f32(scale), device_id=1)
        )
        assert not rsp.isError(), rsp

    # -------------------------------------------------------------- the world
    def sample(self, volume_ml: float = 1.0) -> str:
        """A sample the analyzer can measure (drawn in the twin's shared world)."""
        if self.world is None:
            pytest.skip(
                "needs a sample known to the analyzer: only the twin's shared world "
                "(ICD section 4) can draw one"
            )
        n = next(self._ids)
        cid, sid = f"CQC{n:04d}", f"SQC{n:04d}"
        self.world.insert_cartridge(cid, 2e8, 92.0)
        self.world.run_program(cid, "sample", {"volume_ml": volume_ml, "sample_id": sid})
        return sid

    def submitted(self, job_seq: int) -> int | None:
        """How many jobs the twin created for ``job_seq`` (None on a real analyzer)."""
        return None if self.twin is None else self.twin.submitted[job_seq]


@pytest.fixture(scope="session")
def cellq_bench() -> Iterator[CellQBench]:
    bg = BackgroundLoop("cellq-conformance")
    addr = os.environ.get("CELLFAB_CELLQ_ADDR")
    twin: CellQTwin | None = None
    world: World | None = None
    if addr:
        endpoint = TcpEndpoint.parse(addr)
    else:
        world = World(seed=7)
        twin = CellQTwin(world, Clock(TIME_SCALE), host="127.0.0.1", port=0)
        bg.run(twin.start())
        endpoint = TcpEndpoint("127.0.0.1", twin.port)
    proxy = FaultProxy(endpoint.host, endpoint.port)
    bg.run(proxy.start())
    try:
        yield CellQBench(endpoint, bg, proxy, twin, world)
    finally:
        bg.run(proxy.stop())
        if twin is not None:
            bg.run(twin.stop())
        bg.close()


@pytest.fixture
async def analyzer(cellq_bench: CellQBench) -> AsyncIterator[ModbusAnalyzer]:
    async with ModbusAnalyzer("cellq", cellq_bench.endpoint, FAST) as driver:
        yield driver


@pytest.fixture
async def proxied(cellq_bench: CellQBench) -> AsyncIterator[ModbusAnalyzer]:
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
    rng = random.Random()
    base = rng.randrange(1_000_000, 4_000_000_000)

    def new() -> int:
        made.append(base + len(made))
        return made[-1]

    yield new
    if cellq_bench.twin is not None:
        cellq_bench.twin.faults.clear()
    await cellq_bench.proxy.clear()
    async with ModbusAnalyzer("cellq-cleanup", cellq_bench.endpoint, FAST) as driver:
        for seq in made:
            try:
                await driver.abort(seq)
            except InstrumentError:
                pass
            try:
                await driver.release(seq)
            except InstrumentError:
                pass


async def next_event(
    stream: AsyncIterator[Event], kind: type[E], where: Callable[[E], bool] = lambda e: True
) -> E:
    """The next event of ``kind`` that satisfies ``where`` (hang-guarded)."""
    async with asyncio.timeout(HANG_GUARD):
        async for event in stream:
            if isinstance(event, kind) and where(event):
                return event
    raise AssertionError(f"stream ended before a {kind.__name__}")


@pytest.fixture
def wait_for() -> Callable[..., Awaitable[Any]]:
    return next_event


async def poll_until(fn: Callable[[], Awaitable[T]], ok: Callable[[T], bool]) -> T:
    """Call ``fn`` until its value is ``ok`` (hang-guarded); returns that value."""
    async with asyncio.timeout(HANG_GUARD):
        while True:
            value = await fn()
            if ok(value):
                return value
            await asyncio.sleep(0.02)


@pytest.fixture
def until() -> Callable[..., Awaitable[Any]]:
    return poll_until
