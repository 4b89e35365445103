"""Faults on the wires while the daemon lives and dies: dropped connections, stalls,
garbage frames, Modbus exceptions and silence, with kill -9 and restarts in between.
Batches may hold for a lost link (a ``link`` deviation, and the system's own Restart
once the link is back), and must otherwise end as in the unkilled reference run, with
nothing run twice.

And one fault made to happen at the worst moment: Cell Q carries out a submit and its
answer never comes (the connection stays open, silent), with the daemon alive."""

from __future__ import annotations

import random
from collections.abc import Callable
from typing import Any

import pytest

from daemon.journal import records as r
from drivers import icd
from tests.durability.conftest import MakeScenario, seed_groups
from tests.durability.rig import Rig
from tests.durability.scenario import MIX, Order, Scenario, assert_same
from tests.support import eventually

SPAN = 60


async def _health(scenario: Scenario) -> dict[str, Any]:
    async with scenario.api() as api:
        answer = await api.get("/health")
        assert answer.status_code == 200
        return answer.json()  # type: ignore[no-any-return]


async def _cellq_losses(scenario: Any) -> int:
    text = scenario.files.log.read_text(errors="replace") if scenario.files.log.exists() else ""
    return sum("link lost" in line and "cellq1" in line for line in text.splitlines())


@pytest.mark.timeout(300)
async def test_a_submit_whose_answer_never_comes_stalls_nothing(
    rig: Rig, make_scenario: MakeScenario, reference: Callable[..., Any]
) -> None:
    expected = next(o for m, o in zip(MIX, await reference(), strict=True) if m == MIX[1])
    scenario = make_scenario((Order("dur_qc"),))
    async with scenario.running():
        [bid] = await scenario.create()
        await rig.cellq_proxy.hold_answer_to(f"{bid}-S1".encode())
        await scenario.wait_record("the job", lambda rec: isinstance(rec, r.JobIntent))
        # the loss is a moment (the driver reconnects at once), so it is read from the
        # daemon's log, which keeps it, not polled from /health, which can miss it
        await eventually(
            lambda: _cellq_losses(scenario), "the daemon logs Cell Q's link lost", bool
        )
        assert (await _health(scenario))["status"] == "serving"  # and it still answers
        await scenario.until_final()  # the driver reconnects; the job is found in its slot
    [got] = await scenario.finish()  # one job created; SIGTERM stopped the daemon
    assert_same([got], [expected])


def _fault_plan(rng: random.Random) -> list[str]:
    return rng.sample(
        ["drop_shuttle", "drop_cellq", "stall_shuttle", "stall_cellq", "garbage_shuttle",
         "garbage_cellq", "modbus_exception", "modbus_busy", "modbus_silence"],
        k=4,
    )  # fmt: skip


async def _inject(rig: Rig, fault: str, rng: random.Random) -> None:
    match fault:
        case "drop_shuttle":
            await rig.shuttle_proxy.drop_connections()
        case "drop_cellq":
            await rig.cellq_proxy.drop_connections()
        case "stall_shuttle":
            await rig.shuttle_proxy.stall(rng.uniform(0.05, 0.5))
        case "stall_cellq":
            await rig.cellq_proxy.stall(rng.uniform(0.05, 0.5))
        case "garbage_shuttle":
            await rig.shuttle_proxy.garbage(rng.randint(8, 64))
        case "garbage_cellq":
            await rig.cellq_proxy.garbage(rng.randint(8, 64))
        case "modbus_exception":
            rig.modbus_faults.exception(icd.EXC_DEVICE_FAILURE, count=rng.randint(1, 3))
        case "modbus_busy":
            rig.modbus_faults.exception(icd.EXC_DEVICE_BUSY, count=rng.randint(1, 3))
        case "modbus_silence":
            rig.modbus_faults.silence(1)


@pytest.mark.timeout(400)
@pytest.mark.parametrize("seeds", seed_groups()[:2], ids=lambda s: f"seeds{s[0]}-{s[-1]}")
async def test_faults_on_the_wires_while_the_daemon_is_killed(
    rig: Rig, make_scenario: MakeScenario, reference: Callable[..., Any], seeds: tuple[int, ...]
) -> None:
    expected = await reference()
    scenario = make_scenario()
    try:
        async with scenario.running():
            await scenario.create()
            for seed in seeds:
                rng = random.Random(1000 + seed)
                for fault in _fault_plan(rng):
                    if not await scenario.progress(rng.randint(1, SPAN // 4)):
                        break
                    await _inject(rig, fault, rng)
                if not await scenario.progress(rng.randint(1, SPAN // 2)):
                    break
                await scenario.kill(check=False)
                await rig.clear_faults()  # faults again after the restart, not during it
                await scenario.check_instruments()
                await scenario.start()
            await rig.clear_faults()
            await scenario.until_final()
    finally:
        await rig.clear_faults()
    got = await scenario.finish()
    assert_same(got, expected)
