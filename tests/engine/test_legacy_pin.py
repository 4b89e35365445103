"""A batch pinned before the recipe hash domain changed (v1 covered ``approval``) still
replays and runs: the engine loads its pinned text by the hash it was pinned with."""

from __future__ import annotations

import shutil
from pathlib import Path

import anyio

from daemon.batch.states import BatchState
from daemon.recipe import load_recipe, pinned_hashes
from daemon.supervisor import build
from tests.engine.conftest import Cell, site_for, until
from tests.support.daemon import LIBRARY, LocalDaemon, SimTwins

FIXTURE = Path(__file__).parent / "fixtures" / "v1_pinned.sqlite"
PINNED = "9078052909be0625792b67915c5ad0870b74f3875b00dfd965d252b1d08405f8"  # v1 domain


async def test_a_v1_journal_batch_pinned_by_its_old_hash_replays_and_runs(
    sim_cell: SimTwins, cell: Cell, tmp_path: Path
) -> None:
    journal = tmp_path / "journal.sqlite"
    shutil.copyfile(FIXTURE, journal)
    now = load_recipe(LIBRARY / "qc_only.yaml")
    assert now.hash != PINNED and now.hash == pinned_hashes(now.doc)[0]
    local = LocalDaemon(build(site_for(sim_cell, journal)))
    daemon = await local.start()
    try:
        assert daemon.journal.schema_version == 2  # migrated, after a backup beside it
        assert [p async for p in anyio.Path(tmp_path).glob("journal.sqlite.v1-backup-*")]
        b = daemon.engine.batches["B0001-LGC"]
        assert b.recipe_hash == PINNED and b.state is BatchState.RUNNING
        assert daemon.engine.recipe_of(b).name == "qc_only"
        await cell.insert("C-LEGACY1")
        done = await until(daemon.engine, "B0001-LGC", "final", lambda x: x.final)
        assert done.state is BatchState.COMPLETE
    finally:
        await local.stop()
