"""Alarms as values, and their history as audit rows: ``Alarm``, ``fold``, ``alarms_of``.

This module owns the alarm value and how it is stored. The audit trail is the alarms'
store (decision 0122): every change of an alarm is one audit row (object type
``alarm``, action ``alarm.<event>``, field ``state``, old state, new ``{"state",
"active", ...}``, who and why, the batch), so the hash chain covers the alarms' whole
history and a restarted daemon (even after kill -9) folds the same rows into the same
alarms. The row of ``raise`` carries what the alarm is about (kind, priority, batch,
step, unit, cartridge, ...); a shelving's row carries its expiry and its signature.

``alarms_of(journal_or_engine, batch_id)`` is the plain read for others (the batch
record): the alarms of one batch, with their history, from a read-only snapshot.
"""

from __future__ import annotations

import contextlib
import dataclasses
from collections.abc import Iterable, Mapping
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import structlog

from daemon.alarms.states import AlarmEvent, AlarmState, step
from daemon.audit.entries import AuditRow, read_rows
from daemon.journal import files

__all__ = ["Alarm", "Change", "alarms_of", "fold"]

log = structlog.get_logger("cellfab.alarms")

OBJECT_TYPE = "alarm"


@dataclass(frozen=True, slots=True)
class Change:
    """One change of an alarm, as its audit row says."""

    seq: int  # the audit row's seq
    at: str  # UTC, ISO 8601
    event: str
    old: str
    new: str
    by: str
    reason: str = ""
    signed_by: str = ""  # the printed name of a shelving's signer

    def line(self) -> str:
        signed = f" (signed by {self.signed_by})" if self.signed_by else ""
        why = f": {self.reason}" if self.reason else ""
        change = f"{self.event} {self.old or '-'} -> {self.new}"
        return f"{self.at[:19]}Z {change} by {self.by}{signed}{why}"


@dataclass(frozen=True, slots=True)
class Alarm:
    alarm_id: str  # A0001, ...
    key: str  # the condition it annunciates (one open alarm per key)
    kind: str  # daemon.alarms.kinds
    priority: str
    latching: bool
    message: str
    state: AlarmState
    active: bool  # the process condition: abnormal now
    raised_at: str
    changed_at: str
    batch_id: str = ""
    step: str = ""
    unit: str = ""
    instrument: str = ""  # the shuttle (or analyzer) it concerns
    cartridge_id: str = ""
    task_id: str = ""
    user: str = ""  # a security alarm's account
    shelved_until: float = 0.0  # epoch seconds (UTC) while shelved
    acked_by: str = ""
    history: tuple[Change, ...] = ()

    @property
    def open(self) -> bool:
        return self.state is not AlarmState.NORMAL

    def about(self) -> dict[str, Any]:
        """What the raise row records about the alarm (its identity)."""
        return {
            "key": self.key,
            "kind": self.kind,
            "priority": self.priority,
            "latching": self.latching,
            "message": self.message,
            "batch_id": self.batch_id,
            "step": self.step,
            "unit": self.unit,
            "instrument": self.instrument,
            "cartridge_id": self.cartridge_id,
            "task_id": self.task_id,
            "user": self.user,
        }

    def history_lines(self) -> tuple[str, ...]:
        """Its history as readable lines (the batch record's alarms section)."""
        return tuple(c.line() for c in self.history)

    def as_dict(self) -> dict[str, Any]:
        d = {f.name: getattr(self, f.name) for f in dataclasses.fields(self)}
        d["state"] = str(self.state)
        d["history"] = [dataclasses.asdict(c) for c in self.history]
        return d


# --------------------------------------------------------------------------- reading
def fold(rows: Iterable[AuditRow]) -> dict[str, Alarm]:
    """Every alarm from its audit rows (seq order). The rows are the truth: a row that
    disagrees with the state table is logged and taken as written."""
    alarms: dict[str, Alarm] = {}
    for row in rows:
        body = row.body
        if body.get("object_type") != OBJECT_TYPE:
            continue
        alarm_id = str(body.get("object_id", ""))
        new = body.get("new") or {}
        if not isinstance(new, Mapping):
            log.error("alarm row without a new state", seq=row.seq, alarm=alarm_id)
            continue
        event = str(body.get("action", "")).removeprefix("alarm.")
        try:
            state = AlarmState(str(new.get("state")))
        except ValueError:
            log.error("alarm row with an unknown state", seq=row.seq, alarm=alarm_id)
            continue
        signature = body.get("signature") or {}
        signer = (signature.get("manifest") or {}).get("signer") or {}
        change = Change(
            row.seq,
            str(body.get("at", "")),
            event,
            str(body.get("old") or ""),
            str(state),
            str(body.get("actor", "")),
            str(body.get("reason", "")),
            str(signer.get("printed_name", "")),
        )
        old = alarms.get(alarm_id)
        if old is None:
            about = new.get("alarm") or {}
            if event != AlarmEvent.RAISE or not isinstance(about, Mapping):
                log.error("alarm row before its raise", seq=row.seq, alarm=alarm_id)
                continue
            fields = {f.name for f in dataclasses.fields(Alarm)}
            alarms[alarm_id] = Alarm(
                alarm_id=alarm_id,
                state=state,
                active=bool(new.get("active", True)),
                raised_at=change.at,
                changed_at=change.at,
                history=(change,),
                **{k: v for k, v in about.items() if k in fields},
            )
            continue
        try:
            expected = step(old.state, AlarmEvent(event), active=old.active, latching=old.latching)
        except ValueError:
            expected = None
        if expected is not state:
            log.error(
                "alarm row disagrees with the state table",
                seq=row.seq,
                alarm=alarm_id,
                old=str(old.state),
                event=event,
                new=str(state),
            )
        alarms[alarm_id] = dataclasses.replace(
            old,
            state=state,
            active=bool(new.get("active", old.active)),
            changed_at=change.at,
            shelved_until=_until(new, old, state),
            acked_by=change.by if event == AlarmEvent.ACK else old.acked_by,
            history=(*old.history, change),
        )
    return alarms


def _until(new: Mapping[str, Any], old: Alarm, state: AlarmState) -> float:
    """A shelving's end: set by the shelve row, kept while the alarm stays shelved."""
    if state is not AlarmState.SHELVED:
        return 0.0
    until = new.get("until")
    return float(until) if isinstance(until, int | float) else old.shelved_until


def _path_of(source: Any) -> Path:
    for candidate in (source, getattr(source, "journal", None)):
        path = getattr(candidate, "path", None)
        if path is not None:
            return Path(path)
    if isinstance(source, str | Path):
        return Path(source)
    raise TypeError(f"cannot find a journal in {type(source).__name__}")


def alarms_of(journal_or_engine: Any, batch_id: str) -> list[Alarm]:
    """The alarms of one batch (in the order they were raised), with their history,
    read from the journal file (a ``Journal``, an ``Engine``, a ``Daemon`` or a path).
    Blocking: call it from a worker thread in the daemon."""
    path = _path_of(journal_or_engine)
    with contextlib.closing(files.connect_ro(path)) as conn:
        conn.execute("BEGIN")
        rows = read_rows(conn, batch_id=batch_id, object_type=OBJECT_TYPE)
    return sorted(fold(rows).values(), key=lambda a: a.history[0].seq)
