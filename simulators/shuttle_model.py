"""The Cell Shuttle twin's behaviour, without a protocol: units, transport, ports, histories.

Owns the state machines of ICD section 1 (and the controls of section 4) as plain
Python: ``ShuttleModel`` answers each ICD method by returning its result or raising
``Refused`` with the OPC UA status code name the ICD gives, and reports every variable
write it makes, in order, to an ``emit(path, value)`` callback (the OPC UA server,
``simulators.shuttle``, turns them into writes with a SourceTimestamp each). The physical
truth (cells, volumes, samples, bags) lives in ``simulators.world.World``.

Unit state machine (ICD 1, "StartProgram", "Hold, Unhold, Stop, Abort", "Faults")::

    Idle|Complete --StartProgram--> Running --(nominal time done)--> Complete
    Running --Hold--> Held --Unhold--> Running        (Held stops the program clock)
    Running|Held --Stop--> Complete (result Stopped, outputs for the part that ran)
    Running|Held --Abort--> Aborted
    any --InjectFault--> Faulted (a running program ends Faulted)
    Aborted|Faulted --Clear--> Idle (the cartridge stays)
    Complete --cartridge leaves (Move)--> Idle

Hold, Unhold, Stop, Abort and Clear are one table, ``UNIT_COMMANDS`` (data), applied
by one function, ``ShuttleModel.command``.

Transport::

    Idle --Move--> Moving --(60 process s)--> Idle   (cartridge in no bay meanwhile)
    any --InjectFault--> Faulted (a move in flight puts the cartridge back) --Clear--> Idle

Write order (ICD 1.1): a unit's TaskId and Program are written before its State, the
transport's TaskId before its State, so a client pairs a start with its TaskId.
"""

from __future__ import annotations

import collections
import json
import math
import uuid
from collections.abc import Callable, Mapping, Sequence
from dataclasses import dataclass, field
from typing import Any, Final

import structlog

from drivers import icd
from drivers.icd import (
    BAD_INVALID_ARGUMENT,
    BAD_INVALID_STATE,
    BAD_NO_MATCH,
    BAD_NOT_SUPPORTED,
    BAD_OUT_OF_RANGE,
    ResultStatus,
    TransportState,
    UnitState,
)
from drivers.icd import BrowseName as BN
from simulators.world import IN_TRANSPORT, PROCESS_VALUE_NAMES, REMOVED, World

log = structlog.get_logger("cellfab.twins.shuttle")

_INCUBATOR: Final = ("activation", "transduction", "expansion", "sample")
DEFAULT_CAPABILITIES: Final[dict[str, tuple[str, ...]]] = {
    "SEL1": ("cell_selection",),
    "EP1": ("electroporation", "transduction", "activation"),
    **{f"INC{i:02d}": _INCUBATOR for i in range(1, 17)},
    "CFC1": ("harvest_wash", "formulation", "sample"),
    "FIN1": ("fill_finish", "sample"),
}
# Fallback for other unit names, by their letter prefix (e.g. INC17, SEL2).
_CAPABILITIES_BY_PREFIX: Final[dict[str, tuple[str, ...]]] = {
    "SEL": DEFAULT_CAPABILITIES["SEL1"],
    "EP": DEFAULT_CAPABILITIES["EP1"],
    "INC": _INCUBATOR,
    "CFC": DEFAULT_CAPABILITIES["CFC1"],
    "FIN": DEFAULT_CAPABILITIES["FIN1"],
}

MAX_PARAMETERS_CHARS: Final = 16_384
MAX_FAULT_TEXT_CHARS: Final = 256
MODEL_ERROR_FAULT: Final = 900  # FaultCode when the world model refuses a program's effect

Path = tuple[str, ...]  # a variable's browse path under Objects/Shuttle


class Refused(Exception):
    """An ICD method answers with a Bad status code (its OPC UA name) and changes nothing."""

    def __init__(self, status: str, why: str = "") -> None:
        super().__init__(f"{status}: {why}" if why else status)
        self.status = status
        self.why = why


# --------------------------------------------------------------------------- commands
@dataclass(frozen=True, slots=True)
class UnitCommand:
    """One row of the unit command table (ICD "Hold, Unhold, Stop, Abort" and "Faults")."""

    acts_in: frozenset[UnitState]  # states where the command applies
    reaches: UnitState  # the state it leaves the unit in
    repeatable: bool  # in ``reaches`` already: Good and nothing changes (a repeat)
    takes_task_id: bool  # BadInvalidArgument unless the TaskId is the unit's
    run_becomes: ResultStatus | None  # what the active program's result becomes
    ends_run: bool  # the program ends (outputs computed for the part that ran)


_R, _H = UnitState.RUNNING, UnitState.HELD
UNIT_COMMANDS: Final[dict[str, UnitCommand]] = {
    BN.HOLD: UnitCommand(frozenset({_R}), _H, True, True, ResultStatus.HELD, False),
    BN.UNHOLD: UnitCommand(frozenset({_H}), _R, True, True, ResultStatus.RUNNING, False),
    BN.STOP: UnitCommand(
        frozenset({_R, _H}), UnitState.COMPLETE, True, True, ResultStatus.STOPPED, True
    ),
    BN.ABORT: UnitCommand(
        frozenset({_R, _H}), UnitState.ABORTED, True, True, ResultStatus.ABORTED, True
    ),
    BN.CLEAR: UnitCommand(
        frozenset({UnitState.ABORTED, UnitState.FAULTED}), UnitState.IDLE, False, False, None, False
    ),
}
# The unit state after a program ends with a result status.
_END_STATE: Final = {
    ResultStatus.COMPLETE: UnitState.COMPLETE,
    ResultStatus.STOPPED: UnitState.COMPLETE,
    ResultStatus.ABORTED: UnitState.ABORTED,
    ResultStatus.FAULTED: UnitState.FAULTED,
}


# --------------------------------------------------------------------------- records
@dataclass
class ProgramRun:
    """One program started on a unit (an entry of its history)."""

    task_id: str
    run_id: str
    program: str
    params: dict[str, Any]
    cartridge_id: str
    nominal_s: float
    elapsed_s: float = 0.0
    status: ResultStatus = ResultStatus.RUNNING
    outputs: dict[str, Any] = field(default_factory=dict)

    @property
    def fraction(self) -> float:
        return 1.0 if self.nominal_s <= 0 else min(self.elapsed_s / self.nominal_s, 1.0)


@dataclass
class MoveRun:
    """One transport move (an entry of the transport's history)."""

    task_id: str
    run_id: str
    cartridge_id: str
    source: str
    dest: str
    elapsed_s: float = 0.0
    status: str = "Moving"  # Moving | Complete | Faulted


@dataclass
class UnitModel:
    unit_id: str
    capabilities: tuple[str, ...]
    state: UnitState = UnitState.IDLE
    cartridge_id: str = ""
    task_id: str = ""
    program: str = ""
    progress: float = 0.0
    remaining_s: float = 0.0
    fault_code: int = 0
    fault_text: str = ""
    active: ProgramRun | None = None
    history: collections.deque[ProgramRun] = field(
        default_factory=lambda: collections.deque(maxlen=icd.HISTORY_LEN)
    )
    process_values: dict[str, float] = field(
        default_factory=lambda: dict.fromkeys(PROCESS_VALUE_NAMES, 0.0)
    )

    def find(self, task_id: str) -> ProgramRun | None:
        return next((r for r in self.history if r.task_id == task_id), None)


@dataclass
class TransportModel:
    state: TransportState = TransportState.IDLE
    task_id: str = ""
    fault_code: int = 0
    fault_text: str = ""
    active: MoveRun | None = None
    history: collections.deque[MoveRun] = field(
        default_factory=lambda: collections.deque(maxlen=icd.HISTORY_LEN)
    )

    def find(self, task_id: str) -> MoveRun | None:
        return next((m for m in self.history if m.task_id == task_id), None)


def default_capabilities(unit_id: str) -> tuple[str, ...]:
    if unit_id in DEFAULT_CAPABILITIES:
        return DEFAULT_CAPABILITIES[unit_id]
    prefix = unit_id.rstrip("0123456789")
    if prefix in _CAPABILITIES_BY_PREFIX:
        return _CAPABILITIES_BY_PREFIX[prefix]
    raise ValueError(f"no default capabilities for unit {unit_id!r}; pass capabilities=")


# --------------------------------------------------------------------------- the model
class ShuttleModel:
    """Units, transport, ports and histories of one shuttle (see the module doc)."""

    def __init__(
        self,
        world: World,
        units: Sequence[str],
        capabilities: Mapping[str, Sequence[str]] | None,
        emit: Callable[[Path, Any], None],
    ) -> None:
        reserved = {icd.LOAD_PORT, icd.OUTPUT_PORT, icd.TRANSPORT}
        caps_in = dict(capabilities or {})
        self.world = world
        self.emit = emit
        self.units: dict[str, UnitModel] = {}
        for unit_id in units:
            if not icd.is_id(unit_id) or unit_id in reserved or unit_id in self.units:
                raise ValueError(f"bad or duplicate unit id {unit_id!r}")
            caps = tuple(caps_in.pop(unit_id, None) or default_capabilities(unit_id))
            unknown = [p for p in caps if p not in icd.PROGRAMS]
            if unknown:
                raise ValueError(f"unit {unit_id}: unknown programs {unknown}")
            self.units[unit_id] = UnitModel(unit_id, caps)
        if caps_in:
            raise ValueError(f"capabilities for units that do not exist: {sorted(caps_in)}")
        self.transport = TransportModel()
        self.load_port = ""
        self.output_port: list[str] = []
        self.sample_ids: set[str] = set()  # every SampleId a sample program used (1.1)
        self.started: list[dict[str, Any]] = []  # Twin/StartedPrograms, oldest first
        self.now = 0.0

    def started_json(self) -> str:
        return json.dumps(self.started, allow_nan=False, separators=(",", ":"))

    def _record_start(self, unit: str, task_id: str, program: str, cartridge_id: str) -> None:
        self.started.append(
            {
                "unit": unit,
                "task_id": task_id,
                "program": program,
                "cartridge_id": cartridge_id,
                "at": self.now,
            }
        )

    # ------------------------------------------------------------------ time
    def advance(self, now: float, *, report: bool = True) -> None:
        """Advance running programs and the move in flight to process time ``now``.

        ``report``: emit every running unit's Progress, RemainingSeconds and process
        values (the tick does). A method call advances with ``report=False``: ends and
        arrivals are still emitted at once, but the values the ICD lets a client see
        merged wait for the next tick, so a call costs the same with 1 or 256 running
        units (it used to write every running unit's values: 14 ms a call at 64)."""
        dt = max(0.0, now - self.now)
        self.now = now
        self.world.now = now
        for unit in self.units.values():
            run = unit.active
            if run is None or unit.state is not UnitState.RUNNING:
                continue
            run.elapsed_s = min(run.elapsed_s + dt, run.nominal_s)
            if run.elapsed_s >= run.nominal_s:
                self._finish(unit, run, ResultStatus.COMPLETE)
            elif report:
                self._progress(unit, run)
            else:  # kept current for any emit of this unit before the next report
                _position(unit, run)
        move = self.transport.active
        if move is not None and self.transport.state is TransportState.MOVING:
            move.elapsed_s += dt
            if move.elapsed_s >= icd.MOVE_SECONDS:
                self._arrive(move)

    def _progress(self, unit: UnitModel, run: ProgramRun) -> None:
        _position(unit, run)
        try:
            pv = self.world.process_values(run.cartridge_id, run.program, run.params, run.fraction)
        except Exception:  # the preview is cosmetic: keep the last values
            log.warning("process values unavailable", unit=unit.unit_id, program=run.program)
        else:
            unit.process_values.update(
                {k: float(pv[k]) for k in PROCESS_VALUE_NAMES if k in pv and math.isfinite(pv[k])}
            )
        self._unit_emit(unit)

    def _finish(self, unit: UnitModel, run: ProgramRun, status: ResultStatus) -> None:
        """End the active program: Complete, Stopped (part run), Aborted or Faulted."""
        self._progress(unit, run)
        outputs: dict[str, Any] = {}
        if status in (ResultStatus.COMPLETE, ResultStatus.STOPPED):
            try:
                outputs = self.world.run_program(
                    run.cartridge_id, run.program, run.params, run.fraction
                )
                errors = icd.PROGRAMS[run.program].check_outputs(
                    outputs, complete=status is ResultStatus.COMPLETE
                )
                if errors:
                    raise ValueError("; ".join(errors))
            except Exception as exc:  # the model refused: surface it as an instrument fault
                log.exception("world refused a program", unit=unit.unit_id, program=run.program)
                status, outputs = ResultStatus.FAULTED, {}
                unit.fault_code = MODEL_ERROR_FAULT
                unit.fault_text = f"process model: {exc}"[:MAX_FAULT_TEXT_CHARS]
        run.status = status
        run.outputs = outputs
        unit.active = None
        unit.remaining_s = 0.0
        unit.state = _END_STATE[status]
        if status is ResultStatus.COMPLETE and run.fraction >= 1.0:
            unit.progress = 1.0
        self._unit_emit(unit)

    # ------------------------------------------------------------------ unit methods
    def start_program(
        self, unit: UnitModel, program: str, parameters: str, task_id: str, cartridge_id: str
    ) -> str:
        # 1. idempotency, before any other check
        found = unit.find(task_id)
        if found is not None:
            return found.run_id
        # 2. malformed ids
        if not (icd.is_task_id(task_id) and icd.is_id(cartridge_id) and icd.is_id(program)):
            raise Refused(BAD_INVALID_ARGUMENT, "malformed TaskId/CartridgeId/Program")
        # 3. capability
        if program not in unit.capabilities:
            raise Refused(BAD_NOT_SUPPORTED, f"{unit.unit_id} does not run {program}")
        # 4. parameters (1.1: a SampleId any sample program used before is refused)
        if len(parameters) > MAX_PARAMETERS_CHARS:
            raise Refused(BAD_INVALID_ARGUMENT, "Parameters too long")
        params, errors = icd.parse_parameters(program, parameters)
        if params is None:
            raise Refused(BAD_INVALID_ARGUMENT, "; ".join(errors))
        sample_id = params.get("sample_id") if program == "sample" else None
        if sample_id is not None and sample_id in self.sample_ids:
            raise Refused(BAD_INVALID_ARGUMENT, f"SampleId {sample_id} was used before")
        # 5. chain of identity
        if not unit.cartridge_id or unit.cartridge_id != cartridge_id:
            raise Refused(BAD_NO_MATCH, "bay holds no or another cartridge")
        # 6. state
        if unit.state not in icd.STARTABLE_STATES:
            raise Refused(BAD_INVALID_STATE, f"unit is {unit.state}")
        run = ProgramRun(
            task_id=task_id,
            run_id=f"{unit.unit_id}-{uuid.uuid4().hex}",
            program=program,
            params=params,
            cartridge_id=cartridge_id,
            nominal_s=float(icd.PROGRAMS[program].nominal_seconds(params)),
        )
        if sample_id is not None:
            self.sample_ids.add(sample_id)
        unit.history.append(run)
        unit.active = run
        unit.task_id, unit.program = task_id, program
        unit.progress, unit.remaining_s = 0.0, run.nominal_s
        unit.state = UnitState.RUNNING
        self._record_start(unit.unit_id, task_id, program, cartridge_id)
        self._unit_emit(unit)
        return run.run_id

    def command(self, unit: UnitModel, name: str, task_id: str | None = None) -> None:
        """Hold, Unhold, Stop, Abort or Clear: the row ``UNIT_COMMANDS[name]`` applied."""
        rule = UNIT_COMMANDS[name]
        if rule.takes_task_id and (not icd.is_task_id(task_id) or task_id != unit.task_id):
            raise Refused(BAD_INVALID_ARGUMENT, "TaskId is not the unit's TaskId")
        if rule.repeatable and unit.state is rule.reaches:
            return
        run = unit.active
        if unit.state not in rule.acts_in or (rule.run_becomes is not None and run is None):
            raise Refused(BAD_INVALID_STATE, f"{name} does not apply to a {unit.state} unit")
        if rule.ends_run and run is not None and rule.run_becomes is not None:
            self._finish(unit, run, rule.run_becomes)
            return
        if run is not None and rule.run_becomes is not None:
            run.status = rule.run_becomes
        if rule.run_becomes is None:  # Clear: the fault goes with it
            unit.fault_code, unit.fault_text = 0, ""
        unit.state = rule.reaches
        self._unit_emit(unit)

    def get_result(self, unit: UnitModel, task_id: str) -> tuple[str, str]:
        if not icd.is_task_id(task_id):
            raise Refused(BAD_INVALID_ARGUMENT)
        run = unit.find(task_id)
        if run is None:
            return str(ResultStatus.UNKNOWN), "{}"
        return str(run.status), json.dumps(run.outputs, allow_nan=False)

    # ------------------------------------------------------------------ transport
    def _where(self, cartridge_id: str) -> str | None:
        """Where a cartridge is in the shuttle: LoadPort, a UnitId, Transport, or None."""
        if cartridge_id and self.load_port == cartridge_id:
            return icd.LOAD_PORT
        for unit in self.units.values():
            if unit.cartridge_id == cartridge_id:
                return unit.unit_id
        move = self.transport.active
        if move is not None and move.cartridge_id == cartridge_id:
            return IN_TRANSPORT
        return None

    def move(self, cartridge_id: str, to_unit: str, task_id: str) -> str:
        t = self.transport
        found = t.find(task_id)
        if found is not None:
            return found.run_id
        valid_dest = to_unit in self.units or to_unit in (icd.LOAD_PORT, icd.OUTPUT_PORT)
        if not (icd.is_id(cartridge_id) and icd.is_task_id(task_id) and valid_dest):
            raise Refused(BAD_INVALID_ARGUMENT, "malformed id or unknown ToUnit")
        source = self._where(cartridge_id)
        if source is None:
            raise Refused(BAD_NO_MATCH, "no such cartridge in the shuttle")
        if t.state is not TransportState.IDLE:
            raise Refused(BAD_INVALID_STATE, f"transport is {t.state}")
        if to_unit == icd.LOAD_PORT and self.load_port:
            raise Refused(BAD_INVALID_STATE, "the LoadPort holds a cartridge")
        if to_unit in self.units and self.units[to_unit].cartridge_id:
            raise Refused(BAD_INVALID_STATE, "the destination holds a cartridge")
        src_unit = self.units.get(source)
        if src_unit is not None and src_unit.state not in icd.LEAVABLE_STATES:
            raise Refused(BAD_INVALID_STATE, f"source unit is {src_unit.state}")
        move = MoveRun(task_id, f"MOVE-{uuid.uuid4().hex}", cartridge_id, source, to_unit)
        t.history.append(move)
        t.active = move
        t.task_id = task_id
        t.state = TransportState.MOVING
        self._record_start(icd.TRANSPORT, task_id, "move", cartridge_id)
        if source == icd.LOAD_PORT:
            self.load_port = ""
            self._ports_emit()
        elif src_unit is not None:
            src_unit.cartridge_id = ""
            if src_unit.state is UnitState.COMPLETE:
                src_unit.state = UnitState.IDLE
            self._unit_emit(src_unit)
        self.world.set_location(cartridge_id, IN_TRANSPORT)
        self._transport_emit()
        return move.run_id

    def _put_cartridge(self, cartridge_id: str, where: str) -> None:
        if where == icd.LOAD_PORT:
            self.load_port = cartridge_id
            self._ports_emit()
        elif where == icd.OUTPUT_PORT:
            self.output_port.append(cartridge_id)
            self._ports_emit()
        else:
            unit = self.units[where]
            unit.cartridge_id = cartridge_id
            self._unit_emit(unit)
        self.world.set_location(cartridge_id, where)

    def _arrive(self, move: MoveRun) -> None:
        self._put_cartridge(move.cartridge_id, move.dest)
        move.status = "Complete"
        move.elapsed_s = icd.MOVE_SECONDS
        self.transport.active = None
        self.transport.state = TransportState.IDLE
        self._transport_emit()

    def transport_clear(self) -> None:
        t = self.transport
        if t.state is not TransportState.FAULTED:
            raise Refused(BAD_INVALID_STATE, f"transport is {t.state}")
        t.state = TransportState.IDLE
        t.fault_code, t.fault_text = 0, ""
        self._transport_emit()

    # ------------------------------------------------------------------ twin controls
    def insert_cartridge(self, cartridge_id: str, cells: float, viability_pct: float) -> None:
        """ICD 4: arguments first (id, then the ranges of 1.1), then the port (1.1)."""
        if not icd.is_id(cartridge_id) or cartridge_id in self.world.cartridges:
            raise Refused(BAD_INVALID_ARGUMENT, "malformed or used cartridge id")
        for name, value, (lo, hi) in (
            ("Cells", cells, icd.TWIN_CELLS),
            ("ViabilityPct", viability_pct, icd.TWIN_VIABILITY_PCT),
        ):
            if not lo <= value <= hi:  # NaN compares False: out of range too
                raise Refused(BAD_OUT_OF_RANGE, f"{name} {value!r} is outside {lo:g}..{hi:g}")
        move = self.transport.active
        reserved = move is not None and icd.LOAD_PORT in (move.source, move.dest)
        if self.load_port or reserved:
            raise Refused(BAD_INVALID_STATE, "the LoadPort is taken")
        self.world.insert_cartridge(cartridge_id, cells, viability_pct)
        self.load_port = cartridge_id
        self._ports_emit()

    def remove_cartridge(self, cartridge_id: str) -> None:
        if not icd.is_id(cartridge_id):
            raise Refused(BAD_INVALID_ARGUMENT)
        if cartridge_id not in self.output_port:
            raise Refused(BAD_NO_MATCH, "not at the OutputPort")
        self.output_port.remove(cartridge_id)
        self.world.set_location(cartridge_id, REMOVED)
        self._ports_emit()

    def inject_fault(self, unit_id: str, fault_code: int, fault_text: str) -> None:
        if fault_code == 0 or len(fault_text) > MAX_FAULT_TEXT_CHARS:
            raise Refused(BAD_INVALID_ARGUMENT, "FaultCode 0 or FaultText too long")
        if unit_id == icd.TRANSPORT:
            t = self.transport
            move = t.active
            if move is not None:
                move.status = "Faulted"
                t.active = None
                self._put_cartridge(move.cartridge_id, move.source)
            t.state = TransportState.FAULTED
            t.fault_code, t.fault_text = fault_code, fault_text
            self._transport_emit()
            return
        unit = self.units.get(unit_id)
        if unit is None:
            raise Refused(BAD_INVALID_ARGUMENT, f"unknown unit {unit_id!r}")
        unit.fault_code, unit.fault_text = fault_code, fault_text
        if unit.active is not None:
            self._finish(unit, unit.active, ResultStatus.FAULTED)
            unit.fault_code, unit.fault_text = fault_code, fault_text
        unit.state = UnitState.FAULTED
        self._unit_emit(unit)

    # ------------------------------------------------------------------ writes, in order
    def _unit_emit(self, unit: UnitModel) -> None:
        k = (BN.UNITS, unit.unit_id)
        self.emit((*k, BN.TASK_ID), unit.task_id)
        self.emit((*k, BN.PROGRAM), unit.program)
        self.emit((*k, BN.CARTRIDGE_ID), unit.cartridge_id)
        self.emit((*k, BN.FAULT_CODE), unit.fault_code)
        self.emit((*k, BN.FAULT_TEXT), unit.fault_text)
        self.emit((*k, BN.PROGRESS), unit.progress)
        self.emit((*k, BN.REMAINING_SECONDS), unit.remaining_s)
        for name, value in unit.process_values.items():
            self.emit((*k, BN.PROCESS_VALUES, name), float(value))
        self.emit((*k, BN.STATE), str(unit.state))

    def _transport_emit(self) -> None:
        t, k = self.transport, BN.TRANSPORT
        self.emit((k, BN.TASK_ID), t.task_id)
        self.emit((k, BN.FAULT_CODE), t.fault_code)
        self.emit((k, BN.FAULT_TEXT), t.fault_text)
        self.emit((k, BN.STATE), str(t.state))

    def _ports_emit(self) -> None:
        self.emit((BN.LOAD_PORT, BN.CARTRIDGE_ID), self.load_port)
        self.emit((BN.OUTPUT_PORT, BN.CARTRIDGE_IDS), list(self.output_port))


def _position(unit: UnitModel, run: ProgramRun) -> None:
    """The unit's Progress and RemainingSeconds where its program is now."""
    unit.progress = run.fraction
    unit.remaining_s = max(0.0, run.nominal_s - run.elapsed_s)
