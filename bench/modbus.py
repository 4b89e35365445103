"""Modbus driver benchmark: ModbusAnalyzer latency as a ratio to raw pymodbus.

Against a Cell Q twin started in this process (TCP on loopback, on a BackgroundLoop),
the median wall time of N driver calls divided by the median of the raw
AsyncModbusTcpClient calls each one wraps, same requests, same connection kind:

* status: ``status()`` vs one read of input registers 0..9.
* job: ``job(seq)`` vs one read of the slot's 22 named input registers (the driver
  reads the slot it last saw the job in, then decodes it).
* submit (idempotent): ``submit`` of a JobSeq already in a slot vs the one raw slot
  read it performs (the driver remembers the slot).
* submit (new): ``submit`` of a fresh JobSeq vs the raw write-multiple of JobSeq,
  panel, SampleId and command plus the read of the slot that confirms it (ICD 1.1: the
  instrument refuses a JobSeq another slot holds, so no scan comes first). Jobs are
  aborted and released between rounds, outside the timing.
* for scale and for comparison with earlier runs: ``submit (new)`` vs one raw write,
  and vs the raw 4-read scan + write that submit cost before ICD 1.1.

The driver's status poller is parked (poll_interval 1 h) so it does not share the
measured connection. Prints, never asserts. ``python -m bench.modbus``.
"""

from __future__ import annotations

import asyncio
import contextlib
import statistics
import time
from collections.abc import Awaitable, Callable
from typing import Any

from pymodbus.client import AsyncModbusTcpClient

from drivers import icd
from drivers.base import InvalidState
from drivers.icd import Assay, Command
from drivers.modbus import ModbusAnalyzer, ModbusSettings, TcpEndpoint
from simulators.cellq import CellQTwin
from simulators.clock import Clock
from simulators.runner import BackgroundLoop
from simulators.world import World

N = 200
PANEL = Assay.STERILITY  # 7 process days: stays queued/running through the bench
SLOT_SCAN = [(icd.slot_base(s), 118) for s in range(0, icd.SLOT_COUNT, 4)]


Round = Callable[[int], Awaitable[Any]]


async def _interleaved(n: int, calls: dict[str, tuple[Round, Round | None]]) -> dict[str, float]:
    """Median wall time of each call over ``n`` rounds, the calls taking turns in each
    round (so every one sees the same machine load); ``between`` runs untimed after it."""
    times: dict[str, list[float]] = {name: [] for name in calls}
    for i in range(n):
        for name, (call, between) in calls.items():
            t0 = time.perf_counter()
            await call(i)
            times[name].append(time.perf_counter() - t0)
            if between is not None:
                await between(i)
    return {name: statistics.median(ts) for name, ts in times.items()}


async def run(n: int = N) -> list[str]:
    bg = BackgroundLoop("bench-cellq")
    twin = CellQTwin(World(seed=1), Clock(1.0), port=0)
    bg.run(twin.start())
    endpoint = TcpEndpoint("127.0.0.1", twin.port)
    settings = ModbusSettings(poll_interval=3600.0, heartbeat_timeout=7200.0)
    raw = AsyncModbusTcpClient(endpoint.host, port=endpoint.port, retries=0, timeout=5)
    lines: list[str] = []
    try:
        assert await raw.connect()
        async with ModbusAnalyzer("bench", endpoint, settings) as driver:
            seq = 1_000_000
            slot = await driver.submit(seq, "BENCH1", PANEL)
            base = icd.slot_base(slot)

            async def raw_status() -> None:
                await raw.read_input_registers(0, count=icd.STATUS_REGS, device_id=1)

            async def raw_slot() -> None:
                await raw.read_input_registers(base, count=22, device_id=1)

            async def raw_scan() -> None:
                for address, count in SLOT_SCAN:
                    await raw.read_input_registers(address, count=count, device_id=1)

            def values(job_seq: int) -> list[int]:
                return [
                    *icd.encode_u32(job_seq),
                    int(PANEL),
                    *icd.encode_string("BENCH2"),
                    int(Command.SUBMIT),
                ]

            free_base = icd.slot_base(slot + 1)

            async def raw_submit(i: int) -> None:
                await raw.write_registers(free_base, values(2_000_000 + i), device_id=1)
                await raw.read_input_registers(free_base, count=22, device_id=1)

            async def raw_scan_submit(i: int) -> None:
                await raw_scan()
                await raw.write_registers(free_base, values(5_000_000 + i), device_id=1)

            async def raw_write(i: int) -> None:
                await raw.write_registers(free_base, values(3_000_000 + i), device_id=1)

            async def drv_submit(i: int) -> None:
                await driver.submit(4_000_000 + i, "BENCH2", PANEL)

            def cleanup(offset: int) -> Callable[[int], Awaitable[None]]:
                async def between(i: int) -> None:
                    with contextlib.suppress(InvalidState):  # failed already: unknown sample
                        await driver.abort(offset + i)
                    await driver.release(offset + i)

                return between

            m = await _interleaved(
                n,
                {
                    "status": (lambda _i: driver.status(), None),
                    "raw status": (lambda _i: raw_status(), None),
                    "job": (lambda _i: driver.job(seq), None),
                    "raw slot": (lambda _i: raw_slot(), None),
                    "idempotent": (lambda _i: driver.submit(seq, "BENCH1", PANEL), None),
                    "new": (drv_submit, cleanup(4_000_000)),
                    "raw new": (raw_submit, cleanup(2_000_000)),
                    "raw write": (raw_write, cleanup(3_000_000)),
                    "raw scan+write": (raw_scan_submit, cleanup(5_000_000)),
                },
            )
            rows = [
                ("status", m["status"], m["raw status"]),
                ("job", m["job"], m["raw slot"]),
                ("submit (idempotent)", m["idempotent"], m["raw slot"]),
                ("submit (new)", m["new"], m["raw new"]),
                ("submit (new) vs 1 write", m["new"], m["raw write"]),
                ("submit (new) vs scan+write", m["new"], m["raw scan+write"]),
            ]
            with contextlib.suppress(InvalidState):
                await driver.abort(seq)
            await driver.release(seq)
        lines.append(
            f"Modbus driver vs raw pymodbus, median of {n} interleaved calls (twin on loopback)"
        )
        for name, drv, ref in rows:
            lines.append(
                f"  {name:<26} driver {drv * 1e3:7.3f} ms   raw {ref * 1e3:7.3f} ms"
                f"   ratio {drv / ref:5.2f}x"
            )
    finally:
        raw.close()
        bg.run(twin.stop())
        bg.close()
    return lines


def main() -> None:
    for line in asyncio.run(run()):
        print(line)


if __name__ == "__main__":
    main()
