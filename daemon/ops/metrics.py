"""The daemon's Prometheus metrics, served at ``GET /metrics`` (prometheus_client).

This module owns one metric registry per daemon (several daemons may share a process
in tests, so never the library's global one) and everything that feeds it:

=============================================  =========  ===============================
metric                                         type       from
=============================================  =========  ===============================
``cellfab_batches{state}``                     gauge      the engine's batches, at scrape
``cellfab_steps_started_total{kind}``          counter    StepStarted records (event bus)
``cellfab_steps_finished_total{kind,outcome}`` counter    StepEnded records (event bus)
``cellfab_step_duration_seconds{kind}``        histogram  StepStarted to StepEnded, in
                                                          process seconds (the recipes'
                                                          clock; wall seconds at scale 1)
``cellfab_driver_reconnects_total{instrument}`` counter   each driver's ``reconnects``
``cellfab_instrument_up{instrument}``          gauge      the cell view's links, at scrape
``cellfab_journal_commit_seconds``             histogram  the journal's writer thread,
                                                          BEGIN to COMMIT (with fsync)
``cellfab_journal_records_total``              counter    the journal's writer thread
``cellfab_alarms{priority,state}``             gauge      the alarm hook, at scrape
``cellfab_metrics_overflows_total``            counter    times this module fell behind
                                                          the event bus (steps missed)
``process_*``                                  ...        prometheus_client's process
                                                          collector (CPU, memory, fds)
=============================================  =========  ===============================

Step ``kind`` is the recipe language's step kind (op, sample, await, confirm, wait,
decide, complete, fail); ``outcome`` is the StepEnded outcome (ok, fault, completed,
failed). Labels never carry batch, cartridge or patient identifiers: they are unbounded
and belong in the journal and the logs, not in a monitoring system.

Counters start at zero when the daemon starts (Prometheus' ``rate`` handles resets); a
step that was running across a restart gets its duration from the journal's
``step_started_pt``.

Alarms (issue #11's ``daemon/alarms``) report through one hook::

    daemon.metrics.alarms_from(lambda: [("high", "unacknowledged", 2), ...])

a callable read at every scrape on the event loop, returning (priority, ISA-18.2 state,
count) triples: states ``unacknowledged``, ``acknowledged``, ``rtn_unacknowledged``,
``shelved``, ``suppressed``; priorities as the alarm module names them. Until it is
set, ``cellfab_alarms`` is exposed with no samples.
"""

from __future__ import annotations

from collections import Counter as Tally
from collections.abc import Callable, Iterable, Iterator
from typing import TYPE_CHECKING, Final

import anyio
import prometheus_client
import structlog
from prometheus_client import CollectorRegistry, Counter, Histogram, ProcessCollector
from prometheus_client.core import CounterMetricFamily, GaugeMetricFamily, Metric
from prometheus_client.registry import Collector

from daemon.batch.states import BatchState
from daemon.events import BusEvent

if TYPE_CHECKING:
    from daemon.batch.engine import Engine
    from daemon.cell import CellView
    from daemon.config.build import Instruments
    from daemon.journal.store import Journal

log = structlog.get_logger("cellfab.metrics")

__all__ = ["CONTENT_TYPE", "AlarmCounts", "Metrics"]

CONTENT_TYPE: Final = prometheus_client.CONTENT_TYPE_LATEST
AlarmCounts = Callable[[], Iterable[tuple[str, str, float]]]
HOUR: Final = 3600.0
STEP_BUCKETS: Final = (
    1.0, 10.0, 60.0, 300.0, 900.0, HOUR, 3 * HOUR, 12 * HOUR, 24 * HOUR,
    72 * HOUR, 168 * HOUR, 336 * HOUR,
)  # fmt: skip
COMMIT_BUCKETS: Final = (
    0.0005, 0.001, 0.002, 0.005, 0.01, 0.02, 0.05, 0.1, 0.2, 0.5, 1.0, 2.0, 5.0,
)  # fmt: skip


class Metrics:
    """The metrics of one daemon (see the module doc); ``run`` follows its event bus."""

    def __init__(
        self,
        engine: Engine,
        cell: CellView,
        instruments: Instruments,
        journal: Journal | None = None,
    ) -> None:
        prometheus_client.disable_created_metrics()  # no *_created series: noise here
        self.engine = engine
        self.cell = cell
        self.instruments = instruments
        self.registry = CollectorRegistry()
        ProcessCollector(registry=self.registry)
        self.steps_started = Counter(
            "cellfab_steps_started", "Steps started", ["kind"], registry=self.registry
        )
        self.steps_finished = Counter(
            "cellfab_steps_finished",
            "Steps ended, by outcome (ok, fault, completed, failed)",
            ["kind", "outcome"],
            registry=self.registry,
        )
        self.step_duration = Histogram(
            "cellfab_step_duration_seconds",
            "Step duration in process seconds (the recipe's clock), start to end",
            ["kind"],
            buckets=STEP_BUCKETS,
            registry=self.registry,
        )
        self.journal_commit = Histogram(
            "cellfab_journal_commit_seconds",
            "Journal group commits: BEGIN to the end of COMMIT (fsync included)",
            buckets=COMMIT_BUCKETS,
            registry=self.registry,
        )
        self.journal_records = Counter(
            "cellfab_journal_records", "Records committed to the journal", registry=self.registry
        )
        self.registry.register(_AtScrape(self))
        self._alarms: AlarmCounts = lambda: ()
        self._started: dict[str, float] = {}  # batch -> process time its step started
        self.overflows = 0
        if journal is not None:
            journal.observe_commits(self._on_commit)

    # ------------------------------------------------------------------ hooks
    def alarms_from(self, counts: AlarmCounts) -> None:
        """Where ``cellfab_alarms`` comes from (see the module doc)."""
        self._alarms = counts

    def _on_commit(self, seconds: float, records: int) -> None:  # the writer thread
        self.journal_commit.observe(seconds)
        self.journal_records.inc(records)

    def render(self) -> bytes:
        """The text exposition of every metric, now (call on the event loop)."""
        return prometheus_client.generate_latest(self.registry)

    # ------------------------------------------------------------------ steps
    async def run(
        self, *, task_status: anyio.abc.TaskStatus[None] = anyio.TASK_STATUS_IGNORED
    ) -> None:
        """Count steps from the event bus until cancelled (start after the journal is
        replayed: a step running across a restart takes its start from there)."""
        sub = self.engine.bus.subscribe(frozenset({"step", "overflow"}))
        for b in self.engine.batches.values():
            if b.step:
                self._started[b.batch_id] = b.step_started_pt
        task_status.started()
        try:
            async for event in sub:
                self.observe(event)
        finally:
            await sub.aclose()

    def observe(self, event: BusEvent) -> None:
        if event.kind == "overflow":
            self.overflows += 1
            log.warning("metrics fell behind the event bus; some steps are not counted")
            return
        data = event.data
        record, bid = data.get("record"), data.get("batch_id", "")
        if record == "StepStarted":
            self.steps_started.labels(self._kind(bid, data["step"])).inc()
            self._started[bid] = float(data["pt"])
        elif record == "StepEnded":
            kind = self._kind(bid, data["step"])
            self.steps_finished.labels(kind, data["outcome"]).inc()
            started = self._started.pop(bid, None)
            if started is not None:
                self.step_duration.labels(kind).observe(max(0.0, float(data["pt"]) - started))

    def _kind(self, batch_id: str, step: str) -> str:
        b = self.engine.batches.get(batch_id)
        recipe = self.engine.recipes.get(b.recipe_hash) if b is not None else None
        if recipe is None or step not in recipe.steps:
            return "unknown"
        return recipe.kind(step)


class _AtScrape(Collector):
    """What is read from the daemon's own state at each scrape (no second copy)."""

    def __init__(self, metrics: Metrics) -> None:
        self.m = metrics

    def collect(self) -> Iterator[Metric]:
        m = self.m
        batches = GaugeMetricFamily("cellfab_batches", "Batches by ISA-88 state", labels=["state"])
        states = Tally(b.state for b in m.engine.batches.values())
        for state in BatchState:
            batches.add_metric([state.value], states.get(state, 0))
        yield batches
        drivers = {**m.instruments.shuttles, **m.instruments.analyzers}
        reconnects = CounterMetricFamily(
            "cellfab_driver_reconnects",
            "Links restored after a loss, per instrument, since the daemon started",
            labels=["instrument"],
        )
        up = GaugeMetricFamily(
            "cellfab_instrument_up", "1 while the instrument's link is up", labels=["instrument"]
        )
        for name, driver in drivers.items():
            reconnects.add_metric([name], driver.reconnects)
            up.add_metric([name], 1.0 if m.cell.is_up(name) else 0.0)
        yield reconnects
        yield up
        alarms = GaugeMetricFamily(
            "cellfab_alarms", "Alarms by priority and ISA-18.2 state", labels=["priority", "state"]
        )
        try:
            for priority, state, count in m._alarms():
                alarms.add_metric([priority, state], count)
        except Exception:  # the alarm module's bug must not break the scrape
            log.exception("alarm counts failed")
        yield alarms
        overflows = CounterMetricFamily(
            "cellfab_metrics_overflows",
            "Times the metrics fell behind the event bus (steps then go uncounted)",
        )
        overflows.add_metric([], m.overflows)
        yield overflows
