"""Alarm kinds: what raises an alarm, its priority, whether it latches, what clears it.

This module owns the documented mapping (decision 0121) from a cause to an alarm kind:
the engine's deviations (``Deviation.kind``, ``daemon.batch.executor``) and the
security events of ``daemon.auth.security``. Priorities, highest first::

    critical   the patient's product or identity is at stake: act now
    high       the process has stopped or a limit was passed: act soon
    medium     the process needs a person's decision
    low        for information: the process goes on by its recipe

=================  ==============  ========  ========  ==============================
cause              alarm kind      priority  latching  returns to normal when
=================  ==============  ========  ========  ==============================
identity           identity        critical  yes       the batch is restarted or ends
contradiction      contradiction   critical  yes       the batch is restarted or ends
unit_fault         unit_fault      high      no        the unit's fault is cleared, or
                                                       the batch is restarted
link               link_lost       high      no        the link is back, or the batch
                                                       is restarted or ends
hold_max           hold_max        high      yes       at once (the wait is over; it
                                                       latches until acknowledged)
transport, move    transport       high      no        the batch is restarted or ends
timeout            timeout         medium    no        the batch is restarted or ends
hold_not_on_...,   deviation       medium    no        the batch is restarted or ends
unhold_failed, ...
account_locked     account_locked  high      no        an admin unlocks the account
(security)
guard, outputs,    step_fault      low       no        the batch is restarted or ends
max_visits, await,
start_refused
=================  ==============  ========  ========  ==============================

A deviation kind not named here is a ``deviation`` alarm (medium): every deviation is
seen by someone. "Restarted or ends": an accepted Restart, Stop, Abort or Reset after
the deviation, or the batch reaching a final state.
"""

from __future__ import annotations

from dataclasses import dataclass
from enum import StrEnum
from typing import Final

__all__ = ["PRIORITIES", "AlarmKind", "Clears", "for_deviation", "for_security"]

PRIORITIES: Final = ("critical", "high", "medium", "low")


class Clears(StrEnum):
    """What returns an alarm's condition to normal."""

    BATCH = "batch"  # an accepted Restart/Stop/Abort/Reset, or a final state
    LINK = "link"  # the instrument's link is up again (or BATCH)
    UNIT = "unit"  # the unit is no longer faulted (or BATCH's Restart)
    AT_ONCE = "at_once"  # a momentary cause: over as soon as it is recorded
    UNLOCK = "unlock"  # the account is unlocked


@dataclass(frozen=True, slots=True)
class AlarmKind:
    name: str
    priority: str
    latching: bool
    clears: Clears
    title: str


KINDS: Final[dict[str, AlarmKind]] = {
    k.name: k
    for k in (
        AlarmKind("identity", "critical", True, Clears.BATCH, "chain of identity mismatch"),
        AlarmKind("contradiction", "critical", True, Clears.BATCH, "journal and instrument differ"),
        AlarmKind("unit_fault", "high", False, Clears.UNIT, "unit fault"),
        AlarmKind("link_lost", "high", False, Clears.LINK, "lost link to an instrument"),
        AlarmKind("hold_max", "high", True, Clears.AT_ONCE, "cells waited past hold_max"),
        AlarmKind("transport", "high", False, Clears.BATCH, "transport fault"),
        AlarmKind("timeout", "medium", False, Clears.BATCH, "step timeout"),
        AlarmKind("deviation", "medium", False, Clears.BATCH, "deviation"),
        AlarmKind("account_locked", "high", False, Clears.UNLOCK, "account locked"),
        AlarmKind("step_fault", "low", False, Clears.BATCH, "step fault (on_fault decides)"),
    )
}

# Deviation.kind -> alarm kind (anything else: "deviation")
DEVIATIONS: Final[dict[str, str]] = {
    "identity": "identity",
    "contradiction": "contradiction",
    "unit_fault": "unit_fault",
    "link": "link_lost",
    "hold_max": "hold_max",
    "transport": "transport",
    "move": "transport",
    "timeout": "timeout",
    "guard": "step_fault",
    "outputs": "step_fault",
    "max_visits": "step_fault",
    "await": "step_fault",
    "start_refused": "step_fault",
}


def for_deviation(deviation_kind: str) -> AlarmKind:
    return KINDS[DEVIATIONS.get(deviation_kind, "deviation")]


def for_security(event_kind: str) -> AlarmKind | None:
    """The alarm a security event raises (only a lockout does)."""
    return KINDS["account_locked"] if event_kind == "account_locked" else None
