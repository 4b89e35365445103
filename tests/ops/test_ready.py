"""READY=1 (a real datagram socket) comes once the engine has reconciled: after a
restart, a program the journal left open has been asked about and its end recorded
before the daemon says it is ready; a runner that never takes up its batch delays READY
by RECONCILE_WAIT_S at most."""

from __future__ import annotations

import asyncio
from pathlib import Path
from typing import Any

import anyio
import pytest

import daemon.supervisor as supervisor
from daemon.batch.engine import Engine
from daemon.journal import records as r
from daemon.ops.notify import Notifier
from daemon.supervisor import Daemon, build, serve
from drivers.base import UnitStatus
from drivers.icd import UnitState
from drivers.opcua import OpcUaShuttle, SecurityConfig
from tests.engine.conftest import new_cartridge, people, recipe, site_for, until
from tests.ops.notify_support import Listener, is_ready
from tests.support import HANG_GUARD, eventually
from tests.support.daemon import LocalDaemon, SimTwins


class Served:
    """``serve`` on this loop with a notifier on the test's socket; ``at_ready`` holds
    what ``probe(daemon)`` saw at the moment the daemon said READY."""

    def __init__(self, daemon: Daemon, socket: Listener, probe: Any, *, api: bool) -> None:
        self.daemon = daemon
        self.stop = anyio.Event()
        self.ready = asyncio.Event()
        self.at_ready: dict[str, Any] = {}

        def on_ready(d: Daemon) -> None:
            self.at_ready = {"messages": socket.drain(), **probe(d)}
            self.ready.set()

        self.task = asyncio.create_task(
            serve(
                daemon,
                self.stop,
                api=api,
                on_ready=on_ready,
                notifier=Notifier(str(socket.path)),
            )
        )

    async def until_ready(self) -> None:
        waiter = asyncio.ensure_future(self.ready.wait())
        done, _ = await asyncio.wait(
            {self.task, waiter}, timeout=HANG_GUARD, return_when=asyncio.FIRST_COMPLETED
        )
        waiter.cancel()
        if self.task in done:
            self.task.result()
        assert self.ready.is_set(), "hang guard: the daemon did not get ready"

    async def close(self) -> None:
        self.stop.set()
        async with asyncio.timeout(HANG_GUARD):
            await self.task


def names(daemon: Daemon, batch_id: str) -> list[str]:
    return [type(rec).__name__ for _seq, rec in daemon.journal.batch_records(batch_id)]


async def test_ready_comes_after_the_open_program_is_reconciled(
    sim_cell: SimTwins, notify_socket: Listener, tmp_path: Path
) -> None:
    journal = tmp_path / "journal.sqlite"
    cell, client = await people(sim_cell.endpoints["shuttle"])
    try:
        first = LocalDaemon(build(site_for(sim_cell, journal)))
        await first.start()
        c = new_cartridge()
        b = await first.daemon.engine.create(recipe("long_op"), {"hours": 20.0}, c, by="ann")
        bid = b.batch_id
        cell.load(c)
        running = await until(
            first.daemon.engine,
            bid,
            "program started",
            lambda x: x.task is not None and x.task.phase == "started",
        )
        task = running.task
        assert task is not None
        await first.stop()
        left = first.daemon.engine.batches[bid].task
        assert left is not None and left.phase == "started", "ended before the restart"
        # no daemon runs while the program ends on the shuttle
        url = sim_cell.endpoints["shuttle"]
        async with OpcUaShuttle("rogue", url, security=SecurityConfig.insecure()) as rogue:

            async def unit() -> UnitStatus:
                return await rogue.unit_status(task.unit)

            await eventually(
                unit,
                "the program ended on the shuttle",
                lambda s: s.task_id == task.task_id and s.state == UnitState.COMPLETE,
            )
        second = Served(
            build(site_for(sim_cell, journal)),
            notify_socket,
            lambda d: {"records": names(d, bid), "reconciled": d.engine.reconciled.is_set()},
            api=False,  # READY then follows the runners at once unless it waits for them
        )
        try:
            await second.until_ready()
            seen = second.at_ready
            assert [m for m in seen["messages"] if is_ready(m)] == [
                {"READY": "1", "STATUS": "serving no API; 1 batches"}
            ]
            assert seen["reconciled"]
            assert "ProgramEnded" in seen["records"]  # asked, and recorded, before READY
            end = await until(second.daemon.engine, bid, "Complete", lambda x: x.final)
            assert end.outcome == "completed"
            intents = [
                rec
                for _s, rec in second.daemon.journal.batch_records(bid)
                if isinstance(rec, r.ProgramIntent)
            ]
            assert len(intents) == 1  # reconciled, never started again
        finally:
            await second.close()
    finally:
        await cell.close()
        await client.disconnect()


async def test_a_runner_that_never_takes_up_its_batch_delays_ready_only_so_long(
    sim_cell: SimTwins, notify_socket: Listener, tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    journal = tmp_path / "journal.sqlite"
    first = LocalDaemon(build(site_for(sim_cell, journal)))
    await first.start()
    b = await first.daemon.engine.create(
        recipe("long_op"), {}, new_cartridge(), by="ann", start=False
    )
    await first.stop()
    # a stuck runner, as an instrument that never answers would make one
    monkeypatch.setattr(Engine, "taken_up", lambda _self, _batch_id: None)
    monkeypatch.setattr(supervisor, "RECONCILE_WAIT_S", 0.5)
    second = Served(
        build(site_for(sim_cell, journal)),
        notify_socket,
        lambda d: {"reconciled": d.engine.reconciled.is_set(), "waiting": set(d.engine.taking_up)},
        api=True,
    )
    try:
        await second.until_ready()
        assert any(is_ready(m) for m in second.at_ready["messages"])
        assert not second.at_ready["reconciled"]
        assert second.at_ready["waiting"] == {b.batch_id}
    finally:
        await second.close()
