"""The electronic batch record as a value: what ``gather`` finds and ``render`` shows.

Plain frozen dataclasses, no behaviour beyond a few derived facts. Times are kept as
recorded: ``at`` is UTC wall time (epoch seconds), ``pt`` the daemon's process time
(seconds; a simulated site runs it faster than the wall clock); ``hours`` is process
hours since the batch was created, the axis of the timeline.
"""

from __future__ import annotations

from collections.abc import Mapping
from dataclasses import dataclass, field
from typing import Any


@dataclass(frozen=True, slots=True)
class Moment:
    at: float  # UTC wall time, epoch seconds
    pt: float  # process time, seconds
    hours: float  # process hours since the batch was created


@dataclass(frozen=True, slots=True)
class Task:
    """One instrument task of a step: a program on a unit, or a transport move."""

    task_id: str
    kind: str  # program | move
    unit: str  # the program's unit, or the move's destination
    program: str  # program name, or "move"
    attempt: int
    start: Moment
    end: Moment | None
    status: str  # ResultStatus; ok/failed for a move; "" while it runs
    run_id: str = ""
    origin: str = ""  # a move's origin
    params: Mapping[str, Any] = field(default_factory=dict)
    outputs: Mapping[str, Any] = field(default_factory=dict)
    fault: str = ""


@dataclass(frozen=True, slots=True)
class Confirmation:
    by: str
    role: str
    note: str
    when: Moment


@dataclass(frozen=True, slots=True)
class StepVisit:
    step: str
    kind: str  # op, sample, await, confirm, wait, decide, complete, fail
    visit: int
    start: Moment
    end: Moment | None
    outcome: str  # ok, fault, completed, failed; "" while it runs
    next: str = ""
    detail: str = ""
    tasks: tuple[Task, ...] = ()
    bound: Mapping[str, Any] = field(default_factory=dict)
    confirmations: tuple[Confirmation, ...] = ()


@dataclass(frozen=True, slots=True)
class Limit:
    """One condition the recipe states on a QC value (see ``daemon.record.limits``)."""

    text: str  # what must hold for the value to pass, e.g. "viability >= min_viability_pct"
    guard: str  # the guard it comes from, as written
    step: str  # the step whose branches hold the guard
    passed: bool | None  # None: could not be evaluated
    why: str = ""  # why it could not be evaluated


@dataclass(frozen=True, slots=True)
class QcResult:
    """One value a step bound (a QC result of a sample step, or an in-process value
    from a program's outputs), with the limits the recipe states on it."""

    step: str
    visit: int
    origin: str  # assay (a sample step's QC result) or output (a program output)
    variable: str
    result: str  # the sample result or program output it holds
    value: Any
    unit: str
    when: Moment
    sample_id: str = ""
    job_seq: int | None = None
    analyzer: str = ""
    limits: tuple[Limit, ...] = ()

    @property
    def verdict(self) -> str:
        if not self.limits:
            return "no limit"
        if any(limit.passed is False for limit in self.limits):
            return "fail"
        if any(limit.passed is None for limit in self.limits):
            return "not evaluated"
        return "pass"


@dataclass(frozen=True, slots=True)
class Job:
    """One Cell Q job: the sample it analysed and its raw results by assay."""

    job_seq: int
    step: str
    sample_id: str
    analyzer: str
    panel: int
    state: str  # done | failed | aborted; "" while it runs
    start: Moment
    end: Moment | None
    fault: int = 0
    results: Mapping[str, float] = field(default_factory=dict)


@dataclass(frozen=True, slots=True)
class Sample:
    """Chain of identity of one sample: drawn from the cartridge, analysed as the same id."""

    sample_id: str
    step: str
    task_id: str
    drawn: bool  # the sample program completed
    drawn_id: str  # the SampleId the program reported drawing ("" when none)
    job_seq: int | None  # the Cell Q job that analysed it
    analysed_id: str  # the SampleId the job carried

    @property
    def consistent(self) -> bool:
        ids = {self.sample_id, *(i for i in (self.drawn_id, self.analysed_id) if i)}
        return len(ids) == 1


@dataclass(frozen=True, slots=True)
class Identity:
    cartridge_id: str
    shuttle: str
    samples: tuple[Sample, ...]
    bags: tuple[str, ...]
    recipe_has_bags: bool
    problems: tuple[str, ...] = ()  # identity deviations, inconsistent samples


@dataclass(frozen=True, slots=True)
class Signature:
    """An electronic signature and whether it still holds for its record."""

    seq: int  # the audit row that carries it
    meaning: str
    object_type: str
    object_id: str
    user_name: str
    printed_name: str
    at: str
    sha256: str
    action: str
    reason: str
    valid: bool
    problem: str


@dataclass(frozen=True, slots=True)
class Approval:
    """The recipe's lifecycle as the daemon holds it (by hash)."""

    status: str  # draft, submitted, approved, retired (as of now)
    signature: Signature | None  # the approval's signature, when approved


@dataclass(frozen=True, slots=True)
class RecipeInfo:
    name: str
    version: str
    hash: str
    file: str
    description: str
    unapproved: bool  # the batch was created on a recipe that was not approved
    approval: Approval
    parameters: tuple[tuple[str, Any, str, str], ...]  # name, value, unit, description


@dataclass(frozen=True, slots=True)
class Deviation:
    kind: str
    message: str
    step: str
    unit: str
    task_id: str
    when: Moment


@dataclass(frozen=True, slots=True)
class Command:
    command: str
    accepted: bool
    by: str
    role: str
    reason: str
    detail: str
    when: Moment


@dataclass(frozen=True, slots=True)
class Alarm:
    """An alarm of the batch, as the alarm source gives it (``daemon.record.gather``'s
    ``AlarmSource``; the alarm system of issue #11 feeds it)."""

    alarm_id: str
    priority: str
    state: str
    kind: str
    message: str
    step: str = ""
    unit: str = ""
    raised_at: str = ""
    history: tuple[str, ...] = ()  # acknowledged / shelved / returned, as readable lines


@dataclass(frozen=True, slots=True)
class Alarms:
    """The alarms section: every alarm raised for the batch (``daemon.alarms``)."""

    alarms: tuple[Alarm, ...] = ()


@dataclass(frozen=True, slots=True)
class BatchRecord:
    batch_id: str
    state: str
    outcome: str
    outcome_reason: str
    created: Moment
    created_by: str
    priority: int
    identity: Identity
    recipe: RecipeInfo
    steps: tuple[StepVisit, ...]
    jobs: tuple[Job, ...]
    qc: tuple[QcResult, ...]
    deviations: tuple[Deviation, ...]
    commands: tuple[Command, ...]
    alarms: Alarms
    signatures: tuple[Signature, ...]
    audit: tuple[Mapping[str, Any], ...]  # the batch's audit extract (export.as_dict rows)
    released: Signature | None
    generated_at: str  # UTC, when this record was gathered
    journal_seq: int  # the batch's last journal seq it covers

    @property
    def tasks(self) -> tuple[Task, ...]:
        return tuple(t for s in self.steps for t in s.tasks)

    @property
    def invalid_signatures(self) -> tuple[Signature, ...]:
        return tuple(s for s in self.signatures if not s.valid)
