"""The alarm manager: the one place an alarm changes, and the one writer of its rows.

This module owns the daemon's alarms while it runs: it follows the event bus (the
engine's batch records, instrument links and units, security events), keeps the
conditions (``daemon.alarms.conditions``) and brings the alarms in line with them
through the state table (``daemon.alarms.states``), writing every change as an audit
row (``daemon.alarms.model``) before it is applied in memory and announced on the bus
(kind ``alarm``). People act through ``ack`` (operator, a reason) and ``shelve``
(supervisor, a reason, a duration and an electronic signature, meaning ``shelved``);
a shelved alarm unshelves itself at expiry (wall time, UTC).

Start-up (``run``, before the engine's runners start, so no record is written between
the replay and the subscription)::

    subscribe -> fold the alarm rows (the alarms as they were) -> replay the journal
      into the conditions -> ask the cell (links, faulted units) and the directory
      (locked accounts) -> settle: raise what a crash left unraised, clear what cleared
      while the daemon was down, unshelve what expired -> follow the bus

Suppression by design: an alarm whose unit is out of service in the site, or whose
instrument the site no longer has, is ``suppressed`` (and returns when the site
changes back, re-evaluated).
"""

from __future__ import annotations

import dataclasses
import sqlite3
import time
from collections import Counter
from collections.abc import Callable, Iterable, Mapping
from datetime import UTC, datetime
from typing import Any, Final, Protocol

import anyio
import structlog

from daemon.alarms.conditions import Condition, Conditions
from daemon.alarms.kinds import Clears
from daemon.alarms.model import OBJECT_TYPE, Alarm, Change, fold
from daemon.alarms.states import STANDING, AlarmEvent, AlarmState, refusal, step
from daemon.audit.chain import append_rows
from daemon.audit.entries import SYSTEM, Act, Actor, Entry
from daemon.audit.errors import RequestRefused
from daemon.audit.signatures import SignatureDraft, register_deriver
from daemon.audit.trail import AuditTrail
from daemon.events import BusEvent, EventBus
from daemon.journal import records as r

__all__ = ["BUS_KIND", "MAX_SHELVE_S", "AlarmManager"]

log = structlog.get_logger("cellfab.alarms")

BUS_KIND: Final = "alarm"
MAX_SHELVE_S: Final = 12 * 3600  # a shelving lasts at most a shift
FOLLOWED: Final = frozenset(
    {"batch", "step", "deviation", "instrument", "unit", "fault", "security"}
)
FAULTED: Final = "Faulted"


class _Cell(Protocol):
    shuttles: Mapping[str, Any]

    def is_up(self, instrument: str) -> bool: ...


class _Journal(Protocol):
    def read(self, after: int = 0) -> Iterable[tuple[int, r.Record]]: ...


class _Directory(Protocol):
    def users(self) -> list[Any]: ...


Draft = tuple[Alarm, AlarmEvent, Alarm, Entry]


def utc(epoch: float) -> str:
    """Epoch seconds as an audit row writes a time (ISO 8601, microseconds, ``Z``)."""
    return datetime.fromtimestamp(epoch, UTC).strftime("%Y-%m-%dT%H:%M:%S.%fZ")


class AlarmManager:
    def __init__(
        self,
        trail: AuditTrail,
        journal: _Journal,
        cell: _Cell,
        bus: EventBus,
        directory: _Directory | None = None,
        *,
        out_of_service: Mapping[str, frozenset[str]] | None = None,
        instruments: Iterable[str] = (),
        wall: Callable[[], float] = time.time,
    ) -> None:
        self.trail = trail
        self.journal = journal
        self.cell = cell
        self.bus = bus
        self.directory = directory
        self.out_of_service = dict(out_of_service or {})
        self.instruments = frozenset(instruments)
        self.wall = wall
        self.alarms: dict[str, Alarm] = {}
        self.conditions = Conditions()
        self._open: dict[str, str] = {}  # condition key -> id of its open alarm
        self._ever: set[str] = set()  # condition keys that ever had an alarm
        self._next = 1
        self._lock = anyio.Lock()
        self._shelf_changed = anyio.Event()
        self.loaded = False

    # ------------------------------------------------------------------ start-up
    def load(self) -> None:
        """The alarms as their rows say (blocking read of the audit trail)."""
        self.alarms = fold(self.trail.rows(object_type=OBJECT_TYPE))
        self._open.clear()
        self._ever.clear()
        for alarm in self.alarms.values():
            self._remember(alarm)
            self._next = max(self._next, _number(alarm.alarm_id) + 1)
        self.loaded = True

    def _remember(self, alarm: Alarm) -> None:
        self.alarms[alarm.alarm_id] = alarm
        self._ever.add(alarm.key)
        if alarm.open:
            self._open[alarm.key] = alarm.alarm_id
        elif self._open.get(alarm.key) == alarm.alarm_id:
            del self._open[alarm.key]

    def _look_at_the_cell(self, *, links: bool = True) -> None:
        """Clear the conditions the cell's view shows cleared (links up, units not
        faulted); an instrument that is down tells nothing about its units. Live, a
        lost link's deviation may be committed before the view knows the link is down,
        so links are looked at only at start-up; live, an ``instrument`` event clears."""
        for c in list(self.conditions.by_key.values()):
            if not c.active or not c.instrument:
                continue
            if c.kind.clears is Clears.LINK and links and self.cell.is_up(c.instrument):
                self.conditions.link_up(c.instrument)
            elif c.kind.clears is Clears.UNIT:
                self._check_unit(c.instrument, c.unit)

    def _check_unit(self, shuttle: str, unit: str) -> bool:
        if not self.cell.is_up(shuttle):
            return False
        view = self.cell.shuttles.get(shuttle)
        u = view.units.get(unit) if view is not None else None
        if u is None or u.state == FAULTED or u.fault_code:
            return False
        return self.conditions.unit_ok(shuttle, unit)

    async def run(
        self, *, task_status: anyio.abc.TaskStatus[None] = anyio.TASK_STATUS_IGNORED
    ) -> None:
        """Reconcile (see the module doc), then follow the bus until cancelled."""
        sub = self.bus.subscribe(FOLLOWED)
        try:
            if not self.loaded:
                self.load()
            for _seq, rec in self.journal.read():
                self.conditions.observe(rec)
            self._look_at_the_cell()
            for user in self.directory.users() if self.directory is not None else ():
                self.conditions.account(user.name, bool(user.locked))
            await self.settle(reason="reconciled at start-up")
            await self._expire()
            log.info("alarms_loaded", alarms=len(self.alarms), open=len(self._open))
            task_status.started()
            async with anyio.create_task_group() as tg:
                tg.start_soon(self._expiry, name="alarm shelf expiry")
                async for event in sub:
                    try:
                        await self.on_event(event)
                    except Exception:  # a bug here must not stop the daemon's batches
                        log.exception("alarm manager failed on an event", kind=event.kind)
        finally:
            await sub.aclose()

    # ------------------------------------------------------------------ the bus
    async def on_event(self, event: BusEvent) -> None:
        data = event.data
        changed = False
        if event.kind in ("batch", "step", "deviation"):
            rec = _record_of(data)
            if rec is not None:
                changed = self.conditions.observe(rec)
                if isinstance(rec, r.Deviation):
                    self._look_at_the_cell(links=False)
        elif event.kind == "instrument" and data.get("up"):
            changed = self.conditions.link_up(str(data.get("instrument", "")))
        elif event.kind == "unit":
            changed = self._check_unit(str(data.get("shuttle", "")), str(data.get("unit", "")))
        elif event.kind == "fault":
            changed = self._check_unit(str(data.get("shuttle", "")), str(data.get("location", "")))
        elif event.kind == "security":
            kind, user = data.get("kind"), str(data.get("user", ""))
            if kind == "account_locked":
                changed = self.conditions.account(user, True, str(data.get("detail", "")))
            elif kind == "account_unlocked":
                changed = self.conditions.account(user, False)
        if changed:
            await self.settle()

    # ------------------------------------------------------------------ settling
    async def settle(self, reason: str = "") -> list[Alarm]:
        """Bring every alarm in line with its condition and the site's design."""
        async with self._lock:
            drafts: list[Draft] = []
            for cond in list(self.conditions.by_key.values()):
                drafts += self._settle_one(cond, reason)
            return await self._commit(drafts)

    def _settle_one(self, cond: Condition, reason: str) -> list[Draft]:
        drafts: list[Draft] = []
        alarm_id = self._open.get(cond.key)
        if alarm_id is not None:
            alarm = self.alarms[alarm_id]
        elif cond.key not in self._ever or (cond.rearms and cond.active):
            alarm = self._new(cond)
            drafts.append(self._draft(alarm, AlarmEvent.RAISE, SYSTEM, reason or cond.message))
            alarm = drafts[-1][2]
        else:
            return drafts
        if alarm.active != cond.active:
            event = AlarmEvent.RAISE if cond.active else AlarmEvent.CLEAR
            why = reason or ("the cause persists" if cond.active else "the cause cleared")
            drafts.append(self._draft(alarm, event, SYSTEM, why, active=cond.active))
            alarm = drafts[-1][2]
        suppressed = self._by_design(alarm)
        if suppressed and alarm.state is not AlarmState.SUPPRESSED:
            drafts.append(self._draft(alarm, AlarmEvent.SUPPRESS, SYSTEM, suppressed))
        elif not suppressed and alarm.state is AlarmState.SUPPRESSED:
            why = "the site no longer suppresses it"
            drafts.append(self._draft(alarm, AlarmEvent.UNSUPPRESS, SYSTEM, why))
        return drafts

    def _by_design(self, alarm: Alarm) -> str:
        """Why the site's design suppresses ``alarm`` ("" when it does not)."""
        if alarm.unit and alarm.unit in self.out_of_service.get(alarm.instrument, ()):
            return f"unit {alarm.unit} of {alarm.instrument} is out of service in the site"
        if alarm.instrument and self.instruments and alarm.instrument not in self.instruments:
            return f"the site has no instrument {alarm.instrument}"
        return ""

    def _new(self, cond: Condition) -> Alarm:
        alarm_id = f"A{self._next:04d}"
        self._next += 1
        now = utc(self.wall())
        return Alarm(
            alarm_id=alarm_id,
            key=cond.key,
            kind=cond.kind.name,
            priority=cond.kind.priority,
            latching=cond.kind.latching,
            message=cond.message,
            state=AlarmState.NORMAL,
            active=False,
            raised_at=now,
            changed_at=now,
            batch_id=cond.batch_id,
            step=cond.step,
            unit=cond.unit,
            instrument=cond.instrument,
            cartridge_id=cond.cartridge_id,
            task_id=cond.task_id,
            user=cond.user,
        )

    def _draft(
        self,
        alarm: Alarm,
        event: AlarmEvent,
        actor: Actor,
        reason: str,
        *,
        active: bool | None = None,
        until: float = 0.0,
        signature: Any = None,
    ) -> Draft:
        """The change ``event`` makes to ``alarm`` and its audit row (not yet written)."""
        if event is AlarmEvent.RAISE and active is None:
            active = True
        active = alarm.active if active is None else active
        new_state = step(alarm.state, event, active=active, latching=alarm.latching)
        if new_state is None:
            raise RequestRefused(f"{alarm.alarm_id}: {refusal(alarm.state, event)}", "state", 409)
        new: dict[str, Any] = {"state": str(new_state), "active": active}
        if alarm.state is AlarmState.NORMAL and not alarm.history:
            new["alarm"] = alarm.about()
        if event is AlarmEvent.SHELVE:
            new.update(until=until, until_utc=utc(until), kind=alarm.kind)
        entry = Entry(
            actor,
            f"alarm.{event}",
            OBJECT_TYPE,
            alarm.alarm_id,
            field="state",
            old=None if not alarm.history else str(alarm.state),
            new=new,
            reason=reason,
            batch_id=alarm.batch_id,
            signature=signature,
        )
        old = str(alarm.state) if alarm.history else ""
        signer = signature.signing.signer.printed_name if signature is not None else ""
        change = Change(0, entry.at, str(event), old, str(new_state), actor.name, reason, signer)
        after = dataclasses.replace(
            alarm,
            raised_at=alarm.raised_at if alarm.history else entry.at,
            state=new_state,
            active=active,
            changed_at=entry.at,
            shelved_until=(until or alarm.shelved_until)
            if new_state is AlarmState.SHELVED
            else 0.0,
            acked_by=actor.name if event is AlarmEvent.ACK else alarm.acked_by,
            history=(*alarm.history, change),
        )
        return alarm, event, after, entry

    async def _commit(self, drafts: list[Draft]) -> list[Alarm]:
        if not drafts:
            return []
        entries = [d[3] for d in drafts]

        def write(conn: sqlite3.Connection, record_seqs: list[int]) -> list[int]:
            return append_rows(conn, [e.body(conn, record_seqs) for e in entries])

        seqs: list[int] = await self.trail.journal.transact(write)
        done: dict[str, Alarm] = {}
        for (before, event, after, _entry), seq in zip(drafts, seqs, strict=True):
            last = dataclasses.replace(after.history[-1], seq=seq)
            after = dataclasses.replace(after, history=(*after.history[:-1], last))
            self._remember(after)
            done[after.alarm_id] = after
            log.info(
                "alarm",
                alarm=after.alarm_id,
                kind=after.kind,
                priority=after.priority,
                change=str(event),
                old=str(before.state),
                new=str(after.state),
                batch=after.batch_id,
                step=after.step,
                unit=after.unit,
            )
            self.bus.publish(BUS_KIND, {**_public(after), "event": str(event)})
        self._shelf_changed.set()
        return list(done.values())

    # ------------------------------------------------------------------ people
    def get(self, alarm_id: str) -> Alarm:
        alarm = self.alarms.get(alarm_id)
        if alarm is None:
            raise RequestRefused(f"no alarm {alarm_id!r}", "alarm_id", 404)
        return alarm

    async def ack(self, alarm_id: str, act: Act) -> Alarm:
        """Acknowledge (an operator; reason required). A latched alarm is reset."""
        _need_reason(act)
        async with self._lock:
            alarm = self.get(alarm_id)
            [done] = await self._commit([self._draft(alarm, AlarmEvent.ACK, act.actor, act.reason)])
            return done

    async def shelve(self, alarm_id: str, act: Act, seconds: float) -> Alarm:
        """Shelve for ``seconds`` (a supervisor; reason and signature, meaning shelved)."""
        _need_reason(act)
        if not 1 <= seconds <= MAX_SHELVE_S:
            raise RequestRefused(
                f"a shelving lasts 1 s to {MAX_SHELVE_S} s, not {seconds}", "duration_s", 422
            )
        if act.signing is None or act.signing.meaning != "shelved":
            raise RequestRefused(
                "shelving an alarm needs an electronic signature: re-enter your password",
                "password",
                422,
            )
        async with self._lock:
            alarm = self.get(alarm_id)
            until = self.wall() + seconds
            content = _signed(alarm.alarm_id, alarm.kind, str(alarm.state), utc(until), act.reason)
            draft = self._draft(
                alarm,
                AlarmEvent.SHELVE,
                act.actor,
                act.reason,
                until=until,
                signature=SignatureDraft(act.signing, OBJECT_TYPE, alarm.alarm_id, content),
            )
            [done] = await self._commit([draft])
            return done

    # ------------------------------------------------------------------ the shelf
    async def _expire(self) -> None:
        async with self._lock:
            now = self.wall()
            drafts: list[Draft] = []
            for alarm in list(self.alarms.values()):
                if alarm.state is AlarmState.SHELVED and alarm.shelved_until <= now:
                    cond = self.conditions.by_key.get(alarm.key)
                    active = cond.active if cond is not None else alarm.active
                    why = f"the shelving expired at {utc(alarm.shelved_until)}"
                    drafts.append(
                        self._draft(alarm, AlarmEvent.UNSHELVE, SYSTEM, why, active=active)
                    )
            await self._commit(drafts)

    async def _expiry(self) -> None:
        while True:
            self._shelf_changed = anyio.Event()
            shelved = [
                a.shelved_until for a in self.alarms.values() if a.state is AlarmState.SHELVED
            ]
            with anyio.move_on_after(min(shelved) - self.wall() if shelved else 3600.0):
                await self._shelf_changed.wait()
            await self._expire()

    # ------------------------------------------------------------------ reading
    def listed(self, states: Iterable[str] = (), batch_id: str = "") -> list[Alarm]:
        """Alarms in ``states`` (default: every alarm that is not normal), of one batch."""
        wanted = {AlarmState(s) for s in states}
        return [
            a
            for a in self.alarms.values()
            if (a.state in wanted if wanted else a.open)
            and (not batch_id or a.batch_id == batch_id)
        ]

    def counts(self) -> dict[tuple[str, str], int]:
        """Open alarms by (priority, state): the ``cellfab_alarms`` gauge."""
        return dict(Counter((a.priority, str(a.state)) for a in self.alarms.values() if a.open))

    def metric_samples(self) -> list[tuple[str, str, float]]:
        """``counts`` as (priority, state, count) for ``Metrics.alarms_from``."""
        return [(p, s, float(n)) for (p, s), n in sorted(self.counts().items())]

    def standing(self) -> int:
        return sum(1 for a in self.alarms.values() if a.state in STANDING)


# --------------------------------------------------------------------------- helpers
def _number(alarm_id: str) -> int:
    try:
        return int(alarm_id.removeprefix("A"))
    except ValueError:
        return 0


def _need_reason(act: Act) -> None:
    if not act.reason.strip():
        raise RequestRefused("a reason is required for every change a person makes", "reason", 422)


def _public(alarm: Alarm) -> dict[str, Any]:
    d = alarm.as_dict()
    d.pop("history")
    d["shelved_until_utc"] = utc(alarm.shelved_until) if alarm.shelved_until else ""
    return d


def _record_of(data: Mapping[str, Any]) -> r.Record | None:
    """The journal record an engine announcement carries (the fields the alarms read)."""
    cls = r.RECORD_TYPES.get(str(data.get("record", "")))
    if cls not in (r.BatchCreated, r.Admitted, r.Deviation, r.CommandIssued, r.StateReached):
        return None
    names = {f.name for f in dataclasses.fields(cls)}
    kwargs = {k: v for k, v in data.items() if k in names}
    if cls is r.BatchCreated:
        kwargs["recipe_text"] = ""
    try:
        return cls(**kwargs)
    except TypeError as exc:
        log.error(
            "alarm manager cannot read an announcement", record=data.get("record"), error=str(exc)
        )
        return None


def _signed(alarm_id: str, kind: str, state: str, until_utc: str, reason: str) -> dict[str, Any]:
    return {"alarm_id": alarm_id, "kind": kind, "from": state, "until": until_utc, "reason": reason}


def _derive_alarm(conn: Any, body: Mapping[str, Any]) -> dict[str, Any] | str:
    """A shelving's signed content as its audit row says now (the row is the record)."""
    new = body.get("new") or {}
    if not isinstance(new, Mapping) or "until_utc" not in new:
        return "the signed row is not a shelving"
    return _signed(
        str(body.get("object_id", "")),
        str(new.get("kind", "")),
        str(body.get("old") or ""),
        str(new["until_utc"]),
        str(body.get("reason", "")),
    )


register_deriver(OBJECT_TYPE, _derive_alarm)
