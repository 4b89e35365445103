"""Fixtures of the durability suite: one cell of twins for the whole package (every
seed and every test kills its daemons against it), and a fresh scenario per run.

``CELLFAB_KILL_SEEDS`` (default 20) is how many random kill moments the default suite
tries, ``CELLFAB_SOAK_SEEDS`` (e.g. 200) replaces it for a soak; the kills are grouped
``KILLS_PER_RUN`` to a run of batches (a daemon start is the expensive part).
"""

from __future__ import annotations

import os
from collections.abc import Callable, Iterator
from pathlib import Path
from typing import Any, Final

import pytest

from tests.durability.rig import Rig, SiteFiles, open_rig, short_dir, site_file
from tests.durability.scenario import MIX, Order, Outcome, Scenario

KILLS_PER_RUN: Final = 4
SEEDS: Final = int(
    os.environ.get("CELLFAB_SOAK_SEEDS") or os.environ.get("CELLFAB_KILL_SEEDS") or "20"
)


def seed_groups(per_run: int = KILLS_PER_RUN) -> list[tuple[int, ...]]:
    """The seeds, ``per_run`` to a run: one kill moment each."""
    seeds = list(range(SEEDS))
    return [tuple(seeds[i : i + per_run]) for i in range(0, len(seeds), per_run)]


@pytest.fixture(scope="package")
def rig() -> Iterator[Rig]:
    with open_rig() as rig:
        yield rig


@pytest.fixture(scope="package")
def sockets() -> Iterator[Path]:
    with short_dir() as d:
        yield d


MakeScenario = Callable[..., Scenario]
_references: dict[str, list[Outcome]] = {}


@pytest.fixture
def make_scenario(
    rig: Rig, sockets: Path, tmp_path_factory: pytest.TempPathFactory
) -> Iterator[MakeScenario]:
    """``make_scenario(orders=MIX, operator=True, **site_changes)``: a run with its own
    journal and site; its daemon is killed at the end of the test if the test left it
    running."""
    made: list[Scenario] = []

    def make(orders: tuple[Order, ...] = MIX, *, operator: bool = True, **changes: Any) -> Scenario:
        folder = tmp_path_factory.mktemp("run")
        files: SiteFiles = site_file(rig, folder, sockets, **changes)
        scenario = Scenario(rig, files, orders, operator=operator)
        made.append(scenario)
        return scenario

    yield make
    for scenario in made:
        if scenario.daemon.alive:
            scenario.daemon.kill()


@pytest.fixture
def reference(make_scenario: MakeScenario) -> Callable[..., Any]:
    """``await reference(orders)``: what the batches of ``orders`` do in a run nobody
    kills (run once per package and order list, then remembered)."""

    async def outcomes(orders: tuple[Order, ...] = MIX) -> list[Outcome]:
        key = repr(orders)
        if key not in _references:
            scenario = make_scenario(orders)
            async with scenario.running():
                await scenario.create()
                await scenario.until_final()
            _references[key] = await scenario.finish()
        return _references[key]

    return outcomes
