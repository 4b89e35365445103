"""Closing the Modbus driver while a request is in flight.

``make demo`` used to end with pymodbus' warning "received pdu without a
corresponding request": closing the driver cancelled the supervisor in the middle of a
poll, and the answer, arriving before the connection closed, found no request waiting.
The driver now closes only after the request in flight has its answer (or its
timeout), so the answer is always taken by the request that asked for it.
"""

from __future__ import annotations

import logging

import pytest

from drivers.modbus import ModbusAnalyzer, ModbusSettings, TcpEndpoint
from tests.support import eventually
from tests.support.cellq import CellQRig


async def test_close_waits_for_the_answer_of_the_poll_in_flight(
    cellq_rig: CellQRig, caplog: pytest.LogCaptureFixture
) -> None:
    twin = cellq_rig.reset()
    settings = ModbusSettings(poll_interval=0.01, timeout=2.0)
    caplog.set_level(logging.WARNING)
    async with ModbusAnalyzer("cellq-close", TcpEndpoint("127.0.0.1", twin.port), settings):
        twin.faults.slow(0.3)  # every answer from now on takes 0.3 s
        delayed = twin.faults.delayed

        async def in_flight() -> int:
            return twin.faults.delayed

        await eventually(in_flight, "a poll in flight", lambda n: n > delayed)
        executed = twin.requests  # the twin counts a request once it has carried it out
    # Leaving the block waited for that request's answer: it was carried out and
    # answered before the connection closed, and nothing was left unanswered.
    assert twin.requests > executed
    twin.faults.clear()
    assert not [r for r in caplog.records if "without a corresponding request" in r.getMessage()]
