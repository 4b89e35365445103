"""Alarms: list, show, acknowledge (operator), shelve (supervisor, e-signed).

Every answer is read from the alarm manager (``daemon.alarms.manager``); every change
goes through it, which writes its audit row first. A change the alarm's state does not
allow is 409 naming what the state allows; shelving checks the password first
(``Directory.signer``, meaning shelved).
"""

from __future__ import annotations

from typing import Annotated, Any, Final

from fastapi import APIRouter, Path, Query

from daemon.alarms.manager import utc
from daemon.alarms.model import Alarm
from daemon.alarms.states import AlarmState
from daemon.api.access import SignedIn, acting_role
from daemon.api.routes import Api, signing_of
from daemon.api.schemas import ErrorOut
from daemon.api.schemas_alarms import AckIn, AlarmOut, ShelveIn
from daemon.audit.entries import Act

router = APIRouter(prefix="/alarms", tags=["alarms"])

AlarmId = Annotated[str, Path(min_length=1, max_length=16, description="e.g. A0007")]
BatchIdText = Annotated[str, Query(min_length=1, max_length=32)]
_E: Final[dict[int | str, dict[str, Any]]] = {
    404: {"model": ErrorOut, "description": "No such alarm"},
    409: {"model": ErrorOut, "description": "Not allowed in the alarm's state (ISA-18.2)"},
}


def out(alarm: Alarm) -> AlarmOut:
    d = alarm.as_dict()
    d.pop("key")
    until = d.pop("shelved_until")
    d["shelved_until_utc"] = utc(until) if until else ""
    return AlarmOut.model_validate(d)


@router.get("", name="list_alarms")
async def list_alarms(
    api: Api,
    state: Annotated[list[AlarmState] | None, Query(max_length=7)] = None,
    batch: BatchIdText | None = None,
) -> list[AlarmOut]:
    """Alarms in the given states (default: every alarm that is not normal), of one
    batch when ``batch`` is given; in the order they were raised."""
    return [out(a) for a in api.alarms.listed(state or (), batch or "")]


@router.get("/{alarm_id}", name="show_alarm", responses={404: _E[404]})
async def show_alarm(alarm_id: AlarmId, api: Api) -> AlarmOut:
    """One alarm with its history (every change, who and why)."""
    return out(api.alarms.get(alarm_id))


@router.post("/{alarm_id}/ack", name="ack_alarm", responses=_E)
async def ack_alarm(alarm_id: AlarmId, body: AckIn, api: Api, who: SignedIn) -> AlarmOut:
    """Acknowledge an unacknowledged, returned-to-normal or latched alarm."""
    role = acting_role(who, "alarm.ack")
    return out(await api.alarms.ack(alarm_id, Act(who.actor(role), body.reason)))


@router.post(
    "/{alarm_id}/shelve",
    name="shelve_alarm",
    responses={**_E, 403: {"model": ErrorOut, "description": "Wrong password"}},
)
async def shelve_alarm(alarm_id: AlarmId, body: ShelveIn, api: Api, who: SignedIn) -> AlarmOut:
    """Shelve an alarm for ``duration_s`` (e-signed, meaning shelved); it unshelves
    itself at expiry and is then annunciated again if its cause persists."""
    api.alarms.get(alarm_id)  # 404 before the password is checked
    signing = await signing_of(api, who, body.password, "shelved")
    role = acting_role(who, "alarm.shelve")
    alarm = await api.alarms.shelve(
        alarm_id, Act(who.actor(role), body.reason, signing), body.duration_s
    )
    return out(alarm)
