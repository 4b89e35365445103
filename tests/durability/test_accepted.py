"""What the API accepted (answered 2xx) survives a kill -9 right after the answer: a
batch created, a confirmation, a Hold and a Restart are all there when the daemon
comes back, and act as they would have (the prompt is not asked again, the hold holds,
the restart runs on), and the batches end as in the unkilled reference run."""

from __future__ import annotations

from collections.abc import Callable
from typing import Any

import pytest

from daemon.journal import records as r
from tests.durability.conftest import MakeScenario
from tests.durability.scenario import MIX, Scenario, assert_same
from tests.support import HANG_GUARD, eventually

CHAIN, CONFIRM = MIX[0], MIX[2]


async def _post(scenario: Scenario, path: str, body: dict[str, Any], status: int) -> Any:
    async with scenario.api() as api:
        answer = await api.post(path, json=body)
    assert answer.status_code == status, answer.text
    return answer.json()


async def _batch(scenario: Scenario, bid: str) -> dict[str, Any]:
    async with scenario.api() as api:
        answer = await api.get(f"/batches/{bid}")
    assert answer.status_code == 200, answer.text
    return answer.json()  # type: ignore[no-any-return]


def _mine(scenario: Scenario, bid: str, kind: type[r.Record]) -> list[Any]:
    return [rec for _s, rec in scenario.records() if rec.batch_id == bid and isinstance(rec, kind)]


@pytest.mark.timeout(300)
async def test_what_the_api_accepted_survives_a_kill_right_after_the_answer(
    make_scenario: MakeScenario, reference: Callable[..., Any]
) -> None:
    ref = await reference()
    scenario = make_scenario((CONFIRM, CHAIN), operator=False)
    async with scenario.running():
        # created (201), then killed at once
        created = await _post(
            scenario,
            "/batches",
            {"recipe": CONFIRM.recipe, "cartridge_id": scenario.cartridges[0], "by": "ann"},
            201,
        )
        conf = created["batch_id"]
        scenario.batches.append(conf)
        await scenario.kill()
        await scenario.start()
        again = await _batch(scenario, conf)
        assert (again["cartridge_id"], again["recipe_hash"], again["created_by"]) == (
            scenario.cartridges[0],
            created["recipe_hash"],
            "ann",
        )
        assert again["state"] in ("Running", "Held")

        # confirmed (200), then killed at once: the prompt is not asked again
        waiting = await eventually(
            lambda: _batch(scenario, conf),
            "the confirm prompt",
            lambda b: b["waiting"] is not None and b["state"] == "Running",
            limit=HANG_GUARD * 3,
        )
        step = waiting["waiting"]["step"]
        body = {"step": step, "by": "op7", "role": waiting["waiting"]["role"], "note": "ok"}
        await _post(scenario, f"/batches/{conf}/confirm", body, 200)
        await scenario.kill()
        await scenario.start()
        [confirmed] = _mine(scenario, conf, r.Confirmed)
        assert (confirmed.step, confirmed.by, confirmed.note) == (step, "op7", "ok")
        after = await eventually(
            lambda: _batch(scenario, conf), "past the prompt", lambda b: b["step"] != step
        )
        assert after["waiting"] is None

        # held (200), then killed at once: the hold holds
        [chain] = await scenario.create(1)
        await scenario.wait_record(
            "the expansion started",
            lambda x: isinstance(x, r.ProgramStarted) and x.task_id == f"{chain}/grow/1",
        )
        hold = {"by": "sup1", "role": "supervisor", "reason": "check the incubator"}
        await _post(scenario, f"/batches/{chain}/commands/hold", hold, 200)
        await scenario.kill()
        await scenario.start()
        held = await eventually(
            lambda: _batch(scenario, chain), "Held", lambda b: b["state"] == "Held"
        )
        assert (held["held_by"], held["hold_reason"]) == ("sup1", "check the incubator")

        # restarted (200), then killed at once: it runs on
        await _post(scenario, f"/batches/{chain}/commands/restart", {"by": "sup1"}, 200)
        await scenario.kill()
        await scenario.start()
        assert (await _batch(scenario, chain))["state"] in ("Restarting", "Running", "Complete")
        await scenario.until_final()
    got = await scenario.finish()
    assert scenario.kills == 4
    assert_same(got, [ref[MIX.index(CONFIRM)], ref[MIX.index(CHAIN)]])
    commands = [(c.command, c.by) for c in _mine(scenario, chain, r.CommandIssued) if c.accepted]
    assert commands == [("Start", "tester"), ("Hold", "sup1"), ("Restart", "sup1")]
