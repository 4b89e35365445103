"""The engine's auditor: a batch's person-made records and their audit rows, together.

The engine calls ``BatchAuditor.then_for(before, after, records, act)`` inside a
batch's commit (under the batch's lock, before the append) and hands what it returns
to the journal append, so ``BatchCreated``, ``CommandIssued`` (accepted or refused,
by a person or by the engine) and ``Confirmed`` commit with their audit rows or not at
all. It also enforces the rules of the change itself, which every path to the engine
passes (API, demo, tests):

* a person's command or confirmation gives a reason (``reason``, 422);
* Stop and Abort by a person, and a confirmation whose role is qa, carry an electronic
  signature (``password``, 422) whose meaning fits (stopped, aborted, confirmed); the
  signature binds the command's record and the batch's history before it.

``release`` is QA's release of a Complete batch: an e-signed audit row (meaning
released), refused for a batch that is not Complete with outcome completed, released
already (checked in the writer thread, atomic with the row), or by someone who started
it (two-person rule, 403).
"""

from __future__ import annotations

import sqlite3
from collections.abc import Mapping, Sequence
from typing import Any, Final

from daemon.audit.entries import SYSTEM, Act, Actor, Entry
from daemon.audit.errors import RequestRefused
from daemon.audit.signatures import SignatureDraft, batch_binding, register_deriver
from daemon.audit.trail import AuditTrail
from daemon.batch.machine import Batch, ReducerError, replay
from daemon.journal import records as r
from daemon.journal.files import decode_stored
from daemon.journal.writer import Then

__all__ = ["SIGNED_COMMANDS", "BatchAuditor", "started_by"]

SIGNED_COMMANDS: Final = {"Stop": "stopped", "Abort": "aborted"}
SIGNED_CONFIRM_ROLES: Final = frozenset({"qa"})
RELEASE: Final = "batch.release"


class BatchAuditor:
    def __init__(self, trail: AuditTrail) -> None:
        self.trail = trail
        self.released: dict[str, tuple[str, str]] = {}  # batch id -> (printed name, at)

    def load(self) -> None:
        """Which batches are released (at start-up)."""
        self.released = {
            row.batch_id: (row.signature["manifest"]["signer"]["printed_name"], row.at)
            for row in self.trail.rows(action_prefix=RELEASE)
            if row.signature
        }

    def then_for(
        self,
        before: Batch | None,
        after: Batch,
        records: Sequence[r.Record],
        act: Act | None,
    ) -> Then | None:
        """The audit rows of ``records`` (as the journal append's ``then``), or None
        when none needs one; raises RequestRefused when a rule above is broken."""
        entries: list[Entry] = []
        for index, rec in enumerate(records):
            entry = self._entry(before, after, index, rec, act)
            if entry is not None:
                entries.append(entry)
        return self.trail.then(entries) if entries else None

    def _entry(
        self, before: Batch | None, after: Batch, index: int, rec: r.Record, act: Act | None
    ) -> Entry | None:
        match rec:
            case r.BatchCreated():
                actor = act.actor if act else Actor(rec.by or SYSTEM.name)
                return Entry(
                    actor,
                    "batch.create",
                    "batch",
                    rec.batch_id,
                    new={
                        "recipe": rec.recipe_name,
                        "version": rec.recipe_version,
                        "recipe_hash": rec.recipe_hash,
                        "cartridge_id": rec.cartridge_id,
                        "params": dict(rec.params),
                        "unapproved": rec.unapproved,
                    },
                    reason=(act.reason if act else "") or f"new batch for {rec.cartridge_id}",
                    batch_id=rec.batch_id,
                    record=index,
                )
            case r.CommandIssued():
                return self._command(before, after, index, rec, act)
            case r.Confirmed():
                actor = act.actor if act else Actor(rec.by, None, rec.role)
                _need_reason(act, rec.note)
                signature = None
                if rec.role in SIGNED_CONFIRM_ROLES:
                    signing = _signing(act, "confirmed", f"a confirmation by the {rec.role} role")
                    signature = SignatureDraft(
                        signing,
                        "batch",
                        rec.batch_id,
                        {"step": rec.step, "note": rec.note, "by": rec.by, "role": rec.role},
                        bind_batch=rec.batch_id,
                    )
                return Entry(
                    actor,
                    "batch.confirm",
                    "batch",
                    rec.batch_id,
                    field=f"confirmation.{rec.step}",
                    new={"note": rec.note, "role": rec.role},
                    reason=rec.note,
                    batch_id=rec.batch_id,
                    record=index,
                    signature=signature,
                )
        return None

    def _command(
        self, before: Batch | None, after: Batch, index: int, rec: r.CommandIssued, act: Act | None
    ) -> Entry:
        person = rec.by != SYSTEM.name
        actor = act.actor if act else Actor(rec.by or SYSTEM.name, None, rec.role)
        action = f"batch.command.{rec.command.lower()}"
        if person:
            _need_reason(act, rec.reason)
        if not rec.accepted:
            return Entry(
                actor,
                action + ".refused",
                "batch",
                rec.batch_id,
                field="state",
                old=str(before.state) if before else None,
                new=str(before.state) if before else None,
                reason=rec.reason,
                batch_id=rec.batch_id,
                record=index,
            )
        signature = None
        meaning = SIGNED_COMMANDS.get(rec.command)
        if meaning is not None and person:
            signing = _signing(act, meaning, rec.command)
            signature = SignatureDraft(
                signing,
                "batch",
                rec.batch_id,
                {"command": rec.command, "reason": rec.reason, "by": rec.by},
                bind_batch=rec.batch_id,
            )
        return Entry(
            actor,
            action,
            "batch",
            rec.batch_id,
            field="state",
            old=str(before.state) if before else None,
            new=str(after.state),
            reason=rec.reason,
            batch_id=rec.batch_id,
            record=index,
            signature=signature,
        )

    # ------------------------------------------------------------------ release
    def check_release(self, batch: Batch, starters: set[str], signer: str) -> None:
        """The release's rules before anyone signs (and again at the release)."""
        bid = batch.batch_id
        if str(batch.state) != "Complete" or batch.outcome != "completed":
            raise RequestRefused(
                f"{bid} is {batch.state} (outcome {batch.outcome or 'none'}); only a Complete "
                "batch whose procedure completed can be released",
                "batch_id",
                409,
            )
        if bid in self.released:
            raise RequestRefused(f"{bid} is released already", "batch_id", 409)
        if signer in starters:
            raise RequestRefused(
                f"two-person rule: {signer} started {bid}; its release needs someone else",
                "user",
                403,
            )

    async def release(self, batch: Batch, starters: set[str], act: Act) -> None:
        """QA's e-signed release of a Complete batch (see the module doc)."""
        if act.signing is None or act.signing.meaning != "released":
            raise RequestRefused("a release needs an electronic signature", "password", 422)
        _need_reason(act, "")
        bid = batch.batch_id
        self.check_release(batch, starters, act.signing.signer.user_name)
        entry = Entry(
            act.actor,
            RELEASE,
            "batch",
            bid,
            field="release",
            old=None,
            new="released",
            reason=act.reason,
            batch_id=bid,
            signature=SignatureDraft(
                act.signing,
                "batch",
                bid,
                {"state": str(batch.state), "outcome": batch.outcome},
                bind_batch=bid,
            ),
        )

        def once(conn: sqlite3.Connection) -> tuple[None, list[Entry]]:
            done = conn.execute(
                "SELECT seq FROM audit WHERE batch_id = ? AND action = ?", (bid, RELEASE)
            ).fetchone()
            if done is not None:
                raise RequestRefused(f"{bid} is released already (audit seq {done[0]})", "", 409)
            return None, [entry]

        await self.trail.record(work=once)
        self.released[bid] = (act.signing.signer.printed_name, entry.at)


def started_by(batch_id: str, records: Sequence[r.Record]) -> set[str]:
    """Who created the batch or issued an accepted Start of it."""
    out: set[str] = set()
    for rec in records:
        if isinstance(rec, r.BatchCreated) and rec.by:
            out.add(rec.by)
        elif isinstance(rec, r.CommandIssued) and rec.command == "Start" and rec.accepted:
            out.add(rec.by)
    out.discard(SYSTEM.name)
    return out


def _need_reason(act: Act | None, text: str) -> None:
    if act is not None and not (act.reason or text).strip():
        raise RequestRefused("a reason is required for every change a person makes", "reason", 422)


def _signing(act: Act | None, meaning: str, what: str) -> Any:
    signing = act.signing if act is not None else None
    if signing is None:
        raise RequestRefused(
            f"{what} needs an electronic signature: re-enter your password", "password", 422
        )
    if signing.meaning != meaning:
        raise RequestRefused(f"{what} is signed as {meaning!r}, not {signing.meaning!r}", "", 422)
    return signing


# --------------------------------------------------------------------------- deriver
def _derive_batch(conn: sqlite3.Connection, body: Mapping[str, Any]) -> dict[str, Any] | str:
    """The signed content of a batch signature as the journal says now."""
    signed = body["signature"]["manifest"]["content"]
    bid = str(body.get("object_id", ""))
    seq = signed.get("batch_seq")
    if not isinstance(seq, int):
        return "the signed content has no batch_seq"
    content: dict[str, Any] = {}
    ref = body.get("ref") or {}
    if ref:
        if ref.get("table") != "records":
            return f"it refers to {ref.get('table')!r}, not a journal record"
        row = conn.execute(
            "SELECT type, body FROM records WHERE seq = ?", (ref.get("seq"),)
        ).fetchone()
        if row is None:
            return f"its journal record seq {ref.get('seq')} is missing"
        try:
            rec = decode_stored(row[0], row[1])
        except r.RecordError as exc:
            return f"its journal record seq {ref.get('seq')} does not decode: {exc}"
        if rec.batch_id != bid:
            return f"its journal record seq {ref.get('seq')} belongs to {rec.batch_id}"
        if isinstance(rec, r.CommandIssued):
            content.update(command=rec.command, reason=rec.reason, by=rec.by)
        elif isinstance(rec, r.Confirmed):
            content.update(step=rec.step, note=rec.note, by=rec.by, role=rec.role)
        else:
            return f"its journal record seq {ref.get('seq')} is a {type(rec).__name__}"
    else:  # a release: the batch as its records up to the signature say
        rows = conn.execute(
            "SELECT seq, type, body FROM records WHERE batch_id = ? AND seq <= ? ORDER BY seq",
            (bid, seq),
        )
        try:
            state = replay([(s, decode_stored(t, b)) for s, t, b in rows]).get(bid)
        except (r.RecordError, ReducerError) as exc:
            return f"the batch's records up to seq {seq} do not replay: {exc}"
        if state is None:
            return f"no batch {bid} in the journal"
        content.update(state=str(state.state), outcome=state.outcome)
    content.update(batch_binding(conn, bid, seq))
    return content


register_deriver("batch", _derive_batch)
