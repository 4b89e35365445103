"""A clean stop (SIGTERM): the runners end first, then every driver closes; nothing in
the journal blames the stop on the instruments, and no client task outlives the daemon.

Before, the daemon stopped by cancelling one task group: the drivers' close was itself
cancelled (anyio's cancellation is level triggered), so asyncua's publish loop kept
running on a closed socket, and a runner waiting on a program saw its driver close and
journaled a lost-link deviation.
"""

from __future__ import annotations

from pathlib import Path

from daemon.batch.states import BatchState as S
from daemon.supervisor import build
from drivers._link import ConnectionState
from tests.engine.conftest import Cell, LocalDaemon, site_for
from tests.engine.test_commands import _running_program
from tests.support.daemon import SimTwins


async def test_a_stop_closes_every_driver_after_the_runners(
    sim_cell: SimTwins, cell: Cell, tmp_path: Path
) -> None:
    local = LocalDaemon(build(site_for(sim_cell, tmp_path / "journal.sqlite")))
    daemon = await local.start()
    bid, _unit = await _running_program(daemon, cell)
    drivers = dict(daemon.instruments.by_name)
    assert {d.state for d in drivers.values()} == {ConnectionState.CONNECTED}
    await local.stop()
    assert {n: d.state for n, d in drivers.items()} == dict.fromkeys(
        drivers, ConnectionState.CLOSED
    )
    b = daemon.engine.batches[bid]
    assert b.state is S.RUNNING  # the program runs on; the next start reconciles it
    assert [d.message for d in b.deviations] == []
