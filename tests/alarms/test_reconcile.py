"""The alarm manager on a real journal and audit trail, without a daemon: what a crash
left unwritten (a deviation committed, its alarm row not) is raised at start-up; what
cleared while the daemon was down is cleared; a latching alarm latches; an alarm on a
unit the site has out of service is suppressed by design; ``alarms_of`` reads a
batch's alarms with their history; the audit trail still verifies."""

from __future__ import annotations

import contextlib
import dataclasses
from collections.abc import AsyncIterator
from pathlib import Path
from typing import Any

import anyio
import pytest

from daemon.alarms import AlarmState, alarms_of
from daemon.alarms.manager import AlarmManager
from daemon.audit.entries import Act, Actor
from daemon.audit.export import rows_of, text
from daemon.audit.trail import AuditTrail
from daemon.audit.verify import verify
from daemon.events import EventBus
from daemon.journal import records as r
from daemon.journal.store import Journal

BID = "B0001-AAA"


@dataclasses.dataclass
class Unit:
    state: str = "Idle"
    fault_code: int = 0


@dataclasses.dataclass
class Shuttle:
    units: dict[str, Unit]


class Cell:
    """The cell's view as the manager reads it: links and units."""

    def __init__(self, up: bool) -> None:
        self.up = up
        self.shuttles = {"shuttle1": Shuttle({"INC03": Unit(), "INC09": Unit("Faulted", 3)})}

    def is_up(self, instrument: str) -> bool:
        return self.up


@contextlib.asynccontextmanager
async def manager(path: Path, cell: Cell, *records: r.Record) -> AsyncIterator[AlarmManager]:
    async with Journal.open(path) as journal:
        if records:
            await journal.append(*records)
        alarms = AlarmManager(
            AuditTrail(journal),
            journal,
            cell,
            EventBus(),
            out_of_service={"shuttle1": frozenset({"INC09"})},
            instruments=("shuttle1", "cellq1"),
        )
        async with anyio.create_task_group() as tg:
            await tg.start(alarms.run)
            yield alarms
            tg.cancel_scope.cancel()


def by_kind(alarms: AlarmManager) -> dict[str, Any]:
    return {a.kind: a for a in alarms.alarms.values()}


async def test_start_up_raises_what_a_crash_left_unraised_and_clears_what_cleared(
    tmp_path: Path,
) -> None:
    path = tmp_path / "journal.sqlite"
    created = r.BatchCreated(
        batch_id=BID,
        recipe_name="x",
        recipe_version="1",
        recipe_hash="0" * 64,
        recipe_text="",
        cartridge_id="C-77",
    )
    first = [
        created,
        r.Admitted(batch_id=BID, shuttle="shuttle1"),
        r.Deviation(
            batch_id=BID, kind="identity", message="bay reads C-12", step="grow", unit="INC03"
        ),
        r.Deviation(batch_id=BID, kind="link", message="shuttle1: gone", instrument="shuttle1"),
        r.Deviation(batch_id=BID, kind="hold_max", message="waited 30 h", step="seed"),
    ]
    async with manager(path, Cell(up=False), *first) as alarms:
        kinds = by_kind(alarms)
        identity = kinds["identity"]
        assert (identity.priority, identity.latching, identity.state, identity.active) == (
            "critical",
            True,
            AlarmState.UNACKNOWLEDGED,
            True,
        )
        assert (identity.batch_id, identity.step, identity.unit) == (BID, "grow", "INC03")
        assert (identity.cartridge_id, identity.instrument) == ("C-77", "shuttle1")
        assert kinds["link_lost"].state is AlarmState.UNACKNOWLEDGED  # the link is still down
        # a momentary cause: over at once, and latched until someone acknowledges it
        assert (kinds["hold_max"].state, kinds["hold_max"].active) == (AlarmState.LATCHED, False)
        ids = {k: a.alarm_id for k, a in kinds.items()}

    later = [
        r.CommandIssued(batch_id=BID, command="Restart", accepted=True, by="sup"),
        r.Deviation(batch_id=BID, kind="unit_fault", message="INC09 faulted", unit="INC09"),
    ]
    async with manager(path, Cell(up=True), *later) as alarms:
        kinds = by_kind(alarms)
        assert {k: a.alarm_id for k, a in kinds.items() if k in ids} == ids  # the same alarms
        # restarted while no daemon ran: the identity alarm latches, the link one returns
        assert (kinds["identity"].state, kinds["identity"].active) == (AlarmState.LATCHED, False)
        assert kinds["link_lost"].state is AlarmState.RTN_UNACKNOWLEDGED
        # INC09 is out of service in the site: suppressed by design, its cause present
        fault = kinds["unit_fault"]
        assert (fault.state, fault.active) == (AlarmState.SUPPRESSED, True)
        with pytest.raises(Exception, match="suppressed"):
            await alarms.ack(fault.alarm_id, Act(Actor("op1", 2, "operator"), "seen"))
        done = await alarms.ack(ids["identity"], Act(Actor("op1", 2, "operator"), "checked bay"))
        assert done.state is AlarmState.NORMAL and done.acked_by == "op1"
        assert alarms.counts() == {
            ("high", "rtn_unacknowledged"): 1,
            ("high", "latched"): 1,
            ("high", "suppressed"): 1,
        }

    read = alarms_of(path, BID)
    assert [a.kind for a in read] == ["identity", "link_lost", "hold_max", "unit_fault"]
    assert [c.event for c in read[0].history] == ["raise", "clear", "ack"]
    assert read[0].history[-1].by == "op1" and read[0].history[-1].reason == "checked bay"
    exported = rows_of(path, batch_id=BID, object_type="alarm")
    listing = text(exported)
    assert "alarm.ack" in listing and "checked bay" in listing and "op1" in listing
    assert all(row["signature"] is None for row in exported)  # no shelving here
    report = verify(path)
    # the records written by hand here have no audit rows of their own; the alarms' do
    assert report.rows == 9 and report.problems, report  # 4 + 4 at start-ups, 1 ack
    assert {p.kind for p in report.problems} == {"unaudited"}, report.problems
