"""The journal's schema: what version 1 is, and the ordered migrations after it.

This module owns the SQL layout of a journal file and its versioning; it does no file
handling (``daemon.journal.files``) and takes no locks (``daemon.journal.lock``).

Version 1::

    meta(key TEXT PRIMARY KEY, value TEXT)     magic, schema_version, instance, created_at
    records(seq INTEGER PRIMARY KEY,           1, 2, 3, ... in commit order, never reused
            batch_id TEXT, type TEXT,          the record's batch and type name
            at REAL, body TEXT)                its wall time and its canonical JSON
    index records_batch_id ON records(batch_id)

and ``PRAGMA application_id`` = ``APPLICATION_ID`` in the file header, so a foreign
SQLite file is recognised before anything is read from it.

Migrations: ``MIGRATIONS[i]`` takes a journal from version ``i + 1`` to ``i + 2`` inside
the caller's transaction; ``migrate`` runs the ones a file needs, in order, and writes
the new version into ``meta`` after each. A new journal is made by the same path
(version 1, then every migration), so the path an old journal takes is the path every
journal takes. Never edit a released migration or ``_create_v1``: add the next one, add
a fixture journal of the new version (``tests/journal/fixtures/make_fixtures.py``) and a
test from every earlier fixture.
"""

from __future__ import annotations

import secrets
import sqlite3
from collections.abc import Callable, Iterable
from typing import Final

__all__ = [
    "ALPHABET",
    "APPLICATION_ID",
    "MAGIC",
    "MIGRATIONS",
    "Migration",
    "create",
    "known_version",
    "migrate",
    "new_instance_tag",
    "read_meta",
    "set_meta",
]

APPLICATION_ID: Final = 0x43464A4C  # "CFJL" in the SQLite header (offset 68)
MAGIC: Final = "cellfab-journal"
ALPHABET: Final = "0123456789ABCDEFGHJKMNPQRSTVWXYZ"  # Crockford base32: no I, L, O, U
INSTANCE_LENGTH: Final = 3

Migration = Callable[[sqlite3.Connection], None]


def _create_v1(conn: sqlite3.Connection) -> None:
    conn.execute(f"PRAGMA application_id = {APPLICATION_ID}")
    conn.execute("CREATE TABLE meta (key TEXT PRIMARY KEY NOT NULL, value TEXT NOT NULL)")
    conn.execute(
        "CREATE TABLE records ("
        " seq INTEGER PRIMARY KEY,"
        " batch_id TEXT NOT NULL,"
        " type TEXT NOT NULL,"
        " at REAL NOT NULL,"
        " body TEXT NOT NULL)"
    )
    conn.execute("CREATE INDEX records_batch_id ON records (batch_id)")


# MIGRATIONS[i] takes version i + 1 to i + 2. Append only; the control-plane issue adds
# version 2 (the audit trail's tables).
MIGRATIONS: tuple[Migration, ...] = ()


def known_version() -> int:
    """The schema version this code writes (and the newest it opens)."""
    return 1 + len(MIGRATIONS)


def create(
    conn: sqlite3.Connection, *, instance: str, created_at: str, upto: int | None = None
) -> int:
    """Version 1 and then every migration (up to version ``upto``; default: all),
    inside the caller's transaction, on an empty database; returns the version made."""
    _create_v1(conn)
    set_meta(
        conn,
        {"magic": MAGIC, "schema_version": "1", "instance": instance, "created_at": created_at},
    )
    return migrate(conn, 1, upto=upto)


def migrate(conn: sqlite3.Connection, version: int, *, upto: int | None = None) -> int:
    """Run the migrations from ``version`` to ``upto`` (default: the newest) in order,
    inside the caller's transaction; returns the version reached. ``MIGRATIONS`` is read
    at call time (tests register a next version by replacing it)."""
    target = known_version() if upto is None else upto
    if not 1 <= version <= target <= known_version():
        raise ValueError(f"no migration path from v{version} to v{target}")
    for index in range(version - 1, target - 1):
        MIGRATIONS[index](conn)
        set_meta(conn, {"schema_version": str(index + 2)})
    return target


def read_meta(conn: sqlite3.Connection) -> dict[str, str]:
    return {str(k): str(v) for k, v in conn.execute("SELECT key, value FROM meta")}


def set_meta(conn: sqlite3.Connection, values: dict[str, str]) -> None:
    conn.executemany(
        "INSERT INTO meta (key, value) VALUES (?, ?) "
        "ON CONFLICT (key) DO UPDATE SET value = excluded.value",
        values.items(),
    )


def new_instance_tag(avoid: Iterable[str] = ()) -> str:
    """A random tag of ``INSTANCE_LENGTH`` Crockford base32 characters, not in ``avoid``."""
    taken = set(avoid)
    while True:
        tag = "".join(secrets.choice(ALPHABET) for _ in range(INSTANCE_LENGTH))
        if tag not in taken:
            return tag
