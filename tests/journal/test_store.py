"""The journal store: appends are durable, ordered, atomic and grouped into shared
commits; bad records write nothing; one writer per journal; a writer failure is loud."""

from __future__ import annotations

import asyncio
import os
import random
import re
import sqlite3
from pathlib import Path

import pytest

from daemon.journal import records as r
from daemon.journal.errors import JournalClosed, JournalLocked
from daemon.journal.store import Journal
from tests.journal import procs
from tests.journal.sample import story
from tests.support import HANG_GUARD


def _dev(batch: str, message: str) -> r.Deviation:
    return r.Deviation(batch_id=batch, kind="note", message=message)


class WriteLockHeld:
    """Another connection holding SQLite's write lock: the writer thread waits in BEGIN
    (a real lock, not a mock), so every append made meanwhile is queued behind it."""

    def __init__(self, path: Path) -> None:
        self._conn = sqlite3.connect(path, isolation_level=None)
        self._conn.execute("BEGIN IMMEDIATE")

    def release(self) -> None:
        self._conn.execute("ROLLBACK")
        self._conn.close()


async def test_append_then_read_round_trips_records_with_their_seqs(tmp_path: Path) -> None:
    records = story("B0001-AAA") + story("B0002-AAA")
    async with Journal.open(tmp_path / "j.sqlite") as journal:
        seqs = await journal.append(*records[:3])
        seqs += await journal.append(*records[3:])
        assert seqs == list(range(1, len(records) + 1))
        assert list(journal.read()) == list(zip(seqs, records, strict=True))
        assert list(journal.read(after=20)) == list(zip(seqs[20:], records[20:], strict=True))
        assert journal.batch_records("B0002-AAA") == list(zip(seqs[14:], records[14:], strict=True))
        assert journal.last_seq == len(records)
        assert await journal.append() == []
    reopened = Journal.open(tmp_path / "j.sqlite", create=False)
    assert [rec for _, rec in reopened.read()] == records
    assert (await reopened.append(_dev("B0001-AAA", "after"))) == [len(records) + 1]
    await reopened.close()


async def test_group_commit_puts_many_waiting_appends_in_one_transaction(tmp_path: Path) -> None:
    path = tmp_path / "j.sqlite"
    async with Journal.open(path) as journal:
        blocker = WriteLockHeld(path)
        futures = [journal.append(_dev("B", str(i))) for i in range(200)]
        blocker.release()
        seqs = await asyncio.gather(*futures)
        stats = journal.stats
    assert [s for group in seqs for s in group] == list(range(1, 201))
    # the writer took what was queued when it met the lock; the rest waited for one commit
    assert stats.records == 200 and stats.appends == 200
    assert stats.commits <= 2 and stats.records_per_commit >= 100


async def test_concurrent_tasks_share_commits(tmp_path: Path) -> None:
    async with Journal.open(tmp_path / "j.sqlite") as journal:

        async def appender(n: int) -> None:
            for i in range(10):
                await journal.append(_dev(f"B{n}", str(i)))

        await asyncio.gather(*(appender(n) for n in range(64)))
        stats = journal.stats
    assert stats.records == 640
    assert stats.commits < stats.records  # many tasks' records shared one fsync


async def test_max_group_bounds_a_commit_and_never_splits_an_append(tmp_path: Path) -> None:
    path = tmp_path / "j.sqlite"
    async with Journal.open(path, max_group=10) as journal:
        blocker = WriteLockHeld(path)
        small = [journal.append(_dev("B", str(i))) for i in range(35)]
        big = journal.append(*(_dev("B", f"big{k}") for k in range(15)))
        blocker.release()
        await asyncio.gather(*small)
        big_seqs = await big
        stats = journal.stats
    assert big_seqs == list(range(36, 51))
    assert stats.records_max == 15  # the big append went alone, whole
    assert stats.commits >= 5  # 35 single records in commits of at most 10, then the big one
    async with Journal.open(path, max_group=1) as journal:
        for i in range(5):
            await asyncio.gather(journal.append(_dev("B", f"a{i}")), journal.append(_dev("B", "b")))
        assert journal.stats.commits == 10


async def test_appends_commit_in_call_order_each_contiguous(tmp_path: Path) -> None:
    rng = random.Random(7)
    path = tmp_path / "j.sqlite"
    sent: list[list[r.Record]] = []
    async with Journal.open(path) as journal:
        blocker = WriteLockHeld(path)  # so that they all land in shared transactions
        futures = []
        for i in range(60):
            batch = [_dev(f"B{i % 7}", f"{i}:{k}") for k in range(rng.randint(1, 5))]
            sent.append(batch)
            futures.append(journal.append(*batch))
        blocker.release()
        results = await asyncio.gather(*futures)
        stored = dict(journal.read())
    flat = [s for seqs in results for s in seqs]
    assert flat == list(range(1, len(flat) + 1))  # call order, no gaps, no overlap
    for seqs, batch in zip(results, sent, strict=True):
        assert [stored[s] for s in seqs] == batch


async def test_a_record_that_cannot_be_encoded_raises_in_the_caller_and_writes_nothing(
    tmp_path: Path,
) -> None:
    good = _dev("B", "good")
    nan = r.Bound(batch_id="B", step="s", values={"x": float("nan")})
    async with Journal.open(tmp_path / "j.sqlite") as journal:
        with pytest.raises(r.RecordError, match="Out of range float"):
            journal.append(good, nan)  # raises before anything is queued: no await needed
        with pytest.raises(r.RecordError, match="not a journal record type"):
            journal.append(good, "not a record")  # type: ignore[arg-type]
        assert list(journal.read()) == []
        assert await journal.append(good) == [1]
        assert [rec for _, rec in journal.read()] == [good]


async def test_a_cancelled_waiter_does_not_take_its_records_back(tmp_path: Path) -> None:
    path = tmp_path / "j.sqlite"
    journal = Journal.open(path)
    blocker = WriteLockHeld(path)
    waiter = asyncio.ensure_future(journal.append(_dev("B", "cancelled")))
    await asyncio.sleep(0)
    waiter.cancel()
    blocker.release()
    assert await journal.append(_dev("B", "next")) == [2]
    await journal.close()
    assert waiter.cancelled()
    reopened = Journal.open(path)
    assert [rec.message for _, rec in reopened.read()] == ["cancelled", "next"]  # type: ignore[attr-defined]
    await reopened.close()


async def test_closed_journal_refuses_appends_and_reads_and_closes_twice(tmp_path: Path) -> None:
    journal = Journal.open(tmp_path / "j.sqlite")
    pending = journal.append(_dev("B", "queued before close"))
    await journal.close()
    assert await pending == [1]  # close drains the queue
    with pytest.raises(JournalClosed, match="closed"):
        journal.append(_dev("B", "late"))
    with pytest.raises(JournalClosed):
        list(journal.read())
    await journal.close()


async def test_a_second_opener_is_refused_naming_the_holder_until_close(tmp_path: Path) -> None:
    path = tmp_path / "j.sqlite"
    first = Journal.open(path)
    with pytest.raises(JournalLocked) as refused:
        Journal.open(path)  # flock belongs to the open file, so this process is refused too
    assert refused.value.holder == os.getpid()
    assert f"pid {os.getpid()}" in str(refused.value) and str(path) in str(refused.value)
    await first.close()
    second = Journal.open(path)
    await second.close()


def test_a_second_process_is_refused_naming_its_pid(tmp_path: Path) -> None:
    path = tmp_path / "j.sqlite"
    child = procs.start("hold", str(path), stdin=True)
    lines = procs.Lines(child)
    ready = lines.next()
    assert ready is not None and ready.startswith("ready"), procs.stderr_of(child)
    pid = int(ready.split()[1])
    with pytest.raises(JournalLocked, match=rf"in use by pid {pid}\b"):
        Journal.open(path)
    assert child.stdin is not None
    child.stdin.close()
    assert lines.rest() == ["closed"]
    assert child.wait(HANG_GUARD) == 0
    asyncio.run(Journal.open(path, create=False).close())  # free again once it closed


async def test_a_writer_failure_fails_every_later_append_with_the_cause(tmp_path: Path) -> None:
    """A full disk, for real: the child limits its own file size (RLIMIT_FSIZE), so the
    kernel refuses the WAL write with EFBIG under the running writer thread."""
    path = tmp_path / "j.sqlite"
    child = procs.start("fill", str(path))
    lines = procs.Lines(child).rest()
    assert child.wait(HANG_GUARD) == 0, procs.stderr_of(child)
    acked = [int(line.split()[1]) for line in lines if line.startswith("ack ")]
    failed = next(line for line in lines if line.startswith("failed "))
    later = next(line for line in lines if line.startswith("later "))
    assert re.match(
        rf"failed JournalWriteError: journal {re.escape(str(path))}: the writer failed: ", failed
    )
    assert "disk I/O error" in failed or "full" in failed
    assert later.startswith("later JournalWriteError: ") and "the writer failed" in later
    assert "failure JournalWriteError" in lines
    assert lines[-1] == "closed"
    assert len(acked) >= 2
    async with Journal.open(path) as journal:  # quick_check passes; nothing acked is lost
        stored = dict(journal.read())
    assert set(acked) <= set(stored)
    assert sorted(stored) == list(range(1, len(stored) + 1))
