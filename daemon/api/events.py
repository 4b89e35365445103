"""The server-sent event stream of the API (decision 0061).

This module owns turning event-bus subscriptions (``daemon.events``) into
``text/event-stream`` frames: one frame per bus event, ``event:`` its kind, ``id:`` its
bus sequence number, ``data:`` ``{"seq", "kind", "at", "data", "batch_id"}`` as JSON;
a ``: keep-alive`` comment after ``KEEPALIVE_S`` seconds without a frame; and the
filters a client asks for (kinds, batch ids).

``batch_id`` is the batch an event concerns: the record's own batch for batch, step
and deviation events; for instrument events the batch whose cartridge is at the unit
(unit, progress, fault), whose cartridge it is (cartridge), whose move it is
(transport) or whose job it is (job); null for events of no one batch (a link, an
analyzer's status), which a batch filter leaves out.

A reader that falls behind gets the bus's ``overflow`` event (always sent, whatever
the filter) and should re-read the state it shows; the stream goes on. There is no
replay: a client that reconnects starts from now (``Last-Event-ID`` is not honoured:
the bus keeps no history; the journal is the history, ``/batches/{id}/records``).

Subscribing happens before the response starts, so once a client has the response
headers it misses nothing. ``Streams`` keeps every open subscription so the server can
end them all when it stops (an open stream would otherwise hold the shutdown).
"""

from __future__ import annotations

import json
import math
from collections.abc import AsyncIterator, Collection
from typing import Any, Final

import anyio
from fastapi.sse import format_sse_event

from daemon.batch.engine import Engine
from daemon.events import BusEvent, EventBus, Subscription

KEEPALIVE_S: Final = 15.0  # read when a stream opens (a test may lower it)
KINDS: Final = (
    "batch",
    "step",
    "deviation",
    "unit",
    "progress",
    "cartridge",
    "output_port",
    "fault",
    "transport",
    "instrument",
    "analyzer",
    "job",
    "record",
    "security",  # daemon.auth.security: failed sign-ins, a locked account
    "alarm",  # daemon.alarms: every change of an alarm (its state, what it is tied to)
)
KEEPALIVE: Final = format_sse_event(comment="keep-alive")


class Streams:
    """The open event-stream subscriptions of one app."""

    def __init__(self, bus: EventBus) -> None:
        self.bus = bus
        self._open: set[Subscription] = set()

    def open(self, kinds: Collection[str]) -> Subscription:
        sub = self.bus.subscribe(frozenset(kinds) if kinds else None)
        self._open.add(sub)
        return sub

    async def close(self, sub: Subscription) -> None:
        self._open.discard(sub)
        await sub.aclose()

    async def close_all(self) -> None:
        for sub in list(self._open):
            await self.close(sub)


def batch_of(engine: Engine, event: BusEvent) -> str | None:
    """The batch ``event`` concerns, or None (see the module doc)."""
    data = event.data
    if isinstance(bid := data.get("batch_id"), str):
        return bid
    shuttle = data.get("shuttle")
    match event.kind:
        case "unit" | "progress" if isinstance(shuttle, str):
            return engine.occupant(shuttle, str(data.get("unit", "")))
        case "fault" if isinstance(shuttle, str):
            return engine.occupant(shuttle, str(data.get("location", "")))
        case "cartridge":
            return _by_cartridge(engine, str(data.get("cartridge_id", "")))
        case "transport":
            task = str(data.get("task_id", ""))
            owner = task.split("/", 1)[0]
            return owner if task and owner in engine.batches else None
        case "job":
            seq = data.get("job_seq")
            for b in engine.batches.values():
                if seq in b.jobs:
                    return b.batch_id
    return None


def _by_cartridge(engine: Engine, cartridge_id: str) -> str | None:
    if not cartridge_id:
        return None
    owners = [b for b in engine.batches.values() if b.cartridge_id == cartridge_id]
    live = [b for b in owners if not b.final]
    pick = live or owners
    return pick[-1].batch_id if pick else None


def _jsonable(value: Any) -> Any:
    if isinstance(value, tuple | set | frozenset):
        return list(value)
    if hasattr(value, "items"):
        return dict(value.items())
    return str(value)


def frame(event: BusEvent, batch_id: str | None) -> bytes:
    payload = {**event.as_dict(), "batch_id": batch_id}
    try:
        text = _dumps(payload)
    except ValueError:  # NaN or infinity from an instrument: null, as JSON has neither
        text = _dumps(_finite(payload))
    return format_sse_event(data_str=text, event=event.kind, id=str(event.seq))


def _dumps(payload: dict[str, Any]) -> str:
    return json.dumps(payload, default=_jsonable, allow_nan=False, separators=(",", ":"))


def _finite(value: Any) -> Any:
    if isinstance(value, float):
        return value if math.isfinite(value) else None
    if isinstance(value, dict):
        return {k: _finite(v) for k, v in value.items()}
    if isinstance(value, list | tuple):
        return [_finite(v) for v in value]
    return value


async def frames(
    streams: Streams,
    sub: Subscription,
    engine: Engine,
    batch_ids: Collection[str],
    keepalive: float,
) -> AsyncIterator[bytes]:
    """The frames of one subscription until the bus or the server ends it."""
    try:
        while True:
            with anyio.move_on_after(keepalive) as waited:
                try:
                    event = await sub.__anext__()
                except StopAsyncIteration:
                    return
            if waited.cancelled_caught:
                yield KEEPALIVE
                continue
            owner = batch_of(engine, event)
            if batch_ids and event.kind != "overflow" and owner not in batch_ids:
                continue
            yield frame(event, owner)
    finally:
        with anyio.CancelScope(shield=True):
            await streams.close(sub)
