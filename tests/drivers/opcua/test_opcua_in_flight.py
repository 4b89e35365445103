"""The OPC UA driver's bound on requests on the wire (drivers/opcua/connection.py):
at most ``max_in_flight`` at once; the others wait their turn, off the clock, and are
never sent if the link is lost while they wait.

An asyncua server answers one connection's requests one after another, so without the
bound every request queued behind all the others sent before it: 256 batches
reconciling after a restart timed out and made the link look lost (bench.recovery, P5).
Here the scripted shuttle answers each GetResult after SLOW_S: eight at once take
longer than one request may, one at a time each is well inside it."""

from __future__ import annotations

import asyncio
from collections.abc import Awaitable
from typing import Any, Final

import pytest
from asyncua import ua

from drivers.base import CommunicationLost
from drivers.icd import BrowseName as BN
from drivers.opcua import OpcUaSettings, OpcUaShuttle, SecurityConfig
from tests.support.hostile_shuttle import HANG, UNIT, HostileShuttle

S = ua.VariantType.String
SLOW_S: Final = 0.3
N: Final = 8  # N * SLOW_S is over the request timeout; SLOW_S is far under it
ONE_AT_A_TIME: Final = OpcUaSettings(
    request_timeout=2.0,
    connect_timeout=20.0,  # a hang guard
    watchdog_interval=1.0,
    backoff_initial=0.05,
    backoff_max=0.2,
    max_in_flight=1,
)


def _slow(_args: list[Any]) -> Awaitable[list[ua.Variant]]:
    async def answer() -> list[ua.Variant]:
        await asyncio.sleep(SLOW_S)
        return [ua.Variant("Unknown", S), ua.Variant("{}", S)]

    return answer()


def _get_results(server: HostileShuttle) -> list[str]:
    return [args[0] for name, args in server.calls if name == BN.GET_RESULT]


async def test_requests_beyond_the_bound_wait_their_turn_off_the_clock(
    shuttle_hostile_server: HostileShuttle,
) -> None:
    server = shuttle_hostile_server
    server.answers[BN.GET_RESULT] = _slow
    async with OpcUaShuttle("queue", server.url, SecurityConfig.insecure(), ONE_AT_A_TIME) as drv:
        tasks = [f"T{i}" for i in range(N)]
        results = await asyncio.gather(*(drv.result(t, UNIT) for t in tasks))
        assert [(r.task_id, str(r.status)) for r in results] == [(t, "Unknown") for t in tasks]
        assert drv.reconnects == 0  # nor did the watchdog's probe wait behind them
    assert sorted(_get_results(server)) == sorted(tasks)


async def test_requests_waiting_when_the_link_is_lost_are_never_sent(
    shuttle_hostile_server: HostileShuttle,
) -> None:
    server = shuttle_hostile_server
    server.answers[BN.GET_RESULT] = lambda _a: HANG  # the first never answers: lost
    async with OpcUaShuttle("queue", server.url, SecurityConfig.insecure(), ONE_AT_A_TIME) as drv:
        outcomes = await asyncio.gather(
            *(drv.result(f"W{i}", UNIT) for i in range(4)), return_exceptions=True
        )
        assert all(isinstance(o, CommunicationLost) for o in outcomes), outcomes
        unsent = [o for o in outcomes if "before it was sent" in str(o)]
        assert len(unsent) == 3
    assert _get_results(server) == ["W0"]


def test_the_bound_is_at_least_one() -> None:
    with pytest.raises(ValueError, match="max_in_flight"):
        OpcUaSettings(max_in_flight=0)
