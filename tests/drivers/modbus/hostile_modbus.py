"""A scripted hostile Cell Q for the driver tests: a Modbus/TCP server in front of the
session twin that forwards every request and can rewrite the answer.

``server.rewrite(match, change)`` arms a one-shot rewrite: the first answer whose
request ``match``es is replaced by ``change(request, answer)`` (both whole MBAP
frames). Everything else passes unchanged, so the driver connects and works normally
until the scripted answer comes.
"""

from __future__ import annotations

import asyncio
import contextlib
import struct
from collections.abc import Callable
from dataclasses import dataclass, field

Match = Callable[[bytes], bool]
Change = Callable[[bytes, bytes], bytes]


def function_of(frame: bytes) -> int:
    return frame[7]


def address_of(frame: bytes) -> int:
    return int(struct.unpack_from(">H", frame, 8)[0])


def count_of(frame: bytes) -> int:
    return int(struct.unpack_from(">H", frame, 10)[0])


def registers_of(answer: bytes) -> list[int]:
    n = answer[8] // 2
    return list(struct.unpack_from(f">{n}H", answer, 9))


def with_registers(answer: bytes, regs: list[int]) -> bytes:
    """A read answer with other register values (same header and count)."""
    return answer[:9] + struct.pack(f">{len(regs)}H", *regs)


@dataclass
class HostileCellQ:
    upstream_port: int
    port: int = 0
    rewritten: int = 0
    _armed: list[tuple[Match, Change]] = field(default_factory=list)
    _server: asyncio.Server | None = None
    _tasks: set[asyncio.Task[None]] = field(default_factory=set)
    _writers: set[asyncio.StreamWriter] = field(default_factory=set)

    def rewrite(self, match: Match, change: Change) -> None:
        self._armed.append((match, change))

    @property
    def pending(self) -> int:
        return len(self._armed)

    async def start(self) -> None:
        self._server = await asyncio.start_server(self._client, "127.0.0.1", 0)
        self.port = self._server.sockets[0].getsockname()[1]

    async def stop(self) -> None:
        if self._server is not None:
            self._server.close()
        for writer in list(self._writers):  # each client task ends on its closed stream
            writer.close()
        for task in list(self._tasks):
            with contextlib.suppress(Exception):
                await task

    async def _client(self, reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
        task = asyncio.current_task()
        assert task is not None
        self._tasks.add(task)
        up_reader, up_writer = await asyncio.open_connection("127.0.0.1", self.upstream_port)
        self._writers |= {writer, up_writer}
        try:
            while True:
                request = await _frame(reader)
                up_writer.write(request)
                await up_writer.drain()
                answer = await _frame(up_reader)
                for i, (match, change) in enumerate(self._armed):
                    if match(request):
                        del self._armed[i]
                        answer = change(request, answer)
                        self.rewritten += 1
                        break
                writer.write(answer)
                await writer.drain()
        except (asyncio.IncompleteReadError, ConnectionError):
            pass
        finally:
            self._tasks.discard(task)
            for w in (writer, up_writer):
                self._writers.discard(w)
                w.close()


async def _frame(reader: asyncio.StreamReader) -> bytes:
    head = await reader.readexactly(6)
    length = struct.unpack_from(">H", head, 4)[0]
    return head + await reader.readexactly(length)
