"""The alarm state table against ISA-18.2's alarm states, written out by hand from the
standard's descriptions (never derived from ``daemon.alarms.states``): every state and
event pair, for latching and non-latching alarms, and the re-evaluation after
unshelving and unsuppressing."""

from __future__ import annotations

import pytest

from daemon.alarms.states import TABLE, AlarmEvent, AlarmState, refusal, step, target

A, B, C, D, E, F, G = (
    "normal",
    "unacknowledged",
    "acknowledged",
    "rtn_unacknowledged",
    "latched",
    "shelved",
    "suppressed",
)
EVENTS = ("raise", "clear", "ack", "shelve", "unshelve", "suppress", "unsuppress")

# ISA-18.2, the alarm states and their transitions, by hand:
# - Normal (A): process normal, alarm acknowledged. The process condition becoming
#   abnormal annunciates the alarm (A -> B). Nothing to acknowledge or shelve.
# - Unacknowledged (B): the operator acknowledges (B -> C); the process returns to
#   normal before acknowledgement (B -> D; a latching alarm latches instead, B -> E).
# - Acknowledged (C): the process returns to normal (C -> A; a latching alarm stays
#   latched until reset, C -> E).
# - Returned to normal unacknowledged (D): acknowledgement ends it (D -> A); the
#   condition coming back annunciates again (D -> B).
# - Latched (E): an operator reset ends it (E -> A); the condition coming back (E -> B).
# - Shelved (F): an alarm in B, C, D or E may be shelved by an authorised person;
#   unshelving (by the person or the time limit) returns it to A, where it is
#   re-evaluated. While shelved, condition changes do not annunciate.
# - Suppressed by design (G): by the design's logic from any state; unsuppressing
#   returns to A and re-evaluates. While suppressed nothing annunciates.
# "-" = refused (a person's action that does not apply), or no change for a
# condition event that does not change the state.
GRID = """
    state  raise  clear  ack  shelve  unshelve  suppress  unsuppress
    A      B      A      -    -       -         G         -
    B      B      D      C    F       -         G         -
    C      C      A      -    F       -         G         -
    D      B      D      A    F       -         G         -
    E      B      E      A    F       -         G         -
    F      F      F      -    -       A         G         -
    G      G      G      -    -       -         G         A
"""
LETTERS = {"A": A, "B": B, "C": C, "D": D, "E": E, "F": F, "G": G, "-": None}
_rows = [line.split() for line in GRID.strip().splitlines()]
NON_LATCHING: dict[str, dict[str, str | None]] = {
    LETTERS[row[0]]: {ev: LETTERS[cell] for ev, cell in zip(_rows[0][1:], row[1:], strict=True)}
    for row in _rows[1:]
}
LATCHING = {s: dict(row) for s, row in NON_LATCHING.items()}
LATCHING[B]["clear"] = E
LATCHING[C]["clear"] = E


def test_the_table_has_every_state_and_no_other() -> None:
    assert {str(s) for s in AlarmState} == set(NON_LATCHING)
    assert {str(e) for e in AlarmEvent} == set(EVENTS)
    assert {str(s) for s in TABLE} == set(NON_LATCHING)


@pytest.mark.parametrize("latching", [False, True])
@pytest.mark.parametrize("state", list(NON_LATCHING))
@pytest.mark.parametrize("event", EVENTS)
def test_every_state_and_event(state: str, event: str, latching: bool) -> None:
    want = (LATCHING if latching else NON_LATCHING)[state][event]
    got = target(AlarmState(state), AlarmEvent(event), latching=latching)
    assert (None if got is None else str(got)) == want, (state, event, latching)


@pytest.mark.parametrize("event", ["unshelve", "unsuppress"])
@pytest.mark.parametrize("latching", [False, True])
def test_coming_back_with_the_cause_present_annunciates_again(event: str, latching: bool) -> None:
    source = AlarmState.SHELVED if event == "unshelve" else AlarmState.SUPPRESSED
    ev = AlarmEvent(event)
    assert step(source, ev, active=True, latching=latching) is AlarmState.UNACKNOWLEDGED
    assert step(source, ev, active=False, latching=latching) is AlarmState.NORMAL


def test_a_latching_alarm_needs_a_reset_after_its_cause_clears() -> None:
    """Chain of identity: acknowledged while present, then the cause clears: it stays
    (latched) until someone acknowledges again."""
    s = AlarmState.NORMAL
    for event, want in [("raise", C and B), ("ack", C), ("clear", E), ("ack", A)]:
        s2 = step(s, AlarmEvent(event), active=event != "clear", latching=True)
        assert s2 is not None and str(s2) == want, (s, event)
        s = s2


def test_a_refusal_names_what_the_state_allows() -> None:
    assert "allowed: ack, shelve" in refusal(AlarmState.UNACKNOWLEDGED, AlarmEvent.UNSHELVE)
    assert "no acknowledgement" in refusal(AlarmState.NORMAL, AlarmEvent.ACK)
