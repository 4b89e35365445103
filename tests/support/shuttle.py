"""Session fixtures and helpers of every shuttle suite: tests/shuttle (the twin through
plain asyncua clients), tests/drivers/opcua and tests/conformance/shuttle (the driver).

One shuttle twin serves the whole session (``shuttle_session``): security None, SCALE
process seconds per wall second, the default units plus PROBE1 (runs every program,
never holds a cartridge), on its own BackgroundLoop so it outlives pytest-asyncio's
per-test loops, with a FaultProxy in front of it. Tests use fresh cartridge ids, TaskIds
and SampleIds (``tests.support.fresh``, ``short()``) and bring the units they use to a
known state through the ICD itself, so suites share the twin without stepping on each
other. A secure-only twin is its own session fixture (``shuttle_secure``).

The conformance suite's target, driver and rig live in ``tests.support.shuttle_target``.

Every fixture here is named ``shuttle_*`` so no other suite's fixture is shadowed.
"""

from __future__ import annotations

import contextlib
import json
import shutil
from collections.abc import AsyncIterator, Callable, Iterator, Mapping
from dataclasses import dataclass
from pathlib import Path
from typing import Any, Final

import pytest
from asyncua import Client, Node, ua

from drivers import icd
from drivers.opcua import OpcUaSettings
from simulators.certs import ensure_certificate
from simulators.clock import Clock
from simulators.faults import FaultProxy
from simulators.runner import BackgroundLoop
from simulators.shuttle import ShuttleTwin
from simulators.world import World
from tests.support import eventually, fresh, task_id
from tests.support.hostile_shuttle import HostileShuttle

SCALE: Final = 36_000.0  # process seconds per wall second
PROBE: Final = "PROBE1"
LONG: Final = ("expansion", {"temperature_c": 37.0, "duration_h": 336, "feed": "perfusion"})
# Short timeouts so a stalled wire is seen in a test's time; the watchdog's probe must
# answer within its interval, so not shorter than a second on a loaded 2-core machine.
FAST: Final = OpcUaSettings(
    request_timeout=2.0,
    connect_timeout=10.0,
    watchdog_interval=1.0,
    backoff_initial=0.05,
    backoff_max=0.5,
)
S = ua.VariantType.String


def short() -> tuple[str, dict[str, Any]]:
    """A five-minute ``sample`` program with a SampleId never used before (ICD 1.1)."""
    return "sample", {"volume_ml": 0.05, "sample_id": fresh("S")}


async def until(predicate: Callable[[], bool], what: str) -> None:
    """Wait (hang-guarded) for a condition that lives outside the test's loop."""

    async def check() -> bool:
        return predicate()

    await eventually(check, what)


def code_name(exc: ua.UaStatusCodeError) -> str:
    return ua.StatusCode(exc.code).name


# --------------------------------------------------------------------------- the twin
@dataclass
class ShuttleSession:
    loop: BackgroundLoop
    twin: ShuttleTwin
    clock: Clock
    world: World
    proxy: FaultProxy


class _OwnLoop:
    """Servers started on a BackgroundLoop of their own, stopped in reverse order."""

    def __init__(self, name: str) -> None:
        self.loop = BackgroundLoop(name)
        self._started: list[Any] = []

    def start(self, server: Any) -> Any:
        self.loop.run(server.start())
        self._started.append(server)
        return server

    def close(self) -> None:
        try:
            for server in reversed(self._started):
                self.loop.run(server.stop())  # a twin raises its background failure here
        finally:
            self.loop.close()


@contextlib.contextmanager
def own_loop(name: str) -> Iterator[_OwnLoop]:
    own = _OwnLoop(name)
    try:
        yield own
    finally:
        own.close()


@pytest.fixture(scope="session")
def shuttle_session() -> Iterator[ShuttleSession]:
    clock = Clock(SCALE)
    world = World(seed=42)
    twin = ShuttleTwin(
        world,
        clock,
        units=(*icd.DEFAULT_UNITS, PROBE),
        capabilities={PROBE: tuple(icd.PROGRAMS)},
        security="none",
    )
    with own_loop("shuttle-twin") as own:
        own.start(twin)
        proxy = own.start(FaultProxy("127.0.0.1", twin.port))
        yield ShuttleSession(own.loop, twin, clock, world, proxy)


@contextlib.contextmanager
def slowly(session: ShuttleSession) -> Iterator[None]:
    """One process second per wall second on the session twin (a move takes a minute, a
    sample five), back to SCALE after."""
    session.clock.scale = 1.0
    try:
        yield
    finally:
        session.clock.scale = SCALE


@pytest.fixture
def shuttle_twin(shuttle_session: ShuttleSession) -> ShuttleTwin:
    return shuttle_session.twin


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

    async def twin_node(self, name: str) -> Node:
        return await self.twin_obj.get_child(f"{self.tns}:{name}")

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

    async def insert(self, cartridge: str, cells: float = 1e8, viability: float = 90.0) -> str:
        """InsertCartridge with typed Variants; the status code's name."""
        return await self.twin_status(
            "InsertCartridge",
            ua.Variant(cartridge, S),
            ua.Variant(cells, ua.VariantType.Double),
            ua.Variant(viability, ua.VariantType.Double),
        )

    async def inject_fault(self, where: str, code: int, text: str = "") -> str:
        return await self.twin_status(
            "InjectFault",
            ua.Variant(where, S),
            ua.Variant(code, ua.VariantType.UInt32),
            ua.Variant(text, S),
        )

    async def started(self) -> list[dict[str, Any]]:
        """``Twin/StartedPrograms``, decoded."""
        entries = json.loads(await (await self.twin_node("StartedPrograms")).read_value())
        assert isinstance(entries, list)
        return entries

    async def times_started(self, task: str) -> int:
        return sum(1 for e in await self.started() if e["task_id"] == task)

    # ------------------------------------------------------------------ unit helpers
    async def unit_read(self, unit: str, name: str) -> Any:
        return await self.read("Units", unit, name)

    async def unit_call(self, unit: str, method: str, *args: Any) -> Any:
        return await self.call(("Units", unit), method, *args)

    async def unit_status(self, unit: str, method: str, *args: Any) -> str:
        return await self.status(("Units", unit), method, *args)

    async def start(
        self, unit: str, program: tuple[str, Mapping[str, Any]], task: str, cartridge: str
    ) -> str:
        name, params = program
        return await self.unit_call(unit, "StartProgram", name, json.dumps(params), task, cartridge)

    async def wait_for(self, path: tuple[str, ...], predicate: Callable[[Any], bool]) -> Any:
        """Poll a variable until predicate(value) holds (hang-guarded)."""

        async def value() -> Any:
            return await self.read(*path)

        return await eventually(value, "/".join(path), predicate)

    async def wait_unit(self, unit: str, name: str, value: Any) -> None:
        await self.wait_for(("Units", unit, name), lambda v: v == value)

    async def move(self, cartridge: str, to: str) -> None:
        """Move and wait for the arrival (the transport is Idle again)."""
        await self.wait_for(("Transport", "State"), lambda v: v == "Idle")
        await self.call(("Transport",), "Move", cartridge, to, task_id("mv"))
        await self.wait_for(("Transport", "State"), lambda v: v == "Idle")

    async def clear_load_port(self) -> None:
        if await self.read("Transport", "State") == "Faulted":
            await self.call(("Transport",), "Clear")
        held = await self.read("LoadPort", "CartridgeId")
        if held:
            await self.move(held, "OutputPort")

    async def settle(self, unit: str) -> tuple[str, str]:
        """End whatever the unit runs and clear it through the ICD: (its State now, its
        TaskId); Idle or Complete."""
        state = await self.unit_read(unit, "State")
        task = await self.unit_read(unit, "TaskId")
        if state in ("Running", "Held"):
            await self.unit_call(unit, "Abort", task)
            state = "Aborted"
        if state in ("Aborted", "Faulted"):
            await self.unit_call(unit, "Clear")
            state = "Idle"
        return state, task

    async def empty_unit(self, unit: str) -> None:
        """Bring a unit to Idle or Complete through the ICD and send its cartridge out."""
        await self.settle(unit)
        held = await self.unit_read(unit, "CartridgeId")
        if held:
            await self.clear_load_port()
            await self.move(held, "OutputPort")

    async def load(self, unit: str, cells: float = 1e8, viability: float = 90.0) -> str:
        """A fresh cartridge in an emptied unit; its id."""
        await self.empty_unit(unit)
        await self.clear_load_port()
        cartridge = fresh("C")
        assert await self.insert(cartridge, cells, viability) == "Good"
        await self.move(cartridge, unit)
        assert await self.unit_read(unit, "CartridgeId") == cartridge
        return cartridge


async def _connect(url: str) -> ShuttleClient:
    client = Client(url, timeout=10)
    await client.connect()
    helper = ShuttleClient(client)
    await helper.setup()
    return helper


@pytest.fixture
async def shuttle_ua(shuttle_session: ShuttleSession) -> AsyncIterator[ShuttleClient]:
    """A plain asyncua client of the session twin, in the test's own loop."""
    helper = await _connect(shuttle_session.twin.url)
    try:
        yield helper
    finally:
        await helper.client.disconnect()


@pytest.fixture(scope="session")
def shuttle_bg_ua(shuttle_session: ShuttleSession) -> Iterator[ShuttleClient]:
    """A client living on the twin's background loop, for sync (hypothesis) tests."""
    helper = shuttle_session.loop.run(_connect(shuttle_session.twin.url))
    yield helper
    shuttle_session.loop.run(helper.client.disconnect())


@dataclass
class HostileBench:
    """A twin that hostile clients may knock about, and a client on its loop."""

    loop: BackgroundLoop
    twin: ShuttleTwin
    ua: ShuttleClient

    def run(self, coro: Any) -> Any:
        return self.loop.run(coro)


@pytest.fixture(scope="module")
def shuttle_hostile() -> Iterator[HostileBench]:
    """A twin of its own for the hostile-client suite: whatever a random call does to
    it cannot reach the tests that share ``shuttle_session``. Module scope: an asyncua
    server is some 400 000 objects, which every later full collection would scan."""
    twin = ShuttleTwin(World(seed=13), Clock(SCALE), security="none", serial_number="HOST-1")
    with own_loop("shuttle-hostile-twin") as own:
        own.start(twin)
        helper = own.loop.run(_connect(twin.url))
        yield HostileBench(own.loop, twin, helper)
        own.loop.run(helper.client.disconnect())


@pytest.fixture(scope="session")
def _shuttle_hostile_server_session() -> Iterator[HostileShuttle]:
    with own_loop("shuttle-hostile-server") as own:
        yield own.start(HostileShuttle())


@pytest.fixture
async def shuttle_hostile_server(
    _shuttle_hostile_server_session: HostileShuttle,
) -> AsyncIterator[HostileShuttle]:
    """The scripted hostile shuttle (``tests.support.hostile_shuttle``), well-behaved at
    the start of each test."""
    server = _shuttle_hostile_server_session
    await server.reset()
    yield server
    await server.reset()


# --------------------------------------------------------------------------- secure twin
@dataclass
class SecureSetup:
    url: str
    client_cert: Path
    client_key: Path
    server_cert: Path
    trust: Path
    stranger_cert: Path
    empty_trust: Path
    trusted_clients: Path  # the twin's trust list: a certificate copied here is trusted


@pytest.fixture(scope="module")
def shuttle_secure(tmp_path_factory: pytest.TempPathFactory) -> Iterator[SecureSetup]:
    """A secure-only twin; a client certificate it trusts; a stranger server certificate
    to pin by mistake; our trust store with the twin's certificate in it. Module scope
    like ``shuttle_hostile`` (two modules use it; each starts its own)."""
    root = tmp_path_factory.mktemp("opcua-secure")
    trusted_clients = root / "twin-trusted"
    trusted_clients.mkdir()
    client = ensure_certificate(root, "daemon", "urn:cellfab:daemon:test", server=False)
    shutil.copy(client.cert, trusted_clients / client.cert.name)
    stranger = ensure_certificate(root, "stranger", "urn:cellfab:shuttle:stranger", server=True)
    twin = ShuttleTwin(
        World(seed=3),
        Clock(SCALE),
        security="secure",
        cert_dir=root / "twin",
        trusted_clients_dir=trusted_clients,
        serial_number="SEC-1",
    )
    with own_loop("opcua-secure-twin") as own:
        own.start(twin)
        yield _secure_setup(root, twin, client, stranger.cert, trusted_clients)


def _secure_setup(
    root: Path, twin: ShuttleTwin, client: Any, stranger: Path, trusted_clients: Path
) -> SecureSetup:
    trust = root / "daemon-trust"
    trust.mkdir()
    shutil.copy(twin.server_certificate_path, trust / "shuttle.der")
    empty_trust = root / "daemon-trust-stranger-only"
    empty_trust.mkdir()
    shutil.copy(stranger, empty_trust / "stranger.der")
    return SecureSetup(
        twin.url,
        client.cert,
        client.key,
        twin.server_certificate_path,
        trust,
        stranger,
        empty_trust,
        trusted_clients,
    )
