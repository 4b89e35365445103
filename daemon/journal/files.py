"""Journal files on disk: recognising one, connecting to it, copying it, reading it.

This module owns every SQLite connection the journal makes except the writer's use of
its own (``daemon.journal.writer``), and the file-level rules:

* ``examine(path)`` decides what a file is before anything writes to it: not SQLite
  (a text file, an empty file) or another application's database -> JournalForeign;
  SQLite's ``quick_check`` or the meta table unhappy -> JournalDamaged; a schema newer
  than this code -> JournalTooNew. It reads only (``mode=ro``, or ``immutable=1`` when
  nobody can be writing and no ``-wal`` exists: then SQLite makes no side files and a
  refused file's folder is left exactly as found), so a refused file is never changed.
* ``copy_database`` makes a consistent copy with SQLite's online backup API (safe while
  the daemon writes) and publishes it atomically: written to a temporary file beside
  the target, fsync'd, hard-linked into place (never over an existing file), and the
  folder fsync'd.
* ``read_records`` yields ``(seq, record)`` from one read transaction (a snapshot).
"""

from __future__ import annotations

import contextlib
import os
import sqlite3
import stat
from collections.abc import Callable, Iterator
from dataclasses import dataclass
from datetime import UTC, datetime
from pathlib import Path
from typing import Final

from daemon.journal import schema
from daemon.journal.errors import (
    UNCHANGED,
    JournalDamaged,
    JournalError,
    JournalExists,
    JournalForeign,
    JournalNotFound,
    JournalTooNew,
    sqlite_said,
)
from daemon.journal.records import Record, RecordError, decode

__all__ = [
    "JournalInfo",
    "aside_path",
    "connect_ro",
    "connect_rw",
    "copy_database",
    "decode_stored",
    "discard",
    "examine",
    "fsync_dir",
    "publish",
    "read_records",
    "utc_stamp",
]

SQLITE_HEADER: Final = b"SQLite format 3\x00"
BUSY_TIMEOUT: Final = 30.0  # seconds; nobody else writes (the lock), readers never block us
SIDE_FILES: Final = ("-wal", "-shm")
DAMAGED_REMEDY: Final = (
    "Restore a backup (cellfab journal restore FILE), or have an expert recover what "
    "SQLite can (sqlite3 FILE .recover) into a new file. " + UNCHANGED
)


@dataclass(frozen=True, slots=True)
class JournalInfo:
    """What ``examine`` found: a cellfab journal of ``schema_version``."""

    path: Path
    schema_version: int
    instance: str
    created_at: str
    last_seq: int  # 0 when empty


def utc_stamp() -> str:
    return datetime.now(UTC).strftime("%Y%m%dT%H%M%S.%fZ")


def _uri(path: Path, **params: str) -> str:
    query = "&".join(f"{k}={v}" for k, v in params.items())
    return f"{path.resolve().as_uri()}?{query}"


def connect_ro(path: Path, *, immutable: bool = False) -> sqlite3.Connection:
    """A read-only connection; ``immutable`` only when nobody can be writing (the
    caller holds the lock) and there is no ``-wal`` file whose frames would be missed."""
    params = {"immutable": "1"} if immutable else {"mode": "ro"}
    conn = sqlite3.connect(_uri(path, **params), uri=True, timeout=BUSY_TIMEOUT)
    conn.isolation_level = None  # explicit transactions only
    return conn


def connect_rw(path: Path) -> sqlite3.Connection:
    """The writer's connection: WAL, ``synchronous=FULL`` (each commit is fsync'd before
    it returns), explicit transactions, usable from the writer thread."""
    conn = sqlite3.connect(
        path, timeout=BUSY_TIMEOUT, isolation_level=None, check_same_thread=False
    )
    try:
        mode = conn.execute("PRAGMA journal_mode = WAL").fetchone()[0]
        if str(mode).lower() != "wal":
            raise JournalError(path, f"SQLite refused WAL mode (journal_mode is {mode})")
        conn.execute("PRAGMA synchronous = FULL")
    except BaseException:
        conn.close()
        raise
    return conn


def examine(path: Path, *, idle: bool = False) -> JournalInfo:
    """What the file at ``path`` is, without changing it; raises the typed error that
    says why it cannot be used. ``idle``: nobody can be writing it (the caller holds
    its lock, or has just made it)."""
    try:
        st = path.stat()
    except FileNotFoundError:
        raise JournalNotFound(path, "no such file", "Check the path (--journal)") from None
    if not stat.S_ISREG(st.st_mode):
        raise JournalForeign(path, "not a regular file", "Check the path (--journal)")
    with path.open("rb") as f:
        head = f.read(100)
    if not head.startswith(SQLITE_HEADER):
        what = "an empty file" if not head else "not an SQLite database"
        raise JournalForeign(
            path,
            f"{what}, so not a cellfab journal",
            "Check the path (--journal); if it was the journal, it is destroyed beyond "
            "SQLite's header: restore a backup. " + UNCHANGED,
        )
    if len(head) < 100:
        raise JournalDamaged(path, "the SQLite header is truncated", DAMAGED_REMEDY)
    app_id = int.from_bytes(head[68:72], "big")
    if app_id != schema.APPLICATION_ID:
        raise JournalForeign(
            path,
            f"an SQLite database of another application (application_id {app_id:#010x}; "
            f"a cellfab journal has {schema.APPLICATION_ID:#010x})",
            "Check the path (--journal). " + UNCHANGED,
        )
    # immutable only when no -wal (committed frames) or -journal (a hot rollback
    # journal) exists that SQLite would have to read
    immutable = idle and not any(Path(f"{path}{s}").exists() for s in ("-wal", "-journal"))
    try:
        with contextlib.closing(connect_ro(path, immutable=immutable)) as conn:
            return _examine_open(path, conn)
    except sqlite3.DatabaseError as exc:
        raise JournalDamaged(path, f"SQLite says: {sqlite_said(exc)}", DAMAGED_REMEDY) from None


def _examine_open(path: Path, conn: sqlite3.Connection) -> JournalInfo:
    problems = [str(row[0]) for row in conn.execute("PRAGMA quick_check(20)")]
    if problems != ["ok"]:
        raise JournalDamaged(
            path, "SQLite quick_check failed: " + "; ".join(problems), DAMAGED_REMEDY
        )
    meta = schema.read_meta(conn)
    if meta.get("magic") != schema.MAGIC:
        raise JournalDamaged(
            path, f"the meta table has no {schema.MAGIC!r} magic row", DAMAGED_REMEDY
        )
    try:
        version = int(meta["schema_version"])
    except (KeyError, ValueError):
        raise JournalDamaged(
            path, f"bad schema_version {meta.get('schema_version')!r}", DAMAGED_REMEDY
        ) from None
    known = schema.known_version()
    if version > known:
        raise JournalTooNew(path, version, known)
    if version < 1:
        raise JournalDamaged(path, f"bad schema_version {version}", DAMAGED_REMEDY)
    last = conn.execute("SELECT max(seq) FROM records").fetchone()[0]
    return JournalInfo(
        path=path,
        schema_version=version,
        instance=meta.get("instance", ""),
        created_at=meta.get("created_at", ""),
        last_seq=int(last or 0),
    )


def read_records(
    path: Path, *, after: int = 0, batch_id: str | None = None
) -> Iterator[tuple[int, Record]]:
    """``(seq, record)`` in seq order from one snapshot; a stored record that does not
    decode raises JournalDamaged naming its seq."""
    sql = "SELECT seq, type, body FROM records WHERE seq > ?"
    args: tuple[object, ...] = (after,)
    if batch_id is not None:
        sql += " AND batch_id = ?"
        args = (after, batch_id)
    try:
        with contextlib.closing(connect_ro(path)) as conn:
            conn.execute("BEGIN")
            for seq, type_name, body in conn.execute(sql + " ORDER BY seq", args):
                yield seq, _decode_row(path, seq, type_name, body)
    except sqlite3.DatabaseError as exc:
        raise JournalDamaged(
            path, f"reading records: SQLite says: {sqlite_said(exc)}", DAMAGED_REMEDY
        ) from None


def decode_stored(type_name: str, body: str) -> Record:
    """``records.decode`` for what was read from disk: whatever a damaged body makes the
    codec raise (it does not type-check every field) is a RecordError naming it."""
    try:
        return decode(type_name, body)
    except RecordError:
        raise
    except Exception as exc:
        raise RecordError(f"{type_name}: {type(exc).__name__}: {exc}") from None


def _decode_row(path: Path, seq: int, type_name: str, body: str) -> Record:
    try:
        return decode_stored(type_name, body)
    except RecordError as exc:
        raise JournalDamaged(
            path, f"record seq {seq} does not decode: {exc}", DAMAGED_REMEDY
        ) from None


def fsync_dir(folder: Path) -> None:
    fd = os.open(folder, os.O_RDONLY | os.O_DIRECTORY)
    try:
        os.fsync(fd)
    finally:
        os.close(fd)


def _fsync_file(path: Path) -> None:
    fd = os.open(path, os.O_RDONLY)
    try:
        os.fsync(fd)
    finally:
        os.close(fd)


def publish(tmp: Path, dest: Path) -> None:
    """Give the complete, fsync'd file ``tmp`` the name ``dest``, never replacing a file
    that is there (a hard link fails if ``dest`` exists), and make the name durable."""
    try:
        os.link(tmp, dest)
    except FileExistsError:
        raise JournalExists(
            dest, "a file is already there", "Choose another name: this never overwrites"
        ) from None
    finally:
        discard(tmp)
    fsync_dir(dest.parent)


def discard(path: Path) -> None:
    for p in (path, *(Path(f"{path}{s}") for s in SIDE_FILES)):
        with contextlib.suppress(FileNotFoundError):
            p.unlink()


def copy_database(
    source: sqlite3.Connection,
    dest: Path,
    prepare: Callable[[sqlite3.Connection], None] | None = None,
) -> None:
    """A consistent copy of ``source`` (one read transaction, WAL frames included) as the
    new file ``dest``; ``prepare`` may change the copy before it is published."""
    if dest.exists():
        raise JournalExists(
            dest, "a file is already there", "Choose another name: this never overwrites"
        )
    tmp = dest.with_name(f".{dest.name}.tmp-{os.getpid()}")
    discard(tmp)
    try:
        with contextlib.closing(sqlite3.connect(tmp, isolation_level=None)) as out:
            source.backup(out)
            if prepare is not None:
                prepare(out)
        _fsync_file(tmp)
    except BaseException:
        discard(tmp)
        raise
    publish(tmp, dest)


def aside_path(path: Path, label: str) -> Path:
    """A new name beside ``path`` for a copy kept aside (``NAME.LABEL-STAMP``)."""
    while True:
        candidate = path.with_name(f"{path.name}.{label}-{utc_stamp()}")
        if not candidate.exists():
            return candidate
