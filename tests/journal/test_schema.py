"""Schema versions: a fixture journal of every version opens with this code, and the
migration machinery (backup beside, one transaction, in order, refusal of what is
newer) is proved with a test-only next version registered on top of the real ones."""

from __future__ import annotations

import contextlib
import sqlite3
from pathlib import Path

import pytest

from daemon.batch.machine import replay
from daemon.batch.states import BatchState
from daemon.journal import files, schema
from daemon.journal.errors import JournalMigrationError, JournalTooNew
from daemon.journal.store import Journal
from tests.journal.fixtures.make_fixtures import BATCHES, INSTANCE, fixture_path
from tests.journal.sample import copy_journal, digest, story

EXPECTED = [rec for b in BATCHES for rec in story(b)]
VERSIONS = range(1, schema.known_version() + 1)


def _tables(path: Path) -> set[str]:
    with contextlib.closing(sqlite3.connect(path)) as conn:
        return {n for (n,) in conn.execute("SELECT name FROM sqlite_master WHERE type='table'")}


def _backups(folder: Path, version: int) -> list[Path]:
    found = folder.glob(f"*.v{version}-backup-*")
    return sorted(p for p in found if not p.name.endswith(files.SIDE_FILES))


def add_notes(conn: sqlite3.Connection) -> None:
    """A test-only next version: a new table and data derived from the records."""
    conn.execute("CREATE TABLE notes (seq INTEGER PRIMARY KEY, what TEXT NOT NULL)")
    conn.execute("INSERT INTO notes (seq, what) SELECT seq, type FROM records")


def test_every_schema_version_has_its_fixture() -> None:
    for version in VERSIONS:
        assert fixture_path(version).exists(), (
            f"no fixture journal for schema v{version}: run "
            "python -m tests.journal.fixtures.make_fixtures and commit it"
        )


@pytest.mark.parametrize("version", VERSIONS)
async def test_each_fixture_opens_at_the_current_version_with_its_records(
    tmp_path: Path, version: int
) -> None:
    path = copy_journal(fixture_path(version), tmp_path)
    async with Journal.open(path) as journal:
        assert journal.schema_version == schema.known_version()
        assert journal.instance == INSTANCE
        stored = list(journal.read())
        assert [rec for _, rec in stored] == EXPECTED
        batches = replay(stored)
        assert sorted(batches) == sorted(BATCHES)
        assert {b.state for b in batches.values()} == {BatchState.HELD}
        assert await journal.append(story("B0003-FXT")[0]) == [len(EXPECTED) + 1]
    assert len(_backups(tmp_path, version)) == (1 if version < schema.known_version() else 0)


async def test_a_registered_next_version_migrates_the_v1_fixture_after_a_backup(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    path = copy_journal(fixture_path(1), tmp_path)
    real = schema.MIGRATIONS
    monkeypatch.setattr(schema, "MIGRATIONS", (*real, add_notes))
    assert schema.known_version() == len(real) + 2
    async with Journal.open(path) as journal:
        assert journal.schema_version == schema.known_version()
        assert [rec for _, rec in journal.read()] == EXPECTED
    assert "notes" in _tables(path)
    [backup] = _backups(tmp_path, 1)
    assert digest(backup) is not None and "notes" not in _tables(backup)
    assert files.examine(backup).schema_version == 1  # the copy from before, whole
    assert list(files.read_records(backup)) == list(files.read_records(path))
    async with Journal.open(path):  # already current: no second migration, no backup
        pass
    assert len(_backups(tmp_path, 1)) == 1
    monkeypatch.setattr(schema, "MIGRATIONS", real)  # back to this code's versions
    migrated = digest(path)
    with pytest.raises(JournalTooNew, match=f"schema version {len(real) + 2} is newer"):
        Journal.open(path)
    assert digest(path) == migrated


async def test_a_failing_migration_rolls_back_and_keeps_the_backup(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    path = copy_journal(fixture_path(1), tmp_path)

    def broken(conn: sqlite3.Connection) -> None:
        conn.execute("CREATE TABLE half_done (x)")
        conn.execute("INSERT INTO no_such_table VALUES (1)")

    monkeypatch.setattr(schema, "MIGRATIONS", (*schema.MIGRATIONS, add_notes, broken))
    with pytest.raises(JournalMigrationError) as failed:
        Journal.open(path)
    message = str(failed.value)
    assert "no such table: no_such_table" in message and "rolled back" in message
    [backup] = _backups(tmp_path, 1)
    assert str(backup) in message
    monkeypatch.setattr(schema, "MIGRATIONS", schema.MIGRATIONS[:-2])
    assert files.examine(path).schema_version == 1  # no version and no half of one stayed
    assert not {"notes", "half_done"} & _tables(path)
    async with Journal.open(path) as journal:  # the lock was released with the failure
        assert [rec for _, rec in journal.read()] == EXPECTED


def test_migrate_runs_each_step_once_in_order_up_to_a_target(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    ran: list[str] = []
    steps = (lambda c: ran.append("2"), lambda c: ran.append("3"), lambda c: ran.append("4"))
    monkeypatch.setattr(schema, "MIGRATIONS", (*schema.MIGRATIONS, *steps))
    base = len(schema.MIGRATIONS) - 2  # the version the real migrations reach
    with contextlib.closing(sqlite3.connect(tmp_path / "m.sqlite", isolation_level=None)) as conn:
        conn.execute("BEGIN")
        assert schema.create(conn, instance="AAA", created_at="now", upto=base) == base
        assert ran == []
        assert schema.migrate(conn, base, upto=base + 2) == base + 2
        assert schema.read_meta(conn)["schema_version"] == str(base + 2)
        assert schema.migrate(conn, base + 2) == base + 3
        conn.execute("COMMIT")
    assert ran == ["2", "3", "4"]
    with pytest.raises(ValueError, match="no migration path"):
        schema.migrate(sqlite3.connect(":memory:"), 3, upto=2)


def test_instance_tags_are_unambiguous_and_avoid_the_taken(monkeypatch: pytest.MonkeyPatch) -> None:
    tags = {schema.new_instance_tag() for _ in range(200)}
    assert all(len(t) == 3 and set(t) <= set(schema.ALPHABET) for t in tags)
    assert len(schema.ALPHABET) == 32 and not set("ILOU") & set(schema.ALPHABET)
    drawn = iter("AAAAAAB0C")
    monkeypatch.setattr(schema.secrets, "choice", lambda _alphabet: next(drawn))
    assert schema.new_instance_tag({"AAA"}) == "B0C"


V2_TABLES = {"users", "tokens", "audit", "recipe_lifecycle"}


async def test_the_v1_fixture_migrates_to_v2_with_the_control_plane_tables(tmp_path: Path) -> None:
    """v1 -> v2: users, tokens, the audit trail and the recipe lifecycle, empty; the
    records as they were; audit and lifecycle rows refuse UPDATE and DELETE, users
    refuse DELETE (ids are never reused: AUTOINCREMENT)."""
    path = copy_journal(fixture_path(1), tmp_path)
    assert not V2_TABLES & _tables(path)
    async with Journal.open(path) as journal:
        assert journal.schema_version >= 2
        assert [rec for _, rec in journal.read()] == EXPECTED
    assert V2_TABLES <= _tables(path)
    with contextlib.closing(sqlite3.connect(path, isolation_level=None)) as conn:
        for table in V2_TABLES:
            assert conn.execute(f"SELECT count(*) FROM {table}").fetchone() == (0,)
        conn.execute(
            "INSERT INTO audit (seq, at, actor, action, object_type, object_id, batch_id, "
            "body, prev, hash) VALUES (1, 't', 'a', 'x', 'o', 'i', '', '{}', 'p', 'h')"
        )
        for sql in ("UPDATE audit SET actor = 'b'", "DELETE FROM audit"):
            with pytest.raises(sqlite3.IntegrityError, match="append-only"):
                conn.execute(sql)
        conn.execute(
            "INSERT INTO users (name, full_name, roles, password, enabled, created_at, "
            "changed_at) VALUES ('ann', 'Ann', '[]', 'x', 1, 't', 't')"
        )
        with pytest.raises(sqlite3.IntegrityError, match="never deleted"):
            conn.execute("DELETE FROM users")
        schema_sql = " ".join(r[0] for r in conn.execute("SELECT sql FROM sqlite_master") if r[0])
        assert "AUTOINCREMENT" in schema_sql
