"""``AuditTrail``: the daemon's one writer and reader of audit rows.

Writing goes through the journal's writer thread, in the transaction of what the rows
accompany: ``then(entries, work)`` is the function a journal append carries (records
and their rows commit together); ``record(*entries, work=...)`` commits rows (and the
``work`` of a user or recipe change) in a transaction of their own. ``work(conn)``
runs first, in the same transaction; it may refuse (``RequestRefused``: nothing of it
is written) and returns ``(value, more entries)``, entries it can only make once it
has written (a lifecycle row's seq for the signature's reference).

Reading opens the journal file read-only (a snapshot; safe while the writer writes):
call it from a worker thread in the daemon.
"""

from __future__ import annotations

import contextlib
import sqlite3
from collections.abc import Callable, Sequence
from pathlib import Path
from typing import Any, Protocol

import structlog

from daemon.audit.chain import append_rows, last_link
from daemon.audit.entries import AuditRow, Entry, read_rows
from daemon.journal import files
from daemon.journal.records import Record
from daemon.journal.writer import Then

__all__ = ["AuditTrail", "Work"]

log = structlog.get_logger("cellfab.audit")

Work = Callable[[sqlite3.Connection], "tuple[Any, Sequence[Entry]]"]


class _Journal(Protocol):
    path: Path

    def append(self, *records: Record, then: Then | None = None) -> Any: ...

    def transact(self, then: Then) -> Any: ...


class AuditTrail:
    def __init__(self, journal: _Journal) -> None:
        self.journal = journal
        self.path = journal.path

    # ------------------------------------------------------------------ writing
    def then(self, entries: Sequence[Entry] = (), work: Work | None = None) -> Then:
        """The function a journal append carries: ``work``, then the rows."""

        def run(conn: sqlite3.Connection, seqs: list[int]) -> Any:
            value, more = work(conn) if work is not None else (None, ())
            rows = [e.body(conn, seqs) for e in (*entries, *more)]
            if rows:
                append_rows(conn, rows)
            return value

        return run

    async def record(self, *entries: Entry, work: Work | None = None) -> Any:
        """Commit ``work`` and the rows in one transaction; ``work``'s value."""
        return await self.journal.transact(self.then(entries, work))

    async def append(self, *records: Record, entries: Sequence[Entry] = ()) -> list[int]:
        """Journal ``records`` with their audit rows (``Entry.record`` indexes them)."""
        return await self.journal.append(*records, then=self.then(entries))  # type: ignore[no-any-return]

    # ------------------------------------------------------------------ reading
    def rows(self, **filters: Any) -> list[AuditRow]:
        """``entries.read_rows`` on a read-only snapshot of the journal."""
        with self._reader() as conn:
            return read_rows(conn, **filters)

    def signatures(self, **filters: Any) -> list[AuditRow]:
        """The rows that carry a signature (``batch_id=``, ``object_type=``, ...)."""
        return self.rows(signed=True, **filters)

    def head(self) -> tuple[int, str]:
        """The last row's seq and hash: note it down to anchor a later verify."""
        with self._reader() as conn:
            return last_link(conn)

    @contextlib.contextmanager
    def _reader(self) -> Any:
        with contextlib.closing(files.connect_ro(self.path)) as conn:
            conn.execute("BEGIN")
            yield conn
