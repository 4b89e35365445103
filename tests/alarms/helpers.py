"""Helpers of the alarm tests: a daemon on the session twins (signed-in staff, again
after a restart), a long batch whose program runs, waits on the alarm list, the end of
a batch, a faulted unit cleared as a person would."""

from __future__ import annotations

import contextlib
import dataclasses
from collections.abc import AsyncIterator, Callable, Iterator
from pathlib import Path
from typing import Any

import httpx

from daemon.alarms.states import AlarmState
from drivers.opcua import OpcUaShuttle, SecurityConfig
from tests.support import eventually, fresh
from tests.support.daemon import (
    PASSWORD,
    STAFF,
    RunningDaemon,
    SimTwins,
    batch_until,
    client_for,
    daemon_site,
    insert_cartridge,
    running_daemon,
)

ENGINE_RECIPES = Path(__file__).resolve().parents[1] / "engine" / "recipes"


@contextlib.contextmanager
def daemon_on(
    sim_cell: SimTwins, journal: Path, *, out_of_service: tuple[str, ...] = (), **endpoints: str
) -> Iterator[RunningDaemon]:
    """A daemon on the twins (``endpoints`` replace theirs), with ``out_of_service``
    units of shuttle1 in its site; the staff hired, or signed in again on an old journal."""
    twins = sim_cell
    if endpoints:
        twins = dataclasses.replace(sim_cell, endpoints={**sim_cell.endpoints, **endpoints})
    again = journal.exists()
    site = daemon_site(twins, journal, extra_recipes=[ENGINE_RECIPES])
    if out_of_service:
        shuttles = [
            s.model_copy(update={"out_of_service": list(out_of_service)}) for s in site.shuttles
        ]
        site = site.model_copy(update={"shuttles": shuttles})
    with running_daemon(site) as d:
        if again:  # the staff are in the journal already: they sign in again
            for name in STAFF:
                d.tokens[name] = d.run(lambda n=name: d.daemon.directory.login(n, PASSWORD))[0]
        else:
            d.hire()
        yield d


@contextlib.asynccontextmanager
async def people(d: RunningDaemon) -> AsyncIterator[dict[str, httpx.AsyncClient]]:
    async with contextlib.AsyncExitStack() as stack:
        yield {
            name: await stack.enter_async_context(client_for(d.url, d.token(name)))
            for name in ("tester", "op1", "sup1", "qa1")
        }


async def long_batch(api: httpx.AsyncClient, sim_cell: SimTwins) -> tuple[str, str, str]:
    """A long_op batch whose program runs: (batch id, cartridge, unit)."""
    cartridge = fresh("C")
    answer = await api.post(
        "/batches", json={"recipe": "long_op", "params": {"hours": 60.0}, "cartridge_id": cartridge}
    )
    assert answer.status_code == 201, answer.text
    bid = answer.json()["batch_id"]
    await insert_cartridge(api, sim_cell, cartridge)
    b = await batch_until(
        api, bid, lambda b: (b["task"] or {}).get("phase") == "started", "program started"
    )
    return bid, cartridge, b["task"]["unit"]


async def alarm_until(
    api: httpx.AsyncClient, bid: str, what: str, ok: Callable[[dict[str, Any]], bool]
) -> dict[str, Any]:
    async def read() -> list[dict[str, Any]]:
        answer = await api.get("/alarms", params={"batch": bid, "state": STATES})
        assert answer.status_code == 200, answer.text
        return answer.json()  # type: ignore[no-any-return]

    found = await eventually(read, f"{bid}: {what}", lambda alarms: any(ok(a) for a in alarms))
    return next(a for a in found if ok(a))


STATES = [s.value for s in AlarmState]  # every state: "all alarms" in a query


async def end(api: httpx.AsyncClient, bid: str) -> None:
    """Abort the batch (signed) and wait until its cartridge is out."""
    answer = await api.post(
        f"/batches/{bid}/commands/abort", json={"reason": "test over", "password": PASSWORD}
    )
    assert answer.status_code in (200, 409), answer.text
    await batch_until(api, bid, lambda b: b["state"] in ("Aborted", "Complete", "Stopped"), "final")


async def audit_of(api: httpx.AsyncClient, alarm_id: str) -> list[dict[str, Any]]:
    answer = await api.get("/audit", params={"object_type": "alarm", "object_id": alarm_id})
    assert answer.status_code == 200, answer.text
    return answer.json()  # type: ignore[no-any-return]


def unacked(alarm: dict[str, Any]) -> bool:
    return alarm["state"] == "unacknowledged"  # type: ignore[no-any-return]


async def clear_unit(sim_cell: SimTwins, unit: str) -> None:
    """Clear a faulted unit as a person at the instrument would (another client)."""
    url = sim_cell.endpoints["shuttle"]
    async with OpcUaShuttle("person", url, security=SecurityConfig.insecure()) as drv:
        await drv.clear(unit)
