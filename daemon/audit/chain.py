"""The audit trail's rows on disk: canonical JSON, the hash chain, the one insert.

A row is ``(seq, at, actor, action, object_type, object_id, batch_id, body, prev,
hash)``; ``body`` is the canonical JSON (sorted keys, no spaces, UTF-8) of everything
the row says, the other columns repeat parts of it for indexes and are checked against
it by ``verify``. The chain::

    hash(row) = sha256(prev + "\\n" + body)      prev(first row) = GENESIS
    prev(row n) = hash(row n - 1)

``seq`` is not hashed: the chain itself says which row follows which, so a row moved
elsewhere is seen as moved (reordered), not only as changed. ``append_rows`` is the
only code that writes the table (it runs in the journal's writer thread, inside the
transaction of the journal records the rows accompany); nothing updates or deletes a
row, and the schema's triggers refuse both (``daemon.journal.schema``).
"""

from __future__ import annotations

import hashlib
import json
import sqlite3
from collections.abc import Mapping, Sequence
from datetime import UTC, datetime
from typing import Any, Final

__all__ = ["GENESIS", "append_rows", "canonical", "last_link", "row_hash", "utc_now"]

GENESIS: Final = hashlib.sha256(b"cellfab-audit-v1").hexdigest()
COLUMNS: Final = ("at", "actor", "action", "object_type", "object_id", "batch_id")
INSERT: Final = (
    "INSERT INTO audit (seq, at, actor, action, object_type, object_id, batch_id, body, "
    "prev, hash) VALUES (?, ?, ?, ?, ?, ?, ?, ?, ?, ?)"
)


def canonical(value: Any) -> str:
    """The one JSON text of ``value``: sorted keys, no spaces, no NaN (ValueError)."""
    return json.dumps(
        value, sort_keys=True, separators=(",", ":"), ensure_ascii=False, allow_nan=False
    )


def row_hash(prev: str, body: str) -> str:
    return hashlib.sha256(f"{prev}\n{body}".encode()).hexdigest()


def utc_now() -> str:
    """UTC now as ISO 8601 with microseconds and ``Z``: what an audit row's ``at`` is."""
    return datetime.now(UTC).strftime("%Y-%m-%dT%H:%M:%S.%fZ")


def last_link(conn: sqlite3.Connection) -> tuple[int, str]:
    """The last row's seq and hash (0 and GENESIS when the trail is empty)."""
    row = conn.execute("SELECT seq, hash FROM audit ORDER BY seq DESC LIMIT 1").fetchone()
    return (0, GENESIS) if row is None else (int(row[0]), str(row[1]))


def append_rows(conn: sqlite3.Connection, bodies: Sequence[Mapping[str, Any]]) -> list[int]:
    """Append one row per body (each a JSON object with at least ``COLUMNS``), chained
    to the last row; returns their seqs. Call inside the writer's transaction."""
    seq, prev = last_link(conn)
    seqs: list[int] = []
    for body in bodies:
        seq += 1
        text = canonical(body)
        digest = row_hash(prev, text)
        conn.execute(INSERT, (seq, *(str(body[c]) for c in COLUMNS), text, prev, digest))
        seqs.append(seq)
        prev = digest
    return seqs
