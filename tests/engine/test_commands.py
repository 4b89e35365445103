"""ISA-88 commands on a live batch: each reaches the instrument as the issue says.

Hold holds the running program on the instrument, Restart unholds it, Stop ends it
with its outputs so far (GetResult Stopped on a 1.1 shuttle) and hands the cartridge
out, Abort aborts it, clears the unit and hands the cartridge out; Pause waits for
the step boundary. Refused commands are answered with the table's reason and kept in
the journal.
"""

from __future__ import annotations

import pytest

from daemon.batch.engine import CommandRefused
from daemon.batch.states import BatchState as S
from daemon.batch.states import Command as C
from daemon.journal import records as r
from daemon.supervisor import Daemon
from drivers.icd import UnitState
from tests.engine.conftest import Cell, new_cartridge, recipe, until


async def _running_program(daemon: Daemon, cell: Cell) -> tuple[str, str]:
    """A long_op batch whose expansion is running; returns (batch id, unit)."""
    c = new_cartridge()
    b = await daemon.engine.create(recipe("long_op"), {}, c, by="ann")
    cell.load(c)
    b = await until(
        daemon.engine,
        b.batch_id,
        "program running",
        lambda x: x.task is not None and x.task.kind == "program" and x.task.phase == "started",
    )
    assert b.task is not None
    return b.batch_id, b.task.unit


def _ended(daemon: Daemon, bid: str) -> list[r.ProgramEnded]:
    recs = [rec for _s, rec in daemon.journal.batch_records(bid)]
    return [rec for rec in recs if isinstance(rec, r.ProgramEnded)]


async def _unit(daemon: Daemon, unit: str) -> str:
    """The unit's state as the shuttle says it now (the view may lag a publish)."""
    return (await daemon.cell.shuttle_drivers["shuttle1"].unit_status(unit)).state


async def test_hold_and_restart_reach_the_instrument(daemon: Daemon, cell: Cell) -> None:
    engine = daemon.engine
    bid, unit = await _running_program(daemon, cell)
    await engine.command(bid, C.HOLD, by="ann", role="operator", reason="check the bag")
    b = await until(engine, bid, "Held", lambda x: x.state is S.HELD)
    assert await _unit(daemon, unit) == UnitState.HELD  # the program is held on the shuttle
    assert (b.held_by, b.hold_reason) == ("ann", "check the bag")
    with pytest.raises(CommandRefused, match="Pause is not allowed in state Held"):
        await engine.command(bid, C.PAUSE, by="ann")
    await engine.command(bid, C.RESTART, by="ann")
    b = await until(engine, bid, "Running", lambda x: x.state is S.RUNNING)
    assert await _unit(daemon, unit) == UnitState.RUNNING
    refused = [
        rec
        for _s, rec in daemon.journal.batch_records(bid)
        if isinstance(rec, r.CommandIssued) and not rec.accepted
    ]
    assert [(x.command, x.detail) for x in refused] == [
        ("Pause", "Pause is not allowed in state Held (allowed: Stop, Restart, Abort)")
    ]
    await engine.command(bid, C.ABORT, by="sup")
    await until(engine, bid, "Aborted", lambda x: x.state is S.ABORTED)


async def test_stop_keeps_outputs_and_hands_the_cartridge_out(daemon: Daemon, cell: Cell) -> None:
    engine = daemon.engine
    bid, unit = await _running_program(daemon, cell)
    await engine.command(bid, C.STOP, by="sup", role="supervisor", reason="end of campaign")
    b = await until(engine, bid, "Stopped", lambda x: x.state is S.STOPPED)
    assert b.task is not None and b.task.kind == "move" and b.location == "OutputPort"
    ended = [
        rec for _s, rec in daemon.journal.batch_records(bid) if isinstance(rec, r.ProgramEnded)
    ]
    assert len(ended) == 1 and ended[0].status in ("Stopped", "Complete")
    assert "cells_out" in ended[0].outputs  # outputs for the part that ran
    assert await _unit(daemon, unit) == UnitState.IDLE  # a Complete unit is Idle once emptied
    assert b.outcome == ""  # stopped, not completed: the procedure did not end
    with pytest.raises(CommandRefused, match="Restart is not allowed in state Stopped"):
        await engine.command(bid, C.RESTART, by="sup")
    await engine.command(bid, C.RESET, by="sup")
    assert engine.batches[bid].state is S.IDLE


async def test_abort_aborts_clears_and_hands_out(daemon: Daemon, cell: Cell) -> None:
    engine = daemon.engine
    bid, unit = await _running_program(daemon, cell)
    await engine.command(bid, C.ABORT, by="sup", reason="contamination suspected")
    b = await until(engine, bid, "Aborted", lambda x: x.state is S.ABORTED)
    ended = [
        rec for _s, rec in daemon.journal.batch_records(bid) if isinstance(rec, r.ProgramEnded)
    ]
    assert [e.status for e in ended] == ["Aborted"]
    assert b.location == "OutputPort"
    assert await _unit(daemon, unit) == UnitState.IDLE  # cleared, ready for the next batch


async def test_pause_waits_for_the_step_boundary(daemon: Daemon, cell: Cell) -> None:
    engine = daemon.engine
    c = new_cartridge()
    b = await engine.create(recipe("long_op"), {"hours": 20.0}, c, by="ann")
    cell.load(c)
    await until(
        engine,
        b.batch_id,
        "program started",
        lambda x: x.task is not None and x.task.phase == "started",
    )
    await engine.command(b.batch_id, C.PAUSE, by="ann")
    assert engine.batches[b.batch_id].state is S.PAUSING  # the program goes on meanwhile
    paused = await until(engine, b.batch_id, "Paused", lambda x: x.state is S.PAUSED)
    assert paused.step == "" and paused.next_step == "done"  # between the two steps
    assert paused.task is not None and paused.task.status == "Complete"
    await engine.command(b.batch_id, C.RESUME, by="ann")
    end = await until(engine, b.batch_id, "Complete", lambda x: x.final)
    assert (end.state, end.outcome) == (S.COMPLETE, "completed")


async def test_refused_commands_name_the_state_and_are_journaled(daemon: Daemon) -> None:
    engine = daemon.engine
    b = await engine.create(recipe("qc_only"), {}, new_cartridge(), by="ann", start=False)
    assert b.state is S.IDLE
    for cmd in (C.HOLD, C.STOP, C.RESTART, C.ABORT, C.RESET, C.PAUSE, C.RESUME):
        with pytest.raises(CommandRefused, match=f"{cmd} is not allowed in state Idle"):
            await engine.command(b.batch_id, cmd, by="ann")
    records = [rec for _s, rec in daemon.journal.batch_records(b.batch_id)]
    refused = [rec.command for rec in records if isinstance(rec, r.CommandIssued)]
    assert refused == ["Hold", "Stop", "Restart", "Abort", "Reset", "Pause", "Resume"]
    assert engine.batches[b.batch_id].state is S.IDLE
