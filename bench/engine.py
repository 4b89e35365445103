"""Engine benchmark: the batch engine against the raw protocol calls it makes, and at scale.

``python -m bench.engine [P1 P2 P4 P6 P7]`` (part of ``make bench``). The twins run in a
spawned child process (``_twins_main``), so the CPU, the wall time and the memory below
are the daemon's: this process is the daemon (``supervisor.build`` + ``serve``, journal on
disk with ``synchronous=FULL``, the real drivers), plus a loader putting cartridges at the
LoadPort and an operator confirming prompts, as people would. Each figure is printed with
its target; nothing passes or fails.

* P1: a zero-duration step through the daemon against the raw round trips of the same
  step. A step is ``op: cell_selection`` (10 min: 60 us at time scale 1e7) in the bay the
  cartridge is in; its calls are the identity read (the unit's variables), StartProgram
  and GetResult. Per step: one batch runs STEPS steps back to back. Beside the raw round
  trips (asyncua calls back to back), the raw calls with the completion learnt the way
  the daemon learns it (a subscription's data change) show how much of the ratio is the
  publishing interval. Target <= 1.5x.
* P2: BATCHES batches (a twin with BAYS bays, all offering cell_selection) admitted
  through the LoadPort, then released together at a confirm step: steps/s until every
  batch has run its STEPS steps, against the raw rate of the same calls (RAW_CHAINS
  concurrent call chains on one asyncua client, enough to keep the twin busy; 256
  chains time requests out). Target >= 50%.
* P4: incubator utilisation under a saturating stream of lentiviral-shaped batches on
  the default shuttle (SEL1, EP1, INC01..16, CFC1, FIN1), in process time, against the
  capacity bound (16 incubators / incubator hours per batch). Scheduling only: the real
  ``Scheduler`` over ``tests/scheduler/model.py``'s discrete-event model (virtual
  time; the twins would need weeks of process time). Target >= 95%.
* P6: resident memory of the daemon with BATCHES batches admitted (VmRSS, and the peak
  VmHWM, of this process). Target < 150 MB.
* P7: 16 batches of ``recipes/car_t_lentiviral.yaml`` on the twins (default units, Cell
  Q), time scale P7_SCALE: wall time from the first start to the last batch final, with
  the outcome and the deviations the run recorded. Target < 60 s.
"""

from __future__ import annotations

import argparse
import asyncio
import contextlib
import json
import logging
import multiprocessing
import os
import platform
import secrets
import tempfile
import time
from collections import Counter
from collections.abc import AsyncIterator, Awaitable, Callable
from multiprocessing.connection import Connection
from pathlib import Path
from typing import Any

import anyio
import structlog
from asyncua import Client, ua

from daemon.audit.entries import Act, Actor
from daemon.batch.engine import Engine
from daemon.batch.states import BatchState, Command
from daemon.config.defaults import sim_site
from daemon.recipe import Recipe, load_recipe, load_recipe_text
from daemon.supervisor import Daemon, build, serve
from drivers import icd
from drivers.icd import BrowseName as BN
from drivers.opcua import UNIT_VARS, OpcUaShuttle, SecurityConfig
from simulators.controls import TwinControls

ROOT = Path(__file__).resolve().parent.parent
SCALE = 1e7  # the zero-duration benches: a 10 min program is 60 us of wall time
STEPS = 8  # zero-duration steps per batch
BATCHES = 256
BAYS = 260
P1_BATCH_STEPS = 40
RAW_CHAINS, RAW_STEPS = 32, 16  # P2's raw rate: concurrent call chains on one client
P7_BATCHES = 16
P7_SCALE = 1e5
ZERO_PROGRAM = ("cell_selection", {"marker": "CD3", "incubation_min": 10})


def _zero_recipe(steps: int) -> Recipe:
    program, params = ZERO_PROGRAM
    lines = [
        "recipe: bench_zero_steps",
        'version: "1.0"',
        "description: Zero-duration steps (engine benchmark)",
        "author: bench",
        "approval: approved",
        "start: gate",
        "steps:",
        "  gate:",
        "    confirm: Start together",
        "    role: operator",
        "    next: s1",
    ]
    for i in range(1, steps + 1):
        nxt = f"s{i + 1}" if i < steps else "done"
        lines += [
            f"  s{i}:",
            f"    op: {program}",
            f"    params: {json.dumps(params)}",
            f"    next: {nxt}",
        ]
    lines += ["  done:", "    complete: All steps ran"]
    recipe, diagnostics = load_recipe_text("\n".join(lines) + "\n", "bench_zero_steps.yaml")
    if recipe is None:
        raise RuntimeError("; ".join(d.message for d in diagnostics))
    return recipe


# --------------------------------------------------------------------------- twins
def _twins_main(conn: Connection, units: list[str] | None, caps: dict[str, Any], scale: float):
    """Child process: a shuttle twin (these units) and a Cell Q twin on one world."""
    logging.basicConfig(level=logging.ERROR)
    for name in ("asyncua", "pymodbus"):
        logging.getLogger(name).setLevel(logging.ERROR)
    from simulators.cellq import CellQTwin
    from simulators.clock import Clock
    from simulators.shuttle import ShuttleTwin
    from simulators.world import World

    async def main() -> None:
        world, clock = World(seed=11), Clock(scale)
        kwargs: dict[str, Any] = {"units": units, "capabilities": caps} if units else {}
        shuttle = ShuttleTwin(world, clock, security="none", serial_number="SIM-BENCH", **kwargs)
        cellq = CellQTwin(world, clock)
        await shuttle.start()
        await cellq.start()
        conn.send({"shuttle": shuttle.url, "cellq": f"127.0.0.1:{cellq.port}"})
        while (await asyncio.to_thread(conn.recv)) == "cpu":
            conn.send(time.process_time())
        await cellq.stop()
        await shuttle.stop()

    try:
        asyncio.run(main())
    finally:
        conn.close()


@contextlib.asynccontextmanager
async def twins(
    scale: float, units: list[str] | None = None, caps: dict[str, Any] | None = None
) -> AsyncIterator[dict[str, Any]]:
    """The twins in a spawned process: endpoints, and ``cpu()``, the twin process's CPU
    seconds so far."""
    ctx = multiprocessing.get_context("spawn")
    here, child = ctx.Pipe()
    proc = ctx.Process(target=_twins_main, args=(child, units, caps or {}, scale), daemon=True)
    proc.start()
    child.close()
    try:
        if not await asyncio.to_thread(here.poll, 120):
            raise TimeoutError("the twin process did not start")
        endpoints = here.recv()

        async def cpu() -> float:
            here.send("cpu")
            return float(await asyncio.to_thread(here.recv))

        endpoints["cpu"] = cpu
        yield endpoints
    finally:
        with contextlib.suppress(OSError):
            here.send("quit")
        await asyncio.to_thread(proc.join, 20)
        if proc.is_alive():
            proc.terminate()
        here.close()


@contextlib.asynccontextmanager
async def daemon_on(endpoints: dict[str, Any], scale: float, folder: Path) -> AsyncIterator[Daemon]:
    site = sim_site(
        {k: v for k, v in endpoints.items() if k in ("shuttle", "cellq")},
        scale,
        folder / "journal.db",
    )
    # the bench's generated recipes are drafts: a development site runs them (the batches
    # are marked unapproved, as on any such site)
    policy = site.policy.model_copy(update={"allow_unapproved_recipes": True})
    d = build(site.model_copy(update={"policy": policy}))
    stop, ready = anyio.Event(), anyio.Event()
    async with anyio.create_task_group() as tg:

        async def run() -> None:
            await serve(d, stop, api=False, on_ready=lambda _d: ready.set())

        tg.start_soon(run)
        with anyio.fail_after(60):
            await ready.wait()
        try:
            yield d
        finally:
            stop.set()


async def loader(url: str, d: Daemon, cartridges: list[str]) -> None:
    """A person putting each cartridge at the LoadPort once it is free."""
    view = d.cell.shuttles["shuttle1"]
    todo = list(cartridges)
    while todo:
        try:
            async with Client(url, timeout=30) as client:
                ctl = TwinControls(client)
                await ctl.discover()
                while todo:
                    if not view.load_port:
                        try:
                            await ctl.insert(todo[0], 2e8, 90.0)
                            todo.pop(0)
                            continue
                        except ua.UaStatusCodeError:
                            pass  # a move to or from the port is under way
                    await anyio.sleep(0.005)
        except (ConnectionError, TimeoutError, OSError):
            await anyio.sleep(0.5)  # a loaded machine dropped the session: again


class Staff:
    """One signed-in person per role on the bench's daemon; a qa confirmation is signed
    (the password re-entered, as every QA prompt must be)."""

    def __init__(self, d: Daemon) -> None:
        self.d = d
        self.sessions: dict[str, Any] = {}
        self.passwords: dict[str, str] = {}

    async def hire(self) -> Staff:
        setup = Act(Actor("local:bench"), "the bench's staff")
        for role in ("operator", "supervisor", "qa"):
            name, password = f"bench.{role}", secrets.token_urlsafe(18)
            await self.d.directory.add(setup, name, f"Bench {role.title()}", [role], password)
            _token, self.sessions[role] = await self.d.directory.login(name, password)
            self.passwords[role] = password
        return self

    async def act(self, role: str, reason: str) -> Act:
        session = self.sessions[role]
        signing = None
        if role == "qa":
            signing = await self.d.directory.signer(session, self.passwords[role], "confirmed")
        return Act(session.actor(role), reason, signing)


async def operator(
    engine: Engine, batch_id: str, recipe: Recipe, skip: str = "", staff: Staff | None = None
) -> None:
    """Confirms every prompt of one batch (but ``skip``, which the bench answers), and
    restarts it after a timeout hold (the step then waits on without a deadline); a
    prompt is answered by ``staff`` (signed for qa) when given."""
    seen: set[tuple[str, int]] = set()
    while True:

        def prompt(b: Any) -> Any:
            if (
                b.state is BatchState.HELD
                and b.held_by == "system"
                and b.deviations
                and b.deviations[-1].kind == "timeout"
            ):
                return b
            return (
                b.step
                and b.step != skip
                and recipe.kind(b.step) == "confirm"
                and b.confirmation is None
                and (b.step, b.step_visit) not in seen
                and b.state is BatchState.RUNNING
                and b
            )

        b = await engine.wait_batch(batch_id, prompt)
        if b.state is BatchState.HELD:
            await engine.command(batch_id, Command.RESTART, by="bench", reason="timeout seen")
            continue
        seen.add((b.step, b.step_visit))
        role = recipe.steps[b.step].role
        act = await staff.act(role, "checked") if staff is not None else None
        await engine.confirm(batch_id, b.step, by=f"bench.{role}", role=role, act=act)


def _rss_mb() -> tuple[float, float]:
    fields = dict(line.split(":", 1) for line in Path("/proc/self/status").read_text().splitlines())
    return (
        int(fields["VmRSS"].split()[0]) / 1024,
        int(fields["VmHWM"].split()[0]) / 1024,
    )


def _profiler(tag: str) -> Callable[[], None]:
    """cProfile of the measured phase when CELLFAB_BENCH_PROFILE names a folder."""
    folder = os.environ.get("CELLFAB_BENCH_PROFILE")
    if not folder:
        return lambda: None
    import cProfile

    prof = cProfile.Profile()
    prof.enable()

    def stop() -> None:
        prof.disable()
        prof.dump_stats(str(Path(folder) / f"engine-{tag}.prof"))

    return stop


def _verdict(ok: bool) -> str:
    return "MET" if ok else "NOT MET"


# --------------------------------------------------------------------------- zero steps
async def _zero_steps_through_daemon(
    endpoints: dict[str, str], n_batches: int, steps: int, lines: list[str], tag: str
) -> tuple[float, dict[str, Any]]:
    """Admit n_batches, release them together at the gate, time their steps."""
    recipe = _zero_recipe(steps)
    info: dict[str, Any] = {}
    with tempfile.TemporaryDirectory(prefix="cellfab-bench-") as folder:
        async with daemon_on(endpoints, SCALE, Path(folder)) as d:
            engine = d.engine
            cids = [f"Z{tag}{os.getpid() % 10000}-{i}" for i in range(n_batches)]
            t_admit = time.perf_counter()
            batches = [await engine.create(recipe, {}, cid, by="bench") for cid in cids]
            async with anyio.create_task_group() as tg:
                tg.start_soon(loader, endpoints["shuttle"], d, cids)
                for b in batches:
                    await engine.wait_batch(b.batch_id, lambda nb: nb.step == "gate")
            info["admission_s"] = time.perf_counter() - t_admit
            info["rss_admitted"] = _rss_mb()
            twin0 = await endpoints["cpu"]()
            profile = _profiler(f"{tag}")
            cpu0, t0 = time.process_time(), time.perf_counter()
            for b in batches:
                await engine.confirm(b.batch_id, "gate", by="bench", role="operator")
            for b in batches:
                # the procedure ended (BatchFinished): every step ran; the cartridge's
                # move to the OutputPort after it is the transport's queue, not a step
                await engine.wait_batch(b.batch_id, lambda nb: nb.outcome or nb.final)
            wall = time.perf_counter() - t0
            info["cpu_per_wall"] = (time.process_time() - cpu0) / wall
            info["cpu_ms_per_step"] = (time.process_time() - cpu0) / (n_batches * steps) * 1e3
            profile()
            info["twin_cpu_per_wall"] = (await endpoints["cpu"]() - twin0) / wall
            info["rss_end"] = _rss_mb()
            info["deviations"] = Counter(
                dv.kind for b in batches for dv in engine.batches[b.batch_id].deviations
            )
    return wall, info


async def _raw_step_calls(url: str, concurrency: int, steps: int) -> tuple[float, float]:
    """Raw asyncua: the calls of one zero-duration step (read the unit's variables,
    StartProgram, GetResult), ``steps`` times in each of ``concurrency`` chains, each
    chain on its own bay. Returns (wall seconds, wall seconds with the completion taken
    from a subscription data change instead of the GetResult call)."""
    program, params = ZERO_PROGRAM
    s = ua.VariantType.String
    pjson = json.dumps(params, separators=(",", ":"))
    async with (
        OpcUaShuttle("bench", url, SecurityConfig.insecure()) as drv,
        Client(url, timeout=30) as raw,
    ):
        ctl = TwinControls(raw)
        await ctl.discover()
        free = [u for u in sorted(await drv.units()) if not (await drv.unit_status(u)).cartridge_id]
        units = free[:concurrency]
        cids = {u: f"R{os.getpid() % 10000}-{u}" for u in units}
        for u in units:  # each cartridge into its bay
            await ctl.insert(cids[u], 2e8, 90.0)
            await drv.move(cids[u], u, f"raw/{u}/0")
            for _ in range(2000):
                if (await drv.unit_status(u)).cartridge_id == cids[u]:
                    break
                await asyncio.sleep(0.002)
        nodes = {
            u: (
                raw.get_node(drv.node_of(u, "")),
                drv.node_of(u, BN.START_PROGRAM),
                drv.node_of(u, BN.GET_RESULT),
                [raw.get_node(drv.node_of(u, v)) for v in UNIT_VARS],
            )
            for u in units
        }

        async def chain(u: str, attempt0: int, done: Callable[[str, str], Awaitable[None]]):
            unit_node, start, _result, variables = nodes[u]
            for k in range(steps):
                tid = f"raw{u}/s/{attempt0 + k}"
                await raw.read_values(variables)
                await unit_node.call_method(
                    start,
                    ua.Variant(program, s),
                    ua.Variant(pjson, s),
                    ua.Variant(tid, s),
                    ua.Variant(cids[u], s),
                )
                await done(u, tid)

        async def by_result(u: str, tid: str) -> None:
            unit_node, _, result, _ = nodes[u]
            while True:  # the program ends within the round trip; a second try is rare
                out = await unit_node.call_method(result, ua.Variant(tid, s))
                if out[0] == icd.ResultStatus.COMPLETE:
                    return
                await asyncio.sleep(0)

        t0 = time.perf_counter()
        await asyncio.gather(*(chain(u, 1, by_result) for u in units))
        calls = time.perf_counter() - t0

        # the same, completion learnt from a subscription (the daemon's way), then GetResult
        changed: dict[str, asyncio.Event] = {u: asyncio.Event() for u in units}
        by_node = {drv.node_of(u, BN.STATE): u for u in units}

        class Handler:
            def datachange_notification(self, node: Any, val: Any, data: Any) -> None:
                if val == icd.UnitState.COMPLETE:
                    changed[by_node[node.nodeid]].set()

        sub = await raw.create_subscription(100, Handler())
        await sub.subscribe_data_change([raw.get_node(n) for n in by_node])

        async def by_notification(u: str, tid: str) -> None:
            await changed[u].wait()
            changed[u].clear()
            await by_result(u, tid)

        await asyncio.sleep(0.3)
        for ev in changed.values():
            ev.clear()
        t0 = time.perf_counter()
        await asyncio.gather(*(chain(u, 10_000, by_notification) for u in units))
        notified = time.perf_counter() - t0
        await sub.delete()
    return calls, notified


async def p1(lines: list[str]) -> None:
    lines.append(f"P1 zero-duration step, through the daemon vs raw (time scale {SCALE:g})")
    units = [f"B{i:03d}" for i in range(3)]
    async with twins(SCALE, units, dict.fromkeys(units, (ZERO_PROGRAM[0],))) as endpoints:
        wall, info = await _zero_steps_through_daemon(endpoints, 1, P1_BATCH_STEPS, lines, "a")
        calls, notified = await _raw_step_calls(endpoints["shuttle"], 1, P1_BATCH_STEPS)
    per_d, per_r, per_n = (x / P1_BATCH_STEPS * 1e3 for x in (wall, calls, notified))
    ratio = per_d / per_r
    lines.append(
        f"  daemon {per_d:7.2f} ms/step  raw calls {per_r:6.2f} ms/step  "
        f"ratio {ratio:6.1f}x  target <= 1.5x: {_verdict(ratio <= 1.5)}"
    )
    lines.append(
        f"  raw calls with the end learnt from a subscription (100 ms publishing, as the "
        f"driver): {per_n:7.2f} ms/step; daemon / that {per_d / per_n:5.2f}x"
    )
    if info["deviations"]:
        lines.append(f"  deviations: {dict(info['deviations'])}")


async def p2_p6(lines: list[str]) -> None:
    lines.append(
        f"P2 {BATCHES} concurrent batches x {STEPS} zero-duration steps ({BAYS} bays), P6 memory"
    )
    units = [f"B{i:03d}" for i in range(BAYS)]
    caps = dict.fromkeys(units, (ZERO_PROGRAM[0],))
    async with twins(SCALE, units, caps) as endpoints:
        wall, info = await _zero_steps_through_daemon(endpoints, BATCHES, STEPS, lines, "b")
        calls, notified = await _raw_step_calls(endpoints["shuttle"], RAW_CHAINS, RAW_STEPS)
    steps = BATCHES * STEPS
    rate_d, rate_r = steps / wall, RAW_CHAINS * RAW_STEPS / calls
    lines.append(
        f"  admission of {BATCHES} through the LoadPort: {info['admission_s']:.1f} s "
        f"({BATCHES / info['admission_s']:.1f}/s)"
    )
    lines.append(
        f"  daemon {rate_d:7.0f} steps/s ({info['cpu_ms_per_step']:.1f} ms of daemon CPU "
        f"per step; daemon {info['cpu_per_wall']:.2f}, twins "
        f"{info['twin_cpu_per_wall']:.2f} CPU s per wall s)  "
        f"raw calls {rate_r:7.0f} steps/s  = {rate_d / rate_r:6.1%}  "
        f"target >= 50%: {_verdict(rate_d / rate_r >= 0.5)}"
    )
    lines.append(
        f"  raw calls with ends learnt from a subscription: "
        f"{RAW_CHAINS * RAW_STEPS / notified:7.0f} steps/s ({RAW_CHAINS} chains of calls)"
    )
    if info["deviations"]:
        lines.append(f"  deviations: {dict(info['deviations'])}")
    rss, _ = info["rss_admitted"]
    rss_end, hwm_end = info["rss_end"]
    lines.append(
        f"P6 resident memory with {BATCHES} batches: {rss:.0f} MB admitted, {rss_end:.0f} MB "
        f"after their steps, peak {hwm_end:.0f} MB  target < 150 MB: "
        f"{_verdict(max(rss, rss_end, hwm_end) < 150)}"
    )


# --------------------------------------------------------------------------- P4
def p4(lines: list[str]) -> None:
    """Incubator utilisation, in process time, over the scheduler model."""
    from simulators.shuttle import DEFAULT_CAPABILITIES
    from tests.scheduler.model import Model, ShuttleSpec, Step, VirtualLoop

    h = 3600.0
    recipe = (
        Step("op", 0.5 * h, "cell_selection"),
        Step("op", 24 * h, "activation"),
        Step("op", 0.5 * h, "transduction"),
        Step("op", 48 * h, "expansion"),
        Step("op", 300.0, "sample"),
        Step("op", 48 * h, "expansion"),
        Step("op", 300.0, "sample"),
        Step("op", 0.5 * h, "harvest_wash"),
        Step("op", 0.5 * h, "formulation"),
        Step("op", 0.5 * h, "fill_finish"),
    )
    incubators = [u for u in DEFAULT_CAPABILITIES if u.startswith("INC")]
    inc_hours = 0.0
    for step in recipe:  # where they run when every unit is free: least scarce first
        if step.capability in ("activation", "transduction", "expansion", "sample"):
            inc_hours += step.seconds / h
    capacity = len(incubators) / inc_hours  # batches per hour
    arrival_every = 1 / (1.5 * capacity) * h  # a stream 1.5x what the incubators can take
    days, warmup = 90, 20
    loop = VirtualLoop()
    busy: dict[str, float] = dict.fromkeys(incubators, 0.0)

    async def scenario() -> Model:
        m = Model([ShuttleSpec("S1", dict(DEFAULT_CAPABILITIES))], analyzer_slots=16)
        original = m._phys_program

        def program(shuttle: str, b: Any, unit: str, seconds: float) -> None:
            original(shuttle, b, unit, seconds)
            if unit in busy:
                a, z = max(m.now(), warmup * 86400.0), min(m.now() + seconds, days * 86400.0)
                busy[unit] += max(0.0, z - a)

        m._phys_program = program  # type: ignore[method-assign]
        while m.now() < days * 86400:
            m.add_batch(recipe, 0, "S1")
            await asyncio.sleep(arrival_every)
        return m

    t0 = time.perf_counter()
    try:
        m = loop.run_until_complete(scenario())
    finally:
        for task in asyncio.all_tasks(loop):
            task.cancel()
        loop.run_until_complete(asyncio.sleep(0))
        loop.close()
    window = (days - warmup) * 86400.0
    util = sum(busy.values()) / (len(incubators) * window)
    done = sum(1 for b in m.batches.values() if b.finished and b.finished > warmup * 86400)
    lines.append(
        f"P4 incubator utilisation, saturating stream ({1.5:.1f}x the capacity bound of "
        f"{capacity * 24:.2f} batches/day = {len(incubators)} incubators / {inc_hours:.1f} "
        f"incubator h per batch), days {warmup}-{days} of process time"
    )
    lines.append(
        f"  utilisation {util:7.2%}  target >= 95%: {_verdict(util >= 0.95)}  "
        f"({done / (days - warmup):.2f} batches/day finished: EP1 runs some activations "
        f"too; model run "
        f"{time.perf_counter() - t0:.1f} s wall)"
    )


# --------------------------------------------------------------------------- P7
async def p7(lines: list[str]) -> None:
    recipe = load_recipe(ROOT / "recipes" / "car_t_lentiviral.yaml")
    lines.append(
        f"P7 {P7_BATCHES} batches of {recipe.name} on the twins at time scale {P7_SCALE:g}"
    )
    async with twins(P7_SCALE) as endpoints:
        with tempfile.TemporaryDirectory(prefix="cellfab-bench-") as folder:
            async with daemon_on(endpoints, P7_SCALE, Path(folder)) as d:
                engine = d.engine
                engine.allow_unapproved = True  # the library's recipes are drafts
                cids = [f"L{os.getpid() % 10000}-{i}" for i in range(P7_BATCHES)]
                t0 = time.perf_counter()
                cpu0 = time.process_time()
                staff = await Staff(d).hire()
                batches = [await engine.create(recipe, {}, cid, by="bench") for cid in cids]
                async with anyio.create_task_group() as tg:
                    tg.start_soon(loader, endpoints["shuttle"], d, cids)
                    for b in batches:
                        tg.start_soon(operator, engine, b.batch_id, recipe, "", staff)
                    for b in batches:
                        await engine.wait_batch(b.batch_id, lambda nb: nb.final)
                    tg.cancel_scope.cancel()
                wall = time.perf_counter() - t0
                cpu = time.process_time() - cpu0
                final = [engine.batches[b.batch_id] for b in batches]
    outcomes = Counter(f"{b.state.value}/{b.outcome}" for b in final)
    deviations = Counter(dv.kind for b in final for dv in b.deviations)
    span = max(b.last_step_ended_pt for b in final) - min(b.run_started_pt for b in final)
    lines.append(
        f"  wall {wall:5.1f} s ({cpu / wall:.2f} CPU s per wall s; {span / 86400:.1f} process "
        f"days)  target < 60 s: {_verdict(wall < 60)}"
    )
    lines.append(f"  outcomes {dict(outcomes)}")
    for b in final:
        for dv in b.deviations:
            if dv.kind == "internal":
                lines.append(f"  internal error in {b.batch_id}: {dv.message}")
    lines.append(
        "  deviations: "
        + (", ".join(f"{k} x{n}" for k, n in deviations.most_common()) or "none")
        + f" (a 100 ms publish is {P7_SCALE * 0.1 / 3600:.1f} process h at this scale)"
    )


# --------------------------------------------------------------------------- main
async def run(which: list[str], echo: bool = True) -> list[str]:
    lines: list[str] = []

    def out(section: list[str]) -> None:
        lines.extend(section)
        if echo:
            print("\n".join(section), flush=True)

    out(
        [
            "cellfab engine benchmarks: the daemon against the raw protocol calls it makes, "
            "measured in this run; targets are shown, never asserted",
            f"python {platform.python_version()}, {os.cpu_count()} CPU(s), load average "
            f"{' '.join(f'{x:.2f}' for x in os.getloadavg())}; twins in a child process",
        ]
    )
    for name, fn in (("P1", p1), ("P2", p2_p6), ("P4", p4), ("P7", p7)):
        if name not in which and not (name == "P2" and "P6" in which):
            continue
        section: list[str] = []
        t0 = time.perf_counter()
        if name == "P4":  # its own (virtual-time) loop, on a thread
            await asyncio.to_thread(p4, section)
        else:
            await fn(section)  # type: ignore[misc]
        section.append(f"  ({time.perf_counter() - t0:.0f} s)")
        out(section)
    return lines


def main() -> None:
    parser = argparse.ArgumentParser(prog="python -m bench.engine")
    parser.add_argument("which", nargs="*", default=["P1", "P2", "P4", "P6", "P7"])
    args = parser.parse_args()
    logging.basicConfig(level=logging.ERROR)
    for name in ("asyncua", "pymodbus"):
        logging.getLogger(name).setLevel(logging.ERROR)
    structlog.configure(wrapper_class=structlog.make_filtering_bound_logger(logging.ERROR))
    asyncio.run(run([w.upper() for w in args.which]))


if __name__ == "__main__":
    main()
