"""The server-sent event stream: a batch's events in order with the bus sequence as
the id, filters, keep-alive comments, and the overflow event for a reader that falls
behind."""

from __future__ import annotations

import asyncio
import json
from collections.abc import AsyncIterator
from typing import Any

import httpx
import pytest
from httpx_sse import ServerSentEvent, aconnect_sse

import daemon.api.events as api_events
from tests.support import HANG_GUARD
from tests.support.daemon import RunningDaemon, SimTwins, insert_cartridge, start_batch


async def sse(
    api: httpx.AsyncClient, **params: Any
) -> AsyncIterator[tuple[ServerSentEvent, dict[str, Any]]]:
    async with aconnect_sse(api, "GET", "/events", params=params) as source:
        assert source.response.status_code == 200
        assert source.response.headers["content-type"].startswith("text/event-stream")
        async for event in source.aiter_sse():
            yield event, json.loads(event.data)


async def test_a_batch_streams_its_events_in_journal_order(
    api: httpx.AsyncClient, sim_cell: SimTwins
) -> None:
    batch = await start_batch(api)
    batch_id = batch["batch_id"]
    seen: list[tuple[ServerSentEvent, dict[str, Any]]] = []
    async with asyncio.timeout(HANG_GUARD):
        stream = sse(api, batch=batch_id)
        inserted = asyncio.create_task(insert_cartridge(api, sim_cell, batch["cartridge_id"]))
        async for event, data in stream:
            seen.append((event, data))
            if data["data"].get("record") == "StateReached":
                break
        await stream.aclose()
        await inserted

    ids = [int(event.id) for event, _ in seen]
    assert ids == sorted(ids) and len(set(ids)) == len(ids)
    assert all(event.id == str(data["seq"]) and event.event == data["kind"] for event, data in seen)
    assert {data["batch_id"] for _, data in seen} == {batch_id}
    kinds = {data["kind"] for _, data in seen}
    assert {"batch", "step", "record", "cartridge", "transport", "unit", "job"} <= kinds

    streamed = [d["data"]["record"] for _, d in seen if "record" in d["data"]]
    journal = (await api.get(f"/batches/{batch_id}/records")).json()
    assert streamed == [r["type"] for r in journal][2:]  # after BatchCreated and Start
    steps = [d["data"]["step"] for _, d in seen if d["data"].get("record") == "StepStarted"]
    assert steps in (["qc_sample", "passed"], ["qc_sample", "out_of_range"])  # the cells decide
    assert seen[-1][1]["data"]["state"] == "Complete"


async def test_the_kind_filter_keeps_only_those_kinds(
    api: httpx.AsyncClient, sim_cell: SimTwins
) -> None:
    batch = await start_batch(api)
    kinds: list[str] = []
    async with asyncio.timeout(HANG_GUARD):
        stream = sse(api, kind=["batch", "deviation"])
        inserted = asyncio.create_task(insert_cartridge(api, sim_cell, batch["cartridge_id"]))
        async for _event, data in stream:
            kinds.append(data["kind"])
            if data["batch_id"] == batch["batch_id"] and data["data"]["batch_state"] == "Complete":
                break
        await stream.aclose()
        await inserted
    assert set(kinds) <= {"batch", "deviation"} and "batch" in kinds


@pytest.mark.parametrize(
    ("params", "field"),
    [({"kind": "gossip"}, "kind"), ({"batch": "B" * 33}, "batch"), ({"kind": ["x"] * 99}, "kind")],
)
async def test_a_bad_filter_is_422_naming_it(
    api: httpx.AsyncClient, params: dict[str, Any], field: str
) -> None:
    answer = await api.get("/events", params=params)
    assert answer.status_code == 422
    assert answer.json()["field"].split("[")[0] == field


async def test_a_quiet_stream_gets_keep_alive_comments(
    api: httpx.AsyncClient, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.setattr(api_events, "KEEPALIVE_S", 0.05)
    async with (
        asyncio.timeout(HANG_GUARD),
        api.stream("GET", "/events", params={"kind": "deviation"}) as response,
    ):
        lines = response.aiter_lines()
        comments = [line async for line in _take(lines, 4) if line.startswith(":")]
    assert comments == [": keep-alive", ": keep-alive"]


async def _take(lines: AsyncIterator[str], n: int) -> AsyncIterator[str]:
    for _ in range(n):
        yield await anext(lines)


async def test_a_reader_that_falls_behind_gets_the_overflow_event(
    api: httpx.AsyncClient, api_daemon: RunningDaemon
) -> None:
    bus = api_daemon.daemon.bus
    limit = api_daemon.call(lambda: bus.limit)

    def burst() -> None:  # on the daemon's loop, without yielding: nobody reads meanwhile
        for n in range(40):
            bus.publish("instrument", {"instrument": "probe", "up": True, "reason": n})

    api_daemon.call(lambda: setattr(bus, "limit", 8))  # read when a stream subscribes
    got: list[dict[str, Any]] = []
    try:
        async with (
            asyncio.timeout(HANG_GUARD),
            aconnect_sse(api, "GET", "/events", params={"kind": "instrument"}) as source,
        ):
            api_daemon.call(burst)  # the headers are here: the stream has subscribed
            async for event in source.aiter_sse():
                got.append(json.loads(event.data))
                if got[-1]["data"].get("reason") == 39:
                    break
    finally:
        api_daemon.call(lambda: setattr(bus, "limit", limit))
    kinds = [data["kind"] for data in got]
    assert "overflow" in kinds
    assert "fell behind" in got[kinds.index("overflow")]["data"]["reason"]
    reasons = [data["data"]["reason"] for data in got if data["kind"] == "instrument"]
    assert len(reasons) < 40 and reasons == sorted(reasons)  # some lost, the order kept
