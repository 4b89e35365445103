"""The op step, and the program part that a sample step shares with it.

::

    (no task of this visit) --unit granted, cartridge moved, identity checked-->
        ProgramIntent --StartProgram--> ProgramStarted --end--> ProgramEnded
    ProgramEnded Complete  -> bind outputs, choose next
    ProgramEnded otherwise -> StepFault (the runner records a deviation, then on_fault)
    (after a handled fault and a Restart) -> Clear the unit, start attempt + 1
"""

from __future__ import annotations

from typing import Any

from daemon.batch import executor as ex
from daemon.batch.machine import Batch, Task
from daemon.batch.steps.common import Next, StepCtx
from daemon.journal import records as r
from drivers.icd import ResultStatus, UnitState


def visit_task(ctx: StepCtx) -> Task | None:
    """The program task of the step's current visit, if one was announced."""
    b = ctx.batch
    t = b.task
    if t is None or t.kind != "program" or t.step != ctx.step or t.started_pt < b.step_started_pt:
        return None
    return t


def where(b: Batch) -> str:
    """Where the cartridge is, for a unit request: an unfinished move (a lost link held
    the batch before its MoveEnded) counts as arrived, since the next move_to resumes
    it first. Asking from the origin instead would not see the destination bay as the
    batch's own, and a batch can then wait for itself."""
    t = b.task
    if t is not None and t.kind == "move" and t.phase != "ended":
        return t.unit
    return b.location


def handled(ctx: StepCtx, t: Task, kind: str | None = None) -> bool:
    return any(
        d.task_id == t.task_id and (kind is None or d.kind == kind) for d in ctx.batch.deviations
    )


async def run_program(ctx: StepCtx, program: str, params_of: Any) -> Task:
    """Run (or resume) the step's program to its end; returns the ended task.

    ``params_of(batch)`` gives the program's parameters at intent time."""
    engine, bid = ctx.engine, ctx.batch_id
    t = visit_task(ctx)
    if (
        t is not None
        and t.phase == "ended"
        and t.status != ResultStatus.COMPLETE
        and handled(ctx, t)
    ):
        await _clear_for_retry(ctx, t)
        t = None
    b = ctx.batch
    if t is None:
        # an unreachable shuttle holds the batch for its link, rather than queue unseen
        ex.require_link(engine, b.shuttle, f"{program} for step {ctx.step}")
        unit = await engine.scheduler.unit(bid, b.priority, b.shuttle, program, where(b))
    else:
        unit = t.unit
        engine.scheduler.reserved[(b.shuttle, unit)] = bid
    lock = engine.cartridge_locks[bid]
    try:
        async with lock:
            if t is None:
                await ex.move_to(engine, bid, unit, ctx.step)
                await ex.check_identity(engine, bid, unit)
                t = await ex.start_program(
                    engine, bid, ctx.step, unit, program, params_of(ctx.batch)
                )
            elif t.phase != "ended":
                t = await ex.reconcile_program(engine, bid, t)
            engine.taken_up(bid)  # an open program after a restart: reconciled
            if t.phase != "ended":
                deadline = ctx.deadline(t.started_pt)
                t = await ex.follow_program(engine, bid, t, deadline)
    finally:
        engine.scheduler.release_unit(bid, ctx.batch.shuttle, unit)
    return t


async def _clear_for_retry(ctx: StepCtx, t: Task) -> None:
    """A Restart after a handled fault: clear the unit the fault left (an operator has
    decided to go on), so the next attempt can start there or elsewhere."""
    view = ctx.engine.cell.shuttles[t.shuttle].units.get(t.unit)
    if view is None or view.state not in (UnitState.FAULTED, UnitState.ABORTED):
        return
    drv = ctx.engine.cell.shuttle_drivers[t.shuttle]
    await ex.call(t.shuttle, f"Clear {t.unit}", lambda: drv.clear(t.unit))


def check_ended(ctx: StepCtx, t: Task) -> None:
    if t.status == ResultStatus.COMPLETE:
        return
    b = ctx.batch
    ended = f"{t.program} on {t.unit} ended {t.status}"
    view = ctx.engine.cell.shuttles[t.shuttle].units.get(t.unit)
    if t.status == ResultStatus.FAULTED and view is not None and view.fault_code:
        ended += f" (fault {view.fault_code}: {view.fault_text})"
    raise ex.StepFault(
        "unit_fault",
        f"{ended}; task {t.task_id} of batch {b.batch_id}",
        unit=t.unit,
        task_id=t.task_id,
    )


async def run_op(ctx: StepCtx) -> Next:
    spec = ctx.spec
    t = await run_program(ctx, spec.op, lambda b: ctx.recipe.program_params(ctx.step, b.params))
    check_ended(ctx, t)
    if spec.bind:
        values = {var: _json(t.outputs.get(out)) for var, out in spec.bind.items()}
        missing = [out for var, out in spec.bind.items() if values[var] is None]
        if missing:
            raise ex.StepFault(
                "outputs",
                f"{t.task_id}: outputs missing from the result: " + ", ".join(missing),
                unit=t.unit,
                task_id=t.task_id,
            )
        await ctx.engine.commit(
            ctx.batch_id, r.Bound(batch_id=ctx.batch_id, step=ctx.step, values=values)
        )
    return ctx.choose()


def _json(value: Any) -> Any:
    if isinstance(value, tuple):
        return list(value)
    return value
