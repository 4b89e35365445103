"""The scheduler: hands out bays (units), each shuttle's transport and analyzer slots.

This module owns every grant of a shared resource among batches, and the policy:

* order: by priority, then earliest ready; a request's priority grows by one for every
  ``aging_hours`` of process time it waits, so nobody starves behind a stream of
  high-priority batches;
* work-conserving: a request that cannot be served now does not block one behind it
  that can (a busy SEL1 does not stop another batch from getting an incubator);
* a cartridge never leaves its shuttle; analyzers serve the whole cell;
* bays: a cartridge occupies its bay while it waits. A request for a unit is served,
  in this order, by the bay the cartridge is already in (when it offers the
  capability), or by a free bay that offers it (the least scarce one); when there is
  none, the idle batch whose cartridge sits in such a bay is asked to park it in a free
  bay no scarcer than the one it leaves (``bays.parking_bay``), and the request is
  served once that bay is free (a park that cannot happen after all just frees the
  bays it held);
* admission: a new batch's cartridge is taken from the LoadPort only into a free bay,
  and only while the shuttle keeps one more bay free after it (``reserve``), so a
  parking move is always possible and more batches than bays never deadlock.

A grant is a reservation of the unit for the batch until it releases it (its program
ended); the cartridge's presence is what keeps the bay occupied afterwards. The
scheduler knows where cartridges are from the engine (``Occupancy``) and the cell
view; it never talks to an instrument itself.

State diagram of one request::

    pending --dispatch finds a resource--> granted (future resolved)
       |  (cancelled by the requester: hold, stop, abort)
       +--> withdrawn
"""

from __future__ import annotations

import asyncio
import bisect
import itertools
from collections.abc import Callable
from dataclasses import dataclass, field
from typing import Protocol

import structlog

from daemon.cell import CellView, UnitView
from daemon.scheduler.bays import least_scarce, parking_bay, scarcity, usable
from drivers import icd

log = structlog.get_logger("cellfab.scheduler")


class Occupancy(Protocol):
    """What the scheduler asks the engine about cartridges."""

    def occupant(self, shuttle: str, unit: str) -> str | None:
        """The batch whose cartridge is in the bay, or moving into or out of it."""
        ...

    def parkable(self, batch_id: str) -> bool:
        """True when the batch's cartridge may be moved now (nothing runs on it)."""
        ...

    def park(self, batch_id: str, to_unit: str) -> None:
        """Start moving the batch's cartridge to ``to_unit`` (a task of the engine)."""
        ...


@dataclass(eq=False)
class _Request:
    kind: str  # "unit" | "transport" | "admission" | "analyzer"
    batch_id: str
    priority: int
    ready_pt: float
    order: int
    shuttle: str = ""
    capability: str = ""
    location: str = ""
    key: tuple[float, float, int] = (0.0, 0.0, 0)  # policy order (Scheduler._key)
    future: asyncio.Future[str] = field(
        default_factory=lambda: asyncio.get_running_loop().create_future()
    )


class Scheduler:
    def __init__(
        self,
        cell: CellView,
        occupancy: Occupancy,
        now: Callable[[], float],
        *,
        aging_hours: float = 1.0,
        reserve: int = 1,
    ) -> None:
        self.cell = cell
        self.occ = occupancy
        self.now = now
        self.aging_seconds = aging_hours * 3600.0
        self.reserve = reserve
        self._pending: list[_Request] = []  # in policy order
        self._epoch = now()
        self._seq = itertools.count()
        self.reserved: dict[tuple[str, str], str] = {}  # (shuttle, unit) -> batch
        self.parking: dict[tuple[str, str], str] = {}  # (shuttle, unit) -> batch parking there
        self.vacating: dict[tuple[str, str], str] = {}  # (shuttle, unit) -> batch parking out
        self.transport: dict[str, str] = {}  # shuttle -> batch holding its transport
        self.jobs: dict[str, set[str]] = {}  # analyzer -> batch:job keys holding a slot
        self.grants = 0

    # ------------------------------------------------------------------ requests
    async def unit(
        self, batch_id: str, priority: int, shuttle: str, capability: str, location: str
    ) -> str:
        """Wait for a unit of ``shuttle`` offering ``capability``; returns it, reserved."""
        return await self._wait(
            _Request(
                "unit",
                batch_id,
                priority,
                self.now(),
                next(self._seq),
                shuttle,
                capability,
                location,
            )
        )

    async def admission(self, batch_id: str, priority: int, shuttle: str) -> str:
        """Wait until the shuttle can take the cartridge at its LoadPort; returns the
        free bay reserved for it."""
        return await self._wait(
            _Request("admission", batch_id, priority, self.now(), next(self._seq), shuttle)
        )

    async def transport_of(self, batch_id: str, priority: int, shuttle: str) -> None:
        await self._wait(
            _Request("transport", batch_id, priority, self.now(), next(self._seq), shuttle)
        )

    async def analyzer(self, batch_id: str, priority: int, job_key: str) -> str:
        """Wait for an analyzer with a free slot; returns its name (slot held until
        ``release_job``)."""
        return await self._wait(
            _Request(
                "analyzer", batch_id, priority, self.now(), next(self._seq), capability=job_key
            )
        )

    async def _wait(self, req: _Request) -> str:
        req.key = self._key(req)
        bisect.insort(self._pending, req, key=lambda r: r.key)
        self.dispatch()
        try:
            return await req.future
        except BaseException:
            if req in self._pending:
                self._pending.remove(req)
            if req.future.done() and not req.future.cancelled():
                self._undo(req, req.future.result())  # granted as we were cancelled
            self.dispatch()
            raise

    # ------------------------------------------------------------------ releases
    def release_unit(self, batch_id: str, shuttle: str, unit: str) -> None:
        if self.reserved.get((shuttle, unit)) == batch_id:
            del self.reserved[(shuttle, unit)]
        self.dispatch()

    def release_parking(self, batch_id: str, shuttle: str, unit: str) -> None:
        if self.parking.get((shuttle, unit)) == batch_id:
            del self.parking[(shuttle, unit)]
        self.dispatch()

    def release_transport(self, batch_id: str, shuttle: str) -> None:
        if self.transport.get(shuttle) == batch_id:
            del self.transport[shuttle]
        self.dispatch()

    def hold_job(self, analyzer: str, job_key: str) -> None:
        """Count a job found on an analyzer (recovery) against its slots."""
        self.jobs.setdefault(analyzer, set()).add(job_key)

    def release_job(self, analyzer: str, job_key: str) -> None:
        self.jobs.get(analyzer, set()).discard(job_key)
        self.dispatch()

    def forget(self, batch_id: str) -> None:
        """Drop every reservation of a batch (it ended)."""
        for table in (self.reserved, self.parking, self.vacating):
            for key in [k for k, b in table.items() if b == batch_id]:
                del table[key]
        for shuttle in [s for s, b in self.transport.items() if b == batch_id]:
            del self.transport[shuttle]
        self.dispatch()

    def _undo(self, req: _Request, granted: str) -> None:
        if req.kind == "unit":
            self.release_unit(req.batch_id, req.shuttle, granted)
        elif req.kind == "admission":
            self.release_parking(req.batch_id, req.shuttle, granted)
        elif req.kind == "transport":
            self.release_transport(req.batch_id, req.shuttle)
        elif req.kind == "analyzer":
            self.release_job(granted, req.capability)

    # ------------------------------------------------------------------ policy
    def _key(self, req: _Request) -> tuple[float, float, int]:
        """Policy order. The aged priority ``priority + (now - ready) / aging`` grows at
        the same rate for every request, so the order of two requests never changes
        with time: it is the order of ``priority - ready / aging`` (from the epoch, for
        precision), and pending requests are kept sorted once instead of on every
        dispatch."""
        aged = req.priority - (req.ready_pt - self._epoch) / self.aging_seconds
        return (-aged, req.ready_pt, req.order)

    def dispatch(self) -> None:
        """Grant what can be granted now, in policy order (called on every change)."""
        if not self._pending:
            return
        # a transport, an admission or an analyzer slot refused in this pass is refused
        # to every later request of the same kind and shuttle (nothing in the check is
        # the request's own, and grants only take resources): skip those
        refused: set[tuple[str, str]] = set()
        for req in list(self._pending):
            if req.future.done():
                self._pending.remove(req)
                continue
            group = (req.kind, req.shuttle)
            if group in refused:
                continue
            granted = self._try(req)
            if granted is None and req.kind != "unit":
                refused.add(group)
            if granted is not None:
                self._pending.remove(req)
                self.grants += 1
                req.future.set_result(granted)

    def _try(self, req: _Request) -> str | None:
        if req.kind == "transport":
            if req.shuttle in self.transport or not self.cell.is_up(req.shuttle):
                return None
            # a batch held by a lost link let the transport go while its move went on:
            # a Move now would be refused (transport not Idle); its TransportChanged
            # to Idle dispatches again
            if self.cell.shuttles[req.shuttle].transport_state == icd.TransportState.MOVING:
                return None
            self.transport[req.shuttle] = req.batch_id
            return req.shuttle
        if req.kind == "analyzer":
            return self._try_analyzer(req)
        if not self.cell.is_up(req.shuttle):
            return None
        if req.kind == "admission":
            return self._try_admission(req)
        return self._try_unit(req)

    def _free(self, shuttle: str) -> Callable[[UnitView], bool]:
        def free(u: UnitView) -> bool:
            key = (shuttle, u.unit)
            return (
                not u.cartridge_id
                and key not in self.reserved
                and key not in self.parking
                and self.occ.occupant(shuttle, u.unit) is None
            )

        return free

    def _try_admission(self, req: _Request) -> str | None:
        units = list(self.cell.shuttles[req.shuttle].units.values())
        free = self._free(req.shuttle)
        empty = [u for u in units if usable(u) and free(u)]
        # the reserve is waived only for a one-bay shuttle: waived whenever one bay was
        # usable (the other out of service), it let that bay fill, and once the other
        # was back two cartridges could each need the other's bay with none to park in
        if len(empty) < 1 + (self.reserve if len(units) > 1 else 0):
            return None
        bay = least_scarce(empty, scarcity(units))
        assert bay is not None
        self.parking[(req.shuttle, bay.unit)] = req.batch_id
        return bay.unit

    def _try_unit(self, req: _Request) -> str | None:
        shuttle = req.shuttle
        units = list(self.cell.shuttles[shuttle].units.values())
        candidates = [u for u in units if req.capability in u.capabilities and usable(u)]
        # the bay its cartridge is in (or moving into or out of) is its own, wherever it
        # asked from: it may have been parked since, out of that bay or into this one
        own = [
            u
            for u in candidates
            if self.occ.occupant(shuttle, u.unit) == req.batch_id
            and (shuttle, u.unit) not in self.vacating  # not while it is parked out
        ]
        own.sort(key=lambda u: u.unit != req.location)
        for u in own:
            if self.reserved.get((shuttle, u.unit), req.batch_id) == req.batch_id:
                return self._grant_unit(req, u.unit)
        free = self._free(shuttle)
        scarce = scarcity(units)
        choice = least_scarce([u for u in candidates if free(u)], scarce)
        if choice is not None:
            return self._grant_unit(req, choice.unit)
        # a candidate whose occupant is idle: have that cartridge parked elsewhere; the
        # request stays pending and is served by the free path once the bay is empty
        # (so a park that cannot happen after all never leaves anyone waiting on it)
        if any(k[0] == shuttle and k[1] in {u.unit for u in candidates} for k in self.vacating):
            return None  # one is being emptied already
        for u in sorted(candidates, key=lambda u: (scarce.get(u.unit, 1.0), u.unit)):
            key = (shuttle, u.unit)
            if key in self.reserved or key in self.parking:
                continue
            occupant = self.occ.occupant(shuttle, u.unit)
            if occupant is None or occupant == req.batch_id or not self.occ.parkable(occupant):
                continue
            if occupant in self.reserved.values():
                # granted a unit itself (it moves out on its own): parking it too would
                # let two batches each wait, cartridge lock held, for the other's bay
                continue
            bay = parking_bay(units, u.unit, free, scarce)
            if bay is None:
                continue
            self.parking[(shuttle, bay.unit)] = occupant
            self.vacating[key] = occupant
            log.info("parking", batch=occupant, origin=u.unit, to=bay.unit, for_batch=req.batch_id)
            self.occ.park(occupant, bay.unit)
            return None
        return None

    def parked(self, batch_id: str, shuttle: str, origin: str, to: str) -> None:
        """A park move ended (or could not start): the bays it held are released."""
        if self.vacating.get((shuttle, origin)) == batch_id:
            del self.vacating[(shuttle, origin)]
        self.release_parking(batch_id, shuttle, to)

    def _grant_unit(self, req: _Request, unit: str) -> str:
        self.reserved[(req.shuttle, unit)] = req.batch_id
        return unit

    def _try_analyzer(self, req: _Request) -> str | None:
        best: tuple[int, str] | None = None
        for name, view in self.cell.analyzers.items():
            if not view.up or view.state == icd.AnalyzerState.FAULTED:
                continue
            ours = self.jobs.get(name, set())
            # slots the analyzer reports free, less those we granted but whose job it
            # does not show yet
            pending = sum(1 for k in ours if not _job_visible(view.jobs, k))
            room = view.free_slots - pending
            if room > 0 and (best is None or room > best[0]):
                best = (room, name)
        if best is None:
            return None
        self.jobs.setdefault(best[1], set()).add(req.capability)
        return best[1]

    # ------------------------------------------------------------------ for the API
    def snapshot(self) -> dict[str, object]:
        return {
            "pending": [
                {
                    "kind": r.kind,
                    "batch": r.batch_id,
                    "priority": r.priority,
                    "shuttle": r.shuttle,
                    "capability": r.capability,
                }
                for r in self._pending
            ],
            "reserved": {f"{s}/{u}": b for (s, u), b in self.reserved.items()},
            "parking": {f"{s}/{u}": b for (s, u), b in self.parking.items()},
            "vacating": {f"{s}/{u}": b for (s, u), b in self.vacating.items()},
            "transport": dict(self.transport),
        }


def _job_visible(jobs: dict[int, object], job_key: str) -> bool:
    """``job_key`` is ``batch:job_seq``; visible once the analyzer shows the JobSeq."""
    _, _, seq = job_key.rpartition(":")
    return seq.isdigit() and int(seq) in jobs
