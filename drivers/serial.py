"""Serial driver of the product balance (ICD section 3, MT-SICS level 0 subset).

This module owns ``SerialBalance``, the ``drivers.base.Balance`` the daemon uses to
check the fill of final product bags: 9600 baud 8N1, commands and answers framed by
CR LF, one command at a time, a timeout per command, every answer mapped::

    S S <v> g              -> grams                (S, SI: Weight(stable=True));
                              <v>: 10 characters, right-aligned, 3 decimals
    S D <v> g              -> Weight(stable=False) (SI only)
    T S <v> g              -> tare grams           (T)
    Z A                    -> done                 (Z)
    S I, T I, Z I          -> Busy
    S +, T +, Z +          -> InvalidState (overload / upper limit)
    S -, T -, Z -          -> InvalidState (underload / lower limit)
    ES                     -> NotSupported (syntax error: the balance lacks the command)
    EL                     -> InvalidArgument (MT-SICS logical error, not in the ICD)
    ET                     -> CommunicationLost (MT-SICS transmission error)
    anything else          -> CommunicationLost (garbage)
    no line in ``timeout`` -> InstrumentTimeout (a CommunicationLost)

How the port is driven without blocking the event loop: pyserial opens and
configures the port (termios, exclusive lock); after that the driver uses only its
non-blocking file descriptor with the loop's ``add_reader`` (and ``add_writer`` when
a write would block), the way pymodbus' own serial transport does. Nothing blocks,
so a cancelled or timed-out command leaves no thread stuck in ``read()``; this needs
a POSIX loop (the edge PC runs Linux). A thread per read (``to_thread``) was
rejected: a read cannot be cancelled, so a timed-out command would leave a reader
that steals the next command's answer.

Framing and resynchronisation: bytes accumulate until CR LF; each complete line is
queued. Nothing is outstanding between commands, so before a command is sent all
input received since the last answer (queued lines, half a line) is dropped: a late
answer of a timed-out command or noise is never taken for the new answer. Garbage
that arrives while a command waits ends up in its answer line, which is reported as
garbage (CommunicationLost) and dropped up to its CR LF. A line longer than
``max_line`` is garbage too, and input is dropped up to the next CR LF.

Limitation (of MT-SICS level 0, which has no request ids): an answer delayed beyond
the timeout that arrives after the *next* command was sent is taken as that
command's answer when its form fits.

A read or write error (device unplugged, pty closed) closes the port and raises
CommunicationLost; the next command reopens it, so the driver recovers by itself.
Connection state (``state``, the ``drivers._link.ConnectionState`` every driver
reports; the balance has no event stream and no supervisor: it is reopened by the
next command, not by a background task)::

    CLOSED --__aenter__--> CONNECTED --read/write error--> LOST --next command--> CONNECTED
    any --__aexit__--> CLOSED
"""

from __future__ import annotations

import asyncio
import contextlib
import os
import re
from dataclasses import dataclass
from typing import Final, Self

import serial as pyserial
import structlog

from drivers import icd
from drivers._link import ConnectionState
from drivers.base import (
    Busy,
    CommunicationLost,
    InstrumentTimeout,
    InvalidArgument,
    InvalidState,
    NotSupported,
    Weight,
)

log = structlog.get_logger("cellfab.drivers.serial")

# ICD section 3: the value is right-aligned in a 10-character field, three decimals.
_WEIGHT_RE: Final = re.compile(
    rf"([ST]) ([SD]) (?=.{{{icd.BALANCE_VALUE_WIDTH}}} g$)( *-?\d+\.\d{{3}}) g"
)
_DRAIN_READS: Final = 16  # at most 1 MiB of stale input dropped before a command
_STATUS_RE: Final = re.compile(r"([STZ]) ([AI+-])")


@dataclass(frozen=True, slots=True)
class BalanceSettings:
    line: icd.SerialLine = icd.BALANCE_LINE  # ICD section 3: 9600 8N1
    timeout: float = 2.0  # wall seconds per command
    max_line: int = 128


class _Broken:
    """Queued instead of a line when the port failed."""

    def __init__(self, reason: str) -> None:
        self.reason = reason


class _Garbage:
    """Queued instead of a line that overflowed ``max_line``."""


class SerialBalance:
    """An MT-SICS balance on a serial port (implements ``drivers.base.Balance``).

    Use as ``async with SerialBalance("balance1", "/dev/ttyUSB0") as bal:``.
    """

    def __init__(self, name: str, port: str, settings: BalanceSettings | None = None) -> None:
        self.name = name
        self.port = port
        self.settings = settings or BalanceSettings()
        self._serial: pyserial.Serial | None = None
        self._fd = -1
        self._buf = bytearray()
        self._skipping = False  # dropping input up to the next CR LF
        self._lines: asyncio.Queue[bytes | _Broken | _Garbage] = asyncio.Queue()
        self._lock = asyncio.Lock()
        self._loop: asyncio.AbstractEventLoop | None = None
        self._state = ConnectionState.CLOSED
        self.lines_received = 0  # complete lines read (diagnostics and tests)

    @property
    def state(self) -> ConnectionState:
        return self._state

    # ------------------------------------------------------------------ life cycle
    async def __aenter__(self) -> Self:
        self._open("open")
        return self

    async def __aexit__(self, *exc_info: object) -> None:
        self._close()
        self._state = ConnectionState.CLOSED

    def _open(self, op: str) -> None:
        self._loop = asyncio.get_running_loop()
        line = self.settings.line
        try:
            ser = pyserial.Serial(
                self.port, **line.serial_settings(), timeout=0, write_timeout=0, exclusive=True
            )
        except (pyserial.SerialException, OSError, ValueError) as exc:
            raise CommunicationLost(self.name, op, f"cannot open {self.port}: {exc}") from None
        self._serial = ser
        self._state = ConnectionState.CONNECTED
        self._fd = ser.fileno()
        os.set_blocking(self._fd, False)
        self._buf.clear()
        self._skipping = False
        self._drain()
        self._loop.add_reader(self._fd, self._on_readable)

    def _close(self) -> None:
        ser, self._serial = self._serial, None
        if ser is None:
            return
        if self._loop is not None and not self._loop.is_closed():
            self._loop.remove_reader(self._fd)
            self._loop.remove_writer(self._fd)
        self._fd = -1
        with contextlib.suppress(Exception):
            ser.close()

    def _fail(self, reason: str) -> None:
        log.warning("balance line failed", instrument=self.name, port=self.port, reason=reason)
        self._close()
        self._state = ConnectionState.LOST
        self._lines.put_nowait(_Broken(reason))

    # ------------------------------------------------------------------ framing
    def _on_readable(self) -> None:
        try:
            data = os.read(self._fd, 4096)
        except (BlockingIOError, InterruptedError):
            return
        except OSError as exc:
            self._fail(f"read failed: {exc}")
            return
        if not data:
            self._fail("port closed")
            return
        self._buf += data
        eol = icd.BALANCE_EOL
        while (end := self._buf.find(eol)) >= 0:
            line = bytes(self._buf[:end])
            del self._buf[: end + len(eol)]
            if self._skipping:
                self._skipping = False
                continue
            self.lines_received += 1
            self._lines.put_nowait(line)
        if len(self._buf) > self.settings.max_line:
            self._buf.clear()
            if not self._skipping:
                self._skipping = True
                self._lines.put_nowait(_Garbage())

    def _drain(self) -> None:
        """Drop every line queued and every byte the port holds unread (bounded: a
        balance that never stops talking gets its command anyway)."""
        while not self._lines.empty():
            self._lines.get_nowait()
        for _ in range(_DRAIN_READS):
            try:
                if not os.read(self._fd, 65536):
                    break
            except (BlockingIOError, InterruptedError):
                break
            except OSError:
                break  # the next read by the loop reports the failure

    async def _write_all(self, op: str, data: bytes) -> None:
        view = memoryview(data)
        while view:
            try:
                n = os.write(self._fd, view)
            except (BlockingIOError, InterruptedError):
                n = 0
            except OSError as exc:
                self._fail(f"write failed: {exc}")
                raise CommunicationLost(self.name, op, f"write failed: {exc}") from None
            view = view[n:]
            if view:
                assert self._loop is not None
                ready = self._loop.create_future()
                self._loop.add_writer(self._fd, ready.set_result, None)
                try:
                    await ready
                finally:
                    self._loop.remove_writer(self._fd)

    # ------------------------------------------------------------------ one command
    async def exchange(self, cmd: str, op: str | None = None) -> str:
        """Send one command line, return the answer line (without CR LF), uninterpreted.

        InstrumentTimeout without an answer; CommunicationLost when the port failed or
        the line is not ASCII or too long.
        """
        op = op or cmd
        async with self._lock:
            if self._serial is None:
                self._open(op)
            # Nothing is outstanding: whatever arrived since the last answer (a late
            # answer, noise, half a line) is stale. Drop it, and stop skipping.
            self._drain()
            self._buf.clear()
            self._skipping = False
            try:
                async with asyncio.timeout(self.settings.timeout):
                    await self._write_all(op, cmd.encode("ascii") + icd.BALANCE_EOL)
                    line = await self._lines.get()
            except TimeoutError:
                raise InstrumentTimeout(
                    self.name, op, f"no answer within {self.settings.timeout} s"
                ) from None
        if isinstance(line, _Broken):
            raise CommunicationLost(self.name, op, line.reason)
        if isinstance(line, _Garbage):
            raise CommunicationLost(self.name, op, "garbage: line too long")
        try:
            return line.decode("ascii")
        except UnicodeDecodeError:
            raise CommunicationLost(self.name, op, f"garbage: {line[:40]!r}") from None

    async def command(self, cmd: str, op: str | None = None) -> tuple[str, float | None]:
        """One command with the answers every command shares mapped to typed errors.

        Returns ``(status, value)``: ``("S"|"D", grams)`` for a weight answer, or
        ``("A", None)`` for an acknowledgement; raises per the table in the module doc.
        """
        op = op or cmd
        answer = await self.exchange(cmd, op)
        head = answer[:1]
        if answer == "ES":
            raise NotSupported(self.name, op, f"balance does not know {cmd!r} (ES)")
        if answer == "EL":
            raise InvalidArgument(self.name, op, f"balance cannot execute {cmd!r} (EL)")
        if answer == "ET":
            raise CommunicationLost(self.name, op, "balance reports a transmission error (ET)")
        if head == cmd[:1] and (m := _WEIGHT_RE.fullmatch(answer)):
            return m.group(2), float(m.group(3))  # at most 10 characters: finite
        if head == cmd[:1] and (m := _STATUS_RE.fullmatch(answer)):
            status = m.group(2)
            if status == "I":
                raise Busy(self.name, op, f"balance busy ({answer})")
            if status == "+":
                raise InvalidState(self.name, op, f"overload / upper limit ({answer})")
            if status == "-":
                raise InvalidState(self.name, op, f"underload / lower limit ({answer})")
            return status, None
        raise CommunicationLost(self.name, op, f"garbage answer {answer!r} to {cmd!r}")

    # ------------------------------------------------------------------ Balance
    async def stable_weight(self) -> float:
        """``S``: grams once stable; Busy while unstable, InvalidState on over/underload."""
        status, value = await self.command("S", "stable_weight")
        if status != "S" or value is None:
            raise CommunicationLost(self.name, "stable_weight", f"unexpected {status!r}")
        return value

    async def weight_now(self) -> Weight:
        """``SI``: the weight now, stable or dynamic."""
        status, value = await self.command("SI", "weight_now")
        if status not in ("S", "D") or value is None:
            raise CommunicationLost(self.name, "weight_now", f"unexpected {status!r}")
        return Weight(grams=value, stable=status == "S")

    async def zero(self) -> None:
        """``Z``: the present load becomes zero (``Z A``); Busy while unstable."""
        status, value = await self.command("Z", "zero")
        if status != "A" or value is not None:
            raise CommunicationLost(self.name, "zero", f"unexpected {status!r}")

    async def tare(self) -> float:
        """``T``: the present load becomes the tare; returns the tare weight, grams."""
        status, value = await self.command("T", "tare")
        if status != "S" or value is None:
            raise CommunicationLost(self.name, "tare", f"unexpected {status!r}")
        return value
