"""The Cell Q connection: one pymodbus client, one request at a time, every outcome
typed; the full read, the poll loop with its heartbeat watchdog, and the events of what
changed. ``ModbusWire`` is the ``drivers._link.Wire`` of ``ModbusAnalyzer``: the Link
owns the connection state, the supervisor task, the backoff and the event streams.

One request (``_execute``)::

    client gone ............................ CommunicationLost
    no answer within settings.timeout ...... InstrumentTimeout, connection dropped
    connection error, undecodable answer ... CommunicationLost, connection dropped
    answer of another function / shape ..... CommunicationLost, connection dropped
    exception 02, 03 ....................... InvalidArgument
    exception 04 ........................... InvalidState (analyzer faulted)
    exception 06 ........................... ``busy`` (Busy on submit, InvalidState else)
    any other exception code ............... CommunicationLost (not in the ICD)

Nothing is re-sent: pymodbus runs with ``retries=0``, its own reconnection off, and
its timeout is the request timeout, so a late answer can never be taken for the next
request's: the connection is closed in the same step of the loop as the timeout.

Closing waits for the request in flight (``quiet()``) before the Link cancels the
supervisor, so no answer arrives for a request that was given up (pymodbus would log
"received pdu without a corresponding request").

Poll (every ``poll_interval`` while connected): status and all slots; the diff with
the last snapshot becomes AnalyzerStatusChanged / JobChanged events. A heartbeat that
has not moved (or could not be read) for ``heartbeat_timeout`` is a lost connection.
"""

from __future__ import annotations

import asyncio
import contextlib
import time
from collections.abc import AsyncIterator, Awaitable, Callable
from dataclasses import replace
from typing import TYPE_CHECKING

import structlog
from pymodbus.client import AsyncModbusSerialClient, AsyncModbusTcpClient
from pymodbus.exceptions import ModbusException, ModbusIOException
from pymodbus.framer import FramerType
from pymodbus.pdu import ModbusPDU

from drivers import icd
from drivers._link import EventHub
from drivers.base import (
    AnalyzerStatusChanged,
    Busy,
    CommunicationLost,
    InstrumentError,
    InstrumentTimeout,
    InvalidArgument,
    InvalidState,
    JobChanged,
    JobStatus,
    NotSupported,
)
from drivers.icd import SlotState
from drivers.modbus.endpoints import ModbusSettings, RtuEndpoint, TcpEndpoint
from drivers.modbus.registers import (
    CHUNK_REGS,
    SLOT_READ,
    SLOTS_PER_READ,
    OutOfIcd,
    Status,
    decode_slot,
    decode_slots,
    decode_status,
)

if TYPE_CHECKING:
    from drivers._link import Link

log = structlog.get_logger("cellfab.drivers.modbus")

Client = AsyncModbusTcpClient | AsyncModbusSerialClient


class ModbusWire:
    """Connection, requests and polling of one Cell Q (see the module doc)."""

    def __init__(
        self,
        name: str,
        endpoint: TcpEndpoint | RtuEndpoint,
        settings: ModbusSettings,
        hub: EventHub,
    ) -> None:
        self.name = name
        self.endpoint = endpoint
        self.settings = settings
        self.link: Link | None = None  # set by the owner once the Link exists
        self.status: Status | None = None  # last full read
        self.slots: dict[int, JobStatus] = {}  # occupied slots of the last full read
        self._hub = hub
        self._client: Client | None = None
        self._generation = 0  # bumped per connection: callbacks of an old client are void
        self._io = asyncio.Lock()
        self._heartbeat = (-1, 0.0)  # (value, monotonic time it last moved)

    # ------------------------------------------------------------------ Wire
    async def connect(self) -> None:
        """Connect, read status and every slot (emitting what changed), check the ICD
        version. Raises CommunicationLost or NotSupported with the client closed."""
        await self.disconnect()
        client = self._make_client()
        reason = "connect refused or failed"
        try:
            async with asyncio.timeout(self.settings.connect_timeout):
                ok = await client.connect()
        except (TimeoutError, ModbusException, OSError) as exc:
            ok, reason = False, f"{type(exc).__name__}: {exc}"
        if not ok:
            client.close()
            raise CommunicationLost(self.name, "connect", f"{self.endpoint}: {reason}")
        self._client = client
        self._heartbeat = (-1, time.monotonic())
        try:
            await self.poll("connect")
        except CommunicationLost:
            await self.disconnect()
            raise
        except InstrumentError as exc:  # an exception answer to a read of the ICD map
            await self.disconnect()
            raise CommunicationLost(
                self.name, "connect", f"full read refused: {exc.detail}"
            ) from None
        assert self.status is not None
        if self.status.version != icd.ICD_VERSION:
            await self.disconnect()
            raise NotSupported(
                self.name,
                "connect",
                f"analyzer speaks ICD {self.status.version}, not {icd.ICD_VERSION}",
            )

    async def serve(self) -> None:
        """Poll until the connection is lost; a frozen heartbeat is a loss too."""
        link = self.link
        assert link is not None
        while True:
            with contextlib.suppress(TimeoutError):
                async with asyncio.timeout(self.settings.poll_interval):
                    await link.wait_lost()
            if not link.connected:
                return
            try:
                await self.poll("poll")
            except CommunicationLost:
                raise
            except InstrumentError as exc:  # an exception answer: the heartbeat bounds it
                log.warning("poll refused", instrument=self.name, error=exc.detail)
            self._check_heartbeat()

    async def disconnect(self) -> None:
        client, self._client = self._client, None
        self._generation += 1
        if client is not None:
            client.close()

    @contextlib.asynccontextmanager
    async def quiet(self) -> AsyncIterator[None]:
        """Hold off every request (waiting for the one in flight) while inside."""
        try:
            async with asyncio.timeout(self.settings.timeout + 1.0):
                await self._io.acquire()
        except TimeoutError:  # a request that never ends: close regardless
            yield
            return
        try:
            yield
        finally:
            self._io.release()

    # ------------------------------------------------------------------ loss
    def drop(self, reason: str) -> None:
        """Close the connection now and report the loss (the Link reconnects)."""
        client, self._client = self._client, None
        self._generation += 1
        if client is not None:
            client.close()
        if self.link is not None:
            self.link.lost(reason)

    def garbage(self, op: str, detail: str) -> CommunicationLost:
        """An answer outside the ICD: drop the connection, return the error to raise."""
        error = CommunicationLost(self.name, op, f"answer out of the ICD: {detail}")
        self.drop(error.detail)
        return error

    # ------------------------------------------------------------------ requests
    async def read_input(self, op: str, address: int, count: int) -> list[int]:
        return await self._read(op, icd.FC_READ_INPUT, address, count)

    async def read_holding(self, op: str, address: int, count: int) -> list[int]:
        return await self._read(op, icd.FC_READ_HOLDING, address, count)

    async def _read(self, op: str, fc: int, address: int, count: int) -> list[int]:
        dev = self.settings.device_id

        def call(c: Client) -> Awaitable[ModbusPDU]:
            read = c.read_input_registers if fc == icd.FC_READ_INPUT else c.read_holding_registers
            return read(address, count=count, device_id=dev)

        rsp = await self._execute(op, fc, call, Busy)
        regs = list(getattr(rsp, "registers", None) or [])
        if len(regs) != count:
            raise self.garbage(op, f"{len(regs)} registers for {count} asked at {address}")
        return regs

    async def write(
        self, op: str, address: int, values: list[int], busy: type[InstrumentError]
    ) -> None:
        dev = self.settings.device_id
        rsp = await self._execute(
            op,
            icd.FC_WRITE_MULTIPLE,
            lambda c: c.write_registers(address, values, device_id=dev),
            busy,
        )
        echo = (getattr(rsp, "address", None), getattr(rsp, "count", None))
        if echo != (address, len(values)):
            raise self.garbage(op, f"write of {len(values)} at {address} answered {echo}")

    async def _execute(
        self,
        op: str,
        fc: int,
        call: Callable[[Client], Awaitable[ModbusPDU]],
        busy: type[InstrumentError],
    ) -> ModbusPDU:
        """One request, at most once on the wire; every outcome typed."""
        async with self._io:
            client = self._client
            if client is None:
                reason = self.link.last_loss_reason if self.link is not None else ""
                raise CommunicationLost(self.name, op, f"not connected ({reason})")
            try:
                rsp = await call(client)
            except ModbusIOException as exc:  # pymodbus: no answer in its timeout
                error: CommunicationLost = InstrumentTimeout(
                    self.name, op, f"no answer within {self.settings.timeout} s ({exc})"
                )
                self.drop(error.detail)
                raise error from None
            except (ModbusException, OSError, ValueError, AttributeError) as exc:
                error = CommunicationLost(self.name, op, f"{type(exc).__name__}: {exc}")
                self.drop(error.detail)
                raise error from None
        if rsp is None:
            raise self.garbage(op, "empty answer")
        got = int(getattr(rsp, "function_code", -1))
        if got & 0x7F != fc:
            raise self.garbage(op, f"function {got:#04x} answered a request of {fc:#04x}")
        if rsp.isError():
            raise self._exception(op, int(getattr(rsp, "exception_code", 0)), busy)
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

    # ------------------------------------------------------------------ reads
    async def read_status(self, op: str) -> Status:
        regs = await self.read_input(op, 0, icd.STATUS_REGS)
        try:
            status = decode_status(regs)
        except OutOfIcd as exc:
            raise self.garbage(op, str(exc)) from None
        if status.heartbeat != self._heartbeat[0]:
            self._heartbeat = (status.heartbeat, time.monotonic())
        return status

    async def read_slot(self, op: str, slot: int) -> JobStatus | None:
        regs = await self.read_input(op, icd.slot_base(slot), SLOT_READ)
        try:
            return decode_slot(slot, regs)
        except OutOfIcd as exc:
            raise self.garbage(op, str(exc)) from None

    async def read_all_slots(self, op: str) -> dict[int, JobStatus]:
        slots: dict[int, JobStatus] = {}
        for first in range(0, icd.SLOT_COUNT, SLOTS_PER_READ):
            regs = await self.read_input(op, icd.slot_base(first), CHUNK_REGS)
            try:
                slots.update(decode_slots(first, regs, SLOTS_PER_READ))
            except OutOfIcd as exc:
                raise self.garbage(op, str(exc)) from None
        return slots

    async def poll(self, op: str) -> None:
        """Read status and every slot; emit what changed since the last full read."""
        status = await self.read_status(op)
        slots = await self.read_all_slots(op)
        prev = self.status
        if prev is None or (prev.state, prev.fault_code, prev.free_slots) != (
            status.state,
            status.fault_code,
            status.free_slots,
        ):
            self._hub.emit(
                AnalyzerStatusChanged(
                    source=self.name,
                    state=status.state,
                    fault_code=status.fault_code,
                    free_slots=status.free_slots,
                )
            )
        for slot in range(icd.SLOT_COUNT):
            before, now = self.slots.get(slot), slots.get(slot)
            if now is not None and now != before:
                if before is not None and before.job_seq != now.job_seq:
                    self._hub.emit(JobChanged(source=self.name, job=_freed(before)))
                self._hub.emit(JobChanged(source=self.name, job=now))
            elif now is None and before is not None:
                self._hub.emit(JobChanged(source=self.name, job=_freed(before)))
        self.status, self.slots = status, slots

    def _check_heartbeat(self) -> None:
        beat, since = self._heartbeat
        stuck = time.monotonic() - since
        if stuck > self.settings.heartbeat_timeout:
            reason = f"heartbeat stuck at {beat} for {stuck:.1f} s"
            self.drop(reason)
            raise CommunicationLost(self.name, "poll", reason)

    # ------------------------------------------------------------------ client
    def _make_client(self) -> Client:
        generation = self._generation

        def traced(connected: bool) -> None:
            if not connected and generation == self._generation:
                self.drop("connection closed by peer")

        ep = self.endpoint
        common = {
            "name": self.name,
            "reconnect_delay": 0,
            "timeout": self.settings.timeout,
            "retries": 0,
            "trace_connect": traced,
        }
        if isinstance(ep, TcpEndpoint):
            return AsyncModbusTcpClient(ep.host, port=ep.port, **common)  # type: ignore[arg-type]
        return AsyncModbusSerialClient(
            ep.device,
            framer=FramerType.RTU,
            **ep.line.serial_settings(),
            **common,  # type: ignore[arg-type]
        )


def _freed(job: JobStatus) -> JobStatus:
    """The event of a slot that no longer holds ``job`` (released or reused)."""
    return replace(job, state=SlotState.FREE, progress_permille=0, results={})
