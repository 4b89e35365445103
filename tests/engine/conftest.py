"""Engine tests: the real daemon (journal, drivers, engine) against the twins.

The twins are the session's ``sim_cell`` (tests/support/daemon.py); each test gets a
fresh daemon with its own journal, served on the test's own loop
(``LocalDaemon``) so the test can reach the engine directly. ``Cell`` plays the people
around the cell: it puts cartridges at the LoadPort (twin controls), answers
confirmations with the step's role, and faults units when a test needs a disturbance.
"""

from __future__ import annotations

import asyncio
import contextlib
from collections.abc import AsyncIterator
from pathlib import Path
from typing import Any

import pytest
from asyncua import Client, ua

from daemon.batch.engine import Engine
from daemon.batch.machine import Batch
from daemon.config.model import Site
from daemon.recipe import Recipe, load_recipe
from daemon.supervisor import Daemon, build
from simulators.controls import TwinControls
from tests.support import HANG_GUARD, fresh
from tests.support.daemon import LIBRARY, TIME_SCALE, LocalDaemon, SimTwins, daemon_site

HERE = Path(__file__).parent / "recipes"


def recipe(name: str) -> Recipe:
    path = HERE / f"{name}.yaml"
    return load_recipe(path if path.exists() else LIBRARY / f"{name}.yaml")


def site_for(twins: SimTwins, journal: Path) -> Site:
    return daemon_site(twins, journal, extra_recipes=[HERE])


class Cell:
    """The people and the world around the cell (twin controls of ICD section 4)."""

    def __init__(self, client: Client, controls: TwinControls) -> None:
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


async def people(shuttle_url: str) -> tuple[Cell, Client]:
    client = Client(shuttle_url)
    await client.connect()
    controls = TwinControls(client)
    assert await controls.discover(), "the shuttle offers no twin controls"
    return Cell(client, controls), client


@pytest.fixture
async def cell(sim_cell: SimTwins) -> AsyncIterator[Cell]:
    c, client = await people(sim_cell.endpoints["shuttle"])
    try:
        yield c
    finally:
        await c.close()
        await client.disconnect()


@pytest.fixture
async def daemon(sim_cell: SimTwins, tmp_path: Path) -> AsyncIterator[Daemon]:
    local = LocalDaemon(build(site_for(sim_cell, tmp_path / "journal.sqlite")))
    await local.start()
    try:
        yield local.daemon
    finally:
        await local.stop()


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


__all__ = ["TIME_SCALE", "Cell", "LocalDaemon", "new_cartridge", "people", "recipe", "until"]
