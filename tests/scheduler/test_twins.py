"""End to end on the twins: more batches than bays run to completion.

A shuttle twin with three bays (one ``cell_selection``, two ``activation``) and five
batches of a tiny two-step recipe, through the real daemon (``supervisor.build`` and
``serve``, journal on disk, OPC UA driver) at a high time scale. The shuttle takes
two cartridges at a time (one bay kept free for parking); a loader puts each
cartridge at the LoadPort once it is free, as a person would.
"""

from __future__ import annotations

import contextlib
from pathlib import Path

import anyio
import pytest
from asyncua import Client, ua

from daemon.batch.states import BatchState
from daemon.config.defaults import sim_site
from daemon.recipe import load_recipe
from daemon.supervisor import build, serve
from drivers import icd
from simulators.clock import Clock
from simulators.controls import TwinControls
from simulators.runner import BackgroundLoop
from simulators.shuttle import ShuttleTwin
from simulators.world import World
from tests.support import HANG_GUARD, fresh

SCALE = 10_000.0
RECIPE = Path(__file__).parent / "recipes" / "tiny_two_bays.yaml"
UNITS = {"SEL1": ("cell_selection",), "INC01": ("activation",), "INC02": ("activation",)}


@pytest.fixture(scope="module")
def few_bays() -> ShuttleTwin:
    loop = BackgroundLoop("few-bays-twin")
    twin = ShuttleTwin(
        World(seed=7),
        Clock(SCALE),
        units=tuple(UNITS),
        capabilities=UNITS,
        security="none",
        serial_number="SIM-FEWBAYS",
    )
    loop.run(twin.start())
    yield twin
    loop.run(twin.stop())
    loop.close()


async def test_more_batches_than_bays_run_to_completion(
    few_bays: ShuttleTwin, tmp_path: Path
) -> None:
    site = sim_site({"shuttle": few_bays.url}, SCALE, tmp_path / "journal.db")
    daemon = build(site)
    engine = daemon.engine
    recipe = load_recipe(RECIPE)
    cartridges = [fresh("C") for _ in range(5)]
    most_inside = 0
    stop = anyio.Event()

    async def loader(ctl: TwinControls) -> None:
        nonlocal most_inside
        view = daemon.cell.shuttles["shuttle1"]
        for cid in cartridges:
            while True:
                inside = sum(1 for u in view.units.values() if u.cartridge_id)
                most_inside = max(most_inside, inside)
                if not view.load_port:
                    with contextlib.suppress(ua.UaStatusCodeError):  # a move at the port
                        await ctl.insert(cid, 2e8, 90.0)
                        break
                await anyio.sleep(0.02)

    async with anyio.create_task_group() as tg:
        ready = anyio.Event()
        tg.start_soon(lambda: serve(daemon, stop, api=False, on_ready=lambda _d: ready.set()))
        with anyio.fail_after(HANG_GUARD):
            await ready.wait()
        batches = [await engine.create(recipe, {}, cid, by="test") for cid in cartridges]
        client = Client(few_bays.url)
        async with client:
            ctl = TwinControls(client)
            assert await ctl.discover()
            tg.start_soon(loader, ctl)
            with anyio.fail_after(3 * HANG_GUARD):
                for b in batches:
                    await engine.wait_batch(b.batch_id, lambda nb: nb.final)
        stop.set()

    done = [engine.batches[b.batch_id] for b in batches]
    assert [b.state for b in done] == [BatchState.COMPLETE] * 5
    assert [b.outcome for b in done] == ["completed"] * 5
    assert [d.kind for b in done for d in b.deviations] == []
    # every program started once, none twice (TaskIds are batch/step/attempt)
    programs = [e["task_id"] for e in few_bays.model.started if e["unit"] != icd.TRANSPORT]
    assert len(programs) == 10 and len(set(programs)) == 10
    # the shuttle never took more cartridges than it has bays less the reserve
    assert most_inside <= len(UNITS) - 1
    assert sorted(few_bays.model.output_port) == sorted(cartridges)
    assert not any(u.cartridge_id for u in few_bays.units.values())
    assert not few_bays.model.load_port
