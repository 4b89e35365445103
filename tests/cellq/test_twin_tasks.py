"""A twin's background task that crashes is logged at once and raised at stop
(simulators/tasks.py), here through the Cell Q twin's ticker."""

from __future__ import annotations

import asyncio

import pytest
from structlog.testing import capture_logs

from simulators.cellq import CellQTwin
from simulators.clock import Clock
from simulators.tasks import TaskOwner
from simulators.world import World
from tests.support import eventually


class BrokenEngine(CellQTwin):
    def advance(self) -> None:
        raise RuntimeError("job engine bug")


async def test_a_crashed_ticker_is_logged_and_raised_at_stop() -> None:
    twin = BrokenEngine(World(), Clock(1.0))
    with capture_logs() as logs:
        await twin.start()

        async def crashed() -> bool:
            return any(e["event"] == "twin task crashed" for e in logs)

        await eventually(crashed, "crash logged")
        with pytest.raises(RuntimeError, match="job engine bug"):
            await twin.stop()
    assert logs[0]["twin"] == "cellq" and "tick" in logs[0]["task"]


async def test_stop_cancels_running_tasks_and_forgets_finished_ones() -> None:
    owner = TaskOwner("t")
    owner.start(asyncio.sleep(3600), "sleeper")
    done = owner.start(asyncio.sleep(0), "quick")
    await done
    await asyncio.sleep(0)
    assert len(owner) == 1
    await owner.stop()
    assert len(owner) == 0
    await owner.stop()  # nothing left, nothing raised
