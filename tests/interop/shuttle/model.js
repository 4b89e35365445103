"use strict";
/**
 * The Cell Shuttle's rules (ICD 1.1 section 1) and its twin controls (section 4), free of
 * OPC UA: units with their program history, the transport, the ports and the cartridges.
 * Every command answers { status, ...outputs } with status an OPC UA StatusCode name;
 * every change of a variable goes out through `out(path, value)` in the order the ICD asks
 * (a start writes TaskId and Program before State), synchronously, so that one publish
 * never splits them the wrong way round.
 *
 * Unit life cycle (Hold/Unhold/Stop/Abort in COMMANDS, one table):
 *
 *   Idle|Complete --StartProgram--> Running <--Hold/Unhold--> Held
 *   Running --done--> Complete (Status Complete)
 *   Running|Held --Stop--> Complete (Status Stopped)  --Abort--> Aborted
 *   any --fault--> Faulted;  Aborted|Faulted --Clear--> Idle
 *   Complete --cartridge leaves--> Idle
 *
 * Transport: Idle --Move--> Moving --60 s--> Idle;  any --fault--> Faulted --Clear--> Idle
 */

const icd = require("./icd");
const world = require("./world");
const { Clock } = require("./clock");

/** Units of the default shuttle and the programs each runs (documented in README.md). */
const DEFAULT_UNITS = [
  ["SEL1", ["cell_selection", "sample"]],
  ["EP1", ["electroporation", "sample"]],
  ...Array.from({ length: 16 }, (_, i) => [
    `INC${String(i + 1).padStart(2, "0")}`,
    ["activation", "transduction", "expansion", "sample"],
  ]),
  ["CFC1", ["harvest_wash", "formulation", "sample"]],
  ["FIN1", ["fill_finish"]],
];

/** command -> the state it reaches and the states it applies to (ICD "Hold, Unhold, ..."). */
const COMMANDS = {
  Hold: { target: "Held", from: ["Running"] },
  Unhold: { target: "Running", from: ["Held"] },
  Stop: { target: "Complete", from: ["Running", "Held"] },
  Abort: { target: "Aborted", from: ["Running", "Held"] },
};

const GOOD = { status: "Good" };
const bad = (status, why) => ({ status, why });

class Shuttle {
  constructor({ scale = 1, units = DEFAULT_UNITS, out = () => {} } = {}) {
    this.clock = new Clock(scale);
    this.clock.onTick = () => this.progress();
    this.out = out;
    this.units = new Map();
    for (const [id, caps] of units) {
      this.units.set(id, {
        id,
        caps,
        state: "Idle",
        cartridgeId: "",
        taskId: "",
        program: "",
        faultCode: 0,
        faultText: "",
        history: [],
        active: null,
      });
    }
    this.transport = { state: "Idle", taskId: "", faultCode: 0, faultText: "", history: [] };
    this.move = null; // the move under way
    this.loadPort = "";
    this.outputPort = [];
    this.cartridges = new Map();
    this.usedCartridgeIds = new Set();
    this.usedSampleIds = new Set();
    this.started = []; // StartedPrograms
    this.runSeq = 0;
  }

  close() {
    this.clock.close();
  }

  // ---- writes --------------------------------------------------------------------------

  set(obj, key, path, value) {
    const same = Array.isArray(value)
      ? JSON.stringify(obj[key]) === JSON.stringify(value)
      : obj[key] === value;
    obj[key] = value;
    if (!same) this.out(path, value);
  }

  setUnit(u, key, name, value) {
    this.set(u, key, `Units/${u.id}/${name}`, value);
  }

  setTransport(key, name, value) {
    this.set(this.transport, key, `Transport/${name}`, value);
  }

  setLocation(where, cartridgeId) {
    if (where === icd.LOAD_PORT) {
      this.set(this, "loadPort", "LoadPort/CartridgeId", cartridgeId);
    } else if (where === icd.OUTPUT_PORT) {
      this.set(this, "outputPort", "OutputPort/CartridgeIds", [...this.outputPort, cartridgeId]);
    } else {
      this.setUnit(this.units.get(where), "cartridgeId", "CartridgeId", cartridgeId);
    }
  }

  recordStart(unit, taskId, program, cartridgeId) {
    this.started.push({
      unit,
      task_id: taskId,
      program,
      cartridge_id: cartridgeId,
      at: Number(this.clock.now().toFixed(3)),
    });
    this.out("Twin/StartedPrograms", JSON.stringify(this.started));
  }

  nextRunId(prefix) {
    this.runSeq += 1;
    return `${prefix}-R${this.runSeq}`;
  }

  // ---- units ---------------------------------------------------------------------------

  startProgram(unitId, program, parameters, taskId, cartridgeId) {
    const u = this.units.get(unitId);
    const known = u.history.find((e) => e.taskId === taskId);
    if (known) return { status: "Good", runId: known.runId }; // 1. idempotency, per unit
    if (!icd.isTaskId(taskId) || !icd.isId(cartridgeId) || !icd.isId(program)) {
      return bad("BadInvalidArgument", "malformed TaskId, CartridgeId or Program"); // 2.
    }
    if (!u.caps.includes(program)) return bad("BadNotSupported", "not in Capabilities"); // 3.
    const checked = icd.checkParameters(program, parameters); // 4.
    if (!checked.ok) return bad("BadInvalidArgument", checked.why);
    const params = checked.params;
    if (program === "sample" && this.usedSampleIds.has(params.sample_id)) {
      return bad("BadInvalidArgument", "sample_id used before on this shuttle");
    }
    if (u.cartridgeId === "" || u.cartridgeId !== cartridgeId) {
      return bad("BadNoMatch", "the bay holds another cartridge or none"); // 5.
    }
    if (u.state !== "Idle" && u.state !== "Complete") return bad("BadInvalidState", u.state); // 6.

    if (program === "sample") this.usedSampleIds.add(params.sample_id);
    const total = icd.PROGRAMS[program].duration(params);
    const entry = {
      taskId,
      runId: this.nextRunId(unitId),
      program,
      params,
      cartridgeId,
      status: "Running",
      outputs: {},
      done: 0,
      total,
      onDue: () => this.finish(u, entry, "Complete"),
    };
    u.history.push(entry);
    if (u.history.length > icd.HISTORY) u.history.shift();
    u.active = entry;
    this.setUnit(u, "taskId", "TaskId", taskId);
    this.setUnit(u, "program", "Program", program);
    this.out(`Units/${u.id}/Progress`, 0);
    this.out(`Units/${u.id}/RemainingSeconds`, total);
    this.setUnit(u, "state", "State", "Running");
    this.recordStart(unitId, taskId, program, cartridgeId);
    this.clock.run(entry);
    return { status: "Good", runId: entry.runId };
  }

  /** Hold, Unhold, Stop, Abort: one table (COMMANDS), repeats answer Good. */
  command(unitId, name, taskId) {
    const u = this.units.get(unitId);
    if (taskId !== u.taskId || !icd.isTaskId(taskId)) {
      return bad("BadInvalidArgument", "not the unit's TaskId");
    }
    const rule = COMMANDS[name];
    if (u.state === rule.target) return GOOD;
    if (!rule.from.includes(u.state)) return bad("BadInvalidState", u.state);
    const entry = u.active;
    if (name === "Hold") {
      this.clock.pause(entry);
      entry.status = "Held";
      this.setUnit(u, "state", "State", "Held");
    } else if (name === "Unhold") {
      entry.status = "Running";
      this.clock.run(entry);
      this.setUnit(u, "state", "State", "Running");
    } else if (name === "Stop") {
      this.clock.pause(entry);
      this.finish(u, entry, "Stopped");
    } else {
      this.clock.pause(entry);
      entry.status = "Aborted";
      u.active = null;
      this.setUnit(u, "state", "State", "Aborted");
    }
    return GOOD;
  }

  /** A program ends Complete (full run) or Stopped (outputs of the part that ran). */
  finish(u, entry, status) {
    const cart = this.cartridges.get(entry.cartridgeId);
    const f = entry.total > 0 ? entry.done / entry.total : 1;
    entry.outputs = world.outputs(entry.program, entry.params, cart, status === "Complete" ? 1 : f);
    world.apply(entry.program, entry.params, cart, entry.outputs);
    entry.status = status;
    u.active = null;
    this.out(`Units/${u.id}/Progress`, status === "Complete" ? 1 : f);
    this.out(`Units/${u.id}/RemainingSeconds`, 0); // the program is over, stopped or not
    this.setUnit(u, "state", "State", "Complete");
  }

  clearUnit(unitId) {
    const u = this.units.get(unitId);
    if (u.state !== "Aborted" && u.state !== "Faulted") return bad("BadInvalidState", u.state);
    this.setUnit(u, "faultCode", "FaultCode", 0);
    this.setUnit(u, "faultText", "FaultText", "");
    this.setUnit(u, "state", "State", "Idle");
    return GOOD;
  }

  getResult(unitId, taskId) {
    if (!icd.isTaskId(taskId)) return bad("BadInvalidArgument", "malformed TaskId");
    const entry = this.units.get(unitId).history.find((e) => e.taskId === taskId);
    if (!entry) return { status: "Good", result: "Unknown", outputs: "{}" };
    const done = entry.status === "Complete" || entry.status === "Stopped";
    return {
      status: "Good",
      result: entry.status,
      outputs: JSON.stringify(done ? entry.outputs : {}),
    };
  }

  /** Progress, RemainingSeconds and ProcessValues of every running program (merged). */
  progress() {
    for (const u of this.units.values()) {
      const e = u.active;
      if (!e || e.status !== "Running") continue;
      const f = e.total > 0 ? e.done / e.total : 1;
      this.out(`Units/${u.id}/Progress`, f);
      this.out(`Units/${u.id}/RemainingSeconds`, Math.max(0, e.total - e.done));
      const cart = this.cartridges.get(e.cartridgeId);
      for (const [k, v] of Object.entries(world.processValues(e.program, e.params, cart, f))) {
        this.out(`Units/${u.id}/ProcessValues/${k}`, v);
      }
    }
  }

  // ---- transport -----------------------------------------------------------------------

  holds(where) {
    if (where === icd.OUTPUT_PORT) return false; // no limit
    if (where === icd.LOAD_PORT) return this.loadPort !== "";
    return this.units.get(where).cartridgeId !== "";
  }

  moveCartridge(cartridgeId, toUnit, taskId) {
    const t = this.transport;
    const known = t.history.find((e) => e.taskId === taskId);
    if (known) return { status: "Good", runId: known.runId };
    const places = [icd.LOAD_PORT, icd.OUTPUT_PORT, ...this.units.keys()];
    if (!icd.isId(cartridgeId) || !icd.isTaskId(taskId) || !places.includes(toUnit)) {
      return bad("BadInvalidArgument", "malformed id or unknown ToUnit");
    }
    const cart = this.cartridges.get(cartridgeId);
    if (!cart || cart.location === icd.OUTPUT_PORT) return bad("BadNoMatch", "not in the shuttle");
    if (t.state !== "Idle") return bad("BadInvalidState", `transport ${t.state}`);
    if (this.holds(toUnit)) return bad("BadInvalidState", `${toUnit} holds a cartridge`);
    const source = this.units.get(cart.location);
    if (source && (source.state === "Running" || source.state === "Held")) {
      return bad("BadInvalidState", `${source.id} is ${source.state}`);
    }
    const move = {
      taskId,
      runId: this.nextRunId("Transport"),
      cartridgeId,
      from: cart.location,
      to: toUnit,
      done: 0,
      total: icd.MOVE_SECONDS,
      onDue: () => this.arrive(move),
    };
    t.history.push(move);
    if (t.history.length > icd.HISTORY) t.history.shift();
    this.move = move;
    this.setTransport("taskId", "TaskId", taskId);
    this.setTransport("state", "State", "Moving");
    this.leave(cart);
    this.recordStart(icd.TRANSPORT, taskId, "move", cartridgeId);
    this.clock.run(move);
    return { status: "Good", runId: move.runId };
  }

  /** The cartridge leaves its place at once (a Complete unit becomes Idle). */
  leave(cart) {
    const from = cart.location;
    cart.location = icd.TRANSPORT;
    if (from === icd.LOAD_PORT) {
      this.set(this, "loadPort", "LoadPort/CartridgeId", "");
      return;
    }
    const u = this.units.get(from);
    this.setUnit(u, "cartridgeId", "CartridgeId", "");
    if (u.state === "Complete") this.setUnit(u, "state", "State", "Idle");
  }

  arrive(move) {
    const cart = this.cartridges.get(move.cartridgeId);
    cart.location = move.to;
    this.move = null;
    this.setLocation(move.to, cart.id);
    this.setTransport("state", "State", "Idle");
  }

  clearTransport() {
    if (this.transport.state !== "Faulted") return bad("BadInvalidState", this.transport.state);
    this.setTransport("faultCode", "FaultCode", 0);
    this.setTransport("faultText", "FaultText", "");
    this.setTransport("state", "State", "Idle");
    return GOOD;
  }

  // ---- twin controls (ICD section 4) ---------------------------------------------------

  insertCartridge(cartridgeId, cells, viabilityPct) {
    if (!icd.isId(cartridgeId) || this.usedCartridgeIds.has(cartridgeId)) {
      return bad("BadInvalidArgument", "malformed or already used id");
    }
    if (!(Number.isFinite(cells) && cells >= 1e3 && cells <= 1e11)) {
      return bad("BadOutOfRange", "Cells outside 1e3..1e11");
    }
    if (!(Number.isFinite(viabilityPct) && viabilityPct >= 0 && viabilityPct <= 100)) {
      return bad("BadOutOfRange", "ViabilityPct outside 0..100");
    }
    if (this.loadPort !== "") return bad("BadInvalidState", "LoadPort taken");
    if (this.move && this.move.from === icd.LOAD_PORT) {
      return bad("BadInvalidState", "LoadPort reserved by a move");
    }
    this.usedCartridgeIds.add(cartridgeId);
    this.cartridges.set(cartridgeId, world.newCartridge(cartridgeId, cells, viabilityPct));
    this.setLocation(icd.LOAD_PORT, cartridgeId);
    return GOOD;
  }

  removeCartridge(cartridgeId) {
    if (!icd.isId(cartridgeId)) return bad("BadInvalidArgument", "malformed id");
    if (!this.outputPort.includes(cartridgeId)) return bad("BadNoMatch", "not at the OutputPort");
    this.cartridges.delete(cartridgeId);
    const rest = this.outputPort.filter((c) => c !== cartridgeId);
    this.set(this, "outputPort", "OutputPort/CartridgeIds", rest);
    return GOOD;
  }

  injectFault(target, code, text) {
    if (target !== icd.TRANSPORT && !this.units.has(target)) {
      return bad("BadInvalidArgument", "unknown unit");
    }
    if (code === 0) return bad("BadInvalidArgument", "FaultCode 0");
    if (target === icd.TRANSPORT) {
      const move = this.move;
      if (move) {
        // the cartridge stays where it was before the move
        this.clock.pause(move);
        this.move = null;
        const cart = this.cartridges.get(move.cartridgeId);
        cart.location = move.from;
        this.setLocation(move.from, cart.id);
      }
      this.setTransport("faultCode", "FaultCode", code);
      this.setTransport("faultText", "FaultText", text);
      this.setTransport("state", "State", "Faulted");
      return GOOD;
    }
    const u = this.units.get(target);
    if (u.active) {
      this.clock.pause(u.active);
      u.active.status = "Faulted";
      u.active = null;
    }
    this.setUnit(u, "faultCode", "FaultCode", code);
    this.setUnit(u, "faultText", "FaultText", text);
    this.setUnit(u, "state", "State", "Faulted");
    return GOOD;
  }

  setTimeScale(scale) {
    if (!(Number.isFinite(scale) && scale >= 0.001 && scale <= 1e7)) {
      return bad("BadOutOfRange", "TimeScale outside 0.001..1e7");
    }
    this.clock.setScale(scale);
    return GOOD;
  }
}

module.exports = { Shuttle, DEFAULT_UNITS, COMMANDS };
