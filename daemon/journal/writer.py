"""The journal's one writer thread: group commit, off the event loop.

This module owns the write connection and the queue in front of it. The event loop
calls ``submit`` (non-blocking: it only puts an already-encoded append on a queue and
returns an asyncio future); the writer thread takes every append waiting in the queue,
commits them in ONE transaction (so one fsync serves them all: group commit), then
resolves their futures on their loops. An fsync never runs on the event loop.

Guarantees:

* order: appends are committed in the order ``submit`` was called, and sequence
  numbers follow that order; an append's records get contiguous seqs;
* atomicity: an append is never split across transactions (a group is cut before an
  append that would make it exceed ``max_group`` records; a larger append goes alone);
* durability: a future resolves only after COMMIT returned under ``synchronous=FULL``;
* more than records: an append may carry ``then``, a function the writer thread runs
  on its connection inside the same transaction, after the append's records are inserted
  and given their seqs (the audit trail's rows, a user change: they commit with the
  records or not at all). ``then`` may refuse by raising ``TransactionRefused``: only its
  own append is rolled back (a savepoint) and the refusal goes to its future; the rest of
  the group commits;
* failure is loud: any other exception in the writer (disk full, I/O error, a bug) fails
  the group in flight and every queued and later append with ``JournalWriteError`` naming
  the cause, is logged, and stops the writer. It never retries: after a failed fsync
  the kernel may have dropped the dirty pages, so a retry could report success falsely.

Life cycle::

    start() -> running --stop()--> draining (queue committed) --> stopped
                  \\--exception--> failed (everything pending failed) --> stopped
"""

from __future__ import annotations

import asyncio
import contextlib
import dataclasses
import queue
import sqlite3
import threading
import time
from collections import defaultdict
from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path
from typing import Any, Final

import structlog

from daemon.journal.errors import JournalClosed, JournalWriteError, TransactionRefused

__all__ = ["DEFAULT_MAX_GROUP", "JournalStats", "Row", "Then", "Writer"]

log = structlog.get_logger("cellfab.journal")

DEFAULT_MAX_GROUP: Final = 4096  # records per transaction, at most (bounds one commit)
Row = tuple[str, str, float, str]  # batch_id, type name, at, body
INSERT: Final = "INSERT INTO records (seq, batch_id, type, at, body) VALUES (?, ?, ?, ?, ?)"
# runs in the writer thread inside the append's transaction: (connection, the append's
# record seqs) -> a value for the caller; raises TransactionRefused to refuse
Then = Callable[[sqlite3.Connection, list[int]], Any]


@dataclass(frozen=True, slots=True)
class JournalStats:
    """Counters since open, for metrics: one immutable snapshot per commit."""

    appends: int = 0
    records: int = 0
    commits: int = 0
    commit_seconds: float = 0.0  # total time from BEGIN to the end of COMMIT (fsync)
    commit_seconds_max: float = 0.0
    records_max: int = 0  # the largest commit

    @property
    def records_per_commit(self) -> float:
        return self.records / self.commits if self.commits else 0.0

    @property
    def commit_seconds_mean(self) -> float:
        return self.commit_seconds / self.commits if self.commits else 0.0


@dataclass(slots=True)
class _Pending:
    rows: list[Row]
    future: asyncio.Future[Any]
    loop: asyncio.AbstractEventLoop
    then: Then | None = None
    answer_then: bool = False  # the future gets then's value, not the seqs


class Writer:
    """The thread that owns ``conn`` (a connection from ``files.connect_rw``)."""

    def __init__(
        self, conn: sqlite3.Connection, *, path: Path, next_seq: int, max_group: int
    ) -> None:
        if max_group < 1:
            raise ValueError("max_group must be at least 1")
        self._conn = conn
        self._path = path
        self._next = next_seq
        self._max_group = max_group
        self._queue: queue.SimpleQueue[_Pending | None] = queue.SimpleQueue()
        self._gate = threading.Lock()  # submit vs stop/fail: nothing slips past either
        self._stopping = False
        self._cause: BaseException | None = None
        self.stats = JournalStats()
        # called on this thread after each commit with (seconds, records): metrics
        self.on_commit: Callable[[float, int], None] | None = None
        self._thread = threading.Thread(target=self._run, name="cellfab-journal-writer")
        # daemon: a process that forgot close() still exits; durability never depends
        # on an orderly stop (what was acknowledged is committed).
        self._thread.daemon = True

    @property
    def last_seq(self) -> int:
        return self._next - 1

    @property
    def failure(self) -> JournalWriteError | None:
        cause = self._cause
        return None if cause is None else JournalWriteError(self._path, cause)

    def start(self) -> None:
        self._thread.start()

    def submit(
        self, rows: list[Row], then: Then | None = None, *, answer_then: bool = False
    ) -> asyncio.Future[Any]:
        """Queue one append (its records' rows, and ``then``); the future gets their seqs
        (or ``then``'s value when ``answer_then``) once they are committed. Call from a
        running event loop."""
        loop = asyncio.get_running_loop()
        future: asyncio.Future[Any] = loop.create_future()
        with self._gate:
            if self._cause is not None:
                raise JournalWriteError(self._path, self._cause)
            if self._stopping:
                raise JournalClosed(self._path, "closed", "Open it again to append")
            self._queue.put(_Pending(rows, future, loop, then, answer_then))
        return future

    def stop(self) -> None:
        """Commit what is queued, then end the thread (see ``join``). Idempotent."""
        with self._gate:
            if not self._stopping:
                self._stopping = True
                self._queue.put(None)

    def join(self) -> None:
        self._thread.join()

    # ------------------------------------------------------------------ writer thread
    def _run(self) -> None:
        carry: _Pending | None = None
        group: list[_Pending] = []
        try:
            while True:
                item = carry if carry is not None else self._queue.get()
                carry = None
                if item is None:
                    return
                group, carry, stop = self._gather(item)
                outcomes = self._commit(group)
                done, group = group, []  # committed: from here on never failed
                _settle(list(zip(done, outcomes, strict=True)))
                if stop:
                    return
        except BaseException as exc:
            self._fail(exc, [*group, *([carry] if carry else [])])
        finally:
            with contextlib.suppress(sqlite3.Error):
                self._conn.close()

    def _gather(self, first: _Pending) -> tuple[list[_Pending], _Pending | None, bool]:
        """``first`` and every append waiting behind it, up to ``max_group`` records;
        returns the group, an append held over for the next group, and whether the
        stop marker was reached."""
        group, count = [first], len(first.rows)
        while count < self._max_group:
            try:
                item = self._queue.get_nowait()
            except queue.Empty:
                break
            if item is None:
                return group, None, True
            if count + len(item.rows) > self._max_group:
                return group, item, False
            group.append(item)
            count += len(item.rows)
        return group, None, False

    def _commit(self, group: list[_Pending]) -> list[Any]:
        start = time.perf_counter()
        first = self._next
        outcomes: list[Any] = []
        self._conn.execute("BEGIN IMMEDIATE")
        try:
            seq = first
            for pending in group:
                outcome, seq = self._one(pending, seq)
                outcomes.append(outcome)
            self._conn.execute("COMMIT")
        except BaseException:
            with contextlib.suppress(sqlite3.Error):
                self._conn.execute("ROLLBACK")
            raise
        self._next = seq
        took = time.perf_counter() - start
        s = self.stats
        self.stats = dataclasses.replace(
            s,
            appends=s.appends + len(group),
            records=s.records + (seq - first),
            commits=s.commits + 1,
            commit_seconds=s.commit_seconds + took,
            commit_seconds_max=max(s.commit_seconds_max, took),
            records_max=max(s.records_max, seq - first),
        )
        if self.on_commit is not None:
            try:
                self.on_commit(took, seq - first)
            except Exception:  # an observer never fails a commit
                log.exception("journal commit observer failed")
        return outcomes

    def _one(self, pending: _Pending, seq: int) -> tuple[Any, int]:
        """Insert one append's records from ``seq`` on and run its ``then``; returns its
        outcome and the next free seq. A refusal of ``then`` rolls back this append only."""
        seqs = list(range(seq, seq + len(pending.rows)))
        params = [(s, *row) for s, row in zip(seqs, pending.rows, strict=True)]
        if pending.then is None:
            self._conn.executemany(INSERT, params)
            return seqs, seq + len(seqs)
        self._conn.execute("SAVEPOINT pending")
        try:
            self._conn.executemany(INSERT, params)
            value = pending.then(self._conn, seqs)
        except TransactionRefused as refused:
            self._conn.execute("ROLLBACK TO pending")
            self._conn.execute("RELEASE pending")
            return refused, seq
        self._conn.execute("RELEASE pending")
        return (value if pending.answer_then else seqs), seq + len(seqs)

    def _fail(self, exc: BaseException, in_flight: list[_Pending]) -> None:
        log.error(
            "journal_writer_failed",
            path=str(self._path),
            error=f"{type(exc).__name__}: {exc}",
            last_seq=self.last_seq,
            exc_info=exc,
        )
        with self._gate:
            self._cause = exc
            pending = list(in_flight)
            while True:
                try:
                    item = self._queue.get_nowait()
                except queue.Empty:
                    break
                if item is not None:
                    pending.append(item)
        _settle([(p, JournalWriteError(self._path, exc)) for p in pending])


def _settle(outcomes: list[tuple[_Pending, Any]]) -> None:
    """Resolve futures on their own loops: one wake-up per loop, not one per append. An
    outcome that is an exception (a refusal, a failure) is raised by the future."""
    by_loop: dict[asyncio.AbstractEventLoop, list[tuple[asyncio.Future[Any], object]]]
    by_loop = defaultdict(list)
    for pending, outcome in outcomes:
        by_loop[pending.loop].append((pending.future, outcome))
    for loop, items in by_loop.items():
        with contextlib.suppress(RuntimeError):  # that loop is closed: nobody waits
            loop.call_soon_threadsafe(_resolve, items)


def _resolve(items: list[tuple[asyncio.Future[Any], object]]) -> None:
    for future, outcome in items:
        if future.done():  # the awaiting task was cancelled; the records stay committed
            continue
        if isinstance(outcome, BaseException):
            future.set_exception(outcome)
        else:
            future.set_result(outcome)
