"""ICD 1.1 at the protocol level: the shuttle twin seen by plain asyncua clients.

Each test is written from the ICD text: start writes ordered and timestamped; every
change of the listed variables reported to a sampling-interval-0 item with a queue of
at least 10, none merged, and the Overflow bit when a queue still overflows; GetResult
Stopped; SampleIds unique per shuttle; InsertCartridge arguments before the port;
Twin/StartedPrograms. Subscriptions are made with publishing disabled while the
scenario runs, then enabled: every queued notification arrives in one publish, so what
the twin kept does not depend on timing.
"""

from __future__ import annotations

import json
from collections.abc import Iterator
from datetime import datetime
from typing import Any, Final, cast

import pytest
from asyncua import ua
from asyncua.common.subscription import Subscription

from drivers import icd
from tests.support import eventually, fresh, task_id
from tests.support.shuttle import LONG, PROBE, ShuttleClient, ShuttleSession, short, slowly

OVERFLOW: Final = 0x0400 | 0x0080  # InfoType DataValue + Overflow (Part 4, 7.39)


class _NoHandler:
    pass


class Recorder(Subscription):
    """A plain subscription that keeps every NotificationMessage as it arrives."""

    def __init__(self, shuttle_ua: ShuttleClient, publishing: bool) -> None:
        params = ua.CreateSubscriptionParameters(
            RequestedPublishingInterval=100,
            RequestedLifetimeCount=600,
            RequestedMaxKeepAliveCount=10,
            MaxNotificationsPerPublish=0,
            PublishingEnabled=publishing,
            Priority=0,
        )
        client = shuttle_ua.client
        super().__init__(client.uaclient.session, params, handler=cast(Any, _NoHandler()))
        self.messages: list[ua.NotificationMessage] = []
        self.names: dict[int, str] = {}

    async def publish_callback(self, publish_result: ua.PublishResult) -> None:
        self.messages.append(publish_result.NotificationMessage)

    async def watch(self, nodes: dict[str, ua.NodeId], queue: int) -> None:
        """Monitor each node's Value: sampling interval 0, ``queue``, DiscardOldest."""
        requests = []
        for handle, (name, node) in enumerate(nodes.items(), start=len(self.names) + 1):
            self.names[handle] = name
            requests.append(
                ua.MonitoredItemCreateRequest(
                    ItemToMonitor=ua.ReadValueId(NodeId=node, AttributeId=ua.AttributeIds.Value),
                    MonitoringMode=ua.MonitoringMode.Reporting,
                    RequestedParameters=ua.MonitoringParameters(
                        ClientHandle=handle,
                        SamplingInterval=0.0,
                        QueueSize=queue,
                        DiscardOldest=True,
                    ),
                )
            )
        results = await self.create_monitored_items(requests)
        assert all(isinstance(r, int) for r in results), results

    def notes(self) -> Iterator[tuple[int, str, ua.DataValue]]:
        """(publish sequence number, item name, DataValue), in stream order."""
        for msg in self.messages:
            for data in msg.NotificationData or ():
                if isinstance(data, ua.DataChangeNotification):
                    for n in data.MonitoredItems:
                        yield msg.SequenceNumber, self.names[n.ClientHandle], n.Value

    def values(self, name: str) -> list[Any]:
        return [dv.Value.Value for _s, n, dv in self.notes() if n == name]


async def _recorder(shuttle_ua: ShuttleClient, publishing: bool) -> Recorder:
    rec = Recorder(shuttle_ua, publishing)
    await rec.init()
    return rec


async def _nodes(shuttle_ua: ShuttleClient, unit: str, names: list[str]) -> dict[str, ua.NodeId]:
    out = {}
    for name in names:
        path = ("Units", unit, name) if "." not in name else tuple(name.split("."))
        out[name] = (await shuttle_ua.node(*path)).nodeid
    return out


# ------------------------------------------------------------------ start writes
async def test_start_writes_task_id_and_program_before_state_each_timestamped(
    shuttle_ua: ShuttleClient,
) -> None:
    """1.1: a start writes the unit's TaskId and Program before its State (the
    transport's TaskId before its State on a Move), each with a SourceTimestamp; a
    client pairs a start with the TaskId and Program of the same or an earlier publish."""
    ua_ = shuttle_ua
    unit = "INC02"
    cart = await ua_.load(unit)
    if await ua_.unit_read(unit, "Program") == LONG[0]:  # make the start change Program
        await ua_.start(unit, short(), task_id(), cart)
        await ua_.wait_unit(unit, "State", "Complete")
    rec = await _recorder(ua_, publishing=True)
    await rec.watch(await _nodes(ua_, unit, ["TaskId", "Program", "State"]), queue=100)
    await rec.watch(await _nodes(ua_, unit, ["Transport.TaskId", "Transport.State"]), queue=100)
    await ua_.clear_load_port()
    other = fresh("C")
    assert await ua_.insert(other) == "Good"
    task, move = task_id(), task_id("mv")
    await ua_.start(unit, LONG, task, cart)
    await ua_.call(("Transport",), "Move", other, "OutputPort", move)

    def seen(name: str, value: Any) -> tuple[int, int, datetime] | None:
        for i, (seq, n, dv) in enumerate(rec.notes()):
            if n == name and dv.Value.Value == value:
                return seq, i, dv.SourceTimestamp
        return None

    await eventually(
        lambda: _async(seen("State", "Running") and seen("Transport.State", "Moving")),
        "the start and the move in the stream",
    )
    for first, then in (
        (("TaskId", task), ("State", "Running")),
        (("Program", LONG[0]), ("State", "Running")),
        (("Transport.TaskId", move), ("Transport.State", "Moving")),
    ):
        a, b = seen(*first), seen(*then)
        assert a is not None and b is not None, (first, then)
        assert a[0] <= b[0], f"{first} came in a later publish than {then}"
        assert a[2] is not None and b[2] is not None  # each write has a SourceTimestamp
        assert a[2] <= b[2]  # the twin's clock does not step: written first, stamped first
    for _seq, _name, dv in rec.notes():
        assert dv.SourceTimestamp is not None
    await rec.delete()
    await ua_.unit_call(unit, "Abort", task)


async def _async(value: Any) -> Any:
    return value


# ------------------------------------------------------------------ every change reported
async def test_every_change_of_the_listed_variables_is_reported_none_merged(
    shuttle_ua: ShuttleClient,
) -> None:
    """1.1: to an item with sampling interval 0 and a queue of at least 10, every change
    of a unit's State, TaskId, Program, CartridgeId, FaultCode, FaultText, of the ports
    and of the transport's State, TaskId, FaultCode, FaultText is reported, none merged.
    The whole scenario runs while publishing is disabled: nothing reaches the client
    until it ends, so the server had to keep every change."""
    ua_ = shuttle_ua
    unit = "INC03"
    await ua_.empty_unit(unit)
    await ua_.clear_load_port()
    unit_vars = ["State", "TaskId", "Program", "CartridgeId", "FaultCode", "FaultText"]
    ports = ["LoadPort.CartridgeId", "OutputPort.CartridgeIds"]
    transport = [
        "Transport.State",
        "Transport.TaskId",
        "Transport.FaultCode",
        "Transport.FaultText",
    ]
    before = {
        n: await ua_.read(*(("Units", unit, n) if "." not in n else n.split(".")))
        for n in [*unit_vars, *ports, *transport]
    }
    rec = await _recorder(ua_, publishing=False)
    await rec.watch(await _nodes(ua_, unit, [*unit_vars, *ports, *transport]), queue=100)

    cart = fresh("C")
    assert await ua_.insert(cart) == "Good"
    await ua_.move(cart, unit)
    move_in = await ua_.read("Transport", "TaskId")
    t1, t2 = task_id(), task_id()
    sample = short()
    await ua_.start(unit, LONG, t1, cart)
    for command in ("Hold", "Unhold", "Abort"):
        await ua_.unit_call(unit, command, t1)
    await ua_.unit_call(unit, "Clear")
    await ua_.start(unit, sample, t2, cart)
    await ua_.unit_call(unit, "Stop", t2)
    assert await ua_.inject_fault(unit, 9, "door") == "Good"
    await ua_.unit_call(unit, "Clear")
    assert await ua_.inject_fault("Transport", 5, "jam") == "Good"
    await ua_.call(("Transport",), "Clear")
    await ua_.move(cart, "OutputPort")
    move_out = await ua_.read("Transport", "TaskId")

    expected = {
        "State": [
            before["State"],
            "Running",
            "Held",
            "Running",
            "Aborted",
            "Idle",
            "Running",
            "Complete",
            "Faulted",
            "Idle",
        ],
        "TaskId": [before["TaskId"], t1, t2],
        "Program": _changes([before["Program"], LONG[0], sample[0]]),
        "CartridgeId": ["", cart, ""],
        "FaultCode": [0, 9, 0],
        "FaultText": ["", "door", ""],
        "LoadPort.CartridgeId": ["", cart, ""],
        "OutputPort.CartridgeIds": [
            before["OutputPort.CartridgeIds"],
            [*before["OutputPort.CartridgeIds"], cart],
        ],
        "Transport.State": ["Idle", "Moving", "Idle", "Faulted", "Idle", "Moving", "Idle"],
        "Transport.TaskId": [before["Transport.TaskId"], move_in, move_out],
        "Transport.FaultCode": [0, 5, 0],
        "Transport.FaultText": ["", "jam", ""],
    }
    await rec.set_publishing_mode(True)
    await eventually(
        lambda: _async(all(len(rec.values(n)) >= len(v) for n, v in expected.items())),
        "every change in the stream",
    )
    for name, values in expected.items():
        assert rec.values(name) == values, name
    for _seq, _name, dv in rec.notes():
        assert not (dv.StatusCode and dv.StatusCode.value & OVERFLOW == OVERFLOW)
    await rec.delete()


def _changes(values: list[Any]) -> list[Any]:
    """The values a variable reports: each value that differs from the one before."""
    out = values[:1]
    for v in values[1:]:
        if v != out[-1]:
            out.append(v)
    return out


@pytest.mark.parametrize("transitions", [9, 12])
async def test_a_queue_of_ten_keeps_ten_and_an_overflow_says_so(
    shuttle_ua: ShuttleClient, transitions: int
) -> None:
    """1.1: a queue of 10 holds the initial value and nine changes; should a queue still
    overflow, the Overflow bit of Part 4 marks the oldest value kept (DiscardOldest)."""
    ua_ = shuttle_ua
    unit = "INC04"
    cart = await ua_.load(unit)
    rec = await _recorder(ua_, publishing=False)
    await rec.watch(await _nodes(ua_, unit, ["State"]), queue=10)
    initial = await ua_.unit_read(unit, "State")
    task = task_id()
    await ua_.start(unit, LONG, task, cart)
    states = [initial, "Running"]
    while len(states) < transitions + 1:
        command = "Hold" if states[-1] == "Running" else "Unhold"
        await ua_.unit_call(unit, command, task)
        states.append("Held" if command == "Hold" else "Running")
    await rec.set_publishing_mode(True)
    await eventually(lambda: _async(len(rec.values("State")) >= 10), "the queued values")
    dvs = [dv for _s, _n, dv in rec.notes()]
    assert [dv.Value.Value for dv in dvs] == states[-10:]
    flagged = [bool(dv.StatusCode and dv.StatusCode.value & OVERFLOW == OVERFLOW) for dv in dvs]
    assert flagged == [transitions + 1 > 10] + [False] * 9
    await rec.delete()
    await ua_.unit_call(unit, "Abort", task)


# ------------------------------------------------------------------ results
async def test_get_result_says_stopped_for_a_program_ended_by_stop(
    shuttle_ua: ShuttleClient,
) -> None:
    """1.1: Stopped is a program ended by Stop: the unit's State reads Complete as after
    a full run, but the result tells the two apart."""
    ua_ = shuttle_ua
    unit = "INC05"
    cart = await ua_.load(unit)
    stopped, full = task_id(), task_id()
    await ua_.start(unit, LONG, stopped, cart)
    await ua_.unit_call(unit, "Stop", stopped)
    assert await ua_.unit_read(unit, "State") == "Complete"
    status, outputs = await ua_.unit_call(unit, "GetResult", stopped)
    assert status == "Stopped" and status != "Complete"
    assert set(json.loads(outputs)) <= set(icd.PROGRAMS[LONG[0]].outputs)
    await ua_.start(unit, ("activation", {"reagent": "TransAct", "duration_h": 1}), full, cart)
    await ua_.wait_unit(unit, "State", "Complete")
    status, outputs = await ua_.unit_call(unit, "GetResult", full)
    assert status == "Complete" and set(json.loads(outputs)) == {"cells_out"}
    assert (await ua_.unit_call(unit, "GetResult", stopped))[0] == "Stopped"  # it stays so


# ------------------------------------------------------------------ sample ids
async def test_a_used_sample_id_is_refused_at_check_4(
    shuttle_ua: ShuttleClient, shuttle_session: ShuttleSession
) -> None:
    """1.1: a sample program with a SampleId any sample program on this shuttle used
    before (whatever its outcome, the active one included) answers BadInvalidArgument,
    at check 4: before the cartridge (5) and the state (6) are looked at."""
    ua_ = shuttle_ua
    unit = "INC06"
    cart = await ua_.load(unit)
    program = short()
    first = task_id()
    with slowly(shuttle_session):
        run_id = await ua_.start(unit, program, first, cart)
        assert await ua_.unit_read(unit, "State") == "Running"  # five process minutes
        await _sample_id_refusals(ua_, unit, cart, program, first, run_id)


async def _sample_id_refusals(
    ua_: ShuttleClient, unit: str, cart: str, program: Any, first: str, run_id: str
) -> None:
    def again(unit_: str, cartridge: str) -> Any:
        name, params = program
        return ua_.unit_status(
            unit_, "StartProgram", name, json.dumps(params), task_id(), cartridge
        )

    assert await again(unit, cart) == "BadInvalidArgument"  # not BadInvalidState (6)
    assert await again(unit, "OTHER") == "BadInvalidArgument"  # not BadNoMatch (5)
    assert await again(PROBE, "C0") == "BadInvalidArgument"  # another unit, no cartridge
    await ua_.unit_call(unit, "Abort", first)
    await ua_.unit_call(unit, "Clear")
    assert await again(unit, cart) == "BadInvalidArgument"  # an aborted one used it too
    # the idempotent repeat is no new use: the first RunId, nothing started
    assert await ua_.start(unit, program, first, cart) == run_id
    assert await ua_.times_started(first) == 1
    fresh_one = short()
    assert await ua_.start(unit, fresh_one, task_id(), cart)  # a new SampleId starts


# ------------------------------------------------------------------ twin controls
async def test_insert_cartridge_checks_its_arguments_before_the_port(
    shuttle_ua: ShuttleClient,
) -> None:
    ua_ = shuttle_ua
    await ua_.clear_load_port()
    taken = fresh("C")
    assert await ua_.insert(taken) == "Good"
    assert await ua_.insert(fresh("C")) == "BadInvalidState"  # the port is taken
    # while it is taken, a bad argument is still a bad argument (1.1)
    assert await ua_.insert("bad id!") == "BadInvalidArgument"
    assert await ua_.insert(taken) == "BadInvalidArgument"  # used
    assert await ua_.insert(fresh("C"), cells=-1.0) == "BadOutOfRange"
    assert await ua_.insert(fresh("C"), viability=101.0) == "BadOutOfRange"
    assert await ua_.read("LoadPort", "CartridgeId") == taken


async def test_started_programs_lists_every_start_once_oldest_first(
    shuttle_ua: ShuttleClient, shuttle_session: ShuttleSession
) -> None:
    """1.1: Twin/StartedPrograms, a read-only String: a JSON array with one object per
    program or move the twin started (not the idempotent repeats), oldest first."""
    ua_ = shuttle_ua
    node = await ua_.twin_node("StartedPrograms")
    assert await node.read_data_type() == ua.NodeId(ua.VariantType.String.value)
    unit = "INC07"
    cart = await ua_.load(unit)
    before = await ua_.started()
    task = task_id()
    t0 = shuttle_session.clock.now()
    await ua_.start(unit, LONG, task, cart)
    await ua_.start(unit, LONG, task, cart)  # an idempotent repeat starts nothing
    await ua_.unit_call(unit, "Abort", task)
    await ua_.unit_call(unit, "Clear")
    await ua_.move(cart, "OutputPort")
    move = await ua_.read("Transport", "TaskId")
    after = await ua_.started()
    assert after[: len(before)] == before  # oldest first: new ones are appended
    new = after[len(before) :]
    assert [(e["unit"], e["task_id"], e["program"], e["cartridge_id"]) for e in new] == [
        (unit, task, LONG[0], cart),
        ("Transport", move, "move", cart),
    ]
    assert all(isinstance(e["at"], float) and e["at"] >= t0 for e in new)
    assert new[0]["at"] <= new[1]["at"]
    with pytest.raises(ua.UaStatusCodeError):
        await node.write_value(ua.Variant("[]", ua.VariantType.String))
    assert await ua_.started() == after
