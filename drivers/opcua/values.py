"""What the OPC UA shuttle driver accepts from the wire, and how it turns values into
events and statuses.

Owns two pure things, shared by the notification intake, the resync diff and the reads:

* ``check``: the rule of every followed variable (ICD section 1: its type, its states,
  the id rules of section 0, finite numbers in range). A value outside its rule is
  garbage: ``BadValue`` says which variable and why, and the caller decides (a read
  raises ``InvalidAnswer``; the intake's rule is in ``drivers.opcua.intake``). Strings
  may arrive as OPC UA null (``None``): they read as "". FaultText has no limit in the
  ICD; the driver takes up to ``FAULT_TEXT_MAX`` characters.
* the builders: the event a group of variables makes (``event_of``), the group a
  variable belongs to (``group_of``), and ``unit_status``, the one place a
  ``UnitStatus`` is made (from a Read or from the cache).

A cache is a mapping ``Key -> checked value`` (``Key`` = (location, variable)).
"""

from __future__ import annotations

import math
from collections.abc import Callable, Iterable, Mapping, Sequence
from typing import Any, Final

from drivers import icd
from drivers.base import (
    CartridgeChanged,
    Event,
    FaultChanged,
    OutputPortChanged,
    ProcessValuesChanged,
    ProgressChanged,
    TransportChanged,
    UnitStateChanged,
    UnitStatus,
)
from drivers.icd import BrowseName as BN
from drivers.opcua.space import PV_PREFIX, UNIT_VARS, Key

FAULT_TEXT_MAX: Final = 1024  # characters of FaultText the driver takes (ICD: no limit)
OUTPUT_PORT_MAX: Final = 100_000  # cartridge ids at the OutputPort the driver takes

Values = Mapping[Key, Any]


class BadValue(ValueError):
    """A variable's value breaks its ICD rule."""

    def __init__(self, key: Key, why: str) -> None:
        super().__init__(f"{'/'.join(key)}: {why}")
        self.key = key
        self.why = why


def _short(value: object) -> str:
    text = repr(value)
    return text if len(text) <= 40 else f"{text[:40]}... ({len(text)} chars)"


def _string(value: object, rule: Callable[[str], bool] | None, what: str) -> str:
    if value is None:
        return ""
    if not isinstance(value, str):
        raise ValueError(f"not a String: {_short(value)}")
    if value and rule is not None and not rule(value):
        raise ValueError(f"not {what}: {_short(value)}")
    return value


def _number(value: object, lo: float | None = None, hi: float | None = None) -> float:
    if type(value) is float:  # the common case first: this runs for every notification
        x = value
    elif isinstance(value, bool) or not isinstance(value, int | float):
        raise ValueError(f"not a number: {_short(value)}")
    else:
        x = float(value)
    if not math.isfinite(x) or (lo is not None and x < lo) or (hi is not None and x > hi):
        raise ValueError(f"out of range: {_short(value)}")
    return x


def _uint32(value: object) -> int:
    if isinstance(value, bool) or not isinstance(value, int) or not 0 <= value <= 0xFFFFFFFF:
        raise ValueError(f"not a UInt32: {_short(value)}")
    return value


def _state(allowed: frozenset[str]) -> Callable[[object], str]:
    def check(value: object) -> str:
        if not isinstance(value, str) or value not in allowed:
            raise ValueError(f"not one of {', '.join(sorted(allowed))}: {_short(value)}")
        return value

    return check


def _ids(value: object) -> tuple[str, ...]:
    if value is None:
        return ()
    if not isinstance(value, list | tuple) or len(value) > OUTPUT_PORT_MAX:
        raise ValueError(f"not a String array: {_short(value)}")
    for v in value:
        if not icd.is_id(v):
            raise ValueError(f"holds {_short(v)}, not a CartridgeId")
    return tuple(value)


def _fault_text(value: object) -> str:
    text = _string(value, None, "")
    if len(text) > FAULT_TEXT_MAX:
        raise ValueError(f"longer than {FAULT_TEXT_MAX} characters ({len(text)})")
    return text


_UNIT_STATE: Final = _state(frozenset(icd.UnitState))
_TRANSPORT_STATE: Final = _state(frozenset(icd.TransportState))

_RULES: Final[dict[str, Callable[[object], Any]]] = {
    BN.CARTRIDGE_ID: lambda v: _string(v, icd.is_id, "a CartridgeId"),
    BN.TASK_ID: lambda v: _string(v, icd.is_task_id, "a TaskId"),
    BN.PROGRAM: lambda v: _string(v, icd.is_id, "a program name"),
    BN.PROGRESS: lambda v: _number(v, 0.0, 1.0),
    BN.REMAINING_SECONDS: lambda v: _number(v, 0.0),
    BN.FAULT_CODE: _uint32,
    BN.FAULT_TEXT: _fault_text,
    BN.CARTRIDGE_IDS: _ids,
}


def rule_for(key: Key) -> Callable[[object], Any]:
    """The rule of variable ``key``: the checked (hashable) value, or ValueError."""
    loc, var = key
    if var.startswith(PV_PREFIX):
        return _number
    if var == BN.STATE:
        return _TRANSPORT_STATE if loc == icd.TRANSPORT else _UNIT_STATE
    return _RULES[var]


def check(key: Key, value: object) -> Any:
    """The checked (and hashable) value of variable ``key``; ``BadValue`` if garbage."""
    try:
        return rule_for(key)(value)
    except ValueError as exc:
        raise BadValue(key, str(exc)) from None


def check_run_id(value: object) -> str:
    """A RunId: an opaque String of 1..64 characters chosen by the instrument."""
    if not isinstance(value, str) or not 0 < len(value) <= icd.RUN_ID_MAX:
        raise ValueError(f"RunId must be a String of 1..{icd.RUN_ID_MAX} characters")
    return value


def check_capabilities(value: object) -> tuple[str, ...]:
    """Capabilities: program names; a name outside the ICD table is not offered to the
    daemon (nothing could check its parameters), a value that is no name is garbage."""
    if value is None:
        return ()
    if not isinstance(value, list | tuple) or not all(icd.is_id(v) for v in value):
        raise ValueError(f"Capabilities is not an array of program names: {_short(value)}")
    return tuple(v for v in value if v in icd.PROGRAMS)


# --------------------------------------------------------------------------- builders
GROUPS: Final[dict[str, str]] = {
    BN.STATE: "state",
    BN.TASK_ID: "state",
    BN.PROGRAM: "state",
    BN.CARTRIDGE_ID: "cartridge",
    BN.CARTRIDGE_IDS: "port",
    BN.FAULT_CODE: "fault",
    BN.FAULT_TEXT: "fault",
    BN.PROGRESS: "progress",
    BN.REMAINING_SECONDS: "progress",
}


def group_of(key: Key) -> tuple[str, str]:
    """(location, group): the variables one event describes together."""
    loc, var = key
    return loc, "pv" if var.startswith(PV_PREFIX) else GROUPS[var]


def pv_index(keys: Iterable[Key]) -> dict[str, tuple[Key, ...]]:
    """The process-value keys of each unit, in key order (for ``event_of``)."""
    index: dict[str, list[Key]] = {}
    for key in sorted(keys):
        if key[1].startswith(PV_PREFIX):
            index.setdefault(key[0], []).append(key)
    return {loc: tuple(keys) for loc, keys in index.items()}


def event_of(
    source: str,
    values: Values,
    loc: str,
    group: str,
    pv_keys: Mapping[str, Sequence[Key]] | None = None,
) -> Event:
    """The event that shows group ``group`` of ``loc`` as ``values`` hold it now.

    ``pv_keys`` (``pv_index`` of the followed keys) finds a unit's process values
    without a scan of every value: with 264 units a scan per ProcessValues event made
    the intake quadratic (14 s of a restart's CPU in bench.recovery)."""
    v = values
    if group == "state":
        if loc == icd.TRANSPORT:
            return TransportChanged(
                source=source,
                state=v.get((loc, BN.STATE), ""),
                task_id=v.get((loc, BN.TASK_ID), ""),
            )
        return UnitStateChanged(
            source=source,
            unit=loc,
            state=v.get((loc, BN.STATE), ""),
            task_id=v.get((loc, BN.TASK_ID), ""),
            program=v.get((loc, BN.PROGRAM), ""),
        )
    if group == "cartridge":
        return CartridgeChanged(
            source=source, location=loc, cartridge_id=v.get((loc, BN.CARTRIDGE_ID), "")
        )
    if group == "port":
        return OutputPortChanged(source=source, cartridge_ids=v.get((loc, BN.CARTRIDGE_IDS), ()))
    if group == "fault":
        return FaultChanged(
            source=source,
            location=loc,
            code=v.get((loc, BN.FAULT_CODE), 0),
            text=v.get((loc, BN.FAULT_TEXT), ""),
        )
    if group == "progress":
        return ProgressChanged(
            source=source,
            unit=loc,
            progress=v.get((loc, BN.PROGRESS), 0.0),
            remaining_seconds=v.get((loc, BN.REMAINING_SECONDS), 0.0),
        )
    prefix = len(PV_PREFIX)
    keys = (pv_keys if pv_keys is not None else pv_index(v)).get(loc, ())
    return ProcessValuesChanged(
        source=source, unit=loc, values={k[1][prefix:]: v[k] for k in keys if k in v}
    )


def unit_status(unit: str, values: Mapping[str, Any]) -> UnitStatus:
    """A unit's status from checked values by variable name (missing ones read empty)."""
    return UnitStatus(
        unit_id=unit,
        state=values.get(BN.STATE, ""),
        cartridge_id=values.get(BN.CARTRIDGE_ID, ""),
        task_id=values.get(BN.TASK_ID, ""),
        program=values.get(BN.PROGRAM, ""),
        progress=values.get(BN.PROGRESS, 0.0),
        remaining_seconds=values.get(BN.REMAINING_SECONDS, 0.0),
        fault_code=values.get(BN.FAULT_CODE, 0),
        fault_text=values.get(BN.FAULT_TEXT, ""),
    )


def cached_unit_status(unit: str, cache: Values) -> UnitStatus:
    return unit_status(unit, {var: cache[(unit, var)] for var in UNIT_VARS if (unit, var) in cache})
