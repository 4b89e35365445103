"""The journal's typed errors: which file, what is wrong, what to do.

This module owns the ``JournalError`` family. Every error names the journal file, says
what is wrong with it, and says what a person can do about it; a refused file is never
changed, and each message says so where that matters. ``str(error)`` is the whole
message, ready for a log line or the command line.

A record that cannot be encoded is not a journal error: ``records.encode`` raises
``records.RecordError`` in the caller, before anything is queued.
"""

from __future__ import annotations

from pathlib import Path

__all__ = [
    "JournalClosed",
    "JournalDamaged",
    "JournalError",
    "JournalExists",
    "JournalForeign",
    "JournalLocked",
    "JournalMigrationError",
    "JournalNotFound",
    "JournalTooNew",
    "JournalWriteError",
    "TransactionRefused",
    "sqlite_said",
]

UNCHANGED = "The file was not changed."


def sqlite_said(exc: BaseException) -> str:
    """An exception's message, with SQLite's error code name when it has one
    (SQLITE_CORRUPT, SQLITE_NOTADB, SQLITE_FULL, SQLITE_IOERR_WRITE, ...)."""
    code = getattr(exc, "sqlite_errorname", "")
    return f"{exc} ({code})" if code else str(exc)


class JournalError(Exception):
    """A journal file that cannot be used as asked; ``path``, ``problem``, ``remedy``."""

    def __init__(self, path: str | Path, problem: str, remedy: str = "") -> None:
        self.path = Path(path)
        self.problem = problem
        self.remedy = remedy
        text = f"journal {self.path}: {problem}"
        super().__init__(f"{text}. {remedy}" if remedy else text)


class JournalNotFound(JournalError):
    """There is no journal at the path and creating one was not asked for."""


class JournalExists(JournalError):
    """A file is in the way of one that is never overwritten (a backup's target)."""


class JournalForeign(JournalError):
    """Not a cellfab journal: not SQLite at all, or another application's database."""


class JournalDamaged(JournalError):
    """A cellfab journal that SQLite's checks or the record codec find damaged."""


class JournalTooNew(JournalError):
    """Written by a newer cellfab: its schema version is above the one this code knows."""

    def __init__(self, path: str | Path, version: int, known: int) -> None:
        self.version = version
        self.known = known
        super().__init__(
            path,
            f"schema version {version} is newer than this cellfab knows (up to {known})",
            "Run the cellfab that wrote it, or restore a backup made for this version. "
            + UNCHANGED,
        )


class JournalMigrationError(JournalError):
    """A schema migration failed; its transaction was rolled back."""


class JournalLocked(JournalError):
    """Another process (or another Journal in this one) holds the journal's lock."""

    def __init__(self, path: str | Path, holder: int | None, lock_path: str | Path) -> None:
        self.holder = holder
        who = f"pid {holder}" if holder else "a process that has not written its pid yet"
        super().__init__(
            path,
            f"in use by {who} (lock {lock_path})",
            "A journal has one writer: stop that daemon first, or use a read-only "
            "command (backup, verify)",
        )


class JournalWriteError(JournalError):
    """The writer thread failed (disk full, I/O error, ...): this append and every
    pending and later one fail with it. The records of a failed append may or may not be
    on disk (an fsync that fails says nothing certain); treat their outcome as unknown."""

    def __init__(self, path: str | Path, cause: BaseException) -> None:
        self.cause = cause
        super().__init__(
            path,
            f"the writer failed: {type(cause).__name__}: {sqlite_said(cause)}",
            "Nothing more is written by this Journal; fix the disk and restart the daemon "
            "(the journal replays what was committed)",
        )


class JournalClosed(JournalError):
    """The Journal was closed; nothing more can be appended or read through it."""


class TransactionRefused(Exception):
    """Raised by an append's ``then`` (in the writer thread) to refuse that append: its
    records and changes are rolled back, the others of its group commit, and the caller's
    future raises this exception (or the subclass it was)."""
