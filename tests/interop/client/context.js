"use strict";
/**
 * What the rules of the third-party check share: the session, fresh ids, the units and
 * their capabilities (discovered, never assumed), and the set-up moves a rule needs
 * (empty a unit, load a fresh cartridge, start a long program), using only ICD section 1
 * and the section 4 twin controls. Waits poll the instrument with a hang guard only.
 */

const { BrowseDirection, NodeClass } = require("node-opcua-client");
const { DataType } = require("./ua");

const S = DataType.String;
const HANG_MS = 30000;
const RUN = `${process.pid % 10000}${Math.floor(Math.random() * 100)}`;
const LONG = ["expansion", { temperature_c: 37, duration_h: 336, feed: "perfusion" }];

class CheckFailed extends Error {}

function expect(cond, message) {
  if (!cond) throw new CheckFailed(message);
}

function eq(actual, expected, what) {
  const a = JSON.stringify(actual);
  const e = JSON.stringify(expected);
  if (a !== e) throw new CheckFailed(`${what}: expected ${e}, got ${a}`);
}

const sleep = (ms) => new Promise((r) => setTimeout(r, ms));

class Context {
  constructor(ua) {
    this.ua = ua;
    this.seq = 0;
    this.units = new Map(); // id -> capabilities
    this.turn = new Map(); // program -> round-robin index
  }

  async discover() {
    const unitsId = await this.ua.node(["Shuttle", "Units"]);
    const res = await this.ua.session.browse({
      nodeId: unitsId,
      browseDirection: BrowseDirection.Forward,
      referenceTypeId: "HierarchicalReferences",
      includeSubtypes: true,
      nodeClassMask: NodeClass.Object,
      resultMask: 63,
    });
    for (const ref of res.references) {
      if (ref.browseName.namespaceIndex !== this.ua.ns) continue;
      const id = ref.browseName.name;
      this.units.set(id, await this.ua.get("Units", id, "Capabilities"));
    }
  }

  // ---- ids -----------------------------------------------------------------------------

  fresh(prefix = "C") {
    this.seq += 1;
    return `${prefix}${RUN}-${this.seq}`;
  }

  task(prefix = "T") {
    this.seq += 1;
    return `${prefix}${RUN}/check/${this.seq}`;
  }

  sampleId() {
    this.seq += 1;
    return `S${RUN}x${this.seq}`.slice(0, 16);
  }

  /** The next unit (round robin) that runs `program`. */
  unitFor(program, skip = []) {
    const capable = [...this.units]
      .filter(([id, caps]) => caps.includes(program) && !skip.includes(id))
      .map(([id]) => id)
      .sort();
    expect(capable.length > 0, `no unit runs ${program}`);
    const i = (this.turn.get(program) || 0) % capable.length;
    this.turn.set(program, i + 1);
    return capable[i];
  }

  // ---- reads ---------------------------------------------------------------------------

  read(unit, name) {
    return this.ua.get("Units", unit, name);
  }

  async snapshot(unit) {
    const names = ["State", "TaskId", "Program", "CartridgeId", "FaultCode", "FaultText"];
    const out = {};
    for (const n of names) out[n] = await this.read(unit, n);
    return out;
  }

  /** Twin/StartedPrograms (ICD 4, 1.1), parsed. */
  async started() {
    return JSON.parse(await this.ua.twinGet("StartedPrograms"));
  }

  /**
   * StartedPrograms where a rule of another subject only uses it as more evidence: null
   * when the instrument lacks it (the StartedPrograms rule reports that on its own).
   */
  async startedIfAny() {
    if (!(await this.ua.exists(["Twin", "StartedPrograms"], this.ua.twinNs))) return null;
    return this.started();
  }

  /** After a failed rule: the time scale back, the transport cleared and Idle. */
  async recover(scale) {
    const ts = await this.ua.node(["Twin", "TimeScale"], this.ua.twinNs);
    await this.ua.write(ts, DataType.Double, scale);
    if ((await this.ua.get("Transport", "State")) === "Faulted") await this.ua.transport("Clear");
    await this.waitTransportIdle();
  }

  async eventually(check, what, limit = HANG_MS) {
    const until = Date.now() + limit;
    let last;
    while (Date.now() < until) {
      last = await check();
      if (last) return last;
      await sleep(5);
    }
    throw new CheckFailed(`hang guard: ${what} not reached (last ${JSON.stringify(last)})`);
  }

  async waitState(unit, ...states) {
    await this.eventually(async () => states.includes(await this.read(unit, "State")), `${unit} in ${states}`);
  }

  async waitTransportIdle() {
    await this.eventually(async () => (await this.ua.get("Transport", "State")) === "Idle", "transport Idle");
  }

  // ---- calls ---------------------------------------------------------------------------

  start(unit, program, params, taskId, cartridgeId) {
    const text = typeof params === "string" ? params : JSON.stringify(params);
    return this.ua.unit(unit, "StartProgram", [
      [S, program],
      [S, text],
      [S, taskId],
      [S, cartridgeId],
    ]);
  }

  command(unit, name, taskId) {
    return this.ua.unit(unit, name, [[S, taskId]]);
  }

  result(unit, taskId) {
    return this.ua.unit(unit, "GetResult", [[S, taskId]]);
  }

  move(cartridgeId, to, taskId) {
    return this.ua.transport("Move", [
      [S, cartridgeId],
      [S, to],
      [S, taskId],
    ]);
  }

  insert(cartridgeId, cells = 2e8, viability = 95) {
    return this.ua.twin("InsertCartridge", [
      [S, cartridgeId],
      [DataType.Double, cells],
      [DataType.Double, viability],
    ]);
  }

  fault(target, code, text) {
    return this.ua.twin("InjectFault", [
      [S, target],
      [DataType.UInt32, code],
      [S, text],
    ]);
  }

  // ---- set-up moves --------------------------------------------------------------------

  async moveAndWait(cartridgeId, to) {
    await this.waitTransportIdle();
    const r = await this.move(cartridgeId, to, this.task("M"));
    eq(r.status, "Good", `set-up move of ${cartridgeId} to ${to}`);
    await this.waitTransportIdle();
  }

  /** Bring `unit` to Idle (or Complete) with no cartridge. */
  async empty(unit) {
    let st = await this.snapshot(unit);
    if (st.State === "Running" || st.State === "Held") {
      await this.command(unit, "Abort", st.TaskId);
      st = await this.snapshot(unit);
    }
    if (st.State === "Aborted" || st.State === "Faulted") await this.ua.unit(unit, "Clear");
    if (st.CartridgeId) {
      await this.moveAndWait(st.CartridgeId, "OutputPort");
      await this.ua.twin("RemoveCartridge", [[S, st.CartridgeId]]);
    }
  }

  /** A fresh cartridge at the LoadPort (one left there by a failed rule goes out first). */
  async insertFresh(cells, viability) {
    const cid = this.fresh();
    await this.waitTransportIdle();
    const left = await this.ua.get("LoadPort", "CartridgeId");
    if (left) {
      await this.moveAndWait(left, "OutputPort");
      await this.ua.twin("RemoveCartridge", [[S, left]]);
    }
    await this.eventually(async () => {
      if ((await this.ua.get("LoadPort", "CartridgeId")) !== "") return false;
      return (await this.insert(cid, cells, viability)).status === "Good";
    }, "LoadPort free for a new cartridge");
    return cid;
  }

  /** `unit` emptied, then holding a fresh cartridge; answers its id. */
  async load(unit) {
    await this.empty(unit);
    const cid = await this.insertFresh();
    await this.moveAndWait(cid, unit);
    await this.eventually(async () => (await this.read(unit, "CartridgeId")) === cid, `${cid} in ${unit}`);
    return cid;
  }

  /** `unit` loaded and running the long expansion; answers { cid, tid, runId }. */
  async startLong(unit) {
    const cid = await this.load(unit);
    const tid = this.task();
    const r = await this.start(unit, ...LONG, tid, cid);
    eq(r.status, "Good", `start of ${LONG[0]} on ${unit}`);
    return { cid, tid, runId: r.outputs[0] };
  }

  /** `unit` loaded and through a complete `sample` program; answers { cid, tid }. */
  async completeSample(unit) {
    const cid = await this.load(unit);
    const tid = this.task();
    const r = await this.start(unit, "sample", { volume_ml: 0.05, sample_id: this.sampleId() }, tid, cid);
    eq(r.status, "Good", `start of sample on ${unit}`);
    await this.waitState(unit, "Complete");
    return { cid, tid };
  }
}

module.exports = { Context, CheckFailed, expect, eq, sleep, LONG, HANG_MS };
