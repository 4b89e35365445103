"""Crashes: kill -9 of a process appending loses no acknowledged record, and a power
loss (the WAL cut or garbled at any byte, or copied while a writer runs) leaves a
prefix of whole appends that passes quick_check and verifies; nothing half-written."""

from __future__ import annotations

import asyncio
import os
import random
import time
from pathlib import Path

import pytest

from daemon.journal import admin
from daemon.journal import records as r
from daemon.journal.store import Journal
from tests.journal import procs
from tests.journal.child import WORKERS
from tests.journal.sample import created
from tests.support import HANG_GUARD

SEEDS = range(int(os.environ.get("CELLFAB_JOURNAL_KILL_SEEDS", "8")))  # more: a soak


@pytest.mark.parametrize("seed", SEEDS)
def test_kill_9_at_a_random_moment_loses_no_acknowledged_record(tmp_path: Path, seed: int) -> None:
    rng = random.Random(seed)
    path = tmp_path / "j.sqlite"
    child = procs.start("append", str(path), str(seed))
    lines = procs.Lines(child)
    try:
        assert lines.next() == "ready", procs.stderr_of(child)
        acks = [lines.next() for _ in range(rng.randint(0, 400))]
        time.sleep(rng.random() * 0.01)  # a random moment, in or between commits
    finally:
        child.kill()
    acks += lines.rest()  # acknowledged before the kill, still in the pipe
    assert child.wait(HANG_GUARD) == -9
    acked = [line.split() for line in acks if line and line.startswith("ack ")]

    async def reopen() -> dict[int, r.Record]:
        async with Journal.open(path) as journal:  # quick_check; the lock died with it
            return dict(journal.read())

    stored = asyncio.run(reopen())
    assert sorted(stored) == list(range(1, len(stored) + 1))  # no hole: a prefix
    for _, w, i, seqs in acked:
        got = [stored[int(s)] for s in seqs.split(",")]
        if i == "0":
            assert [(type(g).__name__, g.batch_id) for g in got] == [("BatchCreated", f"W{w}")]
        else:
            assert [g.message for g in got] == [f"{w}:{i}:{k}" for k in range(len(got))]  # type: ignore[attr-defined]
    report = admin.verify(path)
    assert report.ok, report.problems
    assert len(report.batches) <= WORKERS


def _appends(rng: random.Random, count: int) -> list[list[r.Record]]:
    out: list[list[r.Record]] = [[created(f"W{w}")] for w in range(3)]
    for i in range(count):
        w = rng.randrange(3)
        size = rng.randint(1, 4)
        out.append(
            [r.Deviation(batch_id=f"W{w}", kind="k", message=f"{i}:{k}" * 20) for k in range(size)]
        )
    return out


def _snapshot(path: Path, dest: Path, files: tuple[bytes, bytes] | None = None) -> Path:
    """The journal's main file and WAL in the new folder ``dest``: copied from ``path``
    now, or the given bytes."""
    dest.mkdir()
    db, wal = files or (path.read_bytes(), Path(f"{path}-wal").read_bytes())
    (dest / path.name).write_bytes(db)
    (dest / f"{path.name}-wal").write_bytes(wal)
    return dest / path.name


def _files(path: Path) -> tuple[bytes, bytes]:
    return path.read_bytes(), Path(f"{path}-wal").read_bytes()


def _recovered(path: Path) -> list[r.Record]:
    """What a restart after the power loss finds; it must open (quick_check) and verify."""

    async def read() -> list[r.Record]:
        async with Journal.open(path) as journal:
            return [rec for _, rec in journal.read()]

    records = asyncio.run(read())
    report = admin.verify(path)
    assert report.ok, report.problems
    return records


def _whole_appends(records: list[r.Record], appends: list[list[r.Record]]) -> int:
    """How many whole appends ``records`` is; fails unless it is exactly a prefix of them."""
    flat: list[r.Record] = []
    for n, batch in enumerate(appends):
        if records == flat:
            return n
        flat += batch
    assert records == flat, "not a prefix of whole appends"
    return len(appends)


def test_power_loss_anywhere_in_the_wal_leaves_a_prefix_of_whole_appends(
    tmp_path: Path,
) -> None:
    rng = random.Random(11)
    appends = _appends(rng, 60)
    path = tmp_path / "live" / "j.sqlite"
    path.parent.mkdir()

    async def write() -> tuple[bytes, bytes]:
        async with Journal.open(path) as journal:
            for batch in appends:
                await journal.append(*batch)  # one commit each: a frame run per append
            return _files(path)  # as the disk holds them while the daemon runs

    db, wal = asyncio.run(write())
    assert len(wal) > 60 * 4096  # the records are in the WAL, not yet checkpointed
    cuts = sorted({0, 31, 32, len(wal), *rng.sample(range(len(wal)), 25)})
    kept = []
    for n, cut in enumerate(cuts):
        torn = _snapshot(path, tmp_path / f"cut{n}", (db, wal[:cut]))
        kept.append(_whole_appends(_recovered(torn), appends))
        noise = bytes(rng.getrandbits(8) for _ in range(min(len(wal) - cut, 8192)))
        garbled = _snapshot(path, tmp_path / f"garbled{n}", (db, wal[:cut] + noise))
        assert _whole_appends(_recovered(garbled), appends) == kept[-1]
    assert kept == sorted(kept)  # more WAL never means fewer records
    assert kept[0] == 0 and kept[-1] == len(appends)
    assert len(set(kept)) > 10  # the cuts really fell between many commits


async def test_a_copy_taken_while_the_writer_runs_holds_every_append_acked_before_it(
    tmp_path: Path,
) -> None:
    """Copying the files while commits go on is what the disk holds at a power cut
    (the WAL only grows between checkpoints): a prefix, with everything acknowledged
    before the copy began."""
    rng = random.Random(5)
    appends = _appends(rng, 120)
    path = tmp_path / "live" / "j.sqlite"
    path.parent.mkdir()
    snapshots: list[tuple[int, Path]] = []
    async with Journal.open(path) as journal:
        acked = 0

        async def writer() -> None:
            nonlocal acked
            for batch in appends:
                await journal.append(*batch)
                acked += 1

        task = asyncio.create_task(writer())
        for n in range(8):
            await asyncio.sleep(rng.random() * 0.005)
            before = acked
            copy = await asyncio.to_thread(_snapshot, path, tmp_path / f"snap{n}")
            snapshots.append((before, copy))
        await task
    for before, copy in snapshots:
        whole = await asyncio.to_thread(lambda c=copy: _whole_appends(_recovered(c), appends))
        assert whole >= before
