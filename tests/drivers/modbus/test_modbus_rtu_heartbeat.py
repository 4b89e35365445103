"""ModbusAnalyzer over RTU (a null modem of two ptys) and its heartbeat watchdog.

RTU: the same register code as TCP must submit, follow and release a job, and time
out (then recover) on a silent line. Heartbeat: an analyzer whose Modbus stack still
answers but whose heartbeat no longer moves is a lost connection; the twin cannot be
frozen that way, so a CellQTwin subclass pins its heartbeat.
"""

from __future__ import annotations

import asyncio
from collections.abc import AsyncIterator, Callable, Iterator
from typing import Any

import pytest

from drivers.base import (
    CommunicationLost,
    ConnectionLost,
    ConnectionRestored,
    Event,
    InvalidArgument,
)
from drivers.icd import Assay, SlotState
from drivers.modbus import ModbusAnalyzer, ModbusSettings, RtuEndpoint, TcpEndpoint
from simulators.cellq import CellQTwin
from simulators.clock import Clock
from simulators.runner import BackgroundLoop
from simulators.serialline import NullModem
from simulators.world import World

HANG_GUARD = 30.0
SETTINGS = ModbusSettings(timeout=0.5, poll_interval=0.05, backoff_initial=0.05, backoff_max=0.3)


@pytest.fixture(scope="module")
def rtu_twin() -> Iterator[tuple[CellQTwin, World, str, BackgroundLoop]]:
    bg = BackgroundLoop("cellq-rtu")
    world = World(seed=3)
    modem = NullModem()
    bg.run(modem.start())
    twin = CellQTwin(world, Clock(3600.0), port=None, serial_port=modem.path_a)
    bg.run(twin.start())
    try:
        yield twin, world, modem.path_b, bg
    finally:
        bg.run(twin.stop())
        bg.run(modem.stop())
        bg.close()


async def _next(stream: AsyncIterator[Event], kind: type[Any]) -> Any:
    async with asyncio.timeout(HANG_GUARD):
        async for event in stream:
            if isinstance(event, kind):
                return event
    raise AssertionError("stream ended")


async def _until(fn: Callable[[], Any], ok: Callable[[Any], bool]) -> Any:
    async with asyncio.timeout(HANG_GUARD):
        while True:
            try:
                value = await fn()
                if ok(value):
                    return value
            except CommunicationLost:
                pass
            await asyncio.sleep(0.02)


async def test_rtu_job_round_trip(rtu_twin: Any) -> None:
    twin, world, path, _bg = rtu_twin
    world.insert_cartridge("RTU1", 2e8, 91.0)
    world.run_program("RTU1", "sample", {"volume_ml": 1.0, "sample_id": "SRTU1"})
    async with ModbusAnalyzer("cellq-rtu", RtuEndpoint(path), SETTINGS) as driver:
        slot = await driver.submit(77, "SRTU1", Assay.CELL_COUNT | Assay.VIABILITY)
        assert await driver.submit(77, "SRTU1", Assay.CELL_COUNT | Assay.VIABILITY) == slot
        done = await _until(lambda: driver.job(77), lambda j: j.state is SlotState.DONE)
        assert set(done.results) == {Assay.CELL_COUNT, Assay.VIABILITY}
        assert done.results[Assay.VIABILITY] == pytest.approx(91.0, abs=15.0)
        await driver.release(77)
        with pytest.raises(InvalidArgument):
            await driver.job(77)
    assert twin.submitted[77] == 1


async def test_rtu_silence_is_lost_then_restored(rtu_twin: Any) -> None:
    twin, _world, path, _bg = rtu_twin
    async with ModbusAnalyzer("cellq-rtu", RtuEndpoint(path), SETTINGS) as driver:
        events = driver.events()
        twin.faults.silence(None)
        try:
            with pytest.raises(CommunicationLost):
                await driver.submit(78, "NOSUCH", Assay.STERILITY)
            await _next(events, ConnectionLost)
        finally:
            twin.faults.clear()
        await _next(events, ConnectionRestored)
        slot = await _until(lambda: driver.submit(78, "NOSUCH", Assay.STERILITY), lambda s: True)
        assert (await driver.job(78)).slot == slot
        await _until(lambda: driver.job(78), lambda j: j.state is SlotState.FAILED)
        await driver.release(78)
    assert twin.submitted[78] == 1


class FrozenHeartbeatTwin(CellQTwin):
    """A Cell Q whose Modbus stack answers while its heartbeat is stuck (firmware hang)."""

    frozen = False

    @property
    def heartbeat(self) -> int:
        return 12345 if self.frozen else super().heartbeat


async def test_frozen_heartbeat_is_a_lost_connection() -> None:
    bg = BackgroundLoop("cellq-frozen")
    twin = FrozenHeartbeatTwin(World(seed=1), Clock(3600.0), port=0)
    bg.run(twin.start())
    watch = ModbusSettings(
        timeout=0.5, poll_interval=0.05, heartbeat_timeout=1.5, backoff_initial=0.05
    )
    try:
        async with ModbusAnalyzer("cellq-frozen", TcpEndpoint("127.0.0.1", twin.port), watch) as d:
            events = d.events()
            twin.frozen = True
            lost = await _next(events, ConnectionLost)
            assert "heartbeat" in lost.reason
            twin.frozen = False
            await _next(events, ConnectionRestored)
            assert d.connected
            assert (await d.status()).free_slots == 16
    finally:
        bg.run(twin.stop())
        bg.close()
