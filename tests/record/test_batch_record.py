"""The electronic batch record of a batch run to its end on the twins, through the API
and the CLI: every step (TaskId, unit, times), every QC result against its limit, every
signature (valid), the chain of identity, the recipe's hash and approval, the
deviation the batch had; a tampered signed record shows as invalid; hostile text is
shown as text; an unapproved recipe is said loudly. Pages are parsed, not grepped."""

from __future__ import annotations

import asyncio
import contextlib
import sqlite3
import subprocess
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import httpx
import pytest

from daemon.journal import files
from daemon.record import gather, html
from tests.record.page import Page, read
from tests.support import CELLFAB, HANG_GUARD, fresh
from tests.support.daemon import (
    PASSWORD,
    RunningDaemon,
    SimTwins,
    batch_until,
    client_for,
    insert_cartridge,
)

HERE = Path(__file__).parent
RECIPE = HERE / "recipes" / "record_demo.yaml"
SCRIPT = '<script>alert("restart")</script> labels re-checked'
IMG = "<img src=x onerror=alert(1)> labels match C-"


@pytest.fixture(scope="module")
def daemon_recipes() -> tuple[Path, ...]:
    return (RECIPE.parent,)


@dataclass
class Finished:
    batch_id: str
    cartridge: str
    recipe_hash: str
    detail: dict[str, Any]
    html: str
    page: Page


async def _post(d: RunningDaemon, who: str, path: str, **body: Any) -> dict[str, Any]:
    async with client_for(d.url, d.token(who)) as api:
        answer = await api.post(path, json=body)
    assert answer.status_code in (200, 201), answer.text
    return answer.json()  # type: ignore[no-any-return]


async def _waiting(api: httpx.AsyncClient, bid: str, step: str) -> None:
    await batch_until(
        api, bid, lambda b: (b.get("waiting") or {}).get("step") == step, f"waits at {step}"
    )


@pytest.fixture(scope="module")
def finished(api_daemon: RunningDaemon, sim_cell: SimTwins) -> Finished:
    return asyncio.run(_finish(api_daemon, sim_cell))


async def _finish(api_daemon: RunningDaemon, sim_cell: SimTwins) -> Finished:
    """record_demo approved (submitted by sup1, approved by qa1), started by tester, held
    by its confirmation's timeout and restarted by op1 (a hostile reason), confirmed by
    op1 and by qa1 (signed), released by qa2 (signed)."""
    d = api_daemon
    row = await _post(d, "sup1", "/recipes/submit", text=RECIPE.read_text(), reason="for tests")
    sha = row["recipe_hash"]
    await _post(d, "qa1", f"/recipes/{sha}/approve", password=PASSWORD, reason="reviewed")
    cartridge = fresh("C")
    async with client_for(d.url, d.token("tester")) as api:
        started = await _post(
            d, "tester", "/batches", recipe="record_demo", cartridge_id=cartridge, reason="go"
        )
        bid = started["batch_id"]
        assert started["unapproved"] is False
        await insert_cartridge(api, sim_cell, cartridge)
        await batch_until(api, bid, lambda b: b["state"] == "Held", "held (confirm timeout)")
        await _post(d, "op1", f"/batches/{bid}/commands/restart", reason=SCRIPT)
        await _waiting(api, bid, "labels")
        await _post(d, "op1", f"/batches/{bid}/confirm", step="labels", reason=IMG + cartridge)
        await _waiting(api, bid, "qa_release")
        await _post(
            d, "qa1", f"/batches/{bid}/confirm", step="qa_release", reason="EBR reviewed",
            password=PASSWORD,
        )  # fmt: skip
        done = await batch_until(api, bid, lambda b: b["state"] == "Complete", "Complete")
    assert done["outcome"] == "completed", done
    await _post(d, "qa2", f"/batches/{bid}/release", reason="released", password=PASSWORD)
    async with client_for(d.url, d.token("op1")) as api:  # any signed-in role reads it
        answer = await api.get(f"/batches/{bid}/record")
        detail = (await api.get(f"/batches/{bid}")).json()
    assert answer.status_code == 200, answer.text
    assert answer.headers["content-type"].startswith("text/html")
    return Finished(bid, cartridge, sha, detail, answer.text, read(answer.text))


def test_every_step_with_its_tasks_units_and_times(finished: Finished) -> None:
    p = finished.page
    steps = p.rows("steps")
    assert [s["Step"] for s in steps] == [
        "select", "qc", "fill", "labels", "qa_release", "released",
    ]  # fmt: skip
    for s in steps:
        assert s["Started (UTC)"].endswith("Z") and s["Ended (UTC)"].endswith("Z"), s
        assert s["Outcome"] in ("ok", "completed"), s
    bid = finished.batch_id
    units = {s["Step"]: s["Unit (TaskId)"] for s in steps}
    assert units["select"].startswith("SEL") and units["select"].endswith(f"({bid}/select/1)")
    assert units["fill"].startswith("FIN") and units["labels"] == ""
    tasks = p.rows("tasks")
    programs = {t["Program"]: t for t in tasks if t["Kind"] == "program"}
    assert set(programs) == {"cell_selection", "sample", "fill_finish"}
    assert programs["cell_selection"]["TaskId"] == f"{bid}/select/1"
    assert programs["cell_selection"]["Unit"].startswith("SEL")
    assert programs["fill_finish"]["Unit"].startswith("FIN")
    for t in tasks:
        assert t["TaskId"].startswith(bid + "/") and t["Unit"], t
        assert t["Started (UTC)"] and t["Ended (UTC)"] and t["Status"] in ("Complete", "ok"), t
        assert t["RunId"] or t["Kind"] == "move", t
    assert any(t["Kind"] == "move" for t in tasks)
    assert "bags" in programs["fill_finish"]["Outputs"]


def test_qc_results_against_their_limits(finished: Finished) -> None:
    qc = {q["Value of"]: q for q in finished.page.rows("qc") if q["Step"] == "qc"}
    assert set(qc) == {"density", "viability", "cd3"}
    viability, cd3 = qc["viability"], qc["cd3"]
    assert "viability >= min_viability_pct: pass" in viability["Limits (as the recipe states them)"]
    assert viability["Verdict"] == "pass" and viability["@data-verdict"] == "pass"
    assert "cd3 >= 10.0: pass" in cd3["Limits (as the recipe states them)"]
    assert float(viability["Value"]) >= 50.0 and viability["Unit"] == "%"
    assert qc["density"]["Verdict"] == "no limit" and qc["density"]["Unit"] == "cells/mL"
    sample = qc["viability"]["SampleId"]
    assert sample == f"{finished.batch_id}-S1"
    jobs = finished.page.rows("jobs")
    assert [j["SampleId"] for j in jobs] == [sample] and jobs[0]["State"] == "done"


def test_every_signature_valid_and_the_release(finished: Finished) -> None:
    sigs = finished.page.rows("signatures")
    assert sorted(s["Meaning"] for s in sigs) == ["approved", "confirmed", "released"]
    assert all(s["@data-valid"] == "yes" and s["Valid"] == "valid" for s in sigs), sigs
    by = {s["Meaning"]: s["Signed by"] for s in sigs}
    assert by == {"approved": "Quinn Adams", "confirmed": "Quinn Adams", "released": "Quentin Abel"}
    assert "invalid-signatures" not in finished.page.text
    assert finished.page.text["batch-release"].startswith("released by Quentin Abel (qa2)")


def test_chain_of_identity_recipe_hash_and_approval(finished: Finished) -> None:
    p = finished.page
    assert p.text["cartridge"] == finished.cartridge
    bags = p.text["bags"].split(", ")
    assert len(bags) == 2 and all(b.startswith(finished.cartridge) for b in bags), bags
    [sample] = p.rows("samples")
    assert sample["Consistent"] == "yes" and sample["Drawn"] == "yes"
    assert sample["SampleId"] == sample["Drawn as"] == sample["Analysed as"]
    assert "identity-problems" not in p.text
    assert p.text["recipe-name"] == "record_demo" and p.text["recipe-version"] == "1.0"
    assert p.text["recipe-hash"] == finished.recipe_hash == finished.detail["recipe_hash"]
    assert p.text["recipe-status"] == "approved"
    assert p.text["recipe-approval"].startswith("approved by Quinn Adams (qa1)")
    assert "signature valid" in p.text["recipe-approval"]
    assert "unapproved" not in p.text
    params = {r["Parameter"]: r["Value"] for r in p.rows("parameters")}
    assert params == {"min_viability_pct": "50", "label_text": "<b>label</b> & co"}


def test_the_deviation_and_the_restart(finished: Finished) -> None:
    [deviation] = finished.page.rows("deviations")
    assert deviation["Kind"] == "timeout" and deviation["Step"] == "labels"
    assert "no confirmation of 'labels'" in deviation["What"]
    commands = finished.page.rows("commands")
    restart = next(c for c in commands if c["Command"] == "Restart")
    assert restart["By"] == "op1" and restart["Reason"] == SCRIPT
    hold = next(c for c in commands if c["Command"] == "Hold")
    assert hold["By"] == "system"


def test_hostile_text_is_text_and_the_page_is_self_contained(finished: Finished) -> None:
    p = finished.page
    assert "script" not in p.tags and p.handlers == []  # nothing runs
    assert [t for t in p.tags if t == "img"] == ["img"]  # the timeline, nothing else
    assert all(u.startswith("data:image/svg+xml;base64,") for u in p.urls), p.urls
    assert "link" not in p.tags and "iframe" not in p.tags
    assert SCRIPT in p.body_text and IMG in p.body_text  # shown, as text
    assert "&lt;script&gt;" in finished.html and "<script>" not in finished.html
    audit = p.rows("audit")
    assert any(a["Reason"] == SCRIPT for a in audit)
    assert {a["Action"] for a in audit} >= {"batch.create", "batch.confirm", "batch.release"}
    # the alarms are wired (daemon.alarms): the timeout's alarm, raised and returned
    [alarm] = p.rows("alarms")
    assert (alarm["Kind"], alarm["Priority"], alarm["Step"]) == ("timeout", "medium", "labels")
    assert "raise" in alarm["History"] and "clear" in alarm["History"]


async def test_a_tampered_signed_record_shows_invalid(
    api_daemon: RunningDaemon, finished: Finished, tmp_path: Path
) -> None:
    copy = tmp_path / "tampered.sqlite"
    with contextlib.closing(files.connect_ro(api_daemon.daemon.journal.path)) as source:
        files.copy_database(source, copy)
    with contextlib.closing(sqlite3.connect(copy, isolation_level=None)) as conn:
        for (name,) in conn.execute("SELECT name FROM sqlite_master WHERE type = 'trigger'"):
            conn.execute(f"DROP TRIGGER {name}")
        changed = conn.execute(
            "UPDATE records SET body = replace(body, 'EBR reviewed', 'EBR skipped') "
            "WHERE type = 'Confirmed' AND batch_id = ? AND body LIKE '%EBR reviewed%'",
            (finished.batch_id,),
        ).rowcount
    assert changed == 1
    page = read(html(gather(copy, finished.batch_id)))
    valid = {s["Meaning"]: s for s in page.rows("signatures")}
    assert valid["approved"]["@data-valid"] == "yes"
    for meaning in ("confirmed", "released"):  # the record it signed, or its history, changed
        assert valid[meaning]["@data-valid"] == "no"
        assert valid[meaning]["Valid"].startswith("INVALID: the signed record changed")
    assert "'EBR reviewed' -> 'EBR skipped'" in valid["confirmed"]["Valid"]
    assert page.text["invalid-signatures"].startswith("2 electronic signatures")


async def test_an_unapproved_recipe_is_said_loudly(
    api_daemon: RunningDaemon, sim_cell: SimTwins
) -> None:
    async with client_for(api_daemon.url, api_daemon.token("tester")) as api:
        started = await api.post("/batches", json={"recipe": "qc_only", "cartridge_id": fresh("C")})
        assert started.status_code == 201, started.text
        bid = started.json()["batch_id"]
        answer = await api.get(f"/batches/{bid}/record")  # before it even ran
        await api.post(f"/batches/{bid}/commands/abort", json={"reason": "x", "password": PASSWORD})
    page = read(answer.text)
    assert page.text["unapproved"].startswith("UNAPPROVED — site allows unapproved recipes")
    assert page.text["recipe-approval"].startswith("none: UNAPPROVED")
    assert page.rows("steps") == [] and "no-deviations" in page.text


async def test_the_api_refuses_unknown_and_signed_out(api_daemon: RunningDaemon) -> None:
    async with client_for(api_daemon.url, api_daemon.token("op1")) as api:
        missing = await api.get("/batches/B9999-ZZZ/record")
        bad = await api.get("/batches/B9999-ZZZ/record", params={"format": "docx"})
    assert missing.status_code == 404 and missing.json()["field"] == "batch_id"
    assert bad.status_code == 422 and bad.json()["field"] == "format"
    async with client_for(api_daemon.url) as anyone:
        assert (await anyone.get("/batches/B9999-ZZZ/record")).status_code == 401


# --------------------------------------------------------------------------- the CLI
@pytest.fixture(scope="module")
def config(api_daemon: RunningDaemon, tmp_path_factory: pytest.TempPathFactory) -> Iterator[Path]:
    """``cellfab login`` as qa2, in a config folder of its own."""
    folder = tmp_path_factory.mktemp("config")
    done = subprocess.run(
        [CELLFAB, "login", "--user", "qa2", "--api", api_daemon.url],
        input=PASSWORD + "\n", capture_output=True, text=True, timeout=HANG_GUARD, check=False,
        env=_env(folder),
    )  # fmt: skip
    assert done.returncode == 0, done.stderr
    yield folder


def _env(config: Path) -> dict[str, str]:
    import os

    return {**os.environ, "XDG_CONFIG_HOME": str(config)}


def _report(config: Path, cwd: Path, *args: str) -> subprocess.CompletedProcess[str]:
    return subprocess.run(
        [CELLFAB, "batch", "report", *args], capture_output=True, text=True,
        timeout=HANG_GUARD, check=False, env=_env(config), cwd=cwd,
    )  # fmt: skip


def test_the_cli_writes_the_record(
    api_daemon: RunningDaemon, finished: Finished, config: Path, tmp_path: Path
) -> None:
    url = api_daemon.url
    done = _report(config, tmp_path, finished.batch_id, "--api", url)
    default = tmp_path / f"{finished.batch_id}-record.html"
    assert done.returncode == 0, done.stderr
    assert done.stdout.strip() == str(default)
    page = read(default.read_text())
    assert page.text["batch-id"] == finished.batch_id and len(page.rows("steps")) == 6

    pdf = tmp_path / "out" / "record.pdf"
    pdf.parent.mkdir()
    done = _report(config, tmp_path, finished.batch_id, "-o", str(pdf), "--api", url)
    assert done.returncode == 0, done.stderr
    assert pdf.read_bytes().startswith(b"%PDF-") and done.stdout.strip() == str(pdf)

    missing = _report(config, tmp_path, "B9999-ZZZ", "--api", url)
    assert missing.returncode == 1 and "refused (404)" in missing.stderr
    folder = _report(config, tmp_path, finished.batch_id, "-o", str(tmp_path), "--api", url)
    assert folder.returncode == 2 and "is a folder" in folder.stderr
    signed_out = _report(tmp_path / "nobody", tmp_path, finished.batch_id, "--api", url)
    assert signed_out.returncode == 1 and "refused (401)" in signed_out.stderr
