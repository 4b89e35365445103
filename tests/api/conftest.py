"""The API suite's daemon offers tests/api/recipes beside the library (confirm_gate)."""

from __future__ import annotations

from pathlib import Path

import pytest

RECIPES = Path(__file__).parent / "recipes"


@pytest.fixture(scope="module")
def daemon_recipes() -> tuple[Path, ...]:
    return (RECIPES,)
