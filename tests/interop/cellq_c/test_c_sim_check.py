"""Third-party client checks of ``cellfab sim``, written from the ICD 1.1 text alone.

Issue #7 is done "when `cellfab sim` passes a third-party client check written from the
1.1 text alone". The checks are programs that share nothing with cellfab: cellq_check.c
(C, libmodbus and a plain socket) for Cell Q, balance_check.py (Python standard library
only, termios) for the balance. ``cellfab sim`` runs as a user runs it; the samples that
Cell Q must know are drawn through the shuttle with asyncua (draw_samples.py), as a
cell would draw them.

PENDING_1_1 names the 1.1 rules that today's Cell Q twin does not meet yet; another
helper brings the twin to 1.1. While only those fail, the Cell Q check is reported as an
expected failure naming them; any other failing rule fails the test. Empty the tuple
once the 1.1 twin is merged.
"""

from __future__ import annotations

import sys
from collections.abc import Callable
from pathlib import Path
from typing import Any

import pytest

HERE = Path(__file__).parent
SAMPLES = 7  # enough for every rule that needs a drawn sample

# Families of ICD 1.1 rules (names as cellq_check prints them) waiting for the 1.1 twin.
PENDING_1_1: tuple[str, ...] = (
    "1.1 function ",  # codes other than 03/04/06/16: 01 (today: 02, or a normal answer)
    "1.1 a read of 0 ",  # 03 (today: function 0x80 exception 01)
    "1.1 a read of 126 ",  # 03 (today: function 0x80 exception 01)
    "1.1 a write of part of a value ",  # 03 (today: accepted)
    "1.1 the refused partial writes ",  # (today: they were written)
    "1.1 four requests sent back to back ",  # (today: only the first is answered)
    "1.1 an unparsable frame ",  # closes the connection (today: left open and silent)
    "1.1 the jobs counter ",  # IR 900..901 (today: 0)
    "1.1 a submit of a JobSeq another slot holds ",  # 03 (today: a second job)
    "1.1 while faulted, a JobSeq another slot holds ",  # 03 before 04 (today: 04)
    "1.1 a time scale outside 0.001..1e7",  # 03 (today: 0.0005 and 2e7 accepted)
)


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
    unexpected = [name for name in failed if not name.startswith(PENDING_1_1)]
    assert not unexpected, "rules failing beyond the pending 1.1 ones:\n" + "\n".join(unexpected)
    assert not result.lines("SKIP"), result.lines("SKIP")
    met = [p for p in PENDING_1_1 if not any(name.startswith(p) for name in failed)]
    if met:
        print("pending 1.1 rules the twin now meets (remove them from PENDING_1_1):", met)
    if failed:
        pytest.xfail(
            f"{len(failed)} ICD 1.1 rules wait for the 1.1 Cell Q twin (issue #7): "
            + "; ".join(failed)
        )
    assert result.returncode == 0


def test_balance_client_check_against_cellfab_sim(
    cellfab_sim: Any, run_program: Callable[..., Any]
) -> None:
    result = run_program([sys.executable, str(HERE / "balance_check.py"), cellfab_sim.balance])
    assert result.returncode == 0, "\n".join(result.lines("FAIL"))
    assert not result.lines("FAIL")
    assert result.lines("PASS")
