"""Scheduler cases found by `cellfab demo` (four batches sharing one CFC1).

A unit request names the bay the batch's cartridge was in when it asked. When that
cartridge is parked meanwhile (moved out so that another batch may use the bay), the
request must not be granted the bay as "the one it is already in": another cartridge
sits there now, and the requester would wait for it to leave while its occupant waits
for the bay the requester holds (two batches, neither moving: the demo hung).
"""

from __future__ import annotations

import asyncio

from daemon.cell import CellView, ShuttleView, UnitView
from daemon.scheduler.scheduler import Scheduler

CFC = ("harvest_wash", "formulation")
INC = ("activation", "transduction", "expansion", "sample")


class Where:
    """Occupancy: where each batch's cartridge is, as the engine would say it."""

    def __init__(self, where: dict[str, str]) -> None:
        self.where = where
        self.parked: list[tuple[str, str]] = []

    def occupant(self, shuttle: str, unit: str) -> str | None:
        return next((b for b, u in self.where.items() if u == unit), None)

    def parkable(self, batch_id: str) -> bool:
        return True

    def park(self, batch_id: str, to_unit: str) -> None:
        self.parked.append((batch_id, to_unit))


def _cell(**units: UnitView) -> CellView:
    cell = CellView({}, {})
    cell.shuttles["s1"] = ShuttleView("s1", up=True, reason="", units=dict(units))
    return cell


async def test_a_request_from_a_bay_its_cartridge_has_left_parks_the_new_occupant() -> None:
    # B2 asked for formulation while its cartridge was being parked out of CFC1 (for B1's
    # harvest); B1 now sits in CFC1 with its harvest done, B2 in INC01.
    cell = _cell(
        CFC1=UnitView("CFC1", CFC, state="Complete", cartridge_id="C1"),
        INC01=UnitView("INC01", INC, state="Idle", cartridge_id="C2"),
        INC02=UnitView("INC02", INC, state="Idle"),
    )
    where = Where({"B1": "CFC1", "B2": "INC01"})
    scheduler = Scheduler(cell, where, lambda: 0.0)
    scheduler.reserved[("s1", "CFC1")] = "B1"  # B1's harvest holds CFC1
    request = asyncio.ensure_future(scheduler.unit("B2", 0, "s1", "formulation", "CFC1"))
    await asyncio.sleep(0)
    assert not request.done()

    scheduler.release_unit("B1", "s1", "CFC1")  # B1's harvest ended; its cartridge stays
    await asyncio.sleep(0)

    # never granted as B2's own bay: B1's cartridge is asked to park, B2 keeps waiting
    assert where.parked == [("B1", "INC02")]
    assert not request.done() and scheduler.vacating == {("s1", "CFC1"): "B1"}

    # the park move ends: CFC1 is empty, B1 in INC02; B2 gets CFC1 as a free bay
    where.where["B1"] = "INC02"
    cell.shuttles["s1"].units["CFC1"].cartridge_id = ""
    cell.shuttles["s1"].units["INC02"].cartridge_id = "C1"
    scheduler.parked("B1", "s1", "CFC1", "INC02")
    await asyncio.sleep(0)
    assert request.done() and request.result() == "CFC1"
    assert scheduler.reserved[("s1", "CFC1")] == "B2" and not scheduler.vacating


async def test_a_request_from_the_bay_its_cartridge_is_in_is_granted_that_bay() -> None:
    cell = _cell(
        CFC1=UnitView("CFC1", CFC, state="Complete", cartridge_id="C1"),
        INC01=UnitView("INC01", INC, state="Idle"),
    )
    where = Where({"B1": "CFC1"})
    scheduler = Scheduler(cell, where, lambda: 0.0)
    got = await asyncio.wait_for(scheduler.unit("B1", 0, "s1", "formulation", "CFC1"), 5)
    assert got == "CFC1"
    assert where.parked == []
