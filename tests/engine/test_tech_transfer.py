"""Tech transfer: the same approved recipe on two sites with other unit names and
counts runs the same steps with the same programs; only the units differ."""

from __future__ import annotations

from collections.abc import AsyncIterator, Iterator
from pathlib import Path

import pytest
from asyncua import Client

from daemon.batch.states import BatchState as S
from daemon.journal import records as r
from daemon.supervisor import Daemon, build
from simulators.cell import SimCell
from simulators.cellq import CellQTwin
from simulators.clock import Clock
from simulators.controls import TwinControls
from simulators.runner import BackgroundLoop
from simulators.shuttle import ShuttleTwin
from simulators.world import World
from tests.engine.conftest import SCALE, Cell, Running, new_cartridge, recipe, site_for, until

# another factory: other names, fewer incubators, two selection units
OTHER_UNITS = ("SEL7", "SEL8", "EP3", "INC90", "INC91", "INC92", "CFC4", "FIN6")


class _OtherCell:
    """Shuttle and Cell Q twins of the other site, shaped like a SimCell for site_for."""

    def __init__(self) -> None:
        self.clock = Clock(SCALE)
        self.world = World(11)
        self.shuttle = ShuttleTwin(self.world, self.clock, units=OTHER_UNITS, security="none")
        self.cellq = CellQTwin(self.world, self.clock)

    def endpoints(self) -> dict[str, str]:
        return {"shuttle": self.shuttle.url, "cellq": f"127.0.0.1:{self.cellq.port}"}


@pytest.fixture(scope="module")
def other() -> Iterator[_OtherCell]:
    loop = BackgroundLoop("other-site")
    cell = _OtherCell()
    loop.run(cell.shuttle.start())
    loop.run(cell.cellq.start())
    try:
        yield cell
    finally:
        loop.run(cell.cellq.stop())
        loop.run(cell.shuttle.stop())
        loop.close()


@pytest.fixture
async def other_daemon(other: _OtherCell, tmp_path: Path) -> AsyncIterator[tuple[Daemon, Cell]]:
    running = Running(build(site_for(other, tmp_path / "other.sqlite")))  # type: ignore[arg-type]
    await running.start()
    client = Client(other.shuttle.url)
    await client.connect()
    controls = TwinControls(client)
    assert await controls.discover()
    people = Cell(other, client, controls)  # type: ignore[arg-type]
    try:
        yield running.daemon, people
    finally:
        await people.close()
        await client.disconnect()
        await running.stop()


def _trace(daemon: Daemon, bid: str) -> tuple[list[str], list[str], list[str]]:
    recs = [rec for _s, rec in daemon.journal.batch_records(bid)]
    steps = [rec.step for rec in recs if isinstance(rec, r.StepStarted)]
    programs = [rec.program for rec in recs if isinstance(rec, r.ProgramIntent)]
    units = [rec.unit for rec in recs if isinstance(rec, r.ProgramIntent)]
    return steps, programs, units


async def _run(daemon: Daemon, people: Cell, name: str, params: dict[str, float]) -> str:
    c = new_cartridge()
    b = await daemon.engine.create(recipe(name), params, c, by="ann")
    people.operator(daemon.engine, b.batch_id)
    people.load(c)
    end = await until(daemon.engine, b.batch_id, "final", lambda x: x.final)
    assert (end.state, end.outcome) == (S.COMPLETE, "completed"), end.deviations
    return b.batch_id


async def test_same_recipe_same_steps_on_another_site(
    daemon: Daemon, cell: Cell, sim: SimCell, other_daemon: tuple[Daemon, Cell]
) -> None:
    there, people = other_daemon
    here_id = await _run(daemon, cell, "confirm_between", {})
    there_id = await _run(there, people, "confirm_between", {})
    here, away = _trace(daemon, here_id), _trace(there, there_id)
    assert here[0] == away[0] == ["activate", "check", "grow", "done"]
    assert here[1] == away[1] == ["activation", "expansion"]
    assert set(here[2]) <= set(sim.shuttle.units) and set(away[2]) <= set(OTHER_UNITS)
    assert daemon.engine.batches[here_id].recipe_hash == there.engine.batches[there_id].recipe_hash
