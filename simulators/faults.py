"""Fault injection for the twins: what a test switches on and off to hurt a wire.

This module owns three things, none of them part of any instrument's interface:

- ``FaultProxy``: an asyncio TCP proxy put in front of any TCP twin (OPC UA or Modbus
  TCP). A client connects to ``proxy.port`` instead of the twin. Switches:
  ``drop_connections()``, ``stall(seconds)``, ``slow(seconds_per_chunk)``,
  ``garbage(n_bytes)``, ``refuse(True/False)``, ``lose_answer_to(pattern)``,
  ``hold_request_with(pattern)``, ``hold_answer_to(pattern)``, ``release()``, ``clear()``.
  The switches are coroutines that may be awaited from any event loop (the proxy may
  run on a BackgroundLoop).
- ``ModbusFaults``: read by ``CellQTwin`` on every request: answer the next N requests
  (or all, until cleared) with an exception code, answer none of them (silence),
  carry them out and lose the answer, or answer slowly.
- ``SerialFaults``: read by ``BalanceTwin`` on every answer: garbage bytes before or in
  place of the next answers, a stall, slow answers.

Every fault counts what it did, so tests can assert that it happened::

    proxy connection               (one per accepted client)

        client ──► [stall gate] ──► [slow delay] ──────────────────► twin
        client ◄── [stall gate] ◄── [slow delay] ◄── [garbage] ◄──── twin

``ModbusFaults`` and ``SerialFaults`` are plain thread-safe objects: tests poke them
from their own thread while the twin runs on another loop.
"""

from __future__ import annotations

import asyncio
import contextlib
import random
import threading
import time
from collections.abc import Awaitable, Callable
from dataclasses import dataclass, field
from typing import TypeVar

T = TypeVar("T")

_CHUNK = 65536


# --------------------------------------------------------------------------- Modbus
@dataclass(frozen=True, slots=True)
class ModbusFault:
    """What the twin does with one request: wait ``delay`` wall seconds, then answer
    nothing and change nothing (``silent``), answer exception ``code`` and change
    nothing, or carry it out and lose the answer (``lose_answer``)."""

    delay: float = 0.0
    silent: bool = False
    code: int | None = None
    lose_answer: bool = False


@dataclass
class ModbusFaults:
    """Faults of a Cell Q twin's Modbus answers (TCP and RTU alike).

    ``exception(code, count)``: the next ``count`` requests (all when None) are answered
    with exception ``code`` and change nothing. ``silence(count)``: the next ``count``
    requests (all when None) get no answer at all and change nothing.
    ``lose_answers(count, skip)``: after ``skip`` requests, the next ``count`` are
    carried out but their answers are lost (what a client sees when the line drops
    after the instrument acted). ``slow(seconds)``: every answer waits that long (wall
    time). ``clear()`` ends them all; counters stay. One request is one frame.
    """

    exceptions_sent: int = 0
    silenced: int = 0
    delayed: int = 0
    answers_lost: int = 0
    _code: int | None = None
    _code_left: int | None = None
    _silence: bool = False
    _silence_left: int | None = None
    _lose_skip: int = 0
    _lose_left: int = 0
    _delay: float = 0.0
    _lock: threading.Lock = field(default_factory=threading.Lock, repr=False)

    def exception(self, code: int, count: int | None = 1) -> None:
        if not 1 <= code <= 0x0B:
            raise ValueError(f"Modbus exception code {code} is outside 1..11")
        with self._lock:
            self._code, self._code_left = code, count

    def silence(self, count: int | None = 1) -> None:
        with self._lock:
            self._silence, self._silence_left = True, count

    def lose_answers(self, count: int = 1, skip: int = 0) -> None:
        if count < 1 or skip < 0:
            raise ValueError("lose_answers needs count >= 1 and skip >= 0")
        with self._lock:
            self._lose_skip, self._lose_left = skip, count

    def slow(self, seconds: float) -> None:
        if seconds < 0:
            raise ValueError("a delay cannot be negative")
        with self._lock:
            self._delay = float(seconds)

    def clear(self) -> None:
        with self._lock:
            self._code = self._code_left = None
            self._silence, self._silence_left = False, None
            self._lose_skip = self._lose_left = 0
            self._delay = 0.0

    def take(self) -> ModbusFault:
        """For the twin: what to do with the next request."""
        with self._lock:
            delay = self._delay
            if delay:
                self.delayed += 1
            if self._silence:
                self.silenced += 1
                if self._silence_left is not None:
                    self._silence_left -= 1
                    if self._silence_left <= 0:
                        self._silence, self._silence_left = False, None
                return ModbusFault(delay, silent=True)
            code = self._code
            if code is not None:
                self.exceptions_sent += 1
                if self._code_left is not None:
                    self._code_left -= 1
                    if self._code_left <= 0:
                        self._code = self._code_left = None
                return ModbusFault(delay, code=code)
            if self._lose_left:
                if self._lose_skip:
                    self._lose_skip -= 1
                else:
                    self._lose_left -= 1
                    self.answers_lost += 1
                    return ModbusFault(delay, lose_answer=True)
            return ModbusFault(delay)


# --------------------------------------------------------------------------- serial
@dataclass
class SerialFaults:
    """Faults of a serial twin's answers (the balance).

    ``garbage(n_bytes, count, replace)``: the next ``count`` answers (all when None) are
    preceded by (or, with ``replace``, sent as) ``n_bytes`` random bytes.
    ``stall(seconds)``: answers wait until that much wall time has passed (commands
    still queue up and are answered, in order, after it). ``slow(seconds)``: each
    answer is written that much later. ``clear()`` ends them all; counters stay.
    """

    seed: int = 0
    answers_corrupted: int = 0
    answers_delayed: int = 0
    stalls: int = 0
    _garbage: int = 0
    _garbage_left: int | None = None
    _replace: bool = False
    _stall_until: float = 0.0
    _delay: float = 0.0
    _lock: threading.Lock = field(default_factory=threading.Lock, repr=False)
    _rng: random.Random = field(init=False, repr=False)

    def __post_init__(self) -> None:
        self._rng = random.Random(self.seed)

    def garbage(self, n_bytes: int, count: int | None = 1, *, replace: bool = False) -> None:
        if n_bytes < 1:
            raise ValueError("garbage needs at least one byte")
        with self._lock:
            self._garbage, self._garbage_left, self._replace = n_bytes, count, replace

    def stall(self, seconds: float) -> None:
        with self._lock:
            self._stall_until = time.monotonic() + float(seconds)
            self.stalls += 1

    def slow(self, seconds: float) -> None:
        if seconds < 0:
            raise ValueError("a delay cannot be negative")
        with self._lock:
            self._delay = float(seconds)

    def clear(self) -> None:
        with self._lock:
            self._garbage, self._garbage_left, self._replace = 0, None, False
            self._stall_until = 0.0
            self._delay = 0.0

    def wait_seconds(self) -> float:
        """For the twin: wall seconds to wait before the next answer goes out."""
        with self._lock:
            stall = max(0.0, self._stall_until - time.monotonic())
            if self._delay:
                self.answers_delayed += 1
            return stall + self._delay

    def mangle(self, answer: bytes) -> bytes:
        """For the twin: the bytes to send in place of ``answer``."""
        with self._lock:
            if not self._garbage:
                return answer
            junk = bytes(self._rng.randrange(256) for _ in range(self._garbage))
            self.answers_corrupted += 1
            replace = self._replace
            if self._garbage_left is not None:
                self._garbage_left -= 1
                if self._garbage_left <= 0:
                    self._garbage, self._garbage_left, self._replace = 0, None, False
        return junk if replace else junk + answer


# --------------------------------------------------------------------------- TCP proxy
@dataclass(eq=False)
class _Link:
    """One proxied client connection and its upstream connection."""

    client: asyncio.StreamWriter
    upstream: asyncio.StreamWriter | None = None  # None while it is being connected
    tasks: list[asyncio.Task[None]] = field(default_factory=list)
    losing_answer: bool = False  # the client is gone; the target's next answer is dropped
    # held traffic (hold_request_with / hold_answer_to): a pump waits at its gate until
    # release(); a link that closes meanwhile drops what it held
    to_target_gate: asyncio.Event = field(default_factory=asyncio.Event)
    to_client_gate: asyncio.Event = field(default_factory=asyncio.Event)

    def __post_init__(self) -> None:
        self.to_target_gate.set()
        self.to_client_gate.set()

    def close(self) -> None:
        for writer in (self.client, self.upstream):
            if writer is not None:
                with contextlib.suppress(Exception):
                    writer.transport.abort()
        current = asyncio.current_task()
        for task in self.tasks:
            if task is not current:
                task.cancel()


@dataclass
class ProxyCounters:
    connections_accepted: int = 0
    connections_dropped: int = 0
    frames_corrupted: int = 0
    bytes_to_target: int = 0
    bytes_to_client: int = 0
    stalls: int = 0
    chunks_delayed: int = 0
    upstream_failures: int = 0
    answers_lost: int = 0
    requests_held: int = 0
    answers_held: int = 0


class FaultProxy:
    """A TCP proxy in front of a twin, with switches that break the wire on purpose.

    States of the listener::

        listening --refuse(True)--> refusing (port closed: connect is refused)
        refusing  --refuse(False)--> listening (same port)

    The proxy runs on the loop that called ``start()``. Every switch is a coroutine
    that can be awaited from any loop in any thread; it has taken effect when the
    await returns.
    """

    def __init__(
        self,
        target_host: str,
        target_port: int,
        *,
        host: str = "127.0.0.1",
        port: int = 0,
        seed: int = 0,
    ) -> None:
        self.target_host = target_host
        self.target_port = target_port
        self.host = host
        self.port = port
        self.counters = ProxyCounters()
        self._rng = random.Random(seed)
        self._server: asyncio.Server | None = None
        self._loop: asyncio.AbstractEventLoop | None = None
        self._links: set[_Link] = set()
        self._flow: asyncio.Event | None = None
        self._stall_handle: asyncio.TimerHandle | None = None
        self._delay = 0.0
        self._garbage = 0
        self._garbage_replace = True
        self._lose_after: bytes | None = None
        self._hold_request: bytes | None = None
        self._hold_answer: bytes | None = None

    # ------------------------------------------------------------------ lifecycle
    async def start(self) -> None:
        self._loop = asyncio.get_running_loop()
        self._flow = asyncio.Event()
        self._flow.set()
        await self._listen()

    async def stop(self) -> None:
        await self._on_loop(self._stop)

    async def _stop(self) -> None:
        if self._stall_handle is not None:
            self._stall_handle.cancel()
        if self._flow is not None:
            self._flow.set()
        await self._unlisten()
        for link in list(self._links):
            link.close()
        self._links.clear()

    async def _listen(self) -> None:
        self._server = await asyncio.start_server(
            self._accept, self.host, self.port, reuse_address=True
        )
        self.port = self._server.sockets[0].getsockname()[1]

    async def _unlisten(self) -> None:
        if self._server is not None:
            self._server.close()
            self._server = None

    # ------------------------------------------------------------------ switches
    async def drop_connections(self) -> int:
        """Close every proxied connection now; returns how many were dropped."""

        async def run() -> int:
            links = list(self._links)
            for link in links:
                link.close()
            self._links.clear()
            self.counters.connections_dropped += len(links)
            return len(links)

        return await self._on_loop(run)

    async def stall(self, seconds: float | None) -> None:
        """Hold all traffic both ways for ``seconds`` (None: until clear), then release."""

        async def run() -> None:
            assert self._flow is not None and self._loop is not None
            if self._stall_handle is not None:
                self._stall_handle.cancel()
                self._stall_handle = None
            self.counters.stalls += 1
            self._flow.clear()
            if seconds is not None:
                self._stall_handle = self._loop.call_later(seconds, self._flow.set)

        await self._on_loop(run)

    async def slow(self, seconds_per_chunk: float) -> None:
        """Delay every chunk (both ways) by that many wall seconds; 0 ends it."""

        async def run() -> None:
            self._delay = max(0.0, float(seconds_per_chunk))

        await self._on_loop(run)

    async def garbage(self, n_bytes: int, *, replace: bool = True) -> None:
        """Send ``n_bytes`` random bytes to the client in place of (or before) the next
        chunk the target answers."""
        if n_bytes < 1:
            raise ValueError("garbage needs at least one byte")

        async def run() -> None:
            self._garbage, self._garbage_replace = n_bytes, replace

        await self._on_loop(run)

    async def lose_answer_to(self, pattern: bytes) -> None:
        """The next request that contains ``pattern`` reaches the target; then that
        connection is dropped before any answer can come back (a lost answer: the
        client cannot know whether the request was carried out)."""
        if not pattern:
            raise ValueError("lose_answer_to needs a pattern to look for")

        async def run() -> None:
            self._lose_after = bytes(pattern)

        await self._on_loop(run)

    async def hold_request_with(self, pattern: bytes) -> None:
        """The next request that contains ``pattern`` is held at the proxy, with whatever
        the client sends after it on that connection: the target sees none of it until
        ``release()``. A connection closed meanwhile (``drop_connections``, ``stop``)
        drops it: the instrument never saw the request. (A client that dies is noticed
        only when the proxy next reads or writes on it: drop the connections to be sure.)
        """
        if not pattern:
            raise ValueError("hold_request_with needs a pattern to look for")

        async def run() -> None:
            self._hold_request = bytes(pattern)

        await self._on_loop(run)

    async def hold_answer_to(self, pattern: bytes) -> None:
        """The next request that contains ``pattern`` reaches the target; from then on
        the target's answers on that connection are held until ``release()``, and
        dropped if the connection closes first (the instrument acted; the client never
        heard)."""
        if not pattern:
            raise ValueError("hold_answer_to needs a pattern to look for")

        async def run() -> None:
            self._hold_answer = bytes(pattern)

        await self._on_loop(run)

    async def release(self) -> None:
        """Let held traffic go on, in order; patterns not yet seen are forgotten."""

        async def run() -> None:
            self._release()

        await self._on_loop(run)

    def _release(self) -> None:
        self._hold_request = self._hold_answer = None
        for link in self._links:
            link.to_target_gate.set()
            link.to_client_gate.set()

    async def refuse(self, refusing: bool) -> None:
        """Refuse new connections (the port closes) or accept them again."""

        async def run() -> None:
            if refusing:
                await self._unlisten()
            elif self._server is None:
                await self._listen()

        await self._on_loop(run)

    async def clear(self) -> None:
        """End every fault (a stall releases, a refusing proxy listens again)."""

        async def run() -> None:
            assert self._flow is not None
            if self._stall_handle is not None:
                self._stall_handle.cancel()
                self._stall_handle = None
            self._flow.set()
            self._delay = 0.0
            self._garbage = 0
            self._lose_after = None
            self._release()
            if self._server is None:
                await self._listen()

        await self._on_loop(run)

    @property
    def connections(self) -> int:
        """Proxied connections open now."""
        return len(self._links)

    # ------------------------------------------------------------------ plumbing
    async def _on_loop(self, fn: Callable[[], Awaitable[T]]) -> T:
        if self._loop is None:
            raise RuntimeError("FaultProxy is not started")
        if asyncio.get_running_loop() is self._loop:
            return await fn()

        async def wrapper() -> T:
            return await fn()

        return await asyncio.wrap_future(asyncio.run_coroutine_threadsafe(wrapper(), self._loop))

    async def _accept(self, reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
        self.counters.connections_accepted += 1
        link = _Link(writer)
        self._links.add(link)  # a drop while the upstream connects closes it too
        try:
            up_reader, up_writer = await asyncio.open_connection(self.target_host, self.target_port)
        except OSError:
            self.counters.upstream_failures += 1
            self._links.discard(link)
            link.close()
            return
        link.upstream = up_writer
        if link not in self._links:  # dropped meanwhile
            link.close()
            return
        link.tasks = [
            asyncio.create_task(self._pump(reader, up_writer, link, to_client=False)),
            asyncio.create_task(self._pump(up_reader, writer, link, to_client=True)),
        ]

    def _hold_if_asked(self, link: _Link, request: bytes) -> None:
        """Close a gate of ``link`` when ``request`` holds a pattern a test asked for: the
        request's own (it waits), or the answers' (shut before the request goes out, so
        no answer to it can pass)."""
        if self._hold_request is not None and self._hold_request in request:
            self._hold_request = None
            self.counters.requests_held += 1
            link.to_target_gate.clear()
        if self._hold_answer is not None and self._hold_answer in request:
            self._hold_answer = None
            self.counters.answers_held += 1
            link.to_client_gate.clear()

    async def _pump(
        self,
        reader: asyncio.StreamReader,
        writer: asyncio.StreamWriter,
        link: _Link,
        *,
        to_client: bool,
    ) -> None:
        assert self._flow is not None
        try:
            while True:
                data = await reader.read(_CHUNK)
                if not data:
                    break
                await self._flow.wait()
                if self._delay:
                    self.counters.chunks_delayed += 1
                    await asyncio.sleep(self._delay)
                    await self._flow.wait()
                if to_client and link.losing_answer:
                    break  # the answer to the lost request: nobody is there to read it
                if not to_client:
                    self._hold_if_asked(link, data)
                    await link.to_target_gate.wait()
                else:
                    await link.to_client_gate.wait()
                if to_client and self._garbage:
                    junk = bytes(self._rng.randrange(256) for _ in range(self._garbage))
                    data = junk if self._garbage_replace else junk + data
                    self._garbage = 0
                    self.counters.frames_corrupted += 1
                # Count before sending: whoever sees the bytes sees them counted.
                if to_client:
                    self.counters.bytes_to_client += len(data)
                else:
                    self.counters.bytes_to_target += len(data)
                writer.write(data)
                await writer.drain()
                lose = self._lose_after
                if not to_client and lose is not None and lose in data:
                    # The request is on its way to the target: the client goes now, the
                    # target's side stays open until it answers (the answer is dropped).
                    self._lose_after = None
                    self.counters.answers_lost += 1
                    link.losing_answer = True
                    with contextlib.suppress(Exception):
                        link.client.transport.abort()
                    return
        except (OSError, asyncio.IncompleteReadError):
            pass
        finally:
            if link in self._links and not (link.losing_answer and not to_client):
                self._links.discard(link)
                link.close()
