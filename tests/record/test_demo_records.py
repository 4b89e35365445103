"""The batch record of every batch of a finished `cellfab demo` (issue #11: "the batch
record of a finished demo batch holds every step, QC result and signature"): the demo
is run as a person runs it, and each record is held to the demo's own journal."""

from __future__ import annotations

import re
import shutil
import subprocess
from collections import Counter
from collections.abc import Iterator
from pathlib import Path

import pytest

from daemon.journal import files
from daemon.journal import records as r
from tests.record.page import Page, read
from tests.support import CELLFAB

DEMO_LIMIT_S = 900  # hang guard: the demo takes about a minute on two cores


@pytest.fixture(scope="module")
def demo() -> Iterator[tuple[Path, dict[str, Page]]]:
    proc = subprocess.run(
        [CELLFAB, "demo", "--plain", "--keep"],
        capture_output=True,
        text=True,
        timeout=DEMO_LIMIT_S,
    )
    assert proc.returncode == 0, proc.stdout[-3000:] + proc.stderr[-3000:]
    kept = re.search(r"kept in (\S+)", proc.stdout)
    assert kept, proc.stdout[-2000:]
    folder = Path(kept.group(1))
    try:
        pages = {
            p.stem: read(p.read_text(encoding="utf-8")) for p in (folder / "records").glob("*.html")
        }
        assert len(pages) == 4, sorted(pages)
        yield folder / "journal.sqlite", pages
    finally:
        shutil.rmtree(folder, ignore_errors=True)


def test_every_step_qc_result_and_signature_of_every_demo_batch(
    demo: tuple[Path, dict[str, Page]],
) -> None:
    journal, pages = demo
    for bid, page in pages.items():
        recs = [rec for _seq, rec in files.read_records(journal, batch_id=bid)]
        started = [rec.step for rec in recs if isinstance(rec, r.StepStarted)]
        assert [s["Step"] for s in page.rows("steps")] == started, bid
        results = Counter(
            name for rec in recs if isinstance(rec, r.JobEnded) for name in rec.results
        )
        # every result of every job, in the jobs table; those the recipe binds, one row
        # each in the QC table with its value (and its limits where the recipe has any)
        jobs = " ".join(j["Results"] for j in page.rows("jobs"))
        assert results and all(name in jobs for name in results), (bid, results, jobs)
        assays = [q for q in page.rows("qc") if q["Source"].startswith("QC (")]
        bound = Counter(name for rec in recs if isinstance(rec, r.Bound) for name in rec.values)
        assert assays and all(q["Value"] and bound[q["Value of"]] for q in assays), bid
        sigs = page.rows("signatures")
        assert all(s["Valid"] == "valid" for s in sigs), (bid, sigs)
        meanings = Counter(s["Meaning"] for s in sigs)
        qa_confirms = sum(isinstance(rec, r.Confirmed) and rec.role == "qa" for rec in recs)
        assert meanings["approved"] == 1 and meanings["released"] == 1, (bid, meanings)
        assert meanings["confirmed"] == qa_confirms, (bid, meanings)
        assert page.text["batch-id"] == bid
        # each deviation raised its alarm (daemon.alarms), and the record shows it
        deviations = Counter(rec.kind for rec in recs if isinstance(rec, r.Deviation))
        alarms = Counter(a["Kind"] for a in page.rows("alarms")) if deviations else Counter()
        assert alarms == deviations, (bid, alarms, deviations)
