"""Journal test material: realistic record sequences, file digests, journal copies."""

from __future__ import annotations

import hashlib
import shutil
from pathlib import Path

from daemon.journal import records as r


def created(batch_id: str) -> r.BatchCreated:
    """The smallest BatchCreated: enough for the reducer to know the batch."""
    return r.BatchCreated(
        batch_id=batch_id,
        recipe_name="crash",
        recipe_version="1",
        recipe_hash="cd" * 32,
        recipe_text="name: crash\n",
        cartridge_id=f"C-{batch_id}",
    )


def story(batch_id: str, *, at: float = 1_780_000_000.0) -> list[r.Record]:
    """One batch from creation through a program step to a held state: every kind of
    instrument record, in an order the reducer accepts (so replay works)."""
    task = f"{batch_id}/expand/1"
    return [
        r.BatchCreated(
            batch_id=batch_id,
            recipe_name="qc_only",
            recipe_version="1.0",
            recipe_hash="ab" * 32,
            recipe_text="name: qc_only\n",
            params={"volume_ml": 0.5, "panel": [1, 2]},
            cartridge_id=f"C-{batch_id}",
            by="ann",
            at=at,
            pt=at,
        ),
        r.CommandIssued(batch_id=batch_id, command="Start", accepted=True, by="ann", at=at + 1),
        r.Admitted(batch_id=batch_id, shuttle="sh1", at=at + 2),
        r.StepStarted(batch_id=batch_id, step="expand", visit=1, at=at + 3),
        r.MoveIntent(
            batch_id=batch_id,
            task_id=f"{batch_id}/move.1",
            shuttle="sh1",
            to="INC01",
            origin="LoadPort",
            step="expand",
            at=at + 4,
        ),
        r.MoveEnded(batch_id=batch_id, task_id=f"{batch_id}/move.1", ok=True, location="INC01"),
        r.ProgramIntent(
            batch_id=batch_id,
            task_id=task,
            shuttle="sh1",
            unit="INC01",
            program="expand",
            params={"days": 9},
            step="expand",
            attempt=1,
            at=at + 5,
        ),
        r.ProgramStarted(batch_id=batch_id, task_id=task, run_id="R1", at=at + 6),
        r.ProgramEnded(batch_id=batch_id, task_id=task, status="Complete", outputs={"n": 1e9}),
        r.Bound(batch_id=batch_id, step="expand", values={"cells": 1e9}),
        r.StepEnded(batch_id=batch_id, step="expand", outcome="ok", next="harvest"),
        r.Deviation(batch_id=batch_id, kind="unit_fault", message="INC01 faulted", unit="INC01"),
        r.CommandIssued(batch_id=batch_id, command="Hold", accepted=True, by="system"),
        r.StateReached(batch_id=batch_id, state="Held"),
    ]


def digest(path: Path) -> str | None:
    """The file's sha256, or None when there is no file."""
    return hashlib.sha256(path.read_bytes()).hexdigest() if path.exists() else None


def copy_journal(
    source: Path, folder: Path, name: str = "journal.sqlite", *, with_wal: bool = False
) -> Path:
    """A copy of the journal file (and its -wal: what a crash would leave) in ``folder``."""
    folder.mkdir(parents=True, exist_ok=True)
    dest = folder / name
    shutil.copyfile(source, dest)
    if with_wal:
        shutil.copyfile(f"{source}-wal", f"{dest}-wal")
    return dest
