"""The test process's heap: what a session fixture built is frozen out of the cyclic
garbage collector once built (``daemon.ops.heap``, decision 0108).

Session fixtures (the twins above all) live until the session ends. An asyncua twin is
some 400 000 objects; with a few of them live, every full collection stopped all threads
for 1-2 s, which at the tests' time scale (20 000) is 5-10 process hours: in the CI run of
stop 14 a qc_only batch was held for its 4 h step timeout before its assays could use it.

When a module ends, its fixtures (some with twins of their own) are garbage: they are
collected then, between tests, not at the next full collection during some later test
(650 ms in the middle of an engine test, measured).

A plugin (``pytest_plugins`` in tests/conftest.py), not a conftest hook: pytest asks the
session node's hooks for session fixtures, and tests/conftest.py is not one of them.
"""

from __future__ import annotations

import gc
from collections.abc import Iterator
from typing import Any

import pytest

from daemon.ops.heap import freeze_built


@pytest.hookimpl(hookwrapper=True)
def pytest_runtest_teardown(item: pytest.Item, nextitem: pytest.Item | None) -> Iterator[None]:
    yield  # the module's fixtures are finalized and released by now
    if nextitem is None or getattr(nextitem, "module", None) is not getattr(item, "module", None):
        gc.collect()


@pytest.hookimpl(hookwrapper=True)
def pytest_fixture_setup(fixturedef: pytest.FixtureDef[Any]) -> Iterator[None]:
    yield
    if fixturedef.scope == "session":
        freeze_built()
