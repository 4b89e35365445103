"""The batch as a value and the pure reducer that changes it: ``apply(batch, record)``.

This module owns ``Batch`` (everything the daemon knows about one batch, frozen) and
``apply``, the only code that changes it. The executor decides and writes a record;
``apply`` folds it in; replay after a restart folds the same records in the same way
(``replay``), so live running and recovery cannot disagree. ``apply`` does no I/O,
reads no clock and never consults the instruments.

A record that does not fit the batch (a state the table does not allow, an outcome for
a task that was never announced) raises ``ReducerError``: live, that is a bug in the
executor, which checks before it writes; on replay, a damaged journal. Nothing is
guessed.

Where a batch is between and within steps (what the executor resumes from)::

    step == ""  and next_step == ""   not started yet (or ended: outcome set)
    step == ""  and next_step == X    between steps: X starts next
    step == X                         inside step X; ``task`` is its instrument task
                                      (move or program) and its phase says how far:
                                      intent (on disk; maybe on the wire) -> started
                                      -> ended
"""

from __future__ import annotations

import dataclasses
from collections.abc import Iterable, Mapping
from dataclasses import dataclass, field
from types import MappingProxyType
from typing import Any, Final

from daemon.batch.states import DONE, BatchState, Command, target
from daemon.journal import records as r

__all__ = ["Batch", "DeviationInfo", "Job", "ReducerError", "Task", "apply", "replay"]

_EMPTY: Final[Mapping[str, Any]] = MappingProxyType({})


class ReducerError(ValueError):
    """A record that does not fit the batch it is applied to."""


@dataclass(frozen=True, slots=True)
class Task:
    """One instrument task of a batch: a program on a unit, or a transport move."""

    task_id: str
    kind: str  # "program" | "move"
    shuttle: str
    unit: str  # the program's unit, or the move's destination
    program: str  # program name, or "move"
    step: str
    phase: str  # "intent" | "started" | "ended"
    params: Mapping[str, Any] = field(default_factory=lambda: _EMPTY)
    origin: str = ""  # a move's origin
    run_id: str = ""
    status: str = ""  # ResultStatus once ended ("ok"/"failed" for a move)
    attempt: int = 0
    started_pt: float = 0.0
    outputs: Mapping[str, Any] = field(default_factory=lambda: _EMPTY)


@dataclass(frozen=True, slots=True)
class Job:
    """One Cell Q job of a batch (a sample step's panel)."""

    job_seq: int
    analyzer: str
    sample_id: str
    panel: int
    step: str
    culture_ml: float | None
    phase: str  # "intent" | "submitted" | "ended" | "released"
    slot: int = -1
    state: str = ""  # "done" | "failed" | "aborted" once ended
    fault: int = 0
    results: Mapping[str, float] = field(default_factory=lambda: _EMPTY)


@dataclass(frozen=True, slots=True)
class DeviationInfo:
    kind: str
    message: str
    step: str
    unit: str
    task_id: str
    at: float
    pt: float = 0.0


@dataclass(frozen=True, slots=True)
class Batch:
    batch_id: str
    recipe_name: str
    recipe_version: str
    recipe_hash: str
    recipe_file: str
    params: Mapping[str, Any]
    cartridge_id: str
    priority: int
    requested_shuttle: str
    created_at: float
    created_by: str
    unapproved: bool
    state: BatchState = BatchState.IDLE
    run: int = 0  # how many times Start was accepted
    shuttle: str = ""  # admitted to this shuttle
    location: str = ""  # LoadPort, a UnitId, OutputPort; "" until admitted
    step: str = ""
    step_visit: int = 0
    step_started_pt: float = 0.0
    next_step: str = ""
    last_step: str = ""
    last_step_ended_pt: float = 0.0
    visits: Mapping[str, int] = field(default_factory=lambda: _EMPTY)
    attempts: Mapping[str, int] = field(
        default_factory=lambda: _EMPTY
    )  # program attempts per step (TaskId attempt)
    moves: int = 0  # moves announced (move TaskIds)
    samples: int = 0  # sample programs announced (SampleIds)
    variables: Mapping[str, Any] = field(default_factory=lambda: _EMPTY)
    task: Task | None = None
    jobs: Mapping[int, Job] = field(default_factory=lambda: _EMPTY)
    confirmation: Mapping[str, Any] | None = None  # of the current step's visit
    deviations: tuple[DeviationInfo, ...] = ()
    outcome: str = ""  # "completed" | "failed" once the procedure ended
    outcome_reason: str = ""
    run_started_pt: float = 0.0
    held_by: str = ""  # who asked for the current hold ("system" when the engine did)
    hold_reason: str = ""
    updated_at: float = 0.0
    last_seq: int = 0  # journal sequence of the last record applied

    @property
    def final(self) -> bool:
        return self.state in (BatchState.COMPLETE, BatchState.STOPPED, BatchState.ABORTED)


def _with(mapping: Mapping[Any, Any], key: Any, value: Any) -> Mapping[Any, Any]:
    out = dict(mapping)
    out[key] = value
    return MappingProxyType(out)


def _task(batch: Batch, rec: r.Record, task_id: str) -> Task:
    if batch.task is None or batch.task.task_id != task_id:
        raise ReducerError(
            f"{type(rec).__name__} for task {task_id} of batch {batch.batch_id}, "
            f"whose current task is {batch.task.task_id if batch.task else 'none'}"
        )
    return batch.task


def _job(batch: Batch, rec: r.Record, job_seq: int) -> Job:
    job = batch.jobs.get(job_seq)
    if job is None:
        raise ReducerError(f"{type(rec).__name__} for unknown job {job_seq} of {batch.batch_id}")
    return job


def created(rec: r.BatchCreated) -> Batch:
    return Batch(
        batch_id=rec.batch_id,
        recipe_name=rec.recipe_name,
        recipe_version=rec.recipe_version,
        recipe_hash=rec.recipe_hash,
        recipe_file=rec.recipe_file,
        params=MappingProxyType(dict(rec.params)),
        cartridge_id=rec.cartridge_id,
        priority=rec.priority,
        requested_shuttle=rec.shuttle,
        created_at=rec.at,
        created_by=rec.by,
        unapproved=rec.unapproved,
        updated_at=rec.at,
    )


def apply(batch: Batch, rec: r.Record, seq: int = 0) -> Batch:
    """The batch after ``rec``. Pure: same batch and record, same result."""
    if rec.batch_id != batch.batch_id:
        raise ReducerError(f"record of batch {rec.batch_id} applied to {batch.batch_id}")
    changes = _changes(batch, rec)
    changes["updated_at"] = rec.at
    if seq:
        changes["last_seq"] = seq
    return dataclasses.replace(batch, **changes)


def _changes(b: Batch, rec: r.Record) -> dict[str, Any]:
    match rec:
        case r.BatchCreated():
            raise ReducerError(f"batch {b.batch_id} created twice")
        case r.CommandIssued(accepted=False):
            return {}
        case r.CommandIssued():
            command = Command(rec.command)
            to = target(b.state, command)
            if to is None:
                raise ReducerError(f"{b.batch_id}: {command} accepted in state {b.state}")
            if command is Command.START:
                return {
                    "state": to,
                    "run": b.run + 1,
                    "step": "",
                    "next_step": "",
                    "outcome": "",
                    "outcome_reason": "",
                    "confirmation": None,
                    "run_started_pt": rec.pt,
                }
            if command is Command.HOLD:
                return {"state": to, "held_by": rec.by, "hold_reason": rec.reason}
            if command is Command.RESTART:
                return {"state": to, "held_by": "", "hold_reason": ""}
            return {"state": to}
        case r.StateReached():
            state = BatchState(rec.state)
            if DONE.get(b.state) is not state:
                raise ReducerError(f"{b.batch_id}: {b.state} cannot be done as {state}")
            return {"state": state}
        case r.Admitted():
            if b.shuttle:
                raise ReducerError(f"{b.batch_id} admitted twice ({b.shuttle}, {rec.shuttle})")
            return {"shuttle": rec.shuttle, "location": "LoadPort"}
        case r.BatchFinished():
            return {
                "outcome": rec.outcome,
                "outcome_reason": rec.reason,
                "step": "",
                "next_step": "",
            }
        case r.StepStarted():
            return {
                "step": rec.step,
                "step_visit": rec.visit,
                "step_started_pt": rec.pt,
                "next_step": "",
                "confirmation": None,
                "visits": _with(b.visits, rec.step, rec.visit),
            }
        case r.StepEnded():
            if rec.step != b.step:
                raise ReducerError(f"{b.batch_id}: step {rec.step} ended inside {b.step!r}")
            return {
                "step": "",
                "next_step": rec.next,
                "last_step": rec.step,
                "last_step_ended_pt": rec.pt,
            }
        case r.Bound():
            merged = dict(b.variables)
            merged.update(rec.values)
            return {"variables": MappingProxyType(merged)}
        case r.Confirmed():
            if rec.step != b.step:
                raise ReducerError(f"{b.batch_id}: confirmation of {rec.step} inside {b.step!r}")
            return {
                "confirmation": MappingProxyType({"by": rec.by, "role": rec.role, "note": rec.note})
            }
        case r.Deviation():
            info = DeviationInfo(
                rec.kind, rec.message, rec.step, rec.unit, rec.task_id, rec.at, rec.pt
            )
            return {"deviations": (*b.deviations, info)}
        case r.MoveIntent():
            task = Task(
                task_id=rec.task_id,
                kind="move",
                shuttle=rec.shuttle,
                unit=rec.to,
                program="move",
                step=rec.step,
                phase="intent",
                origin=rec.origin,
                started_pt=rec.pt,
            )
            return {"task": task, "moves": b.moves + 1}
        case r.MoveEnded():
            task = _task(b, rec, rec.task_id)
            status = "ok" if rec.ok else "failed"
            return {
                "task": dataclasses.replace(task, phase="ended", status=status),
                "location": rec.location,
            }
        case r.ProgramIntent():
            task = Task(
                task_id=rec.task_id,
                kind="program",
                shuttle=rec.shuttle,
                unit=rec.unit,
                program=rec.program,
                step=rec.step,
                phase="intent",
                params=MappingProxyType(dict(rec.params)),
                attempt=rec.attempt,
                started_pt=rec.pt,
            )
            out: dict[str, Any] = {
                "task": task,
                "attempts": _with(b.attempts, rec.step, rec.attempt),
            }
            if rec.program == "sample":
                out["samples"] = b.samples + 1
            return out
        case r.ProgramStarted():
            task = _task(b, rec, rec.task_id)
            return {"task": dataclasses.replace(task, phase="started", run_id=rec.run_id)}
        case r.ProgramEnded():
            task = _task(b, rec, rec.task_id)
            ended = dataclasses.replace(
                task, phase="ended", status=rec.status, outputs=MappingProxyType(dict(rec.outputs))
            )
            return {"task": ended}
        case r.JobIntent():
            if rec.job_seq in b.jobs:
                raise ReducerError(f"{b.batch_id}: job {rec.job_seq} announced twice")
            job = Job(
                job_seq=rec.job_seq,
                analyzer=rec.analyzer,
                sample_id=rec.sample_id,
                panel=rec.panel,
                step=rec.step,
                culture_ml=rec.culture_ml,
                phase="intent",
            )
            return {"jobs": _with(b.jobs, rec.job_seq, job)}
        case r.JobSubmitted():
            job = dataclasses.replace(_job(b, rec, rec.job_seq), phase="submitted", slot=rec.slot)
            return {"jobs": _with(b.jobs, rec.job_seq, job)}
        case r.JobEnded():
            job = dataclasses.replace(
                _job(b, rec, rec.job_seq),
                phase="ended",
                state=rec.state,
                fault=rec.fault,
                results=MappingProxyType(dict(rec.results)),
            )
            return {"jobs": _with(b.jobs, rec.job_seq, job)}
        case r.JobReleased():
            job = dataclasses.replace(_job(b, rec, rec.job_seq), phase="released")
            return {"jobs": _with(b.jobs, rec.job_seq, job)}
    raise ReducerError(f"no rule for {type(rec).__name__}")


def replay(records: Iterable[tuple[int, r.Record]]) -> dict[str, Batch]:
    """Every batch, from ``(seq, record)`` pairs in journal order."""
    batches: dict[str, Batch] = {}
    for seq, rec in records:
        if isinstance(rec, r.BatchCreated):
            if rec.batch_id in batches:
                raise ReducerError(f"batch {rec.batch_id} created twice (seq {seq})")
            batches[rec.batch_id] = dataclasses.replace(created(rec), last_seq=seq)
            continue
        batch = batches.get(rec.batch_id)
        if batch is None:
            raise ReducerError(f"seq {seq}: {type(rec).__name__} of unknown batch {rec.batch_id}")
        batches[rec.batch_id] = apply(batch, rec, seq)
    return batches
