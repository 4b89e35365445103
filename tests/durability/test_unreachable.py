"""The daemon restarts while an instrument cannot be reached: the batches that need it
hold with a ``link`` deviation, the others go on; when the instrument answers again the
system restarts the held batches by itself, they reconcile with what the instrument
did meanwhile, and every batch ends as in the unkilled reference run, nothing twice."""

from __future__ import annotations

from collections.abc import Callable
from typing import Any

import pytest

from daemon.journal import records as r
from tests.durability.conftest import MakeScenario
from tests.durability.rig import Rig
from tests.durability.scenario import MIX, Order, Outcome, Scenario, assert_same
from tests.support import HANG_GUARD, eventually

QC, CHAIN = MIX[1], MIX[0]


def _expected(reference: list[Outcome], order: Order) -> Outcome:
    return next(out for o, out in zip(MIX, reference, strict=True) if o == order)


async def _batch(scenario: Scenario, bid: str) -> dict[str, Any]:
    async with scenario.api() as api:
        answer = await api.get(f"/batches/{bid}")
        assert answer.status_code == 200, answer.text
        return answer.json()  # type: ignore[no-any-return]


async def _link_up(scenario: Scenario, name: str) -> bool:
    async with scenario.api() as api:
        return bool((await api.get("/health")).json()["instruments"][name]["up"])


def _held_for_link(b: dict[str, Any]) -> bool:
    return b["state"] == "Held" and b["held_by"] == "system" and b["hold_reason"].startswith("link")


def _restarted_by_the_system(scenario: Scenario, bid: str) -> bool:
    return any(
        isinstance(rec, r.CommandIssued)
        and rec.batch_id == bid
        and rec.command == "Restart"
        and rec.accepted
        and rec.by == "system"
        for _s, rec in scenario.records()
    )


@pytest.mark.timeout(300)
async def test_cell_q_unreachable_at_start(
    rig: Rig, make_scenario: MakeScenario, reference: Callable[..., Any]
) -> None:
    ref = await reference()
    scenario = make_scenario((QC, CHAIN))
    try:
        async with scenario.running():
            [qc] = await scenario.create(1)
            # the job's submit never reaches Cell Q; the daemon dies; Cell Q goes away
            await rig.cellq_proxy.hold_request_with(f"{qc}-S1".encode())
            await scenario.wait_record("the job's intent", lambda x: isinstance(x, r.JobIntent))
            await scenario.kill()
            await rig.cellq_proxy.refuse(True)
            await scenario.start()
            assert not await _link_up(scenario, "cellq1")
            [chain] = await scenario.create(1)
            held = await eventually(
                lambda: _batch(scenario, qc), "the QC batch held for its link", _held_for_link
            )
            assert held["hold_reason"] == "link:cellq1"
            # a batch that needs only the shuttle goes on, to its end
            await eventually(
                lambda: _batch(scenario, chain),
                "the other batch complete",
                lambda b: b["state"] == "Complete",
                limit=HANG_GUARD * 3,
            )
            assert (await _batch(scenario, qc))["state"] == "Held"
            await rig.cellq_proxy.refuse(False)
            await scenario.until_final()
    finally:
        await rig.cellq_proxy.refuse(False)
    got = await scenario.finish()  # the job created once
    assert_same(got, [_expected(ref, QC), _expected(ref, CHAIN)])
    assert "link" in got[0].deviations
    assert _restarted_by_the_system(scenario, qc)


@pytest.mark.timeout(300)
async def test_the_shuttle_unreachable_at_start(
    rig: Rig, make_scenario: MakeScenario, reference: Callable[..., Any]
) -> None:
    ref = await reference()
    confirm = MIX[2]
    scenario = make_scenario((CHAIN, confirm))
    try:
        async with scenario.running():
            chain, conf = await scenario.create()
            # both in flight: the chain's expansion running, the other's job submitted
            await scenario.wait_record(
                "the expansion started",
                lambda x: isinstance(x, r.ProgramStarted) and x.task_id == f"{chain}/grow/1",
            )
            await rig.cellq_proxy.hold_answer_to(f"{conf}-S1".encode())
            await scenario.wait_record("the job's intent", lambda x: isinstance(x, r.JobIntent))
            await eventually(lambda: rig.slots(), "the job on Cell Q", lambda s: len(s) == 1)
            await scenario.kill()
            await rig.shuttle_proxy.refuse(True)
            await scenario.start()
            assert not await _link_up(scenario, "shuttle1")
            for bid in (chain, conf):
                await eventually(
                    lambda bid=bid: _batch(scenario, bid),
                    f"{bid} held for its link",
                    _held_for_link,
                )
            # Cell Q's side goes on: the job is found, followed to its end, released
            await scenario.wait_record(
                "the job released",
                lambda x: isinstance(x, r.JobReleased) and x.batch_id == conf,
                limit=HANG_GUARD * 3,
            )
            await rig.shuttle_proxy.refuse(False)
            await scenario.until_final()
    finally:
        await rig.shuttle_proxy.refuse(False)
    got = await scenario.finish()  # nothing started twice, the job created once
    assert_same(got, [_expected(ref, CHAIN), _expected(ref, confirm)])
    for bid, g in zip((chain, conf), got, strict=True):
        assert "link" in g.deviations
        assert _restarted_by_the_system(scenario, bid)
