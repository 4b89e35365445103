"""kill -9: a daemon killed without warning comes back with the same alarms (states,
history, signatures), and one acknowledged just before the kill stays acknowledged."""

from __future__ import annotations

import asyncio
import json
import signal
import subprocess
import sys
from collections.abc import Iterator
from contextlib import contextmanager
from pathlib import Path

from tests.alarms.helpers import (
    ENGINE_RECIPES,
    alarm_until,
    clear_unit,
    end,
    long_batch,
    unacked,
)
from tests.journal.procs import ROOT, Lines
from tests.support import HANG_GUARD
from tests.support.daemon import PASSWORD, SimTwins, client_for


@contextmanager
def child(sim_cell: SimTwins, journal: Path) -> Iterator[tuple[str, dict[str, str]]]:
    ep = sim_cell.endpoints
    args = [ep["shuttle"], ep["cellq"], str(journal), str(ENGINE_RECIPES)]
    proc = subprocess.Popen(
        [sys.executable, "-m", "tests.alarms.daemon_child", *args],
        cwd=ROOT,
        stdin=subprocess.DEVNULL,
        stdout=subprocess.PIPE,
        stderr=subprocess.DEVNULL,
    )
    try:
        lines = Lines(proc)
        while (line := lines.next()) is not None and not line.startswith("READY "):
            pass
        assert line is not None, f"the daemon exited with {proc.wait(HANG_GUARD)}"
        _, url, tokens = line.split(" ", 2)
        yield url, json.loads(tokens)
    finally:
        proc.send_signal(signal.SIGKILL)  # kill -9: no clean stop, ever
        proc.wait(HANG_GUARD)


async def test_alarms_survive_kill_9(sim_cell: SimTwins, tmp_path: Path) -> None:
    journal = tmp_path / "journal.sqlite"
    with child(sim_cell, journal) as (url, tokens):
        async with (
            client_for(url, tokens["tester"]) as tester,
            client_for(url, tokens["op1"]) as op1,
            client_for(url, tokens["sup1"]) as sup1,
        ):
            bx, _c, ux = await long_batch(tester, sim_cell)
            by, _c, uy = await long_batch(tester, sim_cell)
            for unit in (ux, uy):
                await asyncio.to_thread(
                    sim_cell.twin, lambda c, u=unit: c.inject_fault(u, 9, "fan")
                )
            ax = (await alarm_until(op1, bx, "alarm", unacked))["alarm_id"]
            ay = (await alarm_until(op1, by, "alarm", unacked))["alarm_id"]
            acked = await op1.post(f"/alarms/{ax}/ack", json={"reason": "fan seen"})
            assert acked.status_code == 200
            shelved = await sup1.post(
                f"/alarms/{ay}/shelve",
                json={"duration_s": 3600, "reason": "spare ordered", "password": PASSWORD},
            )
            assert shelved.status_code == 200
            before = {a: (await op1.get(f"/alarms/{a}")).json() for a in (ax, ay)}
    with child(sim_cell, journal) as (url, tokens):
        async with client_for(url, tokens["tester"]) as tester:
            after = {a: (await tester.get(f"/alarms/{a}")).json() for a in (ax, ay)}
            assert after == before
            assert (after[ax]["state"], after[ay]["state"]) == ("acknowledged", "shelved")
            rows = (await tester.get("/audit", params={"object_id": ay})).json()
            [signed] = [r for r in rows if r["signature"]]
            assert signed["signature"]["valid"] and signed["signature"]["meaning"] == "shelved"
            for bid in (bx, by):
                await end(tester, bid)
    for unit in (ux, uy):
        await clear_unit(sim_cell, unit)
