"""Conformance fixtures of the shuttle: the instrument under test, the driver, the twin
controls and the rig of set-up moves (tests/conformance/shuttle).

The suite runs against ``shuttle_target``: the session twin of ``tests.support.shuttle``,
or a real (or third-party) instrument when ``CELLFAB_SHUTTLE_URL`` names it; then its
security comes from ``HIL_SECURITY_VARS`` (or ``CELLFAB_SHUTTLE_ALLOW_NONE=1``), and a run
that sets the URL without them stops at collection with a usage error naming them. A
FaultProxy is put in front of any target. The twin controls (ICD section 4) are used
whenever the server offers them (``urn:cellfab:twin:v1`` resolved, ``Objects/Twin``
browsed); the tests that need them skip, saying why, when it does not.
"""

from __future__ import annotations

import os
from collections.abc import AsyncIterator, Iterator, Mapping
from dataclasses import dataclass
from pathlib import Path
from typing import Final
from urllib.parse import urlparse

import pytest
from asyncua import Client, ua

from drivers import icd
from drivers.opcua import OpcUaShuttle, SecurityConfig
from drivers.opcua.security import apply_security
from simulators.controls import TwinControls
from simulators.faults import FaultProxy
from simulators.runner import BackgroundLoop
from simulators.shuttle import ShuttleTwin
from tests.support import eventually, fresh, task_id
from tests.support.shuttle import FAST, LONG, SCALE, ShuttleSession, own_loop

HIL_SECURITY_VARS: Final = (
    ("CELLFAB_SHUTTLE_CERT", "our client certificate (DER or PEM)"),
    ("CELLFAB_SHUTTLE_KEY", "its private key"),
    ("CELLFAB_SHUTTLE_SERVER_CERT", "the shuttle's certificate, pinned"),
    ("CELLFAB_SHUTTLE_TRUST", "a directory of trusted server certificates or their CAs"),
)


class HilConfigError(ValueError):
    """CELLFAB_SHUTTLE_URL is set without the security it needs."""


def hil_security(env: Mapping[str, str]) -> SecurityConfig:
    """The security of a HIL run from the environment; ``HilConfigError`` naming what
    to set when it is incomplete."""
    if env.get("CELLFAB_SHUTTLE_ALLOW_NONE") == "1":
        return SecurityConfig.insecure()
    missing = [(name, what) for name, what in HIL_SECURITY_VARS if not env.get(name)]
    if missing:
        lines = "\n".join(f"  {name}: {what}" for name, what in missing)
        raise HilConfigError(
            f"CELLFAB_SHUTTLE_URL={env.get('CELLFAB_SHUTTLE_URL', '')} needs its security: "
            f"set\n{lines}\nor CELLFAB_SHUTTLE_ALLOW_NONE=1 for an instrument that offers "
            "policy None (development only)"
        )
    config = SecurityConfig(
        client_certificate=Path(env["CELLFAB_SHUTTLE_CERT"]),
        client_private_key=Path(env["CELLFAB_SHUTTLE_KEY"]),
        server_certificate=Path(env["CELLFAB_SHUTTLE_SERVER_CERT"]),
        trust_store=Path(env["CELLFAB_SHUTTLE_TRUST"]),
    )
    try:
        config.validate("CELLFAB_SHUTTLE_*")
    except ValueError as exc:
        raise HilConfigError(str(exc)) from None
    return config


def pytest_collection_modifyitems(config: pytest.Config, items: list[pytest.Item]) -> None:
    """A HIL run whose security is incomplete stops here, naming what to set."""
    if not os.environ.get("CELLFAB_SHUTTLE_URL"):
        return
    if any("shuttle_target" in getattr(item, "fixturenames", ()) for item in items):
        try:
            hil_security(os.environ)
        except HilConfigError as exc:
            raise pytest.UsageError(str(exc)) from None


@dataclass
class Target:
    """The instrument under test, a FaultProxy in front of it, and the twin if it is one."""

    url: str
    security: SecurityConfig
    loop: BackgroundLoop
    proxy: FaultProxy
    twin: ShuttleTwin | None = None

    @property
    def proxy_url(self) -> str:
        path = urlparse(self.url).path or icd.SHUTTLE_PATH
        return f"opc.tcp://127.0.0.1:{self.proxy.port}{path}"


@pytest.fixture(scope="session")
def shuttle_target(request: pytest.FixtureRequest) -> Iterator[Target]:
    url = os.environ.get("CELLFAB_SHUTTLE_URL")
    if not url:
        s: ShuttleSession = request.getfixturevalue("shuttle_session")
        yield Target(s.twin.url, SecurityConfig.insecure(), s.loop, s.proxy, s.twin)
        return
    parsed = urlparse(url)
    host, port = parsed.hostname or "127.0.0.1", parsed.port or icd.DEFAULT_SHUTTLE_PORT
    with own_loop("shuttle-hil-proxy") as own:
        proxy = own.start(FaultProxy(host, port))
        yield Target(url, hil_security(os.environ), own.loop, proxy)


@pytest.fixture
async def shuttle_driver(shuttle_target: Target) -> AsyncIterator[OpcUaShuttle]:
    async with OpcUaShuttle("shuttle", shuttle_target.url, shuttle_target.security, FAST) as drv:
        yield drv


@pytest.fixture
async def shuttle_controls(shuttle_target: Target) -> AsyncIterator[TwinControls]:
    """The twin controls of the target (``available`` False on a real instrument)."""
    client = Client(shuttle_target.url, timeout=5)
    await apply_security(client, shuttle_target.security, "controls")
    async with client, TwinControls(client) as ctl:
        yield ctl


def need_controls(controls: TwinControls) -> None:
    if not controls.available:
        pytest.skip(
            "the instrument offers no ICD section 4 twin controls (Objects/Twin in "
            f"{icd.TWIN_NS}): this test needs them to stand in for the physical world"
        )


class Rig:
    """A driver plus the twin controls, with the setup moves tests share."""

    def __init__(self, driver: OpcUaShuttle, controls: TwinControls) -> None:
        self.drv = driver
        self.ctl = controls

    async def wait_state(self, unit: str, *states: str) -> None:
        async def state() -> str:
            return (await self.drv.unit_status(unit)).state

        await eventually(state, f"{unit} in {states}", lambda s: s in states)

    async def wait_transport_idle(self) -> None:
        async def state() -> str:
            return (await self.drv.transport_status()).state

        await eventually(state, "transport Idle", lambda s: s == icd.TransportState.IDLE)

    async def empty(self, unit: str) -> None:
        """Bring a unit to Idle (or Complete) without a cartridge, using only the ICD."""
        st = await self.drv.unit_status(unit)
        if st.state in (icd.UnitState.RUNNING, icd.UnitState.HELD):
            await self.drv.abort(unit, st.task_id)
        if st.state not in (icd.UnitState.IDLE, icd.UnitState.COMPLETE):
            await self.drv.clear(unit)
        if st.cartridge_id:
            await self.move(st.cartridge_id, icd.OUTPUT_PORT)
            await self.ctl.remove(st.cartridge_id)

    async def move(self, cartridge_id: str, to: str) -> None:
        await self.wait_transport_idle()
        await self.drv.move(cartridge_id, to, task_id("M"))
        await self.wait_transport_idle()

    async def free_load_port(self) -> None:
        """A working transport and an empty LoadPort (another suite may have left one)."""
        if (await self.drv.transport_status()).state == icd.TransportState.FAULTED:
            await self.drv.clear_transport()
        await self.wait_transport_idle()
        held = await self.drv.load_port()
        if held:
            await self.move(held, icd.OUTPUT_PORT)
            await self.ctl.remove(held)

    async def load(self, unit: str) -> str:
        """An emptied ``unit`` holding a fresh cartridge; returns its id."""
        await self.empty(unit)
        await self.free_load_port()
        cid = fresh("C")

        async def inserted() -> bool:
            try:
                await self.ctl.insert(cid)
            except ua.UaStatusCodeError as exc:  # the port stays reserved while a move leaves
                if exc.code != ua.StatusCodes.BadInvalidState:
                    raise
                return False
            return True

        await eventually(inserted, f"{cid} inserted")
        await self.move(cid, unit)

        async def bay() -> str:
            return (await self.drv.unit_status(unit)).cartridge_id

        await eventually(bay, f"{cid} in {unit}", lambda c: c == cid)
        return cid

    async def start_long(self, unit: str) -> tuple[str, str]:
        cid = await self.load(unit)
        tid = task_id()
        program, params = LONG
        await self.drv.start(unit, program, params, tid, cid)
        return cid, tid


async def _rig(driver: OpcUaShuttle, controls: TwinControls) -> Rig:
    need_controls(controls)
    await controls.set_time_scale(SCALE)
    return Rig(driver, controls)


@pytest.fixture
async def shuttle_rig(shuttle_driver: OpcUaShuttle, shuttle_controls: TwinControls) -> Rig:
    return await _rig(shuttle_driver, shuttle_controls)


@pytest.fixture
async def shuttle_proxied(shuttle_target: Target) -> AsyncIterator[OpcUaShuttle]:
    """A driver that talks to the target through its FaultProxy."""
    proxy = shuttle_target.proxy
    await proxy.clear()
    try:
        async with OpcUaShuttle(
            "shuttle", shuttle_target.proxy_url, shuttle_target.security, FAST
        ) as drv:
            yield drv
    finally:
        await proxy.clear()


@pytest.fixture
async def shuttle_proxied_rig(shuttle_proxied: OpcUaShuttle, shuttle_controls: TwinControls) -> Rig:
    return await _rig(shuttle_proxied, shuttle_controls)
