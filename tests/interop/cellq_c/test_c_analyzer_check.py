"""The third-party client check (cellq_check.c) against the C analyzer (cellq_analyzer.c).

Both are written from the ICD 1.1 text alone, on libmodbus, and share no code: where
they agree, the ICD was read one way twice. The analyzer has no shuttle, so the check
draws its samples through the proposed twin extension (holding registers 904..911).
"""

from __future__ import annotations

from collections.abc import Callable
from typing import Any


def test_client_check_passes_against_the_c_analyzer(
    c_programs: Any, c_analyzer: str, run_program: Callable[..., Any]
) -> None:
    result = run_program([str(c_programs.check), c_analyzer, "--draw-via-904"])
    assert result.returncode == 0, "\n".join(result.lines("FAIL"))
    assert not result.lines("FAIL") and not result.lines("SKIP")
    assert result.output.strip().splitlines()[-1].endswith("0 failed, 0 skipped")
