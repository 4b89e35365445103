"""Third-party client checks of ``cellfab sim``, written from the ICD 1.1 text alone.

Issue #7 is done "when `cellfab sim` passes a third-party client check written from the
1.1 text alone". The checks are programs that share nothing with cellfab: cellq_check.c
(C, libmodbus and a plain socket) for Cell Q, balance_check.py (Python standard library
only, termios) for the balance. ``cellfab sim`` runs as a user runs it; the samples that
Cell Q must know are drawn through the shuttle with asyncua (draw_samples.py), as a
cell would draw them. Every rule must pass.
"""

from __future__ import annotations

import sys
from collections.abc import Callable
from pathlib import Path
from typing import Any

HERE = Path(__file__).parent
SAMPLES = 7  # enough for every rule that needs a drawn sample


def _rule(line: str) -> str:
    """The rule's name in a report line ``VERDICT  SECTION  name[: detail]``."""
    return line[21:].split(": ", 1)[0]


def test_cellq_client_check_against_cellfab_sim(
    c_programs: Any, cellfab_sim: Any, run_program: Callable[..., Any]
) -> None:
    drawn = run_program(
        [sys.executable, str(HERE / "draw_samples.py"), cellfab_sim.shuttle, str(SAMPLES), "IQ"]
    )
    assert drawn.returncode == 0, drawn.output
    samples = [line for line in drawn.output.splitlines() if line.startswith("IQS")]
    assert len(samples) == SAMPLES, drawn.output
    result = run_program([str(c_programs.check), cellfab_sim.cellq, *samples])
    failed = [_rule(line) for line in result.lines("FAIL")]
    assert not failed, "rules failed:\n" + "\n".join(failed)
    assert not result.lines("SKIP"), result.lines("SKIP")
    assert result.returncode == 0


def test_balance_client_check_against_cellfab_sim(
    cellfab_sim: Any, run_program: Callable[..., Any]
) -> None:
    result = run_program([sys.executable, str(HERE / "balance_check.py"), cellfab_sim.balance])
    assert result.returncode == 0, "\n".join(result.lines("FAIL"))
    assert not result.lines("FAIL")
    assert result.lines("PASS")
