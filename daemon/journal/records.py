"""The journal's records: every fact that changes a batch, as frozen dataclasses.

This module owns the record types and their one codec (record <-> type name + JSON
object). A batch changes only by a record: the executor decides and writes one, the
pure reducer (``daemon.batch.machine.apply``) applies it, and replay after a restart
runs the same reducer over the same records. Nothing else is a source of truth.

Intent before action: a record that announces a command to an instrument
(``MoveIntent``, ``ProgramIntent``, ``JobIntent``) is committed to disk before the
command is on the wire, with everything needed to ask the instrument about it after a
crash (the unit, the TaskId, the JobSeq). Its outcome follows in its own record
(``MoveEnded``, ``ProgramStarted``/``ProgramEnded``, ``JobSubmitted``/``JobEnded``).

Every record carries ``at`` (UTC wall time, epoch seconds, when the fact was decided)
and ``pt`` (the daemon's process time then: wall time x the site's time scale, so a
simulated 9-day process is measured in its own time). Values are JSON-compatible
(str, int, float, bool, None, dicts and lists of them); a record is never mutated.

Adding a field: give it a default, so that older journals still decode. Renaming or
removing one needs a journal schema migration (``daemon.journal.store``).
"""

from __future__ import annotations

import dataclasses
import json
import math
from dataclasses import dataclass, field
from typing import Any, Final

__all__ = [
    "RECORD_TYPES",
    "Admitted",
    "BatchCreated",
    "BatchFinished",
    "Bound",
    "CommandIssued",
    "Confirmed",
    "Deviation",
    "JobEnded",
    "JobIntent",
    "JobReleased",
    "JobSubmitted",
    "MoveEnded",
    "MoveIntent",
    "ProgramEnded",
    "ProgramIntent",
    "ProgramStarted",
    "Record",
    "RecordError",
    "StateReached",
    "StepEnded",
    "StepStarted",
    "decode",
    "encode",
]


class RecordError(ValueError):
    """A stored record that cannot be decoded (unknown type, missing or bad field)."""


@dataclass(frozen=True, slots=True, kw_only=True)
class Record:
    batch_id: str
    at: float = 0.0
    pt: float = 0.0


# --------------------------------------------------------------------------- life cycle
@dataclass(frozen=True, slots=True, kw_only=True)
class BatchCreated(Record):
    """A batch exists: its recipe pinned by hash (the text itself is kept), parameter
    values resolved, its cartridge, its priority. ``shuttle`` is where the operator
    said the cartridge will arrive ("" = any shuttle of the site)."""

    recipe_name: str
    recipe_version: str
    recipe_hash: str
    recipe_text: str
    recipe_file: str = ""
    params: dict[str, Any] = field(default_factory=dict)
    cartridge_id: str
    priority: int = 0
    shuttle: str = ""
    by: str = ""
    unapproved: bool = False


@dataclass(frozen=True, slots=True, kw_only=True)
class CommandIssued(Record):
    """An ISA-88 command, accepted or refused (both are kept: a refusal is audited).
    ``by`` is a person, or ``system`` when the engine itself holds a batch."""

    command: str  # states.Command value
    accepted: bool
    by: str = ""
    role: str = ""
    reason: str = ""
    detail: str = ""  # why it was refused


@dataclass(frozen=True, slots=True, kw_only=True)
class StateReached(Record):
    """A transient state's work is done (states.DONE): Holding -> Held, ..."""

    state: str  # states.BatchState value


@dataclass(frozen=True, slots=True, kw_only=True)
class Admitted(Record):
    """The batch's cartridge was found at ``shuttle``'s LoadPort and the batch may use
    that shuttle's bays; a cartridge never leaves its shuttle afterwards."""

    shuttle: str


@dataclass(frozen=True, slots=True, kw_only=True)
class BatchFinished(Record):
    """The procedure ended at a ``complete`` step (outcome ``completed``) or a ``fail``
    step (``failed``); StateReached(Complete) follows once the cartridge is out."""

    outcome: str
    reason: str = ""


# --------------------------------------------------------------------------- steps
@dataclass(frozen=True, slots=True, kw_only=True)
class StepStarted(Record):
    step: str
    visit: int  # 1 for the first start of this step in this batch


@dataclass(frozen=True, slots=True, kw_only=True)
class StepEnded(Record):
    """``outcome``: ok, fault (its on_fault step follows), or the end of the procedure.
    ``next`` is the step that follows ("" when none)."""

    step: str
    outcome: str
    next: str = ""
    detail: str = ""


@dataclass(frozen=True, slots=True, kw_only=True)
class Bound(Record):
    """Recipe variables bound from program outputs or QC results."""

    step: str
    values: dict[str, Any]


@dataclass(frozen=True, slots=True, kw_only=True)
class Confirmed(Record):
    step: str
    by: str
    role: str
    note: str = ""


@dataclass(frozen=True, slots=True, kw_only=True)
class Deviation(Record):
    """Something that departs from the process as written: identity mismatch, unit
    fault, lost link, timeout, hold_max exceeded, an instrument answer that contradicts
    the journal. ``kind`` is a short code; ``message`` says what and where."""

    kind: str
    message: str
    step: str = ""
    unit: str = ""
    task_id: str = ""
    instrument: str = ""  # the instrument whose link was lost (kind "link")


# --------------------------------------------------------------------------- instruments
@dataclass(frozen=True, slots=True, kw_only=True)
class MoveIntent(Record):
    """About to send Transport.Move(cartridge, to, task_id) on ``shuttle``."""

    task_id: str
    shuttle: str
    to: str
    origin: str
    step: str = ""


@dataclass(frozen=True, slots=True, kw_only=True)
class MoveEnded(Record):
    """The move ended: the cartridge is at ``location`` (``to`` on success, where it
    was before on a transport fault)."""

    task_id: str
    ok: bool
    location: str
    detail: str = ""


@dataclass(frozen=True, slots=True, kw_only=True)
class ProgramIntent(Record):
    """About to send StartProgram(program, params, task_id, cartridge) to ``unit``."""

    task_id: str
    shuttle: str
    unit: str
    program: str
    params: dict[str, Any]
    step: str
    attempt: int


@dataclass(frozen=True, slots=True, kw_only=True)
class ProgramStarted(Record):
    task_id: str
    run_id: str


@dataclass(frozen=True, slots=True, kw_only=True)
class ProgramEnded(Record):
    """GetResult's answer once the program ended: Complete, Stopped, Aborted, Faulted."""

    task_id: str
    status: str
    outputs: dict[str, Any] = field(default_factory=dict)
    fault_code: int = 0
    fault_text: str = ""


@dataclass(frozen=True, slots=True, kw_only=True)
class JobIntent(Record):
    """About to submit a Cell Q job: ``job_seq`` is unique in this journal."""

    job_seq: int
    analyzer: str
    sample_id: str
    panel: int
    step: str
    culture_ml: float | None = None


@dataclass(frozen=True, slots=True, kw_only=True)
class JobSubmitted(Record):
    job_seq: int
    slot: int


@dataclass(frozen=True, slots=True, kw_only=True)
class JobEnded(Record):
    """The job is done, failed or aborted; ``results`` by assay name (done only)."""

    job_seq: int
    state: str  # "done" | "failed" | "aborted"
    fault: int = 0
    results: dict[str, float] = field(default_factory=dict)


@dataclass(frozen=True, slots=True, kw_only=True)
class JobReleased(Record):
    job_seq: int


RECORD_TYPES: Final[dict[str, type[Record]]] = {
    cls.__name__: cls
    for cls in (
        BatchCreated,
        CommandIssued,
        StateReached,
        Admitted,
        BatchFinished,
        StepStarted,
        StepEnded,
        Bound,
        Confirmed,
        Deviation,
        MoveIntent,
        MoveEnded,
        ProgramIntent,
        ProgramStarted,
        ProgramEnded,
        JobIntent,
        JobSubmitted,
        JobEnded,
        JobReleased,
    )
}


# --------------------------------------------------------------------------- codec
def encode(record: Record) -> tuple[str, str]:
    """``(type name, canonical JSON)``; raises RecordError for a value JSON cannot hold
    exactly (NaN, infinity, a non-string key), so nothing unreadable reaches the disk."""
    name = type(record).__name__
    if RECORD_TYPES.get(name) is not type(record):
        raise RecordError(f"{name} is not a journal record type")
    body = {f.name: getattr(record, f.name) for f in dataclasses.fields(record)}
    try:
        text = json.dumps(body, sort_keys=True, separators=(",", ":"), allow_nan=False)
    except (TypeError, ValueError) as exc:
        raise RecordError(f"{name} for batch {record.batch_id}: {exc}") from None
    return name, text


def decode(type_name: str, body: str) -> Record:
    """The record stored as ``(type_name, body)``; RecordError names what is wrong."""
    cls = RECORD_TYPES.get(type_name)
    if cls is None:
        raise RecordError(f"unknown record type {type_name!r}")
    try:
        data = json.loads(body)
    except ValueError as exc:
        raise RecordError(f"{type_name}: body is not JSON: {exc}") from None
    if not isinstance(data, dict):
        raise RecordError(f"{type_name}: body is not a JSON object")
    names = {f.name for f in dataclasses.fields(cls)}
    unknown = set(data) - names
    if unknown:
        raise RecordError(f"{type_name}: unknown fields {sorted(unknown)}")
    for f in dataclasses.fields(cls):
        if f.name in data and (why := _type_error(str(f.type), data[f.name])) is not None:
            raise RecordError(f"{type_name}.{f.name}: {why}")
    try:
        record = cls(**data)
    except TypeError as exc:
        raise RecordError(f"{type_name}: {exc}") from None
    if not (math.isfinite(record.at) and math.isfinite(record.pt)):
        raise RecordError(f"{type_name}: non-finite time")
    return record


def _type_error(annotation: str, value: Any) -> str | None:
    """Why a decoded JSON value does not fit a field's annotation (None when it does).
    Annotations of record fields are few and simple; an unknown one is a bug here."""
    if annotation.endswith(" | None"):
        return None if value is None else _type_error(annotation[: -len(" | None")], value)
    if annotation == "str":
        ok = isinstance(value, str)
    elif annotation == "bool":
        ok = isinstance(value, bool)
    elif annotation == "int":
        ok = isinstance(value, int) and not isinstance(value, bool)
    elif annotation == "float":
        ok = isinstance(value, int | float) and not isinstance(value, bool)
    elif annotation.startswith("dict[str, float]"):
        ok = isinstance(value, dict) and all(
            isinstance(v, int | float) and not isinstance(v, bool) for v in value.values()
        )
    elif annotation.startswith("dict["):
        ok = isinstance(value, dict)
    else:
        raise AssertionError(f"record field annotation {annotation!r} has no decoder check")
    return None if ok else f"expected {annotation}, got {type(value).__name__} {value!r:.40}"
