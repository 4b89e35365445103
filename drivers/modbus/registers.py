"""Cell Q register contents, both ways, checked against ICD section 2.

This module owns the pure half of the Modbus driver: what the driver writes (submit
and slot command values) and what it makes of what it reads (status, slots,
results). Every value read is checked against the ranges the ICD gives it before it
becomes a typed value; anything else raises ``OutOfIcd``, which the wire turns into
``CommunicationLost`` (a garbage answer). Nothing here does I/O.

Checks on a read, per the ICD tables:

* status: state 0..3; free slots 0..16;
* a slot: state 0..5, job fault 0..3, progress 0..1000 per mille; JobSeq 0 exactly
  when the slot is free; a job fault only on a failed job;
* results of a done job (the panel's assays; the others read NaN): finite; a
  percentage in 0..100; a concentration or endotoxin >= 0; sterility and mycoplasma
  0 or 1. Infinity, or NaN where nothing else can be told apart, is never passed on.
* the holding registers read back for an abort or release (panel, SampleId): a valid
  panel and an ICD SampleId in ASCII, since they are written back unchanged.
"""

from __future__ import annotations

import math
from collections.abc import Sequence
from dataclasses import dataclass
from typing import Final

from drivers import icd
from drivers.base import JobStatus
from drivers.icd import AnalyzerState, Assay, Command, JobFault, SlotState

__all__ = [
    "CHUNK_REGS",
    "SLOTS_PER_READ",
    "SLOT_READ",
    "OutOfIcd",
    "Status",
    "command_values",
    "decode_slot",
    "decode_slots",
    "decode_status",
    "submit_values",
]

# A slot's named input registers end at b+21; three whole slots and the named part of
# a fourth are 118 registers, under the 125 one read may carry.
SLOT_READ: Final = icd.result_offset(Assay.MYCOPLASMA) + 2  # 22
SLOTS_PER_READ: Final = 4
CHUNK_REGS: Final = icd.SLOT_STRIDE * (SLOTS_PER_READ - 1) + SLOT_READ

_PERCENT: Final = frozenset({Assay.VIABILITY, Assay.IDENTITY, Assay.TRANSDUCTION})
_BINARY: Final = frozenset({Assay.STERILITY, Assay.MYCOPLASMA})


class OutOfIcd(ValueError):
    """A register value the ICD does not allow where it was read."""


@dataclass(frozen=True, slots=True)
class Status:
    state: AnalyzerState
    fault_code: int
    free_slots: int
    heartbeat: int
    version: int


def decode_status(regs: Sequence[int]) -> Status:
    """Input registers 0..9."""
    try:
        state = AnalyzerState(regs[icd.IR_STATE])
    except ValueError:
        raise OutOfIcd(f"analyzer state {regs[icd.IR_STATE]}") from None
    free = regs[icd.IR_FREE_SLOTS]
    if free > icd.SLOT_COUNT:
        raise OutOfIcd(f"{free} free slots of {icd.SLOT_COUNT}")
    return Status(
        state=state,
        fault_code=regs[icd.IR_FAULT_CODE],
        free_slots=free,
        heartbeat=icd.decode_u32(regs[icd.IR_HEARTBEAT : icd.IR_HEARTBEAT + 2]),
        version=regs[icd.IR_ICD_VERSION],
    )


def decode_slot(slot: int, regs: Sequence[int]) -> JobStatus | None:
    """A slot's first ``SLOT_READ`` input registers; None when the slot is free."""
    job_seq = icd.decode_u32(regs[icd.IR_JOB_SEQ : icd.IR_JOB_SEQ + 2])
    raw_state, progress, raw_fault = (
        regs[icd.IR_SLOT_STATE],
        regs[icd.IR_PROGRESS],
        regs[icd.IR_JOB_FAULT],
    )
    try:
        state = SlotState(raw_state)
        fault = JobFault(raw_fault)
    except ValueError:
        raise OutOfIcd(f"slot {slot}: state {raw_state}, job fault {raw_fault}") from None
    if (state is SlotState.FREE) != (job_seq == 0):
        raise OutOfIcd(f"slot {slot}: JobSeq {job_seq} in state {state.name}")
    if progress > 1000:
        raise OutOfIcd(f"slot {slot}: progress {progress} per mille")
    if fault is not JobFault.NONE and state is not SlotState.FAILED:
        raise OutOfIcd(f"slot {slot}: job fault {fault.name} in state {state.name}")
    if state is SlotState.FREE:
        return None
    results = _results(slot, regs) if state is SlotState.DONE else {}
    return JobStatus(
        slot=slot,
        job_seq=job_seq,
        state=state,
        progress_permille=progress,
        fault=fault,
        results=results,
    )


def _results(slot: int, regs: Sequence[int]) -> dict[Assay, float]:
    results: dict[Assay, float] = {}
    for assay in Assay:
        off = icd.result_offset(assay)
        value = icd.decode_f32(regs[off : off + 2])
        if math.isnan(value):  # not in the panel
            continue
        if not _result_ok(assay, value):
            raise OutOfIcd(f"slot {slot}: {assay.name} result {value!r}")
        results[assay] = value
    return results


def _result_ok(assay: Assay, value: float) -> bool:
    if not math.isfinite(value):
        return False
    if assay in _BINARY:
        return value in (0.0, 1.0)
    if assay in _PERCENT:
        return 0.0 <= value <= 100.0
    return value >= 0.0


def decode_slots(first: int, regs: Sequence[int], count: int) -> dict[int, JobStatus]:
    """``count`` slots from ``first`` out of one read of ``CHUNK_REGS`` registers."""
    slots: dict[int, JobStatus] = {}
    for i in range(count):
        off = i * icd.SLOT_STRIDE
        job = decode_slot(first + i, regs[off : off + SLOT_READ])
        if job is not None:
            slots[job.slot] = job
    return slots


def submit_values(job_seq: int, sample_id: str, panel: int) -> list[int]:
    """Holding registers b+0..11 of a submit: JobSeq, panel, SampleId, command last."""
    return [
        *icd.encode_u32(job_seq),
        panel,
        *icd.encode_string(sample_id),
        int(Command.SUBMIT),
    ]


def command_values(job_seq: int, held: Sequence[int], command: Command) -> list[int]:
    """Holding registers b+0..11 of an abort or release, from b+0..10 read back.

    Panel and SampleId sit between JobSeq and the command; they are written back as
    read, so they must be what a submit could have written."""
    panel = held[icd.HR_PANEL]
    sample = list(held[icd.HR_SAMPLE_ID : icd.HR_SAMPLE_ID + icd.STRING_REGS])
    if icd.parse_sample_id(sample) is None:
        raise OutOfIcd(f"SampleId registers {sample} hold no ICD SampleId")
    if not icd.panel_is_valid(panel):
        raise OutOfIcd(f"panel {panel:#x} read back")
    return [*icd.encode_u32(job_seq), panel, *sample, int(command)]
