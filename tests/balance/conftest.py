"""The balance MT-SICS tests: twins from tests/support/balance.py (one per test, on the
session's balance loop), each on a fresh world."""

from __future__ import annotations

import pytest

from simulators.world import World


@pytest.fixture
def world() -> World:
    return World(seed=5)
