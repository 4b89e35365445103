"""ISA-88 batch states and commands, and the transition table as data.

This module owns the table of issue #9 exactly, and nothing else: which command each
state accepts, where it leads, and where each transient state goes when its work is
done. The reducer (``daemon.batch.machine``) is the only code that changes a batch's
state, and it reads this table; the tests check it against their own copy of the
issue's table, written out by hand (never derived from this one).

::

    state       done       Start    Stop      Hold     Restart     Abort     Reset  Pause    Resume
    Idle                   Running
    Running     Complete            Stopping  Holding              Aborting         Pausing
    Pausing     Paused              Stopping  Holding              Aborting
    Paused                          Stopping  Holding              Aborting                  Running
    Holding     Held                Stopping                       Aborting
    Held                            Stopping           Restarting  Aborting
    Restarting  Running             Stopping  Holding              Aborting
    Stopping    Stopped                                            Aborting
    Aborting    Aborted
    Complete, Stopped, Aborted                                               Idle

"done" is not a command: it is the end of a transient state's work (the program is
held on the instrument, the step boundary reached, ...), or, for Running, the end of
the procedure.
"""

from __future__ import annotations

from enum import StrEnum
from typing import Final


class BatchState(StrEnum):
    IDLE = "Idle"
    RUNNING = "Running"
    PAUSING = "Pausing"
    PAUSED = "Paused"
    HOLDING = "Holding"
    HELD = "Held"
    RESTARTING = "Restarting"
    STOPPING = "Stopping"
    STOPPED = "Stopped"
    ABORTING = "Aborting"
    ABORTED = "Aborted"
    COMPLETE = "Complete"


class Command(StrEnum):
    START = "Start"
    STOP = "Stop"
    HOLD = "Hold"
    RESTART = "Restart"
    ABORT = "Abort"
    RESET = "Reset"
    PAUSE = "Pause"
    RESUME = "Resume"


S, C = BatchState, Command

TRANSITIONS: Final[dict[BatchState, dict[Command, BatchState]]] = {
    S.IDLE: {C.START: S.RUNNING},
    S.RUNNING: {C.STOP: S.STOPPING, C.HOLD: S.HOLDING, C.ABORT: S.ABORTING, C.PAUSE: S.PAUSING},
    S.PAUSING: {C.STOP: S.STOPPING, C.HOLD: S.HOLDING, C.ABORT: S.ABORTING},
    S.PAUSED: {C.STOP: S.STOPPING, C.HOLD: S.HOLDING, C.ABORT: S.ABORTING, C.RESUME: S.RUNNING},
    S.HOLDING: {C.STOP: S.STOPPING, C.ABORT: S.ABORTING},
    S.HELD: {C.STOP: S.STOPPING, C.RESTART: S.RESTARTING, C.ABORT: S.ABORTING},
    S.RESTARTING: {C.STOP: S.STOPPING, C.HOLD: S.HOLDING, C.ABORT: S.ABORTING},
    S.STOPPING: {C.ABORT: S.ABORTING},
    S.ABORTING: {},
    S.COMPLETE: {C.RESET: S.IDLE},
    S.STOPPED: {C.RESET: S.IDLE},
    S.ABORTED: {C.RESET: S.IDLE},
}

DONE: Final[dict[BatchState, BatchState]] = {
    S.RUNNING: S.COMPLETE,
    S.PAUSING: S.PAUSED,
    S.HOLDING: S.HELD,
    S.RESTARTING: S.RUNNING,
    S.STOPPING: S.STOPPED,
    S.ABORTING: S.ABORTED,
}

FINAL: Final = frozenset({S.COMPLETE, S.STOPPED, S.ABORTED})
# States in which the procedure advances from step to step.
ADVANCING: Final = frozenset({S.RUNNING, S.PAUSING})
# States in which a batch's cartridge and instruments are still in its care.
ACTIVE: Final = frozenset(BatchState) - FINAL - {S.IDLE}


def target(state: BatchState, command: Command) -> BatchState | None:
    """Where ``command`` leads from ``state``, or None when the state does not allow it."""
    return TRANSITIONS[state].get(command)


def refusal(state: BatchState, command: Command) -> str:
    """Why ``command`` is refused in ``state``, naming the commands that are allowed."""
    allowed = ", ".join(TRANSITIONS[state]) or "none"
    return f"{command} is not allowed in state {state} (allowed: {allowed})"
