"""One executor per step kind of the recipe language (op, sample, await, confirm, wait,
decide, complete, fail) and the guard evaluation they share.

Each step executor is ``async def run(ctx: StepCtx) -> Next``: it acts through
``daemon.batch.executor`` (the only module that touches instruments), commits what it
learns, and says which step follows. It starts from what the batch's journal says, so
the same call resumes a step after a restart, a Restart or a lost link. A step raises
``HoldBatch`` (deviation + system hold) or ``StepFault`` (the step's ``on_fault``).
"""

from __future__ import annotations

from daemon.batch.steps.common import Next, StepCtx
from daemon.batch.steps.flow import run_complete, run_confirm, run_decide, run_fail, run_wait
from daemon.batch.steps.op import run_op
from daemon.batch.steps.sample import run_await, run_sample

RUNNERS = {
    "op": run_op,
    "sample": run_sample,
    "await": run_await,
    "confirm": run_confirm,
    "wait": run_wait,
    "decide": run_decide,
    "complete": run_complete,
    "fail": run_fail,
}

__all__ = ["RUNNERS", "Next", "StepCtx"]
