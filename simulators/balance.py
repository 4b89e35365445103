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

The line, under a flood or noise: answers are written whole, in order; while the client
does not read them the twin stops reading its commands (they wait in the pty) beyond
``MAX_QUEUED``, so a flood costs bounded memory and never a truncated answer joined to
the next line. An answer nobody reads for ``DROP_AFTER`` is dropped whole (counted). A
line longer than ``MAX_LINE`` without its CR LF is answered ``ES`` once and dropped up to
its end.
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
MAX_LINE: Final = 256  # a longer line without CR LF is noise: answered ES once, dropped
MAX_QUEUED: Final = 64  # commands waiting for their answers before reading pauses
DROP_AFTER: Final = 0.5  # wall s: an answer nobody reads for this long is dropped whole
_POLL_SECONDS: Final = 0.02


@dataclass
class BalanceCounters:
    commands: int = 0
    errors: int = 0  # answered ES
    answers_dropped: int = 0  # whole answers nobody read for DROP_AFTER (never a part)
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
        self._buffer = bytearray()
        self._skipping = False  # dropping an overlong line up to its end
        self._answering = 0  # 1 while an answer is being made or written
        self._reading = False
        self._queue: asyncio.Queue[bytes] = asyncio.Queue()
        self._tasks = TaskOwner("balance")
        self._bag_id: str | None = None
        self._load_g = 0.0  # gross load settled on
        self._from_g = 0.0  # gross load before the last bag arrived
        self._since = -1e9  # wall time the last bag arrived

    @property
    def pending(self) -> int:
        """Commands read from the line and not answered yet (0 when the twin is idle)."""
        return self._queue.qsize() + self._answering

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
        self._set_reading(True)
        self._tasks.start(self._answer_loop(), "answers")
        self._tasks.start(self._watch_loop(), "watch")

    async def stop(self) -> None:
        try:
            await self._tasks.stop()  # raises a crash of a background task
        finally:
            if self._pty is not None:
                if self._reading:
                    self._set_reading(False)
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
        while (end := self._buffer.find(b"\n")) >= 0:
            line = bytes(self._buffer[:end]).rstrip(b"\r")
            del self._buffer[: end + 1]
            if self._skipping:  # the end of an overlong line, answered already
                self._skipping = False
                continue
            self._queue.put_nowait(line)
        if len(self._buffer) > MAX_LINE:
            self._buffer.clear()
            if not self._skipping:  # one ES per overlong line, then drop it to its end
                self._skipping = True
                self.counters.overlong_lines += 1
                self._queue.put_nowait(b"\xff")
        if self._queue.qsize() >= MAX_QUEUED and self._reading:
            self._set_reading(False)  # a flood: the client's writes wait in the pty

    def _set_reading(self, on: bool) -> None:
        assert self._loop is not None and self._pty is not None
        if on:
            self._loop.add_reader(self._pty.master, self._on_readable)
        else:
            self._loop.remove_reader(self._pty.master)
        self._reading = on

    async def _answer_loop(self) -> None:
        while True:
            line = await self._queue.get()
            self._answering = 1
            if not self._reading and self._queue.qsize() < MAX_QUEUED // 2:
                self._set_reading(True)
            wait = self.faults.wait_seconds()
            if wait > 0:
                await asyncio.sleep(wait)
            self.counters.commands += 1
            try:
                command = line.decode("ascii")
            except UnicodeDecodeError:
                command = "\xff"
            await self._send(self.faults.mangle(self.answer(command).encode() + icd.BALANCE_EOL))
            self._answering = 0

    async def _send(self, answer: bytes) -> None:
        """Write one answer whole, or (nobody has read the line for ``DROP_AFTER``) not
        at all: an answer is never cut, so it never joins the next line."""
        assert self._pty is not None
        view = memoryview(answer)
        started = False
        while view:
            taken = self._pty.write(view)
            if taken:
                started = True
                view = view[taken:]
                continue
            if not await self._writable(None if started else DROP_AFTER):
                self.counters.answers_dropped += 1  # nothing of it went out
                return

    async def _writable(self, give_up_after: float | None) -> bool:
        """Wait until the pty takes bytes again (False after ``give_up_after`` s)."""
        assert self._loop is not None and self._pty is not None
        ready = self._loop.create_future()
        fd = self._pty.master
        self._loop.add_writer(fd, lambda: ready.done() or ready.set_result(True))
        try:
            async with asyncio.timeout(give_up_after):
                return await ready
        except TimeoutError:
            return False
        finally:
            self._loop.remove_writer(fd)

    async def _watch_loop(self) -> None:
        while True:
            await asyncio.sleep(_POLL_SECONDS)
            self._observe()
