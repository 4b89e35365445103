"""A scripted balance for the serial driver tests: an instrument on a pty master that
answers each command line from a script (the balance twin cannot produce every answer,
nor a hostile one). Fixtures ``line`` (the script) and ``balance`` (a SerialBalance on
it, 0.3 s per command) are in the conftest of this directory."""

from __future__ import annotations

import asyncio

from simulators.serialline import Pty


class Scripted:
    """An instrument on the pty master that answers each command line from a script."""

    def __init__(self) -> None:
        self.pty = Pty.open()
        self.received: list[bytes] = []
        self.answers: list[list[bytes]] = []  # chunks per answer; [] = say nothing
        self._buf = b""
        loop = asyncio.get_running_loop()
        loop.add_reader(self.pty.master, self._on_readable)
        self._loop = loop

    def _on_readable(self) -> None:
        self._buf += self.pty.read()
        while b"\r\n" in self._buf:
            line, self._buf = self._buf.split(b"\r\n", 1)
            self.received.append(line)
            chunks = self.answers.pop(0) if self.answers else []
            for i, chunk in enumerate(chunks):
                self._loop.call_later(0.005 * i, self.pty.write, chunk)

    async def flood(self, data: bytes) -> None:
        """Write all of ``data`` (megabytes), waiting while the pty is full."""
        view = memoryview(data)
        while view:
            taken = self.pty.write(view)
            view = view[taken:]
            if view:
                await self._writable()

    async def _writable(self) -> None:
        ready = self._loop.create_future()
        self._loop.add_writer(self.pty.master, lambda: ready.done() or ready.set_result(None))
        try:
            await ready
        finally:
            self._loop.remove_writer(self.pty.master)

    def close(self) -> None:
        self._loop.remove_reader(self.pty.master)
        self.pty.close()
