"""Hypothesis against the alarm routes of a running daemon: acknowledgement and shelving
bodies near their schemas (and any JSON), alarm ids and list queries that are hostile.
Never a 5xx; every 4xx is the one error body; the daemon's bug counter stays at zero.
The strategies are the API fuzz suite's (``tests.api.test_fuzz``)."""

from __future__ import annotations

from collections.abc import Iterator
from typing import Any
from urllib.parse import quote

import httpx
import pytest
from hypothesis import given
from hypothesis import strategies as st

from daemon.api.schemas_alarms import AckIn, ShelveIn
from daemon.audit.entries import Act, Actor
from tests.api import test_fuzz as fz
from tests.support import eventually
from tests.support.daemon import PASSWORD, RunningDaemon, client_for

shelve_near = st.fixed_dictionaries(
    {
        "duration_s": st.integers(-5, 50_000) | fz.values,
        "reason": st.sampled_from(["fuzz", " ", ""]) | fz.values,
        "password": st.just(PASSWORD) | fz.values,
    },
    optional={"extra": fz.values},
)


@pytest.fixture(scope="module")
def alarm_ids(api_daemon: RunningDaemon) -> list[str]:
    """A real alarm to aim at: a throwaway account locked by failed sign-ins."""
    act = Act(Actor("local:tests"), "fuzz target")
    directory = api_daemon.daemon.directory
    api_daemon.run(lambda: directory.add(act, "locky", "Lock Y", ("qa",), PASSWORD))
    with httpx.Client(base_url=api_daemon.url) as anyone:
        for _ in range(5):
            anyone.post("/auth/login", json={"name": "locky", "password": "wrong password!"})

    async def listed() -> list[dict[str, Any]]:
        async with client_for(api_daemon.url, api_daemon.token("tester")) as api:
            return (await api.get("/alarms")).json()  # type: ignore[no-any-return]

    alarms = api_daemon.run(lambda: eventually(listed, "the lockout alarm", bool))
    return [a["alarm_id"] for a in alarms]


@pytest.fixture(scope="module")
def client(api_daemon: RunningDaemon) -> Iterator[httpx.Client]:
    api_daemon.hire({"fz": ("Fuzz Er", ("operator", "supervisor"))})
    headers = {"authorization": f"Bearer {api_daemon.token('fz')}"}
    with httpx.Client(base_url=api_daemon.url, timeout=30, headers=headers) as c:
        yield c


@fz.SETTINGS
@given(data=st.data(), body=fz.bodies(AckIn))
def test_ack_bodies(
    client: httpx.Client, alarm_ids: list[str], data: st.DataObject, body: Any
) -> None:
    alarm_id = data.draw(st.sampled_from(alarm_ids) | fz.path_parts)
    fz.check(fz.post(client, f"/alarms/{quote(alarm_id, safe='')}/ack", body))


@fz.SETTINGS
@given(data=st.data(), body=shelve_near | fz.bodies(ShelveIn))
def test_shelve_bodies(
    client: httpx.Client, alarm_ids: list[str], data: st.DataObject, body: Any
) -> None:
    alarm_id = data.draw(st.sampled_from(alarm_ids) | fz.path_parts)
    fz.check(fz.post(client, f"/alarms/{quote(alarm_id, safe='')}/shelve", body))


@fz.SETTINGS
@given(
    data=st.data(),
    query=st.dictionaries(
        st.sampled_from(["state", "batch", "x"]),
        st.lists(
            st.sampled_from(["shelved", "normal", "latched"])
            | st.text(max_size=20)
            | fz.hostile_text,
            max_size=8,
        ),
        max_size=3,
    ),
)
def test_list_queries_and_paths(client: httpx.Client, data: st.DataObject, query: dict) -> None:
    part = quote(data.draw(fz.path_parts), safe="")
    path = data.draw(st.sampled_from(["/alarms", f"/alarms/{part}", f"/alarms/{part}/ack"]))
    method = data.draw(st.sampled_from(["GET", "GET", "POST", "DELETE"]))
    fz.check(client.request(method, path, params=query))


def test_the_daemon_still_serves_with_no_internal_error(client: httpx.Client) -> None:
    health = client.get("/health").json()
    assert health["status"] == "serving" and health["internal_errors"] == 0
