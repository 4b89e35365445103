"""Client side of the shuttle twin's controls (ICD section 4, ``Objects/Twin``).

The physical world of a test or a demo: a cartridge put at the LoadPort, one taken from
the OutputPort, a fault injected in a unit, the time scale, and (ICD 1.1) the record of
every program and move the twin started (``started_programs``). It uses a plain asyncua
client that the caller connects (with whatever security the server asks), resolves the
twin namespace by URI and every node by browse name, so it works against any server
that offers the ICD's twin controls. A real instrument has none: ``available`` is then
False and every control raises ``TwinControlsUnavailable``.
"""

from __future__ import annotations

import json
from dataclasses import dataclass
from typing import Self

from asyncua import Client, ua

from drivers import icd
from drivers.icd import BrowseName as BN


class TwinControlsUnavailable(RuntimeError):
    """The server offers no ``Objects/Twin`` (a real instrument)."""


@dataclass(frozen=True, slots=True)
class Started:
    """One entry of ``Twin/StartedPrograms``: a program (or a move) the twin started."""

    unit: str  # a UnitId, or "Transport" for a move
    task_id: str
    program: str  # a program name, or "move"
    cartridge_id: str
    at: float  # process seconds


class TwinControls:
    """``async with TwinControls(connected_client) as ctl: await ctl.insert("C1")``."""

    def __init__(self, client: Client) -> None:
        self.client = client
        self.available = False
        self._twin: ua.NodeId | None = None
        self._methods: dict[str, ua.NodeId] = {}
        self._scale: ua.NodeId | None = None
        self._started: ua.NodeId | None = None

    async def __aenter__(self) -> Self:
        await self.discover()
        return self

    async def __aexit__(self, *exc: object) -> None:
        return None

    async def discover(self) -> bool:
        """Find ``Objects/Twin``; returns ``available``."""
        ns_array = await self.client.get_namespace_array()
        if icd.TWIN_NS not in ns_array:
            return False
        tns = ns_array.index(icd.TWIN_NS)
        try:
            twin = await self.client.nodes.objects.get_child(ua.QualifiedName(BN.TWIN, tns))
            for name in (BN.INSERT_CARTRIDGE, BN.REMOVE_CARTRIDGE, BN.INJECT_FAULT):
                self._methods[name] = (await twin.get_child(ua.QualifiedName(name, tns))).nodeid
            self._scale = (await twin.get_child(ua.QualifiedName(BN.TIME_SCALE, tns))).nodeid
            started = await twin.get_child(ua.QualifiedName(BN.STARTED_PROGRAMS, tns))
            self._started = started.nodeid
        except ua.UaError:
            return False
        self._twin = twin.nodeid
        self.available = True
        return True

    def _unavailable(self) -> TwinControlsUnavailable:
        return TwinControlsUnavailable(f"{self.client.server_url.geturl()} has no Objects/Twin")

    async def _call(self, name: str, *args: ua.Variant) -> None:
        if self._twin is None:
            raise self._unavailable()
        await self.client.get_node(self._twin).call_method(self._methods[name], *args)

    async def insert(self, cartridge_id: str, cells: float = 5e8, viability: float = 95.0) -> None:
        """A cartridge with a patient's starting material at the LoadPort."""
        await self._call(
            BN.INSERT_CARTRIDGE,
            ua.Variant(cartridge_id, ua.VariantType.String),
            ua.Variant(float(cells), ua.VariantType.Double),
            ua.Variant(float(viability), ua.VariantType.Double),
        )

    async def remove(self, cartridge_id: str) -> None:
        """Take a cartridge from the OutputPort."""
        await self._call(BN.REMOVE_CARTRIDGE, ua.Variant(cartridge_id, ua.VariantType.String))

    async def inject_fault(self, unit: str, code: int, text: str) -> None:
        await self._call(
            BN.INJECT_FAULT,
            ua.Variant(unit, ua.VariantType.String),
            ua.Variant(code, ua.VariantType.UInt32),
            ua.Variant(text, ua.VariantType.String),
        )

    async def set_time_scale(self, scale: float) -> None:
        if self._scale is None:
            raise self._unavailable()
        await self.client.get_node(self._scale).write_value(
            ua.Variant(float(scale), ua.VariantType.Double)
        )

    async def started_programs(self) -> list[Started]:
        """``Twin/StartedPrograms``: every program and move started, oldest first."""
        if self._started is None:
            raise self._unavailable()
        raw = await self.client.get_node(self._started).read_value()
        return [
            Started(
                unit=str(e["unit"]),
                task_id=str(e["task_id"]),
                program=str(e["program"]),
                cartridge_id=str(e["cartridge_id"]),
                at=float(e["at"]),
            )
            for e in json.loads(raw)
        ]

    async def times_started(self, task_id: str, unit: str | None = None) -> int:
        """How many programs or moves the twin started under ``task_id`` (on ``unit``)."""
        return sum(
            1
            for e in await self.started_programs()
            if e.task_id == task_id and (unit is None or e.unit == unit)
        )
