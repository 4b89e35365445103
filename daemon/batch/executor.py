"""The executor: the one place where the engine acts on instruments.

This module owns every side effect of a batch on the cell: admission from the
LoadPort, transport moves, programs (start, follow, hold, stop, abort, clear) and
analyzer jobs (submit, follow, release), each one written as intent -> call ->
outcome, with the intent committed before the call is on the wire. A driver call runs
shielded from cancellation: once sent, its answer is recorded.

Resuming is the same code as running: each operation starts from what the batch's
journal says (``batch.task`` and ``batch.jobs``), so after a restart, a lost link or a
Restart, the instrument is asked and its answer taken:

=================  ==============================================================
journal says       what the instrument is asked, and what follows
=================  ==============================================================
program intent     GetResult(TaskId) on the journaled unit: Unknown -> StartProgram
                   with the same TaskId (the ICD's idempotency makes a repeat safe);
                   running/held -> follow it; ended -> take the result
program started    GetResult: running/held -> follow; ended -> take the result;
                   Unknown -> contradiction: hold with a deviation, never restart
move intent        Move again with the same TaskId (idempotent), then wait for the
                   cartridge at its destination
job intent         submit again with the same JobSeq (idempotent on Cell Q)
job submitted      the slot that holds the JobSeq: follow it; none -> contradiction
=================  ==============================================================

Errors become one of two exceptions for the step code: ``HoldBatch`` (a deviation and a
system Hold: lost link, identity mismatch, contradiction, unit fault, timeout) and
``StepFault`` (the step failed; its ``on_fault`` decides). Nothing here starts a second
attempt to cover an unknown outcome.

Log context: an announced task binds ``task_id`` for the rest of the runner's step; the
tasks of their own (``follow_job``, ``park``) bind their batch first (``batch``, ``step``).
"""

from __future__ import annotations

from collections.abc import Awaitable, Callable
from typing import TYPE_CHECKING, Any, TypeVar

import anyio
import structlog

from daemon.batch import ids
from daemon.batch.machine import Batch, Task
from daemon.journal import records as r
from drivers import icd
from drivers.base import (
    Busy,
    CommunicationLost,
    IdentityMismatch,
    InstrumentError,
    InvalidState,
    TaskResult,
)
from drivers.icd import ResultStatus, UnitState

if TYPE_CHECKING:
    from daemon.batch.engine import Engine

log = structlog.get_logger("cellfab.executor")
T = TypeVar("T")

ENDED = frozenset({UnitState.COMPLETE, UnitState.ABORTED, UnitState.FAULTED})
RESULT_ENDED = frozenset(
    {ResultStatus.COMPLETE, ResultStatus.STOPPED, ResultStatus.ABORTED, ResultStatus.FAULTED}
)


class Deviated(Exception):
    """Something departed from the process: ``kind`` and ``message`` become a Deviation
    record (``record``); the subclass says what the runner does next."""

    def __init__(
        self, kind: str, message: str, *, unit: str = "", task_id: str = "", instrument: str = ""
    ) -> None:
        super().__init__(message)
        self.kind = kind
        self.message = message
        self.unit = unit
        self.task_id = task_id
        self.instrument = instrument

    async def record(self, engine: Engine, batch_id: str, prefix: str = "") -> Batch:
        return await deviation(
            engine,
            batch_id,
            self.kind,
            prefix + self.message,
            unit=self.unit,
            task_id=self.task_id,
            instrument=self.instrument,
        )


class HoldBatch(Deviated):
    """Record a deviation and hold the batch (system hold)."""


class StepFault(Deviated):
    """The step failed (program faulted, job failed, guard error, max_visits): a deviation,
    then the step's ``on_fault``."""


# --------------------------------------------------------------------------- calls
async def call(instrument: str, what: str, fn: Callable[[], Awaitable[T]]) -> T:
    """A driver call, shielded; a lost link becomes HoldBatch (outcome unknown)."""
    with anyio.CancelScope(shield=True):
        try:
            return await fn()
        except CommunicationLost as exc:
            raise HoldBatch(
                "link",
                f"{instrument}: {what}: {exc.detail} (outcome unknown; it will be "
                "reconciled with the instrument when the link is back)",
                instrument=instrument,
            ) from exc


def _shuttle(engine: Engine, name: str) -> Any:
    return engine.cell.shuttle_drivers[name]


def require_link(engine: Engine, instrument: str, what: str) -> None:
    """HoldBatch("link") when the instrument cannot be reached now: a step that needs
    it holds (a deviation, and the system's Restart once the link is back) rather than
    queue for a unit or the transport unseen."""
    _require_up(engine, instrument, what)


def _require_up(engine: Engine, instrument: str, what: str) -> None:
    if not engine.cell.is_up(instrument):
        view = engine.cell.shuttles.get(instrument) or engine.cell.analyzers.get(instrument)
        reason = view.reason if view else "unknown instrument"
        raise HoldBatch(
            "link", f"{instrument}: {what}: not connected ({reason})", instrument=instrument
        )


# --------------------------------------------------------------------------- admission
async def admit(engine: Engine, batch_id: str) -> None:
    """Wait for the cartridge at a LoadPort, admit it, and move it into a free bay."""
    b = engine.batch(batch_id)
    if b.shuttle:
        return
    shuttles = [b.requested_shuttle] if b.requested_shuttle else list(engine.site_shuttles)

    def found() -> str:
        for name in shuttles:
            view = engine.cell.shuttles.get(name)
            if view is not None and view.up and view.load_port == b.cartridge_id:
                return name
        return ""

    shuttle = found()
    while not shuttle:
        async with anyio.create_task_group() as tg:
            for name in shuttles:

                async def watch(name: str = name) -> None:
                    await engine.cell.wait(name, icd.LOAD_PORT, found)
                    tg.cancel_scope.cancel()

                tg.start_soon(watch)
        shuttle = found()
    bay = await engine.scheduler.admission(batch_id, b.priority, shuttle)
    try:
        await engine.commit(batch_id, r.Admitted(batch_id=batch_id, shuttle=shuttle))
        async with engine.cartridge_locks[batch_id]:
            await move_to(engine, batch_id, bay)
    finally:
        engine.scheduler.release_parking(batch_id, shuttle, bay)


# --------------------------------------------------------------------------- moves
async def move_to(engine: Engine, batch_id: str, to: str, step: str = "") -> None:
    """Move the batch's cartridge to ``to`` (a unit or the OutputPort). The caller holds
    the batch's cartridge lock. Resumes an unfinished move first."""
    await resume_move(engine, batch_id)
    b = engine.batch(batch_id)
    if b.location == to:
        return
    shuttle = b.shuttle
    view = engine.cell.shuttles[shuttle]
    _require_up(engine, shuttle, f"move {b.cartridge_id} to {to}")
    if to != icd.OUTPUT_PORT:
        # the bay may still be emptying (its cartridge being parked). A lost link ends
        # the wait as a link hold: "not up" must not pass for "empty" once it is back
        def emptied() -> str:
            return "down" if not view.up else "" if view.units[to].cartridge_id else "empty"

        if await engine.cell.wait(shuttle, to, emptied) == "down":
            _require_up(engine, shuttle, f"move {b.cartridge_id} to {to}")
    await engine.scheduler.transport_of(batch_id, b.priority + 1000, shuttle)
    try:
        _require_up(engine, shuttle, f"move {b.cartridge_id} to {to}")
        b = engine.batch(batch_id)
        task_id = ids.move_task(batch_id, b.moves + 1)
        b = await engine.commit(
            batch_id,
            r.MoveIntent(
                batch_id=batch_id,
                task_id=task_id,
                shuttle=shuttle,
                to=to,
                origin=b.location,
                step=step,
            ),
        )
        assert b.task is not None
        structlog.contextvars.bind_contextvars(task_id=task_id)
        await _finish_move(engine, batch_id, b.task)
    finally:
        engine.scheduler.release_transport(batch_id, shuttle)


async def resume_move(engine: Engine, batch_id: str) -> None:
    """Finish a move the journal announced and did not end (Move again with the same
    TaskId), holding the transport as any move does. The runner calls it before the
    batch asks the scheduler for anything: until the move ends, the scheduler counts its
    origin and destination as the batch's, so a step that asked first would wait for a
    bay its own cartridge holds. The caller holds the batch's cartridge lock."""
    t = engine.batch(batch_id).task
    if t is None or t.kind != "move" or t.phase == "ended":
        return
    _require_up(engine, t.shuttle, f"move {t.task_id}")
    await engine.scheduler.transport_of(batch_id, engine.batch(batch_id).priority + 1000, t.shuttle)
    try:
        await _finish_move(engine, batch_id, t)
    finally:
        engine.scheduler.release_transport(batch_id, t.shuttle)
    log.info("reconciled", batch=batch_id, task_id=t.task_id, unit=t.unit, status="moved")


async def _finish_move(engine: Engine, batch_id: str, t: Task) -> None:
    b = engine.batch(batch_id)
    drv = _shuttle(engine, t.shuttle)
    view = engine.cell.shuttles[t.shuttle]
    _require_up(engine, t.shuttle, f"move {t.task_id}")
    try:
        await call(
            t.shuttle, f"Move {t.task_id}", lambda: drv.move(b.cartridge_id, t.unit, t.task_id)
        )
    except IdentityMismatch as exc:
        raise HoldBatch(
            "identity",
            f"{t.shuttle}: the transport has no cartridge {b.cartridge_id} to move ({exc.detail})",
            task_id=t.task_id,
        ) from exc
    except InstrumentError as exc:
        raise HoldBatch(
            "move",
            f"{t.shuttle}: Move {t.task_id} to {t.unit} refused: {exc.detail}",
            task_id=t.task_id,
            unit=t.unit,
        ) from exc
    engine.taken_up(batch_id)  # an open move after a restart: sent again, answered

    def ended() -> str:
        if not view.up:
            return "down"
        if engine.cell.where_is(t.shuttle, b.cartridge_id) == t.unit:
            return "ok"
        if view.transport_task == t.task_id and view.transport_state == icd.TransportState.FAULTED:
            return "faulted"
        return ""

    # the arrival shows on the destination (a bay, or the OutputPort's list), a fault on
    # the transport; they may come in either order within a publish: wait on both
    outcome = await _wait_either(engine, t.shuttle, (icd.TRANSPORT, t.unit), ended)
    if outcome == "down":
        _require_up(engine, t.shuttle, f"move {t.task_id}")
    if outcome == "ok":
        await engine.commit(
            batch_id, r.MoveEnded(batch_id=batch_id, task_id=t.task_id, ok=True, location=t.unit)
        )
        return
    where = engine.cell.where_is(t.shuttle, b.cartridge_id) or t.origin
    text = f"transport faulted ({view.transport_fault}: {view.transport_fault_text})"
    await engine.commit(
        batch_id,
        r.MoveEnded(batch_id=batch_id, task_id=t.task_id, ok=False, location=where, detail=text),
    )
    raise HoldBatch(
        "transport", f"{t.shuttle}: move {t.task_id} to {t.unit} failed: {text}", task_id=t.task_id
    )


async def _wait_either(
    engine: Engine, instrument: str, locations: tuple[str, ...], ready: Callable[[], Any]
) -> Any:
    result: list[Any] = []
    async with anyio.create_task_group() as tg:
        for loc in locations:

            async def one(loc: str = loc) -> None:
                result.append(await engine.cell.wait(instrument, loc, ready))
                tg.cancel_scope.cancel()

            tg.start_soon(one)
    return result[0]


async def park(engine: Engine, batch_id: str, to: str) -> None:
    """Move an idle batch's cartridge out of a bay another batch needs."""
    b = engine.batch(batch_id)
    structlog.contextvars.bind_contextvars(batch=batch_id, step=b.step, task_id="")
    origin = b.location
    lock = engine.cartridge_locks[batch_id]
    try:
        if lock.locked() or not engine.parkable(batch_id):
            return  # it became busy since the scheduler asked; the requester asks again
        async with lock:
            try:
                await move_to(engine, batch_id, to, step=engine.batch(batch_id).step)
            except HoldBatch as exc:
                await exc.record(engine, batch_id, "while parking: ")
    finally:
        engine.scheduler.parked(batch_id, b.shuttle, origin, to)


# --------------------------------------------------------------------------- programs
async def check_identity(engine: Engine, batch_id: str, unit: str) -> None:
    """Chain of identity: the bay must read the batch's cartridge before a start."""
    b = engine.batch(batch_id)
    drv = _shuttle(engine, b.shuttle)
    status = await call(b.shuttle, f"read {unit}", lambda: drv.unit_status(unit))
    if status.cartridge_id != b.cartridge_id:
        raise HoldBatch(
            "identity",
            f"chain of identity: bay {unit} of {b.shuttle} reads cartridge "
            f"{status.cartridge_id or '(none)'}, batch {batch_id} is cartridge {b.cartridge_id}; "
            "nothing was started",
            unit=unit,
        )


async def start_program(
    engine: Engine, batch_id: str, step: str, unit: str, program: str, params: dict[str, Any]
) -> Task:
    """Journal the intent, then StartProgram; returns the started task."""
    b = engine.batch(batch_id)
    attempt = b.attempts.get(step, 0) + 1
    task_id = ids.program_task(batch_id, step, attempt)
    b = await engine.commit(
        batch_id,
        r.ProgramIntent(
            batch_id=batch_id,
            task_id=task_id,
            shuttle=b.shuttle,
            unit=unit,
            program=program,
            params=params,
            step=step,
            attempt=attempt,
        ),
    )
    assert b.task is not None
    structlog.contextvars.bind_contextvars(task_id=task_id)
    return await _send_start(engine, batch_id, b.task)


async def _send_start(engine: Engine, batch_id: str, t: Task) -> Task:
    b = engine.batch(batch_id)
    drv = _shuttle(engine, t.shuttle)
    try:
        run_id = await call(
            t.shuttle,
            f"StartProgram {t.task_id}",
            lambda: drv.start(t.unit, t.program, dict(t.params), t.task_id, b.cartridge_id),
        )
    except IdentityMismatch as exc:
        raise HoldBatch(
            "identity",
            f"chain of identity: {t.unit} refused {t.task_id}: {exc.detail}; nothing was started",
            unit=t.unit,
            task_id=t.task_id,
        ) from exc
    except InvalidState as exc:
        raise HoldBatch(
            "unit_state",
            f"{t.unit} cannot start {t.task_id}: {exc.detail}",
            unit=t.unit,
            task_id=t.task_id,
        ) from exc
    except InstrumentError as exc:  # NotSupported, InvalidArgument: the step cannot run
        raise StepFault(
            "start_refused",
            f"{t.unit} refused {t.program}: {exc.detail}",
            unit=t.unit,
            task_id=t.task_id,
        ) from exc
    b = await engine.commit(
        batch_id, r.ProgramStarted(batch_id=batch_id, task_id=t.task_id, run_id=str(run_id))
    )
    log.info("program started", unit=t.unit, program=t.program, run_id=str(run_id))
    assert b.task is not None
    return b.task


async def reconcile_program(engine: Engine, batch_id: str, t: Task) -> Task:
    """Bring an unended program task in line with the instrument (module table)."""
    result = await get_result(engine, t)
    status = str(result.status)
    log.info("reconciled", batch=batch_id, task_id=t.task_id, unit=t.unit, status=status)
    if status == ResultStatus.UNKNOWN:
        if t.phase == "started":
            raise HoldBatch(
                "contradiction",
                f"the journal says {t.task_id} started on {t.unit} of {t.shuttle}, the unit "
                "does not know it (GetResult: Unknown); not restarted",
                unit=t.unit,
                task_id=t.task_id,
            )
        return await _send_start(engine, batch_id, t)
    if t.phase == "intent":  # it did start: learn its RunId from an idempotent repeat
        t = await _send_start(engine, batch_id, t)
    if status in RESULT_ENDED:
        return await end_program(engine, batch_id, t, result)
    return t


async def get_result(engine: Engine, t: Task) -> TaskResult:
    drv = _shuttle(engine, t.shuttle)
    return await call(
        t.shuttle,
        f"GetResult {t.task_id}",
        lambda: drv.result(t.task_id, t.unit, program=t.program),
    )


async def end_program(
    engine: Engine, batch_id: str, t: Task, result: TaskResult | None = None
) -> Task:
    if result is None:
        result = await get_result(engine, t)
    view = engine.cell.shuttles[t.shuttle].units.get(t.unit)
    fault = (view.fault_code, view.fault_text) if view is not None else (0, "")
    b = await engine.commit(
        batch_id,
        r.ProgramEnded(
            batch_id=batch_id,
            task_id=t.task_id,
            status=str(result.status),
            outputs=dict(result.outputs),
            fault_code=fault[0] if str(result.status) == ResultStatus.FAULTED else 0,
            fault_text=fault[1] if str(result.status) == ResultStatus.FAULTED else "",
        ),
    )
    log.info("program ended", unit=t.unit, program=t.program, status=str(result.status))
    assert b.task is not None
    return b.task


async def follow_program(engine: Engine, batch_id: str, t: Task, deadline_pt: float | None) -> Task:
    """Wait for the program's end (or its timeout) and record its result."""
    view = engine.cell.shuttles[t.shuttle]

    def ended() -> str:
        if not view.up:
            return "down"
        u = view.units[t.unit]
        if u.task_id == t.task_id and u.state in ENDED:
            return "ended"
        return ""

    if deadline_pt is None:
        outcome = await engine.cell.wait(t.shuttle, t.unit, ended)
    else:
        outcome = ""
        with anyio.move_on_after(engine.clock.wall_seconds(deadline_pt - engine.clock.now())):
            outcome = await engine.cell.wait(t.shuttle, t.unit, ended)
        if not outcome:
            # the view lags the instrument by a publish; at a high twin time scale that
            # is process hours: ask the unit itself before calling it a timeout
            drv = _shuttle(engine, t.shuttle)
            now = await call(t.shuttle, f"read {t.unit}", lambda: drv.unit_status(t.unit))
            if now.task_id == t.task_id and now.state in ENDED:
                return await end_program(engine, batch_id, t)
            try:
                await call(t.shuttle, f"Hold {t.task_id}", lambda: drv.hold(t.unit, t.task_id))
            except InstrumentError:
                pass  # it may have just ended; the step resumes from the instrument's answer
            raise HoldBatch(
                "timeout",
                f"{t.program} on {t.unit} ran past the step's timeout; the program is held",
                unit=t.unit,
                task_id=t.task_id,
            )
    if outcome == "down":
        _require_up(engine, t.shuttle, f"follow {t.task_id}")
    return await end_program(engine, batch_id, t)


# --------------------------------------------------------------------------- jobs
async def submit_job(
    engine: Engine, batch_id: str, step: str, sample_id: str, panel: int, culture_ml: float | None
) -> int:
    """Journal the job's intent and submit it; a follower then carries it to its end."""
    b = engine.batch(batch_id)
    job_seq = engine.next_job_seq()
    key = f"{batch_id}:{job_seq}"
    analyzer = await engine.scheduler.analyzer(batch_id, b.priority, key)
    try:
        await engine.commit(
            batch_id,
            r.JobIntent(
                batch_id=batch_id,
                job_seq=job_seq,
                analyzer=analyzer,
                sample_id=sample_id,
                panel=panel,
                step=step,
                culture_ml=culture_ml,
            ),
        )
    except BaseException:
        engine.scheduler.release_job(analyzer, key)
        raise
    engine.follow_job(batch_id, job_seq)
    return job_seq


async def follow_job(engine: Engine, batch_id: str, job_seq: int) -> None:
    """Submit (idempotently) and follow a job to its end; record results and release the
    slot. Runs as its own task: a Hold of the batch does not stop an assay."""
    key = f"{batch_id}:{job_seq}"
    job = engine.batch(batch_id).jobs[job_seq]
    structlog.contextvars.bind_contextvars(
        batch=batch_id, step=job.step, task_id="", job_seq=job_seq
    )
    drv = engine.cell.analyzer_drivers[job.analyzer]
    view = engine.cell.analyzers[job.analyzer]
    try:
        while True:
            try:
                await _follow_job_once(engine, batch_id, job_seq, drv, view)
                return
            except HoldBatch as exc:
                # the analyzer is unreachable: the job runs on without us; wait for the link
                if exc.kind != "link":
                    await exc.record(engine, batch_id)
                    await engine.commit(
                        batch_id,
                        r.JobEnded(batch_id=batch_id, job_seq=job_seq, state="failed"),
                        r.JobReleased(batch_id=batch_id, job_seq=job_seq),
                    )
                    return
                await _link_back(engine, job.analyzer, view)
    finally:
        engine.scheduler.release_job(job.analyzer, key)


LINK_SETTLE = 0.2  # wall seconds a retry waits for the view to learn of a loss


async def _link_back(engine: Engine, instrument: str, view: Any) -> None:
    """After a call found the link lost: wait until the view has seen the loss (or a
    moment has passed: it may have seen loss and return together), then until it is up.
    The driver knows first; a retry that trusted a view still saying "up" would call
    again at once, never yield to the task that tells the view, and spin."""
    with anyio.move_on_after(LINK_SETTLE):
        await engine.cell.wait(instrument, "link", lambda: not view.up)
    await engine.cell.wait(instrument, "link", lambda: view.up)


async def _follow_job_once(
    engine: Engine, batch_id: str, job_seq: int, drv: Any, view: Any
) -> None:
    job = engine.batch(batch_id).jobs[job_seq]
    _require_up(engine, job.analyzer, f"job {job_seq}")
    if job.phase == "intent":
        slot = await _submit(engine, batch_id, job_seq, drv)
        await engine.commit(batch_id, r.JobSubmitted(batch_id=batch_id, job_seq=job_seq, slot=slot))
        log.info("job submitted", analyzer=job.analyzer, slot=slot)
        job = engine.batch(batch_id).jobs[job_seq]
    if job.phase == "submitted":
        end_states = {icd.SlotState.DONE, icd.SlotState.FAILED, icd.SlotState.ABORTED}

        def ended() -> Any:
            if not view.up:
                return "down"
            status = view.jobs.get(job_seq)
            return status if status is not None and status.state in end_states else None

        outcome = await engine.cell.wait(job.analyzer, str(job_seq), ended)
        if outcome == "down":
            _require_up(engine, job.analyzer, f"job {job_seq}")
        status = await call(job.analyzer, f"read job {job_seq}", lambda: drv.job(job_seq))
        if status.state not in end_states:  # the view ran ahead of a re-read: look again
            return await _follow_job_once(engine, batch_id, job_seq, drv, view)
        results = {a.name.lower(): float(v) for a, v in status.results.items()}
        state = {icd.SlotState.DONE: "done", icd.SlotState.FAILED: "failed"}.get(
            status.state, "aborted"
        )
        await engine.commit(
            batch_id,
            r.JobEnded(
                batch_id=batch_id,
                job_seq=job_seq,
                state=state,
                fault=int(status.fault),
                results=results,
            ),
        )
        log.info("job ended", analyzer=job.analyzer, state=state)
        job = engine.batch(batch_id).jobs[job_seq]
    if job.phase == "ended":
        try:
            await call(job.analyzer, f"release job {job_seq}", lambda: drv.release(job_seq))
        except InstrumentError as exc:
            if isinstance(exc, CommunicationLost):
                raise
            log.warning("release refused", job=job_seq, error=str(exc))
        await _bind_job(engine, batch_id, job_seq)
        await engine.commit(batch_id, r.JobReleased(batch_id=batch_id, job_seq=job_seq))


async def _submit(engine: Engine, batch_id: str, job_seq: int, drv: Any) -> int:
    job = engine.batch(batch_id).jobs[job_seq]
    while True:
        try:
            return int(
                await call(
                    job.analyzer,
                    f"submit job {job_seq}",
                    lambda: drv.submit(job_seq, job.sample_id, icd.Assay(job.panel)),
                )
            )
        except InstrumentError as exc:
            if isinstance(exc, InvalidState | Busy):
                # analyzer faulted, or no slot free after all: wait for a change and retry
                view = engine.cell.analyzers[job.analyzer]
                before = (view.state, view.free_slots)
                await engine.cell.wait(
                    job.analyzer,
                    "link",
                    lambda view=view, before=before: (
                        (view.state, view.free_slots) != before or not view.up
                    ),
                )
                continue
            raise HoldBatch(
                "job_refused", f"{job.analyzer} refused job {job_seq}: {exc.detail}"
            ) from exc


async def _bind_job(engine: Engine, batch_id: str, job_seq: int) -> None:
    """Bind the sample step's variables from a done job (once)."""
    from daemon.recipe import SAMPLE_RESULTS

    b = engine.batch(batch_id)
    job = b.jobs[job_seq]
    if job.state != "done":
        return
    recipe = engine.recipe_of(b)
    spec = recipe.steps[job.step]
    values: dict[str, Any] = {}
    for var, result in spec.bind.items():
        assay, type_, _unit, _what = SAMPLE_RESULTS[result]
        raw = job.results.get(assay.name.lower())
        if raw is None:
            continue
        if result == "viable_cells_total":
            values[var] = raw * float(job.culture_ml or 0.0)
        elif type_ == "bool":
            values[var] = raw >= 0.5
        else:
            values[var] = raw
    if values:
        await engine.commit(batch_id, r.Bound(batch_id=batch_id, step=job.step, values=values))


# --------------------------------------------------------------------------- records
async def deviation(
    engine: Engine,
    batch_id: str,
    kind: str,
    message: str,
    *,
    step: str = "",
    unit: str = "",
    task_id: str = "",
    instrument: str = "",
) -> Batch:
    b = engine.batch(batch_id)
    for d in b.deviations:  # a resumed step must not record the same deviation twice
        if task_id and d.task_id == task_id and d.kind == kind:
            return b
    log.warning(
        "deviation",
        batch=batch_id,
        kind=kind,
        message=message,
        step=step or b.step,
        unit=unit,
        task_id=task_id,
    )
    return await engine.commit(
        batch_id,
        r.Deviation(
            batch_id=batch_id,
            kind=kind,
            message=message,
            step=step or b.step,
            unit=unit,
            task_id=task_id,
            instrument=instrument,
        ),
    )
