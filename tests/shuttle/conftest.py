"""Fixtures for the shuttle twin tests: one session twin on a background loop, plain clients.

The twin runs with ``security="none"`` at a high time scale (10 process hours per
wall second) on its own loop (BackgroundLoop), so it outlives pytest-asyncio's
per-test loops. Tests talk to it with a plain asyncua Client made in the test's
own loop; each test uses its own cartridge ids and TaskIds (``fresh``) and resets the
units it uses through the ICD itself (``ShuttleClient.load``).
"""

from __future__ import annotations

import asyncio
import itertools
import json
import os
from collections.abc import AsyncIterator, Iterator
from dataclasses import dataclass
from typing import Any

import pytest
from asyncua import Client, Node, ua

from drivers import icd
from simulators.clock import Clock
from simulators.runner import BackgroundLoop
from simulators.shuttle import ShuttleTwin
from simulators.world import World

SCALE = 36_000.0  # process seconds per wall second
HANG = 20.0  # hang guard for waits, wall seconds
PROBE = "PROBE1"  # an extra unit that runs every program and never holds a cartridge
LONG = ("expansion", {"temperature_c": 37.0, "duration_h": 336, "feed": "perfusion"})
SHORT = ("sample", {"volume_ml": 0.05, "sample_id": "S"})

_counter = itertools.count(1)


def fresh(prefix: str = "X") -> str:
    """A new id, unique in this test session (cartridge ids may never be reused)."""
    return f"{prefix}{os.getpid() % 1000}-{next(_counter)}"


@dataclass
class Session:
    loop: BackgroundLoop
    twin: ShuttleTwin
    clock: Clock
    world: World


@pytest.fixture(scope="session")
def session() -> Iterator[Session]:
    loop = BackgroundLoop("shuttle-twin")
    clock = Clock(SCALE)
    world = World(seed=42)
    caps = {PROBE: tuple(icd.PROGRAMS)}
    twin = ShuttleTwin(
        world, clock, units=(*icd.DEFAULT_UNITS, PROBE), capabilities=caps, security="none"
    )
    loop.run(twin.start())
    yield Session(loop, twin, clock, world)
    loop.run(twin.stop())
    loop.close()


@pytest.fixture
def twin(session: Session) -> ShuttleTwin:
    return session.twin


def code_name(exc: ua.UaStatusCodeError) -> str:
    return ua.StatusCode(exc.code).name


class ShuttleClient:
    """A thin helper over a plain asyncua Client: node lookup by browse path, calls."""

    def __init__(self, client: Client) -> None:
        self.client = client
        self.ns = 0
        self.tns = 0

    async def setup(self) -> None:
        self.ns = await self.client.get_namespace_index(icd.SHUTTLE_NS)
        self.tns = await self.client.get_namespace_index(icd.TWIN_NS)
        self.shuttle = await self.client.nodes.objects.get_child(f"{self.ns}:Shuttle")
        self.twin_obj = await self.client.nodes.objects.get_child(f"{self.tns}:Twin")
        self._cache: dict[tuple[str, ...], Node] = {}

    async def node(self, *path: str) -> Node:
        if path not in self._cache:
            self._cache[path] = await self.shuttle.get_child([f"{self.ns}:{p}" for p in path])
        return self._cache[path]

    async def read(self, *path: str) -> Any:
        return await (await self.node(*path)).read_value()

    async def call(self, obj: tuple[str, ...], method: str, *args: Any) -> Any:
        parent = await self.node(*obj) if obj else self.shuttle
        return await parent.call_method(f"{self.ns}:{method}", *args)

    async def status(self, obj: tuple[str, ...], method: str, *args: Any) -> str:
        """Call and answer the status code's name ("Good" when it succeeded)."""
        try:
            await self.call(obj, method, *args)
        except ua.UaStatusCodeError as exc:
            return code_name(exc)
        return "Good"

    async def twin_call(self, method: str, *args: Any) -> Any:
        return await self.twin_obj.call_method(f"{self.tns}:{method}", *args)

    async def twin_status(self, method: str, *args: Any) -> str:
        try:
            await self.twin_call(method, *args)
        except ua.UaStatusCodeError as exc:
            return code_name(exc)
        return "Good"

    # ------------------------------------------------------------------ unit helpers
    async def unit_read(self, unit: str, name: str) -> Any:
        return await self.read("Units", unit, name)

    async def unit_call(self, unit: str, method: str, *args: Any) -> Any:
        return await self.call(("Units", unit), method, *args)

    async def unit_status(self, unit: str, method: str, *args: Any) -> str:
        return await self.status(("Units", unit), method, *args)

    async def start(
        self, unit: str, program: tuple[str, dict[str, Any]], task: str, cartridge: str
    ) -> str:
        name, params = program
        return await self.unit_call(unit, "StartProgram", name, json.dumps(params), task, cartridge)

    async def wait_for(self, path: tuple[str, ...], predicate: Any) -> Any:
        """Poll a variable until predicate(value) holds (hang guard HANG s)."""
        async with asyncio.timeout(HANG):
            while True:
                value = await self.read(*path)
                if predicate(value):
                    return value
                await asyncio.sleep(0.005)

    async def wait_unit(self, unit: str, name: str, value: Any) -> None:
        await self.wait_for(("Units", unit, name), lambda v: v == value)

    async def move(self, cartridge: str, to: str) -> None:
        """Move and wait for the arrival (the transport is Idle again)."""
        await self.wait_for(("Transport", "State"), lambda v: v == "Idle")
        await self.call(("Transport",), "Move", cartridge, to, fresh("mv/"))
        await self.wait_for(("Transport", "State"), lambda v: v == "Idle")

    async def clear_load_port(self) -> None:
        if await self.read("Transport", "State") == "Faulted":
            await self.call(("Transport",), "Clear")
        held = await self.read("LoadPort", "CartridgeId")
        if held:
            await self.move(held, "OutputPort")

    async def empty_unit(self, unit: str) -> None:
        """Bring a unit to Idle or Complete through the ICD and send its cartridge out."""
        state = await self.unit_read(unit, "State")
        task = await self.unit_read(unit, "TaskId")
        if state in ("Running", "Held"):
            await self.unit_call(unit, "Abort", task)
            state = "Aborted"
        if state in ("Aborted", "Faulted"):
            await self.unit_call(unit, "Clear")
        held = await self.unit_read(unit, "CartridgeId")
        if held:
            await self.clear_load_port()
            await self.move(held, "OutputPort")

    async def load(self, unit: str, cells: float = 1e8, viability: float = 90.0) -> str:
        """A fresh cartridge in an emptied unit; its id."""
        await self.empty_unit(unit)
        await self.clear_load_port()
        cartridge = fresh("C")
        await self.twin_call(
            "InsertCartridge",
            ua.Variant(cartridge, ua.VariantType.String),
            ua.Variant(cells, ua.VariantType.Double),
            ua.Variant(viability, ua.VariantType.Double),
        )
        await self.move(cartridge, unit)
        assert await self.unit_read(unit, "CartridgeId") == cartridge
        return cartridge


@pytest.fixture
async def sc(session: Session) -> AsyncIterator[ShuttleClient]:
    async with Client(session.twin.url, timeout=10) as client:
        helper = ShuttleClient(client)
        await helper.setup()
        yield helper


@pytest.fixture(scope="session")
def bg_client(session: Session) -> Iterator[ShuttleClient]:
    """A client living on the twin's background loop, for sync (hypothesis) tests."""

    async def connect() -> ShuttleClient:
        client = Client(session.twin.url, timeout=10)
        await client.connect()
        helper = ShuttleClient(client)
        await helper.setup()
        return helper

    helper = session.loop.run(connect())
    yield helper
    session.loop.run(helper.client.disconnect())


async def until(predicate: Any) -> None:
    """Poll a local condition (hang guard HANG s)."""
    async with asyncio.timeout(HANG):
        while not predicate():  # noqa: ASYNC110 - the condition lives in another thread
            await asyncio.sleep(0.005)
