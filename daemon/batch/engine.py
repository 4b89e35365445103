"""The engine: every batch of the cell, the one place where a record is committed.

This module owns the in-memory batches (``Batch`` values from the reducer), ``commit``
(validate a record against the reducer, write it durably, then apply it: the only way
a batch changes), the requests a person makes (create a batch, issue an ISA-88
command, confirm a prompt), the ids it gives out (batch numbers, JobSeqs), the tasks
that run batches (one ``BatchRunner`` each, plus one follower per analyzer job), and
what the scheduler asks about cartridges (``Occupancy``).

Start-up: ``load()`` replays the journal through the reducer; ``run()`` starts a runner
for every batch that is not final. A runner resumes from what the journal says (see
``daemon.batch.executor``): the instruments are asked, nothing is guessed. Once every
runner has taken up its batch (``taken_up``: nothing the journal left open waits for an
instrument's answer any more), ``reconciled`` is set: the daemon's readiness.

The control plane (issue #11) adds two hooks, both optional: ``approval(hash)`` says a
recipe's recorded status (a batch starts only on an approved one unless the site allows
unapproved recipes), and ``auditor(before, after, records, act)`` gives the audit rows a
commit carries (``daemon.audit.batches``; it may refuse a change, e.g. a Stop without
its signature); ``act`` is the person's request, passed through from ``create``,
``command`` and ``confirm`` untouched.

Concurrency: one lock per batch serialises its commits (check, write, apply in
journal order); different batches commit concurrently and share the journal's group
commit. A commit is shielded from cancellation: once decided, a record is written and
applied, or the daemon dies trying (and replay then has it or not, never half).
"""

from __future__ import annotations

import asyncio
import dataclasses
from collections.abc import Callable
from typing import Any, Protocol

import anyio
import structlog

from daemon.batch import ids
from daemon.batch.machine import Batch, ReducerError, apply, replay
from daemon.batch.states import ADVANCING, BatchState, Command, refusal, target
from daemon.cell import CellView
from daemon.clock import ProcessClock
from daemon.events import EventBus
from daemon.journal import records as r
from daemon.recipe import ParameterError, Recipe, dump_recipe, load_recipe_text, pinned_hashes
from daemon.scheduler.scheduler import Scheduler
from drivers import icd

log = structlog.get_logger("cellfab.engine")


class Journal(Protocol):
    instance: str

    def append(self, *records: r.Record, then: Any = None) -> Any: ...

    def read(self, after: int = 0) -> Any: ...


class EngineError(Exception):
    """A request the engine refuses; ``field`` names the part of the request at fault."""

    def __init__(self, message: str, field: str = "", status: int = 422) -> None:
        super().__init__(message)
        self.field = field
        self.status = status


class UnknownBatch(EngineError):
    def __init__(self, batch_id: str) -> None:
        super().__init__(f"no batch {batch_id!r}", "batch_id", 404)


class CommandRefused(EngineError):
    def __init__(self, message: str, field: str = "command") -> None:
        super().__init__(message, field, 409)


# (batch before or None, batch after, the records, the person's act or None) -> the
# journal append's ``then`` (its audit rows) or None; raises to refuse the change
Auditor = Callable[[Batch | None, Batch, list[r.Record], Any], Any]


class _Broadcast:
    __slots__ = ("event",)

    def __init__(self) -> None:
        self.event = anyio.Event()

    def wake(self) -> None:
        self.event.set()
        self.event = anyio.Event()


class Engine:
    def __init__(
        self,
        journal: Journal,
        cell: CellView,
        clock: ProcessClock,
        *,
        bus: EventBus | None = None,
        allow_unapproved: bool = False,
        site_shuttles: tuple[str, ...] | None = None,
        approval: Callable[[str], str] | None = None,
        auditor: Auditor | None = None,
    ) -> None:
        self.journal = journal
        self.cell = cell
        self.clock = clock
        self.bus = bus or EventBus()
        self.allow_unapproved = allow_unapproved
        self.approval = approval or (lambda _hash: "draft")
        self.auditor = auditor
        self.site_shuttles = site_shuttles if site_shuttles is not None else tuple(cell.shuttles)
        self.batches: dict[str, Batch] = {}
        self.recipes: dict[str, Recipe] = {}  # by hash
        self.scheduler = Scheduler(cell, self, clock.now)
        self.cartridge_locks: dict[str, asyncio.Lock] = {}
        self._locks: dict[str, asyncio.Lock] = {}
        self._changes: dict[str, _Broadcast] = {}
        self._create_lock = asyncio.Lock()
        self._next_batch = 1
        self._next_job = 1  # this journal's next job number (see ids.job_seq)
        self._tg: anyio.abc.TaskGroup | None = None
        self._running: set[str] = set()
        self._followed: set[int] = set()
        # (shuttle, bay) -> batches whose cartridge is there or moving into or out of it
        # (Occupancy.occupant, asked for every candidate bay of every unit request)
        self._bays: dict[tuple[str, str], set[str]] = {}
        self._bays_of: dict[str, frozenset[tuple[str, str]]] = {}
        self.loaded = False
        self.reconciled = anyio.Event()  # every batch of the replay taken up (taken_up)
        self.taking_up: set[str] = set()  # batches whose runner has not yet taken them up
        cell.publish = self._on_cell

    def _on_cell(self, kind: str, data: dict[str, Any]) -> None:
        """Instrument events: to the event bus; a change that may free a resource (a
        bay, a link, a slot) lets the scheduler look again."""
        self.bus.publish(kind, data)
        if kind != "progress":
            self.scheduler.dispatch()

    # ------------------------------------------------------------------ start-up
    def load(self) -> None:
        """Replay the journal (at start-up, before ``run``)."""
        pairs = list(self.journal.read())
        self.batches = replay(pairs)
        for _seq, rec in pairs:
            if isinstance(rec, r.BatchCreated):
                self._pin(rec)
                number = int(rec.batch_id[1:].split("-", 1)[0])
                self._next_batch = max(self._next_batch, number + 1)
            elif isinstance(rec, r.JobIntent):
                self._next_job = max(self._next_job, ids.job_number(rec.job_seq) + 1)
        for bid, b in self.batches.items():
            self._init_batch(bid)
            self._place(b)
        self.loaded = True
        log.info("journal replayed", batches=len(self.batches), records=len(pairs))

    def _pin(self, rec: r.BatchCreated) -> None:
        if rec.recipe_hash in self.recipes:
            return
        recipe, diagnostics = load_recipe_text(rec.recipe_text, rec.recipe_file or rec.recipe_name)
        # a batch pinned before the hash domain changed keeps its old hash (HASH_FORMS)
        if recipe is None or rec.recipe_hash not in pinned_hashes(recipe.doc):
            # the pinned text no longer loads to its hash: a damaged journal or a change
            # of the language; the batch cannot run on a guess
            why = "; ".join(d.message for d in diagnostics) or "hash differs"
            log.error("pinned recipe does not load", batch=rec.batch_id, why=why)
            return
        self.recipes[rec.recipe_hash] = recipe

    def _init_batch(self, batch_id: str) -> None:
        self._locks.setdefault(batch_id, asyncio.Lock())
        self._changes.setdefault(batch_id, _Broadcast())
        self.cartridge_locks.setdefault(batch_id, asyncio.Lock())

    async def run(
        self, *, task_status: anyio.abc.TaskStatus[None] = anyio.TASK_STATUS_IGNORED
    ) -> None:
        """Run every batch until cancelled."""
        if not self.loaded:
            self.load()
        async with anyio.create_task_group() as tg:
            self._tg = tg
            self.taking_up = set(self.batches)
            for bid in list(self.batches):
                self._spawn(bid)
            if not self.taking_up:
                self.reconciled.set()
            task_status.started()
            await anyio.sleep_forever()

    def taken_up(self, batch_id: str) -> None:
        """Said by a runner once nothing its batch's journal left open waits for an
        instrument's answer: no task was open, the instrument was asked about it (the
        open program reconciled, the open move sent again), or the batch waits for a
        person (Idle, Held, Paused, final). Repeating it is harmless."""
        self.taking_up.discard(batch_id)
        if not self.taking_up and self._tg is not None:
            self.reconciled.set()

    def _spawn(self, batch_id: str) -> None:
        from daemon.batch.runner import BatchRunner  # runner imports the engine's types

        b = self.batches[batch_id]
        if self._tg is None:
            return
        if batch_id not in self._running:
            self._running.add(batch_id)
            self._tg.start_soon(BatchRunner(self, batch_id).run, name=f"batch {batch_id}")
        for job in b.jobs.values():
            self.follow_job(batch_id, job.job_seq)

    def follow_job(self, batch_id: str, job_seq: int) -> None:
        """Follow a job to its end (results, release, binding), whatever the step does."""
        from daemon.batch.executor import follow_job

        job = self.batches[batch_id].jobs.get(job_seq)
        if job is None or job.phase == "released" or job_seq in self._followed or self._tg is None:
            return
        self._followed.add(job_seq)
        if job.phase != "intent":
            self.scheduler.hold_job(job.analyzer, f"{batch_id}:{job_seq}")

        async def run() -> None:
            try:
                await follow_job(self, batch_id, job_seq)
            finally:
                self._followed.discard(job_seq)

        self._tg.start_soon(run, name=f"job {job_seq}")

    # ------------------------------------------------------------------ commits
    def batch(self, batch_id: str) -> Batch:
        b = self.batches.get(batch_id)
        if b is None:
            raise UnknownBatch(batch_id)
        return b

    def recipe_of(self, batch: Batch) -> Recipe:
        recipe = self.recipes.get(batch.recipe_hash)
        if recipe is None:
            raise EngineError(f"the pinned recipe of {batch.batch_id} does not load", "recipe")
        return recipe

    def _stamp(self, rec: r.Record) -> r.Record:
        return dataclasses.replace(rec, at=self.clock.wall(), pt=self.clock.now())

    async def commit(self, batch_id: str, *recs: r.Record) -> Batch:
        """Validate, write durably, apply: the only way a batch changes."""
        with anyio.CancelScope(shield=True):
            async with self._locks[batch_id]:
                return await self._commit_locked(batch_id, recs)

    async def _commit_locked(
        self, batch_id: str, recs: tuple[r.Record, ...] | list[r.Record], act: Any = None
    ) -> Batch:
        stamped = [self._stamp(rec) for rec in recs]
        before = b = self.batches[batch_id]
        for rec in stamped:
            b = apply(b, rec)  # ReducerError here is a bug: nothing is written
        then = self.auditor(before, b, stamped, act) if self.auditor else None
        seqs = await self.journal.append(*stamped, then=then)
        b = dataclasses.replace(b, last_seq=seqs[-1])
        self.batches[batch_id] = b
        self._place(b)
        for rec in stamped:
            self._announce(b, rec)
        self._changes[batch_id].wake()
        self.scheduler.dispatch()
        return b

    def _announce(self, b: Batch, rec: r.Record) -> None:
        kind = _EVENT_KINDS.get(type(rec), "record")
        data = {
            "batch_id": b.batch_id,
            "record": type(rec).__name__,
            **{
                f.name: getattr(rec, f.name)
                for f in dataclasses.fields(rec)
                if f.name not in ("batch_id", "recipe_text")
            },
        }
        data["batch_state"] = b.state.value  # beside the record's own fields (JobEnded.state)
        self.bus.publish(kind, data)

    async def wait_batch(self, batch_id: str, ready: Callable[[Batch], Any]) -> Any:
        """Return ``ready(batch)``'s first truthy value, re-checked on every change."""
        while True:
            change = self._changes[batch_id].event
            value = ready(self.batches[batch_id])
            if value:
                return value
            await change.wait()

    # ------------------------------------------------------------------ requests
    async def create(
        self,
        recipe: Recipe,
        values: dict[str, Any],
        cartridge_id: str,
        *,
        priority: int = 0,
        shuttle: str = "",
        by: str = "",
        start: bool = True,
        act: Any = None,
    ) -> Batch:
        """Pin the recipe, resolve its parameters, journal a new batch (and Start it)."""
        status = self.approval(recipe.hash)
        if status == "retired":  # withdrawn by QA: not even a development site runs it
            raise EngineError(
                f"recipe {recipe.name} {recipe.version} (sha256 {recipe.hash[:12]}) is retired; "
                "no batch starts on it",
                "recipe",
            )
        unapproved = status != "approved"
        if unapproved and not self.allow_unapproved:
            raise EngineError(
                f"recipe {recipe.name} {recipe.version} (sha256 {recipe.hash[:12]}) is {status}, "
                "not approved; batches start only on approved recipes (the site may allow "
                "unapproved ones for development)",
                "recipe",
            )
        if not icd.is_id(cartridge_id):
            raise EngineError(
                f"cartridge id {cartridge_id!r} is not an ICD identifier [A-Za-z0-9._-]{{1,32}}",
                "cartridge_id",
            )
        if shuttle and shuttle not in self.site_shuttles:
            raise EngineError(
                f"no shuttle {shuttle!r} in the site (shuttles: {', '.join(self.site_shuttles)})",
                "shuttle",
            )
        if not -1000 <= priority <= 1000:
            raise EngineError("priority must be within -1000..1000", "priority")
        long_steps = [s for s in recipe.steps if len(s) > ids.MAX_STEP_NAME]
        if long_steps:
            raise EngineError(
                f"step names longer than {ids.MAX_STEP_NAME} characters do not fit a TaskId: "
                + ", ".join(long_steps),
                "recipe",
            )
        try:
            params = recipe.resolve_parameters(values)
        except ParameterError as exc:
            raise EngineError("; ".join(exc.problems), "params") from None
        async with self._create_lock:
            for other in self.batches.values():
                if other.cartridge_id == cartridge_id and not other.final:
                    raise EngineError(
                        f"cartridge {cartridge_id} belongs to batch {other.batch_id} "
                        f"({other.state}); one cartridge, one batch",
                        "cartridge_id",
                        409,
                    )
            batch_id = ids.batch_id(self._next_batch, self.journal.instance)
            self._next_batch += 1
            text = dump_recipe(recipe)
            rec = self._stamp(
                r.BatchCreated(
                    batch_id=batch_id,
                    recipe_name=recipe.name,
                    recipe_version=recipe.version,
                    recipe_hash=recipe.hash,
                    recipe_text=text,
                    recipe_file=recipe.filename,
                    params=params,
                    cartridge_id=cartridge_id,
                    priority=priority,
                    shuttle=shuttle,
                    by=by,
                    unapproved=unapproved,
                )
            )
            from daemon.batch.machine import created

            b = created(rec)
            then = self.auditor(None, b, [rec], act) if self.auditor else None
            with anyio.CancelScope(shield=True):
                seqs = await self.journal.append(rec, then=then)
            self.recipes.setdefault(recipe.hash, recipe)
            self.batches[batch_id] = dataclasses.replace(b, last_seq=seqs[-1])
            self._init_batch(batch_id)
            self._announce(self.batches[batch_id], rec)
        if unapproved:
            log.warning(
                "batch on an unapproved recipe",
                batch=batch_id,
                recipe=recipe.name,
                sha256=recipe.hash,
                approval=status,
            )
        self._spawn(batch_id)
        if start:
            return await self.command(batch_id, Command.START, by=by, reason="created", act=act)
        return self.batches[batch_id]

    async def command(
        self,
        batch_id: str,
        command: Command | str,
        *,
        by: str = "",
        role: str = "",
        reason: str = "",
        act: Any = None,
    ) -> Batch:
        """Issue an ISA-88 command; a refused one is journaled and raises CommandRefused."""
        self.batch(batch_id)
        try:
            cmd = Command(command)
        except ValueError:
            raise EngineError(
                f"unknown command {command!r} (commands: {', '.join(c.value for c in Command)})",
                "command",
            ) from None
        with anyio.CancelScope(shield=True):
            async with self._locks[batch_id]:
                b = self.batches[batch_id]
                if (
                    cmd is Command.START
                    and b.state is BatchState.IDLE
                    and b.recipe_hash not in self.recipes
                ):
                    raise EngineError(f"the pinned recipe of {batch_id} does not load", "recipe")
                if target(b.state, cmd) is None:
                    why = refusal(b.state, cmd)
                    rec = r.CommandIssued(
                        batch_id=batch_id,
                        command=cmd.value,
                        accepted=False,
                        by=by,
                        role=role,
                        reason=reason,
                        detail=why,
                    )
                    await self._commit_locked(batch_id, [rec], act)
                    raise CommandRefused(f"{batch_id}: {why}")
                rec = r.CommandIssued(
                    batch_id=batch_id,
                    command=cmd.value,
                    accepted=True,
                    by=by,
                    role=role,
                    reason=reason,
                )
                b = await self._commit_locked(batch_id, [rec], act)
        if cmd is Command.RESET:
            self.scheduler.forget(batch_id)
        return b

    async def confirm(
        self, batch_id: str, step: str, *, by: str, role: str, note: str = "", act: Any = None
    ) -> Batch:
        """Answer the confirm prompt the batch is waiting at."""
        self.batch(batch_id)
        if not by:
            raise EngineError("a confirmation names who confirms", "by")
        with anyio.CancelScope(shield=True):
            async with self._locks[batch_id]:
                b = self.batches[batch_id]
                recipe = self.recipe_of(b)
                if b.step != step or recipe.kind(step) != "confirm":
                    at = f"step {b.step}" if b.step else "no step"
                    raise CommandRefused(
                        f"{batch_id} is not waiting at confirm step {step!r} ({at})", "step"
                    )
                if b.state not in ADVANCING:
                    raise CommandRefused(
                        f"{batch_id} is {b.state}; confirm once it runs again", "batch_id"
                    )
                if b.confirmation is not None:
                    raise CommandRefused(f"{batch_id}: step {step} is already confirmed", "step")
                wanted = recipe.steps[step].role
                if role != wanted:
                    raise EngineError(
                        f"step {step} needs a confirmation by the {wanted} role, "
                        f"not {role or 'no role'}",
                        "role",
                        403,
                    )
                rec = r.Confirmed(batch_id=batch_id, step=step, by=by, role=role, note=note)
                return await self._commit_locked(batch_id, [rec], act)

    def next_job_seq(self) -> int:
        seq = ids.job_seq(self.journal.instance, self._next_job)
        self._next_job += 1
        return seq

    # ------------------------------------------------------------------ Occupancy
    def _place(self, b: Batch) -> None:
        """Keep the bay index in step with the batch (after every change of it)."""
        bays: set[tuple[str, str]] = set()
        if b.shuttle:
            if b.location:
                bays.add((b.shuttle, b.location))
            t = b.task
            if t is not None and t.kind == "move" and t.phase != "ended":
                bays.update(((b.shuttle, t.unit), (b.shuttle, t.origin)))
        new = frozenset(bays)
        old = self._bays_of.get(b.batch_id, frozenset())
        if new == old:
            return
        for key in old - new:
            holders = self._bays[key]
            holders.discard(b.batch_id)
            if not holders:
                del self._bays[key]
        for key in new - old:
            self._bays.setdefault(key, set()).add(b.batch_id)
        self._bays_of[b.batch_id] = new

    def occupant(self, shuttle: str, unit: str) -> str | None:
        holders = self._bays.get((shuttle, unit))
        if not holders:
            return None
        if len(holders) == 1:
            return next(iter(holders))
        # never two physically; as the scan over the batches did: the first created
        return next(bid for bid in self.batches if bid in holders)

    def parkable(self, batch_id: str) -> bool:
        b = self.batches[batch_id]
        if b.state not in (BatchState.RUNNING, BatchState.PAUSING, BatchState.PAUSED):
            return False
        if self.cartridge_locks[batch_id].locked():
            return False
        t = b.task
        return t is None or t.phase == "ended"

    def park(self, batch_id: str, to_unit: str) -> None:
        from daemon.batch.executor import park

        if self._tg is None:
            return
        self._tg.start_soon(park, self, batch_id, to_unit, name=f"park {batch_id}")


_EVENT_KINDS: dict[type[r.Record], str] = {
    r.BatchCreated: "batch",
    r.CommandIssued: "batch",
    r.StateReached: "batch",
    r.Admitted: "batch",
    r.BatchFinished: "batch",
    r.StepStarted: "step",
    r.StepEnded: "step",
    r.Bound: "step",
    r.Confirmed: "step",
    r.Deviation: "deviation",
}

__all__ = ["CommandRefused", "Engine", "EngineError", "ReducerError", "UnknownBatch"]
