"""kill -9 of `cellfab run` at random moments of a run of batches, restarted each time:
every batch ends as it does in a run that nobody killed (the same steps, programs,
attempts, jobs and outcome; no deviation but a lost link's), the shuttle started each
program and move once and only what the journal had announced, Cell Q created each job
once, and the journal verifies. One run takes several kills (a seed each); the instruments are
compared with the journal after every kill."""

from __future__ import annotations

import asyncio
import random
from collections.abc import Callable
from typing import Any

import pytest

from tests.durability.conftest import MakeScenario, seed_groups
from tests.durability.scenario import assert_same

SPAN = 60  # a kill lands within this many journal records of the (re)start


@pytest.mark.timeout(400)
@pytest.mark.parametrize("seeds", seed_groups(), ids=lambda s: f"seeds{s[0]}-{s[-1]}")
async def test_kill_9_at_random_moments(
    make_scenario: MakeScenario, reference: Callable[..., Any], seeds: tuple[int, ...]
) -> None:
    expected = await reference()
    scenario = make_scenario()
    async with scenario.running():
        await scenario.create()
        for seed in seeds:
            rng = random.Random(seed)
            if not await scenario.progress(rng.randint(1, SPAN)):
                break  # every batch ended first
            await asyncio.sleep(rng.random() * 0.02)
            await scenario.kill()
            await scenario.start()
        await scenario.until_final()
    got = await scenario.finish()
    assert scenario.kills >= 1
    assert_same(got, expected)
