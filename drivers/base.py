"""The instrument interface the daemon programs against, whatever the wire.

This module owns three things and nothing else:

* the typed errors every driver raises (a caller never sees a raw asyncua,
  pymodbus or pyserial exception),
* the typed events every driver streams (state, progress, process values,
  cartridge ids, faults, analyzer jobs, connection lost / restored),
* the small Protocols ``Shuttle``, ``Analyzer`` and ``Balance`` that the OPC UA,
  Modbus and serial drivers implement.

Connection life cycle of every driver (events it emits in brackets)::

    closed --__aenter__--> connected --wire fault--> lost [ConnectionLost]
                               ^                        |
                               |  re-subscribe, re-read | backoff + jitter
                               +--[ConnectionRestored]--+
    any --__aexit__--> closed

While lost, calls raise ``CommunicationLost`` at once; no call is re-sent blindly.
"""

from __future__ import annotations

import time
from collections.abc import AsyncIterator, Mapping
from dataclasses import dataclass, field
from typing import Any, Protocol, Self, runtime_checkable

from drivers.icd import AnalyzerState, Assay, JobFault, ResultStatus, SlotState


# --------------------------------------------------------------------------- errors
class InstrumentError(Exception):
    """Base of every driver error: which instrument, which operation, what happened."""

    def __init__(self, instrument: str, operation: str, detail: str) -> None:
        super().__init__(f"{instrument}: {operation}: {detail}")
        self.instrument = instrument
        self.operation = operation
        self.detail = detail


class NotSupported(InstrumentError):
    """The unit does not offer the program (OPC UA BadNotSupported)."""


class InvalidArgument(InstrumentError):
    """A malformed id, an out-of-range parameter, a wrong TaskId (BadInvalidArgument, 03)."""


class IdentityMismatch(InstrumentError):
    """The bay holds no cartridge, or another one than asked (BadNoMatch): chain of identity."""


class InvalidState(InstrumentError):
    """The instrument is not in a state where the command applies (BadInvalidState, 04)."""


class Busy(InstrumentError):
    """The resource is taken: a slot not free (Modbus 06), the balance busy (``S I``)."""


class CommunicationLost(InstrumentError):
    """The connection is down or answered garbage; the outcome of the call is unknown."""


class InstrumentTimeout(CommunicationLost):
    """No answer in time; the outcome of the call is unknown (re-read before retrying)."""


class InvalidAnswer(InstrumentError):
    """The instrument answered outside the ICD (a malformed or out-of-range value, an
    unknown state, a result that is not the program's): the value is not passed on."""


# --------------------------------------------------------------------------- events
@dataclass(frozen=True, slots=True, kw_only=True)
class Event:
    """Base of every driver event. ``source`` names the instrument (its config name)."""

    source: str
    at: float = field(default_factory=time.time)


@dataclass(frozen=True, slots=True, kw_only=True)
class UnitStateChanged(Event):
    unit: str
    state: str  # icd.UnitState value
    task_id: str
    program: str = ""


@dataclass(frozen=True, slots=True, kw_only=True)
class ProgressChanged(Event):
    unit: str
    progress: float  # 0.0 .. 1.0
    remaining_seconds: float


@dataclass(frozen=True, slots=True, kw_only=True)
class ProcessValuesChanged(Event):
    unit: str
    values: Mapping[str, float]


@dataclass(frozen=True, slots=True, kw_only=True)
class CartridgeChanged(Event):
    """A bay's or the LoadPort's cartridge id changed ("" when it became empty)."""

    location: str  # a UnitId or icd.LOAD_PORT
    cartridge_id: str


@dataclass(frozen=True, slots=True, kw_only=True)
class OutputPortChanged(Event):
    cartridge_ids: tuple[str, ...]


@dataclass(frozen=True, slots=True, kw_only=True)
class FaultChanged(Event):
    """A unit's or the transport's (location ``Transport``) fault code; 0 when cleared."""

    location: str
    code: int
    text: str


@dataclass(frozen=True, slots=True, kw_only=True)
class TransportChanged(Event):
    state: str  # icd.TransportState value
    task_id: str


@dataclass(frozen=True, slots=True, kw_only=True)
class AnalyzerStatusChanged(Event):
    state: AnalyzerState
    fault_code: int
    free_slots: int


@dataclass(frozen=True, slots=True, kw_only=True)
class JobChanged(Event):
    job: JobStatus


@dataclass(frozen=True, slots=True, kw_only=True)
class ConnectionLost(Event):
    reason: str


@dataclass(frozen=True, slots=True, kw_only=True)
class ConnectionRestored(Event):
    """Emitted only after re-subscribing and re-reading the full state."""


# --------------------------------------------------------------------------- values
@dataclass(frozen=True, slots=True)
class UnitInfo:
    unit_id: str
    capabilities: tuple[str, ...]


@dataclass(frozen=True, slots=True)
class UnitStatus:
    unit_id: str
    state: str
    cartridge_id: str
    task_id: str
    program: str
    progress: float
    remaining_seconds: float
    fault_code: int
    fault_text: str


@dataclass(frozen=True, slots=True)
class TransportStatus:
    """The shuttle's transport, read now."""

    state: str  # icd.TransportState value
    task_id: str
    fault_code: int
    fault_text: str


# A program output (ICD "Programs"): a number, an id, or a list of ids (bag_ids).
OutputValue = int | float | str | tuple[str, ...]


@dataclass(frozen=True, slots=True)
class TaskResult:
    """GetResult, checked against the ICD program table by the driver.

    ``status`` tells a full run (``COMPLETE``) from one ended by Stop (``STOPPED``, the
    unit State reads Complete for both). ``outputs`` hold each output of the table with
    its kind (``icd.OUTPUT_KINDS``): read them with ``number``, ``ident`` and ``ids``.
    ``program`` is the program the caller expected, when it said so."""

    task_id: str
    status: ResultStatus
    outputs: Mapping[str, OutputValue]
    program: str | None = None

    def number(self, name: str) -> float:
        value = self.outputs[name]
        if isinstance(value, str | tuple):
            raise TypeError(f"output {name} is not a number")
        return float(value)

    def ident(self, name: str) -> str:
        value = self.outputs[name]
        if not isinstance(value, str):
            raise TypeError(f"output {name} is not an id")
        return value

    def ids(self, name: str) -> tuple[str, ...]:
        value = self.outputs[name]
        if not isinstance(value, tuple):
            raise TypeError(f"output {name} is not a list of ids")
        return value


@dataclass(frozen=True, slots=True)
class JobStatus:
    slot: int
    job_seq: int
    state: SlotState
    progress_permille: int
    fault: JobFault
    results: Mapping[Assay, float]  # only the panel's assays, once done


@dataclass(frozen=True, slots=True)
class Weight:
    grams: float
    stable: bool


# --------------------------------------------------------------------------- protocols
@runtime_checkable
class Instrument(Protocol):
    """What every driver is: a named async context manager with an event stream."""

    name: str

    async def __aenter__(self) -> Self: ...

    async def __aexit__(self, *exc_info: object) -> None: ...

    def events(self) -> AsyncIterator[Event]:
        """A new subscriber's stream of events, from now on, none dropped."""
        ...

    @property
    def reconnects(self) -> int:
        """Links restored after a loss since the driver was made (for metrics)."""
        ...


@runtime_checkable
class Shuttle(Instrument, Protocol):
    async def units(self) -> Mapping[str, UnitInfo]: ...

    async def unit_status(self, unit: str) -> UnitStatus:
        """The unit's variables, read now."""
        ...

    def cached_status(self, unit: str) -> UnitStatus:
        """The unit as the event stream last showed it (no wire access)."""
        ...

    async def start(
        self,
        unit: str,
        program: str,
        params: Mapping[str, Any],
        task_id: str,
        cartridge_id: str,
    ) -> str:
        """StartProgram; idempotent by ``task_id``. Returns the RunId."""
        ...

    async def hold(self, unit: str, task_id: str) -> None: ...

    async def unhold(self, unit: str, task_id: str) -> None: ...

    async def stop(self, unit: str, task_id: str) -> None: ...

    async def abort(self, unit: str, task_id: str) -> None: ...

    async def clear(self, unit: str) -> None:
        """Clear (Aborted|Faulted -> Idle). Not repeatable on the wire, so the state is
        read first: Idle is nothing to do, a repeat after a lost answer is safe."""
        ...

    async def result(
        self, task_id: str, unit: str | None = None, program: str | None = None
    ) -> TaskResult:
        """GetResult; with no ``unit`` every unit is asked (recovery after a restart).
        ``program``: the program the caller started under ``task_id``; the outputs must
        then be exactly that program's (``InvalidAnswer`` otherwise)."""
        ...

    async def load_port(self) -> str: ...

    async def output_port(self) -> tuple[str, ...]: ...

    async def move(self, cartridge_id: str, to: str, task_id: str) -> str:
        """Transport.Move; idempotent by ``task_id``. Returns the RunId."""
        ...

    async def clear_transport(self) -> None:
        """Transport.Clear (Faulted -> Idle), state read first as for ``clear``."""
        ...

    async def transport_status(self) -> TransportStatus:
        """The transport's State, TaskId, FaultCode and FaultText, read now."""
        ...


@runtime_checkable
class Analyzer(Instrument, Protocol):
    async def status(self) -> AnalyzerStatusChanged: ...

    async def submit(self, job_seq: int, sample_id: str, panel: Assay) -> int:
        """Submit a job (idempotent by ``job_seq``); returns its slot."""
        ...

    async def job(self, job_seq: int) -> JobStatus:
        """The job's slot, state, progress and (once done) results."""
        ...

    async def jobs(self) -> list[JobStatus]:
        """Every occupied slot."""
        ...

    async def abort(self, job_seq: int) -> None: ...

    async def release(self, job_seq: int) -> None: ...


@runtime_checkable
class Balance(Protocol):
    name: str

    async def __aenter__(self) -> Self: ...

    async def __aexit__(self, *exc_info: object) -> None: ...

    async def stable_weight(self) -> float:
        """``S``: grams once stable; Busy while unstable, InvalidState on over/underload."""
        ...

    async def weight_now(self) -> Weight:
        """``SI``: the weight now, stable or dynamic."""
        ...

    async def zero(self) -> None: ...

    async def tare(self) -> float: ...
