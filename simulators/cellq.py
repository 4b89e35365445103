"""Cell Q QC analyzer twin: ICD section 2 (and the section 4 twin controls) over Modbus.

This module owns the analyzer's register map and its job engine. The wire (Modbus TCP,
and RTU on a serial line when ``serial_port`` names one, with the ICD 1.1 framing
rules) is ``simulators.modbus_server``; both wires share one register map, so the
register code is the same on both. Every request reaches ``handle``, which answers the
registers read, a write done, or the ICD exception code (02 outside the map, 03 bad
value or part of a 32-bit value or string, 04 faulted, 06 not in that state).

Slot states (input register b+2) and the commands that move them::

             submit (03 bad args, 04 faulted, 06 not free)
     FREE ─────────────────────────► QUEUED ──(< 4 running, not faulted)──► RUNNING
      ▲                               │  abort                  abort │    │   │
      │ release                       ▼                               ▼    │   │
      └──────────────────────────── ABORTED ◄───────────────────────────   │   │
      └──────────────────────────── DONE ◄───── last assay measured ───────┘   │
      └──────────────────────────── FAILED ◄── job fault 1/2 (world), 3 ───────┘
                                               (analyzer fault)

Analyzer state (input register 0): FAULTED while a twin fault is raised, else BUSY
while any job is queued or running, else IDLE.

Time: jobs advance on the shared Clock (process time). The engine is event driven:
before every request (and on a background tick) it steps to ``clock.now()`` assay by
assay, so results do not depend on how often anyone looks.
"""

from __future__ import annotations

import asyncio
import itertools
import math
import time
from collections import Counter
from dataclasses import dataclass, field
from typing import Final

from drivers import icd
from simulators.clock import Clock
from simulators.faults import ModbusFaults
from simulators.modbus_server import SILENT, Answer, ModbusServer, Request
from simulators.tasks import TaskOwner
from simulators.world import InsufficientVolume, UnknownSample, World

_SLOTS_END: Final = icd.SLOT_BASE + icd.SLOT_COUNT * icd.SLOT_STRIDE
_TWIN_REGS: Final = range(icd.TWIN_HR_FAULT_CODE, icd.TWIN_HR_TIME_SCALE + 2)
_TWIN_INPUT_REGS: Final = range(icd.TWIN_IR_JOBS_CREATED, icd.TWIN_IR_JOBS_CREATED + 2)
# ICD 1.1: 32-bit values and strings are written whole (JobSeq, SampleId, time scale).
_WHOLE_VALUES: Final = (
    *(
        range(icd.slot_base(slot) + lo, icd.slot_base(slot) + hi)
        for slot in range(icd.SLOT_COUNT)
        for lo, hi in icd.HR_SLOT_VALUES
        if hi - lo > 1
    ),
    range(icd.TWIN_HR_TIME_SCALE, icd.TWIN_HR_TIME_SCALE + 2),
)
_RESULT_SLOTS: Final = range(icd.IR_RESULTS, icd.IR_RESULTS + 2 * len(icd.Assay))
_NAN: Final = icd.encode_f32(math.nan)
_TICK_SECONDS: Final = 0.1
_COMMANDS: Final = frozenset(int(c) for c in icd.Command)


class CommandRefused(Exception):
    """A command the ICD refuses, with the Modbus exception code to answer."""

    def __init__(self, code: int, why: str) -> None:
        super().__init__(why)
        self.code = code


@dataclass
class Job:
    """One job in a slot: what was asked and how far it got."""

    job_seq: int
    panel: int
    sample_id: str
    order: int  # submission order: queued jobs start first come, first served
    state: icd.SlotState = icd.SlotState.QUEUED
    fault: icd.JobFault = icd.JobFault.NONE
    assays: list[icd.Assay] = field(default_factory=list)
    index: int = 0  # the assay running now (== len(assays) when done)
    assay_elapsed: float = 0.0  # process seconds into assays[index]
    measured: dict[icd.Assay, float] = field(default_factory=dict)

    def __post_init__(self) -> None:
        self.assays = icd.panel_assays(self.panel)

    @property
    def total_seconds(self) -> float:
        return sum(icd.ASSAY_SECONDS[a] for a in self.assays)

    @property
    def remaining_in_assay(self) -> float:
        return icd.ASSAY_SECONDS[self.assays[self.index]] - self.assay_elapsed

    @property
    def progress(self) -> int:
        """Per mille; 1000 only once done."""
        if self.state is icd.SlotState.DONE:
            return 1000
        done = sum(icd.ASSAY_SECONDS[a] for a in self.assays[: self.index]) + self.assay_elapsed
        return min(999, int(1000 * done / self.total_seconds))


@dataclass
class Slot:
    """A job slot: the daemon's holding registers and the job they made."""

    index: int
    holding: list[int] = field(default_factory=lambda: [0] * len(icd.HR_SLOT_NAMED))
    job: Job | None = None

    @property
    def state(self) -> icd.SlotState:
        return icd.SlotState.FREE if self.job is None else self.job.state

    @property
    def base(self) -> int:
        return icd.slot_base(self.index)

    def input_registers(self) -> list[int]:
        regs = [0] * icd.SLOT_STRIDE
        job = self.job
        if job is None:
            return regs
        regs[icd.IR_JOB_SEQ : icd.IR_JOB_SEQ + 2] = icd.encode_u32(job.job_seq)
        regs[icd.IR_SLOT_STATE] = int(job.state)
        regs[icd.IR_PROGRESS] = job.progress
        regs[icd.IR_JOB_FAULT] = int(job.fault)
        for assay in icd.Assay:
            off = icd.result_offset(assay)
            value = job.measured.get(assay) if job.state is icd.SlotState.DONE else None
            regs[off : off + 2] = _NAN if value is None else icd.encode_f32(value)
        return regs

    def holding_registers(self) -> list[int]:
        regs = [0] * icd.SLOT_STRIDE
        regs[: len(self.holding)] = self.holding
        regs[icd.HR_COMMAND] = 0  # the analyzer handles a command at once
        return regs


class CellQTwin:
    """A Cell Q analyzer on Modbus TCP (and RTU when ``serial_port`` is given).

    ``port=None`` serves no TCP (RTU only). ``submitted[job_seq]`` counts the jobs a
    submit actually created (an idempotent re-submit leaves it at 1; their sum is the
    ICD 1.1 jobs-created counter); ``commands`` counts the commands handled by kind.
    ``faults`` injects Modbus exception answers, silence, lost and slow answers
    (simulators/faults.py).
    """

    def __init__(
        self,
        world: World,
        clock: Clock,
        *,
        host: str = "127.0.0.1",
        port: int | None = 0,
        serial_port: str | None = None,
        device_id: int = icd.CELLQ_DEVICE_ID,
        line: icd.SerialLine | None = None,
    ) -> None:
        self.world = world
        self.clock = clock
        self.host = host
        self.port: int = port or 0
        self._serve_tcp = port is not None
        self.serial_port = serial_port
        self.device_id = device_id
        self.line = line if line is not None else icd.SerialLine()  # 1.1: 19200 8N1
        self.submitted: Counter[int] = Counter()
        self.commands: Counter[icd.Command] = Counter()  # handled, refused ones included
        self.faults = ModbusFaults()
        self.requests = 0  # requests for this device id that reached the register map
        self.slots = [Slot(i) for i in range(icd.SLOT_COUNT)]
        self.fault_code = 0  # analyzer fault raised by the twin control (0: none)
        self._twin_fault_reg = 0
        self._order = itertools.count(1)
        self._last = clock.now()
        self._wall0 = time.monotonic()
        self._tasks = TaskOwner("cellq")
        self.server = ModbusServer(
            self.handle,
            unit=device_id,
            host=host,
            port=self.port if self._serve_tcp else None,
            serial_port=serial_port,
            line=self.line,
            name="cellq",
        )

    # ------------------------------------------------------------------ lifecycle
    async def start(self) -> None:
        self._wall0 = time.monotonic()
        self._last = self.clock.now()
        await self.server.start()
        if self._serve_tcp:
            assert self.server.port is not None
            self.port = self.server.port
        self._tasks.start(self._ticker(), "tick")

    async def stop(self) -> None:
        try:
            await self.server.stop()
        finally:
            await self._tasks.stop()  # raises a crash of a background task

    async def __aenter__(self) -> CellQTwin:
        await self.start()
        return self

    async def __aexit__(self, *exc_info: object) -> None:
        await self.stop()

    async def _ticker(self) -> None:
        while True:
            await asyncio.sleep(_TICK_SECONDS)
            self.advance()

    # ------------------------------------------------------------------ status
    @property
    def state(self) -> icd.AnalyzerState:
        if self.fault_code:
            return icd.AnalyzerState.FAULTED
        busy = any(s.state in (icd.SlotState.QUEUED, icd.SlotState.RUNNING) for s in self.slots)
        return icd.AnalyzerState.BUSY if busy else icd.AnalyzerState.IDLE

    @property
    def jobs_created(self) -> int:
        """Jobs a submit created (ICD 1.1 twin counter, input registers 900..901)."""
        return sum(self.submitted.values()) & 0xFFFFFFFF

    @property
    def heartbeat(self) -> int:
        return int(time.monotonic() - self._wall0) & 0xFFFFFFFF

    def status_registers(self) -> list[int]:
        regs = [0] * icd.STATUS_REGS
        regs[icd.IR_STATE] = int(self.state)
        regs[icd.IR_FAULT_CODE] = self.fault_code
        regs[icd.IR_FREE_SLOTS] = sum(s.state is icd.SlotState.FREE for s in self.slots)
        regs[icd.IR_HEARTBEAT : icd.IR_HEARTBEAT + 2] = icd.encode_u32(self.heartbeat)
        regs[icd.IR_ICD_VERSION] = icd.ICD_VERSION
        return regs

    # ------------------------------------------------------------------ job engine
    def advance(self) -> None:
        """Step every job to the clock's process time now, assay end by assay end."""
        now = self.clock.now()
        dt, self._last = max(0.0, now - self._last), now
        while True:
            self._start_queued()
            running = [s.job for s in self.slots if s.state is icd.SlotState.RUNNING]
            if not running or dt <= 0.0:
                return
            step = min(dt, *(j.remaining_in_assay for j in running if j is not None))
            for job in running:
                assert job is not None
                job.assay_elapsed += step
                if job.remaining_in_assay <= 1e-9:
                    self._finish_assay(job)
            dt -= step

    def _start_queued(self) -> None:
        if self.fault_code:
            return
        queued = sorted(
            (s.job for s in self.slots if s.state is icd.SlotState.QUEUED and s.job),
            key=lambda j: j.order,
        )
        running = sum(s.state is icd.SlotState.RUNNING for s in self.slots)
        for job in queued[: max(0, icd.MAX_RUNNING_JOBS - running)]:
            job.state = icd.SlotState.RUNNING
            if self.world.find_sample(job.sample_id) is None:  # the tube's barcode is unknown
                self._fail(job, icd.JobFault.UNKNOWN_SAMPLE)

    def _finish_assay(self, job: Job) -> None:
        assay = job.assays[job.index]
        try:
            job.measured[assay] = float(self.world.measure(job.sample_id, assay))
        except UnknownSample:
            self._fail(job, icd.JobFault.UNKNOWN_SAMPLE)
            return
        except InsufficientVolume:
            self._fail(job, icd.JobFault.INSUFFICIENT_VOLUME)
            return
        job.index += 1
        job.assay_elapsed = 0.0
        if job.index == len(job.assays):
            job.state = icd.SlotState.DONE

    @staticmethod
    def _fail(job: Job, fault: icd.JobFault) -> None:
        job.state = icd.SlotState.FAILED
        job.fault = fault

    # ------------------------------------------------------------------ commands
    def _command(self, slot: Slot, command: int) -> None:
        """Handle a slot's command register; raises CommandRefused with the answer."""
        hr = slot.holding
        job_seq = icd.decode_u32(hr[icd.HR_JOB_SEQ : icd.HR_JOB_SEQ + 2])
        if command == icd.Command.NONE:
            return
        if command in _COMMANDS:
            self.commands[icd.Command(command)] += 1
        if command == icd.Command.SUBMIT:
            self._submit(slot, job_seq)
        elif command in (icd.Command.ABORT, icd.Command.RELEASE):
            current = slot.job.job_seq if slot.job else 0
            if job_seq != current:
                raise CommandRefused(
                    icd.EXC_ILLEGAL_VALUE, f"JobSeq {job_seq} is not the slot's {current}"
                )
            if command == icd.Command.ABORT:
                if slot.job is None or slot.state not in (
                    icd.SlotState.QUEUED,
                    icd.SlotState.RUNNING,
                ):
                    raise CommandRefused(icd.EXC_DEVICE_BUSY, f"cannot abort a {slot.state.name}")
                slot.job.state = icd.SlotState.ABORTED
            else:
                if slot.state not in (
                    icd.SlotState.DONE,
                    icd.SlotState.FAILED,
                    icd.SlotState.ABORTED,
                ):
                    raise CommandRefused(icd.EXC_DEVICE_BUSY, f"cannot release a {slot.state.name}")
                slot.job = None
                slot.holding = [0] * len(icd.HR_SLOT_NAMED)
        else:
            raise CommandRefused(icd.EXC_ILLEGAL_VALUE, f"unknown command {command}")

    def _submit(self, slot: Slot, job_seq: int) -> None:
        if slot.job is not None and slot.job.job_seq == job_seq:
            return  # idempotent: this job exists already
        hr = slot.holding
        panel = hr[icd.HR_PANEL]
        sample_id = icd.parse_sample_id(hr[icd.HR_SAMPLE_ID : icd.HR_SAMPLE_ID + icd.STRING_REGS])
        if job_seq == 0:
            raise CommandRefused(icd.EXC_ILLEGAL_VALUE, "JobSeq 0")
        if sample_id is None:
            raise CommandRefused(icd.EXC_ILLEGAL_VALUE, "empty or malformed SampleId")
        if not icd.panel_is_valid(panel):
            raise CommandRefused(icd.EXC_ILLEGAL_VALUE, f"bad panel {panel:#x}")
        holder = next((s for s in self.slots if s.job and s.job.job_seq == job_seq), None)
        if holder is not None:  # 1.1: a re-send into the wrong slot never makes a 2nd job
            raise CommandRefused(
                icd.EXC_ILLEGAL_VALUE, f"JobSeq {job_seq} is held by slot {holder.index}"
            )
        if self.fault_code:
            raise CommandRefused(icd.EXC_DEVICE_FAILURE, "analyzer faulted")
        if slot.job is not None:
            raise CommandRefused(icd.EXC_DEVICE_BUSY, "slot not free")
        slot.job = Job(job_seq, panel, sample_id, next(self._order))
        self.submitted[job_seq] += 1

    def raise_fault(self, code: int) -> None:
        """Twin control: fault the analyzer; running jobs fail (job fault 3)."""
        if not 1 <= code <= 0xFFFF:
            raise ValueError("an analyzer fault needs a code 1..65535")
        self.advance()
        self.fault_code = code
        for slot in self.slots:
            if slot.job is not None and slot.state is icd.SlotState.RUNNING:
                self._fail(slot.job, icd.JobFault.ASSAY_FAILURE)

    def clear_fault(self) -> None:
        self.advance()
        self.fault_code = 0

    def reset(self) -> None:
        """Twin housekeeping for tests: every slot free, no fault, no Modbus faults.

        Call it on the twin's loop. Counters (``submitted``, ``commands``, ``requests``) stay."""
        self.advance()
        self.slots = [Slot(i) for i in range(icd.SLOT_COUNT)]
        self.fault_code = 0
        self._twin_fault_reg = 0
        self.faults.clear()

    # ------------------------------------------------------------------ registers
    async def handle(self, request: Request) -> Answer:
        """One request for this unit (framing done): registers, None (written), an
        exception code, or SILENT (a Modbus fault of the twin)."""
        fault = self.faults.take()
        if fault.delay:
            await asyncio.sleep(fault.delay)
        if fault.silent:
            return SILENT
        if fault.code is not None:
            return fault.code
        self.requests += 1
        self.advance()
        if request.values is None:
            result: Answer = self._read(request.function, request.address, request.count)
        else:
            result = self._write(request.address, list(request.values))
        return SILENT if fault.lose_answer else result

    def _read(self, func_code: int, address: int, count: int) -> list[int] | int:
        addresses = range(address, address + count)
        if func_code == icd.FC_READ_INPUT:
            if all(a < icd.STATUS_REGS for a in addresses):
                return self.status_registers()[address : address + count]
            if all(icd.SLOT_BASE <= a < _SLOTS_END for a in addresses):
                return self._slot_span(address, count, holding=False)
            if all(a in _TWIN_INPUT_REGS for a in addresses):
                start = address - icd.TWIN_IR_JOBS_CREATED
                return icd.encode_u32(self.jobs_created)[start : start + count]
            return icd.EXC_ILLEGAL_ADDRESS
        if all(icd.SLOT_BASE <= a < _SLOTS_END for a in addresses):
            return self._slot_span(address, count, holding=True)
        if all(a in _TWIN_REGS for a in addresses):
            scale = icd.encode_f32(self.clock.scale)
            twin = [self._twin_fault_reg, int(bool(self.fault_code)), *scale]
            start = address - icd.TWIN_HR_FAULT_CODE
            return twin[start : start + count]
        return icd.EXC_ILLEGAL_ADDRESS

    def _slot_span(self, address: int, count: int, *, holding: bool) -> list[int]:
        out: list[int] = []
        for slot in self.slots:
            lo, hi = slot.base, slot.base + icd.SLOT_STRIDE
            if hi <= address or lo >= address + count:
                continue
            regs = slot.holding_registers() if holding else slot.input_registers()
            out += regs[max(address, lo) - lo : min(address + count, hi) - lo]
        return out

    def _write(self, address: int, values: list[int]) -> int | None:
        """A write of holding registers: 02 outside the map, 03 for part of a 32-bit
        value or string; else data first, commands and twin controls last."""
        addresses = range(address, address + len(values))
        for a in addresses:
            if a in _TWIN_REGS:
                continue
            if not (icd.SLOT_BASE <= a < _SLOTS_END):
                return icd.EXC_ILLEGAL_ADDRESS
            if (a - icd.SLOT_BASE) % icd.SLOT_STRIDE not in icd.HR_SLOT_NAMED:
                return icd.EXC_ILLEGAL_ADDRESS
        if any(_cuts(addresses, span) for span in _WHOLE_VALUES):
            return icd.EXC_ILLEGAL_VALUE
        commands: list[tuple[Slot, int]] = []
        twin_writes: dict[int, int] = {}
        for a, v in zip(addresses, values, strict=True):
            if a in _TWIN_REGS:
                twin_writes[a] = v
                continue
            slot = self.slots[(a - icd.SLOT_BASE) // icd.SLOT_STRIDE]
            off = (a - icd.SLOT_BASE) % icd.SLOT_STRIDE
            if off == icd.HR_COMMAND:
                commands.append((slot, v))
            else:
                slot.holding[off] = v
        first_error: int | None = None
        for slot, command in commands:
            try:
                self._command(slot, command)
            except CommandRefused as refused:
                first_error = first_error or refused.code
        if twin_writes:
            error = self._twin_controls(twin_writes)
            first_error = first_error or error
        return first_error

    def _twin_controls(self, writes: dict[int, int]) -> int | None:
        if icd.TWIN_HR_FAULT_CODE in writes:
            self._twin_fault_reg = writes[icd.TWIN_HR_FAULT_CODE]
        if icd.TWIN_HR_TIME_SCALE in writes:  # both halves: whole values only
            scale = icd.decode_f32(
                [writes[icd.TWIN_HR_TIME_SCALE], writes[icd.TWIN_HR_TIME_SCALE + 1]]
            )
            if not icd.TWIN_TIME_SCALE_MIN <= scale <= icd.TWIN_TIME_SCALE_MAX:
                return icd.EXC_ILLEGAL_VALUE
            self.advance()
            self.clock.scale = scale
            self._last = self.clock.now()
        if icd.TWIN_HR_FAULT_RAISE in writes:
            raise_ = writes[icd.TWIN_HR_FAULT_RAISE]
            if raise_ == 1:
                if not self._twin_fault_reg:
                    return icd.EXC_ILLEGAL_VALUE  # a fault needs a non-zero code at 900
                self.raise_fault(self._twin_fault_reg)
            elif raise_ == 0:
                self.clear_fault()
            else:
                return icd.EXC_ILLEGAL_VALUE
        return None


def _cuts(addresses: range, span: range) -> bool:
    """Whether a write of ``addresses`` covers part of the value at ``span``."""
    inside = sum(1 for a in span if a in addresses)
    return 0 < inside < len(span)
