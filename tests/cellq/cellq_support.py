"""Plain-pymodbus helpers for the Cell Q protocol tests (no project driver code): a thin
register client and the exception code of an answer. Twins and fixtures come from
tests/support/cellq.py."""

from __future__ import annotations

import asyncio
import struct
from collections.abc import Callable
from dataclasses import dataclass
from typing import Any

from pymodbus.client import AsyncModbusTcpClient
from pymodbus.client.base import ModbusBaseClient
from pymodbus.pdu import ExceptionResponse, ModbusPDU

from drivers import icd
from tests.support import HANG_GUARD, eventually
from tests.support.cellq import SHORT_PANEL


def tcp_client(port: int, *, timeout: float = 3.0) -> AsyncModbusTcpClient:
    # retries=0: a test sees exactly what one request got.
    return AsyncModbusTcpClient("127.0.0.1", port=port, timeout=timeout, retries=0)


@dataclass
class SlotView:
    job_seq: int
    state: int
    progress: int
    fault: int
    results: dict[icd.Assay, float]
    raw: list[int]


def exc_code(response: ModbusPDU) -> int | None:
    """The exception code of an answer, or None when it is a normal answer."""
    if isinstance(response, ExceptionResponse) or response.isError():
        return int(getattr(response, "exception_code", -1))
    return None


class CellQ:
    """A thin, explicit register client for one analyzer (any pymodbus client)."""

    def __init__(self, client: ModbusBaseClient, device_id: int = icd.CELLQ_DEVICE_ID) -> None:
        self.client = client
        self.device_id = device_id

    async def read_ir(self, address: int, count: int) -> Any:
        return await self.client.read_input_registers(
            address, count=count, device_id=self.device_id
        )

    async def read_hr(self, address: int, count: int) -> Any:
        return await self.client.read_holding_registers(
            address, count=count, device_id=self.device_id
        )

    async def write(self, address: int, values: list[int]) -> Any:
        return await self.client.write_registers(address, values, device_id=self.device_id)

    async def status(self) -> list[int]:
        rr = await self.read_ir(0, icd.STATUS_REGS)
        assert exc_code(rr) is None, rr
        return list(rr.registers)

    async def jobs_created(self) -> int:
        rr = await self.read_ir(icd.TWIN_IR_JOBS_CREATED, 2)
        assert exc_code(rr) is None, rr
        return icd.decode_u32(rr.registers)

    async def slot(self, slot: int) -> SlotView:
        rr = await self.read_ir(icd.slot_base(slot), icd.SLOT_STRIDE)
        assert exc_code(rr) is None, rr
        regs = list(rr.registers)
        results = {
            a: icd.decode_f32(regs[icd.result_offset(a) : icd.result_offset(a) + 2])
            for a in icd.Assay
        }
        return SlotView(
            icd.decode_u32(regs[0:2]),
            regs[icd.IR_SLOT_STATE],
            regs[icd.IR_PROGRESS],
            regs[icd.IR_JOB_FAULT],
            results,
            regs,
        )

    async def holding(self, slot: int) -> list[int]:
        rr = await self.read_hr(icd.slot_base(slot), icd.SLOT_STRIDE)
        assert exc_code(rr) is None, rr
        return list(rr.registers)

    async def command(
        self,
        slot: int,
        command: icd.Command,
        *,
        job_seq: int,
        sample_id: str = "",
        panel: int = SHORT_PANEL,
        raw_sample: list[int] | None = None,
    ) -> int | None:
        """JobSeq, panel, SampleId and the command in one write; the exception code."""
        sample = raw_sample if raw_sample is not None else icd.encode_string(sample_id)
        values = [*icd.encode_u32(job_seq), panel, *sample, int(command)]
        return exc_code(await self.write(icd.slot_base(slot), values))

    async def wait_slot(self, slot: int, predicate: Callable[[SlotView], bool]) -> SlotView:
        return await eventually(lambda: self.slot(slot), f"slot {slot} condition", predicate)

    async def wait_state(self, slot: int, *states: icd.SlotState) -> SlotView:
        return await eventually(
            lambda: self.slot(slot), f"slot {slot} in {states}", lambda v: v.state in states
        )


# --------------------------------------------------------------------------- raw frames
def mbap(tid: int, pdu: bytes, unit: int = icd.CELLQ_DEVICE_ID) -> bytes:
    """A Modbus/TCP frame: transaction id, protocol 0, length, unit id, PDU."""
    return struct.pack(">HHHB", tid, 0, len(pdu) + 1, unit) + pdu


def read_pdu(address: int, count: int, fc: int = icd.FC_READ_INPUT) -> bytes:
    return struct.pack(">BHH", fc, address, count)


def write_pdu(address: int, values: list[int], count: int | None = None) -> bytes:
    n = len(values) if count is None else count
    return struct.pack(f">BHHB{len(values)}H", 16, address, n, 2 * len(values), *values)


class RawTcp:
    """One TCP connection to the twin that sends bytes as given and reads whole MBAP
    answers (or the end of the connection)."""

    def __init__(self, reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
        self.reader, self.writer = reader, writer

    @classmethod
    async def open(cls, port: int) -> RawTcp:
        async with asyncio.timeout(HANG_GUARD):
            return cls(*await asyncio.open_connection("127.0.0.1", port))

    async def send(self, data: bytes) -> None:
        self.writer.write(data)
        await self.writer.drain()

    async def answer(self) -> tuple[int, int, bytes] | None:
        """(transaction id, unit, PDU) of the next answer; None when the twin closed."""
        async with asyncio.timeout(HANG_GUARD):
            try:
                head = await self.reader.readexactly(7)
                tid, pid, length, unit = struct.unpack(">HHHB", head)
                assert pid == 0 and 2 <= length <= 254, head
                return tid, unit, await self.reader.readexactly(length - 1)
            except (asyncio.IncompleteReadError, ConnectionResetError):
                return None

    async def ask(self, pdu: bytes, tid: int = 1) -> bytes | None:
        await self.send(mbap(tid, pdu))
        got = await self.answer()
        if got is None:
            return None
        assert got[0] == tid, got
        return got[2]

    def close(self) -> None:
        self.writer.close()
