"""ISA-18.2 alarm states and events, and the transition table as data.

This module owns the table and nothing else: which state each event leads to, or that
the event is refused in that state. The alarm manager (``daemon.alarms.manager``) is
the only code that changes an alarm's state, and it reads this table; the tests check
it against their own copy written from the standard's text (never derived from this).

States (ISA-18.2 letters; ``active`` is the process condition, kept beside the state)::

    A normal              condition normal, acknowledged: the occurrence is over
    B unacknowledged      condition abnormal, not acknowledged
    C acknowledged        condition abnormal, acknowledged
    D rtn_unacknowledged  condition returned to normal before anyone acknowledged
    E latched             (latching alarms) condition normal, the alarm stays until an
                          operator acknowledges (resets) it
    F shelved             taken off the display by a supervisor for a limited time
                          (e-signed); unshelved at expiry
    G suppressed          suppressed by design: its unit is out of service in the site

Events: ``raise`` (the condition became abnormal), ``clear`` (it returned to normal),
``ack`` (a person acknowledges), ``shelve`` / ``unshelve`` (a supervisor; expiry),
``suppress`` / ``unsuppress`` (the site's design)::

    state   raise  clear      ack  shelve  unshelve  suppress  unsuppress
    A       B      A          -    -       -         G         -
    B       B      D (E*)     C    F       -         G         -
    C       C      A (E*)     -    F       -         G         -
    D       B      D          A    F       -         G         -
    E       B      E          A    F       -         G         -
    F       F      F          -    -       A+        G         -
    G       G      G          -    -       -         G         A+

``-`` refused; ``*`` for a latching alarm; ``+`` then re-evaluated: if the condition is
still abnormal, ``raise`` follows at once (A -> B), so an alarm that comes back from the
shelf or from suppression while its cause persists is annunciated again.
"""

from __future__ import annotations

from enum import StrEnum
from typing import Final


class AlarmState(StrEnum):
    NORMAL = "normal"
    UNACKNOWLEDGED = "unacknowledged"
    ACKNOWLEDGED = "acknowledged"
    RTN_UNACKNOWLEDGED = "rtn_unacknowledged"
    LATCHED = "latched"
    SHELVED = "shelved"
    SUPPRESSED = "suppressed"


class AlarmEvent(StrEnum):
    RAISE = "raise"
    CLEAR = "clear"
    ACK = "ack"
    SHELVE = "shelve"
    UNSHELVE = "unshelve"
    SUPPRESS = "suppress"
    UNSUPPRESS = "unsuppress"


S, E = AlarmState, AlarmEvent

TABLE: Final[dict[AlarmState, dict[AlarmEvent, AlarmState]]] = {
    S.NORMAL: {E.RAISE: S.UNACKNOWLEDGED, E.CLEAR: S.NORMAL, E.SUPPRESS: S.SUPPRESSED},
    S.UNACKNOWLEDGED: {
        E.RAISE: S.UNACKNOWLEDGED,
        E.CLEAR: S.RTN_UNACKNOWLEDGED,
        E.ACK: S.ACKNOWLEDGED,
        E.SHELVE: S.SHELVED,
        E.SUPPRESS: S.SUPPRESSED,
    },
    S.ACKNOWLEDGED: {
        E.RAISE: S.ACKNOWLEDGED,
        E.CLEAR: S.NORMAL,
        E.SHELVE: S.SHELVED,
        E.SUPPRESS: S.SUPPRESSED,
    },
    S.RTN_UNACKNOWLEDGED: {
        E.RAISE: S.UNACKNOWLEDGED,
        E.CLEAR: S.RTN_UNACKNOWLEDGED,
        E.ACK: S.NORMAL,
        E.SHELVE: S.SHELVED,
        E.SUPPRESS: S.SUPPRESSED,
    },
    S.LATCHED: {
        E.RAISE: S.UNACKNOWLEDGED,
        E.CLEAR: S.LATCHED,
        E.ACK: S.NORMAL,
        E.SHELVE: S.SHELVED,
        E.SUPPRESS: S.SUPPRESSED,
    },
    S.SHELVED: {
        E.RAISE: S.SHELVED,
        E.CLEAR: S.SHELVED,
        E.UNSHELVE: S.NORMAL,
        E.SUPPRESS: S.SUPPRESSED,
    },
    S.SUPPRESSED: {
        E.RAISE: S.SUPPRESSED,
        E.CLEAR: S.SUPPRESSED,
        E.SUPPRESS: S.SUPPRESSED,
        E.UNSUPPRESS: S.NORMAL,
    },
}

# a latching alarm does not return to normal by itself: the cause's clearing latches it
LATCHING: Final[dict[AlarmState, dict[AlarmEvent, AlarmState]]] = {
    S.UNACKNOWLEDGED: {E.CLEAR: S.LATCHED},
    S.ACKNOWLEDGED: {E.CLEAR: S.LATCHED},
}

# after these events the alarm is re-evaluated against its condition
REEVALUATE: Final = frozenset({E.UNSHELVE, E.UNSUPPRESS})
# the states an operator sees on the alarm list by default (not normal, not hidden)
STANDING: Final = frozenset({S.UNACKNOWLEDGED, S.ACKNOWLEDGED, S.RTN_UNACKNOWLEDGED, S.LATCHED})


def target(state: AlarmState, event: AlarmEvent, *, latching: bool = False) -> AlarmState | None:
    """Where ``event`` leads from ``state`` (None: refused in that state)."""
    if latching and (override := LATCHING.get(state, {}).get(event)) is not None:
        return override
    return TABLE[state].get(event)


def step(
    state: AlarmState, event: AlarmEvent, *, active: bool, latching: bool = False
) -> AlarmState | None:
    """``target``, then the re-evaluation of ``REEVALUATE`` events: an alarm whose
    condition is still abnormal is raised again at once."""
    after = target(state, event, latching=latching)
    if after is not None and event in REEVALUATE and active:
        after = target(after, E.RAISE, latching=latching)
    return after


def refusal(state: AlarmState, event: AlarmEvent) -> str:
    """Why ``event`` is refused in ``state``, naming what the state allows."""
    people = [e for e in (E.ACK, E.SHELVE) if e in TABLE[state]]
    allowed = ", ".join(people) or "no acknowledgement or shelving"
    return f"{event} is not allowed for an alarm that is {state} (allowed: {allowed})"
