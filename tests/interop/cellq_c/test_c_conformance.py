"""Our Cell Q conformance suite against an analyzer on another Modbus stack.

The suite (tests/conformance/cellq) runs as a user runs it against a real instrument,
``python -m pytest tests/conformance/cellq`` with ``CELLFAB_CELLQ_ADDR=host:port``, in a
subprocess, here pointed at the libmodbus analyzer written in C from the ICD text alone
(cellq_analyzer.c). Tests that need what only our twin has (its world, its injected
faults) skip there with their reason; the run must have no failure and no error.
"""

from __future__ import annotations

import os
import re
import sys
from collections.abc import Callable
from typing import Any


def _count(summary: str, word: str) -> int:
    found = re.search(rf"(\d+) {word}", summary)
    return int(found.group(1)) if found else 0


def test_conformance_suite_passes_against_the_c_analyzer(
    c_analyzer: str, run_program: Callable[..., Any]
) -> None:
    env = {**os.environ, "CELLFAB_CELLQ_ADDR": c_analyzer}
    result = run_program(
        [
            sys.executable,
            "-m",
            "pytest",
            "tests/conformance/cellq",
            "-q",
            "-rs",
            "-p",
            "no:cacheprovider",
        ],
        env=env,
    )
    summary = result.output.strip().splitlines()[-1]
    passed, skipped = _count(summary, "passed"), _count(summary, "skipped")
    failed, errors = _count(summary, "failed"), _count(summary, r"errors?")
    print(f"conformance against the C analyzer: {passed} ran and passed, {skipped} skipped")
    assert result.returncode == 0, summary
    assert failed == 0 and errors == 0, summary
    assert passed > 0, summary
