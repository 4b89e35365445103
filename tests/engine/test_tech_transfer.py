"""Tech transfer: the same approved recipe on two sites with other unit names and
counts runs the same steps with the same programs; only the units differ."""

from __future__ import annotations

from collections.abc import AsyncIterator, Iterator
from dataclasses import dataclass
from pathlib import Path

import pytest

from daemon.batch.states import BatchState as S
from daemon.journal import records as r
from daemon.supervisor import Daemon, build
from simulators.cellq import CellQTwin
from simulators.clock import Clock
from simulators.runner import BackgroundLoop
from simulators.shuttle import ShuttleTwin
from simulators.world import World
from tests.engine.conftest import Cell, new_cartridge, people, recipe, site_for, until
from tests.support.daemon import TIME_SCALE, LocalDaemon, SimTwins

# another factory: other names, fewer incubators, two selection units
OTHER_UNITS = ("SEL7", "SEL8", "EP3", "INC90", "INC91", "INC92", "CFC4", "FIN6")


@dataclass
class _Other:
    """Shuttle and Cell Q twins of the other site (its own world and clock)."""

    shuttle: ShuttleTwin
    cellq: CellQTwin
    endpoints: dict[str, str]


@pytest.fixture(scope="module")
def other() -> Iterator[_Other]:
    loop = BackgroundLoop("other-site")
    clock, world = Clock(TIME_SCALE), World(11)
    shuttle = ShuttleTwin(world, clock, units=OTHER_UNITS, security="none")
    cellq = CellQTwin(world, clock)
    loop.run(shuttle.start())
    loop.run(cellq.start())
    try:
        yield _Other(shuttle, cellq, {"shuttle": shuttle.url, "cellq": f"127.0.0.1:{cellq.port}"})
    finally:
        loop.run(cellq.stop())
        loop.run(shuttle.stop())
        loop.close()


@pytest.fixture
async def other_daemon(other: _Other, tmp_path: Path) -> AsyncIterator[tuple[Daemon, Cell]]:
    local = LocalDaemon(build(site_for(other, tmp_path / "other.sqlite")))  # type: ignore[arg-type]
    await local.start()
    them, client = await people(other.endpoints["shuttle"])
    try:
        yield local.daemon, them
    finally:
        await them.close()
        await client.disconnect()
        await local.stop()


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
    daemon: Daemon, cell: Cell, sim_cell: SimTwins, other_daemon: tuple[Daemon, Cell]
) -> None:
    there, people = other_daemon
    here_id = await _run(daemon, cell, "confirm_between", {})
    there_id = await _run(there, people, "confirm_between", {})
    here, away = _trace(daemon, here_id), _trace(there, there_id)
    assert here[0] == away[0] == ["activate", "check", "grow", "done"]
    assert here[1] == away[1] == ["activation", "expansion"]
    assert set(here[2]) <= set(sim_cell.cell.shuttle.units) and set(away[2]) <= set(OTHER_UNITS)
    assert daemon.engine.batches[here_id].recipe_hash == there.engine.batches[there_id].recipe_hash
