"""`cellfab demo`'s expectations (daemon.cli.demo_verdict), on batches built from records.

The demo run itself (tests/test_cli.py) checks the common path; these check the rules it
rarely meets: a hold_max wait that the time scale made of milliseconds is excused, a
real one is not, and a batch that is not Complete or not released is named.
"""

from __future__ import annotations

import collections

from daemon.batch.machine import Batch, apply, created
from daemon.cli.demo_verdict import Run, judge
from daemon.journal import records as r

SCALE = 40000.0
HOUR = 3600.0


def _batch(bid: str, *recs: r.Record) -> tuple[Batch, list[r.Record]]:
    first = r.BatchCreated(
        batch_id=bid,
        recipe_name="car_t_rapid_3day",
        recipe_version="1.0",
        recipe_hash="0" * 64,
        recipe_text="",
        cartridge_id=f"C-{bid}",
    )
    b = created(first)
    for rec in recs:
        b = apply(b, rec)
    return b, [first, *recs]


def _done(bid: str, waited_pt: float, *, outcome: str = "completed") -> tuple[Batch, list]:
    """A batch that ran harvest, waited ``waited_pt`` process seconds (hold_max 1h), and
    ended with ``outcome``."""
    t0 = 1_000_000.0
    return _batch(
        bid,
        r.CommandIssued(batch_id=bid, command="Start", accepted=True, pt=t0),
        r.StepStarted(batch_id=bid, step="harvest", visit=1, pt=t0),
        r.StepEnded(batch_id=bid, step="harvest", outcome="ok", next="formulate", pt=t0 + HOUR),
        r.Deviation(
            batch_id=bid,
            kind="hold_max",
            message="cells waited",
            step="harvest",
            pt=t0 + HOUR + waited_pt,
        ),
        r.StepStarted(batch_id=bid, step="formulate", visit=1, pt=t0 + HOUR + waited_pt),
        r.StepEnded(batch_id=bid, step="formulate", outcome=outcome, pt=t0 + 2 * HOUR),
        r.BatchFinished(batch_id=bid, outcome=outcome, reason="done", pt=t0 + 2 * HOUR),
        r.StateReached(batch_id=bid, state="Complete", pt=t0 + 2 * HOUR),
    )


def _judge(*batches: tuple[Batch, list]) -> tuple[list[str], bool]:
    run = Run(batch_ids=[b.batch_id for b, _ in batches], finished=True)
    verdict = judge(
        run,
        {b.batch_id: b for b, _ in batches},
        {b.batch_id: recs for b, recs in batches},
        {"programs": collections.Counter({"B1/harvest/1": 1})},
        time_scale=SCALE,
        planned=len(batches),
        supervisor="sup.lee",
        hang_s=60.0,
    )
    return verdict.lines, verdict.ok


def test_a_hold_max_wait_of_milliseconds_is_shown_and_excused() -> None:
    lines, ok = _judge(_done("B1", waited_pt=0.010 * SCALE))  # 10 ms of wall time
    assert ok, lines
    assert any("hold_max at harvest" in x for x in lines)
    assert any("waited 10 ms of wall time" in x and "excused" in x for x in lines)
    assert lines[-1] == "cellfab demo: all 1 batches ended as expected"


def test_a_hold_max_wait_the_schedule_caused_is_not_excused() -> None:
    lines, ok = _judge(_done("B1", waited_pt=2 * HOUR))  # 180 ms at this scale: 2 h
    assert not ok
    assert any("NOT as expected: 1 unexpected deviation(s)" in x for x in lines)
    assert lines[-1] == "cellfab demo: 1 of 1 batches did not end as expected (B1)"


def test_a_failed_or_unfinished_batch_is_named_with_why() -> None:
    failed = _done("B1", waited_pt=0.0, outcome="failed")
    running, _ = _batch("B2", r.CommandIssued(batch_id="B2", command="Start", accepted=True))
    lines, ok = _judge(failed, (running, []))
    assert not ok
    assert any("product not released (done)" in x for x in lines)
    assert any(
        "ended Running, not Complete (still Running when the demo ended)" in x for x in lines
    )


def test_anything_started_twice_fails_the_demo() -> None:
    batch = _done("B1", waited_pt=0.0)
    run = Run(batch_ids=["B1"], finished=True)
    verdict = judge(
        run,
        {"B1": batch[0]},
        {"B1": batch[1]},
        {"programs": collections.Counter({"B1/harvest/1": 2})},
        time_scale=SCALE,
        planned=1,
        supervisor="sup.lee",
        hang_s=60.0,
    )
    assert not verdict.ok
    assert "STARTED MORE THAN ONCE: B1/harvest/1 x2" in verdict.lines
