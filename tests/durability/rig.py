"""The cell the durability tests kill daemons against: twins in this process, behind
FaultProxies, and what the tests read from them to prove that nothing ran twice.

``Rig`` (one per test package, ``tests/durability/conftest.py``): a ``SimCell`` at
``TIME_SCALE`` on a BackgroundLoop of its own, a FaultProxy in front of the shuttle (OPC
UA) and one in front of Cell Q (Modbus TCP), and the twin controls of ICD section 4 on
direct connections (never through a proxy, so a fault the test injects never hides
what the instrument says):

* ``started()``: ``Twin/StartedPrograms``, every program and move the shuttle started;
* ``jobs_created()``: Cell Q's jobs-created counter (input registers 900..901);
* ``slots()``: what each occupied Cell Q slot holds (JobSeq and SampleId, holding
  registers: the daemon's own writes, read back);
* ``insert(cartridge)``: a cartridge at the LoadPort (False while the port is taken).

The daemon runs as a child process (``cellfab run``, ``bench.daemon_process``) with a
site that names the proxies; ``site_file`` writes one.
"""

from __future__ import annotations

import asyncio
import contextlib
import tempfile
from collections.abc import Coroutine, Iterator
from dataclasses import dataclass
from pathlib import Path
from typing import Any, Final, TypeVar
from urllib.parse import urlsplit

from asyncua import Client, ua
from pymodbus.client import AsyncModbusTcpClient

from daemon.cli.site import show_text
from daemon.config import sim_site
from drivers import icd
from simulators.cell import SimCell, SimConfig
from simulators.cellq_controls import CellQControls
from simulators.controls import Started, TwinControls
from simulators.faults import FaultProxy, ModbusFaults
from simulators.runner import BackgroundLoop
from tests.support.daemon import LIBRARY, TIME_SCALE, cheap_hashes

T = TypeVar("T")

RECIPES: Final = Path(__file__).parent / "recipes"
__all__ = ["RECIPES", "TIME_SCALE", "Rig", "SiteFiles", "open_rig", "short_dir", "site_file"]


@dataclass
class Rig:
    loop: BackgroundLoop
    cell: SimCell
    shuttle_proxy: FaultProxy
    cellq_proxy: FaultProxy
    ua_client: Client
    controls: TwinControls
    modbus: AsyncModbusTcpClient
    cellq_controls: CellQControls

    # ------------------------------------------------------------------ plumbing
    async def on_twins(self, coro: Coroutine[Any, Any, T]) -> T:
        """Run ``coro`` on the twins' loop, awaited from the test's own loop."""
        return await asyncio.wrap_future(asyncio.run_coroutine_threadsafe(coro, self.loop.loop))

    @property
    def modbus_faults(self) -> ModbusFaults:
        return self.cell.cellq.faults

    def endpoints(self) -> dict[str, str]:
        """The twins as the daemon reaches them: through the proxies."""
        shuttle = urlsplit(self.cell.shuttle.url)
        return {
            "shuttle": shuttle._replace(netloc=f"127.0.0.1:{self.shuttle_proxy.port}").geturl(),
            "cellq": f"127.0.0.1:{self.cellq_proxy.port}",
        }

    async def clear_faults(self) -> None:
        for proxy in (self.shuttle_proxy, self.cellq_proxy):
            await proxy.clear()
        self.modbus_faults.clear()

    # ------------------------------------------------------------------ the world
    async def insert(self, cartridge_id: str) -> bool:
        """A cartridge at the LoadPort; False while the port is taken (try again)."""
        try:
            await self.on_twins(self.controls.insert(cartridge_id, 2e8, 90.0))
        except ua.UaStatusCodeError as exc:
            if exc.code != ua.StatusCodes.BadInvalidState:
                raise
            return False
        return True

    async def remove(self, cartridge_id: str) -> None:
        """Take a cartridge from the OutputPort (keeps the twin's list short)."""
        with contextlib.suppress(ua.UaStatusCodeError):
            await self.on_twins(self.controls.remove(cartridge_id))

    # ------------------------------------------------------------------ evidence
    async def started(self) -> list[Started]:
        return await self.on_twins(self.controls.started_programs())

    async def jobs_created(self) -> int:
        return await self.on_twins(self.cellq_controls.jobs_created())

    async def slots(self) -> dict[int, tuple[int, str]]:
        """Occupied Cell Q slots: slot -> (JobSeq, SampleId), as written by the daemon."""

        async def read() -> dict[int, tuple[int, str]]:
            out: dict[int, tuple[int, str]] = {}
            for slot in range(icd.SLOT_COUNT):
                base = icd.slot_base(slot)
                rsp = await self.modbus.read_holding_registers(
                    base, count=icd.HR_SAMPLE_ID + icd.STRING_REGS, device_id=icd.CELLQ_DEVICE_ID
                )
                assert not rsp.isError(), f"reading slot {slot}: {rsp}"
                regs = rsp.registers
                seq = icd.decode_u32(regs[icd.HR_JOB_SEQ : icd.HR_JOB_SEQ + 2])
                if seq:
                    out[slot] = (seq, icd.decode_string(regs[icd.HR_SAMPLE_ID :]))
            return out

        return await self.on_twins(read())


@contextlib.contextmanager
def open_rig() -> Iterator[Rig]:
    loop = BackgroundLoop("durability-twins")
    cell = SimCell(SimConfig(time_scale=TIME_SCALE, seed=11))

    async def start() -> Rig:
        await cell.start()
        shuttle_port = urlsplit(cell.shuttle.url).port
        assert shuttle_port is not None
        shuttle_proxy = FaultProxy("127.0.0.1", shuttle_port, seed=1)
        cellq_proxy = FaultProxy("127.0.0.1", cell.cellq.port, seed=2)
        await shuttle_proxy.start()
        await cellq_proxy.start()
        ua_client = Client(cell.shuttle.url)
        await ua_client.connect()
        controls = TwinControls(ua_client)
        assert await controls.discover(), "the shuttle twin offers no Objects/Twin"
        modbus = AsyncModbusTcpClient("127.0.0.1", port=cell.cellq.port, timeout=5, retries=0)
        assert await modbus.connect(), "Cell Q twin unreachable"
        cellq_controls = CellQControls(modbus)
        assert await cellq_controls.discover(), "the Cell Q twin offers no controls"
        return Rig(
            loop, cell, shuttle_proxy, cellq_proxy, ua_client, controls, modbus, cellq_controls
        )

    rig = loop.run(start())
    try:
        yield rig
    finally:

        async def stop() -> None:
            rig.modbus.close()
            with contextlib.suppress(Exception):
                await rig.ua_client.disconnect()
            for proxy in (rig.shuttle_proxy, rig.cellq_proxy):
                await proxy.stop()
            await cell.stop()

        loop.run(stop())
        loop.close()


@contextlib.contextmanager
def short_dir() -> Iterator[Path]:
    """A folder whose socket paths fit sun_path (pytest's tmp_path may be too long)."""
    with tempfile.TemporaryDirectory(prefix="cfd-", dir="/tmp") as d:
        yield Path(d)


@dataclass(frozen=True)
class SiteFiles:
    site: Path
    journal: Path
    api_url: str
    log: Path


def site_file(rig: Rig, folder: Path, sockets: Path, **changes: Any) -> SiteFiles:
    """A site for the rig's twins (through the proxies), the journal and the daemon's
    log in ``folder``, the API on a UNIX socket in ``sockets``; unapproved recipes
    allowed (the test recipes are drafts), cheap password hashes (a simulated site)."""
    journal = folder / "journal.sqlite"
    socket = sockets / f"api-{folder.name[-12:]}.sock"
    site = sim_site(
        rig.endpoints(),
        TIME_SCALE,
        journal,
        recipes=[LIBRARY, RECIPES],
        api_bind=f"unix:{socket}",
        name="durability",
    )
    policy = site.policy.model_copy(update={"allow_unapproved_recipes": True})
    site = cheap_hashes(site).model_copy(update={"policy": policy, **changes})
    path = folder / "site.yaml"
    path.write_text(show_text(site))
    return SiteFiles(path, journal, f"unix:{socket}", folder / "daemon.log")
