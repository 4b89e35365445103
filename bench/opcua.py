"""OPC UA driver benchmark: driver latency as a ratio to raw asyncua, notification intake.

Against a shuttle twin started in this process (security None, on a BackgroundLoop):

* start / result / unit_status: median wall time of N driver calls divided by the median
  of the raw asyncua calls they wrap (Node.call_method / Client.read_values with the same
  typed Variants). ``start`` re-sends a known TaskId (idempotent: the twin starts nothing),
  so every call does the same work. Target: start and result within 1.2x of raw.
* notifications: a load task writes ProcessValues on the twin's server as fast as it can;
  the driver's intake (notifications per wall second) and process CPU seconds per wall
  second. The twin shares this process, so the CPU figure is an upper bound of the
  driver's cost. Target: >= 20,000 notifications/s at under one core.

Prints whether each target is met; never asserts. ``python -m bench.opcua``.
"""

from __future__ import annotations

import asyncio
import statistics
import time
from collections.abc import Awaitable, Callable
from typing import Any

from asyncua import Client, ua

from drivers import icd
from drivers.icd import BrowseName as BN
from drivers.opcua import OpcUaSettings, OpcUaShuttle
from drivers.opcua_security import SecurityConfig
from simulators.clock import Clock
from simulators.runner import BackgroundLoop
from simulators.shuttle import ShuttleTwin
from simulators.world import World

N = 300
LOAD_SECONDS = 3.0
UNIT = "INC01"
PROGRAM, PARAMS = "expansion", {"temperature_c": 37.0, "duration_h": 336, "feed": "perfusion"}


async def _median(fn: Callable[[], Awaitable[Any]], n: int = N) -> float:
    for _ in range(10):  # warm up
        await fn()
    times = []
    for _ in range(n):
        t0 = time.perf_counter()
        await fn()
        times.append(time.perf_counter() - t0)
    return statistics.median(times)


async def _twin_call(client: Client, name: str, *args: ua.Variant) -> None:
    tns = (await client.get_namespace_array()).index(icd.TWIN_NS)
    twin = await client.nodes.objects.get_child(ua.QualifiedName(BN.TWIN, tns))
    await twin.call_method(ua.QualifiedName(name, tns), *args)


async def _latencies(twin: ShuttleTwin, lines: list[str]) -> None:
    s = ua.VariantType.String
    raw = Client(twin.url, timeout=5)
    await raw.connect()
    try:
        async with OpcUaShuttle("bench", twin.url, SecurityConfig.insecure()) as drv:
            cid, tid = "BENCH-C1", "bench/start/1"
            await _twin_call(
                raw,
                BN.INSERT_CARTRIDGE,
                ua.Variant(cid, s),
                ua.Variant(5e8, ua.VariantType.Double),
                ua.Variant(95.0, ua.VariantType.Double),
            )
            await drv.move(cid, UNIT, "bench/move/1")
            for _ in range(1000):  # poll the instrument until the cartridge has arrived
                if (await drv.unit_status(UNIT)).cartridge_id == cid:
                    break
                await asyncio.sleep(0.01)
            await drv.start(UNIT, PROGRAM, PARAMS, tid, cid)

            unit_node = raw.get_node(drv.node_of(UNIT, ""))
            start_node = drv.node_of(UNIT, BN.START_PROGRAM)
            result_node = drv.node_of(UNIT, BN.GET_RESULT)
            var_nodes = [
                raw.get_node(drv.node_of(UNIT, v))
                for v in (
                    BN.STATE,
                    BN.CARTRIDGE_ID,
                    BN.TASK_ID,
                    BN.PROGRAM,
                    BN.PROGRESS,
                    BN.REMAINING_SECONDS,
                    BN.FAULT_CODE,
                    BN.FAULT_TEXT,
                )
            ]
            import json

            params = json.dumps(PARAMS, separators=(",", ":"))
            pairs: list[tuple[str, Callable[[], Awaitable[Any]], Callable[[], Awaitable[Any]]]] = [
                (
                    "start",
                    lambda: drv.start(UNIT, PROGRAM, PARAMS, tid, cid),
                    lambda: unit_node.call_method(
                        start_node,
                        ua.Variant(PROGRAM, s),
                        ua.Variant(params, s),
                        ua.Variant(tid, s),
                        ua.Variant(cid, s),
                    ),
                ),
                (
                    "result",
                    lambda: drv.result(tid, UNIT),
                    lambda: unit_node.call_method(result_node, ua.Variant(tid, s)),
                ),
                ("unit_status", lambda: drv.unit_status(UNIT), lambda: raw.read_values(var_nodes)),
            ]
            for name, driver_fn, raw_fn in pairs:
                d = await _median(driver_fn)
                r = await _median(raw_fn)
                ratio = d / r
                target = (
                    ""
                    if name == "unit_status"
                    else ("  target <= 1.2x: " + ("MET" if ratio <= 1.2 else "NOT MET"))
                )
                lines.append(
                    f"{name:12s} driver {d * 1e3:7.3f} ms  raw {r * 1e3:7.3f} ms  "
                    f"ratio {ratio:5.2f}x{target}"
                )
            await drv.abort(UNIT, tid)
    finally:
        await raw.disconnect()


async def _notifications(twin: ShuttleTwin, loop: BackgroundLoop, lines: list[str]) -> None:
    settings = OpcUaSettings(merged_queue_size=1000, queue_size=1000)
    async with OpcUaShuttle("bench", twin.url, SecurityConfig.insecure(), settings) as drv:
        server = twin._server  # the twin's asyncua Server: the load writes straight into it
        assert server is not None
        pv_nodes = [
            drv.node_of(u, pv)
            for u in ("INC02", "INC03", "INC04", "INC05")
            for pv in ("Temperature_C", "pH", "DO_pct")
        ]
        stop = False

        async def load() -> int:
            i = 0
            while not stop:
                for node in pv_nodes:
                    i += 1
                    dv = ua.DataValue(ua.Variant(float(i), ua.VariantType.Double))
                    await server.write_attribute_value(node, dv)
                await asyncio.sleep(0)
            return i

        fut = asyncio.run_coroutine_threadsafe(load(), loop.loop)
        await asyncio.sleep(0.5)
        n0, c0, w0 = drv.notifications, time.process_time(), time.perf_counter()
        await asyncio.sleep(LOAD_SECONDS)
        n1, c1, w1 = drv.notifications, time.process_time(), time.perf_counter()
        stop = True
        written = fut.result(10)
        rate = (n1 - n0) / (w1 - w0)
        cpu = (c1 - c0) / (w1 - w0)
        ok = rate >= 20_000 and cpu < 1.0
        lines.append(
            f"notifications {rate:9.0f}/s  CPU {cpu:4.2f} core (twin included)  "
            f"written {written}  target >= 20000/s under 1 core: {'MET' if ok else 'NOT MET'}"
        )


async def run() -> list[str]:
    lines = ["OPC UA driver benchmark (ratios to raw asyncua 2.1.0, same run)"]
    loop = BackgroundLoop("bench-twin")
    twin = ShuttleTwin(World(seed=1), Clock(3600.0), security="none")
    loop.run(twin.start())
    try:
        await _latencies(twin, lines)
        await _notifications(twin, loop, lines)
    finally:
        loop.run(twin.stop())
        loop.close()
    return lines


if __name__ == "__main__":
    for line in asyncio.run(run()):
        print(line)
