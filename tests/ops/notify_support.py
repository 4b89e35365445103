"""The systemd side of sd_notify for tests: a datagram socket that collects messages."""

from __future__ import annotations

import socket
from collections.abc import Callable
from pathlib import Path

from tests.support import HANG_GUARD

Message = dict[str, str]


def parse(datagram: bytes) -> Message:
    """``KEY=value`` lines as systemd reads them."""
    fields: Message = {}
    for line in datagram.decode().split("\n"):
        key, sep, value = line.partition("=")
        assert sep and key, f"not KEY=value: {line!r} in {datagram!r}"
        fields[key] = value
    return fields


class Listener:
    """Binds ``path``; every message received is kept in ``seen``, in order."""

    def __init__(self, path: Path) -> None:
        self.path = path
        self.sock = socket.socket(socket.AF_UNIX, socket.SOCK_DGRAM)
        self.sock.bind(str(path))
        self.seen: list[Message] = []

    def until(self, ok: Callable[[Message], bool], what: str) -> list[Message]:
        """Receive (blocking, hang-guarded) up to the first message for which ``ok``
        holds; return the messages received by this call, that one last."""
        got: list[Message] = []
        self.sock.settimeout(HANG_GUARD)
        while True:
            try:
                message = parse(self.sock.recv(4096))
            except TimeoutError:
                raise AssertionError(f"hang guard: no {what}; received {got}") from None
            got.append(message)
            self.seen.append(message)
            if ok(message):
                return got

    def drain(self) -> list[Message]:
        """Every message already queued, without waiting (sendto is synchronous: what
        was sent before this call is here)."""
        got: list[Message] = []
        self.sock.setblocking(False)
        try:
            while True:
                got.append(parse(self.sock.recv(4096)))
        except BlockingIOError:
            pass
        self.seen += got
        return got

    def close(self) -> None:
        self.sock.close()


def is_ready(m: Message) -> bool:
    return m.get("READY") == "1"


def is_ping(m: Message) -> bool:
    return m.get("WATCHDOG") == "1"


def is_stopping(m: Message) -> bool:
    return m.get("STOPPING") == "1"
