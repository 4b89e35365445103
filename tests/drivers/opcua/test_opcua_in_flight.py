"""The OPC UA driver's bound on requests on the wire (drivers/opcua/connection.py):
at most ``max_in_flight`` at once; the others wait their turn, off the clock, and are
never sent if the link is lost while they wait. Read-only GetResults that wait share
one Call request, each caller getting its own answer or error.

An asyncua server answers one connection's requests one after another, so without the
bound every request queued behind all the others sent before it: 256 batches
reconciling after a restart timed out and made the link look lost (bench.recovery, P5).
Here the scripted shuttle answers each Hold after SLOW_S: eight at once take longer
than one request may, one at a time each is well inside it."""

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
        return []

    return answer()


def _driver(server: HostileShuttle) -> OpcUaShuttle:
    return OpcUaShuttle("queue", server.url, SecurityConfig.insecure(), ONE_AT_A_TIME)


def _args(server: HostileShuttle, method: str) -> list[str]:
    return [args[0] for name, args in server.calls if name == method]


async def test_requests_beyond_the_bound_wait_their_turn_off_the_clock(
    shuttle_hostile_server: HostileShuttle,
) -> None:
    server = shuttle_hostile_server
    server.answers[BN.HOLD] = _slow
    tasks = [f"T{i}" for i in range(N)]
    async with _driver(server) as drv:
        await asyncio.gather(*(drv.hold(UNIT, t) for t in tasks))
        assert drv.reconnects == 0  # nor did the watchdog's probe wait behind them
    assert sorted(_args(server, BN.HOLD)) == tasks
    assert server.call_requests == [1] * N  # commands never share a request


async def test_requests_waiting_when_the_link_is_lost_are_never_sent(
    shuttle_hostile_server: HostileShuttle,
) -> None:
    server = shuttle_hostile_server
    server.answers[BN.HOLD] = lambda _a: HANG  # the first never answers: lost
    async with _driver(server) as drv:
        outcomes = await asyncio.gather(
            *(drv.hold(UNIT, f"W{i}") for i in range(4)), return_exceptions=True
        )
        assert all(isinstance(o, CommunicationLost) for o in outcomes), outcomes
        unsent = [o for o in outcomes if "before it was sent" in str(o)]
        assert len(unsent) == 3
    assert _args(server, BN.HOLD) == ["W0"]


def _by_parity(args: list[Any]) -> list[ua.Variant]:
    """Running for an even task number, Unknown for an odd one: who got whose answer."""
    status = "Running" if int(args[0][1:]) % 2 == 0 else "Unknown"
    return [ua.Variant(status, S), ua.Variant("{}", S)]


async def test_waiting_get_results_share_one_request_each_caller_its_answer(
    shuttle_hostile_server: HostileShuttle,
) -> None:
    server = shuttle_hostile_server
    server.answers[BN.GET_RESULT] = _by_parity
    tasks = [f"R{i}" for i in range(N)]
    async with _driver(server) as drv:
        results = await asyncio.gather(*(drv.result(t, UNIT) for t in tasks))
    assert [(r.task_id, str(r.status)) for r in results] == [
        (t, "Running" if i % 2 == 0 else "Unknown") for i, t in enumerate(tasks)
    ]
    # the first went alone; the seven that waited for its slot went out together
    assert server.call_requests == [1, N - 1]
    assert sorted(_args(server, BN.GET_RESULT)) == sorted(tasks)


async def test_a_shared_request_that_fails_fails_each_caller_under_its_own_name(
    shuttle_hostile_server: HostileShuttle,
) -> None:
    server = shuttle_hostile_server
    server.answers[BN.GET_RESULT] = lambda a: HANG if a[0] == "F3" else _by_parity(a)
    tasks = [f"F{i}" for i in range(5)]
    async with _driver(server) as drv:
        outcomes = await asyncio.gather(
            *(drv.result(t, UNIT) for t in tasks), return_exceptions=True
        )
    assert str(outcomes[0].status) == "Running"  # type: ignore[union-attr]
    for task, outcome in zip(tasks[1:], outcomes[1:], strict=True):
        assert isinstance(outcome, CommunicationLost), outcome
        assert outcome.operation == f"result {task} on {UNIT}"  # its own, not F1's
    assert server.call_requests == [1, 4]


def test_the_bound_is_at_least_one() -> None:
    with pytest.raises(ValueError, match="max_in_flight"):
        OpcUaSettings(max_in_flight=0)
