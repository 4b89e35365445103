"""Serial lines for the twins on pseudo-terminals (POSIX only).

This module owns two helpers, neither of them an instrument:

- ``Pty``: one pseudo-terminal in raw mode. A twin reads and writes its master side; a
  client opens ``path`` (the slave side) with pyserial. The twin keeps a slave handle
  open itself, so the master never sees EIO/HUP when a client closes and reopens.
- ``NullModem``: two ptys wired back to back by a relay on the event loop, like a
  null-modem cable between two serial ports: bytes written to ``path_a`` are read from
  ``path_b`` and back. A server that opens its port by path (the pymodbus RTU server of
  the Cell Q twin) listens on one end, a client opens the other.

::

    client (pyserial) ── path_b ══ pty B ══ relay ══ pty A ══ path_a ── server (pymodbus)
"""

from __future__ import annotations

import asyncio
import contextlib
import os
import pty
import tty
from dataclasses import dataclass, field


@dataclass
class Pty:
    """A raw pseudo-terminal; the master fd is non-blocking."""

    master: int = -1
    slave: int = -1
    path: str = ""

    @classmethod
    def open(cls) -> Pty:
        master, slave = pty.openpty()
        tty.setraw(slave)
        os.set_blocking(master, False)
        return cls(master, slave, os.ttyname(slave))

    def close(self) -> None:
        for fd in (self.master, self.slave):
            if fd >= 0:
                with contextlib.suppress(OSError):
                    os.close(fd)
        self.master = self.slave = -1

    def read(self, n: int = 4096) -> bytes:
        """What the client wrote (b"" when nothing is waiting)."""
        try:
            return os.read(self.master, n)
        except (BlockingIOError, InterruptedError):
            return b""

    def write(self, data: bytes) -> int:
        """Bytes taken by the pty (fewer when its buffer is full: nobody reads)."""
        try:
            return os.write(self.master, data)
        except (BlockingIOError, InterruptedError):
            return 0


@dataclass
class NullModem:
    """Two ptys joined by a relay on the running event loop."""

    a: Pty = field(default_factory=Pty)
    b: Pty = field(default_factory=Pty)
    bytes_relayed: int = 0
    _loop: asyncio.AbstractEventLoop | None = None

    @property
    def path_a(self) -> str:
        return self.a.path

    @property
    def path_b(self) -> str:
        return self.b.path

    async def start(self) -> None:
        self.a, self.b = Pty.open(), Pty.open()
        self._loop = asyncio.get_running_loop()
        self._loop.add_reader(self.a.master, self._relay, self.a, self.b)
        self._loop.add_reader(self.b.master, self._relay, self.b, self.a)

    async def stop(self) -> None:
        if self._loop is not None:
            for p in (self.a, self.b):
                if p.master >= 0:
                    self._loop.remove_reader(p.master)
            self._loop = None
        self.a.close()
        self.b.close()

    def _relay(self, src: Pty, dst: Pty) -> None:
        data = src.read()
        if data:
            # A full destination buffer drops bytes, as a real line with nobody listening.
            self.bytes_relayed += dst.write(data)
