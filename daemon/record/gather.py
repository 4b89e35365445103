"""Gather one batch's electronic batch record from the journal: ``gather(path, id)``.

Everything comes from one read-only snapshot of the journal file (safe while the
daemon writes; call it from a worker thread): the batch's records, folded with the
engine's own reducer (``daemon.batch.machine.created`` and ``apply``, the functions
replay uses, so the record cannot tell a different story from the engine), its audit
rows (``daemon.audit.export.as_dict``: each signature checked against its bound record
with ``daemon.audit.verify.signature_problem``) and the recipe's lifecycle rows (its
approval and that signature). The recipe is the text pinned in ``BatchCreated``,
loaded again, which gives the steps' kinds, units of values and the limits
(``daemon.record.limits``).

Alarms come from an ``AlarmSource`` (a callable: batch id -> alarms); by default the
alarms the same journal holds (``daemon.record.alarms``, from ``daemon.alarms``).
"""

from __future__ import annotations

import contextlib
import dataclasses
import sqlite3
from collections.abc import Callable, Mapping, Sequence
from datetime import UTC, datetime
from pathlib import Path
from typing import Any, Final

from daemon.audit.entries import read_rows
from daemon.audit.export import as_dict
from daemon.batch.machine import Batch, ReducerError, apply, created
from daemon.journal import files
from daemon.journal import records as r
from daemon.recipe import Recipe, load_recipe_text
from daemon.recipe.names import SAMPLE_RESULTS
from daemon.record import model as m
from daemon.record.alarms import journal_alarms
from daemon.record.limits import Condition, conditions, limits_for

__all__ = ["AlarmSource", "RecordError", "UnknownBatch", "gather"]

AlarmSource = Callable[[str], Sequence[m.Alarm]]
BAG_PROGRAM: Final = "fill_finish"


class RecordError(Exception):
    """The batch's records cannot make a batch record (a damaged journal)."""


class UnknownBatch(RecordError):
    """No batch of that id in the journal."""


def gather(
    path: Path, batch_id: str, *, alarms: AlarmSource | None = None, examine: bool = False
) -> m.BatchRecord:
    """The batch record of ``batch_id`` from the journal at ``path`` (``examine``: check
    first that the file is a journal, for a command pointed at a file)."""
    if examine:
        files.examine(path)
    with contextlib.closing(files.connect_ro(path)) as conn:
        conn.execute("BEGIN")
        pairs = _records(conn, batch_id)
        audit = [
            as_dict(conn, row.seq, row.hash, row.body) for row in read_rows(conn, batch_id=batch_id)
        ]
        first = pairs[0][1]
        assert isinstance(first, r.BatchCreated)
        lifecycle = _lifecycle(conn, first.recipe_hash)
        recipe_rows = [
            as_dict(conn, row.seq, row.hash, row.body)
            for row in read_rows(conn, object_type="recipe", object_id=first.recipe_hash)
        ]
    recipe, _ = load_recipe_text(first.recipe_text, first.recipe_file or first.recipe_name)
    fold = _Fold(first, recipe)
    for seq, rec in pairs:
        fold.add(seq, rec)
    signatures = tuple(_signature(row) for row in audit if row.get("signature"))
    approval_row = next(
        (
            row
            for row in reversed(recipe_rows)
            if (row.get("signature") or {}).get("meaning") == "approved"
        ),
        None,
    )
    approval = m.Approval(
        lifecycle or "draft", _signature(approval_row) if approval_row is not None else None
    )
    all_signatures = signatures + ((approval.signature,) if approval.signature else ())
    return fold.finish(
        approval=approval,
        signatures=all_signatures,
        audit=tuple(audit),
        alarms=_alarms(alarms if alarms is not None else journal_alarms(path), batch_id),
    )


def _records(conn: sqlite3.Connection, batch_id: str) -> list[tuple[int, r.Record]]:
    rows = conn.execute(
        "SELECT seq, type, body FROM records WHERE batch_id = ? ORDER BY seq", (batch_id,)
    ).fetchall()
    if not rows:
        raise UnknownBatch(f"no batch {batch_id!r} in the journal")
    out: list[tuple[int, r.Record]] = []
    for seq, type_name, body in rows:
        try:
            out.append((int(seq), files.decode_stored(type_name, body)))
        except r.RecordError as exc:
            raise RecordError(f"journal seq {seq} of {batch_id} does not decode: {exc}") from None
    if not isinstance(out[0][1], r.BatchCreated):
        raise RecordError(f"the first record of {batch_id} (seq {out[0][0]}) is no BatchCreated")
    return out


def _lifecycle(conn: sqlite3.Connection, recipe_hash: str) -> str:
    try:
        row = conn.execute(
            "SELECT status FROM recipe_lifecycle WHERE recipe_hash = ? ORDER BY seq DESC LIMIT 1",
            (recipe_hash,),
        ).fetchone()
    except sqlite3.OperationalError:  # a journal from before the lifecycle existed
        return ""
    return str(row[0]) if row else ""


def _signature(row: Mapping[str, Any]) -> m.Signature:
    sig = row["signature"]
    return m.Signature(
        seq=int(row["seq"]),
        meaning=str(sig.get("meaning", "")),
        object_type=str(row.get("object_type", "")),
        object_id=str(row.get("object_id", "")),
        user_name=str(sig.get("user_name", "")),
        printed_name=str(sig.get("printed_name", "")),
        at=str(sig.get("at", "")),
        sha256=str(sig.get("sha256", "")),
        action=str(row.get("action", "")),
        reason=str(row.get("reason", "")),
        valid=bool(sig.get("valid")),
        problem=str(sig.get("problem", "")),
    )


def _alarms(source: AlarmSource, batch_id: str) -> m.Alarms:
    return m.Alarms(alarms=tuple(source(batch_id)))


def utc(at: float | str) -> str:
    """An epoch time (or an ISO text, as the audit trail keeps it) as UTC text."""
    if isinstance(at, str):
        return at
    return datetime.fromtimestamp(at, UTC).isoformat(timespec="milliseconds").replace("+00:00", "Z")


@dataclasses.dataclass
class _Visit:
    step: str
    kind: str
    visit: int
    start: m.Moment
    end: m.Moment | None = None
    outcome: str = ""
    next: str = ""
    detail: str = ""
    tasks: list[str] = dataclasses.field(default_factory=list)  # task ids in order
    bound: dict[str, Any] = dataclasses.field(default_factory=dict)
    confirmations: list[m.Confirmation] = dataclasses.field(default_factory=list)


class _Fold:
    """The batch's records, in order, into the record's sections."""

    def __init__(self, first: r.BatchCreated, recipe: Recipe | None) -> None:
        self.first = first
        self.recipe = recipe
        self.limits: list[Condition] = conditions(recipe) if recipe is not None else []
        self.batch: Batch | None = None
        self.visits: list[_Visit] = []
        self.latest: dict[str, _Visit] = {}  # step -> its latest visit
        self.tasks: dict[str, m.Task] = {}
        self.task_step: dict[str, str] = {}
        self.jobs: dict[int, m.Job] = {}
        self.job_when: dict[int, m.Moment] = {}
        self.sample_tasks: list[str] = []  # task ids of sample programs
        self.sample_job: dict[str, int] = {}  # sample task id -> job seq
        self.qc: list[m.QcResult] = []
        self.deviations: list[m.Deviation] = []
        self.commands: list[m.Command] = []

    def moment(self, rec: r.Record) -> m.Moment:
        return m.Moment(rec.at, rec.pt, (rec.pt - self.first.pt) / 3600.0)

    def kind(self, step: str) -> str:
        if self.recipe is None or step not in self.recipe.steps:
            return ""
        return self.recipe.kind(step)

    def add(self, seq: int, rec: r.Record) -> None:
        try:
            if isinstance(rec, r.BatchCreated):
                if self.batch is not None:
                    raise ReducerError(f"batch {rec.batch_id} created twice (seq {seq})")
                self.batch = dataclasses.replace(created(rec), last_seq=seq)
            else:
                assert self.batch is not None
                self.batch = apply(self.batch, rec, seq)
        except ReducerError as exc:
            raise RecordError(f"the records of {rec.batch_id} do not replay: {exc}") from None
        when = self.moment(rec)
        match rec:
            case r.StepStarted():
                visit = _Visit(rec.step, self.kind(rec.step), rec.visit, when)
                self.visits.append(visit)
                self.latest[rec.step] = visit
            case r.StepEnded():
                visit = self.latest[rec.step]
                visit.end, visit.outcome, visit.next, visit.detail = (
                    when,
                    rec.outcome,
                    rec.next,
                    rec.detail,
                )
            case r.ProgramIntent():
                self._task(rec.step, m.Task(
                    rec.task_id, "program", rec.unit, rec.program, rec.attempt, when, None, "",
                    params=dict(rec.params),
                ))  # fmt: skip
                if rec.program == "sample":
                    self.sample_tasks.append(rec.task_id)
            case r.ProgramStarted():
                self._update(rec.task_id, run_id=rec.run_id)
            case r.ProgramEnded():
                fault = f"{rec.fault_code}: {rec.fault_text}" if rec.fault_code else rec.fault_text
                self._update(
                    rec.task_id, end=when, status=rec.status, outputs=dict(rec.outputs), fault=fault
                )
            case r.MoveIntent():
                self._task(rec.step, m.Task(
                    rec.task_id, "move", rec.to, "move", 0, when, None, "", origin=rec.origin
                ))  # fmt: skip
            case r.MoveEnded():
                self._update(
                    rec.task_id, end=when, status="ok" if rec.ok else "failed", fault=rec.detail
                )
            case r.JobIntent():
                self.jobs[rec.job_seq] = m.Job(
                    rec.job_seq, rec.step, rec.sample_id, rec.analyzer, rec.panel, "", when, None
                )
                drawn = [
                    t
                    for t in self.sample_tasks
                    if self.task_step[t] == rec.step and t not in self.sample_job
                ]
                if drawn:
                    self.sample_job[drawn[-1]] = rec.job_seq
            case r.JobEnded():
                job = self.jobs[rec.job_seq]
                self.jobs[rec.job_seq] = dataclasses.replace(
                    job, state=rec.state, end=when, fault=rec.fault, results=dict(rec.results)
                )
            case r.Bound():
                self._bound(rec, when)
            case r.Confirmed():
                self.latest[rec.step].confirmations.append(
                    m.Confirmation(rec.by, rec.role, rec.note, when)
                )
            case r.Deviation():
                self.deviations.append(
                    m.Deviation(rec.kind, rec.message, rec.step, rec.unit, rec.task_id, when)
                )
            case r.CommandIssued():
                self.commands.append(
                    m.Command(
                        rec.command, rec.accepted, rec.by, rec.role, rec.reason, rec.detail, when
                    )
                )

    def _task(self, step: str, task: m.Task) -> None:
        self.tasks[task.task_id] = task
        self.task_step[task.task_id] = step
        visit = self.latest.get(step)
        if visit is not None and task.task_id not in visit.tasks:
            visit.tasks.append(task.task_id)

    def _update(self, task_id: str, **changes: Any) -> None:
        task = self.tasks.get(task_id)
        if task is None:
            raise RecordError(f"an outcome of task {task_id}, which was never announced")
        self.tasks[task_id] = dataclasses.replace(task, **changes)

    def _bound(self, rec: r.Bound, when: m.Moment) -> None:
        assert self.batch is not None
        visit = self.latest.get(rec.step)
        if visit is not None:
            visit.bound.update(rec.values)
        b = self.batch
        env = {
            **b.params,
            **b.variables,
            "visits": dict(b.visits),
            "elapsed_h": (rec.pt - b.run_started_pt) / 3600.0,
        }
        job = None
        if self.kind(rec.step) == "sample":
            ended = [j for j in self.jobs.values() if j.step == rec.step and j.state]
            job = ended[-1] if ended else None
        for name, value in rec.values.items():
            var = self.recipe.variables.get(name) if self.recipe is not None else None
            origin = var.origin if var is not None else ("assay" if job else "output")
            source = var.source if var is not None else ""
            unit = var.unit if var is not None else ""
            if origin == "assay" and source in SAMPLE_RESULTS and not unit:
                unit = SAMPLE_RESULTS[source][2]
            self.qc.append(
                m.QcResult(
                    step=rec.step,
                    visit=visit.visit if visit is not None else 0,
                    origin=origin,
                    variable=name,
                    result=source,
                    value=value,
                    unit=unit,
                    when=when,
                    sample_id=job.sample_id if job else "",
                    job_seq=job.job_seq if job else None,
                    analyzer=job.analyzer if job else "",
                    limits=limits_for(self.limits, name, env),
                )
            )

    def finish(
        self,
        *,
        approval: m.Approval,
        signatures: tuple[m.Signature, ...],
        audit: tuple[Mapping[str, Any], ...],
        alarms: m.Alarms,
    ) -> m.BatchRecord:
        b = self.batch
        assert b is not None
        first = self.first
        steps = tuple(
            m.StepVisit(
                v.step, v.kind, v.visit, v.start, v.end, v.outcome, v.next, v.detail,
                tuple(self.tasks[t] for t in v.tasks), dict(v.bound), tuple(v.confirmations),
            )
            for v in self.visits
        )  # fmt: skip
        released = next((s for s in signatures if s.meaning == "released"), None)
        return m.BatchRecord(
            batch_id=b.batch_id,
            state=str(b.state),
            outcome=b.outcome,
            outcome_reason=b.outcome_reason,
            created=self.moment(first),
            created_by=first.by,
            priority=first.priority,
            identity=self._identity(b),
            recipe=self._recipe(approval),
            steps=steps,
            jobs=tuple(self.jobs.values()),
            qc=tuple(self.qc),
            deviations=tuple(self.deviations),
            commands=tuple(self.commands),
            alarms=alarms,
            signatures=signatures,
            audit=audit,
            released=released,
            generated_at=utc(datetime.now(UTC).timestamp()),
            journal_seq=b.last_seq,
        )

    def _identity(self, b: Batch) -> m.Identity:
        samples: list[m.Sample] = []
        for task_id in self.sample_tasks:
            t = self.tasks[task_id]
            seq = self.sample_job.get(task_id)
            job = self.jobs.get(seq) if seq is not None else None
            samples.append(
                m.Sample(
                    sample_id=str(t.params.get("sample_id", "")),
                    step=self.task_step[task_id],
                    task_id=task_id,
                    drawn=t.status == "Complete",
                    drawn_id=str(t.outputs.get("sample_id", "")),
                    job_seq=seq,
                    analysed_id=job.sample_id if job else "",
                )
            )
        bags: list[str] = []
        for t in self.tasks.values():
            if t.program == BAG_PROGRAM and isinstance(t.outputs.get("bag_ids"), list):
                bags.extend(str(x) for x in t.outputs["bag_ids"])
        has_bags = self.recipe is not None and any(
            getattr(s, "op", None) == BAG_PROGRAM for s in self.recipe.steps.values()
        )
        problems = [f"{d.kind}: {d.message}" for d in self.deviations if d.kind == "identity"]
        problems += [
            f"sample {s.sample_id}: drawn as {s.drawn_id or '-'}, "
            f"analysed as {s.analysed_id or '-'}"
            for s in samples
            if not s.consistent
        ]
        if self.recipe is None:
            problems.append("the pinned recipe text does not load: steps and limits unknown")
        return m.Identity(
            b.cartridge_id, b.shuttle, tuple(samples), tuple(bags), has_bags, tuple(problems)
        )

    def _recipe(self, approval: m.Approval) -> m.RecipeInfo:
        first = self.first
        params: list[tuple[str, Any, str, str]] = []
        declared = self.recipe.parameters if self.recipe is not None else {}
        for name, value in first.params.items():
            spec = declared.get(name)
            params.append(
                (
                    name,
                    value,
                    getattr(spec, "unit", "") or "",
                    getattr(spec, "description", "") or "",
                )
            )
        return m.RecipeInfo(
            name=first.recipe_name,
            version=first.recipe_version,
            hash=first.recipe_hash,
            file=first.recipe_file,
            description=self.recipe.doc.description if self.recipe is not None else "",
            unapproved=first.unapproved,
            approval=approval,
            parameters=tuple(params),
        )
