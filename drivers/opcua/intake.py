"""Notification intake of the OPC UA shuttle driver: publishes in, cache and events out.

Owns the driver's cache of followed values and the rules that turn the ordered stream
of data-change notifications into events:

* Order comes from the stream alone: a monitored item's notifications arrive in order,
  a publish follows the one before it (a sequence-number gap is a loss). Timestamps are
  never compared: the ICD promises none, and an instrument clock stepping back (NTP, a
  reboot without RTC) would otherwise make every later change look stale.
* Pairing a start with its TaskId (``_replay_states``): ICD 1.1 has the instrument
  write TaskId and Program before State, so a start transition's TaskId and Program
  changes come in the same or an earlier publish; within one publish the items come one
  after the other, so the k-th last TaskId change belongs to the k-th last start
  transition of that publish.
* Event rules: ``UnitStateChanged`` on every change of a unit's State or TaskId (with
  the current Program), ``ProgressChanged`` and ``ProcessValuesChanged`` at most once
  per unit per publish (the ICD allows merging them), ``CartridgeChanged`` for a unit or
  the LoadPort, ``FaultChanged`` on FaultCode changes (and FaultText changes while
  faulted), ``TransportChanged``, ``OutputPortChanged``.
* Losses: a sequence gap, a subscription status change, or the Overflow info bit on a
  variable the ICD reports in full makes the connection lost (the driver resyncs).
* Garbage (a value outside its rule, ``drivers.opcua.values.check``): on a variable
  the ICD reports in full (state, ids, faults, ports) it is a loss whose reason names
  the variable, so the daemon never acts on it and the driver keeps re-reading until the
  instrument answers within the ICD; on a variable the ICD lets a server merge
  (Progress, RemainingSeconds, ProcessValues) the value is ignored (counted in
  ``ignored``), as a merged sample would be.

While the gate is closed (connecting, resyncing) notifications only fill the cache;
the Read barrier of a (re)connect asks ``saw(key, value)`` whether the stream has shown
a value yet.
"""

from __future__ import annotations

import asyncio
from collections.abc import Callable
from typing import Any, Final

import structlog
from asyncua import ua

from drivers import icd
from drivers.base import Event, InvalidAnswer
from drivers.icd import BrowseName as BN
from drivers.opcua.space import Item, Key, Kind
from drivers.opcua.values import BadValue, check, event_of, group_of

log = structlog.get_logger("cellfab.drivers.opcua")

_OVERFLOW_BITS: Final = 0x0400 | 0x0080  # InfoType DataValue + Overflow
_SEQUENCED: Final = frozenset({BN.STATE, BN.TASK_ID, BN.PROGRAM})
_START_TO: Final = {True: icd.TransportState.MOVING, False: icd.UnitState.RUNNING}
_START_FROM: Final = {
    True: frozenset({icd.TransportState.IDLE}),
    False: frozenset({icd.UnitState.IDLE, icd.UnitState.COMPLETE}),
}


class Intake:
    """The cache and the event rules of one driver (see the module doc).

    ``lost(reason)`` reports a loss, ``lost(reason, InvalidAnswer)`` garbage."""

    def __init__(
        self, source: str, emit: Callable[[Event], None], lost: Callable[..., None]
    ) -> None:
        self.source = source
        self._emit = emit
        self._lost = lost
        self.values: dict[Key, Any] = {}
        self.gate_open = False  # notifications emit events only when open
        self.changed = asyncio.Event()  # set by every data change while the gate is closed
        self._items: dict[int, Item] = {}
        self._last_seq: int | None = None
        self._initial: set[int] = set()  # handles whose first value arrived
        self._barrier: dict[Key, set[Any]] | None = None  # values seen since the Read began
        # counters, for tests and the bench
        self.notifications = 0
        self.ignored = 0

    # ------------------------------------------------------------------ subscription
    def reset(self, items: dict[int, Item]) -> None:
        """A new subscription: its items by client handle; no value seen yet."""
        self._items = items
        self._last_seq = None
        self._initial = set()

    @property
    def items(self) -> list[Item]:
        return list(self._items.values())

    @property
    def has_initial_values(self) -> bool:
        return len(self._initial) >= len(self._items)

    def begin_barrier(self) -> None:
        self._barrier = {}

    def end_barrier(self) -> None:
        self._barrier = None

    def saw(self, key: Key, value: Any) -> bool:
        """Has the stream shown ``value`` of ``key`` since the barrier began?"""
        return self._barrier is not None and value in self._barrier.get(key, ())

    # ------------------------------------------------------------------ publishes
    def on_publish(self, msg: ua.NotificationMessage) -> None:
        data = msg.NotificationData
        if not data:
            return  # keep-alive
        seq = int(msg.SequenceNumber)
        if self._last_seq is not None and seq != self._last_seq + 1 and seq > self._last_seq:
            self._last_seq = seq
            self._lost(f"notification sequence gap before {seq}")
            return
        self._last_seq = seq
        for notif in data:
            if isinstance(notif, ua.DataChangeNotification):
                if not self._on_datachange(notif.MonitoredItems or []):
                    return
            elif isinstance(notif, ua.StatusChangeNotification):
                self._lost(f"subscription status {notif.Status.name}")
                return

    def _on_datachange(self, monitored: list[ua.MonitoredItemNotification]) -> bool:
        """Apply one publish's data changes; False when it made the connection lost."""
        items = self._items
        self.notifications += len(monitored)
        emit = self.gate_open
        merged: dict[tuple[str, str], None] = {}
        runs: dict[str, dict[str, list[Any]]] = {}  # State/TaskId/Program per location
        if not emit:
            self._initial.update(n.ClientHandle for n in monitored)
            self.changed.set()
        for n in monitored:
            item = items.get(n.ClientHandle)
            if item is None:
                continue
            dv = n.Value
            status = dv.StatusCode
            if (
                status is not None
                and status.value & _OVERFLOW_BITS == _OVERFLOW_BITS
                and not item.mergeable
            ):
                self._lost(f"server queue overflow on {'/'.join(item.key)}")
                return False
            raw = None if dv.Value is None else dv.Value.Value
            try:
                value = check(item.key, raw)
            except BadValue as exc:
                if item.mergeable:
                    self.ignored += 1
                    log.warning("ignored a value outside the ICD", source=self.source, why=str(exc))
                    continue
                self._lost(f"instrument sent a value outside the ICD: {exc}", InvalidAnswer)
                return False
            loc, var = item.key
            if var in _SEQUENCED and item.kind in (Kind.UNIT, Kind.TRANSPORT):
                runs.setdefault(loc, {}).setdefault(var, []).append(value)
                continue
            if not self._apply(item.key, value) or not emit:
                continue
            if item.mergeable:
                merged[group_of(item.key)] = None
            elif var != BN.FAULT_TEXT or self.values.get((loc, BN.FAULT_CODE)):
                self._emit(event_of(self.source, self.values, *group_of(item.key)))
        for loc, by_var in runs.items():
            self._replay_states(loc, by_var, emit)
        for loc, group in merged:
            self._emit(event_of(self.source, self.values, loc, group))
        return True

    def _apply(self, key: Key, value: Any) -> bool:
        """Update the cache; False when the value is unchanged."""
        if self._barrier is not None:
            self._barrier.setdefault(key, set()).add(value)
        if key in self.values and self.values[key] == value:
            return False
        self.values[key] = value
        return True

    def _replay_states(self, loc: str, by_var: dict[str, list[Any]], emit: bool) -> None:
        """Interleave one publish's State, TaskId and Program changes of one location.

        A publish lists each monitored item's changes in order, but items one after the
        other. A TaskId (and Program) changes only when a StartProgram (a Move) starts,
        i.e. with a State transition Idle|Complete -> Running (Idle -> Moving). So the
        k-th last TaskId change is placed at the k-th last such transition of this
        publish (earlier ones, with no transition left, before the first State change);
        every State change is then emitted with the TaskId it belongs to.
        """
        transport = loc == icd.TRANSPORT
        states = by_var.get(BN.STATE, [])
        start_to, start_from = _START_TO[transport], _START_FROM[transport]
        prev = self.values.get((loc, BN.STATE))
        starts: list[int] = []
        for i, st in enumerate(states):
            if st == start_to and prev in start_from:
                starts.append(i)
            prev = st
        at: dict[int, list[tuple[str, Any]]] = {}
        for var in (BN.TASK_ID, BN.PROGRAM):
            changes = by_var.get(var, [])
            k = len(changes)
            if k == 0:
                continue
            idx = starts[-k:] if k <= len(starts) else [0] * (k - len(starts)) + starts
            for value, i in zip(changes, idx, strict=True):
                at.setdefault(i, []).append((var, value))
        if not states:
            for var in (BN.TASK_ID, BN.PROGRAM):
                for value in by_var.get(var, []):
                    if self._apply((loc, var), value) and emit and var == BN.TASK_ID:
                        self._emit(event_of(self.source, self.values, loc, "state"))
            return
        for i, st in enumerate(states):
            changed = False
            for var, value in at.get(i, ()):
                changed |= self._apply((loc, var), value) and var == BN.TASK_ID
            changed |= self._apply((loc, BN.STATE), st)
            if changed and emit:
                self._emit(event_of(self.source, self.values, loc, "state"))
