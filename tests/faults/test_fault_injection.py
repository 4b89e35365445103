"""Every fault switch, observed with plain clients (raw sockets, pymodbus, pyserial)."""

from __future__ import annotations

import asyncio
import struct

import pytest
import serial
from pymodbus.client import AsyncModbusTcpClient
from pymodbus.exceptions import ConnectionException, ModbusIOException

from drivers import icd
from simulators.balance import BalanceTwin
from simulators.cellq import CellQTwin
from simulators.faults import FaultProxy, ModbusFault, ModbusFaults, SerialFaults
from tests.support import HANG_GUARD

QUIET = 0.2  # "nothing arrives" is checked over this long: a slow machine cannot fail it


def read_version_request(tid: int) -> bytes:
    """Modbus TCP: read input register 5 (ICD version) of device 1."""
    return struct.pack(">HHHBBHH", tid, 0, 6, icd.CELLQ_DEVICE_ID, 4, icd.IR_ICD_VERSION, 1)


def read_version_answer(tid: int) -> bytes:
    return struct.pack(">HHHBBBH", tid, 0, 5, icd.CELLQ_DEVICE_ID, 4, 2, icd.ICD_VERSION)


ANSWER_LEN = len(read_version_answer(0))


async def open_raw(port: int) -> tuple[asyncio.StreamReader, asyncio.StreamWriter]:
    async with asyncio.timeout(HANG_GUARD):
        return await asyncio.open_connection("127.0.0.1", port)


async def roundtrip(reader: asyncio.StreamReader, writer: asyncio.StreamWriter, tid: int) -> bytes:
    writer.write(read_version_request(tid))
    await writer.drain()
    async with asyncio.timeout(HANG_GUARD):
        return await reader.readexactly(ANSWER_LEN)


async def nothing_arrives(reader: asyncio.StreamReader) -> bool:
    try:
        async with asyncio.timeout(QUIET):
            data = await reader.read(1)
    except TimeoutError:
        return True
    return data == b""


def client(port: int, timeout: float = 3.0) -> AsyncModbusTcpClient:
    return AsyncModbusTcpClient("127.0.0.1", port=port, timeout=timeout, retries=0)


# --------------------------------------------------------------------------- FaultProxy


async def test_proxy_passes_modbus_traffic(proxy: FaultProxy) -> None:
    c = client(proxy.port)
    assert await c.connect()
    try:
        rr = await c.read_input_registers(0, count=icd.STATUS_REGS, device_id=1)
        assert not rr.isError() and rr.registers[icd.IR_ICD_VERSION] == 1
    finally:
        c.close()
    assert proxy.counters.connections_accepted == 1
    assert proxy.counters.bytes_to_target == 12 and proxy.counters.bytes_to_client == 29


async def test_drop_connections_closes_every_client(proxy: FaultProxy) -> None:
    links = [await open_raw(proxy.port) for _ in range(3)]
    for i, (reader, writer) in enumerate(links):
        assert await roundtrip(reader, writer, i) == read_version_answer(i)
    assert proxy.connections == 3
    assert await proxy.drop_connections() == 3
    for reader, _writer in links:
        async with asyncio.timeout(HANG_GUARD):
            assert await reader.read() == b""  # EOF: the proxy closed it
    assert proxy.counters.connections_dropped == 3 and proxy.connections == 0
    # New connections work at once.
    reader, writer = await open_raw(proxy.port)
    assert await roundtrip(reader, writer, 9) == read_version_answer(9)
    writer.close()


async def test_pymodbus_client_sees_a_drop_and_can_reconnect(proxy: FaultProxy) -> None:
    c = client(proxy.port, timeout=1.0)
    assert await c.connect()
    try:
        rr = await c.read_input_registers(icd.IR_ICD_VERSION, count=1, device_id=1)
        assert rr.registers == [1]  # the proxy has surely accepted it now
        assert await proxy.drop_connections() == 1
        # pymodbus notices the close and reconnects by itself (reconnect_delay); requests
        # in between fail. Wait for a new connection through the proxy and an answer.
        answer = None
        async with asyncio.timeout(HANG_GUARD):
            while answer is None or proxy.counters.connections_accepted < 2:
                try:
                    rr = await c.read_input_registers(icd.IR_ICD_VERSION, count=1, device_id=1)
                    answer = rr.registers
                except (ModbusIOException, ConnectionException):
                    await asyncio.sleep(0.01)
        assert answer == [1]
    finally:
        c.close()
    assert proxy.counters.connections_dropped == 1
    assert proxy.counters.connections_accepted >= 2


async def test_stall_holds_traffic_until_released(proxy: FaultProxy) -> None:
    reader, writer = await open_raw(proxy.port)
    await proxy.stall(None)
    writer.write(read_version_request(1))
    await writer.drain()
    assert await nothing_arrives(reader)
    await proxy.clear()
    async with asyncio.timeout(HANG_GUARD):
        assert await reader.readexactly(ANSWER_LEN) == read_version_answer(1)
    # A timed stall releases by itself.
    await proxy.stall(0.1)
    assert await roundtrip(reader, writer, 2) == read_version_answer(2)
    assert proxy.counters.stalls == 2
    writer.close()


async def test_slow_delays_every_chunk(proxy: FaultProxy) -> None:
    reader, writer = await open_raw(proxy.port)
    await proxy.slow(0.02)
    assert await roundtrip(reader, writer, 1) == read_version_answer(1)
    assert proxy.counters.chunks_delayed == 2  # the request and its answer
    await proxy.slow(0)
    assert await roundtrip(reader, writer, 2) == read_version_answer(2)
    assert proxy.counters.chunks_delayed == 2
    writer.close()


async def test_garbage_replaces_or_precedes_the_next_answer(proxy: FaultProxy) -> None:
    reader, writer = await open_raw(proxy.port)
    await proxy.garbage(9)
    writer.write(read_version_request(1))
    await writer.drain()
    async with asyncio.timeout(HANG_GUARD):
        junk = await reader.readexactly(9)
    assert junk != read_version_answer(1)[:9]
    assert await nothing_arrives(reader)  # the real answer was replaced
    assert proxy.counters.frames_corrupted == 1
    assert await roundtrip(reader, writer, 2) == read_version_answer(2)  # only the next one

    await proxy.garbage(4, replace=False)
    writer.write(read_version_request(3))
    await writer.drain()
    async with asyncio.timeout(HANG_GUARD):
        data = await reader.readexactly(4 + ANSWER_LEN)
    assert data[4:] == read_version_answer(3)
    assert proxy.counters.frames_corrupted == 2
    writer.close()


async def test_a_pymodbus_client_survives_a_garbage_answer(proxy: FaultProxy) -> None:
    c = client(proxy.port, timeout=0.5)
    assert await c.connect()
    try:
        await proxy.garbage(12)
        with pytest.raises(ModbusIOException):
            rr = await c.read_input_registers(icd.IR_ICD_VERSION, count=1, device_id=1)
            assert rr.isError()  # a garbage frame must not pass as an answer
            raise ModbusIOException("error answer")
        async with asyncio.timeout(HANG_GUARD):
            while not c.connected:
                await c.connect()
        rr = await c.read_input_registers(icd.IR_ICD_VERSION, count=1, device_id=1)
        assert rr.registers == [1]
    finally:
        c.close()
    assert proxy.counters.frames_corrupted == 1


async def test_hold_request_keeps_it_from_the_target_until_released(
    proxy: FaultProxy, cellq: CellQTwin
) -> None:
    reader, writer = await open_raw(proxy.port)
    request = read_version_request(7)
    await proxy.hold_request_with(request[:2])  # the transaction id: this request only
    writer.write(request)
    await writer.drain()
    assert await nothing_arrives(reader)
    assert proxy.counters.requests_held == 1 and proxy.counters.bytes_to_target == 0
    await proxy.release()
    async with asyncio.timeout(HANG_GUARD):
        assert await reader.readexactly(ANSWER_LEN) == read_version_answer(7)
    assert await roundtrip(reader, writer, 8) == read_version_answer(8)  # once only
    # held, then the connection closes: the target never sees it
    await proxy.hold_request_with(read_version_request(9)[:2])
    writer.write(read_version_request(9))
    await writer.drain()
    assert await nothing_arrives(reader)
    assert await proxy.drop_connections() == 1
    assert proxy.counters.bytes_to_target == 2 * len(request)
    writer.close()


async def test_hold_answer_lets_the_request_through_and_keeps_its_answer(
    proxy: FaultProxy, cellq: CellQTwin
) -> None:
    reader, writer = await open_raw(proxy.port)
    base = icd.slot_base(15) + icd.HR_PANEL
    write = struct.pack(">HHHBBHH", 5, 0, 6, icd.CELLQ_DEVICE_ID, 6, base, 3)  # panel := 3
    await proxy.hold_answer_to(write[:2])
    writer.write(write)
    await writer.drain()
    assert await nothing_arrives(reader)
    assert proxy.counters.answers_held == 1
    c = client(cellq.port)  # straight to the twin: the write was carried out
    assert await c.connect()
    try:
        rr = await c.read_holding_registers(base, count=1, device_id=1)
        assert rr.registers == [3]
        await proxy.release()
        async with asyncio.timeout(HANG_GUARD):
            assert await reader.readexactly(len(write)) == write  # FC 06 echoes the request
        await c.write_register(base, 0, device_id=1)
    finally:
        c.close()
    # held, then the connection closes: the answer is never delivered
    await proxy.hold_answer_to(read_version_request(6)[:2])
    writer.write(read_version_request(6))
    await writer.drain()
    assert await nothing_arrives(reader)
    assert await proxy.drop_connections() == 1
    async with asyncio.timeout(HANG_GUARD):
        assert await reader.read() == b""
    writer.close()


async def test_refuse_closes_the_port_and_reopens_it(proxy: FaultProxy) -> None:
    reader, writer = await open_raw(proxy.port)
    assert await roundtrip(reader, writer, 0) == read_version_answer(0)  # accepted for sure
    port = proxy.port
    await proxy.refuse(True)
    with pytest.raises(ConnectionRefusedError):
        await open_raw(port)
    # Connections made before stay up (the instrument stopped accepting, it did not die).
    assert await roundtrip(reader, writer, 1) == read_version_answer(1)
    await proxy.refuse(False)
    assert proxy.port == port
    r2, w2 = await open_raw(port)
    assert await roundtrip(r2, w2, 2) == read_version_answer(2)
    for w in (writer, w2):
        w.close()


async def test_proxy_to_a_target_that_is_gone_closes_the_client() -> None:
    # Find a closed port: bind, note it, close.
    server = await asyncio.start_server(lambda r, w: None, "127.0.0.1", 0)
    dead_port = server.sockets[0].getsockname()[1]
    server.close()
    await server.wait_closed()
    proxy = FaultProxy("127.0.0.1", dead_port)
    await proxy.start()
    try:
        reader, writer = await open_raw(proxy.port)
        async with asyncio.timeout(HANG_GUARD):
            assert await reader.read() == b""
        writer.close()
        assert proxy.counters.upstream_failures == 1
    finally:
        await proxy.stop()


# --------------------------------------------------------------------------- ModbusFaults


async def test_modbus_exception_for_the_next_n_requests(cellq: CellQTwin) -> None:
    c = client(cellq.port)
    assert await c.connect()
    try:
        cellq.faults.exception(icd.EXC_DEVICE_BUSY, count=2)
        for _ in range(2):
            rr = await c.read_input_registers(0, count=1, device_id=1)
            assert rr.isError() and rr.exception_code == icd.EXC_DEVICE_BUSY
        rr = await c.read_input_registers(icd.IR_ICD_VERSION, count=1, device_id=1)
        assert rr.registers == [1]
        assert cellq.faults.exceptions_sent == 2
        # Until cleared; a refused write changes nothing.
        cellq.faults.exception(icd.EXC_DEVICE_FAILURE, count=None)
        for _ in range(3):
            rr = await c.write_register(icd.slot_base(0) + icd.HR_PANEL, 3, device_id=1)
            assert rr.isError() and rr.exception_code == icd.EXC_DEVICE_FAILURE
        cellq.faults.clear()
        rr = await c.read_holding_registers(icd.slot_base(0) + icd.HR_PANEL, count=1, device_id=1)
        assert rr.registers == [0]
    finally:
        c.close()


async def test_modbus_silence_and_slow_answers(cellq: CellQTwin) -> None:
    c = client(cellq.port, timeout=0.5)
    assert await c.connect()
    try:
        cellq.faults.silence(1)
        async with asyncio.timeout(HANG_GUARD):
            with pytest.raises(ModbusIOException):
                await c.read_input_registers(0, count=1, device_id=1)
        assert cellq.faults.silenced == 1
        cellq.faults.slow(0.01)
        rr = await c.read_input_registers(icd.IR_ICD_VERSION, count=1, device_id=1)
        assert rr.registers == [1]
        assert cellq.faults.delayed == 1
    finally:
        c.close()


def test_modbus_faults_validate_their_arguments() -> None:
    faults = ModbusFaults()
    with pytest.raises(ValueError):
        faults.exception(0)
    with pytest.raises(ValueError):
        faults.slow(-1)
    with pytest.raises(ValueError):
        faults.lose_answers(0)
    assert faults.take() == ModbusFault()


# --------------------------------------------------------------------------- SerialFaults


def _port(balance: BalanceTwin) -> serial.Serial:
    return serial.Serial(balance.port_path, icd.BALANCE_BAUD, timeout=HANG_GUARD)


STABLE_ZERO = b"S S      0.000 g\r\n"


def test_serial_garbage_before_and_in_place_of_answers(balance: BalanceTwin) -> None:
    faults = balance.faults
    with _port(balance) as port:
        faults.garbage(6)
        port.write(b"S\r\n")
        data = port.read(6 + len(STABLE_ZERO))
        assert data[6:] == STABLE_ZERO and data[:6] != STABLE_ZERO[:6]
        port.write(b"S\r\n")
        assert port.read(len(STABLE_ZERO)) == STABLE_ZERO  # count=1: only the next one
        faults.garbage(5, count=2, replace=True)
        port.write(b"S\r\nS\r\nS\r\n")
        data = port.read(10 + len(STABLE_ZERO))
        assert data[10:] == STABLE_ZERO
    assert faults.answers_corrupted == 3


def test_serial_stall_and_slow(balance: BalanceTwin) -> None:
    faults: SerialFaults = balance.faults
    with _port(balance) as port:
        faults.stall(0.1)
        port.write(b"S\r\nZ\r\n")
        assert port.read_until(b"\r\n") == STABLE_ZERO  # answered, in order, after it
        assert port.read_until(b"\r\n") == b"Z A\r\n"
        assert faults.stalls == 1
        faults.slow(0.01)
        port.write(b"SI\r\n")
        assert port.read_until(b"\r\n") == STABLE_ZERO
        assert faults.answers_delayed == 1
        faults.clear()
        port.write(b"SI\r\n")
        assert port.read_until(b"\r\n") == STABLE_ZERO
        assert faults.answers_delayed == 1
