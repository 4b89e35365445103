"""Modbus driver of the Cell Q QC analyzer (ICD section 2), over TCP or RTU.

This module owns ``ModbusAnalyzer``, the ``drivers.base.Analyzer`` the daemon uses
for every Cell Q, and its two endpoint types ``TcpEndpoint`` / ``RtuEndpoint``.
TCP and RTU share all register code; only the pymodbus client differs.

Wire rules it relies on (ICD section 2, through ``drivers.icd``): status in input
registers 0..9, sixteen slots of 32 registers at ``100 + 32 * s``, JobSeq as the
idempotency key of a submit, exception answers 02/03/04/06.

Connection life cycle (one background task, ``_supervise``)::

             __aenter__ (first connect + full read, or CommunicationLost)
                  |
                  v
    +-------> connected --poll every poll_interval: status + all slots--+
    |             |          (diffs -> AnalyzerStatusChanged/JobChanged) |
    |             |  no answer, connection error, garbage,               |
    |             |  heartbeat frozen for heartbeat_timeout              |
    |             v                                                      |
    |           lost [ConnectionLost]  <----------------------------------+
    |             |  close the client (a late answer can never be taken
    |             |  for the next request's), wait backoff * jitter
    |             v
    +-- reconnect, re-read status + every slot, emit the diffs,
        then [ConnectionRestored]

While lost every call raises ``CommunicationLost`` at once. Nothing is re-sent:
pymodbus runs with ``retries=0`` and its own reconnection switched off; a request
without an answer raises ``InstrumentTimeout`` and drops the connection, so the
outcome of a write is unknown to the caller, who may call again: ``submit`` first
scans every slot for its JobSeq (idempotent across lost answers and restarts), and
the analyzer itself ignores a repeated submit of the JobSeq a slot already holds.

Error mapping (a caller never sees a pymodbus exception)::

    exception 02, 03          -> InvalidArgument
    exception 04              -> InvalidState (analyzer faulted)
    exception 06              -> Busy on submit (slot taken);
                                 InvalidState on abort/release (wrong job state)
    other exception codes     -> CommunicationLost
    no answer in ``timeout``  -> InstrumentTimeout (a CommunicationLost)
    connection error, garbage -> CommunicationLost

Results: the input registers carry no panel, and the ICD makes every assay outside
the panel read NaN, so ``JobStatus.results`` holds the non-NaN results of a slot
whose state is done (empty before).

Concurrency: one event loop. pymodbus serialises requests on one connection;
``submit``, ``abort`` and ``release`` additionally hold ``_command_lock`` so a
scan and its write are not interleaved with another command of this driver.
"""

from __future__ import annotations

import asyncio
import contextlib
import math
import random
import time
from collections.abc import AsyncIterator, Awaitable, Callable
from dataclasses import dataclass, field, replace
from typing import Final, Self

from pymodbus.client import AsyncModbusSerialClient, AsyncModbusTcpClient
from pymodbus.exceptions import ModbusException
from pymodbus.framer import FramerType
from pymodbus.pdu import ModbusPDU

from drivers import icd
from drivers.base import (
    AnalyzerStatusChanged,
    Busy,
    CommunicationLost,
    ConnectionLost,
    ConnectionRestored,
    Event,
    InstrumentError,
    InstrumentTimeout,
    InvalidArgument,
    InvalidState,
    JobChanged,
    JobStatus,
    NotSupported,
)
from drivers.icd import AnalyzerState, Assay, Command, JobFault, SlotState

# A slot's named input registers end at b+21; reading 3 whole slots and the named part
# of a 4th is 118 registers, under the 125 a Modbus read may carry.
_SLOT_READ: Final = icd.result_offset(Assay.MYCOPLASMA) + 2  # 22
_SLOTS_PER_READ: Final = 4
_CHUNK_REGS: Final = icd.SLOT_STRIDE * (_SLOTS_PER_READ - 1) + _SLOT_READ
_HOLDING_SLOT_WRITE: Final = icd.HR_COMMAND + 1  # b+0..11


# --------------------------------------------------------------------------- endpoints
@dataclass(frozen=True, slots=True)
class TcpEndpoint:
    """Modbus TCP: ``host:port`` (ICD default port 5020)."""

    host: str
    port: int = icd.DEFAULT_CELLQ_PORT

    @classmethod
    def parse(cls, address: str) -> TcpEndpoint:
        """``"host:port"`` or ``"host"`` (as in CELLFAB_CELLQ_ADDR)."""
        host, sep, port = address.rpartition(":")
        if not sep:
            return cls(address)
        if not port.isdigit() or not host:
            raise ValueError(f"{address!r} is not host:port")
        return cls(host.strip("[]"), int(port))

    def __str__(self) -> str:
        return f"{self.host}:{self.port}"


@dataclass(frozen=True, slots=True)
class RtuEndpoint:
    """Modbus RTU on a serial device. The ICD names no line settings: 19200 8N1 here."""

    device: str
    baudrate: int = 19200
    bytesize: int = 8
    parity: str = "N"
    stopbits: int = 1

    def __str__(self) -> str:
        return f"rtu:{self.device}"


@dataclass(frozen=True, slots=True)
class ModbusSettings:
    """Tuning of one driver; every time is wall seconds (the instrument's clock)."""

    device_id: int = icd.CELLQ_DEVICE_ID
    timeout: float = 1.0  # per request
    poll_interval: float = 0.25
    heartbeat_timeout: float = 5.0  # heartbeat not moving this long = lost
    backoff_initial: float = 0.1
    backoff_max: float = 5.0
    connect_timeout: float = 3.0


# --------------------------------------------------------------------------- snapshot
@dataclass(frozen=True, slots=True)
class _Status:
    state: AnalyzerState
    fault_code: int
    free_slots: int
    heartbeat: int
    version: int


@dataclass(slots=True)
class _Snapshot:
    status: _Status | None = None
    slots: dict[int, JobStatus] = field(default_factory=dict)  # occupied slots only


class _Lost(Exception):
    """Internal: the connection is gone; carries the typed error to raise."""

    def __init__(self, error: CommunicationLost) -> None:
        super().__init__(str(error))
        self.error = error


_CLOSED: Final = object()


class _Subscription:
    """One subscriber's queue-backed stream; registered at creation, so nothing after
    ``events()`` returns is missed. Unbounded: a subscriber must keep reading."""

    def __init__(self, owner: ModbusAnalyzer) -> None:
        self._owner = owner
        self._queue: asyncio.Queue[object] = asyncio.Queue()
        self._done = False
        owner._subscribers.add(self)

    def put(self, item: object) -> None:
        self._queue.put_nowait(item)

    def __aiter__(self) -> Self:
        return self

    async def __anext__(self) -> Event:
        if self._done:
            raise StopAsyncIteration
        item = await self._queue.get()
        if item is _CLOSED:
            self._done = True
            self._owner._subscribers.discard(self)
            raise StopAsyncIteration
        assert isinstance(item, Event)
        return item

    async def aclose(self) -> None:
        self._done = True
        self._owner._subscribers.discard(self)


# --------------------------------------------------------------------------- driver
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
        self._client: AsyncModbusTcpClient | AsyncModbusSerialClient | None = None
        self._connected = False
        self._closing = False
        self._lost_reason = ""
        self._snapshot = _Snapshot()
        self._slot_hint: dict[int, int] = {}  # JobSeq -> slot last seen holding it
        self._heartbeat_seen = (-1, 0.0)  # (value, monotonic time it last moved)
        self._subscribers: set[_Subscription] = set()
        self._command_lock = asyncio.Lock()
        self._poll_lock = asyncio.Lock()
        self._supervisor: asyncio.Task[None] | None = None
        self._wake = asyncio.Event()  # set when a request found the connection dead

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
        return self._connected

    # ------------------------------------------------------------------ life cycle
    async def __aenter__(self) -> Self:
        self._closing = False
        try:
            await self._connect_and_read()
        except _Lost as lost:
            await self._close_client()
            raise lost.error from None
        self._supervisor = asyncio.create_task(self._supervise(), name=f"{self.name} supervisor")
        return self

    async def __aexit__(self, *exc_info: object) -> None:
        self._closing = True
        task, self._supervisor = self._supervisor, None
        # Cancel until it ends: Python 3.11's wait_for (inside pymodbus) can swallow a
        # cancellation that races with an answer arriving.
        while task is not None and not task.done():
            task.cancel()
            await asyncio.wait({task}, timeout=0.1)
        self._connected = False
        await self._close_client()
        for sub in list(self._subscribers):
            sub.put(_CLOSED)

    def events(self) -> AsyncIterator[Event]:
        """A new subscriber's stream of events, from now on, none dropped."""
        return _Subscription(self)

    def _emit(self, event: Event) -> None:
        for sub in list(self._subscribers):
            sub.put(event)

    # ------------------------------------------------------------------ public API
    async def status(self) -> AnalyzerStatusChanged:
        status = await self._read_status("status")
        return AnalyzerStatusChanged(
            source=self.name,
            state=status.state,
            fault_code=status.fault_code,
            free_slots=status.free_slots,
        )

    async def submit(self, job_seq: int, sample_id: str, panel: Assay) -> int:
        """Submit a job, idempotent by ``job_seq``; returns its slot.

        Scans every slot first: a slot already holding ``job_seq`` is the answer and
        nothing is written. Otherwise the first free slot gets JobSeq, panel, SampleId
        and the submit command in one write-multiple. Busy when no slot is free.
        """
        op = "submit"
        self._check_job_seq(op, job_seq)
        if not icd.is_sample_id(sample_id):
            raise InvalidArgument(self.name, op, f"malformed SampleId {sample_id!r}")
        mask = int(panel)
        if not icd.panel_is_valid(mask):
            raise InvalidArgument(self.name, op, f"panel {mask:#x} is empty or has unknown bits")
        values = [
            *icd.encode_u32(job_seq),
            mask,
            *icd.encode_string(sample_id),
            int(Command.SUBMIT),
        ]
        async with self._command_lock:
            for _attempt in range(3):
                slots = await self._read_all_slots(op)
                for job in slots.values():
                    if job.job_seq == job_seq:
                        return job.slot
                free = [s for s in range(icd.SLOT_COUNT) if s not in slots]
                if not free:
                    raise Busy(self.name, op, "no free slot")
                slot = free[0]
                try:
                    await self._write(op, icd.slot_base(slot), values, busy=Busy)
                except Busy:
                    continue  # another client took the slot between scan and write: rescan
                self._slot_hint[job_seq] = slot
                return slot
            raise Busy(self.name, op, "every free slot was taken while submitting")

    async def job(self, job_seq: int) -> JobStatus:
        """The job's slot, state, progress and (once done) results.

        InvalidArgument when no slot holds ``job_seq`` (never submitted, or released).
        """
        op = "job"
        self._check_job_seq(op, job_seq)
        hint = self._slot_hint.get(job_seq)
        if hint is not None:
            found = await self._read_slot(op, hint)
            if found is not None and found.job_seq == job_seq:
                return found
        for job in (await self._read_all_slots(op)).values():
            if job.job_seq == job_seq:
                return job
        raise InvalidArgument(self.name, op, f"no slot holds JobSeq {job_seq}")

    async def jobs(self) -> list[JobStatus]:
        """Every occupied slot, in slot order."""
        slots = await self._read_all_slots("jobs")
        return [slots[s] for s in sorted(slots)]

    async def abort(self, job_seq: int) -> None:
        """Abort a queued or running job. Repeating it on an aborted job changes nothing;
        InvalidState for a job that is done or failed, InvalidArgument for an unknown one."""
        op = "abort"
        self._check_job_seq(op, job_seq)
        async with self._command_lock:
            job = await self._find(op, job_seq)
            if job is None:
                raise InvalidArgument(self.name, op, f"no slot holds JobSeq {job_seq}")
            if job.state is SlotState.ABORTED:
                return
            if job.state not in (SlotState.QUEUED, SlotState.RUNNING):
                raise InvalidState(self.name, op, f"job {job_seq} is {job.state.name.lower()}")
            await self._command(op, job, Command.ABORT)

    async def release(self, job_seq: int) -> None:
        """Free the slot of a done, failed or aborted job. A JobSeq that no slot holds is
        taken as released already (so a caller may repeat it after a lost answer)."""
        op = "release"
        self._check_job_seq(op, job_seq)
        async with self._command_lock:
            job = await self._find(op, job_seq)
            if job is None:
                return
            if job.state not in (SlotState.DONE, SlotState.FAILED, SlotState.ABORTED):
                raise InvalidState(self.name, op, f"job {job_seq} is {job.state.name.lower()}")
            await self._command(op, job, Command.RELEASE)

    # ------------------------------------------------------------------ commands
    def _check_job_seq(self, op: str, job_seq: int) -> None:
        if isinstance(job_seq, bool) or not isinstance(job_seq, int):
            raise InvalidArgument(self.name, op, f"JobSeq must be an int, got {job_seq!r}")
        if not 0 < job_seq <= 0xFFFFFFFF:
            raise InvalidArgument(self.name, op, f"JobSeq {job_seq} is outside 1..2**32-1")

    async def _find(self, op: str, job_seq: int) -> JobStatus | None:
        for job in (await self._read_all_slots(op)).values():
            if job.job_seq == job_seq:
                return job
        return None

    async def _command(self, op: str, job: JobStatus, command: Command) -> None:
        """JobSeq and the command in the slot's holding registers. Panel and SampleId
        sit between them; they are read back and rewritten unchanged so one write
        carries the command last."""
        base = icd.slot_base(job.slot)
        held = await self._read("holding", op, base, icd.HR_COMMAND)
        values = [*icd.encode_u32(job.job_seq), *held[icd.HR_PANEL :], int(command)]
        await self._write(op, base, values, busy=InvalidState)

    # ------------------------------------------------------------------ reads
    async def _read_status(self, op: str) -> _Status:
        regs = await self._read("input", op, 0, icd.STATUS_REGS)
        try:
            state = AnalyzerState(regs[icd.IR_STATE])
        except ValueError:
            raise self._garbage(op, f"analyzer state {regs[icd.IR_STATE]}") from None
        status = _Status(
            state=state,
            fault_code=regs[icd.IR_FAULT_CODE],
            free_slots=regs[icd.IR_FREE_SLOTS],
            heartbeat=icd.decode_u32(regs[icd.IR_HEARTBEAT : icd.IR_HEARTBEAT + 2]),
            version=regs[icd.IR_ICD_VERSION],
        )
        self._track_heartbeat(status.heartbeat)
        return status

    async def _read_slot(self, op: str, slot: int) -> JobStatus | None:
        regs = await self._read("input", op, icd.slot_base(slot), _SLOT_READ)
        return self._decode_slot(op, slot, regs)

    async def _read_all_slots(self, op: str) -> dict[int, JobStatus]:
        slots: dict[int, JobStatus] = {}
        for first in range(0, icd.SLOT_COUNT, _SLOTS_PER_READ):
            regs = await self._read("input", op, icd.slot_base(first), _CHUNK_REGS)
            for i in range(_SLOTS_PER_READ):
                off = i * icd.SLOT_STRIDE
                job = self._decode_slot(op, first + i, regs[off : off + _SLOT_READ])
                if job is not None:
                    slots[job.slot] = job
        self._slot_hint = {job.job_seq: slot for slot, job in slots.items()}
        return slots

    def _decode_slot(self, op: str, slot: int, regs: list[int]) -> JobStatus | None:
        job_seq = icd.decode_u32(regs[icd.IR_JOB_SEQ : icd.IR_JOB_SEQ + 2])
        try:
            state = SlotState(regs[icd.IR_SLOT_STATE])
            fault = JobFault(regs[icd.IR_JOB_FAULT])
        except ValueError:
            raise self._garbage(op, f"slot {slot} state/fault {regs[2:5]}") from None
        if state is SlotState.FREE and job_seq == 0:
            return None
        results: dict[Assay, float] = {}
        if state is SlotState.DONE:
            for assay in Assay:
                off = icd.result_offset(assay)
                value = icd.decode_f32(regs[off : off + 2])
                if not math.isnan(value):
                    results[assay] = value
        return JobStatus(
            slot=slot,
            job_seq=job_seq,
            state=state,
            progress_permille=regs[icd.IR_PROGRESS],
            fault=fault,
            results=results,
        )

    def _garbage(self, op: str, detail: str) -> CommunicationLost:
        error = CommunicationLost(self.name, op, f"answer out of the ICD: {detail}")
        self._drop(error.detail)
        return error

    # ------------------------------------------------------------------ one request
    async def _read(self, kind: str, op: str, address: int, count: int) -> list[int]:
        dev = self.settings.device_id
        if kind == "input":
            rsp = await self._execute(
                op, lambda c: c.read_input_registers(address, count=count, device_id=dev)
            )
        else:
            rsp = await self._execute(
                op, lambda c: c.read_holding_registers(address, count=count, device_id=dev)
            )
        regs = list(getattr(rsp, "registers", None) or [])
        if len(regs) != count:
            raise self._garbage(op, f"{len(regs)} registers for {count} asked at {address}")
        return regs

    async def _write(
        self, op: str, address: int, values: list[int], busy: type[InstrumentError]
    ) -> None:
        dev = self.settings.device_id
        await self._execute(
            op, lambda c: c.write_registers(address, values, device_id=dev), busy=busy
        )

    async def _execute(
        self,
        op: str,
        call: Callable[[AsyncModbusTcpClient | AsyncModbusSerialClient], Awaitable[ModbusPDU]],
        busy: type[InstrumentError] = Busy,
    ) -> ModbusPDU:
        """One request, at most once on the wire; every outcome typed."""
        client = self._client
        if client is None or not self._connected:
            raise CommunicationLost(self.name, op, f"not connected ({self._lost_reason})")
        try:
            async with asyncio.timeout(self.settings.timeout):
                rsp = await call(client)
        except TimeoutError:
            error: CommunicationLost = InstrumentTimeout(
                self.name, op, f"no answer within {self.settings.timeout} s"
            )
            self._drop(error.detail)
            raise error from None
        except (ModbusException, OSError, ValueError, AttributeError) as exc:
            error = CommunicationLost(self.name, op, f"{type(exc).__name__}: {exc}")
            self._drop(error.detail)
            raise error from None
        if rsp is None:
            raise self._garbage(op, "empty answer")
        if rsp.isError():
            code = int(getattr(rsp, "exception_code", 0))
            raise self._exception(op, code, busy)
        return rsp

    def _exception(self, op: str, code: int, busy: type[InstrumentError]) -> InstrumentError:
        detail = f"exception {code:02d}"
        if code == icd.EXC_ILLEGAL_ADDRESS:
            return InvalidArgument(self.name, op, f"{detail} (illegal address)")
        if code == icd.EXC_ILLEGAL_VALUE:
            return InvalidArgument(self.name, op, f"{detail} (illegal value)")
        if code == icd.EXC_DEVICE_FAILURE:
            return InvalidState(self.name, op, f"{detail} (analyzer faulted)")
        if code == icd.EXC_DEVICE_BUSY:
            return busy(self.name, op, f"{detail} (slot busy or not in that state)")
        return CommunicationLost(self.name, op, f"{detail} (not in the ICD)")

    # ------------------------------------------------------------------ connection
    def _drop(self, reason: str) -> None:
        """Mark the connection dead and close it; the supervisor reports and reconnects."""
        if not self._connected:
            return
        self._connected = False
        self._lost_reason = reason
        client, self._client = self._client, None
        if client is not None:
            client.close()
        self._wake.set()

    def _on_connect_trace(self, connected: bool) -> None:
        if not connected and self._connected and not self._closing:
            self._drop("connection closed by peer")

    def _make_client(self) -> AsyncModbusTcpClient | AsyncModbusSerialClient:
        # pymodbus' own timeout is only a backstop: ours (asyncio.timeout) fires first.
        backstop = max(self.settings.timeout, self.settings.connect_timeout) + 1.0
        ep = self.endpoint
        if isinstance(ep, TcpEndpoint):
            return AsyncModbusTcpClient(
                ep.host,
                port=ep.port,
                name=self.name,
                reconnect_delay=0,
                timeout=backstop,
                retries=0,
                trace_connect=self._on_connect_trace,
            )
        return AsyncModbusSerialClient(
            ep.device,
            framer=FramerType.RTU,
            baudrate=ep.baudrate,
            bytesize=ep.bytesize,
            parity=ep.parity,
            stopbits=ep.stopbits,
            name=self.name,
            reconnect_delay=0,
            timeout=backstop,
            retries=0,
            trace_connect=self._on_connect_trace,
        )

    async def _close_client(self) -> None:
        client, self._client = self._client, None
        if client is not None:
            client.close()

    async def _connect_and_read(self) -> None:
        """Connect and read the full state; emits the diffs. Raises _Lost."""
        await self._close_client()
        client = self._make_client()
        try:
            async with asyncio.timeout(self.settings.connect_timeout):
                ok = await client.connect()
        except (TimeoutError, ModbusException, OSError) as exc:
            ok = False
            reason = f"{type(exc).__name__}: {exc}"
        else:
            reason = "connect refused or failed"
        if not ok:
            client.close()
            raise _Lost(CommunicationLost(self.name, "connect", f"{self.endpoint}: {reason}"))
        self._client = client
        self._connected = True
        self._wake.clear()
        self._heartbeat_seen = (-1, time.monotonic())
        try:
            await self._poll_once("connect")
        except CommunicationLost as exc:
            raise _Lost(exc) from None
        except InstrumentError as exc:  # an exception answer to a read of the ICD map
            self._drop(f"full read refused: {exc.detail}")
            raise _Lost(CommunicationLost(self.name, "connect", self._lost_reason)) from None
        status = self._snapshot.status
        assert status is not None
        if status.version != icd.ICD_VERSION:
            error = NotSupported(
                self.name, "connect", f"analyzer speaks ICD {status.version}, not 1"
            )
            self._drop(error.detail)
            raise error

    def _track_heartbeat(self, beat: int) -> None:
        if beat != self._heartbeat_seen[0]:
            self._heartbeat_seen = (beat, time.monotonic())

    def _check_heartbeat(self) -> None:
        """Lost when the heartbeat has not moved (or could not be read) for too long."""
        beat, since = self._heartbeat_seen
        stuck = time.monotonic() - since
        if stuck > self.settings.heartbeat_timeout:
            self._drop(f"heartbeat stuck at {beat} for {stuck:.1f} s")

    async def _poll_once(self, op: str = "poll") -> None:
        """Read status and every slot; emit what changed since the last snapshot."""
        async with self._poll_lock:
            status = await self._read_status(op)
            slots = await self._read_all_slots(op)
            old = self._snapshot
            prev = old.status
            if prev is None or (prev.state, prev.fault_code, prev.free_slots) != (
                status.state,
                status.fault_code,
                status.free_slots,
            ):
                self._emit(
                    AnalyzerStatusChanged(
                        source=self.name,
                        state=status.state,
                        fault_code=status.fault_code,
                        free_slots=status.free_slots,
                    )
                )
            for slot in range(icd.SLOT_COUNT):
                before, now = old.slots.get(slot), slots.get(slot)
                if now is not None and now != before:
                    if before is not None and before.job_seq != now.job_seq:
                        self._emit(JobChanged(source=self.name, job=_freed(before)))
                    self._emit(JobChanged(source=self.name, job=now))
                elif now is None and before is not None:
                    self._emit(JobChanged(source=self.name, job=_freed(before)))
            self._snapshot = _Snapshot(status=status, slots=slots)

    async def _supervise(self) -> None:
        """Poll while connected; on loss report once, reconnect with backoff + jitter."""
        delay = self.settings.backoff_initial
        while not self._closing:
            if self._connected:
                with contextlib.suppress(TimeoutError):
                    async with asyncio.timeout(self.settings.poll_interval):
                        await self._wake.wait()
                if not self._connected or self._closing:
                    continue
                try:
                    await self._poll_once()
                except InstrumentError:
                    # CommunicationLost has dropped the connection already; an exception
                    # answer skips this round (the heartbeat check below bounds that)
                    pass
                except Exception as exc:  # a bug must not end supervision silently
                    self._drop(f"poll failed: {type(exc).__name__}: {exc}")
                if self._connected:
                    self._check_heartbeat()
                continue
            # lost
            self._emit(ConnectionLost(source=self.name, reason=self._lost_reason))
            while not self._closing:
                await asyncio.sleep(delay * random.uniform(0.5, 1.0))
                delay = min(delay * 2, self.settings.backoff_max)
                try:
                    await self._connect_and_read()
                except _Lost as lost:
                    self._lost_reason = lost.error.detail
                    self._connected = False
                    await self._close_client()
                    continue
                except NotSupported:
                    continue
                break
            if self._closing:
                return
            delay = self.settings.backoff_initial
            self._emit(ConnectionRestored(source=self.name))


def _freed(job: JobStatus) -> JobStatus:
    """The event of a slot that no longer holds ``job`` (released or reused)."""
    return replace(job, state=SlotState.FREE, progress_permille=0, results={})
