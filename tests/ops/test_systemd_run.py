"""`cellfab run` as systemd runs it: a subprocess with $NOTIFY_SOCKET on a real datagram
socket, $WATCHDOG_USEC, and stderr on the "journal" ($JOURNAL_STREAM names it), against
the session's twins. READY=1 comes once the API answers, WATCHDOG=1 follows, a qc_only
batch runs, every log line of it is JSON carrying batch, step and task_id, and SIGTERM
gives STOPPING=1 and exit status 0. The people are made as on a new installation: the
first admin on the journal before the daemon starts (``cellfab user add --first-admin``),
then an operator added by the admin over the API, who signs in and starts the batch."""

from __future__ import annotations

import asyncio
import json
import os
import re
import signal
import subprocess
import sys
import tempfile
from collections.abc import Iterator
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import pytest
import yaml

from bench.daemon_process import Staff
from tests.ops.notify_support import Listener, Message, is_ping, is_ready, is_stopping
from tests.support import HANG_GUARD
from tests.support.daemon import (
    LIBRARY,
    PASSWORD,
    STAFF,
    TIME_SCALE,
    SimTwins,
    batch_until,
    client_for,
    insert_cartridge,
    start_batch,
)

ROOT = Path(__file__).resolve().parents[2]
PRIORITY = re.compile(r"^<([0-7])>(.*)$")  # syslog priority, then the line


@dataclass
class Run:
    """What one `cellfab run` under "systemd" said and did."""

    before_ready: list[Message]
    ready: Message
    health_at_ready: int
    after_ready: list[Message]
    batch: dict[str, Any]
    stopping: list[Message]
    returncode: int
    lines: list[str] = field(default_factory=list)  # stderr, once the daemon exited


def write_site(twins: SimTwins, folder: Path) -> Path:
    site = {
        "site": "ops-test",
        "clock": {"time_scale": TIME_SCALE, "simulation": True},
        "journal": str(folder / "journal.sqlite"),
        "api": {"bind": "127.0.0.1:0"},
        "policy": {"allow_unapproved_recipes": True},
        # cheap password hashes: a simulated site (tests/support/daemon.py, cheap_hashes)
        "auth": {"argon2": {"time_cost": 1, "memory_kib": 1024, "parallelism": 1}},
        "recipes": [str(LIBRARY)],
        "shuttles": [
            {
                "name": "shuttle1",
                "url": twins.endpoints["shuttle"],
                "security": {"allow_none": True},
            }
        ],
        "analyzers": [{"name": "cellq1", "tcp": twins.endpoints["cellq"]}],
    }
    path = folder / "site.yaml"
    path.write_text(yaml.safe_dump(site))
    return path


def start(site: Path, listener: Listener, log: Path) -> subprocess.Popen[bytes]:
    """`cellfab run --site SITE` with systemd's variables; stderr is the "journal"."""
    env = {
        k: v
        for k, v in os.environ.items()
        if k not in ("JOURNAL_STREAM", "INVOCATION_ID", "SYSTEMD_EXEC_PID", "WATCHDOG_PID")
    }
    with log.open("wb") as stderr:
        stat = os.fstat(stderr.fileno())
        env |= {
            "NOTIFY_SOCKET": str(listener.path),
            "WATCHDOG_USEC": "1000000",  # a ping every half second
            "JOURNAL_STREAM": f"{stat.st_dev}:{stat.st_ino}",
            "INVOCATION_ID": "0123456789abcdef0123456789abcdef",
        }
        main = "from daemon.cli import main; raise SystemExit(main())"
        return subprocess.Popen(
            [sys.executable, "-c", main, "run", "--site", str(site)],
            stdin=subprocess.DEVNULL,
            stdout=subprocess.DEVNULL,
            stderr=stderr,
            cwd=ROOT,
            env=env,
        )


async def scenario(
    proc: subprocess.Popen[bytes], twins: SimTwins, listener: Listener, staff: Staff
) -> Run:
    got = await asyncio.to_thread(listener.until, is_ready, "READY=1")
    ready = got[-1]
    url = re.fullmatch(r"serving (\S+); 0 batches", ready["STATUS"])
    assert url, ready
    async with client_for(url.group(1)) as public:
        health = (await public.get("/health")).status_code  # at once: it serves
    await asyncio.to_thread(staff.hire, url.group(1))
    async with client_for(url.group(1), staff.tokens["op1"]) as api:
        after = await asyncio.to_thread(listener.until, is_ping, "WATCHDOG=1 after READY")
        batch = await start_batch(api, "qc_only")
        await insert_cartridge(api, twins, batch["cartridge_id"])
        done = await batch_until(api, batch["batch_id"], lambda b: b["state"] == "Complete", "")
    proc.send_signal(signal.SIGTERM)
    stopping = await asyncio.to_thread(listener.until, is_stopping, "STOPPING=1")
    returncode = await asyncio.to_thread(proc.wait, HANG_GUARD)
    return Run(got[:-1], ready, health, after, done, stopping, returncode)


@pytest.fixture(scope="module")
def run(sim_cell: SimTwins, tmp_path_factory: pytest.TempPathFactory) -> Iterator[Run]:
    folder = tmp_path_factory.mktemp("systemd-run")
    log = folder / "journal-stream.log"
    with tempfile.TemporaryDirectory(prefix="cf-", dir="/tmp") as short:
        listener = Listener(Path(short) / "notify")
        site = write_site(sim_cell, folder)
        staff = Staff({"op1": STAFF["op1"]}, PASSWORD)
        staff.first_admin(site)  # on the journal, before the daemon starts
        proc = start(site, listener, log)
        try:
            result = asyncio.run(scenario(proc, sim_cell, listener, staff))
            result.lines = log.read_text().splitlines()
            yield result
        finally:
            if proc.poll() is None:
                proc.kill()
                proc.wait()
            listener.close()


def records(run: Run) -> list[tuple[int, dict[str, Any]]]:
    out = []
    for line in run.lines:
        m = PRIORITY.match(line)
        assert m, f"not a journal line with a priority: {line!r}"
        out.append((int(m.group(1)), json.loads(m.group(2))))
    return out


def test_ready_once_the_api_serves_after_the_status_of_each_stage(run: Run) -> None:
    statuses = [m["STATUS"] for m in run.before_ready if "STATUS" in m]
    assert statuses == [
        "replaying the journal",
        "connecting the instruments",
        "reconciling 0 batches with the instruments",
    ]
    assert run.health_at_ready == 200


def test_watchdog_pings_follow_ready(run: Run) -> None:
    assert run.after_ready and is_ping(run.after_ready[-1])


def test_sigterm_says_stopping_and_exits_cleanly(run: Run) -> None:
    assert run.stopping[-1] == {"STOPPING": "1", "STATUS": "stopping"}
    assert run.returncode == 0


def test_once_ready_what_the_daemon_built_is_frozen_out_of_full_collections(run: Run) -> None:
    events = [r for _p, r in records(run)]
    names = [r["event"] for r in events]
    frozen = events[names.index("heap_frozen")]
    # drivers, API, recipes, journal: far more than an empty interpreter's objects
    assert names.index("ready") < names.index("heap_frozen")
    assert frozen["objects"] > 50_000, frozen


def test_every_line_is_json_and_every_line_of_the_batch_names_its_step_and_task(
    run: Run,
) -> None:
    logged = records(run)
    bid = run.batch["batch_id"]
    assert {"ready", "api listening", "stopped"} <= {r["event"] for _p, r in logged}
    mine = [(p, r) for p, r in logged if r.get("batch") == bid]
    assert all("step" in r and "task_id" in r for _p, r in mine), mine
    events = {r["event"]: r for _p, r in mine}
    assert {"step started", "program started", "program ended", "job submitted"} <= set(events)
    task = f"{bid}/qc_sample/1"
    assert (events["program started"]["step"], events["program started"]["task_id"]) == (
        "qc_sample",
        task,
    )
    assert events["job submitted"]["step"] == "qc_sample"
    ended = [r for _p, r in mine if r["event"] == "step ended"]
    assert (ended[0]["step"], ended[0]["task_id"]) == ("qc_sample", task)
    levels = {"debug": 7, "info": 6, "warning": 4, "error": 3, "critical": 2}
    assert all(p == levels[r["level"]] for p, r in logged)  # the journal's PRIORITY
