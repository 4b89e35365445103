"""Helpers of the shuttle conformance suite: ICD section 4 twin controls and a test rig.

``TwinControls`` calls ``Objects/Twin`` (namespace ``urn:cellfab:twin:v1``) with a plain
asyncua client, resolving everything by browse name, so it works against any server that
offers the ICD's twin controls. ``Rig`` wraps a driver and the controls with the moves a
test needs (put a fresh cartridge in an emptied unit) and hang-guarded waits.
"""

from __future__ import annotations

import asyncio
import itertools
import os
from collections.abc import Awaitable, Callable
from typing import Any, Self

from asyncua import Client, ua

from drivers import icd
from drivers.base import Event, InvalidState
from drivers.icd import BrowseName as BN
from drivers.opcua import OpcUaSettings, OpcUaShuttle
from drivers.opcua_security import SecurityConfig, apply_security

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


class TwinControls:
    """ICD section 4: InsertCartridge, RemoveCartridge, InjectFault, TimeScale."""

    def __init__(self, url: str, security: SecurityConfig) -> None:
        self.client = Client(url, timeout=5)
        self.security = security
        self.available = False
        self._twin: ua.NodeId | None = None
        self._methods: dict[str, ua.NodeId] = {}
        self._scale: ua.NodeId | None = None

    async def __aenter__(self) -> Self:
        await apply_security(self.client, self.security, "controls")
        await self.client.connect()
        ns_array = await self.client.get_namespace_array()
        if icd.TWIN_NS not in ns_array:
            return self
        tns = ns_array.index(icd.TWIN_NS)
        try:
            twin = await self.client.nodes.objects.get_child(ua.QualifiedName(BN.TWIN, tns))
            for name in (BN.INSERT_CARTRIDGE, BN.REMOVE_CARTRIDGE, BN.INJECT_FAULT):
                self._methods[name] = (await twin.get_child(ua.QualifiedName(name, tns))).nodeid
            self._scale = (await twin.get_child(ua.QualifiedName(BN.TIME_SCALE, tns))).nodeid
        except ua.UaError:
            return self
        self._twin = twin.nodeid
        self.available = True
        return self

    async def __aexit__(self, *exc: object) -> None:
        await self.client.disconnect()

    async def _call(self, name: str, *args: ua.Variant) -> None:
        assert self._twin is not None
        node = self.client.get_node(self._twin)
        await node.call_method(self._methods[name], *args)

    async def insert(self, cartridge_id: str, cells: float = 5e8, viability: float = 95.0) -> None:
        s, d = ua.VariantType.String, ua.VariantType.Double
        await self._call(
            BN.INSERT_CARTRIDGE,
            ua.Variant(cartridge_id, s),
            ua.Variant(cells, d),
            ua.Variant(viability, d),
        )

    async def remove(self, cartridge_id: str) -> None:
        await self._call(BN.REMOVE_CARTRIDGE, ua.Variant(cartridge_id, ua.VariantType.String))

    async def inject_fault(self, unit: str, code: int, text: str) -> None:
        await self._call(
            BN.INJECT_FAULT,
            ua.Variant(unit, ua.VariantType.String),
            ua.Variant(code, ua.VariantType.UInt32),
            ua.Variant(text, ua.VariantType.String),
        )

    async def set_time_scale(self, scale: float) -> None:
        assert self._scale is not None
        await self.client.get_node(self._scale).write_value(
            ua.Variant(scale, ua.VariantType.Double)
        )


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
            return (await self.drv.transport_status())[0] == icd.TransportState.IDLE

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


async def next_event(stream: Any, match: Callable[[Event], bool], limit: float = HANG) -> Event:
    async with asyncio.timeout(limit):
        async for ev in stream:
            if match(ev):
                return ev
    raise AssertionError("event stream ended")


__all__ = ["HANG", "LONG", "SHORT", "InvalidState", "Rig", "TwinControls", "fresh", "task"]
