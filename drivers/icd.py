"""The instrument interface control document (shared/ICD.md, version 1) as code.

This module owns every fact of the wire contract that both sides of a wire need:
namespace URIs, browse names, state names, identifier rules, the program table with
parameter ranges and outputs, the Cell Q register map, panel bits, the register
codecs (uint32, float32, strings, high word first) and the balance's line format.

The twins (simulators/) and the drivers (drivers/) both import it; it imports
nothing from either, so neither side of a wire shares the other's code. Keep it in
step with ICD.md: where they disagree, one of them is a bug.
"""

from __future__ import annotations

import json
import math
import re
import struct
from collections.abc import Callable, Mapping
from dataclasses import dataclass, field
from enum import IntEnum, IntFlag, StrEnum
from typing import Any, Final

ICD_VERSION: Final = 1

# --------------------------------------------------------------------------- section 0
ID_RE: Final = re.compile(r"[A-Za-z0-9._-]{1,32}")
TASK_ID_RE: Final = re.compile(r"[A-Za-z0-9._/-]{1,64}")
SAMPLE_ID_RE: Final = re.compile(r"[A-Za-z0-9._-]{1,16}")
RUN_ID_MAX: Final = 64


def is_id(value: object) -> bool:
    """CartridgeId, UnitId and string parameters: ``[A-Za-z0-9._-]{1,32}``."""
    return isinstance(value, str) and ID_RE.fullmatch(value) is not None


def is_task_id(value: object) -> bool:
    """TaskId: ``[A-Za-z0-9._/-]{1,64}`` (``B0007/expand/2`` is one)."""
    return isinstance(value, str) and TASK_ID_RE.fullmatch(value) is not None


def is_sample_id(value: object) -> bool:
    """SampleId: ``[A-Za-z0-9._-]{1,16}`` (fits the analyzer's 8 registers)."""
    return isinstance(value, str) and SAMPLE_ID_RE.fullmatch(value) is not None


# --------------------------------------------------------------------------- section 1
SHUTTLE_NS: Final = "urn:cellfab:shuttle:v1"
TWIN_NS: Final = "urn:cellfab:twin:v1"
DEFAULT_SHUTTLE_PORT: Final = 4840
SHUTTLE_PATH: Final = "/shuttle"

# Section 4 (1.1): ranges of the twin controls' arguments (closed), else BadOutOfRange.
TWIN_CELLS: Final = (1e3, 1e11)
TWIN_VIABILITY_PCT: Final = (0.0, 100.0)
TWIN_TIME_SCALE: Final = (0.001, 1e7)

HISTORY_LEN: Final = 64  # programs per unit / moves of the transport kept for idempotency
MOVE_SECONDS: Final = 60.0  # process time of one transport move
LOAD_PORT: Final = "LoadPort"
OUTPUT_PORT: Final = "OutputPort"
TRANSPORT: Final = "Transport"

DEFAULT_UNITS: Final[tuple[str, ...]] = (
    "SEL1",
    "EP1",
    *(f"INC{i:02d}" for i in range(1, 17)),
    "CFC1",
    "FIN1",
)


class BrowseName:
    """Browse names of the shuttle address space (all in SHUTTLE_NS)."""

    SHUTTLE = "Shuttle"
    IDENTIFICATION = "Identification"
    MANUFACTURER = "Manufacturer"
    MODEL = "Model"
    SERIAL_NUMBER = "SerialNumber"
    SOFTWARE_REVISION = "SoftwareRevision"
    DEVICE_STATE = "DeviceState"
    HEARTBEAT = "Heartbeat"
    LOAD_PORT = "LoadPort"
    OUTPUT_PORT = "OutputPort"
    CARTRIDGE_ID = "CartridgeId"
    CARTRIDGE_IDS = "CartridgeIds"
    TRANSPORT = "Transport"
    STATE = "State"
    TASK_ID = "TaskId"
    FAULT_CODE = "FaultCode"
    FAULT_TEXT = "FaultText"
    MOVE = "Move"
    CLEAR = "Clear"
    UNITS = "Units"
    CAPABILITIES = "Capabilities"
    PROGRAM = "Program"
    PROGRESS = "Progress"
    REMAINING_SECONDS = "RemainingSeconds"
    PROCESS_VALUES = "ProcessValues"
    START_PROGRAM = "StartProgram"
    HOLD = "Hold"
    UNHOLD = "Unhold"
    STOP = "Stop"
    ABORT = "Abort"
    GET_RESULT = "GetResult"
    # section 4, in TWIN_NS
    TWIN = "Twin"
    INSERT_CARTRIDGE = "InsertCartridge"
    REMOVE_CARTRIDGE = "RemoveCartridge"
    INJECT_FAULT = "InjectFault"
    TIME_SCALE = "TimeScale"
    STARTED_PROGRAMS = "StartedPrograms"  # 1.1


class DeviceState(StrEnum):
    INITIALIZATION = "Initialization"
    OPERATE = "Operate"
    SLEEP = "Sleep"
    SHUTDOWN = "Shutdown"


class UnitState(StrEnum):
    IDLE = "Idle"
    RUNNING = "Running"
    HELD = "Held"
    COMPLETE = "Complete"
    ABORTED = "Aborted"
    FAULTED = "Faulted"


class TransportState(StrEnum):
    IDLE = "Idle"
    MOVING = "Moving"
    FAULTED = "Faulted"


class ResultStatus(StrEnum):
    """``GetResult`` Status values."""

    RUNNING = "Running"
    HELD = "Held"
    COMPLETE = "Complete"
    STOPPED = "Stopped"  # 1.1: ended by Stop (the unit reads Complete); outputs for the part run
    ABORTED = "Aborted"
    FAULTED = "Faulted"
    UNKNOWN = "Unknown"


# Status codes the ICD names, by their OPC UA name.
BAD_INVALID_ARGUMENT: Final = "BadInvalidArgument"
BAD_NOT_SUPPORTED: Final = "BadNotSupported"
BAD_NO_MATCH: Final = "BadNoMatch"
BAD_INVALID_STATE: Final = "BadInvalidState"
BAD_OUT_OF_RANGE: Final = "BadOutOfRange"  # twin control arguments (section 4, 1.1)

# Units a cartridge may leave (ICD "Moves").
LEAVABLE_STATES: Final = frozenset(
    {UnitState.IDLE, UnitState.COMPLETE, UnitState.ABORTED, UnitState.FAULTED}
)
# Units that accept StartProgram.
STARTABLE_STATES: Final = frozenset({UnitState.IDLE, UnitState.COMPLETE})


# --------------------------------------------------------------------------- programs
class ParamKind(StrEnum):
    NUMBER = "number"
    INT = "int"
    STR = "str"  # an identifier, ID_RE
    ENUM = "enum"
    SAMPLE_ID = "sample_id"  # a SampleId, SAMPLE_ID_RE


@dataclass(frozen=True, slots=True)
class ParamSpec:
    """One parameter of a program: its type and, for numbers, its closed range."""

    name: str
    kind: ParamKind
    minimum: float | None = None
    maximum: float | None = None
    choices: tuple[str, ...] = ()
    unit: str = ""

    def check(self, value: object) -> str | None:
        """Return why ``value`` is not acceptable for this parameter, or None."""
        if self.kind in (ParamKind.NUMBER, ParamKind.INT):
            if isinstance(value, bool) or not isinstance(value, int | float):
                return f"{self.name} must be a number, got {_json_type(value)}"
            # JSON integers are unbounded: never convert one to float (OverflowError);
            # int/float comparisons below are exact whatever the size.
            if isinstance(value, float) and not math.isfinite(value):
                return f"{self.name} must be finite, got {value!r}"
            if self.kind is ParamKind.INT and isinstance(value, float) and not value.is_integer():
                return f"{self.name} must be a whole number, got {value!r}"
            if self.minimum is not None and value < self.minimum:
                return f"{self.name}={value!r} is below {_fmt(self.minimum)}"
            if self.maximum is not None and value > self.maximum:
                return f"{self.name}={value!r} is above {_fmt(self.maximum)}"
            return None
        if not isinstance(value, str):
            return f"{self.name} must be a string, got {_json_type(value)}"
        if self.kind is ParamKind.ENUM:
            if value not in self.choices:
                return f"{self.name}={value!r} is not one of {', '.join(self.choices)}"
            return None
        if self.kind is ParamKind.SAMPLE_ID:
            if not is_sample_id(value):
                return f"{self.name}={value!r} is not a SampleId ([A-Za-z0-9._-]{{1,16}})"
            return None
        if not is_id(value):
            return f"{self.name}={value!r} is not an identifier ([A-Za-z0-9._-]{{1,32}})"
        return None

    def describe(self) -> str:
        if self.kind is ParamKind.ENUM:
            return f"enum {'|'.join(self.choices)}"
        if self.minimum is not None:
            return f"{self.kind} {_fmt(self.minimum)}..{_fmt(self.maximum)}"
        return str(self.kind)


class OutputKind(StrEnum):
    """What a program output holds (ICD "Programs": numbers, except ids and bag_ids)."""

    NUMBER = "number"  # a finite JSON number
    ID = "id"  # an identifier, ID_RE
    SAMPLE_ID = "sample_id"  # a SampleId, SAMPLE_ID_RE
    IDS = "ids"  # a JSON array of identifiers


# The kind of every output name of the program table (a name means one thing in every
# program that has it).
OUTPUT_KINDS: Final[dict[str, OutputKind]] = {
    "cells_out": OutputKind.NUMBER,
    "purity_pct": OutputKind.NUMBER,
    "efficiency_pct": OutputKind.NUMBER,
    "viability_pct": OutputKind.NUMBER,
    "volume_ml": OutputKind.NUMBER,
    "bags": OutputKind.NUMBER,
    "sample_id": OutputKind.SAMPLE_ID,
    "bag_ids": OutputKind.IDS,
}


_FLOAT_LIMIT: Final = 2**1024  # JSON integers from here on have no float


def check_output(name: str, value: object) -> str | None:
    """Why ``value`` (decoded JSON) is not what output ``name`` holds, or None."""
    kind = OUTPUT_KINDS.get(name)
    if kind is None:
        return f"{_short(name)} is not an output of the ICD program table"
    if kind is OutputKind.NUMBER:
        if isinstance(value, bool) or not isinstance(value, int | float):
            return f"{name} must be a number, got {_json_type(value)}"
        if isinstance(value, float) and not math.isfinite(value):
            return f"{name} must be finite, got {value!r}"
        if isinstance(value, int) and abs(value) >= _FLOAT_LIMIT:
            return f"{name} is out of range, got {_short(value)}"
        return None
    if kind is OutputKind.IDS:
        if not isinstance(value, list) or not all(is_id(v) for v in value):
            return f"{name} must be an array of identifiers, got {_short(value)}"
        return None
    if kind is OutputKind.SAMPLE_ID:
        return None if is_sample_id(value) else f"{name} must be a SampleId, got {_short(value)}"
    return None if is_id(value) else f"{name} must be an identifier, got {_short(value)}"


@dataclass(frozen=True, slots=True)
class ProgramSpec:
    """One row of the ICD program table."""

    name: str
    params: tuple[ParamSpec, ...]
    outputs: tuple[str, ...]
    nominal_seconds: Callable[[Mapping[str, Any]], float] = field(repr=False)

    @property
    def param_names(self) -> tuple[str, ...]:
        return tuple(p.name for p in self.params)

    def param(self, name: str) -> ParamSpec | None:
        return next((p for p in self.params if p.name == name), None)

    def check_params(self, params: object) -> list[str]:
        """Every reason ``params`` (decoded JSON) is not acceptable; empty when it is."""
        if not isinstance(params, dict):
            return [f"Parameters must be a JSON object, got {_json_type(params)}"]
        errors = [f"missing parameter {p.name}" for p in self.params if p.name not in params]
        errors += [
            f"unknown parameter {key!r} (allowed: {', '.join(self.param_names)})"
            for key in params
            if self.param(key) is None
        ]
        for p in self.params:
            if p.name in params and (why := p.check(params[p.name])) is not None:
                errors.append(why)
        return errors

    def check_outputs(self, outputs: object, *, complete: bool) -> list[str]:
        """Every reason ``outputs`` (decoded JSON) are not this program's; empty when they are.

        ``complete``: a full run must report every output of the table; a stopped one
        reports those computed for the part that ran (a subset)."""
        if not isinstance(outputs, dict):
            return [f"Outputs must be a JSON object, got {_json_type(outputs)}"]
        errors = [
            f"unknown output {_short(key)} of {self.name} (outputs: {', '.join(self.outputs)})"
            for key in outputs
            if key not in self.outputs
        ]
        if complete:
            errors += [f"missing output {name}" for name in self.outputs if name not in outputs]
        errors += [
            why
            for key, value in outputs.items()
            if key in self.outputs and (why := check_output(key, value)) is not None
        ]
        return errors


def _minutes(key: str) -> Callable[[Mapping[str, Any]], float]:
    return lambda params: float(params[key]) * 60.0


def _hours(key: str) -> Callable[[Mapping[str, Any]], float]:
    return lambda params: float(params[key]) * 3600.0


def _fixed(seconds: float) -> Callable[[Mapping[str, Any]], float]:
    return lambda _params: seconds


_N, _I, _S = ParamKind.NUMBER, ParamKind.INT, ParamKind.STR

PROGRAMS: Final[dict[str, ProgramSpec]] = {
    spec.name: spec
    for spec in (
        ProgramSpec(
            "cell_selection",
            (ParamSpec("marker", _S), ParamSpec("incubation_min", _N, 10, 120, unit="min")),
            ("cells_out", "purity_pct"),
            _minutes("incubation_min"),
        ),
        ProgramSpec(
            "activation",
            (ParamSpec("reagent", _S), ParamSpec("duration_h", _N, 1, 72, unit="h")),
            ("cells_out",),
            _hours("duration_h"),
        ),
        ProgramSpec(
            "transduction",
            (ParamSpec("vector", _S), ParamSpec("moi", _N, 0.1, 20)),
            ("cells_out", "efficiency_pct"),
            _fixed(30 * 60.0),
        ),
        ProgramSpec(
            "electroporation",
            (
                ParamSpec("payload", _S),
                ParamSpec("voltage_v", _N, 100, 1000, unit="V"),
                ParamSpec("pulses", _I, 1, 5),
            ),
            ("cells_out", "efficiency_pct"),
            _fixed(30 * 60.0),
        ),
        ProgramSpec(
            "expansion",
            (
                ParamSpec("temperature_c", _N, 30, 40, unit="C"),
                ParamSpec("duration_h", _N, 1, 336, unit="h"),
                ParamSpec("feed", ParamKind.ENUM, choices=("batch", "perfusion")),
            ),
            ("cells_out", "viability_pct"),
            _hours("duration_h"),
        ),
        ProgramSpec(
            "sample",
            (
                ParamSpec("volume_ml", _N, 0.05, 5, unit="mL"),
                ParamSpec("sample_id", ParamKind.SAMPLE_ID),
            ),
            ("sample_id", "volume_ml"),
            _fixed(5 * 60.0),
        ),
        ProgramSpec(
            "harvest_wash",
            (ParamSpec("cycles", _I, 1, 5), ParamSpec("final_volume_ml", _N, 5, 500, unit="mL")),
            ("cells_out", "volume_ml"),
            _fixed(30 * 60.0),
        ),
        ProgramSpec(
            "formulation",
            (
                ParamSpec("cryo_pct", _N, 0, 10, unit="%"),
                ParamSpec("final_volume_ml", _N, 5, 250, unit="mL"),
            ),
            ("cells_out", "volume_ml"),
            _fixed(30 * 60.0),
        ),
        ProgramSpec(
            "fill_finish",
            (ParamSpec("bags", _I, 1, 4), ParamSpec("volume_ml_per_bag", _N, 5, 100, unit="mL")),
            ("bags", "volume_ml", "bag_ids"),
            _fixed(30 * 60.0),
        ),
    )
}


def parse_parameters(program: str, parameters: str) -> tuple[dict[str, Any] | None, list[str]]:
    """Decode a StartProgram ``Parameters`` string and check it against the table.

    Returns ``(params, [])`` when acceptable, ``(None, reasons)`` otherwise.
    """
    spec = PROGRAMS.get(program)
    if spec is None:
        return None, [f"unknown program {program!r}"]
    try:
        decoded = json.loads(parameters)
    except (ValueError, TypeError, RecursionError) as exc:
        return None, [f"Parameters is not valid JSON: {exc}"]
    errors = spec.check_params(decoded)
    return (decoded, []) if not errors else (None, errors)


# --------------------------------------------------------------------------- section 2
DEFAULT_CELLQ_PORT: Final = 5020
CELLQ_DEVICE_ID: Final = 1
SLOT_COUNT: Final = 16
SLOT_BASE: Final = 100
SLOT_STRIDE: Final = 32
STRING_REGS: Final = 8
MAX_RUNNING_JOBS: Final = 4

# Input registers 0..9: analyzer status.
STATUS_REGS: Final = 10
IR_STATE: Final = 0
IR_FAULT_CODE: Final = 1
IR_FREE_SLOTS: Final = 2
IR_HEARTBEAT: Final = 3  # 3..4, uint32
IR_ICD_VERSION: Final = 5

# Holding registers of a slot (offsets from its base).
HR_JOB_SEQ: Final = 0  # 0..1
HR_PANEL: Final = 2
HR_SAMPLE_ID: Final = 3  # 3..10
HR_COMMAND: Final = 11
HR_SLOT_NAMED: Final = frozenset(range(0, 12))

# Input registers of a slot (offsets from its base).
IR_JOB_SEQ: Final = 0  # 0..1
IR_SLOT_STATE: Final = 2
IR_PROGRESS: Final = 3
IR_JOB_FAULT: Final = 4
IR_RESULTS: Final = 8  # 8..21, seven float32

# Twin controls (section 4): holding registers, and (1.1) the jobs-created counter.
TWIN_HR_FAULT_CODE: Final = 900
TWIN_HR_FAULT_RAISE: Final = 901
TWIN_HR_TIME_SCALE: Final = 902  # 902..903, float32
TWIN_IR_JOBS_CREATED: Final = 900  # 900..901, uint32 (idempotent repeats not counted)
TWIN_TIME_SCALE_MIN: Final = 0.001  # 1.1: process seconds per wall second
TWIN_TIME_SCALE_MAX: Final = 1e7

# 1.1 Modbus framing: function codes served, request sizes, whole values.
FC_READ_HOLDING: Final = 0x03
FC_READ_INPUT: Final = 0x04
FC_WRITE_SINGLE: Final = 0x06
FC_WRITE_MULTIPLE: Final = 0x10
FUNCTION_CODES: Final = frozenset(
    {FC_READ_HOLDING, FC_READ_INPUT, FC_WRITE_SINGLE, FC_WRITE_MULTIPLE}
)
MAX_READ_REGS: Final = 125
MAX_WRITE_REGS: Final = 123
# Holding-register spans of a slot (offsets) written whole: JobSeq, panel, SampleId, command.
HR_SLOT_VALUES: Final = ((0, 2), (2, 3), (3, 11), (11, 12))


@dataclass(frozen=True, slots=True)
class SerialLine:
    """Line settings of a serial port (1.1: Cell Q RTU is 19200 8N1 unless the site
    configures otherwise; the balance is 9600 8N1). Refuses what no UART does."""

    baudrate: int = 19200
    bytesize: int = 8
    parity: str = "N"
    stopbits: float = 1

    BAUDRATES = (1200, 2400, 4800, 9600, 19200, 38400, 57600, 115200)

    def __post_init__(self) -> None:
        problems = []
        if isinstance(self.baudrate, bool) or self.baudrate not in self.BAUDRATES:
            problems.append(f"baudrate {self.baudrate!r} is not one of {self.BAUDRATES}")
        if isinstance(self.bytesize, bool) or self.bytesize not in (7, 8):
            problems.append(f"bytesize {self.bytesize!r} is not 7 or 8")
        if self.parity not in ("N", "E", "O"):
            problems.append(f"parity {self.parity!r} is not N, E or O")
        if isinstance(self.stopbits, bool) or self.stopbits not in (1, 1.5, 2):
            problems.append(f"stopbits {self.stopbits!r} is not 1, 1.5 or 2")
        if problems:
            raise ValueError("serial line: " + "; ".join(problems))

    def serial_settings(self) -> dict[str, Any]:
        """The settings as pyserial and pymodbus take them (keyword arguments)."""
        return {
            "baudrate": self.baudrate,
            "bytesize": self.bytesize,
            "parity": self.parity,
            "stopbits": self.stopbits,
        }

    def char_seconds(self) -> float:
        """Wall seconds one character takes on the line (start + data + parity + stop)."""
        bits = 1 + self.bytesize + (self.parity != "N") + self.stopbits
        return bits / self.baudrate

    def __str__(self) -> str:
        return f"{self.baudrate} {self.bytesize}{self.parity}{self.stopbits:g}"


def slot_base(slot: int) -> int:
    if not 0 <= slot < SLOT_COUNT:
        raise ValueError(f"slot {slot} is outside 0..{SLOT_COUNT - 1}")
    return SLOT_BASE + SLOT_STRIDE * slot


class AnalyzerState(IntEnum):
    IDLE = 0
    BUSY = 1
    FAULTED = 2
    MAINTENANCE = 3


class SlotState(IntEnum):
    FREE = 0
    QUEUED = 1
    RUNNING = 2
    DONE = 3
    FAILED = 4
    ABORTED = 5


class Command(IntEnum):
    NONE = 0
    SUBMIT = 1
    ABORT = 2
    RELEASE = 3


class JobFault(IntEnum):
    NONE = 0
    UNKNOWN_SAMPLE = 1
    INSUFFICIENT_VOLUME = 2
    ASSAY_FAILURE = 3


class Assay(IntFlag):
    """Panel bits; each assay's result is one float32 at IR_RESULTS + 2 * bit."""

    CELL_COUNT = 1 << 0
    VIABILITY = 1 << 1
    IDENTITY = 1 << 2
    TRANSDUCTION = 1 << 3
    ENDOTOXIN = 1 << 4
    STERILITY = 1 << 5
    MYCOPLASMA = 1 << 6


ALL_ASSAYS: Final = Assay(0x7F)
ASSAY_NAMES: Final[dict[str, Assay]] = {a.name.lower(): a for a in Assay}  # type: ignore[union-attr]


def assay_bit(assay: Assay) -> int:
    return assay.value.bit_length() - 1


def result_offset(assay: Assay) -> int:
    """Offset in a slot of the float32 result of ``assay``."""
    return IR_RESULTS + 2 * assay_bit(assay)


# Assay durations, process seconds, in bit order.
ASSAY_SECONDS: Final[dict[Assay, float]] = {
    Assay.CELL_COUNT: 15 * 60.0,
    Assay.VIABILITY: 15 * 60.0,
    Assay.IDENTITY: 45 * 60.0,
    Assay.TRANSDUCTION: 60 * 60.0,
    Assay.ENDOTOXIN: 60 * 60.0,
    Assay.STERILITY: 7 * 24 * 3600.0,
    Assay.MYCOPLASMA: 4 * 3600.0,
}

# Result meaning, unit, by assay.
ASSAY_RESULTS: Final[dict[Assay, tuple[str, str]]] = {
    Assay.CELL_COUNT: ("viable cell concentration", "cells/mL"),
    Assay.VIABILITY: ("viability", "%"),
    Assay.IDENTITY: ("CD3+ cells", "%"),
    Assay.TRANSDUCTION: ("transduction efficiency", "%"),
    Assay.ENDOTOXIN: ("endotoxin", "EU/mL"),
    Assay.STERILITY: ("sterility, 0 no growth, 1 growth", ""),
    Assay.MYCOPLASMA: ("mycoplasma, 0 negative, 1 positive", ""),
}


def panel_assays(panel: int) -> list[Assay]:
    """The assays of a panel mask, in bit (= run) order."""
    return [a for a in Assay if panel & a.value]


def panel_is_valid(panel: int) -> bool:
    return 0 < panel <= ALL_ASSAYS.value


# Modbus exception codes the ICD uses.
EXC_ILLEGAL_FUNCTION: Final = 0x01  # 1.1: any function code but 03, 04, 06, 16
EXC_ILLEGAL_ADDRESS: Final = 0x02
EXC_ILLEGAL_VALUE: Final = 0x03
EXC_DEVICE_FAILURE: Final = 0x04
EXC_DEVICE_BUSY: Final = 0x06


# --------------------------------------------------------------------------- codecs
def encode_u32(value: int) -> list[int]:
    if not 0 <= value <= 0xFFFFFFFF:
        raise ValueError(f"{value} does not fit an uint32")
    return [(value >> 16) & 0xFFFF, value & 0xFFFF]


def decode_u32(regs: list[int] | tuple[int, ...]) -> int:
    hi, lo = regs[0], regs[1]
    return ((hi & 0xFFFF) << 16) | (lo & 0xFFFF)


def encode_f32(value: float) -> list[int]:
    """IEEE 754 float32, high word first (NaN stays NaN)."""
    return list(struct.unpack(">HH", struct.pack(">f", value)))


def decode_f32(regs: list[int] | tuple[int, ...]) -> float:
    return struct.unpack(">f", struct.pack(">HH", regs[0] & 0xFFFF, regs[1] & 0xFFFF))[0]


def encode_string(text: str, regs: int = STRING_REGS) -> list[int]:
    """ASCII, 2 characters a register, first in the high byte, NUL padded."""
    raw = text.encode("ascii")
    if len(raw) > 2 * regs:
        raise ValueError(f"{text!r} is longer than {2 * regs} characters")
    raw = raw.ljust(2 * regs, b"\0")
    return [(raw[i] << 8) | raw[i + 1] for i in range(0, len(raw), 2)]


def decode_string(regs: list[int] | tuple[int, ...]) -> str:
    """Inverse of encode_string; stops at the first NUL. Raises ValueError on non-ASCII."""
    raw = b"".join(bytes(((r >> 8) & 0xFF, r & 0xFF)) for r in regs)
    raw = raw.split(b"\0", 1)[0]
    return raw.decode("ascii")


def parse_sample_id(regs: list[int] | tuple[int, ...]) -> str | None:
    """The SampleId in 8 registers exactly as ``encode_string`` writes one (ASCII, NUL
    padded, nothing after the first NUL), or None when they hold none."""
    try:
        text = decode_string(regs)
    except ValueError:
        return None
    if not is_sample_id(text) or encode_string(text) != list(regs):
        return None
    return text


# --------------------------------------------------------------------------- section 3
BALANCE_BAUD: Final = 9600
BALANCE_LINE: Final = SerialLine(baudrate=BALANCE_BAUD)
BALANCE_EOL: Final = b"\r\n"
BALANCE_VALUE_WIDTH: Final = 10
PRODUCT_DENSITY_G_PER_ML: Final = 1.03


def format_weight(grams: float) -> str:
    """A weight as the ICD writes it: right-aligned in 10 characters, three decimals."""
    return f"{grams:>{BALANCE_VALUE_WIDTH}.3f}"


# --------------------------------------------------------------------------- helpers
def _fmt(x: float | None) -> str:
    return "-" if x is None else (f"{x:g}")


def _short(value: object, limit: int = 40) -> str:
    text = repr(value)
    return text if len(text) <= limit else f"{text[:limit]}... ({len(text)} chars)"


def _json_type(value: object) -> str:
    if value is None:
        return "null"
    if isinstance(value, bool):
        return "boolean"
    if isinstance(value, int | float):
        return "number"
    if isinstance(value, str):
        return "string"
    if isinstance(value, list):
        return "array"
    if isinstance(value, dict):
        return "object"
    return type(value).__name__
