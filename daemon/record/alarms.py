"""The batch record's default alarm source: the batch's alarms as the journal holds them
(``daemon.alarms.alarms_of``), in the record's own shape (``daemon.record.model``)."""

from __future__ import annotations

from collections.abc import Callable
from os import PathLike

from daemon.alarms.model import alarms_of
from daemon.record import model as m


def journal_alarms(journal: PathLike[str]) -> Callable[[str], list[m.Alarm]]:
    """The record's alarm source (``AlarmSource``): a batch's alarms read from the
    journal file (``daemon.alarms``: their audit rows), each with its history as lines.
    Blocking (a thread)."""

    def source(batch_id: str) -> list[m.Alarm]:
        return [
            m.Alarm(
                alarm_id=a.alarm_id,
                priority=a.priority,
                state=str(a.state),
                kind=a.kind,
                message=a.message,
                step=a.step,
                unit=a.unit,
                raised_at=a.raised_at,
                history=a.history_lines(),
            )
            for a in alarms_of(journal, batch_id)
        ]

    return source
