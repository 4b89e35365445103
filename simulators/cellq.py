"""Cell Q QC analyzer twin: ICD section 2 (and the section 4 twin controls) over Modbus.

This module owns the analyzer's register map and its job engine, served by a plain
pymodbus 3.16.1 server (TCP, and RTU on a serial line when ``serial_port`` names one;
both share one datastore, so the register code is the same on both wires).

pymodbus hook: a ``ModbusServerContext`` whose ``old_simulator`` flag is set is used by
the server as is (server/base.py); the request PDUs call its ``async_getValues`` /
``async_setValues`` and turn a returned ``ExcCodes`` into an exception answer
(pdu/register_message.py), and a ``NoSuchIdException`` into no answer at all when the
server runs with ``ignore_missing_devices`` (server/requesthandler.py). That is how
every ICD exception code is answered from inside the request that caused it.

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
from collections.abc import Sequence
from dataclasses import dataclass, field
from typing import Final

from pymodbus.constants import ExcCodes
from pymodbus.datastore import ModbusServerContext
from pymodbus.exceptions import NoSuchIdException
from pymodbus.framer import FramerType
from pymodbus.server import ModbusSerialServer, ModbusTcpServer

from drivers import icd
from simulators.clock import Clock
from simulators.faults import ModbusFaults
from simulators.tasks import TaskOwner
from simulators.world import InsufficientVolume, UnknownSample, World

_INPUT_FC: Final = frozenset({4})
_HOLDING_READ_FC: Final = frozenset({3, 23, 22})
_HOLDING_WRITE_FC: Final = frozenset({6, 16, 23, 22})
_MAX_READ: Final = 125
_SLOTS_END: Final = icd.SLOT_BASE + icd.SLOT_COUNT * icd.SLOT_STRIDE
_TWIN_REGS: Final = range(icd.TWIN_HR_FAULT_CODE, icd.TWIN_HR_TIME_SCALE + 2)
_TWIN_INPUT_REGS: Final = range(icd.TWIN_IR_JOBS_CREATED, icd.TWIN_IR_JOBS_CREATED + 2)
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


class CellQDatastore(ModbusServerContext):
    """The twin's register map as a pymodbus server context (one device id).

    Deliberately does not call ``ModbusServerContext.__init__`` (it wants pymodbus's
    simulator devices); it sets the two attributes the server looks at.
    """

    def __init__(self, twin: CellQTwin) -> None:
        self.old_simulator = True
        self.simdevices = []
        self._twin = twin
        self._echo: list[int] | None = None

    def device_ids(self) -> list[int]:
        return [self._twin.device_id]

    async def async_getValues(
        self, device_id: int, func_code: int, address: int, count: int = 1
    ) -> list[int] | list[bool] | ExcCodes:
        if func_code == 6 and self._echo is not None:
            # pymodbus reads back after a write-single; the answer must echo the request.
            echo, self._echo = self._echo, None
            return echo
        return await self._twin._request(device_id, func_code, address, count, None)

    async def async_setValues(
        self,
        device_id: int,
        func_code: int,
        address: int,
        values: Sequence[int] | Sequence[bool],
    ) -> ExcCodes | None:
        result = await self._twin._request(device_id, func_code, address, len(values), values)
        if result is None and func_code == 6:
            self._echo = [int(v) for v in values]
        return result if isinstance(result, ExcCodes) else None


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
        self._store = CellQDatastore(self)
        self._tcp: ModbusTcpServer | None = None
        self._rtu: ModbusSerialServer | None = None
        self._tasks = TaskOwner("cellq")

    # ------------------------------------------------------------------ lifecycle
    async def start(self) -> None:
        self._wall0 = time.monotonic()
        self._last = self.clock.now()
        if self._serve_tcp:
            self._tcp = ModbusTcpServer(
                self._store,
                address=(self.host, self.port),
                ignore_missing_devices=True,
            )
            await self._tcp.serve_forever(background=True)
            server = self._tcp.transport
            assert isinstance(server, asyncio.Server)
            self.port = server.sockets[0].getsockname()[1]
        if self.serial_port is not None:
            self._rtu = ModbusSerialServer(
                self._store,
                framer=FramerType.RTU,
                port=self.serial_port,
                baudrate=self.line.baudrate,
                bytesize=self.line.bytesize,
                parity=self.line.parity,
                stopbits=self.line.stopbits,
                ignore_missing_devices=True,
            )
            await self._rtu.serve_forever(background=True)
        self._tasks.start(self._ticker(), "tick")

    async def stop(self) -> None:
        for server in (self._tcp, self._rtu):
            if server is not None:
                await server.shutdown()
        self._tcp = self._rtu = None
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
        sample_id = _sample_id(hr[icd.HR_SAMPLE_ID : icd.HR_SAMPLE_ID + icd.STRING_REGS])
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
    async def _request(
        self,
        device_id: int,
        func_code: int,
        address: int,
        count: int,
        values: Sequence[int] | Sequence[bool] | None,
    ) -> list[int] | ExcCodes | None:
        if device_id != self.device_id:
            raise NoSuchIdException(f"device id {device_id}")  # no answer at all
        fault = self.faults.take()
        if fault.delay:
            await asyncio.sleep(fault.delay)
        if fault.silent:
            raise NoSuchIdException("silenced by ModbusFaults")
        if fault.code is not None:
            return ExcCodes(fault.code)
        self.requests += 1
        self.advance()
        if values is None:
            result = self._read(func_code, address, count)
        else:
            result = self._write(func_code, address, [int(v) for v in values])
        if fault.lose_answer:
            raise NoSuchIdException("answer lost by ModbusFaults")
        return result

    def _read(self, func_code: int, address: int, count: int) -> list[int] | ExcCodes:
        if not 1 <= count <= _MAX_READ:
            return ExcCodes.ILLEGAL_VALUE
        addresses = range(address, address + count)
        if func_code in _INPUT_FC:
            if all(a < icd.STATUS_REGS for a in addresses):
                return self.status_registers()[address : address + count]
            if all(icd.SLOT_BASE <= a < _SLOTS_END for a in addresses):
                return self._slot_span(address, count, holding=False)
            if all(a in _TWIN_INPUT_REGS for a in addresses):
                start = address - icd.TWIN_IR_JOBS_CREATED
                return icd.encode_u32(self.jobs_created)[start : start + count]
            return ExcCodes.ILLEGAL_ADDRESS
        if func_code in _HOLDING_READ_FC:
            if all(icd.SLOT_BASE <= a < _SLOTS_END for a in addresses):
                return self._slot_span(address, count, holding=True)
            if all(a in _TWIN_REGS for a in addresses):
                scale = icd.encode_f32(self.clock.scale)
                twin = [self._twin_fault_reg, int(bool(self.fault_code)), *scale]
                start = address - icd.TWIN_HR_FAULT_CODE
                return twin[start : start + count]
            return ExcCodes.ILLEGAL_ADDRESS
        return ExcCodes.ILLEGAL_ADDRESS  # coils and discrete inputs: not in the map

    def _slot_span(self, address: int, count: int, *, holding: bool) -> list[int]:
        out: list[int] = []
        for slot in self.slots:
            lo, hi = slot.base, slot.base + icd.SLOT_STRIDE
            if hi <= address or lo >= address + count:
                continue
            regs = slot.holding_registers() if holding else slot.input_registers()
            out += regs[max(address, lo) - lo : min(address + count, hi) - lo]
        return out

    def _write(self, func_code: int, address: int, values: list[int]) -> ExcCodes | None:
        if func_code not in _HOLDING_WRITE_FC:
            return ExcCodes.ILLEGAL_ADDRESS
        addresses = range(address, address + len(values))
        for a in addresses:
            if a in _TWIN_REGS:
                continue
            if not (icd.SLOT_BASE <= a < _SLOTS_END):
                return ExcCodes.ILLEGAL_ADDRESS
            if (a - icd.SLOT_BASE) % icd.SLOT_STRIDE not in icd.HR_SLOT_NAMED:
                return ExcCodes.ILLEGAL_ADDRESS
        if any(not 0 <= v <= 0xFFFF for v in values):
            return ExcCodes.ILLEGAL_VALUE
        # Data first, commands (and twin controls) last, in address order.
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
        first_error: ExcCodes | None = None
        for slot, command in commands:
            try:
                self._command(slot, command)
            except CommandRefused as refused:
                first_error = first_error or ExcCodes(refused.code)
        if twin_writes:
            error = self._twin_controls(twin_writes)
            first_error = first_error or error
        return first_error

    def _twin_controls(self, writes: dict[int, int]) -> ExcCodes | None:
        if icd.TWIN_HR_FAULT_CODE in writes:
            self._twin_fault_reg = writes[icd.TWIN_HR_FAULT_CODE]
        scale_regs = icd.encode_f32(self.clock.scale)
        touched = False
        for i in range(2):
            if icd.TWIN_HR_TIME_SCALE + i in writes:
                scale_regs[i] = writes[icd.TWIN_HR_TIME_SCALE + i]
                touched = True
        if touched:
            scale = icd.decode_f32(scale_regs)
            if not icd.TWIN_TIME_SCALE_MIN <= scale <= icd.TWIN_TIME_SCALE_MAX:
                return ExcCodes.ILLEGAL_VALUE
            self.advance()
            self.clock.scale = scale
            self._last = self.clock.now()
        if icd.TWIN_HR_FAULT_RAISE in writes:
            raise_ = writes[icd.TWIN_HR_FAULT_RAISE]
            if raise_ == 1:
                if not self._twin_fault_reg:
                    return ExcCodes.ILLEGAL_VALUE  # a fault needs a non-zero code at 900
                self.raise_fault(self._twin_fault_reg)
            elif raise_ == 0:
                self.clear_fault()
            else:
                return ExcCodes.ILLEGAL_VALUE
        return None


def _sample_id(regs: Sequence[int]) -> str | None:
    """The SampleId in 8 registers, or None when empty or malformed (NUL padded only)."""
    raw = b"".join(bytes(((r >> 8) & 0xFF, r & 0xFF)) for r in regs)
    text, _, pad = raw.partition(b"\0")
    if pad.strip(b"\0"):
        return None
    try:
        sample_id = text.decode("ascii")
    except UnicodeDecodeError:
        return None
    return sample_id if icd.is_sample_id(sample_id) else None
