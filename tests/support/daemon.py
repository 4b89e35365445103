"""Fixtures of a running daemon over the twins: the real supervisor, drivers, engine and API.

* ``sim_cell`` (session): the three twins on one world (``SimCell`` at ``TIME_SCALE``)
  on a loop of their own, and the twin controls that stand in for the physical world
  (``SimTwins.insert``: a cartridge at the LoadPort).
* ``running_daemon(site)``: ``daemon.supervisor.serve`` on a loop of its own (a
  background thread), ready once the API serves; it is stopped cleanly at exit, and a
  daemon that does not stop, or that crashed, fails the test.
* ``daemon_site(twins, journal, ...)``: a site for the twins with the repository's
  recipe library (and ``extra_recipes``), unapproved recipes allowed (the library's
  recipes are not approved in a test journal; tests of approval turn it off), cheap
  password hashes (a simulated site), the API on 127.0.0.1 port 0.
* ``api_daemon`` (module): one such daemon per test module, journal in a temporary
  folder, offering the folders of ``daemon_recipes`` (a fixture a suite overrides)
  too, with the ``STAFF`` as users, each signed in once (``RunningDaemon.token``);
  ``api`` (function): an ``httpx.AsyncClient`` on its bound address signed in as
  ``tester`` (operator, supervisor and qa: the tests of batches act in every role);
  ``client_for(url, token=...)`` signs in as anyone;
* ``LocalDaemon(build(site))``: the same daemon served on the test's own loop, for
  engine tests that reach the engine directly (``tests/engine``);
* ``start_batch``, ``batch_until``, ``insert_cartridge``: the steps tests take over
  HTTP (the cartridge goes in through the twin's controls, the physical world).

Tests talk to the daemon over real HTTP only; they touch ``RunningDaemon.daemon`` only
through ``RunningDaemon.call`` / ``run`` (on the daemon's own loop), and only for what
the API cannot show (the bus's limits, making the staff).
"""

from __future__ import annotations

import asyncio
import concurrent.futures
import contextlib
import dataclasses
from collections.abc import AsyncIterator, Awaitable, Callable, Iterable, Iterator
from dataclasses import dataclass
from pathlib import Path
from typing import Any, Final, TypeVar

import anyio
import httpx
import pytest
from asyncua import Client

from daemon.audit.entries import Act, Actor
from daemon.config import Site, sim_site
from daemon.supervisor import Daemon, build, serve
from simulators.cell import SimCell, SimConfig
from simulators.controls import TwinControls
from simulators.runner import BackgroundLoop
from tests.support import HANG_GUARD, eventually, fresh

T = TypeVar("T")

TIME_SCALE: Final = 20_000.0  # process seconds per wall second: qc_only takes about 1 s
ROOT: Final = Path(__file__).resolve().parents[2]
LIBRARY: Final = ROOT / "recipes"
UNIX_BASE: Final = "http://cellfab"
PASSWORD: Final = "correct horse battery staple"  # every test user's (policy: >= 12)
# user name -> (printed name, roles): the people of a test daemon
STAFF: Final[dict[str, tuple[str, tuple[str, ...]]]] = {
    "tester": ("Tess Ter", ("operator", "supervisor", "qa")),
    "op1": ("Olga Perez", ("operator",)),
    "sup1": ("Sam Upton", ("supervisor",)),
    "qa1": ("Quinn Adams", ("qa",)),
    "qa2": ("Quentin Abel", ("qa",)),
    "admin1": ("Ada Min", ("admin",)),
}


@dataclass
class SimTwins:
    loop: BackgroundLoop
    cell: SimCell
    endpoints: dict[str, str]
    controls: TwinControls
    reconnect: Callable[[], Awaitable[TwinControls]] | None = None

    def twin(self, call: Callable[[TwinControls], Awaitable[T]]) -> T:
        """``call(controls)`` on the twins' loop. The session lives as long as the test
        session; one that lapsed (a machine stalled past asyncua's watchdog) is opened
        again once, instead of failing every later test that uses the twins."""
        try:
            return self.loop.run(call(self.controls))
        except ConnectionError:
            if self.reconnect is None:
                raise
            self.controls = self.loop.run(self.reconnect())
            return self.loop.run(call(self.controls))

    def insert(self, cartridge_id: str, cells: float = 2e8, viability: float = 90.0) -> None:
        """A cartridge at the LoadPort (it must be free: wait for it through the API)."""
        self.twin(lambda c: c.insert(cartridge_id, cells, viability))


@pytest.fixture(scope="session")
def sim_cell() -> Iterator[SimTwins]:
    loop = BackgroundLoop("sim-cell")
    cell = SimCell(SimConfig(time_scale=TIME_SCALE, seed=7))
    loop.run(cell.start())
    endpoints = cell.endpoints()

    clients: list[Client] = []

    async def connect() -> TwinControls:
        for old in clients:
            with contextlib.suppress(Exception):
                await old.disconnect()
        clients.clear()
        client = Client(endpoints["shuttle"])
        await client.connect()
        clients.append(client)
        controls = TwinControls(client)
        assert await controls.discover(), "the shuttle twin offers no Objects/Twin"
        return controls

    controls = loop.run(connect())
    try:
        yield SimTwins(loop, cell, endpoints, controls, connect)
    finally:
        for client in clients:
            with contextlib.suppress(Exception):
                loop.run(client.disconnect())
        loop.run(cell.stop())
        loop.close()


def daemon_site(
    twins: SimTwins,
    journal: Path,
    *,
    api_bind: str = "127.0.0.1:0",
    extra_recipes: Iterable[Path] = (),
    **changes: Any,
) -> Site:
    ep = twins.endpoints
    site = sim_site(
        {"shuttle": ep["shuttle"], "cellq": ep["cellq"]},
        TIME_SCALE,
        journal,
        recipes=[LIBRARY, *extra_recipes],
        api_bind=api_bind,
    )
    policy = site.policy.model_copy(update={"allow_unapproved_recipes": True})
    return cheap_hashes(site).model_copy(update={"policy": policy, **changes})


def cheap_hashes(site: Site) -> Site:
    """``site`` with the cheapest argon2 its validation allows (a simulated site only):
    tests sign in and sign often, on 2 cores."""
    argon2 = site.auth.argon2.model_copy(
        update={"time_cost": 1, "memory_kib": 1024, "parallelism": 1}
    )
    return site.model_copy(update={"auth": site.auth.model_copy(update={"argon2": argon2})})


@dataclass
class RunningDaemon:
    daemon: Daemon
    loop: BackgroundLoop
    tokens: dict[str, str] = dataclasses.field(default_factory=dict)

    @property
    def url(self) -> str:
        return self.daemon.api_url

    def call(self, fn: Callable[[], T]) -> T:
        """``fn()`` on the daemon's loop (its objects are not thread-safe)."""

        async def run() -> T:
            return fn()

        return self.loop.run(run(), timeout=HANG_GUARD)

    def run(self, fn: Callable[[], Awaitable[T]]) -> T:
        """``await fn()`` on the daemon's loop."""

        async def run() -> T:
            return await fn()

        return self.loop.run(run(), timeout=HANG_GUARD)

    def hire(self, staff: dict[str, tuple[str, tuple[str, ...]]] = STAFF) -> None:
        """Add the users of ``staff`` (password ``PASSWORD``) and sign each in once."""
        directory = self.daemon.directory
        act = Act(Actor("local:tests"), "the test staff")
        for name, (full_name, roles) in staff.items():
            self.run(lambda n=name, f=full_name, r=roles: directory.add(act, n, f, r, PASSWORD))
            token, _ = self.run(lambda n=name: directory.login(n, PASSWORD))
            self.tokens[name] = token

    def token(self, name: str) -> str:
        return self.tokens[name]


@contextlib.contextmanager
def running_daemon(site: Site) -> Iterator[RunningDaemon]:
    loop = BackgroundLoop("daemon")
    ready: concurrent.futures.Future[Daemon] = concurrent.futures.Future()
    stop: list[anyio.Event] = []

    async def main() -> None:
        stop.append(anyio.Event())
        daemon = build(site)
        await serve(daemon, stop[0], on_ready=ready.set_result)

    done = asyncio.run_coroutine_threadsafe(main(), loop.loop)
    try:
        concurrent.futures.wait(
            [ready, done], timeout=HANG_GUARD, return_when=concurrent.futures.FIRST_COMPLETED
        )
        if done.done():
            done.result()  # raises what stopped it
            raise AssertionError("the daemon returned before it was ready")
        if not ready.done():
            raise AssertionError("hang guard: the daemon did not get ready")
        yield RunningDaemon(ready.result(), loop)
    finally:
        if stop:
            loop.loop.call_soon_threadsafe(stop[0].set)
        try:
            done.result(timeout=HANG_GUARD)  # a daemon that crashed or hangs fails here
        finally:
            loop.close()


class LocalDaemon:
    """A daemon served by a task of the test's own loop (engine tests reach its engine
    directly); ``stop()`` ends it cleanly and raises what crashed it."""

    def __init__(self, daemon: Daemon) -> None:
        self.daemon = daemon
        self._stop = anyio.Event()
        self._ready = asyncio.Event()
        self._task: asyncio.Task[None] | None = None

    async def start(self, *, api: bool = False) -> Daemon:
        self._task = asyncio.create_task(
            serve(self.daemon, self._stop, api=api, on_ready=lambda _d: self._ready.set())
        )
        ready = asyncio.ensure_future(self._ready.wait())
        done, _ = await asyncio.wait(
            {self._task, ready}, timeout=HANG_GUARD, return_when=asyncio.FIRST_COMPLETED
        )
        ready.cancel()
        if self._task in done:
            self._task.result()  # raises what stopped it
        assert self._ready.is_set(), "hang guard: the daemon did not get ready"
        return self.daemon

    async def stop(self) -> None:
        self._stop.set()
        if self._task is not None:
            async with asyncio.timeout(HANG_GUARD):
                await self._task


@pytest.fixture(scope="module")
def daemon_recipes() -> tuple[Path, ...]:
    """Recipe folders the module's daemon offers beside the library (override it)."""
    return ()


@pytest.fixture(scope="module")
def api_daemon(
    sim_cell: SimTwins,
    tmp_path_factory: pytest.TempPathFactory,
    daemon_recipes: tuple[Path, ...],
) -> Iterator[RunningDaemon]:
    journal = tmp_path_factory.mktemp("daemon") / "journal.sqlite"
    site = daemon_site(sim_cell, journal, extra_recipes=daemon_recipes)
    with running_daemon(site) as running:
        running.hire()
        yield running


def client_for(url: str, token: str | None = None, **kwargs: Any) -> httpx.AsyncClient:
    """An HTTP client for an API URL (``http://...``, ``https://...`` or ``unix:PATH``),
    signed in with ``token`` when given."""
    kwargs.setdefault("timeout", HANG_GUARD)
    if token is not None:
        kwargs["headers"] = {**kwargs.get("headers", {}), "authorization": f"Bearer {token}"}
    if url.startswith("unix:"):
        transport = httpx.AsyncHTTPTransport(uds=url.removeprefix("unix:"))
        return httpx.AsyncClient(base_url=UNIX_BASE, transport=transport, **kwargs)
    return httpx.AsyncClient(base_url=url, **kwargs)


@pytest.fixture
async def api(api_daemon: RunningDaemon) -> AsyncIterator[httpx.AsyncClient]:
    async with client_for(api_daemon.url, api_daemon.token("tester")) as client:
        yield client


# --------------------------------------------------------------------------- helpers
async def start_batch(
    api: httpx.AsyncClient, recipe: str = "qc_only", **body: Any
) -> dict[str, Any]:
    """POST /batches (a fresh cartridge id unless given); asserts 201; the batch."""
    body.setdefault("cartridge_id", fresh("C"))
    answer = await api.post("/batches", json={"recipe": recipe, **body})
    assert answer.status_code == 201, answer.text
    return answer.json()  # type: ignore[no-any-return]


async def batch_until(
    api: httpx.AsyncClient, batch_id: str, ok: Callable[[dict[str, Any]], bool], what: str
) -> dict[str, Any]:
    """GET /batches/{id} until ``ok`` holds (a hang guard, never a timing)."""

    async def read() -> dict[str, Any]:
        answer = await api.get(f"/batches/{batch_id}")
        assert answer.status_code == 200, answer.text
        return answer.json()  # type: ignore[no-any-return]

    return await eventually(read, f"{batch_id}: {what}", ok)


async def insert_cartridge(api: httpx.AsyncClient, twins: SimTwins, cartridge_id: str) -> None:
    """Put a cartridge at the LoadPort once the API shows it free."""

    async def load_port() -> str:
        answer = await api.get("/instruments")
        return answer.json()["shuttles"]["shuttle1"]["load_port"]  # type: ignore[no-any-return]

    await eventually(load_port, "the LoadPort free", lambda held: held == "")
    await asyncio.to_thread(twins.insert, cartridge_id)
