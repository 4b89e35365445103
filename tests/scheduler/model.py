"""A discrete-event model of batches and bays that drives the real ``Scheduler``.

The scheduler is pure logic over the cell view and the ``Occupancy`` protocol, so this
model gives it exactly those: a real ``CellView`` fed with the drivers' typed events
(``CartridgeChanged``, ``UnitStateChanged``, ``ConnectionLost`` ...) by a small model of
the physical shuttle (bays, one transport, a LoadPort), and an ``Occupancy`` that
answers from model batches. Each model batch walks its recipe the way the engine's
runner and executor do (``daemon/batch/runner.py``, ``executor.py``, ``steps/op.py``):

    cartridge at the LoadPort -> admission (a bay) -> move in
    op:   unit(capability, location) -> [cartridge lock] move there -> program
          -> release the unit
    wait: sleep (the cartridge idles in its bay; the scheduler may park it)
    hold: the batch is Held for a while (not parkable)
    qc:   an analyzer slot -> job -> results -> slot released
    end:  move to the OutputPort -> final; ``forget``

A lost link holds a batch that needs the wire (``LinkHold``) and restarts it when the
link is back, releasing what the engine's ``finally`` blocks release; the physical
shuttle runs on meanwhile and reports what changed when the link is back.

Time is virtual: ``VirtualLoop`` is an asyncio loop whose clock jumps to the next timer
whenever nothing is ready, so hours of process time take microseconds, and a loop with
nothing ready and no timer (every task waiting on something nobody will do) raises
``Deadlock`` instead of hanging.

Anything the real instrument would refuse (a move into an occupied bay, a move while
the transport moves, a cartridge leaving its shuttle, a program on a bay holding
another cartridge) is recorded in ``Model.violations``; the tests assert it stays empty.
"""

from __future__ import annotations

import asyncio
import itertools
import selectors
from dataclasses import dataclass, field
from typing import Any

from daemon.cell import LINK, CellView, UnitView
from daemon.scheduler.scheduler import Scheduler
from drivers import icd
from drivers.base import (
    AnalyzerStatusChanged,
    CartridgeChanged,
    ConnectionLost,
    ConnectionRestored,
    Event,
    JobChanged,
    JobStatus,
    OutputPortChanged,
    TransportChanged,
    UnitStateChanged,
)

MOVE_SECONDS = float(icd.MOVE_SECONDS)


class Deadlock(RuntimeError):
    """Every task waits and no timer is left: nothing can ever happen again."""


class Livelock(RuntimeError):
    """Virtual time passed ``VirtualLoop.limit``: things happen, nothing ends."""


class _Selector(selectors.DefaultSelector):  # type: ignore[misc,valid-type]
    loop: VirtualLoop

    def select(self, timeout: float | None = None) -> list[Any]:
        self.loop.turns += 1
        if self.loop.turns > self.loop.max_turns:
            raise Livelock(f"{self.loop.turns} turns of the loop: something spins")
        if timeout is None:
            raise Deadlock("nothing ready and no timer: every task waits for something")
        if timeout > 0:
            self.loop.now += timeout
            if self.loop.now > self.loop.limit:
                raise Livelock(f"virtual time {self.loop.now:.0f} s passed its limit")
        return super().select(0)


class VirtualLoop(asyncio.SelectorEventLoop):
    """An asyncio loop on virtual time (seconds from 0)."""

    def __init__(self) -> None:
        self.now = 0.0
        self.limit = float("inf")
        self.turns = 0
        self.max_turns = 2_000_000
        selector = _Selector()
        selector.loop = self
        super().__init__(selector)

    def time(self) -> float:
        return self.now


# --------------------------------------------------------------------------- recipes
@dataclass(frozen=True, slots=True)
class Step:
    kind: str  # op | wait | hold | qc
    seconds: float
    capability: str = ""


@dataclass(frozen=True, slots=True)
class ShuttleSpec:
    name: str
    units: dict[str, tuple[str, ...]]  # unit -> capabilities


class LinkHold(Exception):
    """The link is down where the batch needs the wire: the engine holds the batch."""


@dataclass(eq=False)
class Move:
    """A move task as the batch's journal has it: ``ended`` once the batch recorded
    the arrival (MoveEnded), not when the cartridge physically arrived."""

    cartridge: str
    origin: str
    to: str
    ended: bool = False


@dataclass(eq=False)
class ModelBatch:
    batch_id: str
    cartridge: str
    recipe: tuple[Step, ...]
    priority: int
    shuttle: str
    created: float
    state: str = "running"  # running | held | final
    admitted: bool = False
    location: str = ""
    move: Move | None = None  # the move in flight (engine: task kind move, not ended)
    program_unit: str = ""  # the unit running its program (engine: task not ended)
    step: int = 0
    lock: asyncio.Lock = field(default_factory=asyncio.Lock)
    finished: float | None = None
    unit_waits: list[float] = field(default_factory=list)  # process s from ask to grant


# --------------------------------------------------------------------------- physics
@dataclass(eq=False)
class Physical:
    """What the shuttle really holds (the truth the view lags behind)."""

    name: str
    bays: dict[str, str]  # unit -> cartridge ("" empty)
    running: dict[str, str] = field(default_factory=dict)  # unit -> cartridge of its program
    load_port: str = ""
    output: list[str] = field(default_factory=list)
    moving: Move | None = None
    up: bool = True
    queued: list[Event] = field(default_factory=list)  # events while the link is down
    moves_seq: itertools.count[int] = field(default_factory=itertools.count)


class Model:
    """The cell: shuttles, one analyzer, the scheduler and the batches."""

    def __init__(
        self,
        shuttles: list[ShuttleSpec],
        *,
        analyzer_slots: int = 2,
        aging_hours: float = 1.0,
    ) -> None:
        self.loop = asyncio.get_running_loop()
        self.cell = CellView({s.name: None for s in shuttles}, {"Q1": None})  # type: ignore[misc]
        self.cell.publish = self._on_cell
        self.phys: dict[str, Physical] = {}
        for spec in shuttles:
            view = self.cell.shuttles[spec.name]
            view.units = {
                u: UnitView(u, caps, state=icd.UnitState.IDLE) for u, caps in spec.units.items()
            }
            view.up, view.reason = True, ""
            view.transport_state = icd.TransportState.IDLE
            self.phys[spec.name] = Physical(spec.name, dict.fromkeys(spec.units, ""))
        q = self.cell.analyzers["Q1"]
        q.up, q.state, q.free_slots = True, int(icd.AnalyzerState.IDLE), analyzer_slots
        self.slots = analyzer_slots
        self.jobs: dict[int, int] = {}  # job_seq -> slot
        self.sched = Scheduler(self.cell, self, self.now, aging_hours=aging_hours)
        self.batches: dict[str, ModelBatch] = {}
        self.violations: list[str] = []
        self.loaders: dict[str, list[ModelBatch]] = {s.name: [] for s in shuttles}
        self.tasks: set[asyncio.Task[None]] = set()
        self._ids = itertools.count(1)
        self._job_seq = itertools.count(1)
        self.crashed: list[BaseException] = []
        self._waiters: list[asyncio.Future[None]] = []
        self.trace: list[str] = []

    def log(self, what: str) -> None:
        self.trace.append(f"t={self.now():.0f} {what}")

    def now(self) -> float:
        return self.loop.time()

    def _on_cell(self, kind: str, _data: dict[str, Any]) -> None:
        if kind != "progress":  # as Engine._on_cell
            self.sched.dispatch()
        self._wake()

    def _wake(self) -> None:
        waiters, self._waiters = self._waiters, []
        for fut in waiters:
            if not fut.done():
                fut.set_result(None)

    def _spawn(self, coro: Any) -> None:
        task = asyncio.ensure_future(coro)
        self.tasks.add(task)

        def done(t: asyncio.Task[None]) -> None:
            self.tasks.discard(t)
            if not t.cancelled() and t.exception() is not None:
                self.crashed.append(t.exception())  # type: ignore[arg-type]
                self._wake()

        task.add_done_callback(done)

    # ------------------------------------------------------------------ the view
    def _event(self, shuttle: str, ev: Event) -> None:
        p = self.phys[shuttle]
        if not p.up:
            p.queued.append(ev)
            return
        self.cell._on_shuttle_event(shuttle, ev)

    def set_link(self, shuttle: str, up: bool) -> None:
        p = self.phys[shuttle]
        if p.up == up:
            return
        p.up = up
        if not up:
            self.cell._on_shuttle_event(shuttle, ConnectionLost(source=shuttle, reason="model"))
            return
        queued, p.queued = p.queued, []
        for ev in queued:  # the driver's resync: what changed, then Restored
            self.cell._on_shuttle_event(shuttle, ev)
        self.cell._on_shuttle_event(shuttle, ConnectionRestored(source=shuttle))

    def set_unit_fault(self, shuttle: str, unit: str, faulted: bool) -> None:
        state = icd.UnitState.FAULTED if faulted else icd.UnitState.IDLE
        self._event(shuttle, UnitStateChanged(source=shuttle, unit=unit, state=state, task_id=""))

    # ------------------------------------------------------------------ physics
    def _phys_move(self, shuttle: str, b: ModelBatch, to: str) -> Move:
        p = self.phys[shuttle]
        if b.shuttle != shuttle or (to not in p.bays and to != icd.OUTPUT_PORT):
            self.violations.append(f"{b.batch_id} moved out of its shuttle {b.shuttle} to {to}")
        if p.moving is not None:
            self.violations.append(f"Move of {b.batch_id} refused: the transport is moving")
        if p.bays.get(to):
            self.violations.append(
                f"Move of {b.batch_id} into {to} refused: it holds {p.bays[to]} (two in a bay)"
            )
        origin = next((u for u, c in p.bays.items() if c == b.cartridge), "")
        if not origin and p.load_port == b.cartridge:
            origin = icd.LOAD_PORT
        if not origin:
            self.violations.append(f"Move of {b.batch_id}: its cartridge is in no bay")
        if origin in p.running:
            self.violations.append(f"Move of {b.batch_id} out of {origin} while its program runs")
        mv = Move(b.cartridge, origin, to)
        p.moving = mv
        task = f"M{next(p.moves_seq)}/move/1"
        self._event(
            shuttle, TransportChanged(source=shuttle, state=icd.TransportState.MOVING, task_id=task)
        )
        if origin == icd.LOAD_PORT:
            p.load_port = ""
            self._event(shuttle, CartridgeChanged(source=shuttle, location=origin, cartridge_id=""))
        elif origin:
            p.bays[origin] = ""
            self._event(shuttle, CartridgeChanged(source=shuttle, location=origin, cartridge_id=""))

        def arrive() -> None:
            p.moving = None
            self.loop.call_soon(self._load, shuttle)
            if to == icd.OUTPUT_PORT:
                p.output.append(b.cartridge)
                self._event(
                    shuttle, OutputPortChanged(source=shuttle, cartridge_ids=tuple(p.output))
                )
            else:
                if p.bays[to]:
                    self.violations.append(f"{b.cartridge} and {p.bays[to]} both in bay {to}")
                p.bays[to] = b.cartridge
                self._event(
                    shuttle, CartridgeChanged(source=shuttle, location=to, cartridge_id=b.cartridge)
                )
            self._event(
                shuttle,
                TransportChanged(source=shuttle, state=icd.TransportState.IDLE, task_id=task),
            )

        self.loop.call_later(MOVE_SECONDS, arrive)
        return mv

    def _phys_program(self, shuttle: str, b: ModelBatch, unit: str, seconds: float) -> None:
        p = self.phys[shuttle]
        if p.bays.get(unit) != b.cartridge:
            self.violations.append(
                f"{b.batch_id}: program on {unit}, which holds {p.bays.get(unit) or 'nothing'}"
            )
        p.running[unit] = b.cartridge
        task = f"{b.batch_id}/s{b.step}/1"
        self._event(
            shuttle,
            UnitStateChanged(source=shuttle, unit=unit, state=icd.UnitState.RUNNING, task_id=task),
        )

        def end() -> None:
            del p.running[unit]
            self._event(
                shuttle,
                UnitStateChanged(
                    source=shuttle, unit=unit, state=icd.UnitState.COMPLETE, task_id=task
                ),
            )

        self.loop.call_later(seconds, end)

    # ------------------------------------------------------------------ Occupancy
    def occupant(self, shuttle: str, unit: str) -> str | None:
        for b in self.batches.values():
            if b.shuttle != shuttle or not b.admitted or b.state == "final":
                continue
            if b.location == unit:
                return b.batch_id
            if b.move is not None and not b.move.ended and unit in (b.move.to, b.move.origin):
                return b.batch_id
        return None

    def parkable(self, batch_id: str) -> bool:
        b = self.batches[batch_id]
        if b.state != "running" or b.lock.locked():
            return False
        return (b.move is None or b.move.ended) and not b.program_unit

    def park(self, batch_id: str, to_unit: str) -> None:
        b = self.batches[batch_id]
        if to_unit not in self.phys[b.shuttle].bays:
            self.violations.append(f"parking {batch_id} in {to_unit}, not a bay of {b.shuttle}")
        self._spawn(self._park(b, to_unit))

    async def _park(self, b: ModelBatch, to: str) -> None:  # executor.park
        self.log(f"park {b.batch_id} {b.location}->{to}")
        origin = b.location
        try:
            if b.lock.locked() or not self.parkable(b.batch_id):
                self.log(f"park {b.batch_id} not parkable now: nothing moved")
                return
            async with b.lock:
                try:
                    await self._move_to(b, to)
                except LinkHold:
                    pass  # engine: a deviation; the batch's own next move resumes it
        finally:
            self.sched.parked(b.batch_id, b.shuttle, origin, to)

    # ------------------------------------------------------------------ batches
    def add_batch(self, recipe: tuple[Step, ...], priority: int, shuttle: str) -> ModelBatch:
        n = next(self._ids)
        b = ModelBatch(f"B{n}", f"C{n}", recipe, priority, shuttle, self.now())
        self.batches[b.batch_id] = b
        self.loaders[shuttle].append(b)
        self._spawn(self._run(b))
        self._load(shuttle)
        return b

    def _load(self, shuttle: str) -> None:
        """The loader: the next cartridge goes to the LoadPort once it is free."""
        p = self.phys[shuttle]
        queue = self.loaders[shuttle]
        reserved = p.moving is not None and icd.LOAD_PORT in (p.moving.origin, p.moving.to)
        if queue and not p.load_port and not reserved:
            b = queue.pop(0)
            p.load_port = b.cartridge
            self._event(
                shuttle,
                CartridgeChanged(source=shuttle, location=icd.LOAD_PORT, cartridge_id=b.cartridge),
            )

    async def _run(self, b: ModelBatch) -> None:
        view = self.cell.shuttles[b.shuttle]
        await self.cell.wait(
            b.shuttle, icd.LOAD_PORT, lambda: view.up and view.load_port == b.cartridge
        )
        while b.state != "final":
            try:
                if not b.admitted:
                    await self._admit(b)
                elif b.step < len(b.recipe):
                    await self._step(b, b.recipe[b.step])
                    b.step += 1
                else:
                    async with b.lock:
                        await self._move_to(b, icd.OUTPUT_PORT)
                    b.state, b.finished = "final", self.now()
                    self.sched.forget(b.batch_id)
                    self._wake()
            except LinkHold:
                b.state = "held"
                await self.cell.wait(b.shuttle, LINK, lambda: self.cell.is_up(b.shuttle))
                b.state = "running"
                self.sched.dispatch()  # a Restart commit dispatches

    async def _admit(self, b: ModelBatch) -> None:  # executor.admit
        bay = await self.sched.admission(b.batch_id, b.priority, b.shuttle)
        try:
            b.admitted, b.location = True, icd.LOAD_PORT
            async with b.lock:
                await self._move_to(b, bay)
        finally:
            self.sched.release_parking(b.batch_id, b.shuttle, bay)

    def _require_up(self, b: ModelBatch) -> None:
        if not self.cell.is_up(b.shuttle):
            raise LinkHold(b.shuttle)

    async def _move_to(self, b: ModelBatch, to: str) -> None:  # executor.move_to
        if b.move is not None and not b.move.ended:
            await self._finish_move(b)
        if b.location == to:
            return
        view = self.cell.shuttles[b.shuttle]
        if to != icd.OUTPUT_PORT:

            def emptied() -> str:
                return "down" if not view.up else "" if view.units[to].cartridge_id else "empty"

            if await self.cell.wait(b.shuttle, to, emptied) == "down":
                raise LinkHold(b.shuttle)
        await self.sched.transport_of(b.batch_id, b.priority + 1000, b.shuttle)
        try:
            self._require_up(b)
            b.move = self._phys_move(b.shuttle, b, to)
            self.log(f"{b.batch_id} moves {b.location}->{to}")
            await self._finish_move(b)
        finally:
            self.sched.release_transport(b.batch_id, b.shuttle)
            self._load(b.shuttle)

    async def _finish_move(self, b: ModelBatch) -> None:
        mv = b.move
        assert mv is not None
        self._require_up(b)
        view = self.cell.shuttles[b.shuttle]

        def ended() -> str:
            if not view.up:
                return "down"
            if self.cell.where_is(b.shuttle, b.cartridge) == mv.to:
                return "ok"
            return ""

        where = icd.TRANSPORT if mv.to == icd.OUTPUT_PORT else mv.to
        if mv.to == icd.OUTPUT_PORT:
            view_ok = lambda: "ok" if b.cartridge in view.output_port else ended()  # noqa: E731
            outcome = await self.cell.wait(b.shuttle, icd.OUTPUT_PORT, view_ok)
        else:
            outcome = await self.cell.wait(b.shuttle, where, ended)
        if outcome == "down":
            raise LinkHold(b.shuttle)
        b.location = mv.to  # MoveEnded: location and the task's end in one record
        mv.ended = True
        b.move = None

    async def _step(self, b: ModelBatch, step: Step) -> None:
        if step.kind == "wait":
            await asyncio.sleep(step.seconds)
        elif step.kind == "hold":
            b.state = "held"
            await asyncio.sleep(step.seconds)
            b.state = "running"
            self.sched.dispatch()
        elif step.kind == "qc":
            await self._qc(b, step.seconds)
        else:
            await self._op(b, step)

    async def _op(self, b: ModelBatch, step: Step) -> None:  # steps/op.run_program
        resumed = bool(b.program_unit)
        if resumed:  # after a lost link: the program ran on
            unit = b.program_unit
            self.sched.reserved[(b.shuttle, unit)] = b.batch_id
        else:
            asked = self.now()
            # steps/op.where: an unfinished move counts as arrived at its destination
            where = b.move.to if b.move is not None and not b.move.ended else b.location
            unit = await self.sched.unit(b.batch_id, b.priority, b.shuttle, step.capability, where)
            b.unit_waits.append(self.now() - asked)
            self.log(f"{b.batch_id} at {b.location} granted {unit} for {step.capability}")
            if step.capability not in self.cell.shuttles[b.shuttle].units[unit].capabilities:
                self.violations.append(f"{b.batch_id} granted {unit} without {step.capability}")
        try:
            async with b.lock:
                if not b.program_unit:
                    await self._move_to(b, unit)
                    self._require_up(b)
                    b.program_unit = unit
                    self._phys_program(b.shuttle, b, unit, step.seconds)
                view = self.cell.shuttles[b.shuttle]

                def ended() -> str:
                    if not view.up:
                        return "down"
                    return "ended" if view.units[unit].state == icd.UnitState.COMPLETE else ""

                # resumed: reconcile_program asks the unit (GetResult) before following
                ran_out = resumed and self.phys[b.shuttle].running.get(unit) != b.cartridge
                if not ran_out and await self.cell.wait(b.shuttle, unit, ended) == "down":
                    raise LinkHold(b.shuttle)
                b.program_unit = ""
        finally:
            self.sched.release_unit(b.batch_id, b.shuttle, unit)

    async def _qc(self, b: ModelBatch, seconds: float) -> None:
        seq = next(self._job_seq)
        key = f"{b.batch_id}:{seq}"
        analyzer = await self.sched.analyzer(b.batch_id, b.priority, key)
        q = self.cell.analyzers[analyzer]
        used = set(self.jobs.values())
        free = [s for s in range(self.slots) if s not in used]
        if not free:
            self.violations.append(f"{b.batch_id}: analyzer slot granted, none free")
            self.sched.release_job(analyzer, key)
            return
        self.jobs[seq] = free[0]

        def job(state: icd.SlotState) -> JobStatus:
            return JobStatus(free[0], seq, state, 0, icd.JobFault(0), {})

        def status() -> None:
            self.cell._on_analyzer_event(
                analyzer,
                AnalyzerStatusChanged(
                    source=analyzer,
                    state=icd.AnalyzerState(q.state),
                    fault_code=0,
                    free_slots=self.slots - len(self.jobs),
                ),
            )

        # in the order the Modbus driver reports a poll: status first, then the slots
        status()
        self.cell._on_analyzer_event(
            analyzer, JobChanged(source=analyzer, job=job(icd.SlotState.RUNNING))
        )
        await asyncio.sleep(seconds)
        del self.jobs[seq]
        status()
        self.cell._on_analyzer_event(
            analyzer, JobChanged(source=analyzer, job=job(icd.SlotState.FREE))
        )
        self.sched.release_job(analyzer, key)

    # ------------------------------------------------------------------ checks
    def check_bays(self) -> None:
        """No cartridge in two places, none out of its shuttle."""
        for name, p in self.phys.items():
            held = [c for c in p.bays.values() if c]
            if len(held) != len(set(held)):
                self.violations.append(f"{name}: a cartridge in two bays: {p.bays}")
            for c in held:
                owner = next(b for b in self.batches.values() if b.cartridge == c)
                if owner.shuttle != name:
                    self.violations.append(f"{c} of {owner.shuttle} in a bay of {name}")
        for (shuttle, unit), bid in self.sched.reserved.items():
            if self.batches[bid].shuttle != shuttle:
                self.violations.append(
                    f"{bid} of {self.batches[bid].shuttle} holds {shuttle}/{unit}"
                )

    async def all_final(self) -> None:
        """Return once every batch is final. No timer of its own: when every task waits
        and no timer is left, the loop raises Deadlock."""
        while any(b.state != "final" for b in self.batches.values()):
            if self.crashed:
                raise self.crashed[0]
            await self._changed()

    async def _changed(self) -> None:
        # wake on every scheduler dispatch (every change of a batch or the view)
        fut = self.loop.create_future()
        self._waiters.append(fut)
        await fut

    def describe(self) -> str:
        lines = [f"t={self.now():.0f} scheduler {self.sched.snapshot()}"]
        for b in self.batches.values():
            lines.append(
                f"  {b.batch_id} {b.state} at {b.location or '-'} step {b.step}/{len(b.recipe)} "
                f"move={b.move} program={b.program_unit} lock={b.lock.locked()}"
            )
        for name, p in self.phys.items():
            lines.append(f"  {name} bays {p.bays} load {p.load_port} moving {p.moving}")
        stuck = [b.batch_id for b in self.batches.values() if b.state != "final"]
        named = [b for v in self.violations for b in self.batches if f"{b} " in v]
        lines += [t for t in self.trace if any(f"{bid} " in t for bid in stuck + named)][-40:]
        return "\n".join(lines)
