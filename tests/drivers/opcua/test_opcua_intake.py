"""The notification intake (drivers/opcua/intake.py) fed with publishes made here: the
pairing of starts with their TaskIds by stream order, losses and garbage."""

from __future__ import annotations

from typing import Any

from asyncua import ua

from drivers.base import Event, FaultChanged, InvalidAnswer, UnitStateChanged
from drivers.opcua.intake import Intake
from drivers.opcua.space import Item, Kind

UNIT_VARS = ("State", "TaskId", "Program", "FaultCode", "FaultText", "Progress")
ITEMS = {i: Item(("INC01", v), Kind.UNIT, ua.NodeId(i, 2)) for i, v in enumerate(UNIT_VARS, 1)}
HANDLE = {item.key[1]: h for h, item in ITEMS.items()}
VTYPE = {"FaultCode": ua.VariantType.UInt32, "Progress": ua.VariantType.Double}


class Rig:
    def __init__(self) -> None:
        self.events: list[Event] = []
        self.losses: list[tuple[str, Any]] = []
        self.intake = Intake("S", self.events.append, lambda r, e=None: self.losses.append((r, e)))
        self.intake.reset(dict(ITEMS))
        self.seq = 0
        self.publish(
            [
                ("State", "Idle"),
                ("TaskId", "old"),
                ("Program", "expansion"),
                ("FaultCode", 0),
                ("FaultText", ""),
                ("Progress", 0.0),
            ]
        )
        assert self.intake.has_initial_values
        self.intake.gate_open = True

    def publish(self, changes: list[tuple[str, Any]], status: int = 0) -> None:
        """One publish: the changes grouped per item, as a server lists them."""
        self.seq += 1
        by_item: dict[str, list[Any]] = {}
        for var, value in changes:
            by_item.setdefault(var, []).append(value)
        notes = [
            ua.MonitoredItemNotification(
                ClientHandle=HANDLE[var],
                Value=ua.DataValue(
                    ua.Variant(v, VTYPE.get(var, ua.VariantType.String)),
                    StatusCode=ua.StatusCode(status),
                ),
            )
            for var, values in by_item.items()
            for v in values
        ]
        msg = ua.NotificationMessage(
            SequenceNumber=self.seq,
            NotificationData=[ua.DataChangeNotification(MonitoredItems=notes)],
        )
        self.intake.on_publish(msg)

    def states(self) -> list[tuple[str, str, str]]:
        return [
            (e.state, e.task_id, e.program) for e in self.events if isinstance(e, UnitStateChanged)
        ]


def test_a_task_id_whose_start_is_in_the_next_publish_waits_for_it() -> None:
    """ICD 1.1: TaskId comes in the same or an earlier publish than its State change. A
    TaskId alone must not pair with the old State (a Complete with the next TaskId)."""
    rig = Rig()
    rig.publish([("State", "Running"), ("TaskId", "t1")])
    rig.publish([("State", "Complete")])
    rig.publish([("TaskId", "t2"), ("Program", "sample")])  # written, its State not yet
    assert rig.states() == [("Running", "t1", "expansion"), ("Complete", "t1", "expansion")]
    assert rig.intake.values[("INC01", "TaskId")] == "t1"
    rig.publish([("State", "Running")])
    assert rig.states()[-1] == ("Running", "t2", "sample")


def test_several_starts_in_one_publish_take_their_task_ids_in_order() -> None:
    rig = Rig()
    rig.intake.expect_start("INC01", "t2", "sample")  # started by this driver
    rig.publish(
        [
            ("State", "Running"),
            ("State", "Complete"),
            ("State", "Running"),
            ("State", "Held"),
            ("TaskId", "t1"),
            ("TaskId", "t2"),
            ("Program", "sample"),
        ]
    )
    assert rig.states() == [
        ("Running", "t1", "expansion"),
        ("Complete", "t1", "expansion"),
        ("Running", "t2", "sample"),  # its Program: what we started under t2
        ("Held", "t2", "sample"),
    ]
    assert not rig.losses


def test_unhold_is_no_start_and_takes_no_task_id() -> None:
    rig = Rig()
    rig.publish([("State", "Running"), ("TaskId", "t1")])
    rig.publish([("State", "Held"), ("State", "Running"), ("TaskId", "t2")])
    assert rig.states() == [
        ("Running", "t1", "expansion"),
        ("Held", "t1", "expansion"),
        ("Running", "t1", "expansion"),
    ]


def test_a_fault_event_carries_its_text() -> None:
    rig = Rig()
    rig.publish([("FaultCode", 42), ("FaultText", "door open"), ("State", "Faulted")])
    rig.publish([("FaultCode", 0), ("FaultText", "")])
    faults = [(e.code, e.text) for e in rig.events if isinstance(e, FaultChanged)]
    assert faults == [(42, "door open"), (0, "")]


def test_overflow_on_a_state_is_a_loss_and_a_sequence_gap_too() -> None:
    rig = Rig()
    rig.publish([("State", "Running"), ("TaskId", "t1")], status=0x0480)
    assert rig.losses and "overflow" in rig.losses[0][0]
    rig = Rig()
    rig.seq += 1  # a publish went missing
    rig.publish([("State", "Running"), ("TaskId", "t1")])
    assert rig.losses and "gap" in rig.losses[0][0]


def test_garbage_on_a_state_is_a_loss_naming_it_on_progress_it_is_ignored() -> None:
    rig = Rig()
    rig.publish([("State", "Exploded")])
    (reason, error), *_ = rig.losses
    assert "INC01/State" in reason and error is InvalidAnswer
    assert rig.intake.values[("INC01", "State")] == "Idle"  # never cached, never an event
    assert rig.states() == []
    rig = Rig()
    rig.publish([("Progress", float("nan"))])
    assert not rig.losses and rig.intake.ignored == 1
    assert rig.intake.values[("INC01", "Progress")] == 0.0
