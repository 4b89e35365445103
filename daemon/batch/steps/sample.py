"""The sample step (draw with the ``sample`` program, then a Cell Q job) and ``await``.

::

    sample program (as an op step) --Complete--> JobIntent --follower--> JobSubmitted
      --> JobEnded --> results bound, slot released (JobReleased)
    wait: true  -> the step waits for the release, then chooses next
    wait: false -> the step goes on at once; an ``await`` step waits for the release
"""

from __future__ import annotations

from typing import Any

import anyio

from daemon.batch import executor as ex
from daemon.batch import ids
from daemon.batch.machine import Batch, Job
from daemon.batch.steps.common import Next, StepCtx
from daemon.batch.steps.op import check_ended, run_program
from drivers.base import InvalidArgument
from drivers.icd import SlotState


def _param(value: Any, b: Batch) -> Any:
    if isinstance(value, str) and value.startswith("${") and value.endswith("}"):
        return b.params[value[2:-1]]
    return value


def _sample_params(ctx: StepCtx, b: Batch) -> dict[str, Any]:
    return {
        "volume_ml": float(_param(ctx.spec.sample.volume_ml, b)),
        "sample_id": ids.sample_id(b.batch_id, b.samples + 1),
    }


async def run_sample(ctx: StepCtx) -> Next:
    b = ctx.batch
    t = await run_program(ctx, "sample", lambda b: _sample_params(ctx, b))
    check_ended(ctx, t)
    sample_id = str(t.params["sample_id"])
    job = next((j for j in ctx.batch.jobs.values() if j.sample_id == sample_id), None)
    if job is None:
        culture = ctx.spec.sample.culture_ml
        culture_ml = float(_param(culture, b)) if culture is not None else None
        seq = await ex.submit_job(
            ctx.engine,
            ctx.batch_id,
            ctx.step,
            sample_id,
            int(ctx.recipe.panel(ctx.step)),
            culture_ml,
        )
    else:
        seq = job.job_seq
    if not ctx.spec.wait:
        return ctx.choose()
    await _until_released(ctx, seq, ctx.deadline(ctx.batch.step_started_pt))
    return ctx.choose()


async def run_await(ctx: StepCtx) -> Next:
    source = ctx.spec.await_
    jobs = [j for j in ctx.batch.jobs.values() if j.step == source]
    if not jobs:
        raise ex.StepFault("await", f"step {source} has drawn no sample to wait for")
    seq = max(j.job_seq for j in jobs)
    await _until_released(ctx, seq, ctx.deadline(ctx.batch.step_started_pt))
    return ctx.choose()


async def _read_ended(ctx: StepCtx, seq: int) -> Job | None:
    """At the deadline, ask the analyzer itself (the view lags it by a poll, which at a
    high twin time scale is process hours); an ended job is then released and bound by
    its follower, which this waits for."""
    job = ctx.batch.jobs[seq]
    drv = ctx.engine.cell.analyzer_drivers[job.analyzer]
    try:
        status = await ex.call(job.analyzer, f"read job {seq}", lambda: drv.job(seq))
    except InvalidArgument:
        # no slot holds it: its follower ended it (JobEnded is journaled before the slot
        # is freed) and released it in the meantime
        if ctx.engine.batches[ctx.batch_id].jobs[seq].phase not in ("ended", "released"):
            raise
    else:
        if status.state not in (SlotState.DONE, SlotState.FAILED, SlotState.ABORTED):
            return None
    return await ctx.engine.wait_batch(
        ctx.batch_id, lambda b: b.jobs[seq] if b.jobs[seq].phase == "released" else None
    )


async def _released_or_down(ctx: StepCtx, seq: int) -> Job:
    """The job once its follower has released it; HoldBatch("link") while its analyzer
    cannot be reached (the assays go on; the system restarts the batch when the link is
    back, and the step waits again)."""
    engine = ctx.engine
    analyzer = ctx.batch.jobs[seq].analyzer
    view = engine.cell.analyzers[analyzer]

    def released(b: Batch) -> Job | None:
        job = b.jobs[seq]
        return job if job.phase == "released" else None

    got: list[Job] = []
    async with anyio.create_task_group() as tg:

        async def until_released() -> None:
            got.append(await engine.wait_batch(ctx.batch_id, released))
            tg.cancel_scope.cancel()

        async def until_down() -> None:
            await engine.cell.wait(analyzer, "link", lambda: not view.up)
            tg.cancel_scope.cancel()

        tg.start_soon(until_released)
        tg.start_soon(until_down)
    if got:
        return got[0]
    if (job := released(ctx.batch)) is not None:
        return job
    raise ex.HoldBatch(
        "link",
        f"{analyzer}: results of job {seq} ({ctx.step}) cannot be read: not connected "
        f"({view.reason}); the assays go on",
        instrument=analyzer,
    )


async def _until_released(ctx: StepCtx, seq: int, deadline: float | None) -> Job:
    engine = ctx.engine
    if deadline is None:
        job = await _released_or_down(ctx, seq)
    else:
        job = None
        with anyio.move_on_after(engine.clock.wall_seconds(deadline - engine.clock.now())):
            job = await _released_or_down(ctx, seq)
        if job is None:
            job = await _read_ended(ctx, seq)
        if job is None:
            raise ex.HoldBatch(
                "timeout",
                f"results of job {seq} ({ctx.step}) not in within "
                "the step's timeout; the assays go on",
            )
    if job.state != "done":
        fault = {1: "unknown sample", 2: "insufficient volume", 3: "assay failure"}.get(
            job.fault, ""
        )
        raise ex.StepFault(
            "job_failed",
            f"Cell Q job {seq} of sample {job.sample_id} ended "
            f"{job.state}" + (f" (fault {job.fault}: {fault})" if fault else ""),
        )
    return job
