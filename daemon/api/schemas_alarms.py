"""The alarms' bodies (``/alarms``): acknowledgement, shelving, and the alarm as read.

Requests are strict like every request of the API (``daemon.api.schemas``): unknown
fields refused, strings bounded, numbers as JSON numbers. Shelving is an electronic
signature (meaning ``shelved``): ``password`` is re-entered.
"""

from __future__ import annotations

from typing import Annotated

from pydantic import Field

from daemon.alarms.manager import MAX_SHELVE_S
from daemon.alarms.states import AlarmState
from daemon.api.schemas import Password, Reason, _In, _Out


class AckIn(_In):
    reason: Reason


class ShelveIn(_In):
    """A supervisor takes the alarm off the display for ``duration_s`` seconds."""

    duration_s: Annotated[int, Field(ge=1, le=MAX_SHELVE_S, description="How long, in seconds")]
    reason: Reason
    password: Password


class ChangeOut(_Out):
    seq: int
    at: str
    event: str
    old: str
    new: str
    by: str
    reason: str
    signed_by: str


class AlarmOut(_Out):
    """An alarm and what it is tied to ("" where that does not apply)."""

    alarm_id: str
    kind: str
    priority: str = Field(description="critical, high, medium or low")
    latching: bool
    state: AlarmState
    active: bool = Field(description="The cause is present now")
    message: str
    batch_id: str
    step: str
    unit: str
    instrument: str
    cartridge_id: str
    task_id: str
    user: str
    raised_at: str
    changed_at: str
    shelved_until_utc: str
    acked_by: str
    history: list[ChangeOut]
