"""OPC UA driver benchmark: driver latency as a ratio to raw asyncua, notification intake.

The shuttle twin (security None) runs in a child process (``bench.shuttle_twin``,
multiprocessing 'spawn'), so this process holds only the clients being measured.

* start / result / unit_status: median wall time of N driver calls divided by the median
  of the raw asyncua calls they wrap (Node.call_method / Client.read_values with the same
  typed Variants). ``start`` re-sends a known TaskId (idempotent: the twin starts nothing),
  so every call does the same work. Target: start and result within 1.2x of raw.
* notifications: one client at a time subscribes to the ProcessValues of LOAD_UNITS
  with the driver's subscription parameters and queue sizes, under two loads made by the
  twin process (``bench.shuttle_twin``):

  - load A, RATE notifications/s, paced: the MonitoredItemNotifications asyncua's write
    path would queue (a new Double, Source/ServerTimestamp set, as the twin's own writes)
    are enqueued straight into the server's subscription. On the wire it is what real
    writes produce; it skips asyncua's per-write deepcopy of the value, which is most of
    the server's cost and caps real writes near 10-15k/s on one core. Measured, one
    after the other: the driver (``OpcUaShuttle``, counter ``notifications``, with an
    event consumer as the daemon has); raw asyncua, ``Client.create_subscription`` with
    a handler that only counts (asyncua runs it in one task per notification: that is
    what "plain" costs); raw asyncua decode only, a ``Subscription`` whose publish
    callback counts the items of each publish (the floor: asyncua before any per-item
    work). All keep up at this rate, so intake ratios are ~1.00x: the CPU ratios are the
    comparison.
  - load B, real writes: WRITERS tasks call ``Server.write_attribute_value`` as fast as
    the twin takes them (the twin's CPU, ~1.0 core, is the limit): the driver only, a
    cross-check that its cost per notification is the same as under load A.

  Per row: notifications per wall second counted in this process (windows start and
  end just after a publish arrived), this process's CPU seconds per wall second
  (``time.process_time()``; the twin is not in it), notifications per CPU second, and
  the load the twin offered with its own CPU. Target: the driver ingests >= 20,000
  notifications/s at under one core (load A).

* intake in process: the driver's intake of 50,000 ProcessValue notifications (checks,
  cache, merged events) against asyncua decoding the same publishes from their binary
  form, CPU seconds in this process, no network: the least noisy intake figure.

Prints whether each target is met; never asserts. ``python -m bench.opcua``.
"""

from __future__ import annotations

import asyncio
import contextlib
import json
import logging
import statistics
import time
from collections.abc import Awaitable, Callable
from dataclasses import dataclass
from typing import Any

from asyncua import Client, ua
from asyncua.common.subscription import Subscription
from asyncua.common.utils import Buffer
from asyncua.ua.ua_binary import struct_from_binary, struct_to_binary

from bench.shuttle_twin import TwinProcess
from drivers import icd
from drivers.icd import BrowseName as BN
from drivers.opcua import UNIT_VARS, OpcUaSettings, OpcUaShuttle
from drivers.opcua.intake import Intake
from drivers.opcua.security import SecurityConfig
from drivers.opcua.space import Item, Kind
from simulators.world import PROCESS_VALUE_NAMES

N = 300
LOAD_SECONDS = 4.0
WARMUP_SECONDS = 0.5
LOAD_UNITS = ("INC02", "INC03", "INC04", "INC05")
RATE = 25_000.0  # load A, notifications/s: the target (20,000/s) and a margin
WRITERS = 3  # load B: writer tasks (interleaved on the twin's loop)
# server queues deep enough that no notification is discarded between two publishes; a
# watchdog probe every 5 s (it must answer within its interval: a twin saturated by load B
# on a busy machine misses a 1 s probe, and the driver resyncs mid-measurement)
SETTINGS = OpcUaSettings(merged_queue_size=1000, queue_size=1000, watchdog_interval=5.0)
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


async def _latencies(url: str, lines: list[str]) -> None:
    s = ua.VariantType.String
    raw = Client(url, timeout=5)
    await raw.connect()
    try:
        async with OpcUaShuttle("bench", url, SecurityConfig.insecure(), SETTINGS) as drv:
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
            # the same variables, in the same order, that unit_status reads
            var_nodes = [raw.get_node(drv.node_of(UNIT, v)) for v in UNIT_VARS]
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


class _Counter:
    """The raw baseline's handler: counts, nothing else."""

    def __init__(self) -> None:
        self.n = 0

    def datachange_notification(self, node: Any, val: Any, data: Any) -> None:
        self.n += 1


class _CountingSubscription(Subscription):
    """asyncua's decode alone: the publish callback counts the items of each publish."""

    def __init__(self, session: Any, params: ua.CreateSubscriptionParameters) -> None:
        super().__init__(session, params, handler=_Counter())
        self.n = 0

    async def publish_callback(self, publish_result: ua.PublishResult) -> None:
        for notif in publish_result.NotificationMessage.NotificationData or ():
            if isinstance(notif, ua.DataChangeNotification):
                self.n += len(notif.MonitoredItems)


@dataclass
class _Sample:
    rate: float  # notifications per wall second, counted in this process
    cpu: float  # this process's CPU seconds per wall second
    offered: float  # values the twin process wrote per wall second
    twin_cpu: float  # the twin process's CPU seconds per wall second


def _sub_params() -> ua.CreateSubscriptionParameters:
    """The driver's subscription parameters (OpcUaSettings defaults), for the raw clients."""
    s = SETTINGS
    return ua.CreateSubscriptionParameters(
        RequestedPublishingInterval=s.publishing_interval_ms,
        RequestedLifetimeCount=max(
            30, int(3 * s.session_timeout * 1000 / s.publishing_interval_ms)
        ),
        RequestedMaxKeepAliveCount=max(1, int(1000 / s.publishing_interval_ms)),
        MaxNotificationsPerPublish=0,
        PublishingEnabled=True,
        Priority=0,
    )


async def _edge(count: Callable[[], int]) -> tuple[int, float, float]:
    """(count, CPU s, wall s) just after a publish arrived: windows hold whole publishes."""
    n = count()
    for _ in range(1000):
        await asyncio.sleep(0.001)
        if count() != n:
            break
    return count(), time.process_time(), time.perf_counter()


async def _window(
    tp: TwinProcess, nodes: list[ua.NodeId], count: Callable[[], int], rate: float
) -> _Sample:
    """Start the load, let it settle, count for LOAD_SECONDS, stop the load."""
    await tp.start_load(nodes, writers=WRITERS, rate=rate)
    await asyncio.sleep(WARMUP_SECONDS)
    n0, c0, w0 = await _edge(count)
    await asyncio.sleep(LOAD_SECONDS)
    n1, c1, w1 = await _edge(count)
    written, twall, tcpu = await tp.stop_load()
    wall = w1 - w0
    return _Sample((n1 - n0) / wall, (c1 - c0) / wall, written / twall, tcpu / twall)


async def _driver_intake(tp: TwinProcess) -> tuple[list[ua.NodeId], _Sample, _Sample]:
    """The driver on the paced load, then on real writes."""
    async with OpcUaShuttle("bench", tp.url, SecurityConfig.insecure(), SETTINGS) as drv:
        nodes = [drv.node_of(u, pv) for u in LOAD_UNITS for pv in PROCESS_VALUE_NAMES]
        events = drv.events()  # a consumer, as the daemon has: the events are part of the cost

        async def drain() -> None:
            async for _ in events:
                pass

        consumer = asyncio.create_task(drain())
        try:
            paced = await _window(tp, nodes, lambda: drv.notifications, RATE)
            writes = await _window(tp, nodes, lambda: drv.notifications, 0.0)
        finally:
            consumer.cancel()
            with contextlib.suppress(asyncio.CancelledError):
                await consumer
        if drv.reconnects:
            raise RuntimeError(f"driver resynchronized during the bench: {drv.last_loss_reason}")
    return nodes, paced, writes


async def _raw_intake(tp: TwinProcess, nodes: list[ua.NodeId], decode_only: bool) -> _Sample:
    client = Client(tp.url, timeout=5)
    await client.connect()
    try:
        if decode_only:
            sub = _CountingSubscription(client.uaclient.session, _sub_params())
            await sub.init()
            count: Callable[[], int] = lambda: sub.n  # noqa: E731
        else:
            handler = _Counter()
            sub = await client.create_subscription(_sub_params(), handler)
            count = lambda: handler.n  # noqa: E731
        await sub.subscribe_data_change(
            [client.get_node(n) for n in nodes],
            queuesize=SETTINGS.merged_queue_size,
            sampling_interval=0.0,
        )
        await asyncio.sleep(0.3)  # initial values
        sample = await _window(tp, nodes, count, RATE)
        await sub.delete()
        return sample
    finally:
        await client.disconnect()


def _row(name: str, smp: _Sample) -> str:
    per_cpu = f"{smp.rate / smp.cpu:7.0f}/CPU-s" if smp.cpu > 0 else "      -/CPU-s"
    return (
        f"  {name:24s} {smp.rate:7.0f}/s  CPU {smp.cpu:4.2f} core  {per_cpu}"
        f"   (twin offered {smp.offered:6.0f}/s at {smp.twin_cpu:4.2f} core"
        + (", twin-limited)" if smp.twin_cpu >= 0.85 else ")")
    )


async def _notifications(tp: TwinProcess, lines: list[str]) -> None:
    nodes, drv, writes = await _driver_intake(tp)
    raw = await _raw_intake(tp, nodes, decode_only=False)
    floor = await _raw_intake(tp, nodes, decode_only=True)
    lines.append(
        f"notification intake: twin in its own process, {len(nodes)} ProcessValues of "
        f"{len(LOAD_UNITS)} units, {LOAD_SECONDS:.1f} s per row, CPU = this process only"
    )
    lines.append(
        f" load A: {RATE:.0f}/s notifications enqueued in the twin's subscription "
        "(what its write path queues, without asyncua's per-write copy)"
    )
    lines.append(_row("driver", drv))
    lines.append(_row("raw asyncua handler", raw))
    lines.append(_row("raw asyncua decode only", floor))
    lines.append(
        f"  driver / raw handler: intake {drv.rate / raw.rate:4.2f}x  CPU {drv.cpu / raw.cpu:4.2f}x"
        f"   driver / decode only: intake {drv.rate / floor.rate:4.2f}x  "
        f"CPU {drv.cpu / floor.cpu:4.2f}x"
    )
    lines.append(
        f" load B: real writes (Server.write_attribute_value, {WRITERS} writer tasks) "
        "as fast as the twin takes them"
    )
    lines.append(_row("driver", writes))
    ok = drv.rate >= 20_000 and drv.cpu < 1.0
    lines.append(
        f"  target >= 20000/s under 1 core (load A): {'MET' if ok else 'NOT MET'}"
        + ("" if drv.offered >= 20_000 else f" (twin offered only {drv.offered:.0f}/s)")
    )


def _intake_in_process(lines: list[str]) -> None:
    """The driver's notification intake (checks, cache, events) against asyncua decoding
    the same publishes from the wire format, both in this process with no network: CPU
    per notification, the least noisy of the intake figures on a shared machine."""
    pvs = [(u, f"pv:{p}") for u in LOAD_UNITS for p in PROCESS_VALUE_NAMES]
    items = {h: Item(key, Kind.PV, ua.NodeId(h, 2)) for h, key in enumerate(pvs, start=1)}
    per, publishes = 250, 200  # 250 per 100 ms publish: the 25,000/s of load A
    messages, wire = [], []
    value = 0.0
    for seq in range(1, publishes + 1):
        notes = []
        for i in range(per):
            value += 1.0
            dv = ua.DataValue(ua.Variant(value, ua.VariantType.Double))
            notes.append(ua.MonitoredItemNotification(ClientHandle=i % len(pvs) + 1, Value=dv))
        msg = ua.NotificationMessage(
            SequenceNumber=seq, NotificationData=[ua.DataChangeNotification(MonitoredItems=notes)]
        )
        messages.append(msg)
        wire.append(struct_to_binary(ua.PublishResult(NotificationMessage=msg)))
    events: list[Any] = []
    intake = Intake("bench", events.append, lambda *_a: None)

    def driver() -> None:
        intake.reset(dict(items))
        intake.gate_open = True
        for msg in messages:
            intake.on_publish(msg)

    def decode() -> None:
        for data in wire:
            struct_from_binary(ua.PublishResult, Buffer(data))

    def cpu(fn: Callable[[], None]) -> float:
        times = []
        for _ in range(7):
            t0 = time.process_time()
            fn()
            times.append(time.process_time() - t0)
        return statistics.median(times) / (per * publishes)

    d, r = cpu(driver), cpu(decode)
    lines.append(
        f"intake in process: driver {d * 1e6:5.2f} us/notification, asyncua decode "
        f"{r * 1e6:5.2f} us/notification: ratio {d / r:4.2f}x (CPU, no network)"
    )


async def run() -> list[str]:
    lines = ["OPC UA driver benchmark (ratios to raw asyncua 2.1.0, same run)"]
    _intake_in_process(lines)
    async with TwinProcess() as tp:
        await _latencies(tp.url, lines)
        await _notifications(tp, lines)
    return lines


if __name__ == "__main__":
    logging.getLogger("asyncua").setLevel(logging.ERROR)  # its None-security chatter
    for line in asyncio.run(run()):
        print(line)
