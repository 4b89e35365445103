"""The engine's Occupancy: the bay index answers as the scan over every batch did.

``Engine.occupant`` keeps an index of bays (updated with every commit) instead of
scanning all batches for each question (the scheduler asks it for every candidate bay
of every unit request). Hypothesis drives batches through admissions and moves, ended
or not, and every bay of two shuttles is asked after each commit.
"""

from __future__ import annotations

import asyncio
from typing import Any

from hypothesis import given, settings
from hypothesis import strategies as st

from daemon.batch.engine import Engine
from daemon.batch.machine import Batch, created
from daemon.cell import CellView
from daemon.clock import ProcessClock
from daemon.journal import records as r

SHUTTLES = ("S1", "S2")
BAYS = ("U1", "U2", "U3", "LoadPort", "OutputPort")


class MemJournal:
    instance = "MEM"

    def __init__(self) -> None:
        self.recs: list[r.Record] = []

    async def append(self, *recs: r.Record) -> list[int]:
        for rec in recs:
            r.encode(rec)  # what the store would refuse
            self.recs.append(rec)
        return list(range(len(self.recs) - len(recs) + 1, len(self.recs) + 1))

    def read(self, after: int = 0) -> Any:
        return list(enumerate(self.recs, 1))[after:]


def scan(batches: dict[str, Batch], shuttle: str, unit: str) -> str | None:
    """The occupant as the engine first computed it: a scan over every batch."""
    for b in batches.values():
        if b.shuttle != shuttle:
            continue
        if b.location == unit:
            return b.batch_id
        t = b.task
        if t is not None and t.kind == "move" and t.phase != "ended" and unit in (t.unit, t.origin):
            return b.batch_id
    return None


@settings(max_examples=60, deadline=None)
@given(
    n=st.integers(1, 5),
    plan=st.lists(
        st.tuples(
            st.integers(0, 4), st.sampled_from(SHUTTLES), st.sampled_from(BAYS[:3]), st.booleans()
        ),
        max_size=40,
    ),
)
def test_the_bay_index_answers_as_the_scan(n: int, plan: list[tuple[int, str, str, bool]]) -> None:
    async def main() -> None:
        engine = Engine(MemJournal(), CellView({}, {}), ProcessClock(1.0), site_shuttles=SHUTTLES)
        ids = []
        for i in range(n):
            bid = f"B{i + 1:04d}-MEM"
            rec = r.BatchCreated(
                batch_id=bid,
                recipe_name="x",
                recipe_version="1",
                recipe_hash="ab" * 32,
                recipe_text="...",
                params={},
                cartridge_id=f"C{i}",
            )
            engine.batches[bid] = created(rec)
            engine._init_batch(bid)
            await engine.commit(bid, r.CommandIssued(batch_id=bid, command="Start", accepted=True))
            ids.append(bid)
        moves = 0
        for k, shuttle, unit, ok in plan:
            bid = ids[k % n]
            b = engine.batches[bid]
            t = b.task
            if not b.shuttle:
                await engine.commit(bid, r.Admitted(batch_id=bid, shuttle=shuttle))
            elif t is not None and t.kind == "move" and t.phase != "ended":
                where = t.unit if ok else t.origin
                await engine.commit(
                    bid, r.MoveEnded(batch_id=bid, task_id=t.task_id, ok=ok, location=where)
                )
            else:
                moves += 1
                await engine.commit(
                    bid,
                    r.MoveIntent(
                        batch_id=bid,
                        task_id=f"{bid}/move.{moves}",
                        shuttle=b.shuttle,
                        to=unit,
                        origin=b.location,
                    ),
                )
            for s in SHUTTLES:
                for u in BAYS:
                    assert engine.occupant(s, u) == scan(engine.batches, s, u), (s, u)

    asyncio.run(main())
