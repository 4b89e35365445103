"""Where a batch asks for a unit from (``steps.op.where``), on the reducer's batches."""

from __future__ import annotations

from daemon.batch.machine import replay
from daemon.batch.steps.op import where
from daemon.journal import records as r

B = "B0001-AAA"


def _batch(*recs: r.Record):
    head: list[r.Record] = [
        r.BatchCreated(
            batch_id=B,
            recipe_name="tiny",
            recipe_version="1.0",
            recipe_hash="ab" * 32,
            recipe_text="...",
            params={},
            cartridge_id="C1",
            at=1.0,
            pt=10.0,
        ),
        r.CommandIssued(batch_id=B, command="Start", accepted=True, by="ann"),
        r.Admitted(batch_id=B, shuttle="sh1"),
    ]
    return replay(list(enumerate([*head, *recs], 1)))[B]


def test_an_unfinished_move_counts_as_arrived() -> None:
    intent = r.MoveIntent(
        batch_id=B, task_id=f"{B}/move.1", shuttle="sh1", to="U0", origin="LoadPort"
    )
    b = _batch(intent)
    assert b.location == "LoadPort"  # the journal: no MoveEnded yet (a lost link held it)
    assert where(b) == "U0"


def test_after_the_move_it_is_the_location() -> None:
    b = _batch(
        r.MoveIntent(batch_id=B, task_id=f"{B}/move.1", shuttle="sh1", to="U0", origin="LoadPort"),
        r.MoveEnded(batch_id=B, task_id=f"{B}/move.1", ok=True, location="U0"),
    )
    assert where(b) == b.location == "U0"
    failed = _batch(
        r.MoveIntent(batch_id=B, task_id=f"{B}/move.1", shuttle="sh1", to="U0", origin="LoadPort"),
        r.MoveEnded(batch_id=B, task_id=f"{B}/move.1", ok=False, location="LoadPort"),
    )
    assert where(failed) == "LoadPort"
