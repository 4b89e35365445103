"""The supervisor: the daemon's one task group, from start-up to a clean stop.

This module owns the order of things in ``cellfab run``::

    load the site -> open the journal (refused: damaged, foreign, newer, locked)
      -> replay it (every batch as the journal says)
      -> connect the drivers (an unreachable instrument is retried in the background;
         its batches hold with a deviation when they need it, the others go on)
      -> the alarms: replayed, reconciled with the cell, then following the bus
      -> start a runner per batch (each reconciles its in-flight step with the
         instruments before it goes on)
      -> serve the API -> reconciled (every runner has taken up its batch: the
         engine's ``reconciled``; at most RECONCILE_WAIT_S) -> ready (systemd: READY=1)
    SIGTERM/SIGINT -> stop (systemd: STOPPING=1): the API closes, runners and drivers
      are cancelled (a driver call in flight finishes first and its answer is
      journaled), the journal closes. Programs keep running on the instruments; the
      next start reconciles them.

Everything runs in one anyio task group on the asyncio backend; the journal's disk
writes run on its own writer thread. Beside the parts: the metrics follow the event
bus (``daemon.ops.metrics``), and under systemd a task on the loop feeds the watchdog
(``daemon.ops.notify``) from the start, so a stalled loop gets the daemon restarted.
"""

from __future__ import annotations

import contextlib
import signal
from collections.abc import Callable
from dataclasses import dataclass
from typing import Final

import anyio
import structlog

from daemon.alarms.manager import AlarmManager
from daemon.audit.batches import BatchAuditor
from daemon.audit.trail import AuditTrail
from daemon.auth.directory import Directory
from daemon.auth.passwords import Hasher
from daemon.batch.engine import Engine
from daemon.cell import CellView
from daemon.clock import ProcessClock
from daemon.config.build import Instruments, build_drivers
from daemon.config.model import Site
from daemon.events import EventBus
from daemon.journal.store import Journal
from daemon.library import Library, scan
from daemon.lifecycle import RecipeLifecycle
from daemon.ops.metrics import Metrics
from daemon.ops.notify import Notifier, keep_alive, watchdog_interval

log = structlog.get_logger("cellfab.daemon")

# wall seconds READY waits for the runners to take up their batches; an instrument that
# keeps a runner waiting longer must not keep the daemon from serving (systemd would
# kill a start that never ends): it gets ready anyway and names the batches
RECONCILE_WAIT_S: Final = 60.0


@dataclass
class Daemon:
    """Everything one running daemon holds, for the API and the tests."""

    site: Site
    journal: Journal
    instruments: Instruments
    bus: EventBus
    cell: CellView
    clock: ProcessClock
    engine: Engine
    trail: AuditTrail  # the audit trail (daemon.audit)
    auditor: BatchAuditor  # the engine's auditor, and QA's release
    directory: Directory  # users, sign-in, signatures (daemon.auth)
    lifecycle: RecipeLifecycle  # recipe statuses by hash (daemon.lifecycle)
    metrics: Metrics
    alarms: AlarmManager  # ISA-18.2 alarms (daemon.alarms)
    api_url: str = ""  # where the API listens once it serves (daemon.api.server)

    def library(self) -> Library:
        return scan(self.site.recipes)

    def unhealthy(self) -> str:
        """Why the daemon cannot work ("" while it can): the watchdog's question."""
        failure = self.journal.failure
        return f"the journal cannot be written: {failure}" if failure else ""


def build(site: Site, *, journal: Journal | None = None) -> Daemon:
    """Open the journal and make the parts (nothing connects yet). JournalError when
    the journal is refused."""
    journal = journal or Journal.open(site.journal)
    instruments = build_drivers(site)
    bus = EventBus()
    oos = {s.name: frozenset(s.out_of_service) for s in site.shuttles}
    cell = CellView(instruments.shuttles, instruments.analyzers, out_of_service=oos)
    clock = ProcessClock(site.clock.time_scale)
    trail = AuditTrail(journal)
    auditor = BatchAuditor(trail)
    lifecycle = RecipeLifecycle(trail)
    lifecycle.load()
    argon = site.auth.argon2
    directory = Directory(
        trail,
        hasher=Hasher(argon.time_cost, argon.memory_kib, argon.parallelism),
        token_hours=site.auth.token_hours,
        publish=bus.publish,
    )
    directory.load()
    auditor.load()
    engine = Engine(
        journal,
        cell,
        clock,
        bus=bus,
        allow_unapproved=site.policy.allow_unapproved_recipes,
        site_shuttles=tuple(s.name for s in site.shuttles),
        approval=lifecycle.status,
        auditor=auditor.then_for,
    )
    if site.policy.allow_unapproved_recipes:
        log.warning(
            "site allows unapproved recipes: development only; batches on them say so in "
            "their record",
            site=site.site,
        )
    metrics = Metrics(engine, cell, instruments, journal)
    alarms = AlarmManager(
        trail,
        journal,
        cell,
        bus,
        directory,
        out_of_service=oos,
        instruments=instruments.by_name,
    )
    alarms.load()
    metrics.alarms_from(alarms.metric_samples)  # cellfab_alarms{priority,state}
    return Daemon(
        site,
        journal,
        instruments,
        bus,
        cell,
        clock,
        engine,
        trail,
        auditor,
        directory,
        lifecycle,
        metrics,
        alarms,
    )


async def serve(
    daemon: Daemon,
    stop: anyio.Event,
    *,
    api: bool = True,
    on_ready: Callable[[Daemon], None] | None = None,
    notifier: Notifier | None = None,
) -> None:
    """Run the daemon until ``stop`` is set; returns after a clean stop. ``notifier``:
    where systemd's notifications go (default: ``$NOTIFY_SOCKET``, if any)."""
    notify = notifier if notifier is not None else Notifier.from_environment()
    engine = daemon.engine
    try:
        notify.status("replaying the journal")
        engine.load()
        # Two groups so a stop is ordered: the runners and the API end first, then the
        # drivers close. In one group a runner still waiting on a move saw its driver
        # close under it and journaled a lost-link deviation that no link had caused.
        async with anyio.create_task_group() as instruments:
            instruments.start_soon(daemon.cell.run, name="instruments")
            async with anyio.create_task_group() as tg:
                interval = watchdog_interval()
                if interval is not None and notify.enabled:
                    tg.start_soon(keep_alive, notify, interval, daemon.unhealthy, name="watchdog")
                await tg.start(daemon.metrics.run)
                notify.status("connecting the instruments")
                await daemon.cell.ready.wait()
                up = {n: daemon.cell.is_up(n) for n in daemon.instruments.by_name}
                log.info("instruments tried", instruments=up)  # each connected, or found down
                notify.status(f"reconciling {len(engine.batches)} batches with the instruments")
                # the alarms replay the journal before any runner can write to it
                await tg.start(daemon.alarms.run)
                await tg.start(engine.run)
                if api:
                    from daemon.api.server import serve_api

                    await tg.start(serve_api, daemon)
                with anyio.move_on_after(RECONCILE_WAIT_S):
                    await engine.reconciled.wait()
                if not engine.reconciled.is_set():
                    log.warning(
                        "ready before every batch was taken up", waiting=sorted(engine.taking_up)
                    )
                seq, head = daemon.trail.head()
                log.info("audit_head", seq=seq, hash=head)  # an anchor for cellfab audit verify
                log.info(
                    "ready",
                    site=daemon.site.site,
                    batches=len(engine.batches),
                    instruments={n: daemon.cell.is_up(n) for n in daemon.instruments.by_name},
                )
                notify.ready(f"serving {daemon.api_url or 'no API'}; {len(engine.batches)} batches")
                if on_ready is not None:
                    on_ready(daemon)
                await stop.wait()
                log.info("stopping")
                notify.stopping("stopping")
                tg.cancel_scope.cancel()  # the runners and the API first
            instruments.cancel_scope.cancel()
    finally:
        daemon.bus.close()
        with anyio.CancelScope(shield=True):
            await daemon.journal.close()
        notify.close()
        log.info("stopped")


async def run_until_signalled(daemon: Daemon, **kwargs: object) -> None:
    """``serve`` with SIGTERM and SIGINT setting ``stop``."""
    stop = anyio.Event()

    async def on_signals() -> None:
        with anyio.open_signal_receiver(signal.SIGTERM, signal.SIGINT) as signals:
            async for signum in signals:
                log.info("signal", signal=signal.Signals(signum).name)
                stop.set()
                return

    async with anyio.create_task_group() as tg:
        tg.start_soon(on_signals)
        with contextlib.suppress(anyio.get_cancelled_exc_class()):
            await serve(daemon, stop, **kwargs)  # type: ignore[arg-type]
        tg.cancel_scope.cancel()
