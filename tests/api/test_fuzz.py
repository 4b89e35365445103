"""Hypothesis against the running API: request bodies, paths and queries near the
schemas (the request models' own field names, plausible and hostile values), arbitrary
JSON and bytes that are not JSON. Never a 5xx; every 4xx is the one error body; the
daemon keeps serving and its bug counter stays at zero.

Strategies are built from ``daemon.api.schemas`` (field names, bounds), not from
schemathesis: that one needs a pytest plugin and a network of its own (decision 0063).
"""

from __future__ import annotations

import json
from collections.abc import Iterator
from typing import Any
from urllib.parse import quote

import httpx
import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st
from pydantic import BaseModel

from daemon.api import schemas
from tests.support.daemon import RunningDaemon

SETTINGS = settings(
    max_examples=40,
    deadline=None,
    suppress_health_check=[HealthCheck.too_slow, HealthCheck.function_scoped_fixture],
)
ERROR_KEYS = {"error", "field", "detail", "errors"}

scalars = (
    st.none()
    | st.booleans()
    | st.integers(min_value=-(2**70), max_value=2**70)
    | st.floats()  # NaN and infinity too: Python's JSON writes them, a server must cope
    | st.text(max_size=40)
)
json_values = st.recursive(
    scalars,
    lambda inner: (
        st.lists(inner, max_size=4) | st.dictionaries(st.text(max_size=8), inner, max_size=4)
    ),
    max_leaves=12,
)
hostile_text = st.sampled_from(
    [
        "",
        " ",
        "\x00",
        "a\nb",
        "x" * 70,
        "x" * 1_500,
        "../../etc/passwd",
        "${volume_ml}",
        "💥" * 20,
        "B0001-AAA",
        "0" * 64,
    ]
)
plausible = {
    "recipe": st.sampled_from(["qc_only", "confirm_gate", "car_t_rapid_3day", "broken_steps"]),
    "version": st.sampled_from(["1.0", "2.0"]),
    "cartridge_id": st.from_regex(r"FZ[A-Za-z0-9._-]{1,10}", fullmatch=True),
    "by": st.sampled_from(["op1", "sup1"]),
    "role": st.sampled_from(["operator", "supervisor", "qa", "admin"]),
    "step": st.sampled_from(["label_check", "done", "qc_sample"]),
    "priority": st.integers(-1001, 1001),
    "params": st.dictionaries(
        st.sampled_from(["volume_ml", "min_viability_pct", "other"]),
        st.floats(0, 200) | st.integers(-5, 5) | st.text(max_size=5) | st.booleans(),
        max_size=3,
    ),
    "text": st.text(max_size=200) | st.sampled_from(["recipe: x\nstart: a\nsteps: {}\n"]),
}
values = json_values | hostile_text


def near(model: type[BaseModel]) -> st.SearchStrategy[dict[str, Any]]:
    """Bodies of ``model``'s fields: plausible values mostly, any value sometimes, an
    unknown field now and then."""
    value_of = {name: plausible.get(name, values) | values for name in model.model_fields}
    required = {n for n, f in model.model_fields.items() if f.is_required()}
    return st.fixed_dictionaries(
        {n: v for n, v in value_of.items() if n in required},
        optional={**{n: v for n, v in value_of.items() if n not in required}, "extra": values},
    )


def bodies(model: type[BaseModel]) -> st.SearchStrategy[Any]:
    return near(model) | json_values


path_parts = st.text(min_size=1, max_size=40) | hostile_text.filter(bool) | st.just("B0001-AAA")


@pytest.fixture(scope="module")
def client(api_daemon: RunningDaemon) -> Iterator[httpx.Client]:
    with httpx.Client(base_url=api_daemon.url, timeout=30) as c:
        yield c
    # leave no fuzzed batch waiting for a cartridge that never comes
    with httpx.Client(base_url=api_daemon.url, timeout=30) as c:
        for b in c.get("/batches").json():
            if b["state"] not in ("Complete", "Stopped", "Aborted", "Aborting"):
                c.post(f"/batches/{b['batch_id']}/commands/abort", json={"by": "fuzz"})


def check(answer: httpx.Response) -> None:
    assert answer.status_code < 500, (answer.request.method, answer.request.url, answer.text)
    if answer.status_code >= 400:
        body = answer.json()
        assert set(body) == ERROR_KEYS, body
        assert isinstance(body["field"], str) and body["detail"], body


def post(client: httpx.Client, path: str, body: Any) -> httpx.Response:
    """POST ``body`` as Python writes JSON (NaN and Infinity included, as a careless
    client would send them; httpx itself refuses to)."""
    raw = json.dumps(body).encode()
    return client.post(path, content=raw, headers={"content-type": "application/json"})


def _existing(client: httpx.Client) -> list[str]:
    return [b["batch_id"] for b in client.get("/batches").json()] or ["B0001-AAA"]


@SETTINGS
@given(body=bodies(schemas.StartIn))
def test_start_bodies(client: httpx.Client, body: Any) -> None:
    check(post(client, "/batches", body))


@SETTINGS
@given(
    data=st.data(),
    command=st.sampled_from(["hold", "restart", "pause", "resume", "stop", "abort", "reset"])
    | path_parts,
    body=bodies(schemas.CommandIn),
)
def test_command_bodies(client: httpx.Client, data: st.DataObject, command: str, body: Any) -> None:
    batch_id = data.draw(st.sampled_from(_existing(client)) | path_parts)
    path = f"/batches/{quote(batch_id, safe='')}/commands/{quote(command, safe='')}"
    check(post(client, path, body))


@SETTINGS
@given(data=st.data(), body=bodies(schemas.ConfirmIn))
def test_confirm_bodies(client: httpx.Client, data: st.DataObject, body: Any) -> None:
    batch_id = data.draw(st.sampled_from(_existing(client)) | path_parts)
    check(post(client, f"/batches/{quote(batch_id, safe='')}/confirm", body))


@SETTINGS
@given(body=bodies(schemas.ValidateIn))
def test_validate_bodies(client: httpx.Client, body: Any) -> None:
    answer = post(client, "/recipes/validate", body)
    check(answer)
    if answer.status_code == 200:
        assert answer.json()["valid"] in (True, False)


@SETTINGS
@given(
    path=st.sampled_from(["/batches", "/recipes/validate", "/batches/B0001-AAA/confirm"]),
    raw=st.binary(max_size=300),
    content_type=st.sampled_from(["application/json", "text/plain", "", "application/x-yaml"]),
)
def test_bytes_that_are_not_json(
    client: httpx.Client, path: str, raw: bytes, content_type: str
) -> None:
    headers = {"content-type": content_type} if content_type else {}
    check(client.post(path, content=raw, headers=headers))


@SETTINGS
@given(
    data=st.data(),
    query=st.dictionaries(
        st.sampled_from(["state", "version", "sha256", "after", "limit", "kind", "x"]),
        st.lists(st.text(max_size=20) | hostile_text | st.integers().map(str), max_size=3),
        max_size=3,
    ),
)
def test_paths_and_queries(client: httpx.Client, data: st.DataObject, query: dict) -> None:
    part = quote(data.draw(path_parts), safe="")
    path = data.draw(
        st.sampled_from(
            [
                "/batches",
                f"/batches/{part}",
                f"/batches/{part}/records",
                f"/recipes/{part}",
                "/recipes",
                "/instruments",
                "/instruments/queue",
                f"/{part}",
            ]
        )
    )
    method = data.draw(st.sampled_from(["GET", "GET", "POST", "PUT", "DELETE"]))
    check(client.request(method, path, params=query))


def test_the_daemon_still_serves_and_no_request_reached_the_catch_all(
    client: httpx.Client,
) -> None:
    health = client.get("/health").json()
    assert health["status"] == "serving" and health["internal_errors"] == 0
