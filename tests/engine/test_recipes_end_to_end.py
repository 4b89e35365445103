"""Library recipes run end to end through the real daemon on the twins."""

from __future__ import annotations

import pytest

from daemon.batch.states import BatchState
from daemon.journal import records as r
from daemon.supervisor import Daemon
from tests.engine.conftest import Cell, new_cartridge, recipe, until
from tests.support.daemon import SimTwins


def _kinds(daemon: Daemon, batch_id: str) -> list[str]:
    return [type(rec).__name__ for _seq, rec in daemon.journal.batch_records(batch_id)]


async def test_qc_only_passes_and_fails_on_its_guard(daemon: Daemon, cell: Cell) -> None:
    """The same QC values take the pass branch or the fail branch by the parameter."""
    engine = daemon.engine
    lenient, strict = new_cartridge(), new_cartridge()
    a = await engine.create(recipe("qc_only"), {"min_viability_pct": 0.0}, lenient, by="ann")
    b = await engine.create(recipe("qc_only"), {"min_viability_pct": 100.0}, strict, by="ann")
    cell.load(lenient, strict)
    a_end = await until(engine, a.batch_id, "Complete", lambda x: x.final)
    b_end = await until(engine, b.batch_id, "Complete", lambda x: x.final)
    for end in (a_end, b_end):
        assert end.state is BatchState.COMPLETE
        assert set(end.variables) == {"density", "viability", "cd3"}
        assert 0.0 < end.variables["viability"] < 100.0
        assert end.location == "OutputPort" and not end.deviations
    # the guard decides on the values the batch bound: viability >= min && cd3 >= 50.0
    passes = a_end.variables["cd3"] >= 50.0
    assert a_end.outcome == ("completed" if passes else "failed")
    assert a_end.visits == {"qc_sample": 1, ("passed" if passes else "out_of_range"): 1}
    assert (b_end.outcome, b_end.visits) == ("failed", {"qc_sample": 1, "out_of_range": 1})
    assert b_end.outcome_reason == "Viability or CD3+ fraction below the limit"
    kinds = _kinds(daemon, a.batch_id)
    # intent before action: every instrument command is announced before its outcome
    assert (
        kinds.index("ProgramIntent") < kinds.index("ProgramStarted") < kinds.index("ProgramEnded")
    )
    assert kinds.index("JobIntent") < kinds.index("JobSubmitted") < kinds.index("JobEnded")
    assert kinds[-1] == "StateReached" and kinds.count("MoveIntent") == kinds.count("MoveEnded")
    # the cartridge went in at the LoadPort and out at the OutputPort, on this shuttle
    view = daemon.cell.shuttles["shuttle1"]
    assert lenient in view.output_port and strict in view.output_port


@pytest.mark.timeout(600)
async def test_the_library_runs_four_batches_at_once(
    daemon: Daemon, cell: Cell, sim_cell: SimTwins
) -> None:
    """Two lentiviral CAR-T, one electroporation and one rapid batch share the shuttle
    (and its one SEL1, EP1, CFC1 and FIN1) and the analyzer; all complete."""
    engine = daemon.engine
    names = ["car_t_lentiviral", "car_t_lentiviral", "car_t_electroporation", "car_t_rapid_3day"]
    ids, carts = [], []
    for i, name in enumerate(names):
        c = new_cartridge()
        b = await engine.create(recipe(name), {}, c, priority=i % 2, by="ann")
        cell.operator(engine, b.batch_id)
        ids.append(b.batch_id)
        carts.append(c)
    cell.load(*carts)
    for bid in ids:
        end = await until(engine, bid, "final", lambda x: x.final, limit=500)
        assert (end.state, end.outcome) == (BatchState.COMPLETE, "completed"), end.deviations
        assert not end.deviations, [d.message for d in end.deviations]
    lenti = engine.batches[ids[0]]
    assert {"cells", "viability", "cd3", "car_pct", "growth", "mycoplasma"} <= set(lenti.variables)
    assert lenti.variables["growth"] is False and lenti.variables["mycoplasma"] is False
    # the expansion loop ran at least once more than the first block
    assert lenti.visits["expand"] >= 1 and lenti.visits["count"] == lenti.visits["expand"]
    # every program, move and job once: the journal's intents, and the instruments' own
    # records (ICD 1.1 Twin/StartedPrograms; Cell Q's jobs by JobSeq)
    started = await cell.controls.started_programs()
    jobs = sim_cell.cell.cellq.submitted
    for bid in ids:
        recs = [rec for _s, rec in daemon.journal.batch_records(bid)]
        tasks = [rec.task_id for rec in recs if isinstance(rec, r.ProgramIntent | r.MoveIntent)]
        assert len(tasks) == len(set(tasks))
        on_shuttle = [e.task_id for e in started if e.task_id.startswith(bid + "/")]
        assert sorted(on_shuttle) == sorted(tasks)  # each started exactly once
        seqs = [rec.job_seq for rec in recs if isinstance(rec, r.JobIntent)]
        assert seqs and all(jobs[seq] == 1 for seq in seqs)
