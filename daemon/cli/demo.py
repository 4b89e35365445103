"""`cellfab demo`: four patients' batches through one simulated cell, on the batch engine.

Everything runs in this process::

    twins     SimCell: the shuttle (OPC UA), Cell Q (Modbus TCP) and balance twins on one
              world (--seed) and one clock (--time-scale), on ephemeral ports, so a running
              `cellfab sim` is not disturbed; on an event loop of their own (a thread), so
              that, like real instruments, they keep time when the daemon is busy
    daemon    daemon.supervisor on a site shaped like the embedded default site (shuttle1,
              cellq1; the library's recipes) but pointing at those ports, with its journal
              in a temporary folder; batches start only on approved recipes
    people    what the cell's staff would do, each through the interface they would use,
              each a user of the daemon (made at start-up, random passwords):
              lifecycle   sup.lee submits each recipe, qa.ruiz approves it (e-signed; two
                          people, as the lifecycle requires)
              loader      puts each patient's cartridge at the LoadPort once it is free
                          (the twin's controls: the physical world)
              operator    answers every confirm step with the role the recipe asks for
                          (operator, qa), through the engine as the API will
              fault       faults the incubator running patient 2's first expansion,
                          partway through (the twin's InjectFault: a broken instrument)
              supervisor  once that batch is held by the system, restarts it (engine
                          Restart); the engine clears the unit and runs the expansion again
                          as attempt 2
              qa          answers qa confirmations with an e-signature, and releases each
                          Complete batch (e-signed; not the supervisor who started it)
    view      a live table on a terminal, one line per event otherwise, then a summary
              per batch (daemon.cli.demo_view); the daemon's own log goes to a file in
              the temporary folder on a terminal, to stderr otherwise

The four batches: two lentiviral CAR-T, one electroporation, one rapid 3-day, from
recipes/. What is expected of each, and checked (daemon.cli.demo_verdict): it ends
Complete with its product released; the faulted one records that unit fault as its
deviation, is restarted and still released; the others record no deviation; the twins'
own counters show every program, move and Cell Q job started once. Exit 0 when all of
that holds, 1 otherwise (the temporary folder is then kept), 130 on Ctrl-C.
"""

from __future__ import annotations

import argparse
import contextlib
import secrets
import shutil
import signal
import sys
import tempfile
from collections import Counter
from collections.abc import Callable
from dataclasses import dataclass
from functools import partial
from pathlib import Path
from typing import IO, Any

import anyio
import structlog
from asyncua import Client, ua

from daemon.audit.batches import started_by
from daemon.audit.entries import Act, Actor
from daemon.audit.errors import RequestRefused
from daemon.auth.directory import Session
from daemon.batch.engine import EngineError
from daemon.batch.machine import Batch
from daemon.batch.runner import LINK_HOLD, SYSTEM
from daemon.batch.states import ADVANCING, BatchState, Command
from daemon.cli import logs
from daemon.cli.demo_verdict import Injected, Run, Verdict, judge
from daemon.cli.demo_view import Feed, live_view
from daemon.cli.sim import add_world_arguments
from daemon.events import Subscription
from daemon.ops.heap import freeze_built
from daemon.supervisor import Daemon, build, serve
from drivers import icd
from simulators.cell import SimCell, SimConfig, SimStartError
from simulators.controls import TwinControls
from simulators.runner import BackgroundLoop

log = structlog.get_logger("cellfab.demo")

DEFAULT_TIME_SCALE = 25000.0  # about a minute on a 2-core machine
SHUTTLE = "shuttle1"  # the default site's names (daemon.config.defaults.SIM_NAMES)
PEOPLE = {"operator": "op.kim", "supervisor": "sup.lee", "qa": "qa.ruiz"}
FULL_NAMES = {"op.kim": "Kim Park", "sup.lee": "Lee Moreau", "qa.ruiz": "Ana Ruiz"}
OPERATOR_DELAY = 0.3  # wall seconds a person takes to answer (visible in the table)
SUPERVISOR_DELAY = 1.0  # wall seconds before the faulted batch is restarted
FAULT_AT = 0.3  # fraction of the program done when its unit faults
FAULT = (31, "CO2 supply pressure low")
HANG_DAYS = 45.0  # process days after which the demo gives up (a hang guard)
EVENTS = frozenset({"batch", "step", "deviation", "record", "fault"})  # the feed's bus kinds


@dataclass(frozen=True, slots=True)
class Patient:
    recipe: str
    cartridge: str
    cells: float  # starting material at the LoadPort
    viability: float
    fault_step: str = ""  # the step whose first program the demo faults


PLAN = (
    Patient("car_t_lentiviral", "C-PT0001", 2.0e8, 91.0),
    Patient("car_t_lentiviral", "C-PT0002", 2.4e8, 88.0, fault_step="expand"),
    Patient("car_t_electroporation", "C-PT0003", 2.2e8, 92.0),
    Patient("car_t_rapid_3day", "C-PT0004", 3.0e8, 94.0),
)


class Demo:
    """The demo's people and its view, around one running daemon."""

    def __init__(self, daemon: Daemon, controls: TwinControls, feed: Feed) -> None:
        self.daemon = daemon
        self.engine = daemon.engine
        self.controls = controls
        self.feed = feed
        self.run = Run()
        self.sessions: dict[str, Session] = {}
        self._passwords: dict[str, str] = {}

    def kind_of(self, b: Batch, step: str) -> str:
        return self.engine.recipe_of(b).kind(step)

    def act(self, role: str, reason: str, signing: Any = None) -> Act:
        return Act(self.sessions[role].actor(role), reason, signing)

    async def sign(self, role: str, meaning: str) -> Any:
        """An e-signature of the person in ``role`` (their password, re-entered)."""
        person = PEOPLE[role]
        return await self.daemon.directory.signer(
            self.sessions[role], self._passwords[person], meaning
        )

    # ------------------------------------------------------------------ the people
    async def staff(self) -> None:
        """The people as users of the daemon (random passwords), signed in; then the
        recipes of the plan submitted by the supervisor and approved by QA."""
        directory = self.daemon.directory
        setup = Act(Actor("local:demo"), "cellfab demo: the staff of the simulated cell")
        for role, person in PEOPLE.items():
            self._passwords[person] = secrets.token_urlsafe(18)
            await directory.add(setup, person, FULL_NAMES[person], [role], self._passwords[person])
            _token, self.sessions[role] = await directory.login(person, self._passwords[person])
        library, lifecycle = self.daemon.library(), self.daemon.lifecycle
        for name in dict.fromkeys(p.recipe for p in PLAN):
            recipe = library.find(name)
            await lifecycle.submit(recipe, self.act("supervisor", "the demo's process"))
            signing = await self.sign("qa", "approved")
            await lifecycle.approve(recipe.hash, self.act("qa", "reviewed for the demo", signing))
            self.feed.say(
                f"{PEOPLE['supervisor']} submits {recipe.name} {recipe.version}, "
                f"{PEOPLE['qa']} approves it (e-signed, sha256 {recipe.hash[:12]})"
            )

    async def start_batches(self) -> None:
        library = self.daemon.library()
        for p in PLAN:
            recipe = library.find(p.recipe)
            b = await self.engine.create(
                recipe,
                {},
                p.cartridge,
                by=PEOPLE["supervisor"],
                act=self.act("supervisor", f"patient batch for {p.cartridge}"),
            )
            self.run.batch_ids.append(b.batch_id)
            if p.fault_step:
                self.run.injected = Injected(b.batch_id, p.fault_step, FAULT)

    async def loader(self) -> None:
        """Each patient's cartridge at the LoadPort, in turn, once the port is free."""
        view = self.daemon.cell.shuttles[SHUTTLE]
        for p in PLAN:
            while True:
                await self.daemon.cell.wait(
                    SHUTTLE, icd.LOAD_PORT, lambda: view.up and not view.load_port
                )
                try:
                    await self.controls.insert(p.cartridge, p.cells, p.viability)
                    break
                except ua.UaStatusCodeError as exc:
                    # the port stays reserved while the last cartridge moves out of it
                    if exc.code != ua.StatusCodes.BadInvalidState:
                        raise
                    await anyio.sleep(0.05)
            self.feed.say(
                f"loader puts cartridge {p.cartridge} at the LoadPort "
                f"({p.cells:.2g} cells, {p.viability:g}% viable)"
            )

    async def operator(self, batch_id: str) -> None:
        """Answer every confirm step of one batch, as the role the recipe names."""
        answered: set[tuple[str, int]] = set()

        def asking(b: Batch) -> Batch | None:
            if b.final:
                return b
            if (
                b.state in ADVANCING
                and b.step
                and self.kind_of(b, b.step) == "confirm"
                and b.confirmation is None
                and (b.step, b.step_visit) not in answered
            ):
                return b
            return None

        while True:
            b = await self.engine.wait_batch(batch_id, asking)
            if b.final:
                return
            answered.add((b.step, b.step_visit))
            role = self.engine.recipe_of(b).steps[b.step].role
            await anyio.sleep(OPERATOR_DELAY)
            try:
                signing = await self.sign(role, "confirmed") if role == "qa" else None
                await self.engine.confirm(
                    batch_id,
                    b.step,
                    by=PEOPLE[role],
                    role=role,
                    note="checked",
                    act=self.act(role, "checked", signing),
                )
            except EngineError as exc:  # held meanwhile: ask again once it runs
                self.feed.say(f"{PEOPLE[role]} could not confirm {batch_id} {b.step}: {exc}")
                answered.discard((b.step, b.step_visit))
                seq = b.last_seq
                await self.engine.wait_batch(batch_id, lambda nb, seq=seq: nb.last_seq != seq)

    async def fault(self) -> None:
        """Fault the unit running the planned step's first program, partway through."""
        inj = self.run.injected
        if inj is None:
            return

        def running(b: Batch) -> Any:
            t = b.task
            if (
                t is not None
                and t.kind == "program"
                and t.step == inj.step
                and t.phase == "started"
            ):
                return t
            return b if b.final else None

        ticks = self.engine.bus.subscribe(frozenset({"progress", "unit"}))
        try:
            t = await self.engine.wait_batch(inj.batch_id, running)
            if isinstance(t, Batch):
                return
            unit = self.daemon.cell.shuttles[t.shuttle].units[t.unit]

            def due() -> bool:
                if unit.task_id == t.task_id and unit.state == "Running":
                    return unit.progress >= FAULT_AT  # the view shows it running: how far
                now = self.engine.batches[inj.batch_id].task
                return now is None or now.task_id != t.task_id or now.phase == "ended"

            async for _tick in ticks:
                if due():
                    break
        finally:
            await ticks.aclose()
        if unit.task_id != t.task_id or unit.state != "Running":
            self.feed.say(f"fault: {t.task_id} no longer runs on {t.unit}; no fault injected")
            return
        inj.unit, inj.task_id, inj.at = t.unit, t.task_id, unit.progress
        self.feed.say(
            f"FAULT: {t.unit} breaks down during {inj.batch_id}'s {t.program} "
            f"({unit.progress:.0%} done): fault {FAULT[0]} {FAULT[1]!r}"
        )
        await self.controls.inject_fault(t.unit, *FAULT)

    async def supervisor(self, batch_id: str) -> None:
        """Until the batch is final: restart it after the injected fault's hold; any other
        hold by the system is unexpected and ends the watch (the summary says why)."""
        seen = 0

        def news(b: Batch) -> Batch | None:
            if b.last_seq != seen and (b.final or b.state is BatchState.HELD):
                return b
            return None

        while True:
            b = await self.engine.wait_batch(batch_id, news)
            seen = b.last_seq
            if b.final:
                return
            if b.held_by == SYSTEM and b.hold_reason.startswith(LINK_HOLD):
                continue  # the engine restarts it when the link is back
            inj = self.run.injected
            if (
                inj is not None
                and inj.batch_id == batch_id
                and not self.run.restarted
                and any(d.kind == "unit_fault" and d.task_id == inj.task_id for d in b.deviations)
            ):
                await anyio.sleep(SUPERVISOR_DELAY)
                self.run.restarted = True
                reason = f"{inj.unit}: {FAULT[1]} fixed; run {inj.step} again"
                try:
                    await self.engine.command(
                        batch_id,
                        Command.RESTART,
                        by=PEOPLE["supervisor"],
                        role="supervisor",
                        reason=reason,
                        act=self.act("supervisor", reason),
                    )
                except EngineError as exc:
                    self.run.unexpected[batch_id] = f"Restart refused: {exc}"
                    return
                continue
            self.run.unexpected[batch_id] = f"held by {b.held_by}: {b.hold_reason}"
            return

    async def release(self) -> None:
        """QA releases every Complete batch (e-signed; the supervisor started them)."""
        for bid in self.run.batch_ids:
            b = self.engine.batches[bid]
            if str(b.state) != "Complete" or b.outcome != "completed":
                continue
            records = [rec for _, rec in self.daemon.journal.batch_records(bid)]
            signing = await self.sign("qa", "released")
            try:
                await self.daemon.auditor.release(
                    b, started_by(bid, records), self.act("qa", "batch record reviewed", signing)
                )
            except RequestRefused as exc:
                self.run.unexpected[bid] = f"release refused: {exc}"
                continue
            self.feed.say(f"{PEOPLE['qa']} releases {bid} (e-signed)")

    async def follow(self, events: Subscription) -> None:
        async for ev in events:
            self.feed.on_event(ev)

    async def show(self, live: Any, header: str) -> None:
        while True:
            batches = [self.engine.batches[bid] for bid in self.run.batch_ids]
            live.update(
                live_view(header, batches, self.kind_of, self.daemon.cell, self.feed), refresh=True
            )
            await anyio.sleep(0.25)

    # ------------------------------------------------------------------ the run
    async def play(self, live: Any, header: str, hang_s: float) -> None:
        events = self.engine.bus.subscribe(EVENTS)  # before the first batch exists
        async with anyio.create_task_group() as tg:
            tg.start_soon(self.follow, events)
            if live is not None:
                tg.start_soon(self.show, live, header)
            await self.staff()
            await self.start_batches()
            tg.start_soon(self.loader)
            tg.start_soon(self.fault)
            with anyio.move_on_after(hang_s):
                async with anyio.create_task_group() as watch:
                    for bid in self.run.batch_ids:
                        tg.start_soon(self.operator, bid)
                        watch.start_soon(self.supervisor, bid)
                self.run.finished = True
                await self.release()
            self.run.wall_s, self.run.process_days = self.feed.elapsed()
            tg.cancel_scope.cancel()
        await events.aclose()
        if live is not None:
            batches = [self.engine.batches[bid] for bid in self.run.batch_ids]
            live.update(
                live_view(header, batches, self.kind_of, self.daemon.cell, self.feed), refresh=True
            )


# --------------------------------------------------------------------------- command
def _site(twins: SimCell, time_scale: float, folder: Path) -> Any:
    """The embedded default site's shape (names, recipe library) on the twins' ports."""
    from daemon.config.defaults import default_site, sim_site

    library = default_site().recipes  # the repository's recipes/
    endpoints = {k: v for k, v in twins.endpoints().items() if k in ("shuttle", "cellq")}
    site = sim_site(endpoints, time_scale, folder / "journal.sqlite", recipes=library, name="demo")
    # a simulated site: cheap password hashes keep the start-up quick (never on a real one)
    argon2 = site.auth.argon2.model_copy(update={"time_cost": 1, "memory_kib": 8192})
    return site.model_copy(update={"auth": site.auth.model_copy(update={"argon2": argon2})})


async def _main(
    args: argparse.Namespace, twins: SimCell, out: Callable[[str], None], live: Any, folder: Path
) -> Verdict:
    """The daemon on the (running) twins, the people, then the verdict."""
    hang_s = 30.0 + HANG_DAYS * 86400.0 / args.time_scale
    daemon = build(_site(twins, args.time_scale, folder))
    stop, ready = anyio.Event(), anyio.Event()
    async with anyio.create_task_group() as tg:
        tg.start_soon(partial(serve, daemon, stop, api=False, on_ready=lambda _d: ready.set()))
        await ready.wait()
        freeze_built()  # the twins and the daemon live as long as the demo (decision 0108)
        try:
            async with Client(twins.shuttle.url) as client:
                demo = Demo(
                    daemon,
                    TwinControls(client),
                    Feed(daemon.clock.now, out if live is None else None),
                )
                await demo.controls.discover()
                header = (
                    f"cellfab demo  time scale {args.time_scale:g} "
                    f"(1 wall s = {args.time_scale / 3600:.1f} process h), seed {args.seed}"
                )
                async with anyio.create_task_group() as people:

                    async def on_signal() -> None:
                        with anyio.open_signal_receiver(signal.SIGINT, signal.SIGTERM) as sigs:
                            async for _ in sigs:
                                demo.run.interrupted = True
                                people.cancel_scope.cancel()

                    people.start_soon(on_signal)
                    await demo.play(live, header, hang_s)
                    people.cancel_scope.cancel()
                if demo.run.interrupted:
                    return Verdict(_interrupted(demo), ok=False, interrupted=True)
                run = demo.run
                verdict = judge(
                    run,
                    daemon.engine.batches,
                    {
                        bid: [rec for _, rec in daemon.journal.batch_records(bid)]
                        for bid in run.batch_ids
                    },
                    _started(twins),
                    time_scale=args.time_scale,
                    planned=len(PLAN),
                    supervisor=PEOPLE["supervisor"],
                    hang_s=hang_s,
                )
                written = await anyio.to_thread.run_sync(
                    write_records, daemon.journal.path, run.batch_ids, folder / "records"
                )
                verdict.lines.insert(
                    -1,
                    f"electronic batch records: {len(written)} HTML files in "
                    f"{folder / 'records'} (--keep keeps them)",
                )
                return verdict
        finally:
            stop.set()  # the daemon stops cleanly: runners and drivers end, the journal closes


def write_records(journal: Path, batch_ids: list[str], into: Path) -> list[Path]:
    """Each batch's electronic batch record (``daemon.record``, what ``cellfab batch
    report`` writes), as ``into/BATCH.html``."""
    from daemon.record import gather, html  # matplotlib and Jinja2: only once needed

    into.mkdir(parents=True, exist_ok=True)
    written = []
    for bid in batch_ids:
        path = into / f"{bid}.html"
        path.write_text(html(gather(journal, bid)), encoding="utf-8")
        written.append(path)
    return written


def _started(twins: Any) -> dict[str, Counter[Any]]:
    """What the twins started, by TaskId and JobSeq: the shuttle's Twin/StartedPrograms
    (ICD section 4; read in-process, the twins run beside the daemon) and Cell Q's
    jobs-created counts."""
    started = list(twins.shuttle.model.started)
    return {
        "programs": Counter(e["task_id"] for e in started if e["program"] != "move"),
        "moves": Counter(e["task_id"] for e in started if e["program"] == "move"),
        "jobs": Counter(twins.cellq.submitted),
    }


def _interrupted(demo: Demo) -> list[str]:
    lines = ["interrupted: the daemon stopped cleanly; the batches as they were:"]
    for bid in demo.run.batch_ids:
        b = demo.engine.batches[bid]
        lines.append(f"{bid}  {b.recipe_name}: {b.state} at {b.step or b.last_step or '-'}")
    return lines


def _intro(args: argparse.Namespace, folder: Path, live: bool) -> list[str]:
    faulted = next(p for p in PLAN if p.fault_step)
    recipes = ", ".join(p.recipe for p in PLAN)
    return [
        f"cellfab demo: the twins of one cell and the daemon, time scale {args.time_scale:g} "
        f"(a process day in {86400 / args.time_scale:.1f} s), seed {args.seed}",
        f"  {len(PLAN)} batches: {recipes} (recipes/, submitted and approved at start by "
        f"{PEOPLE['supervisor']} and {PEOPLE['qa']})",
        f"  people: a loader puts each cartridge at the LoadPort; {PEOPLE['operator']} "
        f"(operator) and {PEOPLE['qa']} (qa) answer confirmations; the demo faults the unit "
        f"running {faulted.cartridge}'s first {faulted.fault_step}; {PEOPLE['supervisor']} "
        f"(supervisor) restarts that batch; {PEOPLE['qa']} signs QA confirmations and "
        "releases each Complete batch",
        f"  journal{' and daemon log' if live else ''} in {folder} "
        "(removed at the end unless --keep or something went wrong)",
    ]


def run_demo(args: argparse.Namespace) -> int:
    live_mode = sys.stdout.isatty() and not args.plain
    folder = Path(tempfile.mkdtemp(prefix="cellfab-demo-"))
    log_file: IO[str] | None = None
    if live_mode:  # the daemon's log would tear the live table: it goes to a file
        log_file = (folder / "daemon.log").open("w", encoding="utf-8")
        logs.configure(json=args.log_json, level=args.log_level, stream=log_file)
    out = partial(print, flush=True)
    for line in _intro(args, folder, live_mode):
        out(line)
    config = SimConfig(host=args.host, time_scale=args.time_scale, seed=args.seed, security="none")
    twins, loop = SimCell(config), BackgroundLoop("twins")
    verdict: Verdict | None = None
    try:
        loop.run(twins.start())
        if live_mode:
            from rich.live import Live

            with Live(auto_refresh=False, redirect_stderr=False) as live:
                verdict = anyio.run(_main, args, twins, out, live, folder)
        else:
            verdict = anyio.run(_main, args, twins, out, None, folder)
    except SimStartError as exc:
        print(f"cellfab demo: error: {exc}", file=sys.stderr)
    except Exception as exc:  # a bug, or an instrument twin refusing: say what, keep the log
        log.exception("demo failed")
        print(f"cellfab demo: error: {type(exc).__name__}: {exc}", file=sys.stderr)
    finally:
        with contextlib.suppress(Exception):
            loop.run(twins.stop())
        loop.close()
        if log_file is not None:
            logs.configure(json=args.log_json, level=args.log_level)
            log_file.close()
    if verdict is not None:
        out("")
        for line in verdict.lines:
            out(line)
    if verdict is not None and verdict.ok and not args.keep:
        shutil.rmtree(folder, ignore_errors=True)
    else:
        out(f"journal{' and daemon log' if live_mode else ''} kept in {folder}")
    if verdict is not None and verdict.interrupted:
        return 130
    return 0 if verdict is not None and verdict.ok else 1


def register(subparsers: argparse._SubParsersAction) -> None:
    """Add `demo` to the `cellfab` parser (daemon.cli loads this module only to run it)."""
    demo = subparsers.add_parser(
        "demo",
        help="four batches through a simulated cell on the batch engine",
        description=__doc__.split("\n\n")[0],
    )
    add_world_arguments(demo, time_scale=DEFAULT_TIME_SCALE)
    demo.add_argument("--plain", action="store_true", help="one line per event, no live table")
    demo.add_argument(
        "--keep",
        action="store_true",
        help="keep the temporary folder (journal, batch records, daemon log)",
    )
    demo.set_defaults(func=run_demo)
