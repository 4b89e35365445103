"""ModbusAnalyzer over RTU (a null modem of two ptys) and its heartbeat watchdog.

RTU: the same register code as TCP must submit, follow and release a job, and time
out (then recover) on a silent line. Heartbeat: an analyzer whose Modbus stack still
answers but whose heartbeat no longer moves is a lost connection; the twin cannot be
frozen that way, so a CellQTwin subclass pins its heartbeat.
"""

from __future__ import annotations

import os
import termios
from collections.abc import Awaitable, Callable
from typing import TypeVar

import pytest

from drivers import icd
from drivers.base import CommunicationLost, ConnectionLost, ConnectionRestored, InvalidArgument
from drivers.icd import Assay, SlotState
from drivers.modbus import ModbusAnalyzer, ModbusSettings, RtuEndpoint, TcpEndpoint
from simulators.cellq import CellQTwin
from simulators.clock import Clock
from simulators.runner import BackgroundLoop
from simulators.serialline import NullModem
from simulators.world import World
from tests.support import eventually, next_event
from tests.support.cellq import CellQRig, RtuRig, draw_sample

T = TypeVar("T")

SETTINGS = ModbusSettings(timeout=0.5, poll_interval=0.05, backoff_initial=0.05, backoff_max=0.3)


async def _until(fn: Callable[[], Awaitable[T]], ok: Callable[[T], bool]) -> T:
    """``eventually`` across a lost connection (CommunicationLost means "not yet")."""

    async def attempt() -> T | None:
        try:
            return await fn()
        except CommunicationLost:
            return None

    value = await eventually(attempt, "condition", lambda v: v is not None and ok(v))
    assert value is not None
    return value


async def test_rtu_job_round_trip(cellq_rtu_rig: RtuRig) -> None:
    twin = cellq_rtu_rig.reset()
    sample = draw_sample(cellq_rtu_rig.rig.world)
    panel = Assay.CELL_COUNT | Assay.VIABILITY
    async with ModbusAnalyzer(
        "cellq-rtu", RtuEndpoint(cellq_rtu_rig.client_path), SETTINGS
    ) as driver:
        slot = await driver.submit(77, sample, panel)
        assert await driver.submit(77, sample, panel) == slot
        done = await _until(lambda: driver.job(77), lambda j: j.state is SlotState.DONE)
        assert set(done.results) == {Assay.CELL_COUNT, Assay.VIABILITY}
        assert done.results[Assay.VIABILITY] == pytest.approx(92.0, abs=15.0)
        await driver.release(77)
        with pytest.raises(InvalidArgument):
            await driver.job(77)
    assert twin.submitted[77] == 1


async def test_rtu_silence_is_lost_then_restored(cellq_rtu_rig: RtuRig) -> None:
    twin = cellq_rtu_rig.reset()
    async with ModbusAnalyzer(
        "cellq-rtu", RtuEndpoint(cellq_rtu_rig.client_path), SETTINGS
    ) as driver:
        events = driver.events()
        twin.faults.silence(None)
        try:
            with pytest.raises(CommunicationLost):
                await driver.submit(78, "NOSUCH", Assay.STERILITY)
            await next_event(events, ConnectionLost)
        finally:
            twin.faults.clear()
        await next_event(events, ConnectionRestored)
        slot = await _until(lambda: driver.submit(78, "NOSUCH", Assay.STERILITY), lambda _s: True)
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


async def test_frozen_heartbeat_is_a_lost_connection(cellq_bg: BackgroundLoop) -> None:
    twin = FrozenHeartbeatTwin(World(seed=1), Clock(3600.0), port=0)
    cellq_bg.run(twin.start())
    watch = ModbusSettings(
        timeout=0.5, poll_interval=0.05, heartbeat_timeout=1.5, backoff_initial=0.05
    )
    try:
        async with ModbusAnalyzer("cellq-frozen", TcpEndpoint("127.0.0.1", twin.port), watch) as d:
            events = d.events()
            twin.frozen = True
            lost = await next_event(events, ConnectionLost)
            assert "heartbeat" in lost.reason
            twin.frozen = False
            await next_event(events, ConnectionRestored)
            assert d.connected
            assert (await d.status()).free_slots == 16
    finally:
        cellq_bg.run(twin.stop())


# --------------------------------------------------------------------------- RTU line
def _line_of(path: str) -> tuple[int, int, str, int]:
    """Baud rate, data bits, parity and stop bits a pty is set to (termios)."""
    fd = os.open(path, os.O_RDONLY | os.O_NOCTTY | os.O_NONBLOCK)
    try:
        cflag, ospeed = (lambda a: (a[2], a[5]))(termios.tcgetattr(fd))
    finally:
        os.close(fd)
    bits = {termios.CS7: 7, termios.CS8: 8}[cflag & termios.CSIZE]
    parity = "N" if not cflag & termios.PARENB else ("O" if cflag & termios.PARODD else "E")
    speeds = {termios.B9600: 9600, termios.B19200: 19200, termios.B38400: 38400}
    return speeds[ospeed], bits, parity, 2 if cflag & termios.CSTOPB else 1


async def test_rtu_line_settings_reach_the_port_and_the_twin_answers(
    cellq_rig: CellQRig,
) -> None:
    """A site that runs its analyzer at 9600 8N2: the driver opens the port so, and an
    RTU twin configured the same answers it. (Parity is passed the same way; a Linux
    pty refuses pyserial's second tcsetattr with parity on, so it is not used here.)"""
    modem = NullModem()
    cellq_rig.on_loop(modem.start())
    line = icd.SerialLine(9600, 8, "N", 2)
    twin = CellQTwin(
        cellq_rig.world, cellq_rig.clock, port=None, serial_port=modem.path_a, line=line
    )
    cellq_rig.on_loop(twin.start())
    try:
        assert _line_of(modem.path_a) == (9600, 8, "N", 2)  # the twin's end
        endpoint = RtuEndpoint(modem.path_b, baudrate=9600, stopbits=2)
        async with ModbusAnalyzer("cellq-8n2", endpoint, SETTINGS) as driver:
            assert _line_of(modem.path_b) == (9600, 8, "N", 2)  # the driver's end
            assert (await driver.status()).free_slots == icd.SLOT_COUNT - len(
                [s for s in twin.slots if s.job]
            )
    finally:
        cellq_rig.on_loop(twin.stop())
        cellq_rig.on_loop(modem.stop())
