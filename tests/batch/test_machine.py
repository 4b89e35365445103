"""The pure reducer: records change a batch exactly as written, replay equals live
application, and a record that does not fit is refused, never guessed around."""

from __future__ import annotations

import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from daemon.batch.machine import ReducerError, apply, created, replay
from daemon.batch.states import DONE, BatchState, Command, target
from daemon.journal import records as r

B = "B0001-AAA"


def _created() -> r.BatchCreated:
    return r.BatchCreated(
        batch_id=B,
        recipe_name="qc_only",
        recipe_version="1.0",
        recipe_hash="ab" * 32,
        recipe_text="...",
        params={"volume_ml": 0.5},
        cartridge_id="C1",
        at=1.0,
        pt=10.0,
    )


def _cmd(command: Command) -> r.CommandIssued:
    return r.CommandIssued(batch_id=B, command=command.value, accepted=True, by="ann")


def test_a_step_with_a_program_from_intent_to_binding() -> None:
    recs: list[r.Record] = [
        _created(),
        _cmd(Command.START),
        r.Admitted(batch_id=B, shuttle="sh1"),
        r.StepStarted(batch_id=B, step="qc_sample", visit=1, pt=20.0),
        r.MoveIntent(
            batch_id=B, task_id=f"{B}/move.1", shuttle="sh1", to="INC01", origin="LoadPort"
        ),
        r.MoveEnded(batch_id=B, task_id=f"{B}/move.1", ok=True, location="INC01"),
        r.ProgramIntent(
            batch_id=B,
            task_id=f"{B}/qc_sample/1",
            shuttle="sh1",
            unit="INC01",
            program="sample",
            params={"volume_ml": 0.5, "sample_id": f"{B}-S1"},
            step="qc_sample",
            attempt=1,
        ),
        r.ProgramStarted(batch_id=B, task_id=f"{B}/qc_sample/1", run_id="R1"),
        r.ProgramEnded(batch_id=B, task_id=f"{B}/qc_sample/1", status="Complete"),
        r.JobIntent(
            batch_id=B, job_seq=7, analyzer="cq", sample_id=f"{B}-S1", panel=3, step="qc_sample"
        ),
        r.JobSubmitted(batch_id=B, job_seq=7, slot=2),
        r.JobEnded(batch_id=B, job_seq=7, state="done", results={"viability": 91.0}),
        r.JobReleased(batch_id=B, job_seq=7),
        r.Bound(batch_id=B, step="qc_sample", values={"viability": 91.0}),
        r.StepEnded(batch_id=B, step="qc_sample", outcome="ok", next="passed", pt=30.0),
    ]
    batches = replay(enumerate(recs, start=1))
    b = batches[B]
    assert b.state is BatchState.RUNNING and b.run == 1
    assert (b.shuttle, b.location) == ("sh1", "INC01")
    assert b.task is not None and (b.task.phase, b.task.status) == ("ended", "Complete")
    assert b.attempts == {"qc_sample": 1} and b.samples == 1 and b.moves == 1
    assert b.jobs[7].phase == "released" and b.jobs[7].results == {"viability": 91.0}
    assert b.variables == {"viability": 91.0}
    assert (b.step, b.next_step, b.last_step_ended_pt) == ("", "passed", 30.0)
    assert b.last_seq == len(recs)


def test_replay_equals_applying_one_by_one() -> None:
    recs = [_cmd(Command.START), _cmd(Command.HOLD), r.StateReached(batch_id=B, state="Held")]
    live = created(_created())
    for i, rec in enumerate(recs, start=2):
        live = apply(live, rec, i)
    assert replay(enumerate([_created(), *recs], start=1))[B] == live


@pytest.mark.parametrize(
    "rec, match",
    [
        (r.StateReached(batch_id=B, state="Held"), "Idle cannot be done as Held"),
        (r.CommandIssued(batch_id=B, command="Hold", accepted=True), "Hold accepted in state Idle"),
        (r.ProgramStarted(batch_id=B, task_id="x", run_id="R"), "whose current task is none"),
        (r.JobEnded(batch_id=B, job_seq=3, state="done"), "unknown job 3"),
        (r.StepEnded(batch_id=B, step="s", outcome="ok"), "step s ended inside ''"),
        (_created(), "created twice"),
    ],
)
def test_records_that_do_not_fit_are_refused(rec: r.Record, match: str) -> None:
    with pytest.raises(ReducerError, match=match):
        apply(created(_created()), rec)


def test_a_refused_command_changes_nothing_but_the_time() -> None:
    b = created(_created())
    rec = r.CommandIssued(batch_id=B, command="Hold", accepted=False, detail="no", at=5.0)
    after = apply(b, rec)
    assert after.state is BatchState.IDLE and after.updated_at == 5.0


def test_a_record_of_another_batch_is_refused() -> None:
    with pytest.raises(ReducerError, match="applied to"):
        apply(created(_created()), r.StateReached(batch_id="B9", state="Held"))


def test_replay_refuses_records_of_an_unknown_batch() -> None:
    with pytest.raises(ReducerError, match="unknown batch"):
        replay([(1, _cmd(Command.START))])


@settings(max_examples=200, deadline=None)
@given(st.lists(st.sampled_from([*Command, "done"]), max_size=30))
def test_any_command_sequence_follows_the_table(moves: list[Command | str]) -> None:
    """Only what the table allows is accepted; the reducer agrees with it at each step."""
    b = created(_created())
    for move in moves:
        if move == "done":
            nxt = DONE.get(b.state)
            if nxt is None:
                with pytest.raises(ReducerError):
                    apply(b, r.StateReached(batch_id=B, state=BatchState.HELD.value))
                continue
            b = apply(b, r.StateReached(batch_id=B, state=nxt.value))
            assert b.state is nxt
            continue
        assert isinstance(move, Command)
        to = target(b.state, move)
        if to is None:
            with pytest.raises(ReducerError):
                apply(b, _cmd(move))
            continue
        b = apply(b, _cmd(move))
        assert b.state is to


def test_codec_round_trips_every_record_and_refuses_nan() -> None:
    rec = r.ProgramEnded(batch_id=B, task_id="t", status="Complete", outputs={"cells_out": 1e9})
    assert r.decode(*r.encode(rec)) == rec
    with pytest.raises(r.RecordError, match="Out of range float values"):
        r.encode(r.Bound(batch_id=B, step="s", values={"x": float("nan")}))
    with pytest.raises(r.RecordError, match="unknown record type"):
        r.decode("Nope", "{}")
    with pytest.raises(r.RecordError, match="unknown fields"):
        r.decode("JobReleased", '{"batch_id":"B","job_seq":1,"extra":2}')
    with pytest.raises(r.RecordError, match="missing"):
        r.decode("JobReleased", '{"batch_id":"B"}')


@pytest.mark.parametrize(
    "type_name, body, match",
    [
        ("JobReleased", '{"batch_id":7,"job_seq":1}', r"JobReleased.batch_id: expected str"),
        ("JobReleased", '{"batch_id":"B","job_seq":"one"}', r"job_seq: expected int"),
        ("JobReleased", '{"batch_id":"B","job_seq":true}', r"job_seq: expected int"),
        ("JobReleased", '{"batch_id":"B","job_seq":1,"at":"x"}', r"at: expected float"),
        (
            "JobEnded",
            '{"batch_id":"B","job_seq":1,"state":"done","results":{"a":"b"}}',
            r"results: expected dict\[str, float\]",
        ),
        (
            "JobIntent",
            '{"batch_id":"B","job_seq":1,"analyzer":"a","sample_id":"s","panel":1,'
            '"step":"x","culture_ml":"lots"}',
            r"culture_ml: expected float",
        ),
    ],
)
def test_decode_checks_every_field_type(type_name: str, body: str, match: str) -> None:
    with pytest.raises(r.RecordError, match=match):
        r.decode(type_name, body)


def test_every_record_field_annotation_has_a_decode_check() -> None:
    import dataclasses

    for cls in r.RECORD_TYPES.values():
        for f in dataclasses.fields(cls):
            r._type_error(str(f.type), None)  # raises AssertionError for an unknown annotation
