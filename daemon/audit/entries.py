"""Audit entries: who acts (``Actor``), a row to be written (``Entry``), a person's
request as the engine passes it on (``Act``), and rows as read back (``AuditRow``).

An ``Entry`` becomes a row body in the writer thread (``Entry.body``): its reference to
a journal record of the same append (``record``: the index among the append's records)
becomes that record's seq, and its signature is sealed there (a batch's signature binds
the batch's history up to that append). Old and new values are JSON values: a state, a
list of roles, ``"changed"`` for a password (never the password or its hash).
"""

from __future__ import annotations

import dataclasses
import json
import sqlite3
from collections.abc import Mapping, Sequence
from dataclasses import dataclass
from typing import Any, Final

from daemon.audit.chain import canonical, utc_now
from daemon.audit.signatures import SignatureDraft, Signing

__all__ = ["SYSTEM", "Act", "Actor", "AuditRow", "Entry", "read_rows"]


@dataclass(frozen=True, slots=True)
class Actor:
    """Who acts: a user (``user_id``), the engine (``system``), or a local command
    (``local:LOGIN``: whoever may write the journal file, e.g. the first admin)."""

    name: str
    user_id: int | None = None
    role: str = ""


SYSTEM: Final = Actor("system")


@dataclass(frozen=True, slots=True)
class Act:
    """A person's request as it reaches the engine: who (the signed-in user and the role
    they act in), why, and the signing when the change needs a signature."""

    actor: Actor
    reason: str = ""
    signing: Signing | None = None


@dataclass(frozen=True, slots=True)
class Entry:
    """One audit row to be written (see the module doc)."""

    actor: Actor
    action: str  # dotted: batch.command.stop, user.add, recipe.approve, auth.signin, ...
    object_type: str  # batch, user, recipe, session, alarm, ...
    object_id: str
    field: str = ""  # "" = the object as a whole
    old: Any = None
    new: Any = None
    reason: str = ""
    batch_id: str = ""
    record: int | None = None  # index of the journal record of the same append it goes with
    ref: Mapping[str, Any] | None = None  # or an explicit {"table": ..., "seq": ...}
    signature: SignatureDraft | None = None
    at: str = dataclasses.field(default_factory=utc_now)

    def __post_init__(self) -> None:
        canonical([self.old, self.new])  # ValueError now, not in the writer thread

    def body(self, conn: sqlite3.Connection, record_seqs: Sequence[int]) -> dict[str, Any]:
        """The row body; in the writer thread, inside the append's transaction."""
        ref = dict(self.ref) if self.ref is not None else None
        if self.record is not None:
            ref = {"table": "records", "seq": record_seqs[self.record]}
        first = record_seqs[0] if record_seqs else _next_record_seq(conn)
        return {
            "at": self.at,
            "actor": self.actor.name,
            "actor_id": self.actor.user_id,
            "role": self.actor.role,
            "action": self.action,
            "object_type": self.object_type,
            "object_id": self.object_id,
            "field": self.field,
            "old": self.old,
            "new": self.new,
            "reason": self.reason,
            "batch_id": self.batch_id,
            "ref": ref,
            "signature": None if self.signature is None else self.signature.sealed(conn, first - 1),
        }


def _next_record_seq(conn: sqlite3.Connection) -> int:
    return int(conn.execute("SELECT coalesce(max(seq), 0) FROM records").fetchone()[0]) + 1


@dataclass(frozen=True, slots=True)
class AuditRow:
    """A row as read back: its seq, hash and body."""

    seq: int
    hash: str
    body: Mapping[str, Any]

    def __getattr__(self, name: str) -> Any:  # body fields as attributes: row.actor
        try:
            return self.body[name]
        except KeyError:
            raise AttributeError(name) from None

    @property
    def signature(self) -> Mapping[str, Any] | None:
        return self.body.get("signature")


def read_rows(
    conn: sqlite3.Connection,
    *,
    batch_id: str | None = None,
    object_type: str | None = None,
    object_id: str | None = None,
    action_prefix: str | None = None,
    signed: bool = False,
    after: int = 0,
    limit: int | None = None,
) -> list[AuditRow]:
    """Rows in seq order, filtered (columns only: ``verify`` checks them against bodies)."""
    sql = "SELECT seq, hash, body FROM audit WHERE seq > ?"
    args: list[Any] = [after]
    for column, value in (
        ("batch_id", batch_id),
        ("object_type", object_type),
        ("object_id", object_id),
    ):
        if value is not None:
            sql += f" AND {column} = ?"
            args.append(value)
    if action_prefix is not None:
        sql += " AND (action = ? OR action LIKE ? ESCAPE '\\')"
        escaped = action_prefix.replace("\\", "\\\\").replace("%", "\\%").replace("_", "\\_")
        args += [action_prefix, f"{escaped}.%"]
    if signed:
        sql += " AND body LIKE '%\"signature\":{%'"
    sql += " ORDER BY seq"
    if limit is not None:
        sql += " LIMIT ?"
        args.append(limit)
    return [
        AuditRow(int(seq), str(h), json.loads(body)) for seq, h, body in conn.execute(sql, args)
    ]
