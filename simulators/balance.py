"""Balance twin: the MT-SICS level 0 subset of ICD section 3 on a pseudo-terminal.

This module owns the balance's command handling and its weighing model. A client opens
``port_path`` with pyserial (9600 8N1; a pty ignores the line settings) and sends
commands ending in CR LF; every command gets exactly one answer line ending in CR LF.

Weighing model: the gross load is the last bag that ``fill_finish`` made
(``world.last_bag``, volume x 1.03 g/mL; an empty pan weighs 0). The displayed net
weight is ``gross - zero - tare``. When a new bag arrives the reading is dynamic for
``settle_seconds`` (wall time), moving from the old load to the new one, then stable::

          new bag arrives                  settle_seconds pass
    STABLE ───────────────► DYNAMIC ──────────────────────────► STABLE

    command  STABLE                   DYNAMIC                  overload / underload
    S        S S <net> g              S I                      S + / S -
    SI       S S <net> g              S D <net> g              S + / S -
    Z        Z A (zero := gross)      Z I                      Z I
    T        T S <tare> g             T I                      T I
    other    ES                       ES                       ES

Overload: gross above ``capacity_g`` (default 2200 g). Underload: the load below the
zero point by more than ``underload_g`` (default 50 g: the pan was zeroed under a
heavier load than it holds now). Commands are matched exactly (case and spaces).
Zeroing clears the tare. ``<value>`` is ``icd.format_weight``: right-aligned in 10
characters, three decimals.
"""

from __future__ import annotations

import asyncio
import time
from dataclasses import dataclass
from typing import Final

from drivers import icd
from simulators.faults import SerialFaults
from simulators.serialline import Pty
from simulators.tasks import TaskOwner
from simulators.world import World

CAPACITY_G: Final = 2200.0
UNDERLOAD_G: Final = 50.0
MAX_LINE: Final = 256  # a longer line without CR LF is noise: dropped, answered ES
_POLL_SECONDS: Final = 0.02


@dataclass
class BalanceCounters:
    commands: int = 0
    errors: int = 0  # answered ES
    answers_dropped: int = 0  # nobody read the pty and its buffer was full
    overlong_lines: int = 0


class BalanceTwin:
    """An MT-SICS balance on a pty, weighing the world's last bag."""

    def __init__(
        self,
        world: World,
        *,
        faults: SerialFaults | None = None,
        settle_seconds: float = 0.5,
        capacity_g: float = CAPACITY_G,
        underload_g: float = UNDERLOAD_G,
    ) -> None:
        self.world = world
        self.capacity_g = capacity_g
        self.underload_g = underload_g
        self.faults = faults if faults is not None else SerialFaults()
        self.settle_seconds = settle_seconds
        self.counters = BalanceCounters()
        self.zero_g = 0.0
        self.tare_g = 0.0
        self._pty: Pty | None = None
        self._loop: asyncio.AbstractEventLoop | None = None
        self._buffer = b""
        self._queue: asyncio.Queue[bytes] = asyncio.Queue()
        self._tasks = TaskOwner("balance")
        self._bag_id: str | None = None
        self._load_g = 0.0  # gross load settled on
        self._from_g = 0.0  # gross load before the last bag arrived
        self._since = -1e9  # wall time the last bag arrived

    @property
    def port_path(self) -> str:
        if self._pty is None:
            raise RuntimeError("BalanceTwin is not started")
        return self._pty.path

    # ------------------------------------------------------------------ lifecycle
    async def start(self) -> None:
        self._pty = Pty.open()
        self._loop = asyncio.get_running_loop()
        self._queue = asyncio.Queue()
        self._observe()
        self._since = -1e9  # what is on the pan at start is settled
        self._loop.add_reader(self._pty.master, self._on_readable)
        self._tasks.start(self._answer_loop(), "answers")
        self._tasks.start(self._watch_loop(), "watch")

    async def stop(self) -> None:
        try:
            await self._tasks.stop()  # raises a crash of a background task
        finally:
            if self._pty is not None:
                if self._loop is not None:
                    self._loop.remove_reader(self._pty.master)
                self._pty.close()
                self._pty = None

    async def __aenter__(self) -> BalanceTwin:
        await self.start()
        return self

    async def __aexit__(self, *exc_info: object) -> None:
        await self.stop()

    # ------------------------------------------------------------------ weighing
    def _observe(self) -> None:
        """Notice a new bag on the pan (the world's last bag changed)."""
        bag = self.world.last_bag
        bag_id = bag.bag_id if bag is not None else None
        if bag_id == self._bag_id:
            return
        self._from_g = self.gross_g()
        self._bag_id = bag_id
        self._load_g = bag.volume_ml * icd.PRODUCT_DENSITY_G_PER_ML if bag is not None else 0.0
        self._since = time.monotonic()

    @property
    def dynamic(self) -> bool:
        return time.monotonic() - self._since < self.settle_seconds

    def gross_g(self) -> float:
        """The load on the pan now (moving towards a new bag's weight while dynamic)."""
        if not self.dynamic or self.settle_seconds <= 0:
            return self._load_g
        f = (time.monotonic() - self._since) / self.settle_seconds
        return self._from_g + (self._load_g - self._from_g) * min(1.0, max(0.0, f))

    def answer(self, command: str) -> str:
        """The answer line (without CR LF) to one command line."""
        self._observe()
        gross = self.gross_g()
        net = gross - self.zero_g - self.tare_g
        over = gross > self.capacity_g
        under = gross - self.zero_g < -self.underload_g
        dynamic = self.dynamic
        if command in ("S", "SI"):
            if over:
                return "S +"
            if under:
                return "S -"
            if command == "S" and dynamic:
                return "S I"
            return f"S {'D' if dynamic else 'S'} {icd.format_weight(net)} g"
        if command == "Z":
            if dynamic or over:
                return "Z I"
            self.zero_g, self.tare_g = gross, 0.0
            return "Z A"
        if command == "T":
            if dynamic or over or under:
                return "T I"
            self.tare_g = gross - self.zero_g
            return f"T S {icd.format_weight(self.tare_g)} g"
        self.counters.errors += 1
        return "ES"

    # ------------------------------------------------------------------ the line
    def _on_readable(self) -> None:
        assert self._pty is not None
        data = self._pty.read()
        if not data:
            return
        self._buffer += data
        while b"\n" in self._buffer:
            line, self._buffer = self._buffer.split(b"\n", 1)
            self._queue.put_nowait(line.rstrip(b"\r"))
        if len(self._buffer) > MAX_LINE:
            self._buffer = b""
            self.counters.overlong_lines += 1
            self._queue.put_nowait(b"\xff")  # answered ES

    async def _answer_loop(self) -> None:
        while True:
            line = await self._queue.get()
            wait = self.faults.wait_seconds()
            if wait > 0:
                await asyncio.sleep(wait)
            self.counters.commands += 1
            try:
                command = line.decode("ascii")
            except UnicodeDecodeError:
                command = "\xff"
            out = self.faults.mangle(self.answer(command).encode("ascii") + icd.BALANCE_EOL)
            assert self._pty is not None
            if self._pty.write(out) < len(out):
                self.counters.answers_dropped += 1

    async def _watch_loop(self) -> None:
        while True:
            await asyncio.sleep(_POLL_SECONDS)
            self._observe()
