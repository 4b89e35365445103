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

Version 2 (the control plane, issue #11; decisions 0080-0084) adds::

    users(id INTEGER PRIMARY KEY AUTOINCREMENT,  ids never reused (AUTOINCREMENT), never
          name UNIQUE, full_name, roles JSON,    deleted (a trigger refuses DELETE):
          password (argon2), enabled, failed,    disabled instead
          locked, created_at, changed_at)
    tokens(digest PRIMARY KEY, user_id,          sha256 of a sign-in token; expiry and
           issued_at, expires_at, revoked_at)    revocation
    audit(seq INTEGER PRIMARY KEY, at, actor,    the hash-chained audit trail
          action, object_type, object_id,        (daemon.audit.chain owns its one INSERT);
          batch_id, body, prev, hash)            triggers refuse UPDATE and DELETE
    recipe_lifecycle(seq INTEGER PRIMARY KEY,    submitted / approved / retired, by hash:
          recipe_hash, recipe_name,              append-only like audit
          recipe_version, status, user_id,
          user_name, at, reason, recipe_text)

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


def _append_only(conn: sqlite3.Connection, table: str, what: str) -> None:
    for verb in ("UPDATE", "DELETE"):
        conn.execute(
            f"CREATE TRIGGER {table}_no_{verb.lower()} BEFORE {verb} ON {table} "
            f"BEGIN SELECT RAISE(ABORT, '{what} are append-only: no {verb}'); END"
        )


def _v1_to_v2(conn: sqlite3.Connection) -> None:
    """Users, sign-in tokens, the audit trail and the recipe lifecycle (issue #11)."""
    conn.execute(
        "CREATE TABLE users ("
        " id INTEGER PRIMARY KEY AUTOINCREMENT,"
        " name TEXT NOT NULL UNIQUE,"
        " full_name TEXT NOT NULL,"
        " roles TEXT NOT NULL,"
        " password TEXT NOT NULL,"
        " enabled INTEGER NOT NULL,"
        " failed INTEGER NOT NULL DEFAULT 0,"
        " locked INTEGER NOT NULL DEFAULT 0,"
        " created_at TEXT NOT NULL,"
        " changed_at TEXT NOT NULL)"
    )
    conn.execute(
        "CREATE TRIGGER users_no_delete BEFORE DELETE ON users "
        "BEGIN SELECT RAISE(ABORT, 'users are never deleted: disable them'); END"
    )
    conn.execute(
        "CREATE TABLE tokens ("
        " digest TEXT PRIMARY KEY NOT NULL,"
        " user_id INTEGER NOT NULL REFERENCES users (id),"
        " issued_at REAL NOT NULL,"
        " expires_at REAL NOT NULL,"
        " revoked_at REAL)"
    )
    conn.execute(
        "CREATE TABLE audit ("
        " seq INTEGER PRIMARY KEY,"
        " at TEXT NOT NULL,"
        " actor TEXT NOT NULL,"
        " action TEXT NOT NULL,"
        " object_type TEXT NOT NULL,"
        " object_id TEXT NOT NULL,"
        " batch_id TEXT NOT NULL,"
        " body TEXT NOT NULL,"
        " prev TEXT NOT NULL,"
        " hash TEXT NOT NULL)"
    )
    conn.execute("CREATE INDEX audit_batch_id ON audit (batch_id)")
    conn.execute("CREATE INDEX audit_object ON audit (object_type, object_id)")
    _append_only(conn, "audit", "audit rows")
    conn.execute(
        "CREATE TABLE recipe_lifecycle ("
        " seq INTEGER PRIMARY KEY,"
        " recipe_hash TEXT NOT NULL,"
        " recipe_name TEXT NOT NULL,"
        " recipe_version TEXT NOT NULL,"
        " status TEXT NOT NULL,"
        " user_id INTEGER NOT NULL,"
        " user_name TEXT NOT NULL,"
        " at TEXT NOT NULL,"
        " reason TEXT NOT NULL,"
        " recipe_text TEXT NOT NULL)"
    )
    conn.execute("CREATE INDEX recipe_lifecycle_hash ON recipe_lifecycle (recipe_hash)")
    _append_only(conn, "recipe_lifecycle", "recipe lifecycle rows")
    # records before this seq were written before the audit trail existed
    last = conn.execute("SELECT coalesce(max(seq), 0) FROM records").fetchone()[0]
    set_meta(conn, {"audit_from_seq": str(int(last) + 1)})


# MIGRATIONS[i] takes version i + 1 to i + 2. Append only.
MIGRATIONS: tuple[Migration, ...] = (_v1_to_v2,)


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
