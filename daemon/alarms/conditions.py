"""Alarm conditions: what should be in alarm now, from the journal and the cell's view.

This module owns the process side of the alarms: a ``Condition`` per cause (one per
deviation of a batch, one per locked account), whether it is abnormal now, and what it
is about (batch, step, unit, cartridge, instrument). ``Conditions`` is fed the batch
records in journal order (``observe``: replayed at start-up, then each record the
engine announces on the bus) and told about links, units and accounts; the manager
compares it with the alarms and writes the differences. Nothing here writes.

A deviation's condition is keyed ``<batch>#<n>`` (its n-th deviation), so replaying the
same journal gives the same keys; an account's is ``user:<name>``.
"""

from __future__ import annotations

import dataclasses
from collections.abc import Callable
from dataclasses import dataclass

from daemon.alarms.kinds import AlarmKind, Clears, for_deviation, for_security
from daemon.journal import records as r

__all__ = ["Condition", "Conditions"]

ENDING_COMMANDS = frozenset({"Restart", "Stop", "Abort", "Reset"})
FINAL_STATES = frozenset({"Complete", "Stopped", "Aborted"})


@dataclass(frozen=True, slots=True)
class Condition:
    key: str
    kind: AlarmKind
    message: str
    active: bool
    batch_id: str = ""
    step: str = ""
    unit: str = ""
    instrument: str = ""
    cartridge_id: str = ""
    task_id: str = ""
    user: str = ""
    rearms: bool = False  # may become abnormal again (an account); a deviation never does


@dataclass(slots=True)
class _BatchInfo:
    cartridge_id: str = ""
    shuttle: str = ""
    deviations: int = 0


class Conditions:
    """Every condition (see the module doc)."""

    def __init__(self) -> None:
        self.by_key: dict[str, Condition] = {}
        self._batches: dict[str, _BatchInfo] = {}

    def _set(self, key: str, active: bool) -> bool:
        c = self.by_key.get(key)
        if c is None or c.active == active:
            return False
        self.by_key[key] = dataclasses.replace(c, active=active)
        return True

    def _clear_batch(self, batch_id: str, ok: Callable[[Condition], bool]) -> bool:
        changed = False
        for key, c in list(self.by_key.items()):
            if c.batch_id == batch_id and c.active and ok(c):
                changed |= self._set(key, False)
        return changed

    # ------------------------------------------------------------------ batch records
    def observe(self, rec: r.Record) -> bool:
        """Fold one batch record in; True when a condition changed."""
        info = self._batches.setdefault(rec.batch_id, _BatchInfo())
        match rec:
            case r.BatchCreated():
                info.cartridge_id = rec.cartridge_id
            case r.Admitted():
                info.shuttle = rec.shuttle
            case r.Deviation():
                info.deviations += 1
                kind = for_deviation(rec.kind)
                instrument = rec.instrument or (
                    rec.message.split(":", 1)[0] if kind.clears is Clears.LINK else info.shuttle
                )
                self.by_key[f"{rec.batch_id}#{info.deviations}"] = Condition(
                    key=f"{rec.batch_id}#{info.deviations}",
                    kind=kind,
                    message=rec.message,
                    active=kind.clears is not Clears.AT_ONCE,
                    batch_id=rec.batch_id,
                    step=rec.step,
                    unit=rec.unit,
                    instrument=instrument,
                    cartridge_id=info.cartridge_id,
                    task_id=rec.task_id,
                )
                return True
            case r.CommandIssued(accepted=True) if rec.command == "Restart":
                return self._clear_batch(rec.batch_id, lambda c: True)  # the unit is cleared
            case r.CommandIssued(accepted=True) if rec.command in ENDING_COMMANDS:
                return self._clear_batch(rec.batch_id, lambda c: c.kind.clears is not Clears.UNIT)
            case r.StateReached() if rec.state in FINAL_STATES:
                return self._clear_batch(rec.batch_id, lambda c: c.kind.clears is not Clears.UNIT)
        return False

    # ------------------------------------------------------------------ the cell
    def link_up(self, instrument: str) -> bool:
        changed = False
        for key, c in list(self.by_key.items()):
            if c.active and c.kind.clears is Clears.LINK and c.instrument == instrument:
                changed |= self._set(key, False)
        return changed

    def unit_ok(self, shuttle: str, unit: str) -> bool:
        changed = False
        for key, c in list(self.by_key.items()):
            if (
                c.active
                and c.kind.clears is Clears.UNIT
                and (c.instrument, c.unit) == (shuttle, unit)
            ):
                changed |= self._set(key, False)
        return changed

    # ------------------------------------------------------------------ accounts
    def account(self, user: str, locked: bool, detail: str = "") -> bool:
        key = f"user:{user}"
        if key not in self.by_key:
            kind = for_security("account_locked")
            if not locked or kind is None:
                return False
            self.by_key[key] = Condition(
                key=key,
                kind=kind,
                message=f"account {user} locked: {detail or 'failed sign-ins'}",
                active=True,
                user=user,
                rearms=True,
            )
            return True
        if locked and detail:
            c = self.by_key[key]
            self.by_key[key] = dataclasses.replace(c, message=f"account {user} locked: {detail}")
        return self._set(key, locked)
