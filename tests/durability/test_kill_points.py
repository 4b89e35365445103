"""kill -9 at the two moments that matter, made to happen rather than hoped for, from
outside the daemon: a FaultProxy between the daemon and the instrument holds the bytes
of one command (the request, or its answer) while the test watches the journal, then
the test kills the daemon.

* before the command: the intent is on disk, the request never reached the instrument
  (held at the proxy, dropped with the dead daemon's connection). After the restart the
  command runs once, with the journaled TaskId (JobSeq).
* after the command: the instrument ran it (the twin says so), the answer never came
  back. After the restart the daemon takes what the instrument did and starts nothing
  again.

For a move, a program and a Cell Q job, each in a run of two batches (one kill point
each); every batch then ends as it does in the unkilled reference run."""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass
from typing import Any

import pytest

from daemon.journal import records as r
from simulators.faults import FaultProxy
from tests.durability.conftest import MakeScenario
from tests.durability.rig import Rig
from tests.durability.scenario import MIX, Order, Outcome, Scenario, assert_same
from tests.support import eventually


@dataclass(frozen=True)
class Point:
    order: Order
    pattern: Callable[[str], str]  # batch id -> the bytes that mark the command
    wire: str  # "shuttle" | "cellq"
    intent: Callable[[r.Record, str], bool]  # the intent record of that command


MOVE = Point(  # the move into CFC1 for the wash (move 1 is the admission)
    Order("dur_qc"),
    lambda bid: f"{bid}/move.2/1",
    "shuttle",
    lambda rec, key: isinstance(rec, r.MoveIntent) and rec.task_id == key,
)
PROGRAM = Point(
    Order("dur_chain", {"hours": 4.0}),
    lambda bid: f"{bid}/grow/1",
    "shuttle",
    lambda rec, key: isinstance(rec, r.ProgramIntent) and rec.task_id == key,
)
JOB = Point(  # the SampleId travels in the submit's registers, as ASCII
    Order("dur_qc"),
    lambda bid: f"{bid}-S1",
    "cellq",
    lambda rec, key: isinstance(rec, r.JobIntent) and rec.sample_id == key,
)


def _proxy(rig: Rig, point: Point) -> FaultProxy:
    return rig.shuttle_proxy if point.wire == "shuttle" else rig.cellq_proxy


async def _ran(rig: Rig, scenario: Scenario, point: Point, key: str) -> int:
    """How often the instrument carried the command out: programs and moves the shuttle
    started under the TaskId; for a job, the Cell Q slots holding its SampleId."""
    if point.wire == "cellq":
        return sum(1 for _seq, sample in (await rig.slots()).values() if sample == key)
    return sum(1 for s in await scenario.started() if s.task_id == key)


async def _kill_before_command(rig: Rig, scenario: Scenario, point: Point) -> str:
    """A new batch; kill once its command is held on its way to the instrument."""
    [bid] = await scenario.create(1)
    proxy, key = _proxy(rig, point), point.pattern(bid)
    held = proxy.counters.requests_held
    ran = await _ran(rig, scenario, point, key)
    await proxy.hold_request_with(key.encode())  # before the cartridge is even admitted
    await scenario.wait_record(f"the intent of {key}", lambda rec: point.intent(rec, key))
    await eventually(
        lambda: _value(proxy.counters.requests_held), f"{key} held", lambda n: n == held + 1
    )
    assert await _ran(rig, scenario, point, key) == ran  # the instrument never saw it
    await scenario.kill()
    return bid


async def _kill_after_command(rig: Rig, scenario: Scenario, point: Point) -> str:
    """A new batch; kill once the instrument has carried its command out, the answer
    held on its way back."""
    [bid] = await scenario.create(1)
    proxy, key = _proxy(rig, point), point.pattern(bid)
    held = proxy.counters.answers_held
    await proxy.hold_answer_to(key.encode())
    await scenario.wait_record(f"the intent of {key}", lambda rec: point.intent(rec, key))
    await eventually(
        lambda: _value(proxy.counters.answers_held), f"{key} sent", lambda n: n == held + 1
    )
    await eventually(lambda: _ran(rig, scenario, point, key), f"{key} carried out")
    await scenario.kill()  # the answer is still held: the daemon never heard it
    return bid


async def _value(n: int) -> int:
    return n


def _expected(reference: list[Outcome], order: Order) -> Outcome:
    return next(out for o, out in zip(MIX, reference, strict=True) if o == order)


@pytest.mark.timeout(300)
@pytest.mark.parametrize("point", [MOVE, PROGRAM, JOB], ids=["move", "program", "job"])
async def test_kill_before_the_command_and_after_it(
    rig: Rig, make_scenario: MakeScenario, reference: Callable[..., Any], point: Point
) -> None:
    expected = _expected(await reference(), point.order)
    scenario = make_scenario((point.order, point.order))
    async with scenario.running():
        first = await _kill_before_command(rig, scenario, point)
        await scenario.start()
        second = await _kill_after_command(rig, scenario, point)
        await scenario.start()
        await scenario.until_final()
    got = await scenario.finish()  # each intent started once, each job created once
    assert scenario.kills == 2
    assert_same(got, [expected, expected])
    for bid in (first, second):
        key = point.pattern(bid)
        [intent] = [rec for _s, rec in scenario.records() if point.intent(rec, key)]
        if not isinstance(intent, r.JobIntent):  # jobs: released, counted by finish()
            assert await _ran(rig, scenario, point, key) == 1
        if isinstance(intent, r.ProgramIntent):
            [s] = [s for s in await scenario.started() if s.task_id == key]
            assert s.unit == intent.unit  # on the unit journaled with the intent
