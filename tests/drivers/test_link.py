"""drivers/_link.py: backoff, the overflow rule, and the life cycle every driver shares.

The Wire here is a scripted stand-in for the wire-specific steps (connect, serve,
disconnect): the life cycle is pure control flow, and each driver's own suite proves
it against its twin.
"""

from __future__ import annotations

import asyncio
import random

import pytest
from hypothesis import given
from hypothesis import strategies as st

from drivers._link import Backoff, ConnectionState, EventHub, Link
from drivers.base import (
    CommunicationLost,
    ConnectionLost,
    ConnectionRestored,
    Event,
    InstrumentError,
    UnitStateChanged,
)
from tests.support import HANG_GUARD, eventually, next_event


def _ev(i: int) -> Event:
    return UnitStateChanged(source="x", unit="U", state="Idle", task_id=f"t{i}", at=0.0)


# --------------------------------------------------------------------------- backoff
@given(
    initial=st.floats(0.001, 5),
    factor=st.floats(1, 4),
    jitter=st.floats(0, 1),
    seed=st.integers(0, 2**32),
)
def test_backoff_grows_to_its_cap_and_jitters_down(
    initial: float, factor: float, jitter: float, seed: int
) -> None:
    b = Backoff(initial=initial, maximum=initial * 10, factor=factor, jitter=jitter)
    nominal = initial
    for delay in [d for d, _ in zip(b.delays(random.Random(seed)), range(30), strict=False)]:
        assert nominal * (1 - jitter) - 1e-12 <= delay <= nominal + 1e-12
        nominal = min(nominal * factor, b.maximum)


@pytest.mark.parametrize(
    "kwargs",
    [{"initial": 0}, {"initial": 2, "maximum": 1}, {"factor": 0.5}, {"jitter": 1.5}],
)
def test_backoff_refuses_nonsense(kwargs: dict[str, float]) -> None:
    with pytest.raises(ValueError, match="backoff"):
        Backoff(**kwargs)


# --------------------------------------------------------------------------- streams
async def test_stream_overflow_is_a_loss_never_a_silent_drop() -> None:
    hub = EventHub(limit=16)
    hub.connected = True
    stream = hub.subscribe()
    for i in range(17):
        hub.emit(_ev(i))
    got = [stream._queue[i] for i in range(stream.pending())]
    assert isinstance(got[0], ConnectionLost) and "16 unread events dropped" in got[0].reason
    assert isinstance(got[1], ConnectionRestored)
    assert got[2] == _ev(16) and len(got) == 3
    assert stream.overflows == 1


async def test_overflow_while_lost_does_not_claim_a_restore() -> None:
    hub = EventHub(limit=16)
    stream = hub.subscribe()
    for i in range(17):
        hub.emit(_ev(i))
    kinds = [type(stream._queue[i]) for i in range(stream.pending())]
    assert kinds == [ConnectionLost, UnitStateChanged]


async def test_streams_are_independent_and_end_with_the_hub() -> None:
    hub = EventHub()
    a, b = hub.subscribe(), hub.subscribe()
    hub.emit(_ev(1))
    await b.aclose()
    hub.emit(_ev(2))
    hub.end()
    assert [e async for e in a] == [_ev(1), _ev(2)]
    assert [e async for e in b] == [_ev(1)]


def test_hub_refuses_a_tiny_limit() -> None:
    with pytest.raises(ValueError, match=">= 16"):
        EventHub(limit=3)


# --------------------------------------------------------------------------- link
class ScriptedWire:
    """connect() fails while ``refuse`` > 0; serve() waits for the link's loss, or
    raises what ``serve_raises`` holds."""

    def __init__(self, hub: EventHub) -> None:
        self.hub = hub
        self.link: Link | None = None
        self.refuse = 0
        self.connects = 0
        self.disconnects = 0
        self.serve_raises: BaseException | None = None

    async def connect(self) -> None:
        self.connects += 1
        if self.refuse:
            self.refuse -= 1
            raise CommunicationLost("x", "connect", "refused")
        self.hub.emit(_ev(self.connects))  # the diff a real wire emits before Restored

    async def serve(self) -> None:
        assert self.link is not None
        if self.serve_raises is not None:
            exc, self.serve_raises = self.serve_raises, None
            raise exc
        await self.link.wait_lost()

    async def disconnect(self) -> None:
        self.disconnects += 1


FAST = Backoff(initial=0.001, maximum=0.002)


def _rig() -> tuple[EventHub, ScriptedWire, Link]:
    hub = EventHub()
    wire = ScriptedWire(hub)
    link = Link("x", wire, hub, FAST, rng=random.Random(1))
    wire.link = link
    return hub, wire, link


async def test_first_connect_failure_raises_and_leaves_the_link_closed() -> None:
    _hub, wire, link = _rig()
    wire.refuse = 1
    with pytest.raises(CommunicationLost, match="refused"):
        await link.open()
    assert link.state is ConnectionState.CLOSED
    with pytest.raises(CommunicationLost, match=r"not connected \(closed\)"):
        link.require_connected("start")


async def test_loss_reconnects_after_refusals_and_restores_after_the_diff() -> None:
    hub, wire, link = _rig()
    await link.open()
    stream = hub.subscribe()
    wire.refuse = 3
    assert link.lost("peer closed")
    assert not link.lost("peer closed again")  # one loss, one event
    assert link.state is ConnectionState.LOST
    with pytest.raises(CommunicationLost, match="peer closed"):
        link.require_connected("start")
    lost = await next_event(stream, ConnectionLost)
    assert lost.reason == "peer closed"
    diff = await next_event(stream)
    restored = await next_event(stream)
    assert isinstance(diff, UnitStateChanged) and isinstance(restored, ConnectionRestored)
    assert wire.connects == 1 + 3 + 1 and link.reconnects == 1
    assert link.connected
    await link.close()
    assert link.state is ConnectionState.CLOSED


async def test_a_bug_while_connected_is_a_loss_with_its_error_and_the_link_recovers() -> None:
    hub, wire, link = _rig()
    stream = hub.subscribe()
    wire.serve_raises = ZeroDivisionError("bug")
    await link.open()
    lost = await next_event(stream, ConnectionLost)
    assert "ZeroDivisionError: bug" in lost.reason
    await next_event(stream, ConnectionRestored)
    await link.close()


async def test_a_typed_error_from_serve_is_a_loss_with_its_detail() -> None:
    hub, wire, link = _rig()
    stream = hub.subscribe()
    wire.serve_raises = InstrumentError("x", "poll", "heartbeat stuck")
    await link.open()
    assert (await next_event(stream, ConnectionLost)).reason == "heartbeat stuck"
    await link.close()


async def test_close_ends_streams_and_disconnects_even_while_reconnecting() -> None:
    hub, wire, link = _rig()
    await link.open()
    stream = hub.subscribe()
    wire.refuse = 10**9
    link.lost("gone")
    await eventually(
        lambda: asyncio.sleep(0, wire.connects), "a few reconnect attempts", ok=lambda n: n > 3
    )
    async with asyncio.timeout(HANG_GUARD):
        await link.close()
    assert [type(e) async for e in stream] == [ConnectionLost]
    assert wire.disconnects >= 2


async def test_a_supervisor_crash_is_seen_as_a_loss_and_raised_at_close() -> None:
    hub, wire, link = _rig()
    await link.open()
    stream = hub.subscribe()

    async def broken() -> None:
        raise RuntimeError("supervisor bug")

    wire.disconnect = broken  # type: ignore[method-assign]  # the loop itself fails
    link.lost("trigger")
    await next_event(stream, ConnectionLost)
    await eventually(lambda: asyncio.sleep(0, link._task.done()), "the supervisor ending")
    with pytest.raises(RuntimeError, match="supervisor bug"):
        await link.close()


async def test_open_twice_is_refused() -> None:
    _hub, _wire, link = _rig()
    await link.open()
    with pytest.raises(InstrumentError, match="already connected"):
        await link.open()
    await link.close()
