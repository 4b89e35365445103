"""The link life cycle every driver shares: one copy, used by the OPC UA, Modbus and
serial drivers alike.

This module owns four things:

* ``ConnectionState``: closed, connecting, connected, lost (an enum, never a string or
  a bool that each driver spells its own way);
* ``Backoff``: exponential reconnect delays with jitter;
* ``EventHub`` / ``EventStream``: each subscriber's bounded buffer of driver events and
  the one overflow rule (below);
* ``Link``: a driver's connection state and the one background task that keeps the
  connection (the supervisor), owned so that its failure is never unseen.

Life cycle (events in brackets)::

    CLOSED --open()--> CONNECTING --wire.connect() ok--> CONNECTED
                          | fails: the typed error is raised,      |  wire.serve() returns or
                          v state back to CLOSED                   |  raises, or lost(reason)
                        CLOSED                                     v
                                      +----------------------- LOST [ConnectionLost]
                                      |  wire.disconnect(); sleep a backoff delay;
                                      |  wire.connect() again until it succeeds
                                      v
                                  CONNECTED [ConnectionRestored]  (the wire has re-read
                                                                   the state and emitted
                                                                   what changed first)
    any --close()--> CLOSED (supervisor cancelled, wire.disconnect(), every stream ends)

The overflow rule. A stream buffers up to ``limit`` events. A consumer that falls
further behind has its buffer replaced by ``ConnectionLost`` (reason: overflow)
followed, when the link is connected, by ``ConnectionRestored``, then the event that
did not fit. Nothing is dropped silently: the consumer knows to re-read the state, as
after any loss.

Task ownership. A driver is an async context manager that outlives the task that
entered it (a pytest-asyncio fixture enters it in one task and leaves it in another;
the daemon hands it between tasks), so an anyio task group, whose scope must be left
in the task that entered it, cannot hold the supervisor (docs/decisions/0008). The
``Link`` owns it instead: an exception escaping one round of the supervisor (a bug) is
logged with its traceback and handled as a loss, so the driver recovers and the
consumer sees ``ConnectionLost`` with the error; should the supervisor itself end with
an exception, ``close()`` raises it. No driver creates a task of its own.
"""

from __future__ import annotations

import asyncio
import random
from collections import deque
from collections.abc import AsyncIterator, Iterator
from dataclasses import dataclass
from enum import StrEnum
from typing import Final, Protocol, Self

import structlog

from drivers.base import (
    CommunicationLost,
    ConnectionLost,
    ConnectionRestored,
    Event,
    InstrumentError,
)

__all__ = [
    "DEFAULT_EVENT_LIMIT",
    "Backoff",
    "ConnectionState",
    "EventHub",
    "EventStream",
    "Link",
    "Wire",
]

log = structlog.get_logger("cellfab.drivers")

DEFAULT_EVENT_LIMIT: Final = 100_000


class ConnectionState(StrEnum):
    CLOSED = "closed"
    CONNECTING = "connecting"
    CONNECTED = "connected"
    LOST = "lost"


# --------------------------------------------------------------------------- backoff
@dataclass(frozen=True, slots=True)
class Backoff:
    """Reconnect delays, wall seconds: initial, initial*factor, ... capped at maximum,
    each drawn from ``[d * (1 - jitter), d]`` so that many clients of one instrument do
    not reconnect in step."""

    initial: float = 0.2
    maximum: float = 10.0
    factor: float = 2.0
    jitter: float = 0.5

    def __post_init__(self) -> None:
        if not (0 < self.initial <= self.maximum) or self.factor < 1:
            raise ValueError("backoff needs 0 < initial <= maximum and factor >= 1")
        if not 0 <= self.jitter <= 1:
            raise ValueError("backoff jitter is a fraction in 0..1")

    def delays(self, rng: random.Random) -> Iterator[float]:
        delay = self.initial
        while True:
            yield delay * (1.0 - self.jitter * rng.random())
            delay = min(delay * self.factor, self.maximum)


# --------------------------------------------------------------------------- events
class EventStream(AsyncIterator[Event]):
    """One subscriber's bounded stream; ``aclose()`` unsubscribes."""

    def __init__(self, hub: EventHub, limit: int) -> None:
        self._hub = hub
        self._limit = limit
        self._queue: deque[Event] = deque()
        self._waiter: asyncio.Future[None] | None = None
        self._closed = False
        self.overflows = 0

    def push(self, event: Event) -> None:
        if self._closed:
            return
        if len(self._queue) >= self._limit:
            self.overflows += 1
            dropped = len(self._queue)
            self._queue.clear()
            self._queue.append(
                ConnectionLost(
                    source=event.source,
                    reason=f"event stream overflow: {dropped} unread events dropped; re-read state",
                )
            )
            if self._hub.connected:
                self._queue.append(ConnectionRestored(source=event.source))
            # fall through: the event that did not fit is current, keep it
        self._queue.append(event)
        self._wake()

    def end(self) -> None:
        self._closed = True
        self._wake()

    def pending(self) -> int:
        return len(self._queue)

    def _wake(self) -> None:
        w = self._waiter
        if w is not None and not w.done():
            w.set_result(None)

    def __aiter__(self) -> Self:
        return self

    async def __anext__(self) -> Event:
        while True:
            if self._queue:
                return self._queue.popleft()
            if self._closed:
                raise StopAsyncIteration
            self._waiter = asyncio.get_running_loop().create_future()
            try:
                await self._waiter
            finally:
                self._waiter = None

    async def aclose(self) -> None:
        self._hub.unsubscribe(self)
        self.end()


class EventHub:
    """Fans a driver's events out to every subscriber's stream."""

    def __init__(self, limit: int = DEFAULT_EVENT_LIMIT) -> None:
        if limit < 16:
            raise ValueError("event stream limit must be >= 16")
        self.limit = limit
        self.connected = False  # set by the Link; the overflow rule reads it
        self._streams: list[EventStream] = []

    def subscribe(self) -> EventStream:
        stream = EventStream(self, self.limit)
        self._streams.append(stream)
        return stream

    def unsubscribe(self, stream: EventStream) -> None:
        if stream in self._streams:
            self._streams.remove(stream)

    def emit(self, event: Event) -> None:
        for stream in self._streams:
            stream.push(event)

    def end(self) -> None:
        """End every stream (the driver closed)."""
        for stream in self._streams:
            stream.end()
        self._streams.clear()


# --------------------------------------------------------------------------- the link
class Wire(Protocol):
    """What a driver gives its Link: the three wire-specific steps of the life cycle."""

    async def connect(self) -> None:
        """Open the connection and read the full state, emitting (through the hub) what
        changed since consumers last saw it. Raises an ``InstrumentError`` on failure,
        after undoing what it opened."""
        ...

    async def serve(self) -> None:
        """Run while connected (poll, or just wait); return or raise when the
        connection is lost. ``Link.lost()`` from a callback also ends it."""
        ...

    async def disconnect(self) -> None:
        """Close whatever the connection holds; never raises."""
        ...


class Link:
    """One driver's connection state and its supervisor task (see the module doc)."""

    def __init__(
        self,
        name: str,
        wire: Wire,
        hub: EventHub,
        backoff: Backoff,
        *,
        rng: random.Random | None = None,
    ) -> None:
        self.name = name
        self._wire = wire
        self._hub = hub
        self._backoff = backoff
        self._rng = rng if rng is not None else random.Random()
        self._state = ConnectionState.CLOSED
        self._lost = asyncio.Event()
        self._task: asyncio.Task[None] | None = None
        self._failure: BaseException | None = None
        # counters and the last reason, for tests, the bench and diagnostics
        self.reconnects = 0
        self.last_loss_reason = ""

    # ------------------------------------------------------------------ state
    @property
    def state(self) -> ConnectionState:
        return self._state

    @property
    def connected(self) -> bool:
        return self._state is ConnectionState.CONNECTED

    def require_connected(self, operation: str) -> None:
        """Raise ``CommunicationLost`` at once unless connected (no call is queued)."""
        if self._state is not ConnectionState.CONNECTED:
            detail = f"not connected ({self._state})"
            if self._state is ConnectionState.LOST and self.last_loss_reason:
                detail += f": {self.last_loss_reason}"
            raise CommunicationLost(self.name, operation, detail)

    def _set(self, state: ConnectionState) -> None:
        self._state = state
        self._hub.connected = state is ConnectionState.CONNECTED

    # ------------------------------------------------------------------ life cycle
    async def open(self) -> None:
        """Connect once (raising the wire's typed error on failure), then supervise."""
        if self._state is not ConnectionState.CLOSED:
            raise InstrumentError(self.name, "connect", f"driver is already {self._state}")
        self._set(ConnectionState.CONNECTING)
        self._lost = asyncio.Event()
        self._failure = None
        try:
            await self._wire.connect()
        except BaseException:
            self._set(ConnectionState.CLOSED)
            raise
        self._set(ConnectionState.CONNECTED)
        self._task = asyncio.create_task(self._supervise(), name=f"{self.name} link")
        self._task.add_done_callback(self._supervisor_done)

    def lost(self, reason: str) -> bool:
        """Enter LOST (once; only from CONNECTED) and emit ``ConnectionLost``.

        Safe to call from any callback on the loop. Returns whether this call made the
        transition (a second report of the same loss is ignored)."""
        if self._state is not ConnectionState.CONNECTED:
            return False
        log.warning("link lost", instrument=self.name, reason=reason)
        self.last_loss_reason = reason
        self._set(ConnectionState.LOST)
        self._hub.emit(ConnectionLost(source=self.name, reason=reason))
        self._lost.set()
        return True

    async def wait_lost(self) -> None:
        """For ``Wire.serve`` implementations that only wait: returns once lost."""
        await self._lost.wait()

    async def close(self) -> None:
        """Stop supervising, disconnect, end every stream; raise a supervisor crash."""
        task, self._task = self._task, None
        # Cancel until it ends: Python 3.11's wait_for (inside pymodbus and asyncua) can
        # swallow a cancellation that races with an answer arriving.
        while task is not None and not task.done():
            task.cancel()
            await asyncio.wait({task}, timeout=0.1)
        self._set(ConnectionState.CLOSED)
        await self._wire.disconnect()
        self._hub.end()
        failure, self._failure = self._failure, None
        if failure is not None:
            raise failure

    # ------------------------------------------------------------------ supervisor
    def _supervisor_done(self, task: asyncio.Task[None]) -> None:
        if task.cancelled():
            return
        exc = task.exception()
        if exc is not None:  # the loop below catches per round; this is a bug in it
            self._failure = exc
            log.error("link supervisor crashed", instrument=self.name, exc_info=exc)
            self.lost(f"driver supervisor crashed: {type(exc).__name__}: {exc}")

    async def _supervise(self) -> None:
        while True:
            await self._serve_until_lost()
            await self._wire.disconnect()
            await self._reconnect()
            self.reconnects += 1
            self._lost.clear()
            self._set(ConnectionState.CONNECTED)
            self._hub.emit(ConnectionRestored(source=self.name))

    async def _serve_until_lost(self) -> None:
        try:
            await self._wire.serve()
        except InstrumentError as exc:
            self.lost(exc.detail)
        except Exception as exc:  # a bug must not end supervision silently
            log.exception("driver failed while connected", instrument=self.name)
            self.lost(f"driver error: {type(exc).__name__}: {exc}")
        else:
            self.lost(self.last_loss_reason or "connection ended")

    async def _reconnect(self) -> None:
        for attempt, delay in enumerate(self._backoff.delays(self._rng), start=1):
            await asyncio.sleep(delay)
            try:
                await self._wire.connect()
            except InstrumentError as exc:
                self.last_loss_reason = exc.detail
                log.info("reconnect failed", instrument=self.name, attempt=attempt, error=str(exc))
                continue
            except Exception as exc:
                log.exception("reconnect raised", instrument=self.name, attempt=attempt)
                self.last_loss_reason = f"{type(exc).__name__}: {exc}"
                await self._wire.disconnect()
                continue
            return
