"use strict";
/**
 * ICD 1.1 as data for the node-opcua Cell Shuttle: identifiers (section 0), the program
 * table with parameter ranges, nominal durations and outputs (section 1 "Programs"), and
 * the parameter check (StartProgram check 4).
 *
 * Written from /work/shared/ICD.md alone (clean room): nothing here comes from drivers/icd.py.
 */

const ID = /^[A-Za-z0-9._-]{1,32}$/;
const TASK_ID = /^[A-Za-z0-9._/-]{1,64}$/;
const SAMPLE_ID = /^[A-Za-z0-9._-]{1,16}$/;

const isId = (s) => typeof s === "string" && ID.test(s);
const isTaskId = (s) => typeof s === "string" && TASK_ID.test(s);
const isSampleId = (s) => typeof s === "string" && SAMPLE_ID.test(s);

const num = (min, max) => ({ kind: "number", min, max });
const int = (min, max) => ({ kind: "int", min, max });
const str = () => ({ kind: "str" });
const sampleId = () => ({ kind: "sample_id" });
const oneOf = (...values) => ({ kind: "enum", values });

/** program -> { params, outputs, duration(params) in process seconds } */
const PROGRAMS = {
  cell_selection: {
    params: { marker: str(), incubation_min: num(10, 120) },
    outputs: ["cells_out", "purity_pct"],
    duration: (p) => p.incubation_min * 60,
  },
  activation: {
    params: { reagent: str(), duration_h: num(1, 72) },
    outputs: ["cells_out"],
    duration: (p) => p.duration_h * 3600,
  },
  transduction: {
    params: { vector: str(), moi: num(0.1, 20) },
    outputs: ["cells_out", "efficiency_pct"],
    duration: () => 1800,
  },
  electroporation: {
    params: { payload: str(), voltage_v: num(100, 1000), pulses: int(1, 5) },
    outputs: ["cells_out", "efficiency_pct"],
    duration: () => 1800,
  },
  expansion: {
    params: {
      temperature_c: num(30, 40),
      duration_h: num(1, 336),
      feed: oneOf("batch", "perfusion"),
    },
    outputs: ["cells_out", "viability_pct"],
    duration: (p) => p.duration_h * 3600,
  },
  sample: {
    params: { volume_ml: num(0.05, 5), sample_id: sampleId() },
    outputs: ["sample_id", "volume_ml"],
    duration: () => 300,
  },
  harvest_wash: {
    params: { cycles: int(1, 5), final_volume_ml: num(5, 500) },
    outputs: ["cells_out", "volume_ml"],
    duration: () => 1800,
  },
  formulation: {
    params: { cryo_pct: num(0, 10), final_volume_ml: num(5, 250) },
    outputs: ["cells_out", "volume_ml"],
    duration: () => 1800,
  },
  fill_finish: {
    params: { bags: int(1, 4), volume_ml_per_bag: num(5, 100) },
    outputs: ["bags", "volume_ml", "bag_ids"],
    duration: () => 1800,
  },
};

function checkValue(spec, v) {
  switch (spec.kind) {
    case "number":
      return typeof v === "number" && Number.isFinite(v) && v >= spec.min && v <= spec.max;
    case "int":
      return (
        typeof v === "number" && Number.isInteger(v) && v >= spec.min && v <= spec.max
      );
    case "str":
      return isId(v);
    case "sample_id":
      return isSampleId(v);
    case "enum":
      return typeof v === "string" && spec.values.includes(v);
    default:
      return false;
  }
}

/**
 * Parse and check a StartProgram Parameters string against the program's table row.
 * Returns { ok: true, params } or { ok: false, why }.
 */
function checkParameters(program, text) {
  const row = PROGRAMS[program];
  let params;
  try {
    params = JSON.parse(text);
  } catch (err) {
    return { ok: false, why: `Parameters is not JSON: ${err.message}` };
  }
  if (params === null || typeof params !== "object" || Array.isArray(params)) {
    return { ok: false, why: "Parameters is not a JSON object" };
  }
  for (const key of Object.keys(params)) {
    if (!Object.hasOwn(row.params, key)) return { ok: false, why: `unknown parameter ${key}` };
  }
  for (const [key, spec] of Object.entries(row.params)) {
    if (!Object.hasOwn(params, key)) return { ok: false, why: `missing parameter ${key}` };
    if (!checkValue(spec, params[key])) return { ok: false, why: `bad value for ${key}` };
  }
  return { ok: true, params };
}

module.exports = {
  ID,
  TASK_ID,
  SAMPLE_ID,
  PROGRAMS,
  isId,
  isTaskId,
  isSampleId,
  checkParameters,
  SHUTTLE_NS: "urn:cellfab:shuttle:v1",
  TWIN_NS: "urn:cellfab:twin:v1",
  HISTORY: 64,
  MOVE_SECONDS: 60,
  LOAD_PORT: "LoadPort",
  OUTPUT_PORT: "OutputPort",
  TRANSPORT: "Transport",
};
