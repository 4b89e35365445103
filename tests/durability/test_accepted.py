"""What the API accepted (answered 2xx) survives a kill -9 right after the answer: a
sign-in, a batch created, a confirmation, a Hold and a Restart are all there when the
daemon comes back, and act as they would have (the token still signs its user in, the
prompt is not asked again, the hold holds, the restart runs on), and the batches end as
in the unkilled reference run. Each request is made by the user it names (``PEOPLE`` of
the scenario, signed in)."""

from __future__ import annotations

from collections.abc import Callable
from typing import Any

import pytest

from daemon.journal import records as r
from tests.durability.conftest import MakeScenario
from tests.durability.scenario import MIX, Scenario, assert_same
from tests.support import HANG_GUARD, eventually
from tests.support.daemon import PASSWORD, client_for

CHAIN, CONFIRM = MIX[0], MIX[2]


async def _post(
    scenario: Scenario, path: str, body: dict[str, Any], status: int, who: str = "tester"
) -> Any:
    async with scenario.api(who) as api:
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
        # signed in (200) and created (201), then killed at once
        async with client_for(scenario.files.api_url, timeout=10.0) as anon:
            login = await anon.post("/auth/login", json={"name": "ann", "password": PASSWORD})
        assert login.status_code == 200, login.text
        scenario.staff.tokens["ann"] = login.json()["token"]
        created = await _post(
            scenario,
            "/batches",
            {"recipe": CONFIRM.recipe, "cartridge_id": scenario.cartridges[0]},
            201,
            who="ann",
        )
        conf = created["batch_id"]
        scenario.batches.append(conf)
        await scenario.kill()
        await scenario.start()  # checks every token, ann's new one too
        async with scenario.api("ann") as api:
            me = await api.get("/auth/me")
        assert (me.status_code, me.json()["user"]["name"]) == (200, "ann"), me.text
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
        assert waiting["waiting"]["role"] == "operator"  # op7's role
        confirm = {"step": step, "reason": "ok"}
        await _post(scenario, f"/batches/{conf}/confirm", confirm, 200, "op7")
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
        hold = {"reason": "check the incubator"}
        await _post(scenario, f"/batches/{chain}/commands/hold", hold, 200, "sup1")
        await scenario.kill()
        await scenario.start()
        held = await eventually(
            lambda: _batch(scenario, chain), "Held", lambda b: b["state"] == "Held"
        )
        assert (held["held_by"], held["hold_reason"]) == ("sup1", "check the incubator")

        # restarted (200), then killed at once: it runs on
        restart = {"reason": "the incubator is fine"}
        await _post(scenario, f"/batches/{chain}/commands/restart", restart, 200, "sup1")
        await scenario.kill()
        await scenario.start()
        assert (await _batch(scenario, chain))["state"] in ("Restarting", "Running", "Complete")
        await scenario.until_final()
    got = await scenario.finish()
    assert scenario.kills == 4
    assert_same(got, [ref[MIX.index(CONFIRM)], ref[MIX.index(CHAIN)]])
    commands = [(c.command, c.by) for c in _mine(scenario, chain, r.CommandIssued) if c.accepted]
    assert commands == [("Start", "tester"), ("Hold", "sup1"), ("Restart", "sup1")]
