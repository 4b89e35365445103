"""Fixtures of the serial driver tests: a scripted balance on a pty and a driver on it."""

from __future__ import annotations

from collections.abc import AsyncIterator

import pytest
from scripted_balance import Scripted

from drivers.serial import BalanceSettings, SerialBalance


@pytest.fixture
async def line() -> AsyncIterator[Scripted]:
    scripted = Scripted()
    yield scripted
    scripted.close()


@pytest.fixture
async def balance(line: Scripted) -> AsyncIterator[SerialBalance]:
    async with SerialBalance("bal", line.pty.path, BalanceSettings(timeout=0.3)) as bal:
        yield bal
