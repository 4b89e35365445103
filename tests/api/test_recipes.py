"""Recipes through the API: the site's library (list, show) and validation of posted
text, hostile text included (answered with the loader's diagnostics; nothing kept)."""

from __future__ import annotations

from pathlib import Path

import httpx
import pytest

from daemon.recipe import limits
from daemon.recipe.load import load_recipe
from tests.support.daemon import LIBRARY

ROOT = Path(__file__).resolve().parents[2]
BILLION_LAUGHS = ROOT / "tests" / "recipes" / "hostile" / "billion_laughs.yaml"
QC_ONLY = LIBRARY / "qc_only.yaml"


async def validate(api: httpx.AsyncClient, text: str, **body: object) -> dict:
    answer = await api.post("/recipes/validate", json={"text": text, **body})
    assert answer.status_code == 200, answer.text
    return answer.json()  # type: ignore[no-any-return]


async def test_the_library_lists_every_file_with_its_hash_or_its_diagnostics(
    api: httpx.AsyncClient,
) -> None:
    entries = {Path(e["file"]).name: e for e in (await api.get("/recipes")).json()}
    for path in sorted(LIBRARY.glob("*.yaml")):
        entry = entries[path.name]
        recipe = load_recipe(path)
        assert entry["valid"] and entry["diagnostics"] == []
        assert (entry["name"], entry["version"], entry["sha256"]) == (
            recipe.name,
            recipe.version,
            recipe.hash,
        )
        assert entry["approval"] == recipe.doc.approval
    broken = entries["broken_steps.yaml"]
    assert broken["valid"] is False and broken["name"] is None and broken["sha256"] is None
    assert broken["diagnostics"] and all(d["line"] >= 1 for d in broken["diagnostics"])
    assert any("nowhere" in d["message"] for d in broken["diagnostics"]), broken


async def test_a_file_that_does_not_load_cannot_start_a_batch(api: httpx.AsyncClient) -> None:
    answer = await api.post(
        "/batches", json={"recipe": "broken_steps", "cartridge_id": "C-B1", "by": "t"}
    )
    assert answer.status_code == 404 and answer.json()["field"] == "recipe"


async def test_show_gives_parameters_and_steps(api: httpx.AsyncClient) -> None:
    answer = await api.get("/recipes/qc_only")
    assert answer.status_code == 200, answer.text
    shown = answer.json()
    recipe = load_recipe(QC_ONLY)
    assert (shown["name"], shown["version"], shown["sha256"]) == ("qc_only", "1.0", recipe.hash)
    assert shown["start"] == "qc_sample" and shown["approval"] == "draft"
    params = {p["name"]: p for p in shown["parameters"]}
    assert params["volume_ml"] | {"description": ""} == {
        "name": "volume_ml",
        "type": "number",
        "unit": "mL",
        "description": "",
        "default": 0.5,
        "min": 0.1,
        "max": 2.0,
        "choices": None,
    }
    steps = [(s["name"], s["kind"]) for s in shown["steps"]]
    assert steps == [
        ("qc_sample", "sample"),
        ("passed", "complete"),
        ("out_of_range", "fail"),
        ("qc_failed", "fail"),
    ]
    assert shown["steps"][0]["definition"]["sample"]["panel"] == [
        "cell_count",
        "viability",
        "identity",
    ]
    pinned = await api.get("/recipes/qc_only", params={"sha256": recipe.hash})
    assert pinned.json()["sha256"] == recipe.hash


@pytest.mark.parametrize(
    ("path", "params", "status", "field"),
    [
        ("/recipes/no_such", {}, 404, "recipe"),
        ("/recipes/qc_only", {"version": "7"}, 404, "recipe"),
        ("/recipes/qc_only", {"sha256": "f" * 64}, 404, "recipe"),
        ("/recipes/qc_only", {"sha256": "nothex"}, 422, "sha256"),
        ("/recipes/" + "x" * 65, {}, 422, "name"),
    ],
)
async def test_show_names_what_it_cannot_find(
    api: httpx.AsyncClient, path: str, params: dict, status: int, field: str
) -> None:
    answer = await api.get(path, params=params)
    assert answer.status_code == status, answer.text
    assert answer.json()["field"] == field


async def test_validate_answers_the_hash_of_a_good_text_and_keeps_nothing(
    api: httpx.AsyncClient,
) -> None:
    text = QC_ONLY.read_text().replace("recipe: qc_only", "recipe: posted_only")
    answer = await validate(api, text, filename="mine.yaml")
    assert answer["valid"] and answer["diagnostics"] == []
    assert (answer["name"], answer["version"]) == ("posted_only", "1.0")
    assert answer["sha256"] != load_recipe(QC_ONLY).hash  # the name is in the hash
    assert (await api.get("/recipes/posted_only")).status_code == 404
    names = {e["name"] for e in (await api.get("/recipes")).json()}
    assert "posted_only" not in names


async def test_validate_answers_every_diagnostic_with_file_line_and_path(
    api: httpx.AsyncClient,
) -> None:
    text = QC_ONLY.read_text().replace("goto: passed", "goto: nowhere")
    answer = await validate(api, text, filename="mine.yaml")
    assert answer["valid"] is False and answer["sha256"] is None
    (d,) = [d for d in answer["diagnostics"] if "nowhere" in d["message"]]
    assert d["file"] == "mine.yaml" and d["line"] == text[: text.index("nowhere")].count("\n") + 1
    assert d["path"].startswith("steps.qc_sample.next")


@pytest.mark.parametrize(
    ("name", "text", "words"),
    [
        ("billion laughs", BILLION_LAUGHS.read_text(), f"more than {limits.MAX_NODES} nodes"),
        (
            "too many aliases",
            "x: &x 1\nitems: [" + ", ".join(["*x"] * (limits.MAX_ALIASES + 1)) + "]\n",
            f"more than {limits.MAX_ALIASES} aliases",
        ),
        ("deep nesting", "a: " + "[" * 200 + "]" * 200 + "\n", "nest"),
        ("too large", "#" * (limits.MAX_FILE_BYTES + 1), "larger than the limit"),
        ("a tag", "recipe: !!python/object:os.system x\n", "tag"),
        ("not a mapping", "- 1\n- 2\n", "mapping"),
        ("empty", "", "empty"),
    ],
)
async def test_hostile_text_gets_the_loaders_diagnostic(
    api: httpx.AsyncClient, name: str, text: str, words: str
) -> None:
    answer = await validate(api, text)
    assert answer["valid"] is False, name
    messages = " | ".join(d["message"] for d in answer["diagnostics"])
    assert words in messages.lower() or words in messages, messages


@pytest.mark.parametrize(
    ("body", "status", "field"),
    [
        ({"text": 7}, 422, "text"),
        ({}, 422, "text"),
        ({"text": "x", "path": "/etc/passwd"}, 422, "path"),
        ({"text": "x", "filename": "a\nb"}, 422, "filename"),
        ({"text": "#" * (2 * limits.MAX_FILE_BYTES + 1)}, 422, "text"),
    ],
)
async def test_a_validate_request_that_is_not_one_names_its_field(
    api: httpx.AsyncClient, body: dict, status: int, field: str
) -> None:
    answer = await api.post("/recipes/validate", json=body)
    assert answer.status_code == status, answer.text
    assert answer.json()["field"] == field


async def test_a_body_over_the_limit_is_413_before_it_is_read(api: httpx.AsyncClient) -> None:
    huge = b'{"text": "' + b"#" * (9 * limits.MAX_FILE_BYTES) + b'"}'
    answer = await api.post(
        "/recipes/validate", content=huge, headers={"content-type": "application/json"}
    )
    assert answer.status_code == 413
    assert answer.json()["field"] == "body" and answer.json()["error"] == "too_large"
    small_route = await api.post("/batches", content=b"{" + b" " * 70_000 + b"}")
    assert small_route.status_code == 413


async def test_a_streamed_body_over_the_limit_is_413_too(api: httpx.AsyncClient) -> None:
    async def chunks():  # no Content-Length: the limit counts what arrives
        for _ in range(20):
            yield b" " * 8192

    answer = await api.post(
        "/batches", content=chunks(), headers={"content-type": "application/json"}
    )
    assert answer.status_code == 413
    assert answer.json()["field"] == "body"
