"use strict";
/**
 * The physical side of the node-opcua Cell Shuttle: cartridges (cells, viability, volume)
 * and what a program does to them, giving plausible outputs of the ICD program table.
 *
 * `outputs(program, params, cartridge, f)` answers the outputs of a program that ran the
 * fraction f (1 for a full run, less for one ended by Stop); `apply` writes them back to
 * the cartridge. Deterministic: same inputs, same outputs.
 */

const START_VOLUME_ML = 50;
const clamp = (x, lo, hi) => Math.min(hi, Math.max(lo, x));
const round = (x, digits = 3) => Number(x.toFixed(digits));

function newCartridge(id, cells, viabilityPct) {
  return { id, cells, viability: viabilityPct, volume: START_VOLUME_ML, location: "LoadPort" };
}

function outputs(program, p, c, f) {
  const cells = c.cells;
  switch (program) {
    case "cell_selection":
      return { cells_out: round(cells * (1 - 0.7 * f)), purity_pct: round(60 + 35 * f, 2) };
    case "activation":
      return { cells_out: round(cells * (1 + 0.2 * f)) };
    case "transduction":
      return {
        cells_out: round(cells * (1 - 0.1 * f)),
        efficiency_pct: round(clamp(15 + 3 * p.moi, 0, 70) * f, 2),
      };
    case "electroporation": {
      const loss = clamp((p.voltage_v / 1000) * p.pulses * 0.06, 0, 0.5);
      return {
        cells_out: round(cells * (1 - loss * f)),
        efficiency_pct: round(clamp(10 + p.voltage_v / 25 + 4 * p.pulses, 0, 85) * f, 2),
      };
    }
    case "expansion": {
      const rate = clamp(1 - Math.abs(p.temperature_c - 37) / 8, 0.05, 1);
      const days = (p.duration_h * f) / 24;
      const boost = p.feed === "perfusion" ? 1.15 : 1;
      return {
        cells_out: round(clamp(cells * 2 ** (days * rate * boost * 0.8), 1e3, 1e11)),
        viability_pct: round(clamp(c.viability - days * 0.2 * (1.2 - rate), 0, 100), 2),
      };
    }
    case "sample":
      return { sample_id: p.sample_id, volume_ml: round(p.volume_ml * f, 4) };
    case "harvest_wash":
      return {
        cells_out: round(cells * (1 - 0.03 * p.cycles * f)),
        volume_ml: round(c.volume + (p.final_volume_ml - c.volume) * f, 3),
      };
    case "formulation":
      return {
        cells_out: round(cells * (1 - 0.02 * f)),
        volume_ml: round(c.volume + (p.final_volume_ml - c.volume) * f, 3),
      };
    case "fill_finish": {
      const n = Math.floor(p.bags * f + 1e-9);
      const bagIds = Array.from({ length: n }, (_, i) => `${c.id}-B${i + 1}`.slice(0, 32));
      return { bags: n, volume_ml: round(n * p.volume_ml_per_bag, 3), bag_ids: bagIds };
    }
    default:
      return {};
  }
}

/** The cartridge after the program: cells, viability and liquid follow the outputs. */
function apply(program, p, c, out) {
  if (typeof out.cells_out === "number") c.cells = out.cells_out;
  if (typeof out.viability_pct === "number") c.viability = out.viability_pct;
  if (program === "sample") c.volume = Math.max(0, c.volume - out.volume_ml);
  if (program === "harvest_wash" || program === "formulation") c.volume = out.volume_ml;
  if (program === "fill_finish") c.volume = Math.max(0, c.volume - out.volume_ml);
}

/** ProcessValues of a unit while a program runs on a cartridge (may be merged). */
function processValues(program, p, c, f) {
  const wobble = Math.sin(f * 40) * 0.05;
  return {
    Temperature_C: round((program === "expansion" ? p.temperature_c : 37) + wobble, 3),
    pH: round(7.2 - 0.15 * f + wobble / 5, 3),
    DO_pct: round(40 - 10 * f + wobble * 10, 3),
    ViableCells: round(c.cells * (program === "expansion" ? 1 + f : 1)),
  };
}

module.exports = { newCartridge, outputs, apply, processValues, START_VOLUME_ML };
