"""Fixtures of the recipe language tests: where the library and the invalid fixtures are."""

from __future__ import annotations

from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parents[2]
RECIPES = ROOT / "recipes"
FIXTURES = Path(__file__).resolve().parent / "fixtures"
LIBRARY = sorted(RECIPES.glob("*.yaml"))
INVALID = sorted(FIXTURES.glob("*.yaml"))


@pytest.fixture(scope="session")
def lentiviral_text() -> str:
    return (RECIPES / "car_t_lentiviral.yaml").read_text()
