"""The daemon's event bus: batch, step, instrument and deviation events for the API.

This module owns fan-out to subscribers (the server-sent event stream, ``cellfab batch
watch``, tests): each subscriber has a bounded queue; one that falls behind loses its
queue and gets an ``overflow`` event instead (it re-reads the state, as after any gap).
Publishing never blocks and never fails; events carry a bus sequence number so a reader
can see a gap.
"""

from __future__ import annotations

import asyncio
import itertools
import time
from collections.abc import AsyncIterator
from dataclasses import dataclass, field
from typing import Any

__all__ = ["BusEvent", "EventBus", "Subscription"]


@dataclass(frozen=True, slots=True)
class BusEvent:
    seq: int
    kind: str  # batch, step, deviation, unit, progress, cartridge, transport, job, ...
    data: dict[str, Any]
    at: float = field(default_factory=time.time)

    def as_dict(self) -> dict[str, Any]:
        return {"seq": self.seq, "kind": self.kind, "at": self.at, "data": self.data}


class Subscription(AsyncIterator[BusEvent]):
    def __init__(self, bus: EventBus, limit: int, kinds: frozenset[str] | None) -> None:
        self._bus = bus
        self._limit = limit
        self.kinds = kinds
        self._queue: asyncio.Queue[BusEvent | None] = asyncio.Queue()
        self.overflows = 0

    def put(self, event: BusEvent) -> None:
        if self.kinds is not None and event.kind not in self.kinds:
            return
        if self._queue.qsize() >= self._limit:
            self.overflows += 1
            while not self._queue.empty():
                self._queue.get_nowait()
            self._queue.put_nowait(
                BusEvent(event.seq, "overflow", {"reason": "subscriber fell behind; re-read"})
            )
        self._queue.put_nowait(event)

    def close(self) -> None:
        self._queue.put_nowait(None)

    def __aiter__(self) -> Subscription:
        return self

    async def __anext__(self) -> BusEvent:
        item = await self._queue.get()
        if item is None:
            raise StopAsyncIteration
        return item

    async def aclose(self) -> None:
        self._bus.unsubscribe(self)


class EventBus:
    def __init__(self, limit: int = 10_000) -> None:
        self.limit = limit
        self._subs: list[Subscription] = []
        self._seq = itertools.count(1)

    def subscribe(self, kinds: frozenset[str] | None = None) -> Subscription:
        sub = Subscription(self, self.limit, kinds)
        self._subs.append(sub)
        return sub

    def unsubscribe(self, sub: Subscription) -> None:
        if sub in self._subs:
            self._subs.remove(sub)
        sub.close()

    def publish(self, kind: str, data: dict[str, Any]) -> None:
        event = BusEvent(next(self._seq), kind, data)
        for sub in self._subs:
            sub.put(event)

    def close(self) -> None:
        for sub in self._subs:
            sub.close()
        self._subs.clear()
