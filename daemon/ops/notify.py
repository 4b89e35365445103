"""systemd's service notifications: READY, STATUS, STOPPING and the watchdog.

This module owns the daemon's side of sd_notify(3): one datagram per message to the
AF_UNIX socket that ``$NOTIFY_SOCKET`` names (a path, or ``@name`` in the abstract
namespace), the message being newline-separated ``KEY=value`` lines. No library: the
protocol is one ``sendto`` (decision 0091). Outside systemd (no ``$NOTIFY_SOCKET``)
every call does nothing.

The watchdog: with ``WatchdogSec=`` in the unit, systemd sets ``$WATCHDOG_USEC`` (and
``$WATCHDOG_PID``). ``keep_alive`` sends ``WATCHDOG=1`` every half of that interval
from a task on the event loop, so a stalled loop (a blocking call, a busy loop) sends
none, and systemd kills the daemon and starts it again (``Restart=on-failure``). The
pings also stop while ``healthy()`` says the daemon cannot work (its journal writer
failed): a daemon that cannot journal is restarted rather than left running.

::

    start --STATUS=replaying, connecting, reconciling--> READY=1 (reconciled, API
      serving) --WATCHDOG=1 every WatchdogSec/2--> ... --SIGTERM--> STOPPING=1 --> exit
"""

from __future__ import annotations

import os
import socket
from collections.abc import Callable, Mapping
from typing import Final

import anyio
import structlog

log = structlog.get_logger("cellfab.notify")

__all__ = ["Notifier", "keep_alive", "watchdog_interval"]

MAX_STATUS: Final = 400  # characters of a STATUS= line (systemctl shows one line)


class Notifier:
    """Sends sd_notify messages to ``address`` (None: not under systemd, a no-op)."""

    def __init__(self, address: str | None) -> None:
        self.address = address
        self._target: str | bytes | None = _target(address) if address else None
        self._sock: socket.socket | None = None
        self.sent = 0  # messages handed to the socket, for tests and diagnostics

    @classmethod
    def from_environment(cls, environ: Mapping[str, str] = os.environ) -> Notifier:
        return cls(environ.get("NOTIFY_SOCKET") or None)

    @property
    def enabled(self) -> bool:
        return self._target is not None

    def send(self, *lines: str) -> bool:
        """Send one message of ``KEY=value`` lines; False when not sent (logged)."""
        if self._target is None:
            return False
        try:
            if self._sock is None:
                self._sock = socket.socket(socket.AF_UNIX, socket.SOCK_DGRAM)
                self._sock.setblocking(False)  # never stall the loop on a full queue
            self._sock.sendto("\n".join(lines).encode(), self._target)
        except OSError as exc:
            log.warning("sd_notify failed", socket=self.address, error=str(exc))
            return False
        self.sent += 1
        return True

    def ready(self, status: str = "") -> bool:
        return self.send("READY=1", *_status(status))

    def status(self, status: str) -> bool:
        return self.send(*_status(status))

    def stopping(self, status: str = "") -> bool:
        return self.send("STOPPING=1", *_status(status))

    def watchdog(self) -> bool:
        return self.send("WATCHDOG=1")

    def close(self) -> None:
        if self._sock is not None:
            self._sock.close()
            self._sock = None


def _status(text: str) -> list[str]:
    if not text:
        return []
    return ["STATUS=" + " ".join(text.split())[:MAX_STATUS]]  # one line: no newline inside


def _target(address: str) -> str | bytes | None:
    if address.startswith("@"):
        return b"\0" + address[1:].encode()  # the abstract namespace
    if address.startswith("/"):
        return address
    log.warning("NOTIFY_SOCKET not understood; not notifying systemd", socket=address)
    return None


def watchdog_interval(environ: Mapping[str, str] = os.environ) -> float | None:
    """The watchdog interval in seconds systemd asks of this process, or None."""
    usec = environ.get("WATCHDOG_USEC", "")
    if not usec:
        return None
    pid = environ.get("WATCHDOG_PID", "")
    if pid and pid != str(os.getpid()):
        return None  # meant for another process (this one was started by the service)
    try:
        seconds = int(usec) / 1_000_000
    except ValueError:
        seconds = 0.0
    if seconds <= 0:
        log.warning("WATCHDOG_USEC not understood; no watchdog pings", value=usec)
        return None
    return seconds


async def keep_alive(
    notifier: Notifier, interval: float, healthy: Callable[[], str] = lambda: ""
) -> None:
    """Send WATCHDOG=1 every ``interval / 2`` seconds until cancelled, from this task on
    the event loop, while ``healthy()`` returns "" (else the reason it is not)."""
    sick = ""
    while True:
        why = healthy()
        if not why:
            notifier.watchdog()
        elif why != sick:
            log.error("watchdog pings stop: the daemon cannot work", reason=why)
            notifier.status(f"unhealthy: {why}; waiting for the watchdog to restart it")
        sick = why
        await anyio.sleep(interval / 2)
