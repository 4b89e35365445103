"""What the shuttle model reports when time advances (simulators/shuttle_model.py).

A method call advances the model with ``report=False``: ends and every change of state
are emitted at once, but the values the ICD lets a client see merged (Progress,
RemainingSeconds, ProcessValues) of units that only ran on wait for the tick's report.
Without this, a call cost one write per running unit and value (14 ms a call with 64
running units, and 256 units kept the twin's server thread from answering at all)."""

from __future__ import annotations

from typing import Any

from drivers import icd
from drivers.icd import BrowseName as BN
from simulators.shuttle_model import ShuttleModel
from simulators.world import World

LONG = '{"temperature_c": 37.0, "duration_h": 336, "feed": "batch"}'
SHORT = '{"reagent": "R", "duration_h": 1}'


def _model() -> tuple[ShuttleModel, list[tuple[tuple[str, ...], Any]]]:
    writes: list[tuple[tuple[str, ...], Any]] = []
    world = World(seed=3)
    model = ShuttleModel(world, ["INC01", "INC02"], None, lambda p, v: writes.append((p, v)))
    now = 0.0
    for unit, cartridge in (("INC01", "C1"), ("INC02", "C2")):
        world.insert_cartridge(cartridge, 1e8, 90.0)
        model.load_port = cartridge
        model.move(cartridge, unit, f"M-{cartridge}")
        now += icd.MOVE_SECONDS
        model.advance(now)
    model.start_program(model.units["INC01"], "expansion", LONG, "T-long", "C1")
    model.start_program(model.units["INC02"], "activation", SHORT, "T-short", "C2")
    writes.clear()
    return model, writes


def _of(writes: list[tuple[tuple[str, ...], Any]], unit: str) -> list[tuple[str, Any]]:
    return [(p[2], v) for p, v in writes if p[:2] == (BN.UNITS, unit)]


def test_an_advance_without_report_emits_ends_and_keeps_merged_values_for_the_tick() -> None:
    model, writes = _model()
    start = model.now
    model.advance(start + 7200.0, report=False)  # the short program (1 h) ended meanwhile

    short = _of(writes, "INC02")
    assert (BN.STATE, "Complete") in short
    assert short.index((BN.PROGRESS, 1.0)) < short.index((BN.STATE, "Complete"))
    assert _of(writes, "INC01") == []  # still running: nothing written, no merged value
    long = model.units["INC01"]
    assert 0.0 < long.progress < 1.0  # kept current for any emit before the next report
    assert long.remaining_s == 336 * 3600 - 7200.0

    writes.clear()
    model.command(long, "Hold", "T-long")  # a change of the unit writes its current values
    held = dict(_of(writes, "INC01"))
    assert held[BN.STATE] == "Held" and held[BN.PROGRESS] == long.progress


def test_a_reporting_advance_emits_every_running_units_merged_values() -> None:
    model, writes = _model()
    model.advance(model.now + 600.0, report=True)
    running = dict(_of(writes, "INC01"))
    assert 0.0 < running[BN.PROGRESS] < 1.0
    assert running[BN.REMAINING_SECONDS] == 336 * 3600 - 600.0
    assert any(p[2] == BN.PROCESS_VALUES for p, _v in writes if p[:2] == (BN.UNITS, "INC01"))
