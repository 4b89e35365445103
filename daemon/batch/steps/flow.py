"""Steps that use no instrument: confirm, wait, decide, complete, fail."""

from __future__ import annotations

import anyio

from daemon.batch.executor import HoldBatch
from daemon.batch.steps.common import Next, StepCtx
from daemon.recipe import duration_seconds


async def run_confirm(ctx: StepCtx) -> Next:
    deadline = ctx.deadline(ctx.batch.step_started_pt)
    engine = ctx.engine
    if deadline is None:
        await engine.wait_batch(ctx.batch_id, lambda b: b.confirmation is not None)
    else:
        got = None
        with anyio.move_on_after(engine.clock.wall_seconds(deadline - engine.clock.now())):
            got = await engine.wait_batch(ctx.batch_id, lambda b: b.confirmation is not None)
        if got is None:
            raise HoldBatch("timeout", f"no confirmation of {ctx.step!r} within its timeout")
    return ctx.choose()


async def run_wait(ctx: StepCtx) -> Next:
    until = ctx.batch.step_started_pt + duration_seconds(ctx.spec.wait)
    await ctx.engine.clock.sleep_until(until)
    return ctx.choose()


async def run_decide(ctx: StepCtx) -> Next:
    return ctx.choose()


async def run_complete(ctx: StepCtx) -> Next:
    return Next("", "completed", ctx.spec.complete)


async def run_fail(ctx: StepCtx) -> Next:
    return Next("", "failed", ctx.spec.fail)
