"""The shared physical and biological model of one manufacturing cell.

This module owns the *truth* that the twins stand in front of: cartridges (where they
are, how many viable cells of which kind, in how much liquid, how clean), the samples
drawn from them (their true state when drawn and the volume left) and the product bags
that ``fill_finish`` makes. The shuttle twin changes it by running the programs of the
ICD table; the Cell Q twin measures its samples; the balance twin weighs its last bag.
It imports nothing but ``drivers.icd`` (the contract) and knows no protocol.

Biology, deliberately simple but plausible::

    cell_selection  keeps 60-80 % of the target (CD3+) cells at 90-98 % purity
    activation      small loss (5-15 %), CD3+ share slightly up
    transduction    efficiency Emax * (1 - exp(-k * MOI)), saturating; small loss
    electroporation efficiency grows with voltage * pulses and saturates; survival drops
    expansion       doubling every 24-36 h at 37 C, slower away from it (nothing below
                    ~29 C), logistic ceiling; viability drifts (perfusion keeps it up,
                    batch feed lets it sag); batch feed adds medium, perfusion exchanges it
    sample          removes volume; the Sample records the cartridge's true state
    harvest_wash    each cycle loses 3-8 % of the cells, removes dead cells and endotoxin,
                    brings the volume to final_volume_ml
    formulation     2-5 % loss, brings the volume to final_volume_ml, records cryo_pct
    fill_finish     makes bags of volume_ml_per_bag (while there is liquid)

Liquid accounting (the invariant the property tests check)::

    volume_in (start + medium added) == volume_ml + waste_ml + drawn by samples + in bags

``waste_ml`` is the cartridge's closed waste chamber: a wash or a perfusion moves
supernatant there, it stays in the cartridge. So liquid only *leaves* a cartridge
through samples and bags; cells and volumes are never negative.

Determinism: every random draw comes from ``random.Random`` seeded by
``(world seed, key)`` (key: cartridge + run number, or sample + assay), so the same
seed gives the same world whatever the call order between cartridges, and the same
measurement of a sample gives the same value however often and whenever it is made.
``run_program`` for a fraction of a run and ``process_values`` preview the same
draws, so the live values of a running program converge to its final outputs.

Thread safety: one lock guards every mutation; twins on different threads (a test
thread and a BackgroundLoop) may share one World.
"""

from __future__ import annotations

import copy
import math
import random
import threading
from dataclasses import dataclass, field
from typing import Any, Final

from drivers import icd

# Locations a cartridge can be in besides a UnitId.
LOAD_PORT: Final = icd.LOAD_PORT
OUTPUT_PORT: Final = icd.OUTPUT_PORT
IN_TRANSPORT: Final = "Transport"
REMOVED: Final = "Removed"

START_VOLUME_ML: Final = 100.0  # starting material (apheresis product) in a fresh cartridge
MAX_VOLUME_ML: Final = 1000.0  # working volume of a cartridge's culture chamber
MAX_DENSITY: Final = 3.0e7  # viable cells per mL at which expansion stops (logistic)
MAX_CELLS: Final = icd.TWIN_CELLS[1]  # the most starting material a cartridge takes

# Names of the live ProcessValues (World.process_values keys; the shuttle's variables).
PROCESS_VALUE_NAMES: Final = (
    "Temperature_C",
    "pH",
    "DO_pct",
    "ViableCells",
    "Viability_pct",
    "Volume_mL",
)

# Volume an assay consumes from a sample, mL (a full panel takes 0.94 mL).
ASSAY_VOLUME_ML: Final[dict[icd.Assay, float]] = {
    icd.Assay.CELL_COUNT: 0.02,
    icd.Assay.VIABILITY: 0.02,
    icd.Assay.IDENTITY: 0.05,
    icd.Assay.TRANSDUCTION: 0.05,
    icd.Assay.ENDOTOXIN: 0.1,
    icd.Assay.STERILITY: 0.5,
    icd.Assay.MYCOPLASMA: 0.2,
}


class UnknownSample(KeyError):
    """No sample with that id was ever drawn."""


class InsufficientVolume(ValueError):
    """The sample has less volume left than the assay needs."""


class UnknownCartridge(KeyError):
    """No cartridge with that id is in the world."""


@dataclass
class Cartridge:
    """One patient's cells in one closed cartridge."""

    cartridge_id: str
    location: str  # "LoadPort", a UnitId, "Transport", "OutputPort", "Removed"
    viable_cells: float
    viability_pct: float
    volume_ml: float
    cd3_fraction: float  # of viable cells
    transduced_fraction: float = 0.0  # of viable cells
    contaminated: bool = False  # bacterial/fungal growth: sterility fails
    mycoplasma: bool = False
    endotoxin_eu_per_ml: float = 0.1
    cryo_pct: float = 0.0
    waste_ml: float = 0.0  # closed waste chamber inside the cartridge
    sampled_ml: float = 0.0  # drawn by samples, total
    volume_in_ml: float = 0.0  # starting volume + every medium addition
    runs: int = 0  # programs applied (the key of their random draws)
    doubling_h: float = 30.0  # this patient's doubling time at 37 C

    @property
    def cells_per_ml(self) -> float:
        return self.viable_cells / self.volume_ml if self.volume_ml > 0 else 0.0

    @property
    def dead_cells(self) -> float:
        v = self.viability_pct
        return self.viable_cells * (100.0 - v) / v if v > 0 else 0.0


@dataclass
class Sample:
    """A sample drawn from a cartridge, and the cartridge's true state when drawn."""

    sample_id: str
    cartridge_id: str
    volume_ml: float  # remaining
    drawn_at: float  # process seconds
    cells_per_ml: float
    viability_pct: float
    cd3_pct: float
    transduced_pct: float
    endotoxin_eu_per_ml: float
    sterile: bool
    mycoplasma: bool
    drawn_ml: float = 0.0  # volume taken from the cartridge (volume_ml shrinks by assays)


@dataclass
class Bag:
    """One final product bag filled by ``fill_finish``."""

    bag_id: str
    cartridge_id: str
    volume_ml: float
    cells: float


def _clamp(x: float, lo: float, hi: float) -> float:
    return lo if x < lo else hi if x > hi else x


def _nonneg(x: float) -> float:
    return x if x > 0.0 and math.isfinite(x) else 0.0


def _num(params: dict[str, Any], key: str) -> float:
    return float(params[key])


@dataclass
class _Effect:
    """What one (part of a) program does: the cartridge after it, outputs, extras."""

    after: Cartridge
    outputs: dict[str, Any]
    sample: Sample | None = None
    bags: list[Bag] = field(default_factory=list)


class World:
    """Cartridges, samples and bags of one cell; seeded and deterministic."""

    def __init__(self, seed: int = 0) -> None:
        self.seed = seed
        self.cartridges: dict[str, Cartridge] = {}
        self.samples: dict[str, Sample] = {}
        self.bags: list[Bag] = []
        self._used_ids: set[str] = set()
        self._lock = threading.RLock()
        self.now: float = 0.0  # process time of the last change, set by the twins

    # ------------------------------------------------------------------ randomness
    def _rng(self, *key: object) -> random.Random:
        return random.Random(":".join([str(self.seed), *map(str, key)]))

    # ------------------------------------------------------------------ cartridges
    def insert_cartridge(self, cartridge_id: str, cells: float, viability_pct: float) -> Cartridge:
        """A fresh cartridge of starting material at the LoadPort.

        ValueError for a malformed id, one used before (ever), or cells/viability out of
        range (0 <= cells <= MAX_CELLS, 0 <= viability <= 100): every result of a
        cartridge in range is a finite number.
        """
        if not icd.is_id(cartridge_id):
            raise ValueError(f"malformed cartridge id {cartridge_id!r}")
        if not (math.isfinite(cells) and 0 <= cells <= MAX_CELLS):
            raise ValueError(f"cells must be a number in 0..{MAX_CELLS:g}, got {cells!r}")
        if not (math.isfinite(viability_pct) and 0 <= viability_pct <= 100):
            raise ValueError(f"viability must be in 0..100, got {viability_pct!r}")
        with self._lock:
            if cartridge_id in self._used_ids:
                raise ValueError(f"cartridge id {cartridge_id!r} was used before")
            rng = self._rng("cartridge", cartridge_id)
            cart = Cartridge(
                cartridge_id=cartridge_id,
                location=LOAD_PORT,
                viable_cells=float(cells),
                viability_pct=float(viability_pct),
                volume_ml=START_VOLUME_ML,
                cd3_fraction=rng.uniform(0.4, 0.7),
                endotoxin_eu_per_ml=rng.uniform(0.05, 0.3),
                volume_in_ml=START_VOLUME_ML,
                doubling_h=rng.uniform(24.0, 36.0),
            )
            self._used_ids.add(cartridge_id)
            self.cartridges[cartridge_id] = cart
            return cart

    def cartridge(self, cartridge_id: str) -> Cartridge:
        try:
            return self.cartridges[cartridge_id]
        except KeyError:
            raise UnknownCartridge(cartridge_id) from None

    def set_location(self, cartridge_id: str, location: str) -> None:
        with self._lock:
            self.cartridge(cartridge_id).location = location

    def contaminate(self, cartridge_id: str, *, mycoplasma: bool = False) -> None:
        """Twin hook: the cartridge gets a bacterial (or mycoplasma) contamination."""
        with self._lock:
            cart = self.cartridge(cartridge_id)
            if mycoplasma:
                cart.mycoplasma = True
            else:
                cart.contaminated = True
                cart.endotoxin_eu_per_ml = max(cart.endotoxin_eu_per_ml, 5.0)

    # ------------------------------------------------------------------ programs
    def run_program(
        self, cartridge_id: str, program: str, params: dict[str, Any], fraction: float = 1.0
    ) -> dict[str, Any]:
        """Apply ``fraction`` of ``program``'s nominal run to the cartridge; ICD outputs.

        ``fraction`` < 1 is a Stop: the outputs are those of the part that ran.
        ValueError for an unknown program or parameters the ICD table refuses.
        """
        with self._lock:
            cart = self.cartridge(cartridge_id)
            effect = self._effect(cart, program, params, fraction)
            self.cartridges[cartridge_id] = effect.after
            effect.after.runs += 1
            if effect.sample is not None:
                self.samples[effect.sample.sample_id] = effect.sample
            self.bags.extend(effect.bags)
            return effect.outputs

    def process_values(
        self, cartridge_id: str, program: str, params: dict[str, Any], fraction: float
    ) -> dict[str, float]:
        """Live ProcessValues of a program ``fraction`` of the way through (no change)."""
        with self._lock:
            cart = self.cartridge(cartridge_id)
            effect = self._effect(cart, program, params, fraction)
        after = effect.after
        rng = self._rng("pv", cartridge_id, cart.runs, round(fraction, 3))
        temp = self._temperature(program, params)
        density = after.cells_per_ml
        return {
            "Temperature_C": round(temp + rng.gauss(0.0, 0.05), 3),
            "pH": round(7.35 - 0.25 * min(density / MAX_DENSITY, 1.0) + rng.gauss(0, 0.01), 3),
            "DO_pct": round(_clamp(60.0 - 30.0 * density / MAX_DENSITY, 5, 100), 2),
            "ViableCells": after.viable_cells,
            "Viability_pct": after.viability_pct,
            "Volume_mL": after.volume_ml,
        }

    @staticmethod
    def _temperature(program: str, params: dict[str, Any]) -> float:
        if program == "expansion":
            return _num(params, "temperature_c")
        if program in ("activation", "transduction"):
            return 37.0
        if program == "formulation":
            return 4.0
        return 22.0

    def _effect(
        self, cart: Cartridge, program: str, params: dict[str, Any], fraction: float
    ) -> _Effect:
        spec = icd.PROGRAMS.get(program)
        if spec is None:
            raise ValueError(f"unknown program {program!r}")
        errors = spec.check_params(params)
        if errors:
            raise ValueError("; ".join(errors))
        f = _clamp(float(fraction), 0.0, 1.0) if math.isfinite(fraction) else 0.0
        rng = self._rng("run", cart.cartridge_id, cart.runs)
        c = copy.copy(cart)
        handler = getattr(self, f"_p_{program}")
        effect: _Effect = handler(c, params, f, rng)
        a = effect.after
        a.viable_cells = _nonneg(a.viable_cells)
        a.volume_ml = _nonneg(a.volume_ml)
        a.viability_pct = _clamp(a.viability_pct, 0.1, 100.0)
        a.cd3_fraction = _clamp(a.cd3_fraction, 0.0, 1.0)
        a.transduced_fraction = _clamp(a.transduced_fraction, 0.0, 1.0)
        return effect

    # Each _p_<program> gets a private copy of the cartridge, the run fraction in [0, 1]
    # and the run's Random; it must draw the same numbers in the same order whatever f.

    def _p_cell_selection(
        self, c: Cartridge, params: dict[str, Any], f: float, rng: random.Random
    ) -> _Effect:
        yield_ = rng.uniform(0.60, 0.80)
        purity = rng.uniform(0.90, 0.98)
        target = c.viable_cells * c.cd3_fraction
        other = c.viable_cells - target
        target_end = target * yield_
        other_end = min(other, target_end * (1.0 - purity) / purity)
        target_now = target + f * (target_end - target)
        other_now = other + f * (other_end - other)
        dead_now = c.dead_cells * (1.0 - f * 0.8)  # the column holds back most dead cells
        c.viable_cells = target_now + other_now
        c.cd3_fraction = target_now / c.viable_cells if c.viable_cells > 0 else c.cd3_fraction
        total = c.viable_cells + dead_now
        c.viability_pct = 100.0 * c.viable_cells / total if total > 0 else c.viability_pct
        return _Effect(
            c, {"cells_out": c.viable_cells, "purity_pct": round(100.0 * c.cd3_fraction, 3)}
        )

    def _p_activation(
        self, c: Cartridge, params: dict[str, Any], f: float, rng: random.Random
    ) -> _Effect:
        loss = rng.uniform(0.05, 0.15)
        c.viable_cells *= 1.0 - f * loss
        c.cd3_fraction += f * 0.3 * (1.0 - c.cd3_fraction) * min(_num(params, "duration_h") / 48, 1)
        c.viability_pct -= f * rng.uniform(0.5, 3.0)
        return _Effect(c, {"cells_out": c.viable_cells})

    def _transduce(self, c: Cartridge, efficiency: float, survival: float, f: float) -> None:
        c.transduced_fraction = 1.0 - (1.0 - c.transduced_fraction) * (1.0 - f * efficiency)
        lost = c.viable_cells * f * (1.0 - survival)
        dead = c.dead_cells + lost
        c.viable_cells -= lost
        total = c.viable_cells + dead
        c.viability_pct = 100.0 * c.viable_cells / total if total > 0 else c.viability_pct

    def _p_transduction(
        self, c: Cartridge, params: dict[str, Any], f: float, rng: random.Random
    ) -> _Effect:
        e_max = rng.uniform(0.55, 0.75)
        k = rng.uniform(0.25, 0.45)
        survival = rng.uniform(0.88, 0.96)
        efficiency = e_max * (1.0 - math.exp(-k * _num(params, "moi")))
        self._transduce(c, efficiency, survival, f)
        out = {"cells_out": c.viable_cells, "efficiency_pct": round(100.0 * f * efficiency, 3)}
        return _Effect(c, out)

    def _p_electroporation(
        self, c: Cartridge, params: dict[str, Any], f: float, rng: random.Random
    ) -> _Effect:
        dose = _num(params, "voltage_v") * _num(params, "pulses")
        e_max = rng.uniform(0.6, 0.85)
        efficiency = e_max * (1.0 - math.exp(-dose / 1500.0))
        survival = math.exp(-dose / rng.uniform(3000.0, 4000.0))
        self._transduce(c, efficiency, survival, f)
        out = {"cells_out": c.viable_cells, "efficiency_pct": round(100.0 * f * efficiency, 3)}
        return _Effect(c, out)

    def _p_expansion(
        self, c: Cartridge, params: dict[str, Any], f: float, rng: random.Random
    ) -> _Effect:
        hours = _num(params, "duration_h") * f
        temp = _num(params, "temperature_c")
        perfusion = params["feed"] == "perfusion"
        temp_factor = max(0.0, 1.0 - abs(temp - 37.0) / 8.0)
        noise = rng.uniform(0.9, 1.1)
        # medium: batch feed tops up to the working volume over ~3 days; perfusion
        # exchanges one volume a day (spent medium to the waste chamber).
        if perfusion:
            exchanged = c.volume_ml * hours / 24.0
            c.waste_ml += exchanged
            c.volume_in_ml += exchanged
        else:
            added = min(MAX_VOLUME_ML - c.volume_ml, 300.0 * hours / 24.0)
            added = max(added, 0.0)
            c.volume_ml += added
            c.volume_in_ml += added
        rate = math.log(2.0) / c.doubling_h * temp_factor * noise  # per hour
        capacity = MAX_DENSITY * c.volume_ml
        n0 = c.viable_cells
        if n0 > 0 and capacity > 0 and rate > 0:
            grown = capacity / (1.0 + (capacity / n0 - 1.0) * math.exp(-rate * hours))
            c.viable_cells = min(grown, max(capacity, n0)) if n0 < capacity else n0
        drift_target = 93.0 if perfusion else 85.0
        drift_target -= 2.0 * abs(temp - 37.0)
        tau_h = 72.0
        c.viability_pct = drift_target + (c.viability_pct - drift_target) * math.exp(-hours / tau_h)
        if c.contaminated:
            c.endotoxin_eu_per_ml += 0.5 * hours
        out = {"cells_out": c.viable_cells, "viability_pct": round(c.viability_pct, 3)}
        return _Effect(c, out)

    def _p_sample(
        self, c: Cartridge, params: dict[str, Any], f: float, rng: random.Random
    ) -> _Effect:
        sample_id = str(params["sample_id"])
        volume = min(_num(params, "volume_ml") * f, c.volume_ml)
        true_cells_per_ml = c.cells_per_ml
        cells_out = true_cells_per_ml * volume
        c.viable_cells -= cells_out
        c.volume_ml -= volume
        c.sampled_ml += volume
        sample = Sample(
            sample_id=sample_id,
            cartridge_id=c.cartridge_id,
            volume_ml=volume,
            drawn_at=self.now,
            cells_per_ml=true_cells_per_ml,
            viability_pct=c.viability_pct,
            cd3_pct=100.0 * c.cd3_fraction,
            transduced_pct=100.0 * c.transduced_fraction,
            endotoxin_eu_per_ml=c.endotoxin_eu_per_ml,
            sterile=not c.contaminated,
            mycoplasma=c.mycoplasma,
            drawn_ml=volume,
        )
        return _Effect(c, {"sample_id": sample_id, "volume_ml": volume}, sample=sample)

    def _to_volume(self, c: Cartridge, final_ml: float) -> None:
        if c.volume_ml > final_ml:
            c.waste_ml += c.volume_ml - final_ml
        else:
            c.volume_in_ml += final_ml - c.volume_ml
        c.volume_ml = final_ml

    def _p_harvest_wash(
        self, c: Cartridge, params: dict[str, Any], f: float, rng: random.Random
    ) -> _Effect:
        cycles = int(_num(params, "cycles"))
        losses = [rng.uniform(0.03, 0.08) for _ in range(cycles)]
        done = cycles * f
        dead = c.dead_cells
        for i, loss in enumerate(losses):
            part = _clamp(done - i, 0.0, 1.0)
            c.viable_cells *= 1.0 - part * loss
            dead *= 1.0 - part * 0.5
            c.endotoxin_eu_per_ml *= 1.0 - part * 0.9
        total = c.viable_cells + dead
        c.viability_pct = 100.0 * c.viable_cells / total if total > 0 else c.viability_pct
        final = _num(params, "final_volume_ml")
        self._to_volume(c, c.volume_ml + f * (final - c.volume_ml))
        return _Effect(c, {"cells_out": c.viable_cells, "volume_ml": c.volume_ml})

    def _p_formulation(
        self, c: Cartridge, params: dict[str, Any], f: float, rng: random.Random
    ) -> _Effect:
        c.viable_cells *= 1.0 - f * rng.uniform(0.02, 0.05)
        c.cryo_pct = f * _num(params, "cryo_pct")
        final = _num(params, "final_volume_ml")
        self._to_volume(c, c.volume_ml + f * (final - c.volume_ml))
        return _Effect(c, {"cells_out": c.viable_cells, "volume_ml": c.volume_ml})

    def _p_fill_finish(
        self, c: Cartridge, params: dict[str, Any], f: float, rng: random.Random
    ) -> _Effect:
        wanted = int(_num(params, "bags"))
        per_bag = _num(params, "volume_ml_per_bag")
        n_bags = wanted if f >= 1.0 else int(wanted * f)
        existing = sum(1 for b in self.bags if b.cartridge_id == c.cartridge_id)
        bags: list[Bag] = []
        for i in range(n_bags):
            volume = min(per_bag, c.volume_ml)
            if volume <= 0:
                break
            cells = c.cells_per_ml * volume
            c.viable_cells -= cells
            c.volume_ml -= volume
            bags.append(
                Bag(f"{c.cartridge_id}-BAG{existing + i + 1}", c.cartridge_id, volume, cells)
            )
        out = {
            "bags": len(bags),
            "volume_ml": sum(b.volume_ml for b in bags),
            "bag_ids": [b.bag_id for b in bags],
        }
        return _Effect(c, out, bags=bags)

    # ------------------------------------------------------------------ samples
    def find_sample(self, sample_id: str) -> Sample | None:
        with self._lock:
            return self.samples.get(sample_id)

    def measure(self, sample_id: str, assay: icd.Assay) -> float:
        """Measure ``assay`` on the sample, consuming its volume; the value in ICD units.

        UnknownSample when no such sample was drawn; InsufficientVolume (nothing
        consumed) when less is left than the assay needs. Noise is deterministic per
        (seed, sample_id, assay).
        """
        need = ASSAY_VOLUME_ML[icd.Assay(assay)]
        with self._lock:
            sample = self.samples.get(sample_id)
            if sample is None:
                raise UnknownSample(sample_id)
            if sample.volume_ml + 1e-12 < need:
                raise InsufficientVolume(
                    f"sample {sample_id} has {sample.volume_ml:.3f} mL, {assay.name} needs {need}"
                )
            sample.volume_ml = max(0.0, sample.volume_ml - need)
            rng = self._rng("assay", sample_id, int(assay))
            return self._measured(sample, icd.Assay(assay), rng)

    @staticmethod
    def _measured(s: Sample, assay: icd.Assay, rng: random.Random) -> float:
        if assay is icd.Assay.CELL_COUNT:
            return max(0.0, s.cells_per_ml * (1.0 + rng.gauss(0.0, 0.05)))
        if assay is icd.Assay.VIABILITY:
            return _clamp(s.viability_pct + rng.gauss(0.0, 1.5), 0.0, 100.0)
        if assay is icd.Assay.IDENTITY:
            return _clamp(s.cd3_pct + rng.gauss(0.0, 2.0), 0.0, 100.0)
        if assay is icd.Assay.TRANSDUCTION:
            return _clamp(s.transduced_pct + rng.gauss(0.0, 2.0), 0.0, 100.0)
        if assay is icd.Assay.ENDOTOXIN:
            return max(0.0, s.endotoxin_eu_per_ml * math.exp(rng.gauss(0.0, 0.1)))
        if assay is icd.Assay.STERILITY:
            return 0.0 if s.sterile else 1.0
        if assay is icd.Assay.MYCOPLASMA:
            return 1.0 if s.mycoplasma else 0.0
        raise ValueError(f"not a single assay: {assay!r}")

    # ------------------------------------------------------------------ bags
    @property
    def last_bag(self) -> Bag | None:
        with self._lock:
            return self.bags[-1] if self.bags else None

    # ------------------------------------------------------------------ accounting
    def liquid_balance(self, cartridge_id: str) -> tuple[float, float]:
        """(volume put in, volume accounted for) of one cartridge; equal up to rounding."""
        with self._lock:
            c = self.cartridge(cartridge_id)
            bagged = sum(b.volume_ml for b in self.bags if b.cartridge_id == c.cartridge_id)
            return c.volume_in_ml, c.volume_ml + c.waste_ml + c.sampled_ml + bagged
