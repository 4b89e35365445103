"use strict";
/**
 * ICD 1.1 section 1 "Hold, Unhold, Stop, Abort", "Results" and "Faults": the TaskId check,
 * repeats that answer Good and change nothing, BadInvalidState elsewhere, Clear not
 * repeatable, GetResult's statuses (Stopped included) with the table's outputs, and faults.
 */

const { expect, eq, sleep } = require("../context");

const OUTPUTS = {
  expansion: ["cells_out", "viability_pct"],
  sample: ["sample_id", "volume_ml"],
  fill_finish: ["bags", "volume_ml", "bag_ids"],
};

async function ok(ctx, unit, name, tid, state) {
  const r = await ctx.command(unit, name, tid);
  eq(r.status, "Good", `${name} on ${unit}`);
  if (state) eq(await ctx.read(unit, "State"), state, `State after ${name}`);
}

async function refusedCommand(ctx, unit, name, tid, want) {
  const before = await ctx.snapshot(unit);
  const r = name === "Clear" ? await ctx.ua.unit(unit, "Clear") : await ctx.command(unit, name, tid);
  eq(r.status, want, `${name} in ${before.State}`);
  eq(await ctx.snapshot(unit), before, `${name} refused in ${before.State} changed the unit`);
}

async function result(ctx, unit, tid) {
  const r = await ctx.result(unit, tid);
  eq(r.status, "Good", `GetResult ${tid}`);
  return { status: r.outputs[0], outputs: JSON.parse(r.outputs[1]) };
}

function checkOutputs(program, outputs, what) {
  eq(Object.keys(outputs).sort(), [...OUTPUTS[program]].sort(), `${what} output keys`);
  for (const [k, v] of Object.entries(outputs)) {
    if (k === "sample_id") expect(typeof v === "string", `${what} ${k} is not a string`);
    else if (k === "bag_ids") expect(Array.isArray(v) && v.every((x) => typeof x === "string"), `${what} bag_ids`);
    else expect(typeof v === "number" && Number.isFinite(v), `${what} ${k} is not a number: ${v}`);
  }
}

module.exports = [
  {
    section: "1 Hold, Unhold, Stop, Abort",
    text: "a TaskId that is not the unit's is BadInvalidArgument for each command; nothing changes",
    async run(ctx) {
      const unit = ctx.unitFor("expansion");
      const { tid } = await ctx.startLong(unit);
      for (const name of ["Hold", "Unhold", "Stop", "Abort"]) {
        await refusedCommand(ctx, unit, name, ctx.task("other"), "BadInvalidArgument");
        await refusedCommand(ctx, unit, name, "bad task id", "BadInvalidArgument");
      }
      await ok(ctx, unit, "Abort", tid, "Aborted");
    },
  },
  {
    section: "1 Hold, Unhold, Stop, Abort",
    text: "Hold/Unhold: Running <-> Held, repeats answer Good and change nothing; Held stops the clock",
    async run(ctx) {
      const unit = ctx.unitFor("expansion");
      const { tid } = await ctx.startLong(unit);
      await ok(ctx, unit, "Unhold", tid, "Running"); // target reached: Good
      await ok(ctx, unit, "Hold", tid, "Held");
      await ok(ctx, unit, "Hold", tid, "Held");
      eq((await result(ctx, unit, tid)).status, "Held", "GetResult while Held");
      const r1 = await ctx.read(unit, "RemainingSeconds");
      await sleep(300); // ~1000 process seconds at the check's time scale
      const r2 = await ctx.read(unit, "RemainingSeconds");
      eq(r2, r1, "RemainingSeconds while Held (the process clock stops)");
      await ok(ctx, unit, "Unhold", tid, "Running");
      await ok(ctx, unit, "Unhold", tid, "Running");
      eq((await result(ctx, unit, tid)).status, "Running", "GetResult while Running");
      await ok(ctx, unit, "Abort", tid, "Aborted");
    },
  },
  {
    section: "1 Hold, Unhold, Stop, Abort (1.1 Results)",
    text: "Stop: Running|Held -> Complete, GetResult Stopped with the table's outputs; Stop again Good",
    async run(ctx) {
      for (const hold of [false, true]) {
        const unit = ctx.unitFor("expansion");
        const { tid } = await ctx.startLong(unit);
        if (hold) await ok(ctx, unit, "Hold", tid, "Held");
        await ok(ctx, unit, "Stop", tid, "Complete");
        const res = await result(ctx, unit, tid);
        eq(res.status, "Stopped", `GetResult after Stop${hold ? " from Held" : ""}`);
        checkOutputs("expansion", res.outputs, "Stopped expansion");
        await ok(ctx, unit, "Stop", tid, "Complete");
        eq((await result(ctx, unit, tid)).status, "Stopped", "GetResult after a repeated Stop");
        await refusedCommand(ctx, unit, "Hold", tid, "BadInvalidState");
        await refusedCommand(ctx, unit, "Unhold", tid, "BadInvalidState");
        await refusedCommand(ctx, unit, "Abort", tid, "BadInvalidState");
        await refusedCommand(ctx, unit, "Clear", tid, "BadInvalidState");
      }
    },
  },
  {
    section: "1 Hold, Unhold, Stop, Abort",
    text: "Abort: Running|Held -> Aborted, repeat Good; Hold/Unhold/Stop there BadInvalidState; GetResult Aborted {}",
    async run(ctx) {
      for (const hold of [false, true]) {
        const unit = ctx.unitFor("expansion");
        const { tid } = await ctx.startLong(unit);
        if (hold) await ok(ctx, unit, "Hold", tid, "Held");
        await ok(ctx, unit, "Abort", tid, "Aborted");
        await ok(ctx, unit, "Abort", tid, "Aborted");
        for (const name of ["Hold", "Unhold", "Stop"]) {
          await refusedCommand(ctx, unit, name, tid, "BadInvalidState");
        }
        const res = await result(ctx, unit, tid);
        eq([res.status, res.outputs], ["Aborted", {}], "GetResult after Abort");
      }
    },
  },
  {
    section: "1 Hold, Unhold, Stop, Abort (1.1)",
    text: "Clear: Aborted|Faulted -> Idle keeping the cartridge; a second Clear is BadInvalidState",
    async run(ctx) {
      const unit = ctx.unitFor("expansion");
      const { cid, tid } = await ctx.startLong(unit);
      await refusedCommand(ctx, unit, "Clear", tid, "BadInvalidState"); // Running
      await ok(ctx, unit, "Abort", tid, "Aborted");
      eq((await ctx.ua.unit(unit, "Clear")).status, "Good", "Clear from Aborted");
      eq(await ctx.read(unit, "State"), "Idle", "State after Clear");
      eq(await ctx.read(unit, "CartridgeId"), cid, "cartridge kept by Clear");
      await refusedCommand(ctx, unit, "Clear", tid, "BadInvalidState"); // Idle: not repeatable
      await refusedCommand(ctx, unit, "Hold", tid, "BadInvalidState"); // Idle, last TaskId
      await refusedCommand(ctx, unit, "Stop", tid, "BadInvalidState");
      await refusedCommand(ctx, unit, "Abort", tid, "BadInvalidState");
    },
  },
  {
    section: "1 Results",
    text: "GetResult: Unknown {} for a TaskId not in the history; BadInvalidArgument for a malformed one",
    async run(ctx) {
      for (const unit of ctx.units.keys()) {
        const r = await ctx.result(unit, ctx.task("never"));
        eq([r.status, r.outputs], ["Good", ["Unknown", "{}"]], `GetResult of an unknown TaskId on ${unit}`);
      }
      const unit = [...ctx.units.keys()][0];
      eq((await ctx.result(unit, "bad task id")).status, "BadInvalidArgument", "malformed TaskId");
      eq((await ctx.result(unit, "")).status, "BadInvalidArgument", "empty TaskId");
    },
  },
  {
    section: "1 Results",
    text: "GetResult answers from the unit's own history: another unit's TaskId is Unknown there",
    async run(ctx) {
      const unit = ctx.unitFor("expansion");
      const other = ctx.unitFor("expansion", [unit]);
      const { tid } = await ctx.startLong(unit);
      eq((await result(ctx, unit, tid)).status, "Running", "GetResult on the unit");
      eq((await result(ctx, other, tid)).status, "Unknown", "GetResult on another unit");
      await ctx.command(unit, "Abort", tid);
    },
  },
  {
    section: "1 Results",
    text: "a program that ran to the end: Complete with the table's outputs (sample_id echoed)",
    async run(ctx) {
      const unit = ctx.unitFor("sample");
      const cid = await ctx.load(unit);
      const tid = ctx.task();
      const sid = ctx.sampleId();
      eq((await ctx.start(unit, "sample", { volume_ml: 0.5, sample_id: sid }, tid, cid)).status, "Good", "start");
      await ctx.waitState(unit, "Complete");
      const res = await result(ctx, unit, tid);
      eq(res.status, "Complete", "GetResult after a full run");
      checkOutputs("sample", res.outputs, "sample");
      eq(res.outputs.sample_id, sid, "sample_id output");
      eq(await ctx.read(unit, "Progress"), 1, "Progress after a full run");
    },
  },
  {
    section: "1 Results",
    text: "fill_finish Complete: bags, volume_ml (total) numbers, bag_ids an array of strings",
    async run(ctx) {
      const unit = ctx.unitFor("fill_finish");
      const cid = await ctx.load(unit);
      const tid = ctx.task();
      const params = { bags: 2, volume_ml_per_bag: 10 };
      eq((await ctx.start(unit, "fill_finish", params, tid, cid)).status, "Good", "start fill_finish");
      await ctx.waitState(unit, "Complete");
      const res = await result(ctx, unit, tid);
      eq(res.status, "Complete", "GetResult fill_finish");
      checkOutputs("fill_finish", res.outputs, "fill_finish");
      eq(res.outputs.bag_ids.length, res.outputs.bags, "one bag id per bag");
    },
  },
  {
    section: "1 Faults",
    text: "a fault during a program: Faulted with FaultCode/FaultText, Status Faulted {}, cartridge kept; Clear -> Idle, FaultCode 0",
    async run(ctx) {
      const unit = ctx.unitFor("expansion");
      const { cid, tid } = await ctx.startLong(unit);
      eq((await ctx.fault(unit, 42, "door open")).status, "Good", "InjectFault");
      const st = await ctx.snapshot(unit);
      eq([st.State, st.FaultCode, st.FaultText, st.CartridgeId], ["Faulted", 42, "door open", cid], "unit after the fault");
      const res = await result(ctx, unit, tid);
      eq([res.status, res.outputs], ["Faulted", {}], "GetResult of the faulted program");
      await refusedCommand(ctx, unit, "Stop", tid, "BadInvalidState");
      await refusedCommand(ctx, unit, "Hold", tid, "BadInvalidState");
      eq((await ctx.ua.unit(unit, "Clear")).status, "Good", "Clear from Faulted");
      const after = await ctx.snapshot(unit);
      eq([after.State, after.FaultCode, after.FaultText, after.CartridgeId], ["Idle", 0, "", cid], "unit after Clear");
      eq((await result(ctx, unit, tid)).status, "Faulted", "the program stays Faulted after Clear");
    },
  },
];
