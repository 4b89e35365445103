"""Fixtures of the Cell Shuttle conformance suite (driver + ICD, twin or real instrument).

By default one shuttle twin (security "none", 36,000 process s per wall s) runs for the
whole session on a BackgroundLoop, with a FaultProxy in front of it. With
``CELLFAB_SHUTTLE_URL`` set the same tests run against that instrument instead (the HIL
bench); then ``CELLFAB_SHUTTLE_CERT``, ``_KEY``, ``_SERVER_CERT`` and ``_TRUST`` name the
security files, or ``CELLFAB_SHUTTLE_ALLOW_NONE=1`` allows policy None. Tests that need
the physical world use the ICD section 4 twin controls and skip when the server lacks
them; fault tests need the FaultProxy and skip on a real instrument.
"""

from __future__ import annotations

import os
from collections.abc import AsyncIterator, Iterator
from dataclasses import dataclass
from pathlib import Path

import pytest
from asyncua import Client
from shuttle_support import FAST, Rig

from drivers.opcua import OpcUaShuttle
from drivers.opcua.security import SecurityConfig, apply_security
from simulators.clock import Clock
from simulators.controls import TwinControls
from simulators.faults import FaultProxy
from simulators.runner import BackgroundLoop
from simulators.shuttle import ShuttleTwin
from simulators.world import World

SCALE = 36_000.0


@dataclass
class Target:
    url: str
    security: SecurityConfig
    loop: BackgroundLoop | None = None
    twin: ShuttleTwin | None = None
    proxy: FaultProxy | None = None

    @property
    def proxy_url(self) -> str:
        assert self.proxy is not None
        return f"opc.tcp://127.0.0.1:{self.proxy.port}/shuttle"


def _hil_security() -> SecurityConfig:
    if os.environ.get("CELLFAB_SHUTTLE_ALLOW_NONE") == "1":
        return SecurityConfig.insecure()
    env = os.environ
    return SecurityConfig(
        client_certificate=Path(env["CELLFAB_SHUTTLE_CERT"]),
        client_private_key=Path(env["CELLFAB_SHUTTLE_KEY"]),
        server_certificate=Path(env["CELLFAB_SHUTTLE_SERVER_CERT"]),
        trust_store=Path(env["CELLFAB_SHUTTLE_TRUST"]),
    )


@pytest.fixture(scope="session")
def target() -> Iterator[Target]:
    url = os.environ.get("CELLFAB_SHUTTLE_URL")
    if url:
        yield Target(url=url, security=_hil_security())
        return
    loop = BackgroundLoop("shuttle-conformance")
    twin = ShuttleTwin(World(seed=7), Clock(SCALE), security="none")
    loop.run(twin.start())
    proxy = FaultProxy("127.0.0.1", twin.port)
    loop.run(proxy.start())
    yield Target(twin.url, SecurityConfig.insecure(), loop, twin, proxy)
    loop.run(proxy.stop())
    loop.run(twin.stop())
    loop.close()


@pytest.fixture
async def driver(target: Target) -> AsyncIterator[OpcUaShuttle]:
    async with OpcUaShuttle("shuttle", target.url, target.security, FAST) as drv:
        yield drv


@pytest.fixture
async def controls(target: Target) -> AsyncIterator[TwinControls]:
    client = Client(target.url, timeout=5)
    await apply_security(client, target.security, "controls")
    async with client, TwinControls(client) as ctl:
        yield ctl


@pytest.fixture
async def rig(driver: OpcUaShuttle, controls: TwinControls) -> AsyncIterator[Rig]:
    if not controls.available:
        pytest.skip("server has no ICD section 4 twin controls (Objects/Twin): needs an operator")
    await controls.set_time_scale(SCALE)
    yield Rig(driver, controls)
