"""Chain of identity under disturbance: whatever someone does to the cartridges behind
the daemon's back, no program ever runs on a cartridge that is not its batch's.

Two batches wait at a confirmation (each cartridge idle in its bay); hypothesis picks
what happens to the cartridges meanwhile (nothing, a swap, one moved away, a foreign
cartridge put in a bay). Then both are confirmed. The twin's own record of what it
started (ICD 1.1 Twin/StartedPrograms) must show every program of a batch on that
batch's cartridge; a batch whose bay no longer holds its cartridge holds with an
identity deviation and starts nothing; an undisturbed one completes.
"""

from __future__ import annotations

from collections.abc import AsyncIterator, Callable
from pathlib import Path

import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from daemon.batch.states import BatchState as S
from daemon.batch.states import Command as C
from daemon.supervisor import build
from drivers.opcua import OpcUaShuttle, SecurityConfig
from tests.engine.conftest import (
    Cell,
    LocalDaemon,
    new_cartridge,
    people,
    recipe,
    signed,
    site_for,
    until,
)
from tests.support import eventually, task_id
from tests.support.daemon import SimTwins

ACTIONS = ["none", "swap", "move_a_away", "foreign_in_a"]


async def _seen(check: Callable[[], bool], what: str) -> None:
    async def now() -> bool:
        return check()

    await eventually(now, what)


@pytest.fixture
async def rig(
    sim_cell: SimTwins, tmp_path_factory: pytest.TempPathFactory
) -> AsyncIterator[tuple[SimTwins, Cell, OpcUaShuttle, pytest.TempPathFactory]]:
    cell, client = await people(sim_cell.endpoints["shuttle"])
    url = sim_cell.endpoints["shuttle"]
    async with OpcUaShuttle("rogue", url, security=SecurityConfig.insecure()) as rogue:
        yield sim_cell, cell, rogue, tmp_path_factory
    await cell.close()
    await client.disconnect()


@settings(
    max_examples=6, deadline=None, suppress_health_check=[HealthCheck.function_scoped_fixture]
)
@given(action=st.sampled_from(ACTIONS))
async def test_no_program_runs_on_another_batchs_cartridge(
    rig: tuple[SimTwins, Cell, OpcUaShuttle, pytest.TempPathFactory], action: str
) -> None:
    sim_cell, cell, rogue, tmp = rig
    local = LocalDaemon(build(site_for(sim_cell, Path(tmp.mktemp("id")) / "j.sqlite")))
    daemon = await local.start()
    engine, view = daemon.engine, daemon.cell
    try:
        a_c, b_c, foreign = new_cartridge(), new_cartridge(), new_cartridge()
        a = await engine.create(recipe("confirm_between"), {}, a_c, by="ann")
        b = await engine.create(recipe("confirm_between"), {}, b_c, by="ann")
        cell.load(a_c, b_c)
        a_at = (await until(engine, a.batch_id, "A at check", lambda x: x.step == "check")).location
        b_at = (await until(engine, b.batch_id, "B at check", lambda x: x.step == "check")).location
        units = view.shuttles["shuttle1"].units
        spare = [
            u
            for u, v in units.items()
            if u.startswith("INC") and not v.cartridge_id and u not in (a_at, b_at)
        ]

        async def move(c: str, to: str) -> None:
            await rogue.move(c, to, task_id("R"))
            await _seen(lambda: view.where_is("shuttle1", c) == to, f"{c} in {to}")

        displaced = set()
        if action == "swap":
            await move(a_c, spare[0])
            await move(b_c, a_at)
            await move(a_c, b_at)
            displaced = {a.batch_id, b.batch_id}
        elif action == "move_a_away":
            await move(a_c, spare[0])
            displaced = {a.batch_id}
        elif action == "foreign_in_a":
            await move(a_c, spare[0])
            await cell.insert(foreign)
            await _seen(lambda: view.shuttles["shuttle1"].load_port == foreign, "foreign at port")
            await move(foreign, a_at)
            displaced = {a.batch_id}
        for x in (a, b):
            await engine.confirm(x.batch_id, "check", by="op1", role="operator")
        for x in (a, b):
            if x.batch_id in displaced:
                held = await until(engine, x.batch_id, "Held", lambda y: y.state is S.HELD)
                assert [d.kind for d in held.deviations] == ["identity"], held.deviations
                await engine.command(
                    x.batch_id, C.ABORT, by="sup", reason="identity", act=signed("sup", "aborted")
                )
                await until(engine, x.batch_id, "Aborted", lambda y: y.final)
            else:
                end = await until(engine, x.batch_id, "Complete", lambda y: y.final)
                assert (end.state, end.outcome) == (S.COMPLETE, "completed")
        # the instrument's own record: every program of a batch ran on its own cartridge
        started = await cell.controls.started_programs()
        for x, mine in ((a, a_c), (b, b_c)):
            ours = [e for e in started if e.task_id.startswith(x.batch_id + "/")]
            programs = [e for e in ours if e.program != "move"]
            assert programs and all(e.cartridge_id == mine for e in programs), ours
            grow = [e for e in programs if e.program == "expansion"]
            assert len(grow) == (0 if x.batch_id in displaced else 1)
            assert len({e.task_id for e in ours}) == len(ours)  # nothing started twice
        if action == "foreign_in_a":  # no batch of ours will hand it out: the test does
            await move(foreign, "OutputPort")
    finally:
        await local.stop()
