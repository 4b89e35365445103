"""The live view of the cell's instruments, and the drivers' life in the daemon.

This module owns, for every instrument of the site: keeping its driver connected
(connect at start, retry with backoff while it cannot be reached, never giving up),
the latest state the driver reported (units, cartridges, transport, analyzer jobs,
link up or down), waits on that state ("until unit INC01 ends task T"), and the
fan-out of instrument events to the engine's event stream. It never decides anything
about batches; the executor reads the view and calls the drivers.

The view is built only from driver events and reads (``drivers.base`` Protocols):
subscribe first, then read a snapshot, then apply events, so no change between the
two is missed. After a loss the drivers emit what changed and then
``ConnectionRestored``, so the view is current again when the link is back.

Per instrument::

    down --connect ok + snapshot--> up --ConnectionLost--> down(lost) --Restored--> up
      ^ connect fails: retry after a backoff delay (the link is the driver's own after
        the first success)

Waiters are keyed by (instrument, location); a key is woken only by a change that a
waiter there can care about (state, task, cartridge, fault, job, link), never by
progress ticks.
"""

from __future__ import annotations

import contextlib
import dataclasses
import random
from collections.abc import AsyncIterator, Callable, Mapping
from dataclasses import dataclass, field
from typing import Any

import anyio
import structlog

from drivers import icd
from drivers.base import (
    Analyzer,
    AnalyzerStatusChanged,
    CartridgeChanged,
    CommunicationLost,
    ConnectionLost,
    ConnectionRestored,
    Event,
    FaultChanged,
    InstrumentError,
    JobChanged,
    JobStatus,
    OutputPortChanged,
    ProgressChanged,
    Shuttle,
    TransportChanged,
    UnitStateChanged,
)

log = structlog.get_logger("cellfab.cell")

LINK = "link"  # the location key woken on link changes (and every key of the instrument)
CLOSE_LIMIT_S = 5.0  # how long a stopping daemon waits for one driver to disconnect


@dataclass(slots=True)
class UnitView:
    unit: str
    capabilities: tuple[str, ...]
    state: str = ""
    task_id: str = ""
    program: str = ""
    cartridge_id: str = ""
    progress: float = 0.0
    remaining_seconds: float = 0.0
    fault_code: int = 0
    fault_text: str = ""
    out_of_service: bool = False


@dataclass(slots=True)
class ShuttleView:
    name: str
    up: bool = False
    reason: str = "not connected yet"
    units: dict[str, UnitView] = field(default_factory=dict)
    load_port: str = ""
    output_port: tuple[str, ...] = ()
    transport_state: str = ""
    transport_task: str = ""
    transport_fault: int = 0
    transport_fault_text: str = ""


@dataclass(slots=True)
class AnalyzerView:
    name: str
    up: bool = False
    reason: str = "not connected yet"
    state: int = -1
    fault_code: int = 0
    free_slots: int = 0
    jobs: dict[int, JobStatus] = field(default_factory=dict)  # by JobSeq, occupied slots


Publish = Callable[[str, dict[str, Any]], None]


class _Broadcast:
    """Wake every waiter of one key; each waiter re-checks its own condition."""

    __slots__ = ("_event",)

    def __init__(self) -> None:
        self._event = anyio.Event()

    def wake(self) -> None:
        self._event.set()
        self._event = anyio.Event()

    async def wait(self) -> None:
        await self._event.wait()


class CellView:
    """Drivers, their latest state, and waits on it (see the module doc)."""

    def __init__(
        self,
        shuttles: Mapping[str, Shuttle],
        analyzers: Mapping[str, Analyzer],
        *,
        out_of_service: Mapping[str, frozenset[str]] | None = None,
        publish: Publish | None = None,
        retry_initial: float = 0.2,
        retry_max: float = 5.0,
    ) -> None:
        self.shuttle_drivers = dict(shuttles)
        self.analyzer_drivers = dict(analyzers)
        self.shuttles = {name: ShuttleView(name) for name in shuttles}
        self.analyzers = {name: AnalyzerView(name) for name in analyzers}
        self._oos = dict(out_of_service or {})
        self.publish: Publish = publish or (lambda _kind, _data: None)
        self._keys: dict[tuple[str, str], _Broadcast] = {}
        self._retry = (retry_initial, retry_max)
        self._rng = random.Random()
        self.ready = anyio.Event()  # every instrument tried once (up or down)
        self._tried: set[str] = set()

    # ------------------------------------------------------------------ waiting
    def _key(self, instrument: str, location: str) -> _Broadcast:
        key = (instrument, location)
        b = self._keys.get(key)
        if b is None:
            b = self._keys[key] = _Broadcast()
        return b

    def _wake(self, instrument: str, location: str) -> None:
        b = self._keys.get((instrument, location))
        if b is not None:
            b.wake()

    def _wake_all(self, instrument: str) -> None:
        for (inst, _loc), b in list(self._keys.items()):
            if inst == instrument:
                b.wake()

    async def wait(self, instrument: str, location: str, ready: Callable[[], Any]) -> Any:
        """Return ``ready()``'s first truthy value, re-checked on every change of
        ``location`` (a unit, "Transport", "LoadPort", "OutputPort", a JobSeq as text,
        or LINK) of ``instrument``, and on every change of its link."""
        while True:
            b = self._key(instrument, location)
            value = ready()
            if value:
                return value
            await b.wait()

    def is_up(self, instrument: str) -> bool:
        view = self.shuttles.get(instrument) or self.analyzers.get(instrument)
        return bool(view and view.up)

    def require_up(self, instrument: str, operation: str) -> None:
        view = self.shuttles.get(instrument) or self.analyzers.get(instrument)
        if view is None:
            raise InstrumentError(instrument, operation, "no such instrument in the site")
        if not view.up:
            raise CommunicationLost(instrument, operation, f"not connected: {view.reason}")

    # ------------------------------------------------------------------ queries
    def units_offering(self, shuttle: str, capability: str) -> list[UnitView]:
        view = self.shuttles[shuttle]
        return [
            u for u in view.units.values() if capability in u.capabilities and not u.out_of_service
        ]

    def where_is(self, shuttle: str, cartridge_id: str) -> str:
        """Where the shuttle says the cartridge is: a unit, LoadPort, OutputPort, or ""."""
        view = self.shuttles[shuttle]
        if view.load_port == cartridge_id:
            return icd.LOAD_PORT
        for u in view.units.values():
            if u.cartridge_id == cartridge_id:
                return u.unit
        if cartridge_id in view.output_port:
            return icd.OUTPUT_PORT
        return ""

    # ------------------------------------------------------------------ running
    async def run(self) -> None:
        """Keep every driver connected and the view current, until cancelled."""
        async with anyio.create_task_group() as tg:
            for name, drv in self.shuttle_drivers.items():
                tg.start_soon(self._keep, name, drv, self._follow_shuttle)
            for name, drv in self.analyzer_drivers.items():
                tg.start_soon(self._keep, name, drv, self._follow_analyzer)
            if not self.shuttle_drivers and not self.analyzer_drivers:
                self.ready.set()

    def _tried_once(self, name: str) -> None:
        self._tried.add(name)
        if self._tried >= set(self.shuttle_drivers) | set(self.analyzer_drivers):
            self.ready.set()

    async def _keep(self, name: str, driver: Any, follow: Callable[..., Any]) -> None:
        delay = self._retry[0]
        while True:
            try:
                async with _connected(driver):
                    delay = self._retry[0]
                    await follow(name, driver)
            except InstrumentError as exc:
                self._down(name, exc.detail)
                log.warning("instrument unreachable", instrument=name, error=str(exc))
            self._tried_once(name)
            await anyio.sleep(delay * (0.5 + 0.5 * self._rng.random()))
            delay = min(delay * 2, self._retry[1])

    def _down(self, name: str, reason: str) -> None:
        view = self.shuttles.get(name) or self.analyzers.get(name)
        assert view is not None
        was_up, view.up, view.reason = view.up, False, reason
        if was_up:
            self.publish("instrument", {"instrument": name, "up": False, "reason": reason})
        self._wake_all(name)

    def _up(self, name: str) -> None:
        view = self.shuttles.get(name) or self.analyzers.get(name)
        assert view is not None
        view.up, view.reason = True, ""
        self.publish("instrument", {"instrument": name, "up": True, "reason": ""})
        self._wake_all(name)
        self._tried_once(name)

    # ------------------------------------------------------------------ shuttles
    async def _follow_shuttle(self, name: str, drv: Shuttle) -> None:
        stream = drv.events()  # subscribe before the snapshot: nothing in between is lost
        try:
            await self._shuttle_snapshot(name, drv)
            self._up(name)
            async for event in stream:
                self._on_shuttle_event(name, event)
        finally:
            with contextlib.suppress(Exception):
                await stream.aclose()  # type: ignore[attr-defined]
            self._down(name, "driver closed")

    async def _shuttle_snapshot(self, name: str, drv: Shuttle) -> None:
        view = self.shuttles[name]
        oos = self._oos.get(name, frozenset())
        units = await drv.units()
        fresh: dict[str, UnitView] = {}
        for unit_id, info in units.items():
            st = await drv.unit_status(unit_id)
            fresh[unit_id] = UnitView(
                unit=unit_id,
                capabilities=tuple(info.capabilities),
                state=st.state,
                task_id=st.task_id,
                program=st.program,
                cartridge_id=st.cartridge_id,
                progress=st.progress,
                remaining_seconds=st.remaining_seconds,
                fault_code=st.fault_code,
                fault_text=st.fault_text,
                out_of_service=unit_id in oos,
            )
        view.units = fresh
        view.load_port = await drv.load_port()
        view.output_port = tuple(await drv.output_port())
        t = await drv.transport_status()
        view.transport_state, view.transport_task = t.state, t.task_id
        view.transport_fault, view.transport_fault_text = t.fault_code, t.fault_text

    def _on_shuttle_event(self, name: str, ev: Event) -> None:
        view = self.shuttles[name]
        match ev:
            case UnitStateChanged():
                u = view.units.get(ev.unit)
                if u is None:
                    return
                u.state, u.task_id = ev.state, ev.task_id
                if ev.program:
                    u.program = ev.program
                self._wake(name, ev.unit)
                self.publish("unit", {"shuttle": name, **_unit_dict(u)})
            case ProgressChanged():
                u = view.units.get(ev.unit)
                if u is None:
                    return
                u.progress, u.remaining_seconds = ev.progress, ev.remaining_seconds
                self.publish(
                    "progress",
                    {
                        "shuttle": name,
                        "unit": ev.unit,
                        "progress": ev.progress,
                        "remaining_seconds": ev.remaining_seconds,
                    },
                )
            case CartridgeChanged():
                if ev.location == icd.LOAD_PORT:
                    view.load_port = ev.cartridge_id
                elif (u := view.units.get(ev.location)) is not None:
                    u.cartridge_id = ev.cartridge_id
                self._wake(name, ev.location)
                self.publish(
                    "cartridge",
                    {"shuttle": name, "location": ev.location, "cartridge_id": ev.cartridge_id},
                )
            case OutputPortChanged():
                view.output_port = tuple(ev.cartridge_ids)
                self._wake(name, icd.OUTPUT_PORT)
                self.publish(
                    "output_port", {"shuttle": name, "cartridge_ids": list(ev.cartridge_ids)}
                )
            case FaultChanged():
                if ev.location == icd.TRANSPORT:
                    view.transport_fault, view.transport_fault_text = ev.code, ev.text
                elif (u := view.units.get(ev.location)) is not None:
                    u.fault_code, u.fault_text = ev.code, ev.text
                self._wake(name, ev.location)
                self.publish(
                    "fault",
                    {"shuttle": name, "location": ev.location, "code": ev.code, "text": ev.text},
                )
            case TransportChanged():
                view.transport_state, view.transport_task = ev.state, ev.task_id
                self._wake(name, icd.TRANSPORT)
                self.publish(
                    "transport", {"shuttle": name, "state": ev.state, "task_id": ev.task_id}
                )
            case ConnectionLost():
                self._down(name, ev.reason)
            case ConnectionRestored():
                self._up(name)

    # ------------------------------------------------------------------ analyzers
    async def _follow_analyzer(self, name: str, drv: Analyzer) -> None:
        stream = drv.events()
        try:
            await self._analyzer_snapshot(name, drv)
            self._up(name)
            async for event in stream:
                self._on_analyzer_event(name, event)
        finally:
            with contextlib.suppress(Exception):
                await stream.aclose()  # type: ignore[attr-defined]
            self._down(name, "driver closed")

    async def _analyzer_snapshot(self, name: str, drv: Analyzer) -> None:
        view = self.analyzers[name]
        st = await drv.status()
        view.state, view.fault_code, view.free_slots = int(st.state), st.fault_code, st.free_slots
        view.jobs = {job.job_seq: job for job in await drv.jobs()}

    def _on_analyzer_event(self, name: str, ev: Event) -> None:
        view = self.analyzers[name]
        match ev:
            case AnalyzerStatusChanged():
                view.state, view.fault_code, view.free_slots = (
                    int(ev.state),
                    ev.fault_code,
                    ev.free_slots,
                )
                self._wake(name, LINK)
                self.publish(
                    "analyzer",
                    {
                        "analyzer": name,
                        "state": int(ev.state),
                        "fault_code": ev.fault_code,
                        "free_slots": ev.free_slots,
                    },
                )
            case JobChanged():
                job = ev.job
                if job.state is icd.SlotState.FREE:
                    view.jobs.pop(job.job_seq, None)
                else:
                    view.jobs[job.job_seq] = job
                self._wake(name, str(job.job_seq))
                self.publish(
                    "job",
                    {
                        "analyzer": name,
                        "job_seq": job.job_seq,
                        "slot": job.slot,
                        "state": job.state.name.lower(),
                        "progress_permille": job.progress_permille,
                    },
                )
            case ConnectionLost():
                self._down(name, ev.reason)
            case ConnectionRestored():
                self._up(name)

    # ------------------------------------------------------------------ for the API
    def snapshot(self) -> dict[str, Any]:
        return {
            "shuttles": {
                n: {
                    "up": v.up,
                    "reason": v.reason,
                    "load_port": v.load_port,
                    "output_port": list(v.output_port),
                    "transport": {
                        "state": v.transport_state,
                        "task_id": v.transport_task,
                        "fault_code": v.transport_fault,
                    },
                    "units": {u.unit: _unit_dict(u) for u in v.units.values()},
                }
                for n, v in self.shuttles.items()
            },
            "analyzers": {
                n: {
                    "up": v.up,
                    "reason": v.reason,
                    "state": v.state,
                    "fault_code": v.fault_code,
                    "free_slots": v.free_slots,
                    "jobs": [
                        {
                            "job_seq": j.job_seq,
                            "slot": j.slot,
                            "state": j.state.name.lower(),
                            "progress_permille": j.progress_permille,
                        }
                        for j in v.jobs.values()
                    ],
                }
                for n, v in self.analyzers.items()
            },
        }


def _unit_dict(u: UnitView) -> dict[str, Any]:
    d = dataclasses.asdict(u)
    d["capabilities"] = list(u.capabilities)
    return d


@contextlib.asynccontextmanager
async def _connected(driver: Any) -> AsyncIterator[Any]:
    """``driver`` open for the body, and closed even when the body is cancelled.

    The daemon stops by cancelling its task group, and anyio's cancellation is level
    triggered: every await of an unshielded ``__aexit__`` in the cancelled scope is
    cancelled at once, so the driver never disconnected and its client's background
    tasks (asyncua's publish loop and channel renewal, a Modbus link's supervisor)
    outlived the daemon, logging a traceback every second. The close is shielded and
    bounded (each driver bounds its own disconnect; this is the backstop)."""
    await driver.__aenter__()
    try:
        yield driver
    finally:
        with anyio.CancelScope(shield=True), anyio.move_on_after(CLOSE_LIMIT_S):
            await driver.__aexit__(None, None, None)
