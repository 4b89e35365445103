"""Session fixtures of the Cell Q twin, shared by every suite (registered as a plugin by
tests/conftest.py), and the helpers that stand in for the physical world around it.

One BackgroundLoop carries the session's Cell Q twins, so blocking calls of a test
never stall them and they outlive each test's event loop:

* ``cellq_rig``: the Modbus TCP twin, its World and its Clock;
* ``cellq_rtu_rig``: an RTU-only twin behind a null modem of two ptys, on the same
  World and Clock (a second analyzer of the same cell).

* ``cellq_bench``: the conformance target: the TCP twin, or the analyzer named by
  CELLFAB_CELLQ_ADDR (real, or a third-party twin), with a FaultProxy in front of it.

A test that needs a known twin state calls ``rig.reset()`` (every slot free, no fault,
no Modbus fault, time scale ``SCALE``); the conformance suite, which must also run
against other analyzers, never resets (the bench does once) and cleans up its own jobs.
``require`` / ``jobs_created`` / ``assert_created`` use the ICD section 4 controls when
the target has them (``simulators.cellq_controls``).
"""

from __future__ import annotations

import os
from collections.abc import Coroutine, Iterator
from dataclasses import dataclass
from typing import Any, Final, TypeVar

import pytest

from drivers import icd
from drivers.modbus import TcpEndpoint
from simulators.cellq import CellQTwin
from simulators.cellq_controls import CellQControls
from simulators.clock import Clock
from simulators.faults import FaultProxy, ModbusFaults
from simulators.runner import BackgroundLoop
from simulators.serialline import NullModem
from simulators.world import World
from tests.support import fresh

T = TypeVar("T")

SCALE: Final = 100_000.0  # process s per wall s: a 15 min assay takes 9 ms
LONG_PANEL: Final = int(icd.Assay.STERILITY)  # 7 process days: ~6 s wall at SCALE
SHORT_PANEL: Final = int(icd.Assay.CELL_COUNT)  # 15 process minutes
TIME_SCALE: Final = 3600.0  # conformance: a 15 min assay takes 0.25 s, sterility 168 s


def draw_sample(world: World, volume_ml: float = 1.0) -> str:
    """A fresh cartridge and one sample drawn from it by the world's own ``sample``
    program: what a shuttle of the cell does before the tube goes to the analyzer (ICD
    1.1: that is how the analyzer knows the sample)."""
    cartridge = fresh("QC")
    world.insert_cartridge(cartridge, 1.0e8, 92.0)
    sample_id = fresh("S")
    world.run_program(cartridge, "sample", {"volume_ml": volume_ml, "sample_id": sample_id})
    return sample_id


@dataclass
class CellQRig:
    """A session twin on its background loop, with the world and clock it shares."""

    bg: BackgroundLoop
    world: World
    clock: Clock
    twin: CellQTwin

    def on_loop(self, coro: Coroutine[Any, Any, T]) -> T:
        """Run ``coro`` on the twin's loop (twin state is touched only there)."""
        return self.bg.run(coro)

    def reset(self, scale: float = SCALE) -> CellQTwin:
        """Every slot free, no analyzer or Modbus fault, time scale ``scale``."""

        async def _reset() -> None:
            self.twin.reset()
            self.clock.scale = scale

        self.on_loop(_reset())
        return self.twin


@dataclass
class RtuRig:
    """An RTU-only twin on the session world and clock, behind a null modem: the
    twin listens on ``modem.path_a``, a client opens ``modem.path_b``."""

    rig: CellQRig
    twin: CellQTwin
    modem: NullModem

    @property
    def client_path(self) -> str:
        return self.modem.path_b

    def reset(self, scale: float = SCALE) -> CellQTwin:
        self.rig.reset(scale)

        async def _reset() -> None:
            self.twin.reset()

        self.rig.on_loop(_reset())
        return self.twin


@pytest.fixture(scope="session")
def cellq_bg() -> Iterator[BackgroundLoop]:
    loop = BackgroundLoop("cellq-twins")
    yield loop
    loop.close()


@pytest.fixture(scope="session")
def cellq_rig(cellq_bg: BackgroundLoop) -> Iterator[CellQRig]:
    world, clock = World(seed=11), Clock(SCALE)
    twin = CellQTwin(world, clock)
    cellq_bg.run(twin.start())
    yield CellQRig(cellq_bg, world, clock, twin)
    cellq_bg.run(twin.stop())


@pytest.fixture
def cellq_twin(cellq_rig: CellQRig) -> CellQTwin:
    """The session TCP twin, reset for this test."""
    return cellq_rig.reset()


@pytest.fixture(scope="session")
def cellq_rtu_rig(cellq_rig: CellQRig) -> Iterator[RtuRig]:
    modem = NullModem()
    cellq_rig.on_loop(modem.start())
    twin = CellQTwin(cellq_rig.world, cellq_rig.clock, port=None, serial_port=modem.path_a)
    cellq_rig.on_loop(twin.start())
    yield RtuRig(cellq_rig, twin, modem)
    cellq_rig.on_loop(twin.stop())
    cellq_rig.on_loop(modem.stop())


# --------------------------------------------------------------------------- conformance
@dataclass
class CellQBench:
    endpoint: TcpEndpoint
    bg: BackgroundLoop
    proxy: FaultProxy
    twin: CellQTwin | None = None  # the in-process twin, None against CELLFAB_CELLQ_ADDR
    world: World | None = None

    @property
    def proxy_endpoint(self) -> TcpEndpoint:
        return TcpEndpoint("127.0.0.1", self.proxy.port)

    @property
    def faults(self) -> ModbusFaults:
        if self.twin is None:
            pytest.skip("Modbus exception, silence and lost answers are the twin's own faults")
        return self.twin.faults

    def sample(self, volume_ml: float = 1.0) -> str:
        """A sample the analyzer knows (drawn in the twin's shared world)."""
        if self.world is None:
            pytest.skip(
                "needs a sample known to the analyzer (ICD 1.1: drawn by a shuttle of its "
                "cell); only the in-process twin shares its world with the test"
            )
        return draw_sample(self.world, volume_ml)


@pytest.fixture(scope="session")
def cellq_bench(request: pytest.FixtureRequest, cellq_bg: BackgroundLoop) -> Iterator[CellQBench]:
    """The conformance target: the session twin, or the analyzer at CELLFAB_CELLQ_ADDR
    (a real one or a third-party twin), with a FaultProxy in front of it."""
    addr = os.environ.get("CELLFAB_CELLQ_ADDR")
    twin: CellQTwin | None = None
    world: World | None = None
    if addr:
        endpoint = TcpEndpoint.parse(addr)
    else:
        rig: CellQRig = request.getfixturevalue("cellq_rig")
        twin, world = rig.reset(TIME_SCALE), rig.world
        endpoint = TcpEndpoint("127.0.0.1", twin.port)
    proxy = FaultProxy(endpoint.host, endpoint.port)
    cellq_bg.run(proxy.start())
    try:
        yield CellQBench(endpoint, cellq_bg, proxy, twin, world)
    finally:
        cellq_bg.run(proxy.stop())


def require(ctl: CellQControls, why: str) -> None:
    if not ctl.available:
        pytest.skip(f"{why}: the analyzer has no ICD section 4 twin controls (900..903)")


async def jobs_created(ctl: CellQControls) -> int | None:
    """The jobs-created counter, or None on an analyzer without it."""
    return await ctl.jobs_created() if ctl.available else None


async def assert_created(ctl: CellQControls, before: int | None, expected: int) -> None:
    """Exactly ``expected`` jobs were created since ``before`` (when the analyzer counts)."""
    now = await jobs_created(ctl)
    if before is not None and now is not None:
        assert now - before == expected, f"{now - before} jobs created, expected {expected}"
