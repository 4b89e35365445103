"""The journal's single-writer lock: ``flock`` on ``JOURNAL.lock`` beside the journal.

This module owns the rule that one journal has one writer. ``JournalLock.acquire``
takes an exclusive, non-blocking ``flock`` on ``<journal>.lock`` and writes the holder's
pid into it; a second taker (another process, or another Journal in this one: ``flock``
belongs to an open file description, not to a process) gets ``JournalLocked`` naming
that pid. The kernel drops the lock when the holder dies, kill -9 included, so there is
no stale-lock clean-up; the lock file itself is never deleted (deleting it would let
two processes lock two different files of one name).

Why not SQLite's own locks (docs/decisions/0051): ``locking_mode=EXCLUSIVE`` would also
shut out the read-only commands (backup, verify) that must work while the daemon runs,
and POSIX ``fcntl`` locks, which SQLite uses on the database file, vanish when any file
descriptor of that file in the process is closed. A lock file beside the journal also
outlives the database's inode, which ``restore`` replaces.
"""

from __future__ import annotations

import contextlib
import fcntl
import os
from pathlib import Path

from daemon.journal.errors import JournalError, JournalLocked

__all__ = ["JournalLock", "lock_path"]


def lock_path(journal: Path) -> Path:
    return Path(f"{journal}.lock")


class JournalLock:
    """An exclusive hold on one journal, for as long as it is not released."""

    def __init__(self, journal: Path, fd: int) -> None:
        self.journal = journal
        self.path = lock_path(journal)
        self._fd: int | None = fd

    @classmethod
    def acquire(cls, journal: Path) -> JournalLock:
        path = lock_path(journal)
        try:
            # os.open makes the descriptor non-inheritable (PEP 446): a child process
            # never carries the lock away.
            fd = os.open(path, os.O_RDWR | os.O_CREAT, 0o644)
        except OSError as exc:
            raise JournalError(
                journal, f"cannot open its lock file {path}: {exc.strerror}", "Check the folder"
            ) from None
        try:
            fcntl.flock(fd, fcntl.LOCK_EX | fcntl.LOCK_NB)
        except BlockingIOError:
            holder = _read_pid(fd)
            os.close(fd)
            raise JournalLocked(journal, holder, path) from None
        except BaseException:
            os.close(fd)
            raise
        os.ftruncate(fd, 0)
        os.pwrite(fd, f"{os.getpid()}\n".encode(), 0)
        return cls(journal, fd)

    @property
    def held(self) -> bool:
        return self._fd is not None

    def release(self) -> None:
        """Let go (idempotent). The pid is wiped first so nobody is named falsely."""
        fd, self._fd = self._fd, None
        if fd is None:
            return
        with contextlib.suppress(OSError):
            os.ftruncate(fd, 0)
        os.close(fd)  # closing the last descriptor of the description drops the flock


def _read_pid(fd: int) -> int | None:
    try:
        text = os.pread(fd, 64, 0).decode("ascii", "replace").strip()
        return int(text) if text else None
    except (OSError, ValueError):
        return None
