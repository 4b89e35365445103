"""Deviations: a faulted unit, a cartridge that is not the batch's, a daemon restart in
the middle of a program. Nothing runs on the wrong cartridge; nothing runs twice."""

from __future__ import annotations

from collections.abc import AsyncIterator, Callable
from pathlib import Path

import pytest

from daemon.batch.states import BatchState as S
from daemon.batch.states import Command as C
from daemon.journal import records as r
from daemon.supervisor import Daemon, build
from drivers.icd import UnitState
from drivers.opcua import OpcUaShuttle, SecurityConfig
from tests.engine.conftest import Cell, new_cartridge, recipe, site_for, until
from tests.support import eventually, task_id
from tests.support.daemon import LocalDaemon, SimTwins


@pytest.fixture
async def rogue(sim_cell: SimTwins) -> AsyncIterator[OpcUaShuttle]:
    """Another client of the shuttle: someone acting behind the daemon's back."""
    url = sim_cell.endpoints["shuttle"]
    async with OpcUaShuttle("rogue", url, security=SecurityConfig.insecure()) as drv:
        yield drv


async def _view(daemon: Daemon, what: str, check: Callable[[], bool]) -> None:
    """Wait until the daemon's view of the cell shows ``check`` (hang-guarded)."""

    async def now() -> bool:
        return check()

    await eventually(now, what)


def _records(daemon: Daemon, bid: str, kind: type[r.Record]) -> list[r.Record]:
    return [rec for _s, rec in daemon.journal.batch_records(bid) if isinstance(rec, kind)]


async def _started(daemon: Daemon, cell: Cell, name: str, **params: float) -> tuple[str, str]:
    c = new_cartridge()
    b = await daemon.engine.create(recipe(name), params, c, by="ann")
    cell.load(c)
    b = await until(
        daemon.engine,
        b.batch_id,
        "program started",
        lambda x: x.task is not None and x.task.phase == "started",
    )
    assert b.task is not None
    return b.batch_id, b.task.unit


async def test_unit_fault_holds_then_restart_clears_and_retries(
    daemon: Daemon, cell: Cell, rogue: OpcUaShuttle
) -> None:
    engine = daemon.engine
    bid, unit = await _started(daemon, cell, "long_op", hours=20.0)
    await cell.controls.inject_fault(unit, 42, "heater failure")
    b = await until(engine, bid, "Held", lambda x: x.state is S.HELD)
    [dev] = [d for d in b.deviations if d.kind == "unit_fault"]
    assert "expansion on" in dev.message and "Faulted" in dev.message and "42" in dev.message
    assert b.held_by == "system" and b.hold_reason.startswith("unit_fault")
    assert (await rogue.unit_status(unit)).state == UnitState.FAULTED
    await engine.command(bid, C.RESTART, by="sup", reason="heater replaced")
    end = await until(engine, bid, "Complete", lambda x: x.final)
    assert (end.state, end.outcome) == (S.COMPLETE, "completed")
    intents = _records(daemon, bid, r.ProgramIntent)
    assert [i.task_id.rsplit("/", 1)[1] for i in intents] == ["1", "2"]  # a new attempt
    assert (await rogue.unit_status(unit)).state != UnitState.FAULTED  # cleared on restart


async def test_on_fault_step_ends_the_batch_as_failed(
    daemon: Daemon, cell: Cell, rogue: OpcUaShuttle
) -> None:
    engine = daemon.engine
    bid, unit = await _started(daemon, cell, "long_op_fallback")
    await cell.controls.inject_fault(unit, 7, "door open")
    end = await until(engine, bid, "final", lambda x: x.final)
    assert (end.state, end.outcome, end.outcome_reason) == (
        S.COMPLETE,
        "failed",
        "The expansion faulted",
    )
    assert [d.kind for d in end.deviations] == ["unit_fault"]
    assert end.location == "OutputPort"  # a cartridge may leave a Faulted unit
    # the faulted unit stays faulted for a person to see; the test clears it
    assert (await rogue.unit_status(unit)).state == UnitState.FAULTED
    await rogue.clear(unit)


async def test_a_foreign_cartridge_in_the_bay_is_never_processed(
    daemon: Daemon, cell: Cell, rogue: OpcUaShuttle
) -> None:
    """While the batch waits at a confirmation, someone moves its cartridge away and
    puts another in its bay: the next program does not start, the batch holds."""
    engine = daemon.engine
    mine, foreign = new_cartridge(), new_cartridge()
    b = await engine.create(recipe("confirm_between"), {}, mine, by="ann")
    cell.load(mine)
    b = await until(engine, b.batch_id, "at the confirmation", lambda x: x.step == "check")
    bay = b.location
    spare = next(
        u
        for u, v in daemon.cell.shuttles["shuttle1"].units.items()
        if u.startswith("INC") and u != bay and not v.cartridge_id
    )
    await rogue.move(mine, spare, task_id("R"))
    await _view(
        daemon, "cartridge moved away", lambda: daemon.cell.where_is("shuttle1", mine) == spare
    )
    await cell.insert(foreign)
    await _view(
        daemon,
        "foreign cartridge at the port",
        lambda: daemon.cell.shuttles["shuttle1"].load_port == foreign,
    )
    await rogue.move(foreign, bay, task_id("R"))
    await _view(
        daemon,
        "foreign cartridge in the bay",
        lambda: daemon.cell.where_is("shuttle1", foreign) == bay,
    )
    await engine.confirm(b.batch_id, "check", by="op1", role="operator")
    held = await until(engine, b.batch_id, "Held", lambda x: x.state is S.HELD)
    [dev] = held.deviations
    assert dev.kind == "identity" and foreign in dev.message and mine in dev.message
    assert "nothing was started" in dev.message
    assert [i.step for i in _records(daemon, b.batch_id, r.ProgramIntent)] == ["activate"]
    status = await rogue.unit_status(bay)
    assert status.cartridge_id == foreign and not status.task_id.startswith(b.batch_id + "/grow")
    await engine.command(b.batch_id, C.ABORT, by="sup", reason="identity")
    await rogue.move(foreign, "OutputPort", task_id("R"))


async def test_a_daemon_restart_resumes_the_program_without_starting_it_again(
    sim_cell: SimTwins, cell: Cell, tmp_path: Path
) -> None:
    journal = tmp_path / "journal.sqlite"
    first = LocalDaemon(build(site_for(sim_cell, journal)))
    await first.start()
    c = new_cartridge()
    b = await first.daemon.engine.create(recipe("long_op"), {"hours": 30.0}, c, by="ann")
    cell.load(c)
    await until(
        first.daemon.engine,
        b.batch_id,
        "program started",
        lambda x: x.task is not None and x.task.phase == "started",
    )
    await first.stop()  # the program keeps running on the shuttle
    second = LocalDaemon(build(site_for(sim_cell, journal)))
    await second.start()
    try:
        resumed = second.daemon.engine.batches[b.batch_id]
        assert resumed.state is S.RUNNING and resumed.step == "grow"
        end = await until(second.daemon.engine, b.batch_id, "Complete", lambda x: x.final)
        assert (end.state, end.outcome) == (S.COMPLETE, "completed")
        assert len(_records(second.daemon, b.batch_id, r.ProgramIntent)) == 1
        assert len(_records(second.daemon, b.batch_id, r.ProgramStarted)) == 1
    finally:
        await second.stop()
