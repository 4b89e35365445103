"""The journal store: ``Journal``, the one way the daemon writes and reads records.

This module owns opening a journal (create, check, migrate, lock) and its life as an
object; the writer thread is ``daemon.journal.writer``, file rules are
``daemon.journal.files``, the schema is ``daemon.journal.schema``, the lock is
``daemon.journal.lock``. Decisions: docs/decisions/0050 to 0053.

Use::

    journal = Journal.open(path)                     # sync, at start-up
    batches = replay(journal.read())                 # daemon.batch.machine.replay
    seqs = await journal.append(intent)              # durable once this returns
    await journal.close()                            # or: async with Journal.open(...)

``append`` is a plain method that returns an awaitable future: it encodes the records
in the caller (a record that cannot be encoded raises ``RecordError`` right there, and
nothing of that append is written) and queues them before it returns, so the order of
``append`` calls is the commit order. Awaiting the future is waiting for the fsync; the
event loop itself never waits. Cancelling the awaiting task does not take the records
back: they are committed anyway (their outcome is then unknown to that task).

Opening::

    missing --create--> made beside as a temporary file, published atomically
    present --examine--> foreign / damaged / newer: typed error, file untouched
                     \\-> older schema: backup copy beside, then migrated in one transaction
                     \\-> current: opened
    and in every case the lock (``<path>.lock``) first, held until close.
"""

from __future__ import annotations

import asyncio
import contextlib
import os
from collections.abc import Callable, Iterator
from datetime import UTC, datetime
from pathlib import Path
from types import TracebackType
from typing import Any

import structlog

from daemon.journal import files, schema
from daemon.journal.errors import (
    JournalClosed,
    JournalError,
    JournalExists,
    JournalMigrationError,
    JournalNotFound,
    JournalWriteError,
)
from daemon.journal.lock import JournalLock
from daemon.journal.records import Record, encode
from daemon.journal.writer import DEFAULT_MAX_GROUP, JournalStats, Row, Then, Writer

__all__ = ["DEFAULT_PATH", "Journal"]

log = structlog.get_logger("cellfab.journal")

DEFAULT_PATH = Path("cellfab-journal.sqlite")


class Journal:
    """An open journal: the lock, the writer thread and what the file said when opened."""

    def __init__(self, info: files.JournalInfo, lock: JournalLock, writer: Writer) -> None:
        self.path = info.path
        self.schema_version = info.schema_version
        self.instance = info.instance  # 3 Crockford base32 characters, for batch ids
        self.created_at = info.created_at
        self._lock = lock
        self._writer = writer
        self._closed = False

    # ------------------------------------------------------------------ opening
    @classmethod
    def open(
        cls,
        path: str | os.PathLike[str],
        *,
        create: bool = True,
        max_group: int = DEFAULT_MAX_GROUP,
    ) -> Journal:
        """Open (or create) the journal at ``path`` for writing. ``max_group`` caps the
        records of one commit; 1 commits every append alone (for benchmarks)."""
        if max_group < 1:
            raise ValueError(f"max_group must be at least 1, not {max_group}")
        p = Path(path)
        if not create and not p.exists():
            raise JournalNotFound(p, "no such file", "Check the path (--journal)")
        if not p.parent.is_dir():
            raise JournalNotFound(p, f"its folder {p.parent} does not exist", "Create it")
        lock = JournalLock.acquire(p)
        try:
            if not p.exists():
                info = _create(p)
            else:
                info = files.examine(p, idle=True)
                if info.schema_version < schema.known_version():
                    info = _migrate(p, info)
            conn = files.connect_rw(p)
            try:
                last = conn.execute("SELECT max(seq) FROM records").fetchone()[0]
                files.fsync_dir(p.parent)  # the -wal file now exists: make its name durable
                writer = Writer(conn, path=p, next_seq=int(last or 0) + 1, max_group=max_group)
            except BaseException:
                conn.close()
                raise
            writer.start()
        except BaseException:
            lock.release()
            raise
        log.info(
            "journal_opened",
            path=str(p),
            schema_version=info.schema_version,
            instance=info.instance,
            last_seq=writer.last_seq,
        )
        return cls(info, lock, writer)

    # ------------------------------------------------------------------ writing
    def append(self, *records: Record, then: Then | None = None) -> asyncio.Future[list[int]]:
        """Queue ``records`` as one atomic append; await the result for their seqs,
        available once they are durably committed. ``then(conn, seqs)`` runs in the
        writer thread in the same transaction (the audit rows that go with the records,
        ``daemon.audit``). Raises ``RecordError`` (nothing queued) for a record that
        cannot be encoded, ``JournalWriteError`` after a writer failure,
        ``JournalClosed`` after close; the future raises ``TransactionRefused`` when
        ``then`` refused (nothing of this append is written)."""
        rows: list[Row] = []
        for record in records:
            type_name, body = encode(record)
            rows.append((record.batch_id, type_name, record.at, body))
        if not rows and then is None:
            done: asyncio.Future[list[int]] = asyncio.get_running_loop().create_future()
            done.set_result([])
            return done
        return self._writer.submit(rows, then)

    def transact(self, then: Then) -> asyncio.Future[Any]:
        """Run ``then(conn, [])`` in the writer thread in a transaction of its own group
        commit, without records (a user change and its audit row); the future gets its
        value once committed, or raises the ``TransactionRefused`` it raised."""
        return self._writer.submit([], then, answer_then=True)

    @property
    def last_seq(self) -> int:
        """The seq of the last committed record (0 when empty)."""
        return self._writer.last_seq

    @property
    def stats(self) -> JournalStats:
        return self._writer.stats

    def observe_commits(self, observer: Callable[[float, int], None] | None) -> None:
        """Call ``observer(seconds, records)`` after every commit, on the writer thread
        (for metrics: it must be quick and thread-safe; what it raises is logged)."""
        self._writer.on_commit = observer

    @property
    def failure(self) -> JournalWriteError | None:
        """Why the writer stopped, if it failed."""
        return self._writer.failure

    # ------------------------------------------------------------------ reading
    def read(self, after: int = 0) -> Iterator[tuple[int, Record]]:
        """Every committed record with seq > ``after``, in order, from one snapshot."""
        self._check_open()
        return files.read_records(self.path, after=after)

    def batch_records(self, batch_id: str) -> list[tuple[int, Record]]:
        """The committed records of one batch, in order."""
        self._check_open()
        return list(files.read_records(self.path, batch_id=batch_id))

    # ------------------------------------------------------------------ closing
    async def close(self) -> None:
        """Commit what is queued, stop the writer thread, release the lock. Idempotent;
        a writer failure does not make it raise (the appends carried it)."""
        if self._closed:
            return
        self._closed = True
        self._writer.stop()
        try:
            await asyncio.to_thread(self._writer.join)
        finally:
            self._lock.release()
        log.info("journal_closed", path=str(self.path), last_seq=self.last_seq)

    async def __aenter__(self) -> Journal:
        return self

    async def __aexit__(
        self,
        exc_type: type[BaseException] | None,
        exc: BaseException | None,
        tb: TracebackType | None,
    ) -> None:
        await self.close()

    def _check_open(self) -> None:
        if self._closed:
            raise JournalClosed(self.path, "closed", "Open it again to read")


# --------------------------------------------------------------------------- helpers
def _create(path: Path) -> files.JournalInfo:
    """A new journal at ``path``: made as a temporary file beside it and published only
    when complete, so a crash during creation never leaves half a journal."""
    tmp = path.with_name(f".{path.name}.creating-{os.getpid()}")
    instance = schema.new_instance_tag()
    created_at = datetime.now(UTC).isoformat(timespec="seconds")
    with contextlib.suppress(FileNotFoundError):
        tmp.unlink()
    try:
        with contextlib.closing(files.connect_rw(tmp)) as conn:
            conn.execute("BEGIN IMMEDIATE")
            version = schema.create(conn, instance=instance, created_at=created_at)
            conn.execute("COMMIT")
        files.publish(tmp, path)
    except JournalExists:
        raise JournalError(
            path, "another program created a file there while this one was creating it"
        ) from None
    except BaseException:
        files.discard(tmp)
        raise
    log.info("journal_created", path=str(path), instance=instance, schema_version=version)
    return files.JournalInfo(path, version, instance, created_at, 0)


def _migrate(path: Path, info: files.JournalInfo) -> files.JournalInfo:
    """Bring ``path`` from ``info.schema_version`` to the current version in one
    transaction, after a backup copy beside it; on failure nothing is changed."""
    old = info.schema_version
    aside = files.aside_path(path, f"v{old}-backup")
    with contextlib.closing(files.connect_ro(path)) as source:
        files.copy_database(source, aside)
    conn = files.connect_rw(path)
    try:
        conn.execute("BEGIN IMMEDIATE")
        version = schema.migrate(conn, old)
        conn.execute("COMMIT")
    except Exception as exc:
        with contextlib.suppress(Exception):
            conn.execute("ROLLBACK")
        raise JournalMigrationError(
            path,
            f"migrating schema v{old} to v{schema.known_version()} failed "
            f"({type(exc).__name__}: {exc}); rolled back, the journal is still v{old}",
            f"A copy from before is at {aside}; report this with both files",
        ) from exc
    finally:
        conn.close()
    log.info("journal_migrated", path=str(path), old=old, new=version, backup=str(aside))
    return files.JournalInfo(path, version, info.instance, info.created_at, info.last_seq)
