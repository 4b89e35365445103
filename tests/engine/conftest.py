"""Engine tests: the real daemon (journal, drivers, engine) against the twins.

One SimCell (shuttle, Cell Q, balance twins on one world) runs for the whole module
on a background loop; each test gets a fresh daemon with its own journal on it. The
``Cell`` helper plays the people around the cell: it puts cartridges at the LoadPort
(twin controls), answers confirmations with the step's role, and moves cartridges or
faults units behind the daemon's back when a test needs a disturbance.
"""

from __future__ import annotations

import asyncio
import contextlib
from collections.abc import AsyncIterator, Iterator
from pathlib import Path
from typing import Any

import pytest
from asyncua import Client, ua

from daemon.batch.engine import Engine
from daemon.batch.machine import Batch
from daemon.config.defaults import sim_site
from daemon.config.model import Policy, Site
from daemon.recipe import Recipe, load_recipe
from daemon.supervisor import Daemon, build, serve
from drivers import icd
from simulators.cell import SimCell, SimConfig
from simulators.controls import TwinControls
from simulators.runner import BackgroundLoop
from tests.support import HANG_GUARD, fresh

SCALE = 20_000.0
ROOT = Path(__file__).resolve().parents[2]
LIBRARY = ROOT / "recipes"
HERE = Path(__file__).parent / "recipes"


def recipe(name: str) -> Recipe:
    path = HERE / f"{name}.yaml"
    return load_recipe(path if path.exists() else LIBRARY / f"{name}.yaml")


@pytest.fixture(scope="module")
def sim() -> Iterator[SimCell]:
    loop = BackgroundLoop("engine-twins")
    cell = SimCell(SimConfig(time_scale=SCALE, seed=3))
    loop.run(cell.start())
    try:
        yield cell
    finally:
        loop.run(cell.stop())
        loop.close()


def site_for(sim: SimCell, journal: Path, **kw: Any) -> Site:
    """The twins' site; it allows unapproved recipes (the library's are drafts until
    the control plane signs approvals)."""
    endpoints = {k: v for k, v in sim.endpoints().items() if k in ("shuttle", "cellq")}
    site = sim_site(endpoints, SCALE, journal, recipes=[LIBRARY, HERE], **kw)
    return site.model_copy(update={"policy": Policy(allow_unapproved_recipes=True)})


class Running:
    """A daemon served in a task of the test's loop; ``stop()`` ends it cleanly."""

    def __init__(self, daemon: Daemon) -> None:
        self.daemon = daemon
        self.stop_event = asyncio.Event()
        self.ready = asyncio.Event()

    async def start(self) -> None:
        import anyio

        stop = anyio.Event()
        self._anyio_stop = stop

        async def relay() -> None:
            await self.stop_event.wait()
            stop.set()

        self._relay = asyncio.create_task(relay())
        self._task = asyncio.create_task(
            serve(self.daemon, stop, api=False, on_ready=lambda _d: self.ready.set())
        )
        done, _ = await asyncio.wait(
            {self._task, asyncio.ensure_future(self.ready.wait())},
            timeout=HANG_GUARD,
            return_when=asyncio.FIRST_COMPLETED,
        )
        if self._task in done:
            self._task.result()  # raises what stopped it
        assert self.ready.is_set(), "daemon did not become ready"

    async def stop(self) -> None:
        self.stop_event.set()
        async with asyncio.timeout(HANG_GUARD):
            await self._task
        self._relay.cancel()


class Cell:
    """The people and the world around the cell (twin controls of ICD section 4)."""

    def __init__(self, sim: SimCell, client: Client, controls: TwinControls) -> None:
        self.sim = sim
        self.client = client
        self.controls = controls
        self._tasks: list[asyncio.Task[Any]] = []

    async def insert(self, cartridge_id: str, cells: float = 2e8, viability: float = 90.0) -> None:
        """Put a cartridge at the LoadPort once it is free (an operator at the port)."""
        async with asyncio.timeout(HANG_GUARD):
            while True:
                try:
                    await self.controls.insert(cartridge_id, cells, viability)
                    return
                except ua.UaStatusCodeError as exc:
                    if exc.code != ua.StatusCodes.BadInvalidState:
                        raise
                await asyncio.sleep(0.01)

    def load(self, *cartridges: str) -> None:
        """Insert cartridges one after another as the port frees (in the background)."""

        async def run() -> None:
            for c in cartridges:
                await self.insert(c)

        self._tasks.append(asyncio.create_task(run()))

    def operator(self, engine: Engine, batch_id: str, by: str = "op1") -> None:
        """Answer every confirm prompt of the batch with the role the step asks for."""

        async def run() -> None:
            seen: set[tuple[str, int]] = set()
            while True:

                def prompt(b: Batch) -> Batch | None:
                    if not b.step or b.confirmation is not None or b.state.value != "Running":
                        return None
                    if engine.recipe_of(b).kind(b.step) != "confirm":
                        return None
                    return None if (b.step, b.step_visit) in seen else b

                b = await engine.wait_batch(batch_id, prompt)
                seen.add((b.step, b.step_visit))
                role = engine.recipe_of(b).steps[b.step].role
                with contextlib.suppress(Exception):  # the batch may have moved on
                    await engine.confirm(batch_id, b.step, by=by, role=role)

        self._tasks.append(asyncio.create_task(run()))

    async def close(self) -> None:
        for t in self._tasks:
            t.cancel()
        for t in self._tasks:
            with contextlib.suppress(BaseException):
                await t


@pytest.fixture
async def cell(sim: SimCell) -> AsyncIterator[Cell]:
    client = Client(sim.shuttle.url)
    await client.connect()
    controls = TwinControls(client)
    assert await controls.discover()
    c = Cell(sim, client, controls)
    try:
        yield c
    finally:
        await c.close()
        await client.disconnect()


@pytest.fixture
async def daemon(sim: SimCell, tmp_path: Path) -> AsyncIterator[Daemon]:
    running = Running(build(site_for(sim, tmp_path / "journal.sqlite")))
    await running.start()
    try:
        yield running.daemon
    finally:
        await running.stop()


async def until(
    engine: Engine, batch_id: str, what: str, check: Any, limit: float = HANG_GUARD * 4
) -> Batch:
    """Wait (hang-guarded) until ``check(batch)`` holds; fail naming ``what``."""
    try:
        async with asyncio.timeout(limit):
            return await engine.wait_batch(batch_id, lambda b: b if check(b) else None)
    except TimeoutError:
        b = engine.batches[batch_id]
        raise AssertionError(
            f"{batch_id}: {what} not reached; state {b.state}, step {b.step!r}, "
            f"deviations {[d.message for d in b.deviations]}"
        ) from None


def new_cartridge() -> str:
    return fresh("C")


__all__ = ["HANG_GUARD", "SCALE", "Cell", "Running", "icd", "new_cartridge", "recipe", "until"]
