"""Balance conformance: SerialBalance against the ICD section 3 balance (twin or real),
and each serial fault of the twin: a typed error, then recovery without help."""

from __future__ import annotations

import asyncio
from collections.abc import AsyncIterator, Awaitable, Callable
from typing import Any

import pytest

from drivers import base
from drivers.base import Busy, CommunicationLost, InstrumentTimeout, InvalidState, NotSupported
from drivers.serial import SerialBalance
from simulators.balance import BalanceTwin
from simulators.world import World
from tests.support import HANG_GUARD

pytestmark = pytest.mark.hil

Settled = Callable[..., Awaitable[Any]]


async def test_driver_implements_the_balance_protocol(balance: SerialBalance) -> None:
    assert isinstance(balance, base.Balance)


async def test_weight_now_answers_a_weight(balance: SerialBalance) -> None:
    weight = await balance.weight_now()
    assert isinstance(weight, base.Weight)
    assert isinstance(weight.grams, float)


async def test_unknown_command_is_not_supported(balance: SerialBalance) -> None:
    with pytest.raises(NotSupported):
        await balance.command("XQ")
    await balance.weight_now()  # and the line is still in step


async def test_a_filled_bag_weighs_its_volume_times_density(
    balance: SerialBalance, balance_bench: Any, until_settled: Settled
) -> None:
    await until_settled(balance.zero)
    await until_settled(balance.stable_weight)
    grams = balance_bench.place_bag(40.0)  # the pan now follows this bag
    weight = await until_settled(balance.stable_weight)
    assert weight == pytest.approx(grams, abs=0.002)
    now = await balance.weight_now()
    assert now.stable and now.grams == pytest.approx(grams, abs=0.002)


async def test_zero_and_tare(
    balance: SerialBalance, balance_bench: Any, until_settled: Settled
) -> None:
    grams = balance_bench.place_bag(30.0)
    await until_settled(balance.zero)
    assert await until_settled(balance.stable_weight) == pytest.approx(0.0, abs=0.002)
    tare = await until_settled(balance.tare)
    assert tare == pytest.approx(0.0, abs=0.002)
    heavier = balance_bench.place_bag(60.0)
    weight = await until_settled(balance.stable_weight)
    assert weight == pytest.approx(heavier - grams, abs=0.002)
    tare = await until_settled(balance.tare)
    assert tare == pytest.approx(heavier - grams, abs=0.002)
    assert await until_settled(balance.stable_weight) == pytest.approx(0.0, abs=0.002)


async def test_underload_is_invalid_state_until_zeroed(
    balance: SerialBalance, balance_bench: Any, until_settled: Settled
) -> None:
    balance_bench.place_bag(100.0)  # 103 g
    await until_settled(balance.zero)
    balance_bench.place_bag(5.0)  # 5.15 g: net -97.85 g, below the underload limit
    async with asyncio.timeout(HANG_GUARD):
        while True:
            try:
                await balance.stable_weight()
            except Busy:
                await asyncio.sleep(0.02)
                continue
            except InvalidState as exc:
                assert "underload" in str(exc)
                break
            raise AssertionError("a weight under the underload limit was answered")
    with pytest.raises(InvalidState):
        await balance.weight_now()
    await until_settled(balance.zero)
    assert await until_settled(balance.stable_weight) == pytest.approx(0.0, abs=0.002)


@pytest.fixture
async def moving(balance_bench: Any) -> AsyncIterator[str]:
    """A second balance twin whose reading never settles: the pan is always moving."""
    if balance_bench.twin is None:
        pytest.skip("an unsettled pan needs the twin's world (ICD section 4)")
    world = World(seed=5)
    twin = BalanceTwin(world, settle_seconds=1e9)
    balance_bench.bg.run(twin.start())
    balance_bench.place_bag(50.0, world)
    try:
        yield twin.port_path
    finally:
        balance_bench.bg.run(twin.stop())


async def test_moving_pan_is_busy_or_dynamic(moving: str) -> None:
    async with SerialBalance("moving", moving) as bal:
        with pytest.raises(Busy):
            await bal.stable_weight()
        now = await bal.weight_now()
        assert not now.stable
        assert 0.0 <= now.grams <= 51.5 + 0.002
        with pytest.raises(Busy):
            await bal.zero()
        with pytest.raises(Busy):
            await bal.tare()


# --------------------------------------------------------------------------- faults
async def _recovers(balance: SerialBalance) -> base.Weight:
    async with asyncio.timeout(HANG_GUARD):
        while True:
            try:
                return await balance.weight_now()
            except CommunicationLost:
                await asyncio.sleep(0.05)


async def test_garbage_before_an_answer_is_communication_lost(
    balance: SerialBalance, balance_bench: Any
) -> None:
    expected = await balance.weight_now()
    balance_bench.faults.garbage(7, count=1)
    with pytest.raises(CommunicationLost):
        await balance.weight_now()
    assert await balance.weight_now() == expected  # the very next command is in step


async def test_garbage_in_place_of_answers_then_recovery(
    balance: SerialBalance, balance_bench: Any
) -> None:
    expected = await balance.weight_now()
    balance_bench.faults.garbage(12, count=3, replace=True)
    for _ in range(3):
        with pytest.raises(CommunicationLost):  # garbage, or a timeout without CR LF
            await balance.weight_now()
    assert await _recovers(balance) == expected


async def test_stall_times_out_then_recovers(balance: SerialBalance, balance_bench: Any) -> None:
    expected = await balance.weight_now()
    balance_bench.faults.stall(1.5)  # > the 0.5 s timeout
    with pytest.raises(InstrumentTimeout):
        await balance.weight_now()
    assert await _recovers(balance) == expected


async def test_slow_answers_under_the_timeout_arrive(
    balance: SerialBalance, balance_bench: Any
) -> None:
    expected = await balance.weight_now()
    balance_bench.faults.slow(0.1)
    assert await balance.weight_now() == expected
    balance_bench.faults.slow(1.0)
    with pytest.raises(InstrumentTimeout):
        await balance.weight_now()
    balance_bench.faults.clear()
    assert await _recovers(balance) == expected
