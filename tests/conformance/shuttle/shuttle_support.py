"""Helpers of the shuttle conformance suite: ICD section 4 twin controls and a test rig.

The twin controls (ICD section 4) are ``simulators.controls.TwinControls``: a plain asyncua
client resolving everything by browse name, so they work against any server that offers
them. ``Rig`` wraps a driver and the controls with the moves a
test needs (put a fresh cartridge in an emptied unit) and hang-guarded waits.
"""

from __future__ import annotations

import asyncio
import itertools
import os
from collections.abc import Awaitable, Callable
from typing import Any

from asyncua import ua

from drivers import icd
from drivers.base import Event, InvalidState
from drivers.opcua import OpcUaSettings, OpcUaShuttle
from simulators.controls import TwinControls

FAST = OpcUaSettings(
    request_timeout=2.0,
    connect_timeout=10.0,
    watchdog_interval=0.3,
    backoff_initial=0.05,
    backoff_max=0.5,
)
HANG = 20.0  # hang guard of every wait, wall seconds
LONG = ("expansion", {"temperature_c": 37.0, "duration_h": 336, "feed": "perfusion"})
SHORT = ("sample", {"volume_ml": 0.05, "sample_id": "S1"})
_ids = itertools.count(1)
_RUN = f"{os.getpid() % 10000}"


def fresh(prefix: str) -> str:
    """A new id for this run (cartridge ids may never be reused on a shuttle)."""
    return f"{prefix}{_RUN}-{next(_ids)}"


def task(prefix: str = "T") -> str:
    return f"{prefix}{_RUN}/step/{next(_ids)}"


async def eventually(check: Callable[[], Awaitable[bool]], what: str, limit: float = HANG) -> None:
    """Poll ``check`` until true; the limit is only a hang guard."""
    async with asyncio.timeout(limit):
        while True:
            if await check():
                return
            await asyncio.sleep(0.005)  # polling the instrument, not waiting for a timer
    del what


class Rig:
    """A driver plus the twin controls, with the setup moves tests share."""

    def __init__(self, driver: OpcUaShuttle, controls: TwinControls) -> None:
        self.drv = driver
        self.ctl = controls

    async def wait_state(self, unit: str, *states: str) -> None:
        async def check() -> bool:
            return (await self.drv.unit_status(unit)).state in states

        await eventually(check, f"{unit} in {states}")

    async def wait_transport_idle(self) -> None:
        async def check() -> bool:
            return (await self.drv.transport_status()).state == icd.TransportState.IDLE

        await eventually(check, "transport Idle")

    async def empty(self, unit: str) -> None:
        """Bring a unit to Idle (or Complete) without a cartridge, using only the ICD."""
        st = await self.drv.unit_status(unit)
        if st.state in (icd.UnitState.RUNNING, icd.UnitState.HELD):
            await self.drv.abort(unit, st.task_id)
            st = await self.drv.unit_status(unit)
        if st.state in (icd.UnitState.ABORTED, icd.UnitState.FAULTED):
            await self.drv.clear(unit)
        if st.cartridge_id:
            await self.move(st.cartridge_id, icd.OUTPUT_PORT)
            await self.ctl.remove(st.cartridge_id)

    async def move(self, cartridge_id: str, to: str) -> None:
        await self.wait_transport_idle()
        await self.drv.move(cartridge_id, to, task("M"))
        await self.wait_transport_idle()

    async def load(self, unit: str) -> str:
        """An emptied ``unit`` holding a fresh cartridge; returns its id."""
        await self.empty(unit)
        cid = fresh("C")

        async def port_free() -> bool:
            return await self.drv.load_port() == ""

        await eventually(port_free, "LoadPort free")
        for _ in range(100):
            try:
                await self.ctl.insert(cid)
                break
            except ua.UaStatusCodeError as exc:  # the port is reserved while a move leaves it
                if exc.code != ua.StatusCodes.BadInvalidState:
                    raise
                await asyncio.sleep(0.01)
        await self.move(cid, unit)

        async def arrived() -> bool:
            return (await self.drv.unit_status(unit)).cartridge_id == cid

        await eventually(arrived, f"{cid} in {unit}")
        return cid

    async def start_long(self, unit: str) -> tuple[str, str]:
        cid = await self.load(unit)
        tid = task()
        program, params = LONG
        await self.drv.start(unit, program, params, tid, cid)
        return cid, tid


async def events_until(
    stream: Any, match: Callable[[Event], bool], limit: float = HANG
) -> list[Event]:
    """Every event of ``stream`` up to and including the first that ``match``es."""
    seen: list[Event] = []
    async with asyncio.timeout(limit):
        async for ev in stream:
            seen.append(ev)
            if match(ev):
                return seen
    raise AssertionError("event stream ended")


async def next_event(stream: Any, match: Callable[[Event], bool], limit: float = HANG) -> Event:
    return (await events_until(stream, match, limit))[-1]


__all__ = ["HANG", "LONG", "SHORT", "InvalidState", "Rig", "fresh", "task"]
