"""Batches through the API of a real daemon over the twins: start, run, every ISA-88
command accepted and refused, confirm, journal records, errors that name the field."""

from __future__ import annotations

from typing import Any

import httpx
import pytest

from tests.support import fresh
from tests.support.daemon import SimTwins, batch_until, insert_cartridge, start_batch

FINAL = {"Complete", "Stopped", "Aborted"}


async def command(
    api: httpx.AsyncClient, batch_id: str, name: str, status: int = 200, **body: Any
) -> dict[str, Any]:
    body.setdefault("by", "tester")
    answer = await api.post(f"/batches/{batch_id}/commands/{name}", json=body)
    assert answer.status_code == status, answer.text
    return answer.json()  # type: ignore[no-any-return]


async def in_state(api: httpx.AsyncClient, batch_id: str, state: str) -> dict[str, Any]:
    return await batch_until(api, batch_id, lambda b: b["state"] == state, f"state {state}")


async def records(api: httpx.AsyncClient, batch_id: str) -> list[dict[str, Any]]:
    answer = await api.get(f"/batches/{batch_id}/records")
    assert answer.status_code == 200, answer.text
    return answer.json()  # type: ignore[no-any-return]


async def test_a_library_recipe_runs_to_its_end_through_the_api(
    api: httpx.AsyncClient, sim_cell: SimTwins
) -> None:
    answer = await api.post(
        "/batches",
        json={
            "recipe": "qc_only",
            "params": {"volume_ml": 0.7},
            "cartridge_id": (cartridge := fresh("C")),
            "by": "op1",
        },
    )
    assert answer.status_code == 201, answer.text
    started = answer.json()
    batch_id = started["batch_id"]
    assert answer.headers["location"] == f"/batches/{batch_id}"
    assert started["state"] == "Running" and started["unapproved"] is True
    assert started["params"] == {"volume_ml": 0.7, "min_viability_pct": 70.0}

    await insert_cartridge(api, sim_cell, cartridge)
    done = await batch_until(api, batch_id, lambda b: b["state"] in FINAL, "a final state")

    assert done["state"] == "Complete", done
    qc = done["variables"]
    assert set(qc) == {"density", "viability", "cd3"}
    passed = qc["viability"] >= 70.0 and qc["cd3"] >= 50.0  # the recipe's guard
    assert done["outcome"] == ("completed" if passed else "failed")
    assert done["visits"] == {"qc_sample": 1, "passed" if passed else "out_of_range": 1}
    assert [j["phase"] for j in done["jobs"]] == ["released"]
    assert done["location"] == "OutputPort" and done["deviations"] == []
    assert done["waiting"] is None and done["created_by"] == "op1"

    types = [r["type"] for r in await records(api, batch_id)]
    assert types[:3] == ["BatchCreated", "CommandIssued", "Admitted"]
    assert types[-3:] == ["MoveIntent", "MoveEnded", "StateReached"]  # out, then Complete
    assert types.count("BatchFinished") == 1 and types.count("StateReached") == 1
    assert types.index("ProgramIntent") < types.index("ProgramStarted") < types.index("JobIntent")

    complete = (await api.get("/batches", params={"state": "Complete"})).json()
    running = (await api.get("/batches", params=[("state", "Running"), ("state", "Held")])).json()
    assert batch_id in {b["batch_id"] for b in complete}
    assert batch_id not in {b["batch_id"] for b in running}


async def test_every_command_is_accepted_or_refused_with_the_reason_and_journaled(
    api: httpx.AsyncClient,
) -> None:
    batch_id = (await start_batch(api))["batch_id"]  # no cartridge: it waits for one
    refused: list[str] = []

    async def refuse(name: str, state: str) -> None:
        body = await command(api, batch_id, name, 409, reason="test")
        assert (body["error"], body["field"]) == ("refused", "command")
        assert f"{name.title()} is not allowed in state {state}" in body["detail"]
        refused.append(body["detail"])

    await refuse("start", "Running")
    await refuse("restart", "Running")
    await refuse("resume", "Running")
    await refuse("reset", "Running")
    assert (await command(api, batch_id, "hold", reason="shift change"))["state"] in (
        "Holding",
        "Held",
    )
    held = await in_state(api, batch_id, "Held")
    assert (held["held_by"], held["hold_reason"]) == ("tester", "shift change")
    await refuse("hold", "Held")
    await refuse("pause", "Held")
    await command(api, batch_id, "restart")
    await in_state(api, batch_id, "Running")
    assert (await command(api, batch_id, "pause"))["state"] == "Pausing"
    await refuse("pause", "Pausing")
    await refuse("resume", "Pausing")
    await command(api, batch_id, "stop", role="supervisor", reason="test")
    await in_state(api, batch_id, "Stopped")
    await refuse("stop", "Stopped")
    await refuse("abort", "Stopped")
    assert (await command(api, batch_id, "reset"))["state"] == "Idle"
    await refuse("reset", "Idle")
    await refuse("abort", "Idle")
    assert (await command(api, batch_id, "start"))["state"] == "Running"
    await command(api, batch_id, "abort", role="supervisor", reason="test")
    aborted = await in_state(api, batch_id, "Aborted")
    assert aborted["run"] == 2

    issued = [r["data"] for r in await records(api, batch_id) if r["type"] == "CommandIssued"]
    assert [c["detail"] for c in issued if not c["accepted"]] == [
        d.split(": ", 1)[1] for d in refused
    ]
    accepted = [c["command"] for c in issued if c["accepted"]]
    assert accepted == ["Start", "Hold", "Restart", "Pause", "Stop", "Reset", "Start", "Abort"]
    stop = next(c for c in issued if c["command"] == "Stop")
    assert (stop["by"], stop["role"], stop["reason"]) == ("tester", "supervisor", "test")


async def test_pause_takes_effect_at_a_step_boundary_and_resume_goes_on(
    api: httpx.AsyncClient, sim_cell: SimTwins
) -> None:
    batch = await start_batch(api)
    batch_id = batch["batch_id"]
    await command(api, batch_id, "pause")
    await insert_cartridge(api, sim_cell, batch["cartridge_id"])
    paused = await in_state(api, batch_id, "Paused")
    assert paused["shuttle"] == "shuttle1"
    assert (await command(api, batch_id, "resume"))["state"] == "Running"
    done = await batch_until(api, batch_id, lambda b: b["state"] in FINAL, "a final state")
    assert done["state"] == "Complete" and done["outcome"] in ("completed", "failed")
    await command(api, batch_id, "resume", 409)


async def test_confirm_names_the_field_it_refuses_and_then_goes_on(
    api: httpx.AsyncClient, sim_cell: SimTwins
) -> None:
    batch = await start_batch(api, "confirm_gate")
    batch_id = batch["batch_id"]
    await insert_cartridge(api, sim_cell, batch["cartridge_id"])
    waiting = await batch_until(api, batch_id, lambda b: b["waiting"] is not None, "a prompt")
    assert waiting["waiting"] == {
        "step": "label_check",
        "visit": 1,
        "prompt": "Labels and chain of identity checked",
        "role": "supervisor",
    }
    listed = {b["batch_id"]: b for b in (await api.get("/batches")).json()}
    assert listed[batch_id]["waiting"]["role"] == "supervisor"

    async def confirm(status: int, **body: Any) -> dict[str, Any]:
        answer = await api.post(f"/batches/{batch_id}/confirm", json=body)
        assert answer.status_code == status, answer.text
        return answer.json()  # type: ignore[no-any-return]

    wrong_role = await confirm(403, step="label_check", by="op1", role="operator")
    assert (wrong_role["error"], wrong_role["field"]) == ("forbidden", "role")
    assert "supervisor" in wrong_role["detail"]
    wrong_step = await confirm(409, step="done", by="sup1", role="supervisor")
    assert wrong_step["field"] == "step" and "label_check" in wrong_step["detail"]
    assert (await confirm(422, step="label_check", by="sup1", role="janitor"))["field"] == "role"
    assert (await confirm(422, step="label_check", role="supervisor"))["field"] == "by"
    assert (await confirm(422, step="label_check", by="", role="supervisor"))["field"] == "by"
    extra = await confirm(422, step="label_check", by="s", role="supervisor", sign=True)
    assert extra["field"] == "sign"
    assert (await api.get(f"/batches/{batch_id}")).json()["confirmation"] is None

    confirmed = await confirm(200, step="label_check", by="sup1", role="supervisor", note="ok")
    assert confirmed["confirmation"] == {"by": "sup1", "role": "supervisor", "note": "ok"}
    done = await in_state(api, batch_id, "Complete")
    assert done["waiting"] is None and done["outcome"] == "completed"
    assert (await confirm(409, step="label_check", by="sup1", role="supervisor"))["field"] == "step"


@pytest.mark.parametrize(
    ("method", "path", "body"),
    [
        ("GET", "/batches/B9999-ZZZ", None),
        ("GET", "/batches/B9999-ZZZ/records", None),
        ("POST", "/batches/B9999-ZZZ/commands/hold", {"by": "x"}),
        ("POST", "/batches/B9999-ZZZ/confirm", {"step": "s", "by": "x", "role": "qa"}),
        ("GET", "/events?batch=B9999-ZZZ", None),
    ],
)
async def test_an_unknown_batch_is_404_naming_batch_id(
    api: httpx.AsyncClient, method: str, path: str, body: Any
) -> None:
    answer = await api.request(method, path, json=body)
    assert answer.status_code == 404, answer.text
    assert answer.json() == {
        "error": "not_found",
        "field": "batch_id",
        "detail": "no batch 'B9999-ZZZ'",
        "errors": [],
    }


@pytest.mark.parametrize(
    ("change", "status", "field", "words"),
    [
        ({"recipe": "no_such_recipe"}, 404, "recipe", "no recipe no_such_recipe"),
        ({"version": "9.9"}, 404, "recipe", "qc_only 9.9"),
        ({"sha256": "0" * 64}, 404, "recipe", "sha256:"),
        ({"sha256": "abc"}, 422, "sha256", "pattern"),
        ({"params": {"volume_ml": "lots"}}, 422, "params", "must be a number"),
        ({"params": {"volume_ml": 50.0}}, 422, "params", "above 2"),
        ({"params": {"colour": "red"}}, 422, "params", "unknown parameter 'colour'"),
        ({"params": {"volume_ml": [1]}}, 422, "params.volume_ml", "true/false, a number or text"),
        ({"cartridge_id": "no spaces"}, 422, "cartridge_id", "pattern"),
        ({"cartridge_id": 7}, 422, "cartridge_id", "string"),
        ({"priority": 5000}, 422, "priority", "1000"),
        ({"priority": 1.5}, 422, "priority", "integer"),
        ({"shuttle": "shuttle9"}, 422, "shuttle", "no shuttle 'shuttle9'"),
        ({"by": "a\nb"}, 422, "by", "pattern"),
        ({"by": "x" * 65}, 422, "by", "64"),
        ({"owner": "me"}, 422, "owner", "Extra inputs"),
    ],
)
async def test_a_start_request_that_cannot_start_names_its_field(
    api: httpx.AsyncClient, change: dict[str, Any], status: int, field: str, words: str
) -> None:
    body = {"recipe": "qc_only", "cartridge_id": fresh("C"), "by": "tester", **change}
    answer = await api.post("/batches", json=body)
    assert answer.status_code == status, answer.text
    error = answer.json()
    assert error["field"] == field and words in error["detail"], error


async def test_one_cartridge_one_live_batch(api: httpx.AsyncClient) -> None:
    first = await start_batch(api)
    again = await api.post(
        "/batches", json={"recipe": "qc_only", "cartridge_id": first["cartridge_id"], "by": "t"}
    )
    assert again.status_code == 409
    assert again.json()["field"] == "cartridge_id"
    assert first["batch_id"] in again.json()["detail"]
    await command(api, first["batch_id"], "abort")
    await in_state(api, first["batch_id"], "Aborted")
