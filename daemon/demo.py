"""`cellfab demo`: the twins of one cell and a scripted walk of one cartridge through it.

Until the supervisor runs recipes, this is what a newcomer runs to see the cell work.
It starts a SimCell (shuttle, Cell Q and balance twins on one world, accelerated
time), then drives it only through the real drivers, exactly as the daemon will:

    LoadPort -> SEL1 cell_selection -> INC01 activation, expansion, sample
             -> Cell Q cell_count + viability -> CFC1 harvest_wash, formulation
             -> FIN1 fill_finish -> balance fill check -> OutputPort

The "operator" who puts the cartridge at the LoadPort uses the twin controls of
ICD section 4. Every step prints what it did and the instrument's answer; any driver
error ends the walk with a clear message and exit status 1.
"""

from __future__ import annotations

import argparse
import asyncio
import logging
import sys
from collections.abc import Callable, Mapping
from typing import Any

from asyncua import Client

from drivers import icd
from drivers.base import (
    InstrumentError,
    JobChanged,
    ProgressChanged,
    TransportChanged,
    UnitStateChanged,
)
from drivers.icd import Assay, SlotState, UnitState
from drivers.modbus import ModbusAnalyzer, TcpEndpoint
from drivers.opcua import OpcUaShuttle, SecurityConfig
from drivers.serial import SerialBalance
from simulators.cell import SimCell, SimConfig
from simulators.controls import TwinControls

HANG = 120.0  # wall seconds: a hang guard, not an expectation
BATCH = "DEMO1"
CARTRIDGE = "C-DEMO-0001"
_END_STATES = {UnitState.COMPLETE, UnitState.ABORTED, UnitState.FAULTED}

Print = Callable[[str], None]


class Walk:
    """One cartridge through the cell, step by step, through the drivers only."""

    def __init__(
        self, shuttle: OpcUaShuttle, analyzer: ModbusAnalyzer, balance: SerialBalance, out: Print
    ) -> None:
        self.shuttle = shuttle
        self.analyzer = analyzer
        self.balance = balance
        self.out = out
        self.steps = 0

    def _task(self, step: str) -> str:
        self.steps += 1
        return f"{BATCH}/{step}/1"

    async def move(self, to: str) -> None:
        task_id = self._task(f"move-{to}")
        stream = self.shuttle.events()
        try:
            await self.shuttle.move(CARTRIDGE, to, task_id)
            async with asyncio.timeout(HANG):
                async for ev in stream:
                    if (
                        isinstance(ev, TransportChanged)
                        and ev.task_id == task_id
                        and ev.state != icd.TransportState.MOVING
                    ):
                        break
        finally:
            await stream.aclose()
        transport_state = (await self.shuttle.transport_status()).state
        if transport_state != icd.TransportState.IDLE:
            raise RuntimeError(f"move to {to} ended with the transport {transport_state}")
        self.out(f"  moved {CARTRIDGE} to {to}")

    async def run(self, unit: str, program: str, params: Mapping[str, Any]) -> dict[str, Any]:
        task_id = self._task(program)
        stream = self.shuttle.events()
        shown = -1
        try:
            await self.shuttle.start(unit, program, params, task_id, CARTRIDGE)
            self.out(f"  {unit}: {program} {dict(params)} (task {task_id})")
            async with asyncio.timeout(HANG):
                async for ev in stream:
                    if isinstance(ev, ProgressChanged) and ev.unit == unit:
                        decile = int(ev.progress * 10)
                        if decile > shown and decile < 10:
                            shown = decile
                            self.out(
                                f"    {ev.progress:6.1%}  about {ev.remaining_seconds / 3600:6.1f}"
                                " h of process time left"
                            )
                    elif (
                        isinstance(ev, UnitStateChanged)
                        and ev.unit == unit
                        and ev.task_id == task_id
                        and ev.state in _END_STATES
                    ):
                        break
        finally:
            await stream.aclose()
        result = await self.shuttle.result(task_id, unit)
        if result.status != icd.ResultStatus.COMPLETE:
            raise RuntimeError(f"{program} on {unit} ended {result.status}")
        self.out(f"    -> {_fmt(result.outputs)}")
        return dict(result.outputs)

    async def assay(self, sample_id: str, panel: Assay) -> dict[Assay, float]:
        job_seq = 1
        stream = self.analyzer.events()
        try:
            slot = await self.analyzer.submit(job_seq, sample_id, panel)
            self.out(f"  Cell Q: job {job_seq} in slot {slot}: {panel.name} on {sample_id}")
            job = await self.analyzer.job(job_seq)
            active = (SlotState.QUEUED, SlotState.RUNNING)
            async with asyncio.timeout(HANG):
                while job.state in active:
                    ev = await anext(stream)
                    if isinstance(ev, JobChanged) and ev.job.job_seq == job_seq:
                        job = ev.job
        finally:
            await stream.aclose()
        if job.state != SlotState.DONE:
            raise RuntimeError(f"job {job_seq} ended {job.state.name} (fault {job.fault.name})")
        await self.analyzer.release(job_seq)
        results = dict(job.results)
        self.out("    -> " + ", ".join(f"{a.name.lower()} {v:.4g}" for a, v in results.items()))
        return results

    async def weigh(self) -> float:
        async with asyncio.timeout(HANG):
            while True:
                weight = await self.balance.weight_now()
                if weight.stable:
                    return weight.grams
                await asyncio.sleep(0.1)  # the bag is still swinging


async def walk(cell: SimCell, out: Print) -> None:
    host = cell.config.host
    shuttle = OpcUaShuttle("shuttle", cell.shuttle.url, SecurityConfig.insecure())
    analyzer = ModbusAnalyzer("cellq", TcpEndpoint(host, cell.cellq.port))
    balance = SerialBalance("balance", cell.balance.port_path)
    operator = Client(cell.shuttle.url)
    async with shuttle, analyzer, balance, operator, TwinControls(operator) as world:
        units = await shuttle.units()
        out(f"shuttle {cell.shuttle.url}: {len(units)} units")
        for unit in ("SEL1", "INC01", "CFC1", "FIN1"):
            out(f"  {unit:6} {', '.join(units[unit].capabilities)}")
        out(f"operator puts cartridge {CARTRIDGE} at the LoadPort (3e8 cells, 92% viable)")
        await world.insert(CARTRIDGE, 3e8, 92.0)
        w = Walk(shuttle, analyzer, balance, out)
        await w.move("SEL1")
        await w.run("SEL1", "cell_selection", {"marker": "CD3", "incubation_min": 30})
        await w.move("INC01")
        await w.run("INC01", "activation", {"reagent": "TransAct", "duration_h": 24})
        await w.run(
            "INC01", "expansion", {"temperature_c": 37.0, "duration_h": 72, "feed": "perfusion"}
        )
        sample = await w.run("INC01", "sample", {"volume_ml": 0.5, "sample_id": "S-DEMO-1"})
        counts = await w.assay(str(sample["sample_id"]), Assay.CELL_COUNT | Assay.VIABILITY)
        viable = counts[Assay.CELL_COUNT]
        out(f"  in-process count: {viable:.3g} viable cells/mL")
        await w.move("CFC1")
        await w.run("CFC1", "harvest_wash", {"cycles": 3, "final_volume_ml": 100})
        await w.run("CFC1", "formulation", {"cryo_pct": 5, "final_volume_ml": 100})
        await w.move("FIN1")
        fill = await w.run("FIN1", "fill_finish", {"bags": 2, "volume_ml_per_bag": 50})
        grams = await w.weigh()
        expected = 50 * icd.PRODUCT_DENSITY_G_PER_ML
        verdict = "ok" if abs(grams - expected) <= 0.02 * expected else "OUT OF TOLERANCE"
        out(
            f"  balance: last bag {grams:.3f} g, expected {expected:.3f} g "
            f"(50 mL x {icd.PRODUCT_DENSITY_G_PER_ML} g/mL): {verdict}"
        )
        await w.move(icd.OUTPUT_PORT)
        out(f"done: {CARTRIDGE} at the OutputPort as bags {', '.join(fill['bag_ids'])}")


def _fmt(outputs: Mapping[str, Any]) -> str:
    def one(v: Any) -> str:
        return f"{v:.4g}" if isinstance(v, float) else str(v)

    return ", ".join(f"{k} {one(v)}" for k, v in outputs.items())


async def _main(args: argparse.Namespace, out: Print) -> int:
    config = SimConfig(host=args.host, time_scale=args.time_scale, seed=args.seed, security="none")
    async with SimCell(config) as cell:
        out(f"cellfab demo: twins up, time scale {args.time_scale:g}, seed {args.seed}")
        for name, endpoint in cell.endpoints().items():
            out(f"  {name:8} {endpoint}")
        try:
            await walk(cell, out)
        except (InstrumentError, RuntimeError, TimeoutError) as exc:
            print(f"cellfab demo: error: {exc}", file=sys.stderr)
            return 1
    return 0


def run_demo(args: argparse.Namespace) -> int:
    # asyncua warns that the development (None) endpoint signs nothing: true, and said once
    # here instead of on every connection.
    logging.basicConfig(level=logging.WARNING, format="%(levelname)s %(name)s: %(message)s")
    logging.getLogger("asyncua").setLevel(logging.ERROR)
    print("note: the demo uses the shuttle's unsecured development endpoint", flush=True)
    return asyncio.run(_main(args, lambda line: print(line, flush=True)))
