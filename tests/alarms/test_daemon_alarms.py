"""Alarms in the real daemon on the twins, over HTTP: a unit fault and a lost link raise
alarms tied to their batch, step, unit and cartridge; they return to normal when their
cause clears; operators acknowledge, supervisors shelve with a signature; a shelving
expires; the alarms are the same after a restart; every change is in the audit trail."""

from __future__ import annotations

import asyncio
import json
from pathlib import Path
from typing import Any
from urllib.parse import urlsplit

from httpx_sse import aconnect_sse

from simulators.faults import FaultProxy
from tests.alarms.helpers import (
    alarm_until,
    audit_of,
    clear_unit,
    daemon_on,
    end,
    long_batch,
    people,
    unacked,
)
from tests.support import HANG_GUARD, eventually
from tests.support.daemon import PASSWORD, SimTwins, batch_until, client_for


# --------------------------------------------------------------------------- unit fault
async def test_a_unit_fault_alarm_from_raise_to_normal_with_roles_and_a_restart(
    sim_cell: SimTwins, tmp_path: Path
) -> None:
    journal = tmp_path / "journal.sqlite"
    with daemon_on(sim_cell, journal) as d:
        async with people(d) as who:
            bid, cartridge, unit = await long_batch(who["tester"], sim_cell)
            async with asyncio.timeout(HANG_GUARD):
                async with aconnect_sse(
                    who["qa1"], "GET", "/events", params={"kind": "alarm", "batch": bid}
                ) as source:
                    await asyncio.to_thread(
                        sim_cell.twin, lambda c: c.inject_fault(unit, 42, "heater")
                    )
                    first = json.loads((await anext(source.aiter_sse())).data)
            assert first["kind"] == "alarm" and first["batch_id"] == bid
            assert first["data"]["event"] == "raise"
            alarm = await alarm_until(
                who["qa1"], bid, "unit fault alarm", lambda a: a["kind"] == "unit_fault"
            )
            aid = alarm["alarm_id"]
            assert (alarm["batch_id"], alarm["step"], alarm["unit"], alarm["cartridge_id"]) == (
                bid,
                "grow",
                unit,
                cartridge,
            )
            assert alarm["instrument"] == "shuttle1" and alarm["task_id"].startswith(bid)
            assert (alarm["priority"], alarm["state"], alarm["active"]) == (
                "high",
                "unacknowledged",
                True,
            )
            assert "42" in alarm["message"]
            scrape = await who["qa1"].get("/metrics")
            assert 'cellfab_alarms{priority="high",state="unacknowledged"} 1.0' in scrape.text
            # who may acknowledge: an operator, with a reason
            no_role = await who["qa1"].post(f"/alarms/{aid}/ack", json={"reason": "seen"})
            assert (
                no_role.status_code == 403 and "operator or supervisor" in no_role.json()["detail"]
            )
            blank = await who["op1"].post(f"/alarms/{aid}/ack", json={"reason": " "})
            assert blank.status_code == 422 and blank.json()["field"] == "reason"
            acked = await who["op1"].post(f"/alarms/{aid}/ack", json={"reason": "heater seen"})
            assert acked.status_code == 200, acked.text
            assert (acked.json()["state"], acked.json()["acked_by"]) == ("acknowledged", "op1")
            again = await who["op1"].post(f"/alarms/{aid}/ack", json={"reason": "twice"})
            assert again.status_code == 409 and "acknowledged" in again.json()["detail"]
            # the cause clears: a restart clears the unit and retries the program
            await batch_until(who["tester"], bid, lambda b: b["state"] == "Held", "Held")
            restart = await who["op1"].post(
                f"/batches/{bid}/commands/restart", json={"reason": "heater replaced"}
            )
            assert restart.status_code == 200, restart.text
            back = await alarm_until(
                who["qa1"], bid, "normal", lambda a: a["alarm_id"] == aid and a["state"] == "normal"
            )
            assert back["active"] is False
            assert [h["event"] for h in back["history"]] == ["raise", "ack", "clear"]
            listed = (await who["qa1"].get("/alarms", params={"batch": bid})).json()
            assert aid not in [a["alarm_id"] for a in listed]  # the default list: open ones
            rows = await audit_of(who["qa1"], aid)
            assert [(r["action"], r["actor"], r["reason"]) for r in rows][1] == (
                "alarm.ack",
                "op1",
                "heater seen",
            )
            assert [r["new"]["state"] for r in rows] == ["unacknowledged", "acknowledged", "normal"]
            assert {r["batch_id"] for r in rows} == {bid}
            await end(who["tester"], bid)


# --------------------------------------------------------------------------- shelving
async def test_shelving_is_signed_by_a_supervisor_survives_a_restart_and_expires(
    sim_cell: SimTwins, tmp_path: Path
) -> None:
    journal = tmp_path / "journal.sqlite"
    with daemon_on(sim_cell, journal) as d:
        async with people(d) as who:
            bx, _cx, ux = await long_batch(who["tester"], sim_cell)
            by, _cy, uy = await long_batch(who["tester"], sim_cell)
            for unit in (ux, uy):
                await asyncio.to_thread(
                    sim_cell.twin, lambda c, u=unit: c.inject_fault(u, 7, "door open")
                )
            ax = (await alarm_until(who["op1"], bx, "alarm", unacked))["alarm_id"]
            ay = (await alarm_until(who["op1"], by, "alarm", unacked))["alarm_id"]
            body = {"duration_s": 3600, "reason": "known, fitter called", "password": PASSWORD}
            by_op = await who["op1"].post(f"/alarms/{ax}/shelve", json=body)
            assert by_op.status_code == 403 and "supervisor" in by_op.json()["detail"]
            unsigned = await who["sup1"].post(
                f"/alarms/{ax}/shelve", json={k: v for k, v in body.items() if k != "password"}
            )
            assert unsigned.status_code == 422 and unsigned.json()["field"] == "password"
            wrong = await who["sup1"].post(
                f"/alarms/{ax}/shelve", json={**body, "password": "not my password"}
            )
            assert wrong.status_code == 403, wrong.text
            too_long = await who["sup1"].post(
                f"/alarms/{ax}/shelve", json={**body, "duration_s": 13 * 3600}
            )
            assert too_long.status_code == 422, too_long.text
            shelved = await who["sup1"].post(f"/alarms/{ax}/shelve", json=body)
            assert shelved.status_code == 200, shelved.text
            assert shelved.json()["state"] == "shelved" and shelved.json()["shelved_until_utc"]
            twice = await who["sup1"].post(f"/alarms/{ax}/shelve", json=body)
            assert twice.status_code == 409
            [row] = [r for r in await audit_of(who["qa1"], ax) if r["action"] == "alarm.shelve"]
            sig = row["signature"]
            assert (sig["meaning"], sig["user_name"], sig["valid"]) == ("shelved", "sup1", True)
            assert sig["manifest"]["content"]["from"] == "unacknowledged"
            assert row["reason"] == "known, fitter called"
            # a short shelving expires; the cause is still there: annunciated again
            short = {**body, "duration_s": 1}
            assert (await who["sup1"].post(f"/alarms/{ay}/shelve", json=short)).status_code == 200
            back = await alarm_until(
                who["op1"], by, "unshelved", lambda a: a["history"][-1]["event"] == "unshelve"
            )
            assert (back["state"], back["history"][-1]["by"]) == ("unacknowledged", "system")
            assert "expired" in back["history"][-1]["reason"]
            # shelved again, and the daemon stops before it expires
            again = await who["sup1"].post(f"/alarms/{ay}/shelve", json={**body, "duration_s": 2})
            assert again.status_code == 200
            kept = (await who["qa1"].get(f"/alarms/{ax}")).json()
    await asyncio.sleep(2.5)  # past the second shelving's end while no daemon runs
    with daemon_on(sim_cell, journal) as d:
        async with people(d) as who:
            assert (await who["qa1"].get(f"/alarms/{ax}")).json() == kept
            expired = (await who["qa1"].get(f"/alarms/{ay}")).json()
            assert expired["state"] == "unacknowledged"
            assert [h["event"] for h in expired["history"]][-2:] == ["shelve", "unshelve"]
            # while shelved, the cause clearing does not annunciate: it stays shelved
            restart = await who["op1"].post(
                f"/batches/{bx}/commands/restart", json={"reason": "door closed"}
            )
            assert restart.status_code == 200, restart.text
            quiet = await alarm_until(who["qa1"], bx, "cleared", lambda a: not a["active"])
            assert quiet["state"] == "shelved"
            assert quiet["shelved_until_utc"] == kept["shelved_until_utc"]  # the same end
            assert quiet["history"][-1]["event"] == "clear"
            await end(who["tester"], bx)
            await end(who["tester"], by)
            await clear_unit(sim_cell, uy)
            await alarm_until(who["qa1"], by, "unit cleared", lambda a: not a["active"])


# --------------------------------------------------------------------------- lost link
async def test_a_lost_link_raises_an_alarm_that_returns_to_normal_when_the_link_is_back(
    sim_cell: SimTwins, tmp_path: Path
) -> None:
    url = sim_cell.endpoints["shuttle"]
    parts = urlsplit(url)
    assert parts.hostname and parts.port
    proxy = FaultProxy(parts.hostname, parts.port)
    sim_cell.loop.run(proxy.start())
    try:
        proxied = url.replace(f":{parts.port}", f":{proxy.port}", 1)
        with daemon_on(sim_cell, tmp_path / "journal.sqlite", shuttle=proxied) as d:
            async with people(d) as who:
                bid, cartridge, unit = await long_batch(who["tester"], sim_cell)
                await proxy.refuse(True)
                await proxy.drop_connections()
                alarm = await alarm_until(
                    who["qa1"], bid, "link alarm", lambda a: a["kind"] == "link_lost"
                )
                aid = alarm["alarm_id"]
                assert (alarm["batch_id"], alarm["step"], alarm["cartridge_id"]) == (
                    bid,
                    "grow",
                    cartridge,
                )
                assert (alarm["instrument"], alarm["priority"], alarm["state"]) == (
                    "shuttle1",
                    "high",
                    "unacknowledged",
                )
                assert alarm["active"] is True
                await proxy.refuse(False)  # the link comes back: the alarm returns to normal
                back = await alarm_until(
                    who["qa1"], bid, "link back", lambda a: a["alarm_id"] == aid and not a["active"]
                )
                assert back["state"] == "rtn_unacknowledged"
                acked = await who["op1"].post(f"/alarms/{aid}/ack", json={"reason": "link seen"})
                assert acked.status_code == 200 and acked.json()["state"] == "normal"
                await batch_until(who["tester"], bid, lambda b: b["state"] == "Running", "running")
                await end(who["tester"], bid)
                del unit
    finally:
        sim_cell.loop.run(proxy.stop())


# --------------------------------------------------------------------------- security
async def test_a_locked_account_raises_a_security_alarm_until_an_admin_unlocks_it(
    sim_cell: SimTwins, tmp_path: Path
) -> None:
    with daemon_on(sim_cell, tmp_path / "journal.sqlite") as d:
        async with people(d) as who, client_for(d.url, d.token("admin1")) as admin:
            async with client_for(d.url) as anyone:
                for _ in range(5):
                    answer = await anyone.post(
                        "/auth/login", json={"name": "qa2", "password": "not the password"}
                    )
                    assert answer.status_code == 401

            async def security() -> list[dict[str, Any]]:
                answer = await who["op1"].get("/alarms")
                return [a for a in answer.json() if a["kind"] == "account_locked"]

            [alarm] = await eventually(security, "security alarm", bool)
            assert (alarm["user"], alarm["priority"], alarm["state"]) == (
                "qa2",
                "high",
                "unacknowledged",
            )
            assert alarm["batch_id"] == "" and "locked" in alarm["message"]
            unlocked = await admin.post("/users/qa2/unlock", json={"reason": "it was me"})
            assert unlocked.status_code == 200, unlocked.text
            [back] = await eventually(security, "unlocked", lambda a: not a[0]["active"])
            assert back["state"] == "rtn_unacknowledged"
            acked = await who["op1"].post(
                f"/alarms/{back['alarm_id']}/ack", json={"reason": "qa2 confirmed it was them"}
            )
            assert acked.json()["state"] == "normal"


# --------------------------------------------------------------------------- by design
async def test_a_unit_taken_out_of_service_in_the_site_suppresses_its_alarm(
    sim_cell: SimTwins, tmp_path: Path
) -> None:
    journal = tmp_path / "journal.sqlite"
    with daemon_on(sim_cell, journal) as d:
        async with people(d) as who:
            bid, _cartridge, unit = await long_batch(who["tester"], sim_cell)
            await asyncio.to_thread(sim_cell.twin, lambda c: c.inject_fault(unit, 11, "motor"))
            aid = (await alarm_until(who["op1"], bid, "alarm", unacked))["alarm_id"]
    # the faulted unit is taken out of service in the site: its alarm is suppressed
    with daemon_on(sim_cell, journal, out_of_service=(unit,)) as d:
        async with people(d) as who:
            alarm = (await who["op1"].get(f"/alarms/{aid}")).json()
            assert (alarm["state"], alarm["active"]) == ("suppressed", True)
            assert "out of service" in alarm["history"][-1]["reason"]
            refused = await who["op1"].post(f"/alarms/{aid}/ack", json={"reason": "seen"})
            assert refused.status_code == 409 and "suppressed" in refused.json()["detail"]
    # back in service, the fault still there: annunciated again
    with daemon_on(sim_cell, journal) as d:
        async with people(d) as who:
            alarm = (await who["op1"].get(f"/alarms/{aid}")).json()
            assert (alarm["state"], alarm["history"][-1]["event"]) == (
                "unacknowledged",
                "unsuppress",
            )
            await end(who["tester"], bid)
            await clear_unit(sim_cell, unit)
            back = await alarm_until(who["op1"], bid, "cleared", lambda a: not a["active"])
            assert back["state"] == "rtn_unacknowledged"
