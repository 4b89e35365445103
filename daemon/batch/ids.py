"""Identifiers the engine gives out: batch ids, TaskIds and SampleIds.

This module owns their formats, each checked against the ICD's rules (drivers.icd):

* batch id ``B0007-K3Q``: a counter from the journal and the journal's instance tag,
  so an id is never reused, not even by a daemon that starts a new journal against
  instruments that remember the old one's TaskIds (a reused TaskId would be taken for
  a repeat and start nothing);
* program TaskId ``B0007-K3Q/expand/2``: batch, step, attempt (ICD idempotency key);
* move TaskId ``B0007-K3Q/move.3/1``: the middle part is not a step name (step names
  are identifiers, which never hold a dot), so it cannot collide with a program's;
* SampleId ``B0007-K3Q-S2``: unique per shuttle (ICD 1.1) because batch ids are;
* JobSeq: the instance tag's 15 bits over a 17-bit count (131,071 jobs per journal), so
  a daemon on a new journal never submits a JobSeq that an analyzer still holds for an
  older one (Cell Q answers a submit of a JobSeq a slot holds as a repeat: the batch
  would get another sample's results).
"""

from __future__ import annotations

import re
from typing import Final

from daemon.journal.schema import ALPHABET
from drivers import icd

BATCH_ID_RE: Final = re.compile(r"B[0-9]{4,7}-[0-9A-Z]{3}")
JOB_BITS: Final = 17
MAX_JOBS: Final = (1 << JOB_BITS) - 1
MAX_STEP_NAME: Final = 40  # keeps every TaskId within the ICD's 64 characters


class IdError(ValueError):
    """An id the ICD would refuse (a bug or a recipe beyond the engine's limits)."""


def batch_id(number: int, instance: str) -> str:
    out = f"B{number:04d}-{instance}"
    if BATCH_ID_RE.fullmatch(out) is None:
        raise IdError(f"batch number {number} or instance tag {instance!r} out of range")
    return out


def program_task(batch: str, step: str, attempt: int) -> str:
    return _task(f"{batch}/{step}/{attempt}")


def move_task(batch: str, move: int) -> str:
    return _task(f"{batch}/move.{move}/1")


def sample_id(batch: str, sample: int) -> str:
    out = f"{batch}-S{sample}"
    if not icd.is_sample_id(out):
        raise IdError(f"SampleId {out!r} breaks the ICD rule (batch has too many samples)")
    return out


def _task(task_id: str) -> str:
    if not icd.is_task_id(task_id):
        raise IdError(f"TaskId {task_id!r} breaks the ICD rule [A-Za-z0-9._/-]{{1,64}}")
    return task_id


def job_seq(instance: str, number: int) -> int:
    """The JobSeq of this journal's ``number``-th job (1-based)."""
    if not 1 <= number <= MAX_JOBS:
        raise IdError(
            f"job number {number} is beyond this journal's {MAX_JOBS} jobs; start a new "
            "journal (cellfab journal backup, then a fresh journal file)"
        )
    tag = 0
    for ch in instance:
        tag = tag * len(ALPHABET) + ALPHABET.index(ch)
    return (tag << JOB_BITS) | number


def job_number(seq: int) -> int:
    """The journal's job number inside a JobSeq (see ``job_seq``)."""
    return seq & MAX_JOBS
