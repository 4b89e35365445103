"""What `cellfab demo` expects of its batches, and the summary that says what happened.

This module owns the demo's expectations and nothing else. Per batch, read back from
the engine and the batch's journal records (the batch record):

* it ends Complete with its product released (the recipe's ``complete`` step);
* it records no deviation, except:
  - the batch the demo faults: exactly the unit fault it injected, then a Restart by
    the supervisor, then the faulted step run again as a new attempt that completes;
  - a ``hold_max`` deviation whose wait lasted less than ``BLINK`` of wall time: at a
    time scale of tens of thousands, the daemon's own bookkeeping between two steps
    (two journal commits, each fsynced) is process minutes, and a recipe's ``hold_max:
    30m`` is then a few tens of milliseconds. The summary shows it and says so; a wait
    the schedule caused is longer and is not excused.

And for the whole cell: every program, move and Cell Q job started once (the twins'
own counters of TaskIds and JobSeqs), and the demo finished before its hang guard.
"""

from __future__ import annotations

import collections
from collections.abc import Mapping, Sequence
from dataclasses import dataclass, field

from daemon.batch.machine import Batch, DeviationInfo
from daemon.batch.states import BatchState, Command
from daemon.cli.demo_view import outcome_text, qc_text
from daemon.journal import records as r
from drivers import icd

BLINK = 0.1  # wall seconds: a hold_max wait shorter than this is the time scale's doing


@dataclass(slots=True)
class Injected:
    """The fault the demo plans (batch, step) and, once injected, where and when."""

    batch_id: str
    step: str
    fault: tuple[int, str]
    unit: str = ""
    task_id: str = ""
    at: float = 0.0  # fraction of the program done


@dataclass
class Run:
    """What happened during the demo, beside the batches themselves."""

    batch_ids: list[str] = field(default_factory=list)
    injected: Injected | None = None
    restarted: bool = False
    unexpected: dict[str, str] = field(default_factory=dict)  # batch -> why it stopped
    finished: bool = False
    interrupted: bool = False
    wall_s: float = 0.0
    process_days: float = 0.0


@dataclass(frozen=True, slots=True)
class Verdict:
    lines: list[str]
    ok: bool
    interrupted: bool = False


def judge(
    run: Run,
    batches: Mapping[str, Batch],
    records: Mapping[str, Sequence[r.Record]],
    started: Mapping[str, collections.Counter[object]],
    *,
    time_scale: float,
    planned: int,
    supervisor: str,
    hang_s: float,
) -> Verdict:
    """The summary, and whether every batch ended as expected. ``records`` are each
    batch's journal records; ``started`` the twins' counters (programs, moves, jobs)."""
    lines = [
        f"Summary: {len(run.batch_ids)} batches, {run.wall_s:.0f} s wall, "
        f"{run.process_days:.1f} process days at time scale {time_scale:g}"
    ]
    bad: list[str] = []
    for bid in run.batch_ids:
        problems = _batch(run, batches[bid], records[bid], time_scale, supervisor, lines)
        if problems:
            bad.append(bid)
    twice = [f"{key} x{n}" for counter in started.values() for key, n in counter.items() if n > 1]
    if twice:
        lines.append("STARTED MORE THAN ONCE: " + ", ".join(twice))
    else:
        counts = ", ".join(f"{len(c)} {what}" for what, c in started.items())
        lines.append(
            f"every program, move and Cell Q job started once (the twins count them: {counts})"
        )
    if not run.finished:
        lines.append(f"the demo gave up after {hang_s:.0f} s (its hang guard)")
    n = len(run.batch_ids)
    ok = not bad and not twice and n == planned and run.finished
    if ok:
        lines.append(f"cellfab demo: all {n} batches ended as expected")
    else:
        lines.append(
            f"cellfab demo: {len(bad)} of {n} batches did not end as expected"
            + (f" ({', '.join(bad)})" if bad else "")
            + ("; something started twice" if twice else "")
        )
    return Verdict(lines, ok)


def _row(label: str, text: str) -> str:
    return f"    {label:<20} {text}"


def _batch(
    run: Run,
    b: Batch,
    recs: Sequence[r.Record],
    time_scale: float,
    supervisor: str,
    lines: list[str],
) -> list[str]:
    ended = f"{b.state}" + (f", {outcome_text(b)}" if b.outcome else "")
    lines.append(f"{b.batch_id}  {b.recipe_name} {b.recipe_version}  {b.cartridge_id}  {ended}")
    for job in sorted(b.jobs.values(), key=lambda j: j.job_seq):
        got = qc_text(job.results) if job.results else f"no results ({job.state or job.phase})"
        lines.append(_row(f"QC {job.step}", got))
    inj = run.injected if run.injected and run.injected.batch_id == b.batch_id else None
    problems: list[str] = []
    unexpected = 0
    if not b.deviations:
        lines.append(_row("deviations", "none"))
    for d in b.deviations:
        where = d.step + (f" on {d.unit}" if d.unit else "")
        lines.append(_row("deviation", f"{d.kind} at {where}: {d.message}"))
        if inj is not None and inj.task_id and d.task_id == inj.task_id and d.kind == "unit_fault":
            continue
        blink = _blink(d, recs, time_scale)
        if blink is not None:
            lines.append(
                _row(
                    "",
                    f"(the cells waited {blink * 1000:.0f} ms of wall time: the time scale's "
                    "doing, not the schedule's; excused)",
                )
            )
            continue
        unexpected += 1
    if inj is None:
        expected = "Complete, released, no deviation"
    else:
        expected = "Complete, released; the injected unit fault its one deviation; restarted"
        problems += _restart(inj, b, recs, supervisor, lines)
    if unexpected:
        problems.append(f"{unexpected} unexpected deviation(s)")
    if b.state is not BatchState.COMPLETE:
        why = run.unexpected.get(b.batch_id) or f"still {b.state} when the demo ended"
        problems.append(f"ended {b.state}, not Complete ({why})")
    elif b.outcome != "completed":
        problems.append(f"product not released ({b.outcome_reason})")
    verdict = "as expected" if not problems else "NOT as expected: " + "; ".join(problems)
    lines.append(_row("expected", f"{expected}: {verdict}"))
    return problems


def _blink(d: DeviationInfo, recs: Sequence[r.Record], time_scale: float) -> float | None:
    """The wall seconds a hold_max wait lasted, when shorter than BLINK (else None)."""
    if d.kind != "hold_max":
        return None
    ends = [
        rec.pt
        for rec in recs
        if isinstance(rec, r.StepEnded) and rec.step == d.step and rec.pt <= d.pt
    ]
    if not ends:
        return None
    wall = (d.pt - max(ends)) / time_scale
    return wall if wall < BLINK else None


def _restart(
    inj: Injected, b: Batch, recs: Sequence[r.Record], supervisor: str, lines: list[str]
) -> list[str]:
    """The injected fault and what followed, from the batch's journal records."""
    if not inj.task_id:
        lines.append(_row("fault", "none injected"))
        return [f"the fault was not injected ({inj.step} did not run long enough)"]
    problems: list[str] = []
    if not any(d.kind == "unit_fault" and d.task_id == inj.task_id for d in b.deviations):
        problems.append("the injected unit fault is not recorded as a deviation")
    ends = {rec.task_id: rec.status for rec in recs if isinstance(rec, r.ProgramEnded)}
    code, text = inj.fault
    lines.append(
        _row(
            "fault",
            f"{code} {text!r} injected on {inj.unit} at {inj.at:.0%} of {inj.task_id}: "
            f"{ends.get(inj.task_id, 'no end recorded')}",
        )
    )
    restarts = [
        rec
        for rec in recs
        if isinstance(rec, r.CommandIssued) and rec.command == Command.RESTART and rec.accepted
    ]
    for rec in restarts:
        lines.append(_row("restart", f"by {rec.by} ({rec.role}): {rec.reason}"))
    if not any(rec.by == supervisor for rec in restarts):
        problems.append(f"not restarted by {supervisor}")
    retry = next(
        (
            rec
            for rec in recs
            if isinstance(rec, r.ProgramIntent) and rec.step == inj.step and rec.attempt > 1
        ),
        None,
    )
    if retry is None:
        problems.append(f"{inj.step} did not run again")
        return problems
    status = ends.get(retry.task_id, "not ended")
    lines.append(
        _row("then", f"{inj.step} ran again as attempt {retry.attempt} on {retry.unit}: {status}")
    )
    if status != icd.ResultStatus.COMPLETE:
        problems.append(f"attempt {retry.attempt} of {inj.step} did not complete")
    return problems
