"""The ISA-88 table of issue #9, written out here by hand from the issue's text (not
derived from daemon.batch.states), checked pair by pair against the code's table."""

from __future__ import annotations

import pytest

from daemon.batch.states import DONE, TRANSITIONS, BatchState, Command, refusal, target

# | state | done | Start | Stop | Hold | Restart | Abort | Reset | Pause | Resume |
ISSUE_TABLE = """
Idle | - | Running | - | - | - | - | - | - | -
Running | Complete | - | Stopping | Holding | - | Aborting | - | Pausing | -
Pausing | Paused | - | Stopping | Holding | - | Aborting | - | - | -
Paused | - | - | Stopping | Holding | - | Aborting | - | - | Running
Holding | Held | - | Stopping | - | - | Aborting | - | - | -
Held | - | - | Stopping | - | Restarting | Aborting | - | - | -
Restarting | Running | - | Stopping | Holding | - | Aborting | - | - | -
Stopping | Stopped | - | - | - | - | Aborting | - | - | -
Aborting | Aborted | - | - | - | - | - | - | - | -
Complete | - | - | - | - | - | - | Idle | - | -
Stopped | - | - | - | - | - | - | Idle | - | -
Aborted | - | - | - | - | - | - | Idle | - | -
"""
COLUMNS = ["Start", "Stop", "Hold", "Restart", "Abort", "Reset", "Pause", "Resume"]


def _rows() -> dict[str, list[str]]:
    rows = {}
    for line in ISSUE_TABLE.strip().splitlines():
        cells = [c.strip() for c in line.split("|")]
        rows[cells[0]] = cells[1:]
    return rows


ROWS = _rows()


def test_every_state_is_in_the_issue_table() -> None:
    assert set(ROWS) == {s.value for s in BatchState}
    assert COLUMNS == [c.value for c in Command]


@pytest.mark.parametrize("state", list(ROWS))
@pytest.mark.parametrize("command", COLUMNS)
def test_each_state_command_pair(state: str, command: str) -> None:
    expected = ROWS[state][1 + COLUMNS.index(command)]
    got = target(BatchState(state), Command(command))
    if expected == "-":
        assert got is None
        why = refusal(BatchState(state), Command(command))
        assert f"{command} is not allowed in state {state}" in why
    else:
        assert got == BatchState(expected)


@pytest.mark.parametrize("state", list(ROWS))
def test_done_column(state: str) -> None:
    expected = ROWS[state][0]
    got = DONE.get(BatchState(state))
    assert (got.value if got else "-") == expected


def test_refusal_names_what_is_allowed() -> None:
    assert refusal(BatchState.HELD, Command.PAUSE).endswith("(allowed: Stop, Restart, Abort)")
    assert refusal(BatchState.ABORTING, Command.STOP).endswith("(allowed: none)")
    assert all(isinstance(v, dict) for v in TRANSITIONS.values())
