"""Journal benchmark: group commit against one fsync per record, and what the loop sees.

``python -m bench.journal [--dir DIR] [--seconds S]`` (part of ``make bench``). Every
figure is measured in this run, on the disk that holds DIR (default: the system's temp
folder; point it at the disk the journal will live on), and printed beside the baseline
it is compared with. Nothing passes or fails.

* throughput: records/s committed (durably: WAL, ``synchronous=FULL``) by 1, 16 and 256
  concurrent appenders through ``Journal`` with group commit, against the same Journal
  committing each append alone (``max_group=1``: one fsync per record), and against
  raw ``sqlite3`` loops on this thread (one commit per record; 256 records per commit,
  the ceiling of batching). Each row runs for S seconds.
* the event loop: while 16 appenders run, a tick task sleeps 1 ms at a time and records
  how late it wakes. Beside an idle loop and the same tasks doing only their encoding
  (the loop's own share of the work), it shows the loop is not blocked by the disk;
  beside the same appends committed inline on the loop (sqlite3 called from a
  coroutine, the design the writer thread avoids) it shows what blocking would cost.
  The appends' awaited time (p50/p99) is the commit latency the engine sees.
"""

from __future__ import annotations

import argparse
import asyncio
import contextlib
import logging
import os
import platform
import sqlite3
import statistics
import tempfile
import time
from collections.abc import Awaitable, Callable
from pathlib import Path

import structlog

from daemon.journal import files, records
from daemon.journal.store import Journal
from daemon.journal.writer import DEFAULT_MAX_GROUP, INSERT

CONCURRENCY = (1, 16, 256)
TICK = 0.001
LOOP_APPENDERS = 16
ROUNDS = 3


def _record(n: int) -> records.ProgramIntent:
    batch = f"B{n % 256:04d}-BEN"
    return records.ProgramIntent(
        batch_id=batch,
        task_id=f"{batch}/expand/{n}",
        shuttle="sh1",
        unit="INC01",
        program="expand",
        params={"days": 9, "volume_ml": 12.5, "media": "TexMACS"},
        step="expand",
        attempt=1,
        at=1_780_000_000.0 + n,
        pt=float(n),
    )


class _Folder:
    """A fresh journal path per row, in one temporary folder under ``base``."""

    def __init__(self, base: Path | None) -> None:
        self._tmp = tempfile.TemporaryDirectory(prefix="cellfab-bench-", dir=base)
        self.path = Path(self._tmp.name)
        self._n = 0

    def journal(self) -> Path:
        self._n += 1
        return self.path / f"j{self._n}.sqlite"

    def close(self) -> None:
        self._tmp.cleanup()


async def _appenders(
    journal: Journal, count: int, seconds: float, latencies: list[float] | None = None
) -> float:
    """``count`` tasks append one record at a time until ``seconds`` pass; returns the
    wall time until the last of them is acknowledged."""
    start = time.perf_counter()
    deadline = start + seconds

    async def appender(k: int) -> None:
        n = k
        while time.perf_counter() < deadline:
            t0 = time.perf_counter()
            await journal.append(_record(n))
            if latencies is not None:
                latencies.append(time.perf_counter() - t0)
            n += count

    await asyncio.gather(*(appender(k) for k in range(count)))
    return time.perf_counter() - start


class _Rate:
    """Records and seconds summed over the rounds of one configuration."""

    def __init__(self) -> None:
        self.records = 0
        self.seconds = 0.0
        self.commits = 0

    def add(self, records: int, seconds: float, commits: int = 0) -> None:
        self.records += records
        self.seconds += seconds
        self.commits += commits

    @property
    def per_second(self) -> float:
        return self.records / self.seconds

    @property
    def per_commit(self) -> float:
        return self.records / self.commits if self.commits else 0.0


async def _journal_round(
    rate: _Rate, path: Path, count: int, seconds: float, max_group: int
) -> None:
    async with Journal.open(path, max_group=max_group) as journal:
        took = await _appenders(journal, count, seconds)
        stats = journal.stats
    rate.add(stats.records, took, stats.commits)


def _raw_round(rate: _Rate, path: Path, seconds: float, per_commit: int) -> None:
    """Raw sqlite3 on this thread, same schema, encoding and durability settings."""
    with contextlib.closing(files.connect_rw(path)) as conn:
        conn.execute("CREATE TABLE records (seq INTEGER PRIMARY KEY, batch_id, type, at, body)")
        n = 0
        start = time.perf_counter()
        while time.perf_counter() - start < seconds:
            rows = []
            for _ in range(per_commit):
                rec = _record(n)
                type_name, body = records.encode(rec)
                n += 1
                rows.append((n, rec.batch_id, type_name, rec.at, body))
            conn.execute("BEGIN IMMEDIATE")
            conn.executemany(INSERT, rows)
            conn.execute("COMMIT")
        rate.add(n, time.perf_counter() - start)


async def _lateness(work: Callable[[], Awaitable[object]]) -> list[float]:
    """How late a 1 ms tick wakes while ``work`` runs."""
    late: list[float] = []
    done = asyncio.Event()

    async def tick() -> None:
        while not done.is_set():
            t0 = time.perf_counter()
            await asyncio.sleep(TICK)
            late.append(time.perf_counter() - t0 - TICK)

    ticker = asyncio.create_task(tick())
    try:
        await work()
    finally:
        done.set()
        await ticker
    return late


async def _encode_only(count: int, seconds: float) -> None:
    """The loop's own share of the work: the same appenders, encoding, no disk at all."""
    deadline = time.perf_counter() + seconds

    async def appender(k: int) -> None:
        n = k
        while time.perf_counter() < deadline:
            records.encode(_record(n))
            n += count
            await asyncio.sleep(0)

    await asyncio.gather(*(appender(k) for k in range(count)))


async def _inline_commits(path: Path, count: int, seconds: float) -> None:
    """The design the writer thread avoids: each coroutine commits on the loop."""
    with contextlib.closing(files.connect_rw(path)) as conn:
        conn.execute("CREATE TABLE records (seq INTEGER PRIMARY KEY, batch_id, type, at, body)")
        deadline = time.perf_counter() + seconds

        async def appender(k: int) -> None:
            n = k
            while time.perf_counter() < deadline:
                rec = _record(n)
                type_name, body = records.encode(rec)
                conn.execute("BEGIN IMMEDIATE")
                conn.execute(INSERT, (None, rec.batch_id, type_name, rec.at, body))
                conn.execute("COMMIT")
                n += count
                await asyncio.sleep(0)

        await asyncio.gather(*(appender(k) for k in range(count)))


def _ms(x: float) -> str:
    return f"{x * 1000:.2f} ms"


def _pct(values: list[float], q: int) -> float:
    if len(values) < 2:
        return values[0]
    return statistics.quantiles(values, n=100, method="inclusive")[q - 1]


async def run(base: Path | None = None, seconds: float = 1.5) -> list[str]:
    folder = _Folder(base)
    try:
        return await _run(folder, seconds)
    finally:
        folder.close()


async def _run(folder: _Folder, seconds: float) -> list[str]:
    lines = [
        "journal: records/s committed durably (WAL, synchronous=FULL) on the disk of "
        f"{folder.path}; {seconds:g} s per row, in {ROUNDS} interleaved rounds",
    ]
    # rounds interleave every configuration, so that a disk whose speed drifts (other
    # work on the machine) moves them all alike
    raw_one, raw_batch = _Rate(), _Rate()
    group = {count: _Rate() for count in CONCURRENCY}
    single = {count: _Rate() for count in CONCURRENCY}
    share = seconds / ROUNDS
    for _ in range(ROUNDS):
        _raw_round(raw_one, folder.journal(), share, 1)
        _raw_round(raw_batch, folder.journal(), share, 256)
        for count in CONCURRENCY:
            await _journal_round(group[count], folder.journal(), count, share, DEFAULT_MAX_GROUP)
            await _journal_round(single[count], folder.journal(), count, share, 1)
    lines += [
        f"  raw sqlite3, one commit (fsync) per record:    {raw_one.per_second:9.0f} records/s",
        f"  raw sqlite3, 256 records per commit (ceiling): {raw_batch.per_second:9.0f} records/s",
        "  appenders  group commit  one commit per append  group/one  group/raw-one  "
        "records/commit",
    ]
    for count in CONCURRENCY:
        g, o = group[count], single[count]
        lines.append(
            f"  {count:>9}  {g.per_second:>12.0f}  {o.per_second:>21.0f}  "
            f"{g.per_second / o.per_second:>8.1f}x  {g.per_second / raw_one.per_second:>12.1f}x  "
            f"{g.per_commit:>14.1f}"
        )

    idle = await _lateness(lambda: asyncio.sleep(seconds))
    latencies: list[float] = []

    async def through_journal() -> None:
        async with Journal.open(folder.journal()) as journal:
            await _appenders(journal, LOOP_APPENDERS, seconds, latencies)

    journaled = await _lateness(through_journal)
    encoding = await _lateness(lambda: _encode_only(LOOP_APPENDERS, seconds))
    inline = await _lateness(lambda: _inline_commits(folder.journal(), LOOP_APPENDERS, seconds))
    lines += [
        f"event loop while {LOOP_APPENDERS} tasks append (a {TICK * 1000:g} ms tick measures "
        "how late the loop wakes it)",
        f"  append() awaited: p50 {_ms(statistics.median(latencies))}, "
        f"p99 {_ms(_pct(latencies, 99))} ({len(latencies)} appends; one raw commit above "
        f"took {_ms(1 / raw_one.per_second)} on average)",
    ]
    for name, late in (
        ("idle loop", idle),
        ("same tasks, encode only, no disk", encoding),
        ("journal (writer thread)", journaled),
        ("commits inline on the loop", inline),
    ):
        lines.append(
            f"  tick lateness, {name + ':':<33} p99 {_ms(_pct(late, 99)):>9}, "
            f"max {_ms(max(late)):>9} ({max(late) / max(idle):5.1f}x idle max)"
        )
    return lines


def main() -> None:
    parser = argparse.ArgumentParser(prog="python -m bench.journal", description=__doc__)
    parser.add_argument("--dir", type=Path, default=None, help="where the journals go")
    parser.add_argument("--seconds", type=float, default=1.5, help="per row (default 1.5)")
    args = parser.parse_args()
    structlog.configure(wrapper_class=structlog.make_filtering_bound_logger(logging.WARNING))
    print(
        "cellfab journal benchmark: ratios to baselines measured in this same run; never pass/fail",
        flush=True,
    )
    print(
        f"python {platform.python_version()}, sqlite {sqlite3.sqlite_version}, "
        f"{os.cpu_count()} CPU(s), load average at start "
        f"{' '.join(f'{x:.2f}' for x in os.getloadavg())}",
        flush=True,
    )
    t0 = time.perf_counter()
    for line in asyncio.run(run(args.dir, args.seconds)):
        print(line, flush=True)
    print(f"bench took {time.perf_counter() - t0:.0f} s")


if __name__ == "__main__":
    main()
