"""Instruments, the scheduler's queue, health and the OpenAPI document, through the API."""

from __future__ import annotations

import httpx

from drivers import icd
from tests.support.daemon import PASSWORD, RunningDaemon, SimTwins, batch_until, start_batch


async def test_the_instruments_view_shows_the_twins_units_ports_and_slots(
    api: httpx.AsyncClient, sim_cell: SimTwins
) -> None:
    answer = await api.get("/instruments")
    assert answer.status_code == 200, answer.text
    view = answer.json()
    assert view["links"] == {
        "shuttle1": {"up": True, "reason": ""},
        "cellq1": {"up": True, "reason": ""},
    }
    shuttle = view["shuttles"]["shuttle1"]
    twin = sim_cell.cell.shuttle
    assert set(shuttle["units"]) == set(icd.DEFAULT_UNITS)
    for name, unit in shuttle["units"].items():
        assert unit["unit"] == name
        assert tuple(unit["capabilities"]) == twin.units[name].capabilities
        assert unit["state"] in {s.value for s in icd.UnitState}
        assert 0.0 <= unit["progress"] <= 1.0 and unit["out_of_service"] is False
    assert shuttle["transport"]["state"] in {s.value for s in icd.TransportState}
    assert isinstance(shuttle["output_port"], list)
    cellq = view["analyzers"]["cellq1"]
    assert cellq["up"] and 0 <= cellq["free_slots"] <= icd.SLOT_COUNT
    assert all(0 <= job["slot"] < icd.SLOT_COUNT for job in cellq["jobs"])


async def test_the_queue_answers_what_waits_and_what_is_reserved(api: httpx.AsyncClient) -> None:
    # a batch whose cartridge has not arrived asks for nothing yet: it is not queued
    batch_id = (await start_batch(api, priority=7))["batch_id"]
    answer = await api.get("/instruments/queue")
    assert answer.status_code == 200
    queue = answer.json()
    assert set(queue) == {"pending", "reserved", "parking", "vacating", "transport"}
    assert batch_id not in {p["batch"] for p in queue["pending"]}
    assert batch_id not in queue["reserved"].values()
    body = {"reason": "test over", "password": PASSWORD}
    answer = await api.post(f"/batches/{batch_id}/commands/abort", json=body)
    assert answer.status_code == 200
    await batch_until(api, batch_id, lambda b: b["state"] == "Aborted", "Aborted")


async def test_health_says_serving_and_what_is_connected(
    api: httpx.AsyncClient, api_daemon: RunningDaemon
) -> None:
    answer = await api.get("/health")
    assert answer.status_code == 200
    health = answer.json()
    assert health["status"] == "serving" and health["site"] == api_daemon.daemon.site.site
    assert health["instruments"]["shuttle1"]["up"] and health["instruments"]["cellq1"]["up"]
    assert health["internal_errors"] == 0


async def test_openapi_describes_every_route_and_its_error_body(api: httpx.AsyncClient) -> None:
    doc = (await api.get("/openapi.json")).json()
    assert doc["info"]["title"] == "cellfab"
    assert set(doc["paths"]) == {
        "/batches",
        "/batches/{batch_id}",
        "/batches/{batch_id}/commands/{command}",
        "/batches/{batch_id}/confirm",
        "/batches/{batch_id}/records",
        "/batches/{batch_id}/release",
        "/batches/{batch_id}/signatures",
        "/batches/{batch_id}/record",
        "/recipes",
        "/recipes/submit",
        "/recipes/{sha256}/approve",
        "/recipes/{sha256}/retire",
        "/recipes/validate",
        "/recipes/{name}",
        "/instruments",
        "/instruments/queue",
        "/health",
        "/events",
        "/auth/login",
        "/auth/logout",
        "/auth/me",
        "/auth/password",
        "/users",
        "/users/{name}/disable",
        "/users/{name}/enable",
        "/users/{name}/unlock",
        "/users/{name}/password",
        "/users/{name}/roles",
        "/audit",
        "/metrics",
        "/alarms",
        "/alarms/{alarm_id}",
        "/alarms/{alarm_id}/ack",
        "/alarms/{alarm_id}/shelve",
    }
    assert "ErrorOut" in doc["components"]["schemas"]
    start = doc["components"]["schemas"]["StartIn"]
    assert start["additionalProperties"] is False
    assert start["properties"]["reason"]["maxLength"] == 1000 and "by" not in start["properties"]
    for path, item in doc["paths"].items():
        for method, op in item.items():
            for status, response in op["responses"].items():
                if status.startswith("4"):
                    schema = response["content"]["application/json"]["schema"]
                    assert schema["$ref"].endswith("/ErrorOut"), (path, method, status)
    assert (await api.get("/docs")).status_code == 404  # no pages that fetch scripts
