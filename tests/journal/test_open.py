"""Opening a journal: a new one is made whole; a foreign, damaged or newer file is
refused with a message naming the file, the problem and the remedy, and is left
byte-identical (its folder too: no side files appear)."""

from __future__ import annotations

import asyncio
import contextlib
import re
import sqlite3
from collections.abc import Callable
from pathlib import Path

import pytest

from daemon.journal import schema
from daemon.journal.errors import (
    JournalDamaged,
    JournalError,
    JournalForeign,
    JournalNotFound,
    JournalTooNew,
)
from daemon.journal.files import SQLITE_HEADER
from daemon.journal.store import Journal
from tests.journal.sample import copy_journal, digest, story

PAGE = 4096


def _names(folder: Path) -> list[str]:
    return sorted(p.name for p in folder.iterdir())


async def test_a_new_journal_is_made_with_its_schema_instance_and_wal(tmp_path: Path) -> None:
    path = tmp_path / "j.sqlite"
    async with Journal.open(path) as journal:
        assert journal.schema_version == schema.known_version()
        assert re.fullmatch(r"[0-9A-HJKMNP-TV-Z]{3}", journal.instance)
        instance = journal.instance
    head = path.read_bytes()[:100]
    assert head.startswith(SQLITE_HEADER)
    assert int.from_bytes(head[68:72], "big") == schema.APPLICATION_ID
    with contextlib.closing(sqlite3.connect(path)) as conn:
        assert conn.execute("PRAGMA journal_mode").fetchone() == ("wal",)
        meta = schema.read_meta(conn)
    assert meta["magic"] == schema.MAGIC and meta["instance"] == instance
    assert meta["schema_version"] == str(schema.known_version())
    assert _names(tmp_path) == ["j.sqlite", "j.sqlite.lock"]  # no temporary file left
    async with Journal.open(path) as again:
        assert again.instance == instance  # made once, kept


def test_missing_file_without_create_and_missing_folder_are_refused(tmp_path: Path) -> None:
    with pytest.raises(JournalNotFound, match="no such file"):
        Journal.open(tmp_path / "none.sqlite", create=False)
    assert list(tmp_path.iterdir()) == []  # not even a lock file
    with pytest.raises(JournalNotFound, match="does not exist"):
        Journal.open(tmp_path / "no" / "such" / "j.sqlite")


@pytest.fixture(scope="module")
def paged(tmp_path_factory: pytest.TempPathFactory) -> Path:
    """A closed journal of 20 batches: many b-tree pages, everything in the main file."""
    path = tmp_path_factory.mktemp("paged") / "j.sqlite"

    async def fill() -> None:
        async with Journal.open(path) as journal:
            for n in range(20):
                await journal.append(*story(f"B{n:04d}-AAA"))

    asyncio.run(fill())
    return path


def _text(path: Path) -> None:
    path.write_text("batch,patient\nB1,P1\n")


def _empty(path: Path) -> None:
    path.write_bytes(b"")


def _other_sqlite(path: Path) -> None:
    with contextlib.closing(sqlite3.connect(path)) as conn:
        conn.execute("CREATE TABLE t (x)")
        conn.commit()


def _our_id_no_magic(path: Path) -> None:
    with contextlib.closing(sqlite3.connect(path)) as conn:
        conn.execute(f"PRAGMA application_id = {schema.APPLICATION_ID}")
        conn.execute("CREATE TABLE meta (key TEXT PRIMARY KEY, value TEXT)")
        conn.commit()


def _page_header_smashed(path: Path) -> None:
    data = bytearray(path.read_bytes())
    last = len(data) // PAGE - 1  # a b-tree page of the records or their index
    data[last * PAGE : last * PAGE + 12] = b"\xff" * 12
    path.write_bytes(bytes(data))


def _header_smashed(path: Path) -> None:
    data = bytearray(path.read_bytes())
    data[16:18] = b"\x00\x07"  # page size 7: not a power of two
    path.write_bytes(bytes(data))


def _newer(path: Path) -> None:
    with contextlib.closing(sqlite3.connect(path, isolation_level=None)) as conn:
        conn.execute("UPDATE meta SET value = '99' WHERE key = 'schema_version'")


REFUSALS: list[tuple[str, Callable[[Path], None], type[JournalError], str]] = [
    ("text file", _text, JournalForeign, "not an SQLite database"),
    ("empty file", _empty, JournalForeign, "an empty file"),
    ("other SQLite", _other_sqlite, JournalForeign, "another application"),
    ("no magic", _our_id_no_magic, JournalDamaged, "magic row"),
    ("page smashed", _page_header_smashed, JournalDamaged, "quick_check failed|malformed"),
    ("header smashed", _header_smashed, JournalDamaged, "SQLite says"),
    ("newer", _newer, JournalTooNew, "schema version 99 is newer"),
]


@pytest.mark.parametrize(
    ("spoil", "error", "problem"), [c[1:] for c in REFUSALS], ids=[c[0] for c in REFUSALS]
)
def test_a_file_that_is_not_a_usable_journal_is_refused_and_left_alone(
    tmp_path: Path,
    paged: Path,
    spoil: Callable[[Path], None],
    error: type[JournalError],
    problem: str,
) -> None:
    path = copy_journal(paged, tmp_path / "spoilt")
    if spoil in (_text, _empty, _other_sqlite, _our_id_no_magic):
        path.unlink()
    spoil(path)
    before = digest(path)
    with pytest.raises(error) as refused:
        Journal.open(path)
    message = str(refused.value)
    assert message.startswith(f"journal {path}: ") and re.search(problem, message), message
    assert "not changed" in message or "Check the path" in message
    assert digest(path) == before
    assert sorted(p.name for p in path.parent.iterdir()) == [
        "journal.sqlite",
        "journal.sqlite.lock",
    ]
    with pytest.raises(error):  # the lock was released with the refusal: same answer again
        Journal.open(path)


def test_every_refusal_says_what_to_do() -> None:
    damaged = JournalDamaged(Path("j"), "x", "Restore a backup")
    assert str(damaged) == "journal j: x. Restore a backup"
    newer = JournalTooNew(Path("j"), 3, 1)
    assert "Run the cellfab that wrote it" in str(newer) and (newer.version, newer.known) == (3, 1)


async def test_a_leftover_wal_of_a_crashed_daemon_is_replayed_not_refused(tmp_path: Path) -> None:
    """A journal whose daemon died keeps committed records in its -wal: open recovers
    them (this is the normal restart after kill -9, not damage)."""
    path = tmp_path / "j.sqlite"
    journal = Journal.open(path)
    await journal.append(*story("B0001-AAA"))
    crashed = copy_journal(path, tmp_path / "crashed", with_wal=True)
    await journal.close()
    assert "journal.sqlite-wal" in _names(crashed.parent)
    async with Journal.open(crashed) as recovered:
        assert [rec for _, rec in recovered.read()] == story("B0001-AAA")


async def test_damage_inside_a_record_passes_open_and_read_names_its_seq(tmp_path: Path) -> None:
    """SQLite checks structure, not content: a spoilt body opens, and reading it (replay
    at start-up) stops with JournalDamaged naming the record, never a wrong record."""
    path = tmp_path / "j.sqlite"
    async with Journal.open(path) as journal:
        await journal.append(*story("B0001-AAA"))
    _spoil_body(path, 5)
    async with Journal.open(path) as journal:
        with pytest.raises(JournalDamaged, match=r"record seq 5 does not decode: MoveIntent"):
            list(journal.read())
        assert [seq for seq, _ in journal.read(after=5)] == list(range(6, 15))


def _spoil_body(path: Path, seq: int) -> None:
    with contextlib.closing(sqlite3.connect(path, isolation_level=None)) as conn:
        conn.execute("UPDATE records SET body = json_remove(body, '$.to') WHERE seq = ?", (seq,))
