"""Identifier formats the engine gives out, checked against the ICD's rules."""

from __future__ import annotations

import pytest
from hypothesis import given
from hypothesis import strategies as st

from daemon.batch import ids
from daemon.journal.schema import ALPHABET
from drivers import icd

TAGS = st.text(alphabet=ALPHABET, min_size=3, max_size=3)


@given(TAGS, st.integers(1, ids.MAX_JOBS))
def test_job_seqs_are_uint32_nonzero_and_distinct_per_journal(tag: str, n: int) -> None:
    seq = ids.job_seq(tag, n)
    assert 0 < seq <= 0xFFFFFFFF and ids.job_number(seq) == n
    other = "0" if tag[0] != "0" else "1"
    assert ids.job_seq(other + tag[1:], n) != seq  # another journal, another JobSeq


def test_job_numbers_beyond_the_range_are_refused() -> None:
    with pytest.raises(ids.IdError, match="beyond this journal's 131071 jobs"):
        ids.job_seq("ZZZ", ids.MAX_JOBS + 1)


@given(st.integers(1, 99999), TAGS, st.integers(1, 9999))
def test_task_and_sample_ids_fit_the_icd(n: int, tag: str, k: int) -> None:
    b = ids.batch_id(n, tag)
    assert icd.is_task_id(ids.program_task(b, "x" * ids.MAX_STEP_NAME, k))
    assert icd.is_task_id(ids.move_task(b, k))
    assert icd.is_sample_id(ids.sample_id(b, k))
    assert ids.move_task(b, k) != ids.program_task(b, "move", k)
