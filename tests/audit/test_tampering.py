"""The audit trail is append-only and its verification finds each kind of tampering,
done as a person would: sqlite3 on a copy of the database file, triggers dropped first.
Change, delete, insert and reorder a row, alter a signed journal record and a signed
lifecycle row, rewrite the chain after an anchor: each is found and named by seq."""

from __future__ import annotations

import contextlib
import re
import shutil
import sqlite3
from collections.abc import Callable
from pathlib import Path

import pytest

from daemon.audit.chain import GENESIS, row_hash
from daemon.audit.verify import verify
from tests.audit.trailsample import Made, make

ROOT = Path(__file__).resolve().parents[2]


@pytest.fixture(scope="module")
def made(tmp_path_factory: pytest.TempPathFactory) -> Made:
    import asyncio

    return asyncio.run(make(tmp_path_factory.mktemp("trail") / "journal.sqlite"))


def tampered(made: Made, tmp_path: Path, change: Callable[[sqlite3.Connection], None]) -> Path:
    copy = tmp_path / "copy.sqlite"
    shutil.copyfile(made.path, copy)
    with contextlib.closing(sqlite3.connect(copy, isolation_level=None)) as conn:
        for (name,) in conn.execute(
            "SELECT name FROM sqlite_master WHERE type = 'trigger'"
        ).fetchall():
            conn.execute(f"DROP TRIGGER {name}")
        change(conn)
    return copy


def kinds(path: Path) -> list[tuple[str, int | None]]:
    return [(p.kind, p.seq) for p in verify(path).problems]


def test_the_untouched_trail_verifies(made: Made) -> None:
    report = verify(made.path)
    assert report.ok, report.problems
    assert report.rows >= 10 and report.signatures == 2  # the approval and the stop
    actions = [row[0] for row in _rows(made.path, "SELECT action FROM audit ORDER BY seq")]
    assert actions[:2] == ["user.add", "user.add"] and "recipe.approve" in actions
    assert actions[-1] == "batch.command.stop"


def _rows(path: Path, sql: str) -> list[tuple]:
    with contextlib.closing(sqlite3.connect(path)) as conn:
        return conn.execute(sql).fetchall()


def test_the_database_refuses_to_update_or_delete_an_audit_row(made: Made, tmp_path: Path) -> None:
    copy = tmp_path / "c.sqlite"
    shutil.copyfile(made.path, copy)
    with contextlib.closing(sqlite3.connect(copy)) as conn:
        for sql in ("UPDATE audit SET actor = 'x'", "DELETE FROM audit WHERE seq = 1"):
            with pytest.raises(sqlite3.IntegrityError, match="append-only"):
                conn.execute(sql)


def test_one_insert_path_and_no_update_or_delete_in_the_code() -> None:
    """Grep-able: the daemon writes audit rows in one statement, in one module, and no
    code updates or deletes one."""
    sources = {p: p.read_text() for p in (ROOT / "daemon").rglob("*.py")}
    inserts = [p for p, text in sources.items() if re.search(r"INSERT INTO audit\b", text)]
    assert [p.relative_to(ROOT).as_posix() for p in inserts] == ["daemon/audit/chain.py"]
    assert sources[ROOT / "daemon/audit/chain.py"].count("INSERT INTO audit") == 1
    for path, text in sources.items():
        assert not re.search(r"UPDATE\s+audit\b|DELETE\s+FROM\s+audit\b", text, re.I), path


def test_a_changed_row_is_named(made: Made, tmp_path: Path) -> None:
    path = tampered(
        made,
        tmp_path,
        lambda c: c.execute(
            "UPDATE audit SET body = replace(body, 'staff', 'stuff') WHERE seq = 2"
        ),
    )
    assert kinds(path) == [("altered", 2)]


def test_a_deleted_row_is_named(made: Made, tmp_path: Path) -> None:
    path = tampered(made, tmp_path, lambda c: c.execute("DELETE FROM audit WHERE seq = 4"))
    assert ("deleted", 4) in kinds(path)
    assert {k for k, _ in kinds(path)} == {"deleted"}


def test_a_deleted_last_row_shows_as_an_unaudited_record(made: Made, tmp_path: Path) -> None:
    last = _rows(made.path, "SELECT max(seq) FROM audit")[0][0]
    path = tampered(made, tmp_path, lambda c: c.execute(f"DELETE FROM audit WHERE seq = {last}"))
    problems = verify(path).problems
    assert [p.kind for p in problems] == ["unaudited"]
    assert f"journal seq {made.stop_seq} (CommandIssued" in problems[0].text


def test_an_inserted_row_is_named(made: Made, tmp_path: Path) -> None:
    def insert(conn: sqlite3.Connection) -> None:
        conn.execute("UPDATE audit SET seq = seq + 1000 WHERE seq >= 3")
        conn.execute("UPDATE audit SET seq = seq - 999 WHERE seq >= 1003")
        prev = conn.execute("SELECT hash FROM audit WHERE seq = 2").fetchone()[0]
        body = (
            '{"action":"user.add","actor":"admin1","at":"t","batch_id":"",'
            '"object_id":"eve","object_type":"user"}'
        )
        conn.execute(
            "INSERT INTO audit VALUES (3, 't', 'admin1', 'user.add', 'user', 'eve', '', ?, ?, ?)",
            (body, prev, row_hash(prev, body)),  # a forger who knows the algorithm
        )

    assert kinds(tampered(made, tmp_path, insert)) == [("inserted", 3)]


def test_a_forged_row_at_the_end_is_named(made: Made, tmp_path: Path) -> None:
    last = _rows(made.path, "SELECT max(seq) FROM audit")[0][0]

    def forge(conn: sqlite3.Connection) -> None:
        conn.execute(
            f"INSERT INTO audit VALUES ({last + 1}, 't', 'x', 'user.add', 'user', 'x', '', "
            "'{}', 'p', 'h')"
        )

    assert ("inserted", last + 1) in kinds(tampered(made, tmp_path, forge))


def test_reordered_rows_are_named(made: Made, tmp_path: Path) -> None:
    def swap(conn: sqlite3.Connection) -> None:
        conn.execute("UPDATE audit SET seq = -1 WHERE seq = 5")
        conn.execute("UPDATE audit SET seq = 5 WHERE seq = 6")
        conn.execute("UPDATE audit SET seq = 6 WHERE seq = -1")

    assert kinds(tampered(made, tmp_path, swap)) == [("reordered", 5)]


def test_a_changed_signed_journal_record_invalidates_its_signature(
    made: Made, tmp_path: Path
) -> None:
    path = tampered(
        made,
        tmp_path,
        lambda c: c.execute(
            'UPDATE records SET body = replace(body, \'"reason":"end"\', \'"reason":"fun"\') '
            f"WHERE seq = {made.stop_seq}"
        ),
    )
    [problem] = verify(path).problems
    assert problem.kind == "signature" and "'stopped' by sup1 on batch B0001-TST" in problem.text
    assert "reason 'end' -> 'fun'" in problem.text


def test_a_changed_earlier_record_of_the_batch_invalidates_its_later_signature(
    made: Made, tmp_path: Path
) -> None:
    path = tampered(
        made,
        tmp_path,
        lambda c: c.execute(
            "UPDATE records SET body = replace(body, 'C-1', 'C-2') WHERE type = 'BatchCreated'"
        ),
    )
    problems = verify(path).problems
    assert [p.kind for p in problems] == ["signature"]
    assert "batch_digest" in problems[0].text


def test_a_changed_approved_recipe_row_invalidates_the_approval(made: Made, tmp_path: Path) -> None:
    path = tampered(
        made,
        tmp_path,
        lambda c: c.execute(
            "UPDATE recipe_lifecycle SET recipe_version = '9.9' WHERE status = 'approved'"
        ),
    )
    [problem] = verify(path).problems
    assert problem.kind == "signature" and "'approved' by qa1 on recipe" in problem.text
    assert "recipe_version '1.0' -> '9.9'" in problem.text


def test_a_rewritten_chain_is_caught_by_an_anchor(made: Made, tmp_path: Path) -> None:
    anchor = _rows(made.path, "SELECT seq, hash FROM audit WHERE seq = 3")[0]

    def rewrite(conn: sqlite3.Connection) -> None:
        """A forger who knows the algorithm rewrites every row from the first on."""
        rows = conn.execute("SELECT * FROM audit ORDER BY seq").fetchall()
        conn.execute("DELETE FROM audit")
        prev = GENESIS
        for row in rows:
            body = row[7].replace("staff", "stuff")
            digest = row_hash(prev, body)
            conn.execute(
                "INSERT INTO audit VALUES (?, ?, ?, ?, ?, ?, ?, ?, ?, ?)",
                (*row[:7], body, prev, digest),
            )
            prev = digest

    path = tampered(made, tmp_path, rewrite)
    assert verify(path).ok  # the chain alone cannot tell
    report = verify(path, anchor=(int(anchor[0]), str(anchor[1])))
    assert [(p.kind, p.seq) for p in report.problems] == [("anchor", 3)]
