"""Bench-only: a shuttle twin and its load generator in a process of their own.

``TwinProcess`` starts ``serve`` in a child process (multiprocessing, 'spawn' context),
so the asyncua server and the writes that make notifications do not share the bench
process's CPU: ``time.process_time()`` in the bench then counts only the client side.

The twin's asyncua ``Server`` is reached through ``ShuttleTwin._server`` (private; the
bench has used it from the start) and, for the paced load, asyncua's internal
subscription objects (asyncua is pinned to an exact version).

The child runs the twin (security None) on a ``BackgroundLoop`` and answers commands
on a pipe, one reply each:

* ``("load", node_ids, writers, rate)``: with rate 0, start ``writers`` tasks, each
  writing a new Double (Source/ServerTimestamp set, as the twin's own writes have) to
  its share of ``node_ids`` round after round through ``Server.write_attribute_value``,
  as fast as the server takes them. With rate > 0, enqueue ``rate`` notifications per
  second into every subscription that monitors those nodes (``_Load._enqueue``: what
  the write path queues, minus its per-write deepcopy). Reply ``None``.
* ``("stop",)``: stop the writers. Reply ``(written, wall_s, cpu_s)``: values written,
  wall seconds since ``load`` and the child's CPU seconds in that time (a twin near
  1.0 core is what limits the offered load).
* ``("quit",)``: stop the twin and exit.
"""

from __future__ import annotations

import asyncio
import logging
import multiprocessing
import time
from datetime import UTC, datetime
from multiprocessing.connection import Connection
from typing import Any

from asyncua import ua

from simulators.clock import Clock
from simulators.runner import BackgroundLoop
from simulators.shuttle import ShuttleTwin
from simulators.world import World


class _Load:
    """Values for ``node_ids``: written through the server, or enqueued at a paced rate."""

    def __init__(self, twin: ShuttleTwin, node_ids: list[str], writers: int, rate: float) -> None:
        server = twin._server  # the twin's asyncua Server: the load goes straight into it
        assert server is not None
        self.server = server
        self.nodes = [ua.NodeId.from_string(n) for n in node_ids]
        self.writers = max(1, min(writers, len(self.nodes)))
        self.rate = rate
        self.written = 0
        self.stopping = False
        self.tasks: list[asyncio.Task[None]] = []
        self.wall0 = self.cpu0 = 0.0

    async def start(self) -> None:
        self.wall0, self.cpu0 = time.perf_counter(), time.process_time()
        if self.rate > 0:
            self.tasks = [asyncio.create_task(self._enqueue(self._targets()))]
            return
        shares = [self.nodes[i :: self.writers] for i in range(self.writers)]
        self.tasks = [asyncio.create_task(self._writer(k, s)) for k, s in enumerate(shares)]

    async def _writer(self, k: int, nodes: list[ua.NodeId]) -> None:
        """The twin's own write path (``_flush``): Server.write_attribute_value, both stamps."""
        write = self.server.write_attribute_value
        value = float(k) * 1e12  # every write a new value: each one is a data change
        while not self.stopping:
            stamp = datetime.now(UTC)  # one stamp per round, never going backwards
            for node in nodes:
                value += 1.0
                dv = ua.DataValue(
                    ua.Variant(value, ua.VariantType.Double),
                    SourceTimestamp=stamp,
                    ServerTimestamp=stamp,
                )
                await write(node, dv)
            self.written += len(nodes)
            await asyncio.sleep(0)

    def _targets(self) -> list[tuple[Any, int, int, int]]:
        """(internal subscription, monitored item id, client handle, queue size) per item
        that monitors the Value of one of the nodes, in every subscription of the server."""
        wanted = set(self.nodes)
        out = []
        for isub in self.server.iserver.subscription_service.subscriptions.values():
            for mid, md in isub.monitored_item_srv._monitored_items.items():
                rv = md.read_value_id
                if (
                    rv is not None
                    and rv.NodeId in wanted
                    and rv.AttributeId == ua.AttributeIds.Value
                    and md.mode == ua.MonitoringMode.Reporting
                ):
                    out.append((isub, mid, int(md.client_handle or 0), md.queue_size))
        if not out:
            raise RuntimeError("no monitored item on the load nodes: subscribe first")
        return out

    async def _enqueue(self, targets: list[tuple[Any, int, int, int]]) -> None:
        """``rate`` notifications per second, round-robin over the monitored items.

        Each one is the MonitoredItemNotification asyncua's write path would queue
        (a new Double, Source/ServerTimestamp set), handed to the subscription the same
        way; only the address-space write and asyncua's per-write deepcopy of the value
        (most of the server's cost: it caps real writes near 10-15k/s per core) are
        skipped. What goes on the wire is what the server publishes for real writes.
        """
        value, k, due = 0.0, 0, 0.0
        last = time.perf_counter()
        while not self.stopping:
            await asyncio.sleep(0.005)
            now = time.perf_counter()
            due += self.rate * (now - last)
            last = now
            n = int(due)
            due -= n
            stamp = datetime.now(UTC)
            for _ in range(n):
                isub, mid, handle, qsize = targets[k]
                k = (k + 1) % len(targets)
                value += 1.0
                dv = ua.DataValue(
                    ua.Variant(value, ua.VariantType.Double),
                    SourceTimestamp=stamp,
                    ServerTimestamp=stamp,
                )
                note = ua.MonitoredItemNotification(ClientHandle=handle, Value=dv)
                await isub.enqueue_datachange_event(mid, note, qsize)
            self.written += n

    async def stop(self) -> tuple[int, float, float]:
        self.stopping = True
        await asyncio.gather(*self.tasks)
        return (
            self.written,
            time.perf_counter() - self.wall0,
            time.process_time() - self.cpu0,
        )


def serve(conn: Connection) -> None:
    """Child process main: twin up, url on the pipe, then commands until quit."""
    logging.getLogger("asyncua").setLevel(logging.ERROR)  # its None-security chatter
    loop = BackgroundLoop("bench-shuttle-twin")
    twin = ShuttleTwin(World(seed=1), Clock(3600.0), security="none")
    load: _Load | None = None
    try:
        loop.run(twin.start())
        conn.send(twin.url)
        while True:
            cmd = conn.recv()
            if cmd[0] == "load":
                load = _Load(twin, list(cmd[1]), int(cmd[2]), float(cmd[3]))
                loop.run(load.start())
                conn.send(None)
            elif cmd[0] == "stop":
                assert load is not None
                conn.send(loop.run(load.stop()))
                load = None
            else:
                break
    finally:
        try:
            loop.run(twin.stop(), timeout=10)
        finally:
            loop.close()
            conn.close()


class TwinProcess:
    """The child process seen from the bench: ``async with TwinProcess() as tp: tp.url``."""

    def __init__(self) -> None:
        ctx = multiprocessing.get_context("spawn")
        self._conn, child = ctx.Pipe()
        self._proc = ctx.Process(target=serve, args=(child,), name="bench-shuttle-twin")
        self._child = child
        self.url = ""

    async def _ask(self, *cmd: Any, wait: float = 30.0) -> Any:
        if cmd:
            self._conn.send(cmd)
        if not await asyncio.to_thread(self._conn.poll, wait):
            raise TimeoutError(f"twin process did not answer {cmd[:1]} in {wait} s")
        return self._conn.recv()

    async def __aenter__(self) -> TwinProcess:
        self._proc.start()
        self._child.close()
        self.url = await self._ask(wait=60.0)
        return self

    async def __aexit__(self, *exc: object) -> None:
        try:
            self._conn.send(("quit",))
        except OSError:
            pass
        await asyncio.to_thread(self._proc.join, 15)
        if self._proc.is_alive():
            self._proc.terminate()
            await asyncio.to_thread(self._proc.join, 5)
        self._conn.close()

    async def start_load(
        self, node_ids: list[ua.NodeId], *, writers: int = 1, rate: float = 0.0
    ) -> None:
        """rate 0: ``writers`` tasks write through the server as fast as it takes them;
        rate > 0: that many notifications per second are enqueued (see ``_Load``)."""
        await self._ask("load", [n.to_string() for n in node_ids], writers, rate)

    async def stop_load(self) -> tuple[int, float, float]:
        """(values written, wall s, twin CPU s) since ``start_load``."""
        written, wall, cpu = await self._ask("stop")
        return int(written), float(wall), float(cpu)
