"""One batch's runner: what the engine does for a batch in each ISA-88 state.

This module owns the per-batch task: it reads the batch's state and does that state's
work, through the step executors (``daemon.batch.steps``) and the executor
(``daemon.batch.executor``), committing every outcome. It changes no state itself:
each change is a record the engine commits.

::

    Idle, Held, Paused, final   wait for a command (Held by the system for a lost link:
                                Restart by the system once the link is back)
    Running, Pausing            admit the cartridge, then step after step; Pausing ->
                                Paused at the next step boundary. A state change out of
                                Running/Pausing interrupts the step's waits (never a
                                driver call: those are shielded and their answers kept)
    Holding                     hold the running program on the instrument -> Held
    Restarting                  unhold it -> Running (the step then resumes from what
                                the instrument says)
    Stopping                    Stop the program (outputs so far kept), hand the
                                cartridge out at the OutputPort -> Stopped
    Aborting                    Abort the program and the batch's open Cell Q jobs,
                                Clear the unit, hand the cartridge out -> Aborted
    procedure ended             (a complete or fail step) hand the cartridge out ->
                                Complete, with the outcome completed or failed

A step that raises ``HoldBatch`` gets a deviation and a system Hold; ``StepFault`` gets a
deviation and the step's ``on_fault`` (a step, or hold).

Every log line of the runner's task (and of the driver calls it makes) carries
``batch``, ``step`` and ``task_id`` (structlog context variables; "" outside a step or
a task): bound here per step, and by the executor when it announces a task.
"""

from __future__ import annotations

from typing import TYPE_CHECKING

import anyio
import structlog

from daemon.batch import executor as ex
from daemon.batch.machine import Batch
from daemon.batch.states import ADVANCING, BatchState, Command, target
from daemon.batch.steps import RUNNERS, StepCtx
from daemon.journal import records as r
from daemon.recipe import duration_seconds
from drivers import icd
from drivers.base import InstrumentError, InvalidArgument, InvalidState
from drivers.icd import UnitState

if TYPE_CHECKING:
    from daemon.batch.engine import Engine

log = structlog.get_logger("cellfab.runner")

SYSTEM = "system"
LINK_HOLD = "link:"  # hold_reason prefix of a system hold for a lost link


class BatchRunner:
    def __init__(self, engine: Engine, batch_id: str) -> None:
        self.engine = engine
        self.batch_id = batch_id

    @property
    def b(self) -> Batch:
        return self.engine.batches[self.batch_id]

    async def commit(self, *recs: r.Record) -> Batch:
        return await self.engine.commit(self.batch_id, *recs)

    # ------------------------------------------------------------------ the loop
    async def run(self) -> None:
        structlog.contextvars.bind_contextvars(batch=self.batch_id, step="", task_id="")
        await self.engine.cell.ready.wait()  # every instrument tried once before resuming
        while True:
            b = self.b
            try:
                with structlog.contextvars.bound_contextvars(step=b.step, task_id=_open(b)):
                    await self._once(b)
            except Exception as exc:  # a bug must not stop the other batches
                log.exception("runner failed", batch=self.batch_id, state=b.state)
                self.engine.taken_up(self.batch_id)  # what is left waits for a person
                await self._internal_error(exc)

    def _settled(self, b: Batch) -> None:
        """Tell the engine when nothing open waits for an instrument (Engine.taken_up)."""
        waits_for_a_person = b.final or b.state in (
            BatchState.IDLE,
            BatchState.HELD,
            BatchState.PAUSED,
        )
        if waits_for_a_person or not _open(b):
            self.engine.taken_up(self.batch_id)

    async def _once(self, b: Batch) -> None:
        state = b.state
        self._settled(b)
        if b.final or state in (BatchState.IDLE, BatchState.HELD, BatchState.PAUSED):
            if b.final:
                self.engine.scheduler.forget(self.batch_id)
            if (
                state is BatchState.HELD
                and b.held_by == SYSTEM
                and b.hold_reason.startswith(LINK_HOLD)
            ):
                await self._restart_when_linked(b)
                return
            await self.engine.wait_batch(self.batch_id, lambda nb: nb.last_seq != b.last_seq)
            return
        if state in ADVANCING:
            await self._advance()
        elif state is BatchState.HOLDING:
            await self._hold()
        elif state is BatchState.RESTARTING:
            await self._restart()
        elif state is BatchState.STOPPING:
            await self._end(stop=True)
        elif state is BatchState.ABORTING:
            await self._end(stop=False)

    async def _internal_error(self, exc: Exception) -> None:
        b = self.b
        try:
            await ex.deviation(
                self.engine,
                self.batch_id,
                "internal",
                f"internal error in state {b.state}: {type(exc).__name__}: {exc}",
            )
            await self._hold_by_system("internal error")
        except Exception:
            log.exception("could not record an internal error", batch=self.batch_id)
        # whatever happened, do not spin: wait for the next change
        await self.engine.wait_batch(self.batch_id, lambda nb: nb.last_seq != b.last_seq)

    # ------------------------------------------------------------------ Running
    async def _advance(self) -> None:
        async with anyio.create_task_group() as tg:

            async def interrupt_on_change() -> None:
                await self.engine.wait_batch(self.batch_id, lambda b: b.state not in ADVANCING)
                tg.cancel_scope.cancel()

            tg.start_soon(interrupt_on_change)
            try:
                await self._procedure()
            except ex.HoldBatch as hold:
                await self._system_hold(hold)
            except ex.StepFault as fault:
                await self._fault(fault)
            tg.cancel_scope.cancel()

    async def _procedure(self) -> None:
        engine = self.engine
        recipe = engine.recipe_of(self.b)
        if not self.b.shuttle:
            if self.b.state is BatchState.PAUSING:  # no step has begun: a boundary already
                await self.commit(
                    r.StateReached(batch_id=self.batch_id, state=BatchState.PAUSED.value)
                )
                return
            await ex.admit(engine, self.batch_id)
        async with engine.cartridge_locks[self.batch_id]:
            await ex.resume_move(engine, self.batch_id)  # one the journal left unended
        while True:
            b = self.b
            self._settled(b)
            structlog.contextvars.bind_contextvars(step=b.step, task_id=_open(b))
            if b.state not in ADVANCING:
                return
            if b.outcome:
                await self._hand_out()
                await self.commit(
                    r.StateReached(batch_id=self.batch_id, state=BatchState.COMPLETE.value)
                )
                return
            if not b.step:
                if b.state is BatchState.PAUSING:
                    await self.commit(
                        r.StateReached(batch_id=self.batch_id, state=BatchState.PAUSED.value)
                    )
                    return
                await self._enter(b.next_step or recipe.start)
                continue
            ctx = StepCtx(engine, self.batch_id, recipe, b.step)
            nxt = await RUNNERS[recipe.kind(b.step)](ctx)
            if nxt.outcome in ("completed", "failed"):
                await self.commit(
                    r.StepEnded(batch_id=self.batch_id, step=b.step, outcome=nxt.outcome),
                    r.BatchFinished(batch_id=self.batch_id, outcome=nxt.outcome, reason=nxt.detail),
                )
            else:
                await self.commit(
                    r.StepEnded(
                        batch_id=self.batch_id,
                        step=b.step,
                        outcome=nxt.outcome,
                        next=nxt.step,
                        detail=nxt.detail,
                    )
                )
            log.info("step ended", outcome=nxt.outcome, next=nxt.step)

    async def _enter(self, step: str) -> None:
        b = self.b
        recipe = self.engine.recipe_of(b)
        await self._check_hold_max(b)
        visit = b.visits.get(step, 0) + 1
        structlog.contextvars.bind_contextvars(step=step, task_id="")
        await self.commit(r.StepStarted(batch_id=self.batch_id, step=step, visit=visit))
        log.info("step started", visit=visit)
        limit = getattr(recipe.steps[step], "max_visits", None)
        if limit is not None and visit > limit:
            raise ex.StepFault(
                "max_visits", f"step {step} started {visit} times; max_visits is {limit}"
            )

    async def _check_hold_max(self, b: Batch) -> None:
        if not b.last_step:
            return
        recipe = self.engine.recipe_of(b)
        hold_max = getattr(recipe.steps[b.last_step], "hold_max", None)
        if hold_max is None:
            return
        waited = self.engine.clock.now() - b.last_step_ended_pt
        if waited > duration_seconds(hold_max):
            await ex.deviation(
                self.engine,
                self.batch_id,
                "hold_max",
                f"cells waited {waited / 3600:.2f} h after step {b.last_step} "
                f"(hold_max {hold_max})",
                step=b.last_step,
            )

    async def _hand_out(self) -> None:
        """The cartridge leaves the shuttle at the OutputPort (end of the batch)."""
        b = self.b
        if not b.shuttle or b.location == icd.OUTPUT_PORT:
            return
        async with self.engine.cartridge_locks[self.batch_id]:
            await ex.move_to(self.engine, self.batch_id, icd.OUTPUT_PORT, b.step)

    # ------------------------------------------------------------------ faults
    async def _system_hold(self, hold: ex.HoldBatch) -> None:
        await hold.record(self.engine, self.batch_id)
        link = hold.kind == "link"
        await self._hold_by_system(
            f"{LINK_HOLD}{hold.instrument}" if link else f"{hold.kind}: {hold.message}"
        )

    async def _fault(self, fault: ex.StepFault) -> None:
        b = self.b
        await fault.record(self.engine, self.batch_id)
        spec = self.engine.recipe_of(b).steps[b.step] if b.step else None
        on_fault = getattr(spec, "on_fault", "hold")
        if on_fault != "hold":
            await self.commit(
                r.StepEnded(
                    batch_id=self.batch_id,
                    step=b.step,
                    outcome="fault",
                    next=on_fault,
                    detail=fault.message,
                )
            )
            return
        await self._hold_by_system(f"{fault.kind}: {fault.message}")

    async def _hold_by_system(self, reason: str) -> None:
        if target(self.b.state, Command.HOLD) is not None:
            await self.engine.command(self.batch_id, Command.HOLD, by=SYSTEM, reason=reason)

    async def _restart_when_linked(self, b: Batch) -> None:
        instrument = b.hold_reason[len(LINK_HOLD) :]
        async with anyio.create_task_group() as tg:

            async def on_change() -> None:
                await self.engine.wait_batch(self.batch_id, lambda nb: nb.last_seq != b.last_seq)
                tg.cancel_scope.cancel()

            async def on_link() -> None:
                if instrument:
                    await self.engine.cell.wait(
                        instrument, "link", lambda: self.engine.cell.is_up(instrument)
                    )
                tg.cancel_scope.cancel()

            tg.start_soon(on_change)
            tg.start_soon(on_link)
        if self.b.last_seq == b.last_seq and (not instrument or self.engine.cell.is_up(instrument)):
            await self.engine.command(
                self.batch_id,
                Command.RESTART,
                by=SYSTEM,
                reason=f"link to {instrument or 'the instruments'} restored",
            )

    # ------------------------------------------------------------------ Holding, Restarting
    def _running_program(self) -> tuple[str, str, str] | None:
        t = self.b.task
        if t is None or t.kind != "program" or t.phase == "ended":
            return None
        return t.shuttle, t.unit, t.task_id

    async def _hold(self) -> None:
        """Hold the batch's unended program on the instrument (the view may lag the
        start by a publish, so the instrument is asked, not the view: Hold of a held
        program answers Good, of an ended one BadInvalidState)."""
        await self._program_command("Hold", "hold_not_on_instrument")
        await self.commit(r.StateReached(batch_id=self.batch_id, state=BatchState.HELD.value))

    async def _restart(self) -> None:
        try:
            await self._program_command("Unhold", "unhold_failed")
        except ex.HoldBatch as hold:
            await self._system_hold(hold)
            return
        await self.commit(r.StateReached(batch_id=self.batch_id, state=BatchState.RUNNING.value))

    async def _program_command(self, command: str, deviation_kind: str) -> None:
        prog = self._running_program()
        if prog is None:
            return
        shuttle, unit, task_id = prog
        drv = self.engine.cell.shuttle_drivers[shuttle]
        act = drv.hold if command == "Hold" else drv.unhold
        try:
            await ex.call(shuttle, f"{command} {task_id}", lambda: act(unit, task_id))
        except InvalidState:
            pass  # the program ended meanwhile: the step takes its result when it resumes
        except InvalidArgument:
            pass  # it never started (the unit has another TaskId): nothing to hold
        except ex.HoldBatch as exc:
            if command == "Unhold":
                raise
            await ex.deviation(
                self.engine,
                self.batch_id,
                deviation_kind,
                f"{shuttle} unreachable: {task_id} on {unit} could not be held; "
                f"it runs on under the instrument's control ({exc.message})",
                task_id=task_id,
            )
        except InstrumentError as exc:
            await ex.deviation(
                self.engine,
                self.batch_id,
                deviation_kind,
                f"{command} of {task_id} on {unit} failed: {exc}",
                task_id=task_id,
            )

    # ------------------------------------------------------------------ Stopping, Aborting
    async def _end(self, *, stop: bool) -> None:
        """Stop or abort: end the program, (abort: the jobs, clear the unit), hand the
        cartridge out. Retries, after the link is back, whatever a lost link interrupts."""
        while True:
            try:
                await self._end_once(stop=stop)
                break
            except ex.HoldBatch as hold:
                await hold.record(self.engine, self.batch_id)
                if hold.instrument:
                    inst = hold.instrument
                    await self.engine.cell.wait(
                        inst, "link", lambda inst=inst: self.engine.cell.is_up(inst)
                    )
                else:
                    # not something time mends (a refused move, a contradiction): the
                    # batch ends where it is; the deviation says what is left to do
                    break
        done = BatchState.STOPPED if stop else BatchState.ABORTED
        await self.commit(r.StateReached(batch_id=self.batch_id, state=done.value))

    async def _end_once(self, *, stop: bool) -> None:
        engine = self.engine
        prog = self._running_program()
        if prog is not None:
            shuttle, unit, task_id = prog
            drv = engine.cell.shuttle_drivers[shuttle]
            t = self.b.task
            assert t is not None
            if t.phase == "intent":
                t = await ex.reconcile_program(engine, self.batch_id, t)
            if t.phase != "ended":
                act = drv.stop if stop else drv.abort
                try:
                    await ex.call(
                        shuttle,
                        f"{'Stop' if stop else 'Abort'} {task_id}",
                        lambda: act(unit, task_id),
                    )
                except InstrumentError:
                    pass  # it ended meanwhile: its result says how
                await ex.follow_program(engine, self.batch_id, t, None)
        if not stop:
            for job in list(self.b.jobs.values()):
                if job.phase in ("intent", "submitted"):
                    drv = engine.cell.analyzer_drivers[job.analyzer]
                    try:
                        await ex.call(
                            job.analyzer,
                            f"abort job {job.job_seq}",
                            lambda drv=drv, job=job: drv.abort(job.job_seq),
                        )
                    except InstrumentError:
                        pass  # not queued or running any more: the follower records its end
            t = self.b.task
            if t is not None and t.kind == "program" and self.b.location == t.unit:
                u = engine.cell.shuttles[t.shuttle].units.get(t.unit)
                if u is not None and u.state == UnitState.ABORTED and u.task_id == t.task_id:
                    drv = engine.cell.shuttle_drivers[t.shuttle]
                    await ex.call(t.shuttle, f"Clear {t.unit}", lambda: drv.clear(t.unit))
        await self._hand_out()


def _open(b: Batch) -> str:
    """The TaskId of the batch's unended task, or ""."""
    return b.task.task_id if b.task is not None and b.task.phase != "ended" else ""
