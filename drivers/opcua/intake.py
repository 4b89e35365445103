"""Notification intake of the OPC UA shuttle driver: publishes in, cache and events out.

Owns the driver's cache of followed values and the rules that turn the ordered stream
of data-change notifications into events:

* Order comes from the stream alone: a monitored item's notifications arrive in order,
  a publish follows the one before it (a sequence-number gap is a loss). Timestamps are
  never compared: the ICD promises none, and an instrument clock stepping back (NTP, a
  reboot without RTC) would otherwise make every later change look stale.
* Pairing a start with its TaskId (``_replay_states``): ICD 1.1 has the instrument
  write TaskId and Program before State, so a start transition's TaskId change comes
  in the same or an earlier publish; TaskId changes queue in stream order and each
  start transition takes the oldest.
* Event rules: ``UnitStateChanged`` on every change of a unit's State or TaskId (with
  the current Program), ``ProgressChanged`` and ``ProcessValuesChanged`` at most once
  per unit per publish (the ICD allows merging them), ``CartridgeChanged`` for a unit or
  the LoadPort, ``FaultChanged`` on FaultCode changes (and FaultText changes while
  faulted; a code and its text written together make one event, ``_replay_faults``),
  ``TransportChanged``, ``OutputPortChanged``.
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
from collections import deque
from collections.abc import Callable
from typing import Any, Final

import structlog
from asyncua import ua

from drivers import icd
from drivers.base import Event, InvalidAnswer
from drivers.icd import BrowseName as BN
from drivers.opcua.space import Item, Key, Kind
from drivers.opcua.values import BadValue, event_of, group_of, pv_index, rule_for

log = structlog.get_logger("cellfab.drivers.opcua")

_OVERFLOW_BITS: Final = 0x0400 | 0x0080  # InfoType DataValue + Overflow
_SEQUENCED: Final = frozenset({BN.STATE, BN.TASK_ID, BN.PROGRAM})
_PER_PUBLISH: Final = _SEQUENCED | {BN.FAULT_CODE, BN.FAULT_TEXT}
_MISSING: Final = object()
_OWN_STARTS: Final = 4096  # starts of our own remembered for their Program
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
        self._pv_keys: dict[str, tuple[Key, ...]] = {}  # each unit's process values
        # per client handle: key, rule, mergeable, paired per publish, event group
        self._routes: dict[
            int, tuple[Key, Callable[[object], Any], bool, bool, tuple[str, str]]
        ] = {}
        self._last_seq: int | None = None
        self._initial: set[int] = set()  # handles whose first value arrived
        self._barrier: dict[Key, set[Any]] | None = None  # values seen since the Read began
        # TaskId and Program changes waiting for their start transition, per location
        self._queued: dict[str, tuple[deque[Any], deque[Any]]] = {}
        self._own: dict[tuple[str, str], str] = {}  # (unit, TaskId) -> program we started
        self._own_order: deque[tuple[str, str]] = deque()
        # counters, for tests and the bench
        self.notifications = 0
        self.ignored = 0

    # ------------------------------------------------------------------ subscription
    def reset(self, items: dict[int, Item]) -> None:
        """A new subscription: its items by client handle; no value seen yet."""
        self._items = items
        self._routes = {
            handle: (
                item.key,
                rule_for(item.key),
                item.mergeable,
                item.key[1] in _PER_PUBLISH and item.kind in (Kind.UNIT, Kind.TRANSPORT),
                group_of(item.key),
            )
            for handle, item in items.items()
        }
        self._pv_keys = pv_index(item.key for item in items.values())
        self._last_seq = None
        self._initial = set()
        self._queued = {}

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
        routes = self._routes
        values = self.values
        barrier = self._barrier
        self.notifications += len(monitored)
        emit = self.gate_open
        merged: dict[tuple[str, str], None] = {}
        runs: dict[str, dict[str, list[Any]]] = {}  # State/TaskId/Program/faults per location
        initial = self._initial
        for n in monitored:
            route = routes.get(n.ClientHandle)
            if route is None:
                continue
            key, rule, mergeable, per_publish, group = route
            first = False
            if not emit:  # connecting: the first value of an item is its initial value
                first = n.ClientHandle not in initial
                initial.add(n.ClientHandle)
            dv = n.Value
            status = dv.StatusCode
            if status is not None and status.value & _OVERFLOW_BITS == _OVERFLOW_BITS:
                if not mergeable:
                    self._lost(f"server queue overflow on {'/'.join(key)}")
                    return False
            raw = None if dv.Value is None else dv.Value.Value
            try:
                value = rule(raw)
            except ValueError as exc:
                why = str(BadValue(key, str(exc)))
                if mergeable:
                    self.ignored += 1
                    log.warning("ignored a value outside the ICD", source=self.source, why=why)
                    continue
                self._lost(f"instrument sent a value outside the ICD: {why}", InvalidAnswer)
                return False
            if per_publish and not first:
                runs.setdefault(key[0], {}).setdefault(key[1], []).append(value)
                continue
            if barrier is not None:
                barrier.setdefault(key, set()).add(value)
            if values.get(key, _MISSING) == value:
                continue
            values[key] = value
            if not emit:
                continue
            if mergeable:
                merged[group] = None
            elif key[1] != BN.FAULT_TEXT or values.get((key[0], BN.FAULT_CODE)):
                self._emit(event_of(self.source, values, *group, self._pv_keys))
        for loc, by_var in runs.items():
            self._replay_faults(loc, by_var, emit)
            self._replay_states(loc, by_var, emit)
        for loc, group in merged:
            self._emit(event_of(self.source, values, loc, group, self._pv_keys))
        if not emit:
            self.changed.set()
        return True

    def _apply(self, key: Key, value: Any) -> bool:
        """Update the cache; False when the value is unchanged."""
        self._note(key, value)
        if key in self.values and self.values[key] == value:
            return False
        self.values[key] = value
        return True

    def _note(self, key: Key, value: Any) -> None:
        if self._barrier is not None:
            self._barrier.setdefault(key, set()).add(value)

    # ------------------------------------------------------------------ pairing
    def expect_start(self, loc: str, task_id: str, program: str) -> None:
        """The driver is about to start ``program`` under ``task_id`` on ``loc``: the start
        transition that takes this TaskId shows this Program (see ``_replay_states``)."""
        key = (loc, task_id)
        if key not in self._own:
            self._own_order.append(key)
            if len(self._own_order) > _OWN_STARTS:
                self._own.pop(self._own_order.popleft(), None)
        self._own[key] = program

    def _replay_faults(self, loc: str, by_var: dict[str, list[Any]], emit: bool) -> None:
        """One publish's FaultCode and FaultText changes of one location, as events.

        A fault writes its code and its text together (so does a clear): when a publish
        holds as many changes of each, the i-th code goes with the i-th text, so the
        event of a new fault carries its text. Otherwise every code change is an event
        (with the text known then), and so is a text change while faulted."""
        codes = by_var.get(BN.FAULT_CODE, [])
        texts = by_var.get(BN.FAULT_TEXT, [])
        code_key, text_key = (loc, BN.FAULT_CODE), (loc, BN.FAULT_TEXT)
        if codes and len(codes) == len(texts):
            for code, text in zip(codes, texts, strict=True):
                changed = self._apply(code_key, code)
                changed |= self._apply(text_key, text)
                if changed and emit:
                    self._emit(event_of(self.source, self.values, loc, "fault"))
            return
        for code in codes:
            if self._apply(code_key, code) and emit:
                self._emit(event_of(self.source, self.values, loc, "fault"))
        for text in texts:
            if self._apply(text_key, text) and emit and self.values.get(code_key):
                self._emit(event_of(self.source, self.values, loc, "fault"))

    def _replay_states(self, loc: str, by_var: dict[str, list[Any]], emit: bool) -> None:
        """Pair one publish's start transitions of one location with their TaskIds.

        ICD 1.1: a start writes TaskId (and Program) before State, so a start's TaskId
        change comes in the same publish as its State change or an earlier one, and
        every start changes the TaskId (a known TaskId starts nothing). TaskId changes
        therefore queue up, in stream order, and each start transition (Idle|Complete ->
        Running, Idle -> Moving) takes the oldest: exact, whatever the timestamps. A
        TaskId whose start is not in this publish waits for it (no event pairs a new
        TaskId with an old State).

        Program changes only when a start runs another program than the last, so a
        start's Program is the one the driver itself started under its TaskId when it
        did (``expect_start``); a start made by another client takes the oldest queued
        Program change, if any and unless a later start of ours claims it (the ICD cannot
        tell which of several such starts in one publish changed it). Program changes
        left once no start is announced belong to starts already shown and update the
        cache.
        """
        transport = loc == icd.TRANSPORT
        queued = self._queued.setdefault(loc, (deque(), deque()))
        tasks, programs = queued
        for var, queue in ((BN.TASK_ID, tasks), (BN.PROGRAM, programs)):
            for value in by_var.get(var, ()):
                self._note((loc, var), value)
                queue.append(value)
        start_to, start_from = _START_TO[transport], _START_FROM[transport]
        for st in by_var.get(BN.STATE, ()):
            changed = False
            if st == start_to and self.values.get((loc, BN.STATE)) in start_from and tasks:
                task = tasks.popleft()
                changed = self._apply((loc, BN.TASK_ID), task)
                own = self._own.get((loc, task))
                if own is not None:
                    if programs and programs[0] == own:
                        programs.popleft()
                    self._apply((loc, BN.PROGRAM), own)
                elif programs and not any(
                    self._own.get((loc, t)) == programs[0] for t in tasks
                ):  # (a change a later start of ours claims is not this start's)
                    self._apply((loc, BN.PROGRAM), programs.popleft())
            changed |= self._apply((loc, BN.STATE), st)
            if changed and emit:
                self._emit(event_of(self.source, self.values, loc, "state"))
        while programs and not tasks:
            self._apply((loc, BN.PROGRAM), programs.popleft())
