"""backup, restore and verify, through the functions and the `cellfab journal` command:
an online backup while appends go on, a restore that yields the same batches and keeps
what it replaced, refusals that leave files alone, and verify naming what and where."""

from __future__ import annotations

import asyncio
import contextlib
import re
import sqlite3
from pathlib import Path

import pytest

from daemon.batch.machine import replay
from daemon.cli import main
from daemon.journal import admin, files
from daemon.journal import records as r
from daemon.journal.errors import (
    JournalDamaged,
    JournalExists,
    JournalForeign,
    JournalLocked,
    JournalTooNew,
)
from daemon.journal.store import Journal
from tests.journal.fixtures.make_fixtures import fixture_path
from tests.journal.sample import copy_journal, digest, story


def _batches(path: Path) -> dict[str, object]:
    return dict(replay(files.read_records(path)))


async def _journal(path: Path, *batches: str) -> Path:
    async with Journal.open(path) as journal:
        for b in batches:
            await journal.append(*story(b))
    return path


def _set_aside(folder: Path) -> list[Path]:
    return list(folder.glob("j.sqlite.replaced-*"))


def _sql(path: Path, statement: str, *args: object) -> None:
    with contextlib.closing(sqlite3.connect(path, isolation_level=None)) as conn:
        conn.execute(statement, args)


async def test_an_online_backup_while_appending_holds_every_record_acked_before_it(
    tmp_path: Path,
) -> None:
    path = tmp_path / "j.sqlite"
    async with Journal.open(path) as journal:
        stop = asyncio.Event()

        async def keep_appending() -> None:
            n = 0
            while not stop.is_set():
                await journal.append(*story(f"B{n:04d}-AAA"))
                n += 1

        appender = asyncio.create_task(keep_appending())
        await journal.append(*story("B9999-AAA"))
        acked = journal.last_seq
        info = await asyncio.to_thread(admin.backup, path, tmp_path / "backup.sqlite")
        stop.set()
        await appender
    assert info.last_seq >= acked and info.instance == journal.instance
    report = admin.verify(tmp_path / "backup.sqlite")
    assert report.ok, report.problems
    assert report.records == info.last_seq  # a consistent snapshot: a whole prefix


async def test_backup_never_overwrites_and_refuses_what_is_not_a_journal(tmp_path: Path) -> None:
    path = await _journal(tmp_path / "j.sqlite", "B0001-AAA")
    taken = tmp_path / "taken"
    taken.write_text("keep me")
    with pytest.raises(JournalExists, match="never overwrites"):
        admin.backup(path, taken)
    assert taken.read_text() == "keep me"
    with pytest.raises(JournalForeign):
        admin.backup(taken, tmp_path / "b.sqlite")
    assert not (tmp_path / "b.sqlite").exists()


async def test_a_restored_journal_yields_the_same_batches_and_the_replaced_one_is_kept(
    tmp_path: Path,
) -> None:
    path = await _journal(tmp_path / "j.sqlite", "B0001-AAA", "B0002-AAA")
    backup_file = tmp_path / "backup.sqlite"
    backed_up = admin.backup(path, backup_file)
    await _journal(path, "B0003-AAA")  # later work, lost by the restore but kept aside
    later = _batches(path)
    result = admin.restore(backup_file, path)
    assert _batches(path) == _batches(backup_file)
    assert sorted(_batches(path)) == ["B0001-AAA", "B0002-AAA"]
    assert result.replaced is not None and _batches(result.replaced) == later
    assert result.backup_instance == backed_up.instance
    assert result.info.instance != backed_up.instance  # ids made after the backup stay unique
    assert admin.verify(path).ok
    async with Journal.open(path) as journal:  # a journal like any other
        assert journal.instance == result.info.instance
        seqs = await journal.append(*story("B0003-XYZ"))
        assert seqs[0] == backed_up.last_seq + 1


async def test_restore_over_a_crashed_journal_keeps_its_wal_with_it(tmp_path: Path) -> None:
    live = tmp_path / "live" / "j.sqlite"
    live.parent.mkdir()
    journal = Journal.open(live)
    await journal.append(*story("B0001-AAA"))
    crashed = copy_journal(live, tmp_path / "crashed", "j.sqlite", with_wal=True)
    await journal.close()
    backup_file = tmp_path / "empty.sqlite"
    admin.backup(await _journal(tmp_path / "fresh.sqlite"), backup_file)
    result = admin.restore(backup_file, crashed)
    assert _batches(crashed) == {}
    assert result.replaced is not None and sorted(_batches(result.replaced)) == ["B0001-AAA"]


async def test_restore_refuses_while_a_daemon_holds_the_journal(tmp_path: Path) -> None:
    path = await _journal(tmp_path / "j.sqlite", "B0001-AAA")
    backup_file = tmp_path / "backup.sqlite"
    admin.backup(path, backup_file)
    async with Journal.open(path) as journal:
        await journal.append(*story("B0002-AAA"))
        with pytest.raises(JournalLocked, match="in use by pid"):
            admin.restore(backup_file, path)
        assert sorted(replay(journal.read())) == ["B0001-AAA", "B0002-AAA"]


def _newer(path: Path) -> None:
    _sql(path, "UPDATE meta SET value = '99' WHERE key = 'schema_version'")


def _damaged(path: Path) -> None:
    data = bytearray(path.read_bytes())
    data[16:18] = b"\x00\x07"
    path.write_bytes(bytes(data))


@pytest.mark.parametrize(
    ("spoil", "error"),
    [
        (lambda p: p.write_text("not a journal"), JournalForeign),
        (_damaged, JournalDamaged),
        (_newer, JournalTooNew),
    ],
    ids=["foreign", "damaged", "newer"],
)
async def test_restore_refuses_a_bad_backup_and_leaves_both_files_alone(
    tmp_path: Path, spoil, error
) -> None:
    path = await _journal(tmp_path / "j.sqlite", "B0001-AAA")
    bad = copy_journal(fixture_path(1), tmp_path / "bad")
    spoil(bad)
    before = (digest(path), digest(bad))
    with pytest.raises(error):
        admin.restore(bad, path)
    assert (digest(path), digest(bad)) == before
    assert not _set_aside(tmp_path)


async def test_verify_reports_batches_by_state_and_the_record_count(
    tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    path = await _journal(tmp_path / "j.sqlite", "B0001-AAA", "B0002-AAA")
    async with Journal.open(path) as journal:
        await journal.append(story("B0003-AAA")[0])
    report = admin.verify(path)
    assert report.ok and report.records == 29 and report.by_state() == {"Held": 2, "Idle": 1}
    capsys.readouterr()
    assert main(["journal", "verify", "--journal", str(path)]) == 0
    out = capsys.readouterr().out
    assert "records: 29 (seq 1..29)" in out and "batches: 3" in out
    assert re.search(r"^  Held  2$", out, re.M) and re.search(r"^  Idle  1$", out, re.M)
    assert out.rstrip().endswith("verify: ok")


@pytest.mark.parametrize(
    ("statement", "expected"),
    [
        ("UPDATE records SET body = '{\"batch_id\": 1' WHERE seq = 5", "seq 5: does not decode"),
        ("UPDATE records SET type = 'Nope' WHERE seq = 6", "seq 6: does not decode: unknown"),
        (
            "UPDATE records SET body = json_set(body, '$.at', 'noon') WHERE seq = 4",
            "seq 4: does not decode: StepStarted.at: expected float, got str",
        ),
        ("UPDATE records SET batch_id = 'B0009-AAA' WHERE seq = 7", "seq 7: columns"),
        ("UPDATE records SET at = 0 WHERE seq = 8", "seq 8: columns"),
        ("DELETE FROM records WHERE seq = 7", "seq 8: replay refused the record: ProgramStarted"),
        ("DELETE FROM records WHERE seq = 1", "seq 2: replay refused the record: .*unknown batch"),
    ],
    ids=[
        "bad json",
        "unknown type",
        "bad field type",
        "batch column",
        "at column",
        "intent lost",
        "no creation",
    ],
)
async def test_verify_names_what_and_where_and_exits_1(
    tmp_path: Path, capsys: pytest.CaptureFixture[str], statement: str, expected: str
) -> None:
    path = await _journal(tmp_path / "j.sqlite", "B0001-AAA")
    _sql(path, statement)
    report = admin.verify(path)
    assert not report.ok and re.search(expected, report.problems[0]), report.problems
    capsys.readouterr()
    assert main(["journal", "verify", "--journal", str(path)]) == 1
    captured = capsys.readouterr()
    assert re.search(f"{re.escape(str(path))}: {expected}", captured.err)
    assert "verify: " in captured.out and "problem" in captured.out


async def test_verify_of_a_file_it_refuses_says_why_and_exits_1(
    tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    text = tmp_path / "notes.txt"
    text.write_text("hello")
    assert main(["journal", "verify", "--journal", str(text)]) == 1
    assert "not an SQLite database" in capsys.readouterr().err
    assert main(["journal", "verify", "--journal", str(tmp_path / "none")]) == 1
    assert "no such file" in capsys.readouterr().err


async def test_backup_and_restore_commands(
    tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    path = await _journal(tmp_path / "j.sqlite", "B0001-AAA")
    backup_file = tmp_path / "b.sqlite"
    assert main(["journal", "backup", str(backup_file), "--journal", str(path)]) == 0
    assert "records up to seq 14" in capsys.readouterr().out
    assert main(["journal", "backup", str(backup_file), "--journal", str(path)]) == 1
    assert "a file is already there" in capsys.readouterr().err
    assert main(["journal", "restore", str(backup_file), "--journal", str(path)]) == 0
    out = capsys.readouterr().out
    assert "new instance tag" in out and "the replaced journal is kept at" in out
    async with Journal.open(path):
        assert main(["journal", "restore", str(backup_file), "--journal", str(path)]) == 1
        assert "in use by pid" in capsys.readouterr().err
    assert sorted(_batches(path)) == ["B0001-AAA"]
    record = r.Deviation(batch_id="B0001-AAA", kind="k", message="m")
    async with Journal.open(path) as journal:
        assert await journal.append(record) == [15]
