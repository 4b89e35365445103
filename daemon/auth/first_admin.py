"""The first administrator of an installation, made locally (decision 0080).

``cellfab user add NAME --first-admin`` runs this against the journal FILE, not over the
API: the API has no user to sign in yet, and an unauthenticated API route that makes an
admin would be a door for anyone who reaches it first. Whoever may write the journal
file (the daemon's service account, or root) is already trusted with everything in it;
the journal's lock makes this refuse while a daemon runs (stop it, or never started),
and the check that no user exists runs in the writer thread, atomic with the insert, so
it works once per journal. The audit row names the local login that made it
(``local:LOGIN``) and the reason.
"""

from __future__ import annotations

from pathlib import Path

from daemon.audit.entries import Act, Actor
from daemon.audit.trail import AuditTrail
from daemon.auth.directory import Directory, User
from daemon.auth.passwords import Hasher
from daemon.journal.store import Journal

__all__ = ["add_first_admin"]


async def add_first_admin(
    journal_path: Path,
    *,
    hasher: Hasher,
    name: str,
    full_name: str,
    password: str,
    reason: str,
    login: str,
) -> User:
    """Open (or create) the journal, add ``name`` as admin if it has no user; raises
    ``RequestRefused`` (409) when it has, ``JournalLocked`` while a daemon holds it."""
    async with Journal.open(journal_path) as journal:
        directory = Directory(AuditTrail(journal), hasher=hasher)
        act = Act(Actor(f"local:{login}"), reason)
        return await directory.add(act, name, full_name, ["admin"], password, first=True)
