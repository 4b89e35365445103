"""The limits a recipe's guards state (split, negated, classified, evaluated), and what
``gather`` says of a journal that cannot make a record. No daemon: the library's
recipes, and a small journal written by the audit tests' sample maker."""

from __future__ import annotations

import asyncio
import contextlib
import shutil
import sqlite3
from pathlib import Path

import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from daemon.recipe import load_recipe
from daemon.record import RecordError, UnknownBatch, gather, html
from daemon.record.limits import conditions, limits_for, negate, split
from daemon.record.model import Alarm
from tests.audit.trailsample import Made, make
from tests.record.page import read

LIBRARY = Path(__file__).resolve().parents[2] / "recipes"


def test_split_at_the_top_level_only() -> None:
    assert split("a || b && c", "||") == ["a", "b && c"]
    assert split("(a || b) && c", "&&") == ["(a || b)", "c"]
    assert split('s == "x || y" || t', "||") == ['s == "x || y"', "t"]
    assert split("a ? b || c : d", "||") is None


@settings(max_examples=200, deadline=None)
@given(st.text(alphabet="ab()|&?\"'\\ <>=!.1", max_size=40))
def test_split_never_raises_and_loses_nothing_but_the_operator(text: str) -> None:
    parts = split(text, "||")
    if parts is not None:  # the parts, joined again, are the text (but for spaces)
        assert "".join("||".join(parts).split()) == "".join(text.split())


def test_negate_reads_well() -> None:
    assert negate("endotoxin >= 5.0") == "endotoxin < 5.0"
    assert negate(" cd3 < 80.0 ") == "cd3 >= 80.0"
    assert negate("growth") == "!growth"
    assert negate("a && b") == "!(a && b)"


def test_the_library_s_limits() -> None:
    lenti = {(c.step, c.limit) for c in conditions(load_recipe(LIBRARY / "car_t_lentiviral.yaml"))}
    assert ("count", "viability >= min_viability_pct") in lenti
    assert ("release_decision", "endotoxin < 5.0") in lenti
    assert ("release_decision", "!growth") in lenti
    assert not any("target_dose" in limit for _s, limit in lenti)  # a decision, not a limit
    qc = conditions(load_recipe(LIBRARY / "qc_only.yaml"))
    assert [(c.limit, c.failing) for c in qc] == [
        ("viability >= min_viability_pct", False),
        ("cd3 >= 50.0", False),
    ]
    env = {"viability": 65.0, "min_viability_pct": 70.0, "cd3": 90.0}
    [low] = limits_for(qc, "viability", env)
    assert low.passed is False and low.step == "qc_sample"
    [cd3] = limits_for(qc, "cd3", env)
    assert cd3.passed is True
    [unknown] = limits_for(qc, "viability", {"viability": 65.0})
    assert unknown.passed is None and "min_viability_pct" in unknown.why


@pytest.fixture(scope="module")
def made(tmp_path_factory: pytest.TempPathFactory) -> Made:
    return asyncio.run(make(tmp_path_factory.mktemp("journal") / "journal.sqlite"))


def test_a_stopped_batch_s_record(made: Made) -> None:
    page = read(html(gather(made.path, "B0001-TST")))
    assert page.text["batch-id"] == "B0001-TST"
    stopped = [s for s in page.rows("signatures") if s["Meaning"] == "stopped"]
    assert stopped and all(s["@data-valid"] == "yes" for s in stopped)


def test_an_unknown_batch_and_a_damaged_journal(made: Made, tmp_path: Path) -> None:
    with pytest.raises(UnknownBatch, match="no batch 'B9999-ZZZ'"):
        gather(made.path, "B9999-ZZZ")
    copy = tmp_path / "damaged.sqlite"
    shutil.copyfile(made.path, copy)
    with contextlib.closing(sqlite3.connect(copy, isolation_level=None)) as conn:
        for (name,) in conn.execute("SELECT name FROM sqlite_master WHERE type = 'trigger'"):
            conn.execute(f"DROP TRIGGER {name}")
        conn.execute(
            "UPDATE records SET body = '{\"batch_id\": 1}' WHERE seq = "
            "(SELECT max(seq) FROM records WHERE batch_id = 'B0001-TST')"
        )
    with pytest.raises(RecordError, match="does not decode"):
        gather(copy, "B0001-TST")


def test_an_alarm_source_fills_the_alarms_section(made: Made) -> None:
    """The hook the alarm system plugs into (daemon.record.AlarmSource)."""
    alarm = Alarm(
        "A-7", "high", "acknowledged", "unit_fault", "<b>CO2</b> low", step="expand",
        unit="INC02", raised_at="2026-01-01T00:00:00Z", history=("acknowledged by op1",),
    )  # fmt: skip
    asked: list[str] = []

    def source(batch_id: str) -> list[Alarm]:
        asked.append(batch_id)
        return [alarm]

    page = read(html(gather(made.path, "B0001-TST", alarms=source)))
    assert asked == ["B0001-TST"] and "alarms-unwired" not in page.text
    [row] = page.rows("alarms")
    assert (row["Alarm"], row["Priority"], row["What"]) == ("A-7", "high", "<b>CO2</b> low")
    empty = read(html(gather(made.path, "B0001-TST", alarms=lambda _b: [])))
    assert empty.text["no-alarms"] == "No alarm was raised for this batch."
