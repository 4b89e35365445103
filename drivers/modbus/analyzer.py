"""``ModbusAnalyzer``: the ``drivers.base.Analyzer`` the daemon uses for every Cell Q.

This module owns the analyzer's commands (submit, abort, release) and queries (status,
job, jobs) on top of a ``ModbusWire`` (requests, polling) and a ``drivers._link.Link``
(connection state, supervisor, reconnect, event streams).

Submit, the fast path (ICD 1.1: a JobSeq that another slot holds answers 03, so the
instrument itself refuses a second job)::

    hint for this JobSeq?  (the slot it was sent to or last seen in)
      yes: read that slot (one read: a repeat after a lost answer is resolved by
           reading, never by a blind re-send) -> holds it: done
                                               -> free: write there again
                                               -> another job: as "no"
      no:  a slot the driver believes free (last full read + its own writes)
    write JobSeq, panel, SampleId, submit (one write-multiple) into that slot
      ok  -> read the slot: it holds the JobSeq -> done (one write + one read)
      03  -> scan every slot: the JobSeq is held elsewhere -> that slot; else the
             instrument refused the arguments -> InvalidArgument
      06  -> scan: the JobSeq found -> that slot; else a free slot -> write again;
             none -> Busy
      no answer -> InstrumentTimeout (the hint stays: the caller's retry reads first)

Abort and release are not repeatable (ICD 1.1): each call reads the slot first (the
hinted slot, else a scan) and sends the command only when the slot shows it is still
needed, so a repeat after a lost answer finds the job aborted (or gone) and sends
nothing. JobSeq and the command go in one write-multiple with the panel and SampleId
read back between them (``registers.command_values``).

Results: the input registers carry no panel and the ICD makes every assay outside
the panel read NaN, so ``JobStatus.results`` holds the non-NaN results of a done slot.

Concurrency: one event loop. The wire sends one request at a time; ``submit``,
``abort`` and ``release`` also hold ``_command_lock`` so that a command's reads and its
write are not interleaved with another command of this driver.
"""

from __future__ import annotations

import asyncio
from collections import OrderedDict
from typing import Final, Self

from drivers import icd
from drivers._link import Backoff, ConnectionState, EventHub, EventStream, Link
from drivers.base import (
    AnalyzerStatusChanged,
    Busy,
    InvalidArgument,
    InvalidState,
    JobStatus,
)
from drivers.icd import Assay, Command, SlotState
from drivers.modbus.endpoints import ModbusSettings, RtuEndpoint, TcpEndpoint
from drivers.modbus.registers import OutOfIcd, command_values, submit_values
from drivers.modbus.wire import ModbusWire

_PENDING_LIMIT: Final = 256  # remembered JobSeq -> slot hints of unconfirmed submits
_RELEASABLE: Final = frozenset({SlotState.DONE, SlotState.FAILED, SlotState.ABORTED})
_ABORTABLE: Final = frozenset({SlotState.QUEUED, SlotState.RUNNING})


class ModbusAnalyzer:
    """A Cell Q analyzer over Modbus TCP or RTU (implements ``drivers.base.Analyzer``).

    Use as ``async with ModbusAnalyzer("cellq1", TcpEndpoint("10.0.0.5")) as cq:``.
    """

    def __init__(
        self,
        name: str,
        endpoint: TcpEndpoint | RtuEndpoint,
        settings: ModbusSettings | None = None,
    ) -> None:
        self.name = name
        self.endpoint = endpoint
        self.settings = settings or ModbusSettings()
        self._hub = EventHub()
        self._wire = ModbusWire(name, endpoint, self.settings, self._hub)
        backoff = Backoff(initial=self.settings.backoff_initial, maximum=self.settings.backoff_max)
        self._link = Link(name, self._wire, self._hub, backoff)
        self._wire.link = self._link
        self._command_lock = asyncio.Lock()
        # JobSeq -> slot of submits not yet seen in a full read (sent, answer maybe lost)
        self._pending: OrderedDict[int, int] = OrderedDict()
        self._mine: dict[int, int] = {}  # slot -> JobSeq this driver put there since

    # ------------------------------------------------------------------ construction
    @classmethod
    def tcp(
        cls, name: str, host: str, port: int = icd.DEFAULT_CELLQ_PORT, **settings: float
    ) -> ModbusAnalyzer:
        return cls(name, TcpEndpoint(host, port), ModbusSettings(**settings))  # type: ignore[arg-type]

    @classmethod
    def rtu(
        cls, name: str, device: str, baudrate: int = 19200, **settings: float
    ) -> ModbusAnalyzer:
        return cls(name, RtuEndpoint(device, baudrate), ModbusSettings(**settings))  # type: ignore[arg-type]

    @property
    def connected(self) -> bool:
        return self._link.connected

    @property
    def state(self) -> ConnectionState:
        return self._link.state

    @property
    def reconnects(self) -> int:
        return self._link.reconnects

    # ------------------------------------------------------------------ life cycle
    async def __aenter__(self) -> Self:
        await self._link.open()
        return self

    async def __aexit__(self, *exc_info: object) -> None:
        async with self._wire.quiet():  # no request in flight while the link closes
            await self._link.close()

    def events(self) -> EventStream:
        """A new subscriber's stream of events, from now on (bounded: see _link)."""
        return self._hub.subscribe()

    # ------------------------------------------------------------------ queries
    async def status(self) -> AnalyzerStatusChanged:
        self._link.require_connected("status")
        status = await self._wire.read_status("status")
        return AnalyzerStatusChanged(
            source=self.name,
            state=status.state,
            fault_code=status.fault_code,
            free_slots=status.free_slots,
        )

    async def job(self, job_seq: int) -> JobStatus:
        """The job's slot, state, progress and (once done) results.

        InvalidArgument when no slot holds ``job_seq`` (never submitted, or released).
        """
        op = "job"
        self._check_job_seq(op, job_seq)
        self._link.require_connected(op)
        job = await self._find(op, job_seq)
        if job is None:
            raise InvalidArgument(self.name, op, f"no slot holds JobSeq {job_seq}")
        return job

    async def jobs(self) -> list[JobStatus]:
        """Every occupied slot, in slot order."""
        self._link.require_connected("jobs")
        slots = await self._scan("jobs")
        return [slots[s] for s in sorted(slots)]

    # ------------------------------------------------------------------ submit
    async def submit(self, job_seq: int, sample_id: str, panel: Assay) -> int:
        """Submit a job, idempotent by ``job_seq``; returns its slot (see the module doc).

        Busy when no slot is free; InvalidState when the analyzer is faulted."""
        op = "submit"
        self._check_job_seq(op, job_seq)
        if not icd.is_sample_id(sample_id):
            raise InvalidArgument(self.name, op, f"malformed SampleId {sample_id!r}")
        mask = int(panel)
        if not icd.panel_is_valid(mask):
            raise InvalidArgument(self.name, op, f"panel {mask:#x} is empty or has unknown bits")
        values = submit_values(job_seq, sample_id, mask)
        async with self._command_lock:
            self._link.require_connected(op)
            slot = self._hint(job_seq)
            if slot is not None:  # sent or seen before: read, never re-send blindly
                found = await self._wire.read_slot(op, slot)
                if found is not None and found.job_seq == job_seq:
                    return self._confirmed(job_seq, slot)
                if found is not None:
                    slot = None
            if slot is None:
                slot = self._believed_free()
            for _attempt in range(icd.SLOT_COUNT):
                if slot is None:
                    held, slot = await self._scan_for(op, job_seq)
                    if held:
                        return self._confirmed(job_seq, slot)
                self._remember(job_seq, slot)  # before the write: a lost answer reads here
                try:
                    await self._wire.write(op, icd.slot_base(slot), values, busy=Busy)
                except InvalidArgument as refused:  # 1.1: held by another slot, or bad args
                    held, where = await self._scan_for(op, job_seq, need_free=False)
                    if held:
                        return self._confirmed(job_seq, where)
                    self._forget(job_seq)
                    raise refused
                except Busy:  # taken since the driver looked: find ours or a free slot
                    slot = None
                    continue
                return await self._verify(op, job_seq, slot)
            raise Busy(self.name, op, "every free slot was taken while submitting")

    async def _verify(self, op: str, job_seq: int, slot: int) -> int:
        """The one read of the fast path: the slot holds the job now."""
        job = await self._wire.read_slot(op, slot)
        if job is None or job.job_seq != job_seq:
            held = "nothing" if job is None else f"JobSeq {job.job_seq}"
            detail = f"submit of {job_seq} acknowledged but slot {slot} holds {held}"
            raise self._wire.garbage(op, detail)
        return self._confirmed(job_seq, slot)

    async def _scan_for(
        self, op: str, job_seq: int, *, need_free: bool = True
    ) -> tuple[bool, int | None]:
        """Scan every slot: ``(True, s)`` when slot s holds ``job_seq``, else
        ``(False, first free slot)``; Busy when none is free and ``need_free``."""
        slots = await self._scan(op)
        for job in slots.values():
            if job.job_seq == job_seq:
                return True, job.slot
        free = [s for s in range(icd.SLOT_COUNT) if s not in slots]
        if not free and need_free:
            raise Busy(self.name, op, "no free slot")
        return False, free[0] if free else None

    # ------------------------------------------------------------------ abort, release
    async def abort(self, job_seq: int) -> None:
        """Abort a queued or running job. A job already aborted (a repeat after a lost
        answer) changes nothing; InvalidState for a job that is done or failed,
        InvalidArgument for one no slot holds."""
        op = "abort"
        self._check_job_seq(op, job_seq)
        async with self._command_lock:
            self._link.require_connected(op)
            job = await self._find(op, job_seq)
            if job is None:
                raise InvalidArgument(self.name, op, f"no slot holds JobSeq {job_seq}")
            if job.state is SlotState.ABORTED:
                return
            if job.state not in _ABORTABLE:
                raise InvalidState(self.name, op, f"job {job_seq} is {job.state.name.lower()}")
            await self._command(op, job, Command.ABORT)

    async def release(self, job_seq: int) -> None:
        """Free the slot of a done, failed or aborted job. A JobSeq that no slot holds is
        taken as released already (a repeat after a lost answer)."""
        op = "release"
        self._check_job_seq(op, job_seq)
        async with self._command_lock:
            self._link.require_connected(op)
            job = await self._find(op, job_seq)
            if job is None:
                self._forget(job_seq)
                return
            if job.state not in _RELEASABLE:
                raise InvalidState(self.name, op, f"job {job_seq} is {job.state.name.lower()}")
            await self._command(op, job, Command.RELEASE)
            self._forget(job_seq)
            self._mine.pop(job.slot, None)

    async def _command(self, op: str, job: JobStatus, command: Command) -> None:
        base = icd.slot_base(job.slot)
        held = await self._wire.read_holding(op, base, icd.HR_COMMAND)
        try:
            values = command_values(job.job_seq, held, command)
        except OutOfIcd as exc:
            raise self._wire.garbage(op, str(exc)) from None
        await self._wire.write(op, base, values, busy=InvalidState)

    # ------------------------------------------------------------------ slot knowledge
    def _check_job_seq(self, op: str, job_seq: int) -> None:
        if isinstance(job_seq, bool) or not isinstance(job_seq, int):
            raise InvalidArgument(self.name, op, f"JobSeq must be an int, got {job_seq!r}")
        if not 0 < job_seq <= 0xFFFFFFFF:
            raise InvalidArgument(self.name, op, f"JobSeq {job_seq} is outside 1..2**32-1")

    async def _find(self, op: str, job_seq: int) -> JobStatus | None:
        """The job's slot: the hinted slot in one read, else a scan."""
        slot = self._hint(job_seq)
        if slot is not None:
            job = await self._wire.read_slot(op, slot)
            if job is not None and job.job_seq == job_seq:
                return job
        for job in (await self._scan(op)).values():
            if job.job_seq == job_seq:
                return job
        return None

    async def _scan(self, op: str) -> dict[int, JobStatus]:
        slots = await self._wire.read_all_slots(op)
        self._mine = {s: j.job_seq for s, j in slots.items()}
        return slots

    def _hint(self, job_seq: int) -> int | None:
        slot = self._pending.get(job_seq)
        if slot is not None:
            return slot
        for s, seq in self._mine.items():
            if seq == job_seq:
                return s
        for s, job in self._wire.slots.items():
            if job.job_seq == job_seq:
                return s
        return None

    def _believed_free(self) -> int | None:
        """The lowest slot that the last full read and this driver's own writes since
        leave free (the instrument has the last word: 06 when it is not)."""
        taken = set(self._wire.slots) | set(self._mine)
        pending = set(self._pending.values())
        for slot in range(icd.SLOT_COUNT):
            if slot not in taken and slot not in pending:
                return slot
        return None

    def _remember(self, job_seq: int, slot: int) -> None:
        self._pending[job_seq] = slot
        self._pending.move_to_end(job_seq)
        while len(self._pending) > _PENDING_LIMIT:
            self._pending.popitem(last=False)

    def _forget(self, job_seq: int) -> None:
        self._pending.pop(job_seq, None)

    def _confirmed(self, job_seq: int, slot: int) -> int:
        self._forget(job_seq)
        self._mine[slot] = job_seq
        return slot
