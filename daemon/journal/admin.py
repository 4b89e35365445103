"""Journal administration: backup, restore and verify (the `cellfab journal` commands).

This module owns what an operator does to a journal file from outside the daemon:

* ``backup(journal, dest)``: SQLite's online backup API from a read-only connection,
  one read transaction, so it is consistent and safe while the daemon writes; the copy
  is published atomically and never over an existing file.
* ``restore(backup_file, journal)``: takes the journal's lock (so it refuses while a
  daemon holds it), refuses a backup that is foreign, damaged (quick_check) or newer,
  keeps the replaced journal aside (with its -wal, so it stays exactly as it was), and
  publishes a copy of the backup with a NEW instance tag: batch ids made after the
  backup in the replaced journal can then never be made again (docs/decisions/0053).
* ``verify(journal)``: SQLite's integrity_check, every record decodes and agrees with
  its columns, seqs strictly increase, and replay through the batch reducer raises no
  ReducerError. Read-only; safe while the daemon runs.
"""

from __future__ import annotations

import contextlib
import os
import sqlite3
from collections import Counter
from collections.abc import Iterator
from dataclasses import dataclass, field
from datetime import UTC, datetime
from pathlib import Path
from typing import Final

import structlog

from daemon.batch.machine import Batch, ReducerError, replay
from daemon.journal import files, schema
from daemon.journal.errors import JournalError, sqlite_said
from daemon.journal.lock import JournalLock
from daemon.journal.records import Record, RecordError

__all__ = ["RestoreResult", "VerifyReport", "backup", "restore", "verify"]

log = structlog.get_logger("cellfab.journal")

MAX_LISTED: Final = 20  # problems listed one by one; more are counted


def backup(journal: Path, dest: Path) -> files.JournalInfo:
    """Copy ``journal`` to the new file ``dest``; returns what the copy holds."""
    files.examine(journal)
    with contextlib.closing(files.connect_ro(journal)) as source:
        files.copy_database(source, dest)
    info = files.examine(dest, idle=True)
    log.info("journal_backed_up", path=str(journal), dest=str(dest), last_seq=info.last_seq)
    return info


@dataclass(frozen=True, slots=True)
class RestoreResult:
    info: files.JournalInfo  # the restored journal
    replaced: Path | None  # where the journal it replaced was kept ("" when none)
    backup_instance: str  # the instance tag the backup had


def restore(backup_file: Path, journal: Path) -> RestoreResult:
    """Make ``journal`` a copy of ``backup_file`` (see the module docstring)."""
    lock = JournalLock.acquire(journal)
    try:
        source_info = files.examine(backup_file)
        avoid = {source_info.instance}
        if journal.exists():
            with contextlib.suppress(JournalError):
                avoid.add(files.examine(journal, idle=True).instance)
        instance = schema.new_instance_tag(avoid)
        stamp = datetime.now(UTC).isoformat(timespec="seconds")

        def retag(conn: sqlite3.Connection) -> None:
            conn.execute("BEGIN IMMEDIATE")
            schema.set_meta(conn, {"instance": instance, "restored_at": stamp})
            conn.execute("COMMIT")

        staged = journal.with_name(f".{journal.name}.restoring-{os.getpid()}")
        files.discard(staged)
        with contextlib.closing(files.connect_ro(backup_file)) as source:
            files.copy_database(source, staged, prepare=retag)
        replaced = _set_aside(journal)
        try:
            files.publish(staged, journal)
        except BaseException:
            if replaced is not None:
                _move_with_side_files(replaced, journal)  # put it back as it was
            raise
        info = files.examine(journal, idle=True)
    finally:
        lock.release()
    log.info(
        "journal_restored",
        path=str(journal),
        backup=str(backup_file),
        replaced=str(replaced) if replaced else "",
        instance=info.instance,
    )
    return RestoreResult(info, replaced, source_info.instance)


def _set_aside(journal: Path) -> Path | None:
    """Rename the journal and its side files to a new name beside it, together, so the
    aside copy opens with exactly the content it had (its -wal included)."""
    if not journal.exists():
        return None
    aside = files.aside_path(journal, "replaced")
    _move_with_side_files(journal, aside)
    return aside


def _move_with_side_files(source: Path, dest: Path) -> None:
    for suffix in files.SIDE_FILES:
        side = Path(f"{source}{suffix}")
        if side.exists():
            side.rename(Path(f"{dest}{suffix}"))
    source.rename(dest)
    files.fsync_dir(dest.parent)


# --------------------------------------------------------------------------- verify
@dataclass(slots=True)
class VerifyReport:
    info: files.JournalInfo
    records: int = 0
    first_seq: int = 0
    batches: dict[str, Batch] = field(default_factory=dict)
    problems: list[str] = field(default_factory=list)
    unlisted: int = 0  # problems beyond MAX_LISTED

    @property
    def ok(self) -> bool:
        return not self.problems

    def by_state(self) -> dict[str, int]:
        return dict(sorted(Counter(str(b.state) for b in self.batches.values()).items()))

    def problem(self, text: str) -> None:
        if len(self.problems) < MAX_LISTED:
            self.problems.append(text)
        else:
            self.unlisted += 1


def verify(journal: Path) -> VerifyReport:
    """Check ``journal`` through and through; typed errors for what ``examine`` refuses,
    a report with every problem (what and where) for the rest."""
    info = files.examine(journal)
    report = VerifyReport(info)
    decoded: list[tuple[int, Record]] = []
    with contextlib.closing(files.connect_ro(journal)) as conn:
        conn.execute("BEGIN")  # one snapshot for every check
        try:
            for (line,) in conn.execute("PRAGMA integrity_check(20)"):
                if line != "ok":
                    report.problem(f"SQLite integrity_check: {line}")
            for seq, record, problem in _scan(conn):
                report.records += 1
                report.first_seq = report.first_seq or seq
                if problem:
                    report.problem(f"seq {seq}: {problem}")
                elif record is not None:
                    decoded.append((seq, record))
        except sqlite3.DatabaseError as exc:
            report.problem(f"SQLite says: {sqlite_said(exc)}")
    if report.problems:
        report.problem("replay skipped: the records above are not all readable")
        return report
    where = [0]

    def tracked() -> Iterator[tuple[int, Record]]:
        for pair in decoded:
            where[0] = pair[0]
            yield pair

    try:
        report.batches = replay(tracked())
    except ReducerError as exc:
        report.problem(f"seq {where[0]}: replay refused the record: {exc}")
    return report


def _scan(conn: sqlite3.Connection) -> Iterator[tuple[int, Record | None, str]]:
    """Every row as ``(seq, record or None, problem or "")``."""
    previous = 0
    rows = conn.execute("SELECT seq, batch_id, type, at, body FROM records ORDER BY seq")
    for seq, batch_id, type_name, at, body in rows:
        if not isinstance(seq, int) or seq <= previous:
            yield seq, None, f"seq does not increase (after {previous})"
            continue
        previous = seq
        try:
            record = files.decode_stored(type_name, body)
        except RecordError as exc:
            yield seq, None, f"does not decode: {exc}"
            continue
        if (record.batch_id, record.at) != (batch_id, at):
            yield seq, None, f"columns (batch_id {batch_id!r}, at {at!r}) disagree with the body"
            continue
        yield seq, record, ""
