"""Property tests of the world model (simulators/world.py): invariants and biology."""

from __future__ import annotations

import dataclasses
import math
import statistics
from typing import Any

import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from drivers import icd
from simulators.world import (
    ASSAY_VOLUME_ML,
    PROCESS_VALUE_NAMES,
    InsufficientVolume,
    UnknownSample,
    World,
)

SETTINGS = settings(deadline=None, max_examples=60, suppress_health_check=[HealthCheck.too_slow])


def param_value(p: icd.ParamSpec) -> st.SearchStrategy[Any]:
    if p.kind is icd.ParamKind.NUMBER:
        return st.floats(p.minimum, p.maximum, allow_nan=False)
    if p.kind is icd.ParamKind.INT:
        return st.integers(int(p.minimum or 0), int(p.maximum or 0))
    if p.kind is icd.ParamKind.ENUM:
        return st.sampled_from(p.choices)
    if p.kind is icd.ParamKind.SAMPLE_ID:
        return st.from_regex(icd.SAMPLE_ID_RE, fullmatch=True)
    return st.from_regex(icd.ID_RE, fullmatch=True)


@st.composite
def program_call(draw: st.DrawFn) -> tuple[str, dict[str, Any], float]:
    spec = draw(st.sampled_from(list(icd.PROGRAMS.values())))
    params = {p.name: draw(param_value(p)) for p in spec.params}
    fraction = draw(st.one_of(st.just(1.0), st.floats(0.0, 1.0)))
    return spec.name, params, fraction


starts = st.tuples(st.floats(0, 5e9), st.floats(1, 100))
calls = st.lists(program_call(), min_size=1, max_size=12)


def run_all(seed: int, start: tuple[float, float], seq: list[Any], cid: str = "C1") -> World:
    world = World(seed)
    world.insert_cartridge(cid, *start)
    for program, params, fraction in seq:
        world.run_program(cid, program, params, fraction)
    return world


def snapshot(world: World) -> Any:
    return (
        {k: dataclasses.asdict(v) for k, v in world.cartridges.items()},
        {k: dataclasses.asdict(v) for k, v in world.samples.items()},
        [dataclasses.asdict(b) for b in world.bags],
    )


@SETTINGS
@given(seed=st.integers(0, 2**32), start=starts, seq=calls)
def test_cells_and_volumes_never_negative(seed: int, start: Any, seq: Any) -> None:
    world = World(seed)
    cart = world.insert_cartridge("C1", *start)
    for program, params, fraction in seq:
        outputs = world.run_program("C1", program, params, fraction)
        cart = world.cartridges["C1"]
        assert cart.viable_cells >= 0 and math.isfinite(cart.viable_cells)
        assert cart.volume_ml >= 0 and cart.waste_ml >= 0
        assert 0 < cart.viability_pct <= 100
        assert 0 <= cart.cd3_fraction <= 1 and 0 <= cart.transduced_fraction <= 1
        for key, value in outputs.items():
            if isinstance(value, float | int):
                assert value >= 0, (program, key, value)
        assert set(outputs) == set(icd.PROGRAMS[program].outputs)
    for sample in world.samples.values():
        assert sample.volume_ml >= 0 and sample.cells_per_ml >= 0
    for bag in world.bags:
        assert bag.volume_ml > 0 and bag.cells >= 0


@SETTINGS
@given(seed=st.integers(0, 2**32), start=starts, seq=calls)
def test_volume_leaves_only_through_samples_and_bags(seed: int, start: Any, seq: Any) -> None:
    world = World(seed)
    world.insert_cartridge("C1", *start)
    for program, params, fraction in seq:
        c = world.cartridges["C1"]
        inside_before, in_before = c.volume_ml + c.waste_ml, c.volume_in_ml
        drawn_before = c.sampled_ml + sum(b.volume_ml for b in world.bags)
        world.run_program("C1", program, params, fraction)
        c = world.cartridges["C1"]
        inside_after = c.volume_ml + c.waste_ml
        drawn = c.sampled_ml + sum(b.volume_ml for b in world.bags) - drawn_before
        added = c.volume_in_ml - in_before
        assert added >= 0
        # what the cartridge holds changes only by medium added minus samples and bags
        assert inside_after == pytest.approx(inside_before + added - drawn, abs=1e-6)
        if program not in ("sample", "fill_finish"):
            assert drawn == 0
        put_in, accounted = world.liquid_balance("C1")
        assert accounted == pytest.approx(put_in, rel=1e-9, abs=1e-6)


@SETTINGS
@given(seed=st.integers(0, 2**32), start=starts, seq=calls)
def test_same_seed_same_world(seed: int, start: Any, seq: Any) -> None:
    assert snapshot(run_all(seed, start, seq)) == snapshot(run_all(seed, start, seq))


@SETTINGS
@given(seed=st.integers(0, 2**16), seq=calls)
def test_cartridges_are_independent_of_interleaving(seed: int, seq: Any) -> None:
    # A then B vs B then A interleaved: each cartridge ends in the same state.
    no_fill = [c for c in seq if c[0] != "fill_finish"]
    a = World(seed)
    b = World(seed)
    for w in (a, b):
        w.insert_cartridge("A", 1e8, 90)
        w.insert_cartridge("B", 2e8, 80)
    for program, params, fraction in no_fill:
        a.run_program("A", program, params, fraction)
        a.run_program("B", program, params, fraction)
    for program, params, fraction in no_fill:
        b.run_program("B", program, params, fraction)
    for program, params, fraction in no_fill:
        b.run_program("A", program, params, fraction)
    for cid in ("A", "B"):
        assert dataclasses.asdict(a.cartridges[cid]) == dataclasses.asdict(b.cartridges[cid])


def test_different_seeds_differ() -> None:
    seq = [("expansion", {"temperature_c": 37, "duration_h": 48, "feed": "batch"}, 1.0)]
    assert snapshot(run_all(1, (1e8, 90), seq)) != snapshot(run_all(2, (1e8, 90), seq))


@SETTINGS
@given(seed=st.integers(0, 2**32), cells=st.floats(1e6, 1e10), minutes=st.floats(10, 120))
def test_selection_keeps_60_to_80_pct_at_90_to_98_purity(
    seed: int, cells: float, minutes: float
) -> None:
    world = World(seed)
    cart = world.insert_cartridge("C1", cells, 90)
    target_in = cart.viable_cells * cart.cd3_fraction
    out = world.run_program("C1", "cell_selection", {"marker": "CD3", "incubation_min": minutes})
    after = world.cartridges["C1"]
    kept = after.viable_cells * after.cd3_fraction / target_in
    assert 0.60 <= kept <= 0.80
    assert 90.0 <= out["purity_pct"] <= 98.0
    assert out["cells_out"] == pytest.approx(after.viable_cells)


@SETTINGS
@given(seed=st.integers(0, 2**32), mois=st.lists(st.floats(0.1, 20), min_size=2, max_size=2))
def test_transduction_grows_with_moi_and_saturates(seed: int, mois: list[float]) -> None:
    lo, hi = sorted(mois)
    effs = []
    for moi in (lo, hi):
        world = World(seed)
        world.insert_cartridge("C1", 1e8, 90)
        effs.append(world.run_program("C1", "transduction", {"vector": "LV", "moi": moi}))
    assert effs[0]["efficiency_pct"] <= effs[1]["efficiency_pct"]
    assert effs[1]["efficiency_pct"] <= 75.0  # saturates below Emax


def test_transduction_saturates() -> None:
    def eff(moi: float) -> float:
        world = World(7)
        world.insert_cartridge("C1", 1e8, 90)
        return world.run_program("C1", "transduction", {"vector": "LV", "moi": moi})[
            "efficiency_pct"
        ]

    gain_low = eff(2) - eff(0.1)
    gain_high = eff(20) - eff(18)
    assert gain_low > 10 * gain_high


@SETTINGS
@given(seed=st.integers(0, 2**32), hours=st.floats(12, 72))
def test_expansion_doubles_every_24_to_36_h_at_37c(seed: int, hours: float) -> None:
    world = World(seed)
    world.insert_cartridge("C1", 1e6, 95)  # far below the density ceiling
    params = {"temperature_c": 37.0, "duration_h": hours, "feed": "perfusion"}
    out = world.run_program("C1", "expansion", params)
    doublings = math.log2(out["cells_out"] / 1e6)
    doubling_time = hours / doublings
    assert 24 * 0.9 - 0.5 <= doubling_time <= 36 * 1.1 + 0.5


@SETTINGS
@given(seed=st.integers(0, 2**32), temp=st.floats(30, 40).filter(lambda t: abs(t - 37) > 0.5))
def test_expansion_slower_away_from_37c(seed: int, temp: float) -> None:
    def grown(t: float) -> float:
        world = World(seed)
        world.insert_cartridge("C1", 1e6, 95)
        params = {"temperature_c": t, "duration_h": 48, "feed": "perfusion"}
        return world.run_program("C1", "expansion", params)["cells_out"]

    assert grown(temp) < grown(37.0)


def test_viability_drifts_with_feed() -> None:
    vs = {}
    for feed in ("batch", "perfusion"):
        world = World(3)
        world.insert_cartridge("C1", 1e7, 99)
        params = {"temperature_c": 37, "duration_h": 240, "feed": feed}
        vs[feed] = world.run_program("C1", "expansion", params)["viability_pct"]
    assert vs["batch"] < vs["perfusion"] < 99


@SETTINGS
@given(seed=st.integers(0, 2**32), cycles=st.integers(1, 5), final=st.floats(5, 500))
def test_washes_lose_cells(seed: int, cycles: int, final: float) -> None:
    world = World(seed)
    cart = world.insert_cartridge("C1", 1e9, 80)
    before = cart.viable_cells
    out = world.run_program("C1", "harvest_wash", {"cycles": cycles, "final_volume_ml": final})
    assert before * 0.92**cycles <= out["cells_out"] <= before * 0.97**cycles
    assert out["volume_ml"] == pytest.approx(final)
    assert world.cartridges["C1"].viability_pct > 80  # dead cells washed out


@SETTINGS
@given(seed=st.integers(0, 2**32), fraction=st.floats(0, 1))
def test_stop_keeps_outputs_of_the_part_that_ran(seed: int, fraction: float) -> None:
    params = {"temperature_c": 37.0, "duration_h": 96, "feed": "batch"}
    part = run_all(seed, (1e7, 90), [("expansion", params, fraction)])
    full = run_all(seed, (1e7, 90), [("expansion", params, 1.0)])
    assert (
        1e7 <= part.cartridges["C1"].viable_cells <= full.cartridges["C1"].viable_cells * (1 + 1e-9)
    )
    none = run_all(seed, (1e7, 90), [("expansion", params, 0.0)])
    assert none.cartridges["C1"].viable_cells == pytest.approx(1e7)


def test_process_values_preview_converges_to_the_result() -> None:
    world = World(5)
    world.insert_cartridge("C1", 1e7, 90)
    params = {"temperature_c": 36.5, "duration_h": 72, "feed": "perfusion"}
    series = [
        world.process_values("C1", "expansion", params, f / 10)["ViableCells"] for f in range(11)
    ]
    assert series == sorted(series)
    pv = world.process_values("C1", "expansion", params, 0.5)
    assert set(pv) == set(PROCESS_VALUE_NAMES)
    assert pv["Temperature_C"] == pytest.approx(36.5, abs=0.5)
    assert world.cartridges["C1"].viable_cells == 1e7  # a preview changes nothing
    out = world.run_program("C1", "expansion", params)
    assert out["cells_out"] == pytest.approx(series[-1])


@SETTINGS
@given(seed=st.integers(0, 2**32), bags=st.integers(1, 4), per_bag=st.floats(5, 100))
def test_fill_makes_bags(seed: int, bags: int, per_bag: float) -> None:
    world = World(seed)
    world.insert_cartridge("C1", 1e9, 90)
    out = world.run_program("C1", "fill_finish", {"bags": bags, "volume_ml_per_bag": per_bag})
    assert out["bags"] == len(out["bag_ids"]) >= 1
    assert out["volume_ml"] == pytest.approx(sum(b.volume_ml for b in world.bags))
    assert world.last_bag is not None and world.last_bag.bag_id == out["bag_ids"][-1]
    assert len(set(out["bag_ids"])) == len(out["bag_ids"])


def test_fill_stops_when_the_cartridge_is_empty() -> None:
    world = World(0)
    world.insert_cartridge("C1", 1e9, 90)  # 100 mL
    out = world.run_program("C1", "fill_finish", {"bags": 4, "volume_ml_per_bag": 40})
    assert out["bags"] == 3 and out["volume_ml"] == pytest.approx(100)
    assert world.cartridges["C1"].volume_ml == pytest.approx(0)
    assert world.cartridges["C1"].viable_cells == pytest.approx(0, abs=1e-3)


def test_sample_records_the_true_state() -> None:
    world = World(0)
    cart = world.insert_cartridge("C1", 1e8, 90)
    density = cart.cells_per_ml
    world.now = 1234.0
    out = world.run_program("C1", "sample", {"volume_ml": 2, "sample_id": "S-1"})
    assert out == {"sample_id": "S-1", "volume_ml": 2}
    s = world.find_sample("S-1")
    assert s is not None and s.cartridge_id == "C1" and s.drawn_at == 1234.0
    assert s.cells_per_ml == pytest.approx(density) and s.volume_ml == 2
    assert s.viability_pct == 90 and s.sterile and not s.mycoplasma
    assert world.cartridges["C1"].volume_ml == pytest.approx(98)
    assert world.find_sample("nope") is None


@SETTINGS
@given(
    seed=st.integers(0, 2**32),
    order=st.permutations([a for a in icd.Assay]),
)
def test_measurement_deterministic_independent_of_order(seed: int, order: list[icd.Assay]) -> None:
    def measured(assays: list[icd.Assay]) -> dict[icd.Assay, float]:
        world = World(seed)
        world.insert_cartridge("C1", 1e8, 90)
        world.insert_cartridge("C2", 3e8, 70)
        world.run_program("C1", "sample", {"volume_ml": 2, "sample_id": "S1"})
        world.run_program("C2", "sample", {"volume_ml": 2, "sample_id": "S2"})
        return {a: world.measure("S1", a) for a in assays}

    canonical = measured(list(icd.Assay))
    assert measured(order) == canonical


def test_cell_count_noise_is_about_5_pct_cv() -> None:
    world = World(11)
    world.insert_cartridge("C1", 1e9, 90)
    truth = world.cartridges["C1"].cells_per_ml
    counts = []
    for i in range(300):
        world.run_program("C1", "sample", {"volume_ml": 0.05, "sample_id": f"S{i}"})
        counts.append(world.measure(f"S{i}", icd.Assay.CELL_COUNT))
    mean = statistics.fmean(counts)
    cv = statistics.stdev(counts) / mean
    assert mean == pytest.approx(truth, rel=0.02)
    assert 0.035 <= cv <= 0.065


def test_measure_consumes_volume_and_refuses_when_short() -> None:
    world = World(0)
    world.insert_cartridge("C1", 1e8, 90)
    world.run_program("C1", "sample", {"volume_ml": 0.6, "sample_id": "S1"})
    world.measure("S1", icd.Assay.STERILITY)
    left = world.find_sample("S1").volume_ml  # type: ignore[union-attr]
    assert left == pytest.approx(0.6 - ASSAY_VOLUME_ML[icd.Assay.STERILITY])
    with pytest.raises(InsufficientVolume):
        world.measure("S1", icd.Assay.STERILITY)
    assert world.find_sample("S1").volume_ml == pytest.approx(left)  # type: ignore[union-attr]
    with pytest.raises(UnknownSample):
        world.measure("S9", icd.Assay.CELL_COUNT)


def test_contamination_shows_in_sterility_and_mycoplasma() -> None:
    world = World(0)
    world.insert_cartridge("C1", 1e8, 90)
    world.contaminate("C1")
    world.contaminate("C1", mycoplasma=True)
    world.run_program("C1", "sample", {"volume_ml": 2, "sample_id": "S1"})
    assert world.measure("S1", icd.Assay.STERILITY) == 1.0
    assert world.measure("S1", icd.Assay.MYCOPLASMA) == 1.0
    assert world.measure("S1", icd.Assay.ENDOTOXIN) > 1.0


@pytest.mark.parametrize("bad", ["", "a b", "x" * 33, "é", "C/1"])
def test_insert_refuses_malformed_ids(bad: str) -> None:
    with pytest.raises(ValueError):
        World().insert_cartridge(bad, 1e8, 90)


def test_insert_refuses_an_id_used_ever() -> None:
    world = World()
    world.insert_cartridge("C1", 1e8, 90)
    world.set_location("C1", "Removed")
    with pytest.raises(ValueError):
        world.insert_cartridge("C1", 1e8, 90)
    with pytest.raises(ValueError):
        world.insert_cartridge("C2", -1, 90)
    with pytest.raises(ValueError):  # ICD 1.1: viability 0..100 (0 is a dead sample)
        world.insert_cartridge("C3", 1e8, 100.5)
    with pytest.raises(ValueError):  # ICD 1.1: at most 1e11 cells
        world.insert_cartridge("C4", 1.7e308, 90)
    assert set(world.cartridges) == {"C1"}


def test_run_program_refuses_bad_input() -> None:
    world = World()
    world.insert_cartridge("C1", 1e8, 90)
    with pytest.raises(ValueError):
        world.run_program("C1", "teleport", {})
    with pytest.raises(ValueError):
        world.run_program("C1", "activation", {"reagent": "x", "duration_h": 1000})
    with pytest.raises(KeyError):
        world.run_program("C9", "activation", {"reagent": "x", "duration_h": 10})
    assert world.cartridges["C1"].runs == 0
