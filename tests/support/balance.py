"""Session fixtures of the balance twin, shared by every suite (registered as a plugin
by tests/conftest.py), and the helper that stands in for the physical world around it.

One BackgroundLoop carries every balance twin of the session, so blocking pyserial
calls of a test never stall a twin. A balance twin is a pty and cheap: a test that
needs its own pan (a weight, a capacity, a settling time) makes one with
``make_balance``; they are stopped when the test ends. ``balance_bench`` is the
conformance target: a session twin, or the device named by CELLFAB_BALANCE_PORT.
"""

from __future__ import annotations

import os
from collections.abc import Callable, Iterator
from dataclasses import dataclass

import pytest

from drivers import icd
from simulators.balance import BalanceTwin
from simulators.faults import SerialFaults
from simulators.runner import BackgroundLoop
from simulators.world import Bag, World
from tests.support import fresh

MakeBalance = Callable[..., BalanceTwin]


def fill_bag(world: World, volume_ml: float) -> Bag:
    """A fresh cartridge filled into one bag by the world's own ``fill_finish``: the bag
    that lands on the pan (ICD section 4)."""
    cartridge = fresh("BAL")
    world.insert_cartridge(cartridge, 1.0e8, 90.0)
    world.run_program(cartridge, "fill_finish", {"bags": 1, "volume_ml_per_bag": volume_ml})
    bag = world.last_bag
    assert bag is not None and bag.cartridge_id == cartridge
    return bag


@pytest.fixture(scope="session")
def balance_bg() -> Iterator[BackgroundLoop]:
    loop = BackgroundLoop("balance-twins")
    yield loop
    loop.close()


@pytest.fixture
def make_balance(balance_bg: BackgroundLoop) -> Iterator[MakeBalance]:
    """``make_balance(world=None, faults=None, **settings)``: a started twin, stopped
    when the test ends."""
    started: list[BalanceTwin] = []

    def make(
        world: World | None = None, faults: SerialFaults | None = None, **kwargs: float
    ) -> BalanceTwin:
        twin = BalanceTwin(world or World(seed=5), faults=faults, **kwargs)
        balance_bg.run(twin.start())
        started.append(twin)
        return twin

    yield make
    for twin in started:
        balance_bg.run(twin.stop())


# --------------------------------------------------------------------------- conformance
@dataclass
class BalanceBench:
    """The conformance target: a serial port, and the twin and world behind it when
    the target is the in-process twin (None against CELLFAB_BALANCE_PORT)."""

    port: str
    bg: BackgroundLoop
    twin: BalanceTwin | None = None
    world: World | None = None

    @property
    def faults(self) -> SerialFaults:
        if self.twin is None:
            pytest.skip("serial faults are injected by the balance twin only")
        return self.twin.faults

    def place_bag(self, volume_ml: float, world: World | None = None) -> float:
        """Fill one bag of ``volume_ml`` (it lands on the pan); returns its grams."""
        world = world or self.world
        if world is None:
            pytest.skip("putting a bag on the pan needs the twin's world (ICD section 4)")
        return fill_bag(world, volume_ml).volume_ml * icd.PRODUCT_DENSITY_G_PER_ML


@pytest.fixture(scope="session")
def balance_bench(balance_bg: BackgroundLoop) -> Iterator[BalanceBench]:
    device = os.environ.get("CELLFAB_BALANCE_PORT")
    if device:
        yield BalanceBench(device, balance_bg)
        return
    world = World(seed=11)
    twin = BalanceTwin(world, faults=SerialFaults(seed=3), settle_seconds=0.2)
    balance_bg.run(twin.start())
    try:
        yield BalanceBench(twin.port_path, balance_bg, twin, world)
    finally:
        twin.faults.clear()
        balance_bg.run(twin.stop())
