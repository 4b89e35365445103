"""A Modbus server, TCP (MBAP) and RTU, with the framing of ICD 1.1 section 2.

This module owns the wire half of the Cell Q twin: framing, PDU parsing and the answer
of every request, for any register map behind a ``Handler``. It knows no register:
what a request does (and which exception it earns: 02, 03, 04, 06) is the handler's.
Why it is not pymodbus' server: docs/decisions/0023.

The rules, on both wires (ICD 1.1)::

    function code not 03, 04, 06, 16 ....................... exception 01
    PDU size wrong for its function code ..................... exception 03
    read of 0 or > 125 registers, write of 0 or > 123,
    byte count not 2 x count .................................. exception 03
    another unit id ........................................... no answer
    anything else ............................................. the handler's answer
    several requests back to back ............................ each answered, in order

TCP: every connection has a buffer and a worker (owned by the server's TaskOwner) that
handles its requests one at a time and writes the answers in order. A header that
cannot be a Modbus/TCP header (protocol id not 0, length under 2 or over 262) makes the
server answer the requests before it and close the connection; the client reconnects.
So does a frame left incomplete for ``frame_timeout`` (1 s): bytes that look like the
start of a long frame must not leave the connection silent.
At most ``MAX_QUEUED`` requests wait per connection (reading pauses beyond) and
answers are not written faster than the client reads them, so a flood costs bounded
memory.

RTU: one line. A request is recognised by its length (fixed per function code, or its
byte count) and its CRC, wherever it starts: bytes before it are noise and are
dropped. Bytes that end in no request are kept until the line is silent for ``gap``
(3.5 characters, at least 20 ms: a pty or a USB adapter does not keep character
timing); then, if they are a whole frame with a good CRC for this unit (an unknown
function code or a malformed request), they get exception 01 or 03, and otherwise
they are dropped: the line is in step again.
"""

from __future__ import annotations

import asyncio
import os
import struct
from collections.abc import Awaitable, Callable
from dataclasses import dataclass
from typing import Final

import serial as pyserial
import structlog

from drivers import icd
from simulators.tasks import TaskOwner

__all__ = ["SILENT", "Handler", "ModbusServer", "Request", "crc16", "rtu_frame"]

log = structlog.get_logger("cellfab.sim.modbus")

MAX_QUEUED: Final = 32  # requests waiting per connection before reading pauses
FRAME_TIMEOUT: Final = 1.0  # wall seconds an incomplete TCP frame may wait for its rest
_MBAP: Final = struct.Struct(">HHHB")  # transaction id, protocol id, length, unit id
# The longest MBAP length field taken as a frame: a write-multiple of up to 127
# registers (its byte count's limit), one more than Modbus allows, so that "a write of
# more than 123 registers answers 03" (ICD 1.1) holds for every count a frame can carry.
_MAX_MBAP_LENGTH: Final = 1 + 6 + 255
_RTU_MAX: Final = 256  # bytes of the longest RTU frame
_MIN_GAP: Final = 0.02


class _Silent:
    """The handler's answer when nothing is to be sent (a silenced or lost answer)."""


SILENT: Final = _Silent()


@dataclass(frozen=True, slots=True)
class Request:
    """One parsed request: function code, first address, register count, values
    written (None for a read)."""

    function: int
    address: int
    count: int
    values: tuple[int, ...] | None = None


# A handler answers the registers read, None for a write done, an exception code, or
# SILENT for no answer at all.
Answer = list[int] | int | None | _Silent
Handler = Callable[[Request], Awaitable[Answer]]


# --------------------------------------------------------------------------- PDUs
def parse_pdu(pdu: bytes) -> Request | int:
    """A request, or the exception code its PDU earns (01 or 03)."""
    fc = pdu[0]
    body = pdu[1:]
    if fc not in icd.FUNCTION_CODES:
        return icd.EXC_ILLEGAL_FUNCTION
    if fc in (icd.FC_READ_HOLDING, icd.FC_READ_INPUT):
        if len(body) != 4:
            return icd.EXC_ILLEGAL_VALUE
        address, count = struct.unpack(">HH", body)
        if not 1 <= count <= icd.MAX_READ_REGS:
            return icd.EXC_ILLEGAL_VALUE
        return Request(fc, address, count)
    if fc == icd.FC_WRITE_SINGLE:
        if len(body) != 4:
            return icd.EXC_ILLEGAL_VALUE
        address, value = struct.unpack(">HH", body)
        return Request(fc, address, 1, (value,))
    if len(body) < 5:  # write multiple
        return icd.EXC_ILLEGAL_VALUE
    address, count, nbytes = struct.unpack(">HHB", body[:5])
    data = body[5:]
    if not 1 <= count <= icd.MAX_WRITE_REGS or nbytes != 2 * count or len(data) != nbytes:
        return icd.EXC_ILLEGAL_VALUE
    return Request(fc, address, count, struct.unpack(f">{count}H", data))


def answer_pdu(fc: int, request: Request | None, answer: list[int] | int | None) -> bytes:
    """The PDU of an answer: an exception (an int), registers read, or a write's echo."""
    if isinstance(answer, int) or request is None:
        code = answer if isinstance(answer, int) else icd.EXC_ILLEGAL_FUNCTION
        return bytes([(fc | 0x80) & 0xFF, code])
    if request.values is None:
        regs = answer or []
        return struct.pack(f">BB{len(regs)}H", fc, 2 * len(regs), *regs)
    if fc == icd.FC_WRITE_SINGLE:
        return struct.pack(">BHH", fc, request.address, request.values[0])
    return struct.pack(">BHH", fc, request.address, request.count)


# --------------------------------------------------------------------------- RTU frames
def crc16(data: bytes) -> int:
    """The Modbus RTU CRC (polynomial 0xA001, initial 0xFFFF), as an int."""
    crc = 0xFFFF
    for byte in data:
        crc ^= byte
        for _ in range(8):
            crc = (crc >> 1) ^ 0xA001 if crc & 1 else crc >> 1
    return crc


def rtu_frame(unit: int, pdu: bytes) -> bytes:
    """An RTU frame: unit id, PDU, CRC low byte first."""
    body = bytes([unit]) + pdu
    return body + struct.pack("<H", crc16(body))


def _crc_ok(frame: bytes) -> bool:
    return len(frame) >= 4 and struct.unpack("<H", frame[-2:])[0] == crc16(frame[:-2])


def _rtu_request_size(buf: bytes | bytearray, i: int) -> int | None:
    """Bytes of the RTU request starting at ``i`` by its function code: 0 when no
    request of ours starts with that function code, None when more bytes are needed."""
    if len(buf) - i < 2:
        return None
    fc = buf[i + 1]
    if fc in (icd.FC_READ_HOLDING, icd.FC_READ_INPUT, icd.FC_WRITE_SINGLE):
        return 8
    if fc == icd.FC_WRITE_MULTIPLE:
        return None if len(buf) - i < 7 else 9 + buf[i + 6]
    return 0


def split_rtu(buf: bytearray) -> list[bytes]:
    """Take every whole request (length by function code, good CRC) out of ``buf``,
    with the noise before it; what may still become a request stays in ``buf``."""
    frames: list[bytes] = []
    start = 0
    i = 0
    while i <= len(buf) - 4:
        size = _rtu_request_size(buf, i)
        if size and i + size <= len(buf) and _crc_ok(bytes(buf[i : i + size])):
            frames.append(bytes(buf[i : i + size]))
            i += size
            start = i
            continue
        i += 1
    del buf[:start]
    if len(buf) > _RTU_MAX:  # no request is longer: the oldest bytes are noise
        del buf[: len(buf) - _RTU_MAX]
    return frames


# --------------------------------------------------------------------------- server
class ModbusServer:
    """Serves ``handler`` on Modbus TCP (``port``, 0 picks one; None serves none) and
    on Modbus RTU (``serial_port`` with ``line``) for one unit id."""

    def __init__(
        self,
        handler: Handler,
        *,
        unit: int,
        host: str = "127.0.0.1",
        port: int | None = 0,
        serial_port: str | None = None,
        line: icd.SerialLine | None = None,
        name: str = "modbus",
        frame_timeout: float = FRAME_TIMEOUT,
    ) -> None:
        self.handler = handler
        self.frame_timeout = frame_timeout
        self.unit = unit
        self.host = host
        self.port = port
        self.serial_port = serial_port
        self.line = line if line is not None else icd.SerialLine()
        self.tasks = TaskOwner(name)
        self.connections_closed = 0  # TCP connections closed for an unparsable frame
        self.frames_dropped = 0  # RTU bytes that made no request, dropped at a gap
        self._server: asyncio.Server | None = None
        self._rtu: _RtuLine | None = None

    async def start(self) -> None:
        loop = asyncio.get_running_loop()
        if self.port is not None:
            self._server = await loop.create_server(
                lambda: _TcpConnection(self), self.host, self.port
            )
            self.port = self._server.sockets[0].getsockname()[1]
        if self.serial_port is not None:
            self._rtu = _RtuLine(self, self.serial_port)
            self._rtu.open()

    async def stop(self) -> None:
        if self._server is not None:
            self._server.close()
            self._server = None
        if self._rtu is not None:
            self._rtu.close()
            self._rtu = None
        await self.tasks.stop()

    async def answer(self, unit: int, pdu: bytes) -> bytes | None:
        """The answer PDU of one request PDU, or None when none is to be sent."""
        if unit != self.unit:
            return None
        if not pdu:
            return bytes([0x80, icd.EXC_ILLEGAL_FUNCTION])
        parsed = parse_pdu(pdu)
        if isinstance(parsed, int):
            return answer_pdu(pdu[0], None, parsed)
        result = await self.handler(parsed)
        if isinstance(result, _Silent):
            return None
        return answer_pdu(parsed.function, parsed, result)


class _TcpConnection(asyncio.Protocol):
    """One client connection: framing in ``data_received``, answers by its worker."""

    def __init__(self, server: ModbusServer) -> None:
        self.server = server
        self.transport: asyncio.Transport | None = None
        self.buffer = bytearray()
        self.queue: asyncio.Queue[tuple[bytes, int, bytes] | None] = asyncio.Queue()
        self.writable = asyncio.Event()
        self.writable.set()
        self.broken = False  # an unparsable frame was seen: nothing more is read
        self.incomplete: asyncio.TimerHandle | None = None

    def connection_made(self, transport: asyncio.BaseTransport) -> None:
        assert isinstance(transport, asyncio.Transport)
        self.transport = transport
        peer = transport.get_extra_info("peername")
        self.server.tasks.start(self._work(), f"tcp client {peer}")

    def data_received(self, data: bytes) -> None:
        if self.broken:
            return
        self.buffer += data
        while len(self.buffer) >= _MBAP.size:
            _tid, pid, length, unit = _MBAP.unpack_from(self.buffer)
            if pid != 0 or not 2 <= length <= _MAX_MBAP_LENGTH:
                self._unparsable(f"header with protocol id {pid}, length {length}")
                return
            end = 6 + length
            if len(self.buffer) < end:
                break
            header, pdu = bytes(self.buffer[:7]), bytes(self.buffer[7:end])
            del self.buffer[:end]
            self.queue.put_nowait((header, unit, pdu))
        assert self.transport is not None
        if self.incomplete is not None:
            self.incomplete.cancel()
            self.incomplete = None
        if self.buffer:
            self.incomplete = asyncio.get_running_loop().call_later(
                self.server.frame_timeout, self._unparsable, "a frame that never ends"
            )
        if self.queue.qsize() >= MAX_QUEUED:
            self.transport.pause_reading()

    def _unparsable(self, what: str) -> None:
        """Answer what came before, then close (ICD 1.1: never leave it silent)."""
        if self.broken:
            return
        log.info("unparsable Modbus/TCP frame: closing the connection", frame=what)
        self.broken = True
        self.buffer.clear()
        self.queue.put_nowait(None)

    def eof_received(self) -> bool:
        """The client sent all it will send: answer what it asked, then close."""
        self.broken = True
        self.buffer.clear()
        self.queue.put_nowait(None)
        return True  # keep the transport open for the answers

    def connection_lost(self, exc: Exception | None) -> None:
        if self.incomplete is not None:
            self.incomplete.cancel()
        self.broken = True
        self.writable.set()
        self.queue.put_nowait(None)

    def pause_writing(self) -> None:
        self.writable.clear()

    def resume_writing(self) -> None:
        self.writable.set()

    async def _work(self) -> None:
        transport = self.transport
        assert transport is not None
        try:
            while (item := await self.queue.get()) is not None:
                if self.queue.qsize() < MAX_QUEUED // 2 and not self.broken:
                    transport.resume_reading()
                header, unit, pdu = item
                answer = await self.server.answer(unit, pdu)
                if answer is None or transport.is_closing():
                    continue
                await self.writable.wait()
                tid = struct.unpack_from(">H", header)[0]
                transport.write(_MBAP.pack(tid, 0, len(answer) + 1, unit) + answer)
            if not transport.is_closing():
                self.server.connections_closed += 1
        finally:  # the end of the worker (a close, or a bug: logged by the TaskOwner)
            transport.close()


class _RtuLine:
    """The RTU line: a serial port read without blocking, requests answered in order."""

    def __init__(self, server: ModbusServer, path: str) -> None:
        self.server = server
        self.path = path
        self.buffer = bytearray()
        self.queue: asyncio.Queue[bytes] = asyncio.Queue(maxsize=MAX_QUEUED)
        self.gap = max(3.5 * server.line.char_seconds(), _MIN_GAP)
        self._serial: pyserial.Serial | None = None
        self._fd = -1
        self._loop: asyncio.AbstractEventLoop | None = None
        self._gap_timer: asyncio.TimerHandle | None = None

    def open(self) -> None:
        line = self.server.line
        try:
            self._serial = pyserial.Serial(
                self.path, **line.serial_settings(), timeout=0, write_timeout=0, exclusive=True
            )
        except (pyserial.SerialException, OSError, ValueError) as exc:
            raise OSError(f"cannot open {self.path} ({line}): {exc}") from exc
        self._fd = self._serial.fileno()
        os.set_blocking(self._fd, False)
        self._loop = asyncio.get_running_loop()
        self._loop.add_reader(self._fd, self._readable)
        self.server.tasks.start(self._work(), f"rtu {self.path}")

    def close(self) -> None:
        if self._gap_timer is not None:
            self._gap_timer.cancel()
        if self._loop is not None and self._fd >= 0:
            self._loop.remove_reader(self._fd)
        if self._serial is not None:
            self._serial.close()
        self._serial, self._fd = None, -1

    def _readable(self) -> None:
        try:
            data = os.read(self._fd, 4096)
        except (BlockingIOError, InterruptedError):
            return
        except OSError as exc:  # the line went away: serve nothing more
            log.warning("RTU line failed", path=self.path, error=str(exc))
            self.close()
            return
        self.buffer += data
        for frame in split_rtu(self.buffer):
            if self.queue.full():  # a master waits for each answer: this is a flood
                self.server.frames_dropped += 1
                continue
            self.queue.put_nowait(frame)
        if self._gap_timer is not None:
            self._gap_timer.cancel()
        assert self._loop is not None
        self._gap_timer = self._loop.call_later(self.gap, self._silence)

    def _silence(self) -> None:
        """The line has been quiet for ``gap``: what is left is one frame or noise."""
        self._gap_timer = None
        rest, self.buffer = bytes(self.buffer), bytearray()
        if not rest:
            return
        if _crc_ok(rest) and not self.queue.full():
            self.queue.put_nowait(rest)  # a whole frame we could not size: 01 or 03
        else:
            self.server.frames_dropped += 1

    async def _work(self) -> None:
        while True:
            frame = await self.queue.get()
            answer = await self.server.answer(frame[0], frame[1:-2])
            if answer is not None and self._fd >= 0:
                out = rtu_frame(frame[0], answer)
                try:
                    os.write(self._fd, out)  # a full line buffer drops it, as a real line
                except (BlockingIOError, InterruptedError):
                    self.server.frames_dropped += 1
                except OSError as exc:
                    log.warning("RTU write failed", path=self.path, error=str(exc))
