"""GET /metrics of the real daemon on the twins: a qc_only batch moves the step counters,
the duration histogram, the state gauge and the journal's commit histogram; a dropped
Modbus connection (FaultProxy in front of Cell Q) counts as a driver reconnect; the
alarm family takes its numbers from the hook. The scrape, like every read, is signed in
(``tester``, who also starts the batch)."""

from __future__ import annotations

import dataclasses
from collections.abc import Iterator
from typing import Any

import httpx
import pytest
from prometheus_client.parser import text_string_to_metric_families

from daemon.ops.metrics import CONTENT_TYPE
from simulators.faults import FaultProxy
from tests.support import eventually
from tests.support.daemon import (
    RunningDaemon,
    SimTwins,
    batch_until,
    client_for,
    daemon_site,
    insert_cartridge,
    running_daemon,
    start_batch,
)

Samples = dict[tuple[str, frozenset[tuple[str, str]]], float]


@pytest.fixture(scope="module")
def proxy(sim_cell: SimTwins) -> Iterator[FaultProxy]:
    host, port = sim_cell.endpoints["cellq"].rsplit(":", 1)
    proxy = FaultProxy(host, int(port))
    sim_cell.loop.run(proxy.start())
    try:
        yield proxy
    finally:
        sim_cell.loop.run(proxy.stop())


@pytest.fixture(scope="module")
def daemon(
    sim_cell: SimTwins, proxy: FaultProxy, tmp_path_factory: pytest.TempPathFactory
) -> Iterator[RunningDaemon]:
    """The module's daemon, its Cell Q link through the proxy, with the tests' staff."""
    twins = dataclasses.replace(
        sim_cell, endpoints={**sim_cell.endpoints, "cellq": f"127.0.0.1:{proxy.port}"}
    )
    journal = tmp_path_factory.mktemp("metrics") / "journal.sqlite"
    with running_daemon(daemon_site(twins, journal)) as running:
        running.hire()
        yield running


@pytest.fixture
async def api(daemon: RunningDaemon) -> Any:
    async with client_for(daemon.url, daemon.token("tester")) as client:
        yield client


async def scrape(api: httpx.AsyncClient) -> Samples:
    answer = await api.get("/metrics")
    assert answer.status_code == 200, answer.text
    assert answer.headers["content-type"] == CONTENT_TYPE  # the text format
    return {
        (s.name, frozenset(s.labels.items())): s.value
        for family in text_string_to_metric_families(answer.text)
        for s in family.samples
    }


def value(samples: Samples, name: str, **labels: str) -> float:
    return samples.get((name, frozenset(labels.items())), 0.0)


def total(samples: Samples, name: str) -> float:
    return sum(v for (n, _labels), v in samples.items() if n == name)


async def test_a_batch_moves_steps_durations_states_and_journal_commits(
    api: httpx.AsyncClient, sim_cell: SimTwins
) -> None:
    before = await scrape(api)
    batch = await start_batch(api, "qc_only")
    bid = batch["batch_id"]
    await insert_cartridge(api, sim_cell, batch["cartridge_id"])
    done = await batch_until(api, bid, lambda b: b["state"] == "Complete", "Complete")
    steps = 2  # qc_sample, then passed or out_of_range (a complete or a fail step)
    assert done["outcome"] in ("completed", "failed")

    async def counted() -> Samples:
        return await scrape(api)

    after = await eventually(
        counted,
        "the batch's steps in the metrics",
        lambda s: (
            total(s, "cellfab_steps_finished_total")
            >= total(before, "cellfab_steps_finished_total") + steps
        ),
    )

    def delta(name: str, **labels: str) -> float:
        return value(after, name, **labels) - value(before, name, **labels)

    assert delta("cellfab_steps_started_total", kind="sample") == 1
    assert delta("cellfab_steps_finished_total", kind="sample", outcome="ok") == 1
    ended = "complete" if done["outcome"] == "completed" else "fail"
    assert delta("cellfab_steps_started_total", kind=ended) == 1
    assert delta("cellfab_steps_finished_total", kind=ended, outcome=done["outcome"]) == 1
    assert delta("cellfab_step_duration_seconds_count", kind="sample") == 1
    assert delta("cellfab_step_duration_seconds_sum", kind="sample") > 0  # process seconds
    assert delta("cellfab_batches", state="Complete") == 1
    listed = (await api.get("/batches")).json()
    assert total(after, "cellfab_batches") == len(listed)
    records = (await api.get(f"/batches/{bid}/records")).json()
    assert delta("cellfab_journal_records_total") >= len(records)
    commits = delta("cellfab_journal_commit_seconds_count")
    assert 1 <= commits <= len(records)  # group commit: never more commits than records
    assert delta("cellfab_journal_commit_seconds_sum") > 0
    assert value(after, "cellfab_metrics_overflows_total") == 0


async def test_a_dropped_connection_counts_one_reconnect(
    api: httpx.AsyncClient, sim_cell: SimTwins, proxy: FaultProxy
) -> None:
    before = await scrape(api)
    assert value(before, "cellfab_instrument_up", instrument="cellq1") == 1
    assert value(before, "cellfab_instrument_up", instrument="shuttle1") == 1
    reconnects = value(before, "cellfab_driver_reconnects_total", instrument="cellq1")
    assert sim_cell.loop.run(proxy.drop_connections()) >= 1

    async def counted() -> Samples:
        return await scrape(api)

    after = await eventually(
        counted,
        "cellq1's reconnect in the metrics",
        lambda s: value(s, "cellfab_driver_reconnects_total", instrument="cellq1") > reconnects,
    )
    assert value(after, "cellfab_driver_reconnects_total", instrument="cellq1") == reconnects + 1
    shuttle = value(before, "cellfab_driver_reconnects_total", instrument="shuttle1")
    assert value(after, "cellfab_driver_reconnects_total", instrument="shuttle1") == shuttle


async def test_alarm_counts_come_from_the_hook_and_a_failing_hook_spares_the_scrape(
    api: httpx.AsyncClient, daemon: RunningDaemon
) -> None:
    answer = await api.get("/metrics")
    assert "# TYPE cellfab_alarms gauge" in answer.text  # the family, before any alarm
    metrics = daemon.daemon.metrics
    daemon.call(
        lambda: metrics.alarms_from(lambda: [("high", "unacknowledged", 2), ("low", "shelved", 1)])
    )
    samples = await scrape(api)
    assert value(samples, "cellfab_alarms", priority="high", state="unacknowledged") == 2
    assert value(samples, "cellfab_alarms", priority="low", state="shelved") == 1

    def broken() -> list[tuple[str, str, float]]:
        raise RuntimeError("the alarm module's bug")

    daemon.call(lambda: metrics.alarms_from(broken))
    samples = await scrape(api)
    assert total(samples, "cellfab_alarms") == 0
    assert value(samples, "cellfab_batches", state="Complete") >= 0  # the rest is served
    health = (await api.get("/health")).json()
    assert health["internal_errors"] == 0
    daemon.call(lambda: metrics.alarms_from(lambda: ()))
