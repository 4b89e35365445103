"use strict";
/**
 * ICD 1.1 section 1 "StartProgram" and "Programs": the check order (each refusal's status
 * code, the first failing check wins), a refused call changes nothing, the parameter rules
 * of the program table, idempotency per unit over the last 64 programs, and SampleIds
 * unique per shuttle.
 */

const { expect, eq, LONG } = require("../context");

const EXP = { temperature_c: 37, duration_h: 336, feed: "batch" };

/** Call StartProgram; the answer must be `want` and the unit and StartedPrograms unchanged. */
async function refused(ctx, unit, args, want, what) {
  const before = await ctx.snapshot(unit);
  const startedBefore = await ctx.startedIfAny();
  const r = await ctx.start(unit, ...args);
  eq(r.status, want, what);
  eq(await ctx.snapshot(unit), before, `${what}: unit changed by a refused call`);
  if (startedBefore) eq((await ctx.started()).length, startedBefore.length, `${what}: StartedPrograms grew`);
}

module.exports = [
  {
    section: "1 StartProgram",
    text: "check order 2..6: each refusal's status code, the first failing check wins, nothing changes",
    async run(ctx) {
      const busy = ctx.unitFor("expansion");
      const { cid, tid } = await ctx.startLong(busy); // Running: check 6 fails
      const empty = ctx.unitFor("expansion", [busy]);
      await ctx.empty(empty); // no cartridge: check 5 fails
      const unsupported = ["cell_selection", "fill_finish", "electroporation", "harvest_wash"].find(
        (p) => !ctx.units.get(busy).includes(p),
      );
      const other = ctx.fresh("W");
      // 2 before 3..6: malformed TaskId, CartridgeId or Program
      await refused(ctx, busy, [unsupported, "[]", "bad task id", other], "BadInvalidArgument", "malformed TaskId");
      await refused(ctx, busy, [unsupported, "[]", ctx.task(), "bad id!"], "BadInvalidArgument", "malformed CartridgeId");
      await refused(ctx, busy, ["no such program", "[]", ctx.task(), other], "BadInvalidArgument", "malformed Program");
      await refused(ctx, busy, ["x".repeat(33), "{}", ctx.task(), cid], "BadInvalidArgument", "Program of 33 chars");
      await refused(ctx, busy, [LONG[0], "{}", `${"t".repeat(65)}`, cid], "BadInvalidArgument", "TaskId of 65 chars");
      // 3 before 4..6
      await refused(ctx, busy, [unsupported, "[]", ctx.task(), other], "BadNotSupported", "program not in Capabilities");
      await refused(ctx, busy, ["well_formed_unknown", "{}", ctx.task(), cid], "BadNotSupported", "unknown program");
      // 4 before 5..6
      await refused(ctx, busy, [LONG[0], "{}", ctx.task(), other], "BadInvalidArgument", "bad Parameters on a busy unit");
      await refused(ctx, empty, [LONG[0], "{}", ctx.task(), other], "BadInvalidArgument", "bad Parameters on an empty unit");
      // 5 before 6
      await refused(ctx, busy, [LONG[0], EXP, ctx.task(), other], "BadNoMatch", "another cartridge than the bay's");
      await refused(ctx, empty, [LONG[0], EXP, ctx.task(), other], "BadNoMatch", "a bay without a cartridge");
      // 6
      await refused(ctx, busy, [LONG[0], EXP, ctx.task(), cid], "BadInvalidState", "unit Running");
      eq((await ctx.command(busy, "Hold", tid)).status, "Good", "Hold");
      await refused(ctx, busy, [LONG[0], EXP, ctx.task(), cid], "BadInvalidState", "unit Held");
      eq((await ctx.command(busy, "Abort", tid)).status, "Good", "Abort");
      await refused(ctx, busy, [LONG[0], EXP, ctx.task(), cid], "BadInvalidState", "unit Aborted");
      eq((await ctx.fault(busy, 17, "door open")).status, "Good", "InjectFault");
      await refused(ctx, busy, [LONG[0], EXP, ctx.task(), cid], "BadInvalidState", "unit Faulted");
      await ctx.ua.unit(busy, "Clear");
    },
  },
  {
    section: "1 Programs",
    text: "Parameters: JSON object, every parameter required, none extra, types and ranges (BadInvalidArgument)",
    async run(ctx) {
      const unit = ctx.unitFor("expansion");
      const cid = await ctx.load(unit);
      const bad = [
        ["not JSON", "nope"],
        ["a JSON array", "[]"],
        ["JSON null", "null"],
        ["a JSON string", '"x"'],
        ["missing feed", { temperature_c: 37, duration_h: 2 }],
        ["an extra key", { ...EXP, duration_h: 2, extra: 1 }],
        ["temperature below 30", { ...EXP, temperature_c: 29.99 }],
        ["temperature above 40", { ...EXP, temperature_c: 40.01 }],
        ["duration_h 0", { ...EXP, duration_h: 0 }],
        ["duration_h above 336", { ...EXP, duration_h: 337 }],
        ["a number as a string", { ...EXP, temperature_c: "37" }],
        ["a boolean as a number", { ...EXP, duration_h: true }],
        ["null as a number", { ...EXP, duration_h: null }],
        ["enum not listed", { ...EXP, feed: "fed-batch" }],
        ["enum of another case", { ...EXP, feed: "Batch" }],
        ["a huge number", '{"temperature_c": 1e400, "duration_h": 2, "feed": "batch"}'],
      ];
      for (const [what, params] of bad) {
        await refused(ctx, unit, [LONG[0], params, ctx.task(), cid], "BadInvalidArgument", what);
      }
      const moreBad = [
        ["activation", { reagent: "bad reagent!", duration_h: 2 }, "str parameter not an identifier"],
        ["activation", { reagent: "r".repeat(33), duration_h: 2 }, "str parameter of 33 chars"],
        ["activation", { reagent: 5, duration_h: 2 }, "str parameter as a number"],
        ["transduction", { vector: "LV1", moi: 0.09 }, "moi below 0.1"],
        ["sample", { volume_ml: 0.04, sample_id: ctx.sampleId() }, "volume_ml below 0.05"],
        ["sample", { volume_ml: 1, sample_id: "s".repeat(17) }, "sample_id of 17 chars"],
      ];
      for (const [program, params, what] of moreBad) {
        await refused(ctx, unit, [program, params, ctx.task(), cid], "BadInvalidArgument", what);
      }
      // boundaries are in range (ranges read as inclusive)
      const tid = ctx.task();
      const ok = await ctx.start(unit, "expansion", { temperature_c: 40, duration_h: 336, feed: "batch" }, tid, cid);
      eq(ok.status, "Good", "expansion at temperature_c 40, duration_h 336 (the range's ends)");
      await ctx.command(unit, "Abort", tid);
    },
  },
  {
    section: "1 Programs",
    text: "int parameters: 2 and 2.0 accepted, 2.5 refused (electroporation pulses)",
    async run(ctx) {
      const unit = ctx.unitFor("electroporation");
      const cid = await ctx.load(unit);
      const text = (pulses) => `{"payload": "mRNA1", "voltage_v": 500, "pulses": ${pulses}}`;
      await refused(ctx, unit, ["electroporation", text("2.5"), ctx.task(), cid], "BadInvalidArgument", "pulses 2.5");
      await refused(ctx, unit, ["electroporation", text("6"), ctx.task(), cid], "BadInvalidArgument", "pulses 6");
      await refused(ctx, unit, ["electroporation", text("0"), ctx.task(), cid], "BadInvalidArgument", "pulses 0");
      for (const pulses of ["2.0", "2"]) {
        const tid = ctx.task();
        const r = await ctx.start(unit, "electroporation", text(pulses), tid, cid);
        eq(r.status, "Good", `pulses ${pulses}`);
        eq((await ctx.command(unit, "Abort", tid)).status, "Good", "Abort");
        eq((await ctx.ua.unit(unit, "Clear")).status, "Good", "Clear");
      }
    },
  },
  {
    section: "1 StartProgram",
    text: "idempotency (check 1): a known TaskId returns its RunId whatever the other arguments, starts nothing",
    async run(ctx) {
      const unit = ctx.unitFor("expansion");
      const { cid, tid, runId } = await ctx.startLong(unit);
      expect(typeof runId === "string" && runId.length > 0 && runId.length <= 64, `RunId ${runId}`);
      const same = await ctx.start(unit, ...LONG, tid, cid);
      eq([same.status, same.outputs[0]], ["Good", runId], "repeat with the same arguments");
      const odd = await ctx.start(unit, "no such program", "not json", tid, "bad id!");
      eq([odd.status, odd.outputs[0]], ["Good", runId], "repeat with malformed other arguments");
      eq((await ctx.command(unit, "Abort", tid)).status, "Good", "Abort");
      const after = await ctx.start(unit, ...LONG, tid, cid);
      eq([after.status, after.outputs[0]], ["Good", runId], "repeat after Abort (still in the history)");
      eq(await ctx.read(unit, "State"), "Aborted", "the repeat after Abort started nothing");
      const started = await ctx.startedIfAny();
      if (started) eq(started.filter((e) => e.task_id === tid).length, 1, "StartedPrograms entries for the TaskId");
    },
  },
  {
    section: "1 StartProgram (1.1)",
    text: "idempotency is per unit: the same TaskId on another unit is a new program there",
    async run(ctx) {
      const a = ctx.unitFor("expansion");
      const b = ctx.unitFor("expansion", [a]);
      const { tid, runId } = await ctx.startLong(a);
      const cidB = await ctx.load(b);
      const r = await ctx.start(b, ...LONG, tid, cidB);
      eq(r.status, "Good", "the TaskId re-sent to another unit");
      expect(r.outputs[0] !== runId, `same RunId ${runId} on two units`);
      eq(await ctx.read(b, "State"), "Running", `${b} State`);
      const started = await ctx.startedIfAny();
      if (started) {
        const units = started.filter((e) => e.task_id === tid).map((e) => e.unit);
        eq(units.sort(), [a, b].sort(), "StartedPrograms units for the TaskId");
      }
      await ctx.command(a, "Abort", tid);
      await ctx.command(b, "Abort", tid);
    },
  },
  {
    section: "1 StartProgram",
    text: "the history is the unit's last 64 programs: the 65th-newest TaskId is forgotten",
    async run(ctx) {
      const unit = ctx.unitFor("sample");
      const cid = await ctx.load(unit);
      const tids = [];
      for (let i = 0; i < 65; i++) {
        const tid = ctx.task("H");
        const r = await ctx.start(unit, "sample", { volume_ml: 0.05, sample_id: ctx.sampleId() }, tid, cid);
        eq(r.status, "Good", `start ${i + 1} of 65`);
        eq((await ctx.command(unit, "Stop", tid)).status, "Good", `Stop ${i + 1}`);
        tids.push([tid, r.outputs[0]]);
      }
      const oldest = await ctx.result(unit, tids[0][0]);
      eq(oldest.outputs[0], "Unknown", "GetResult of the 65th-newest program");
      const kept = await ctx.result(unit, tids[1][0]);
      expect(kept.outputs[0] !== "Unknown", "the 64th-newest program is still in the history");
      const again = await ctx.start(unit, "sample", { volume_ml: 0.05, sample_id: ctx.sampleId() }, tids[0][0], cid);
      eq(again.status, "Good", "re-send of the forgotten TaskId");
      expect(again.outputs[0] !== tids[0][1], "a forgotten TaskId returned its old RunId");
      await ctx.command(unit, "Stop", tids[0][0]);
    },
  },
  {
    section: "1 Programs (1.1)",
    text: "a sample_id used before on this shuttle (any outcome, active included) is BadInvalidArgument (check 4)",
    async run(ctx) {
      const a = ctx.unitFor("sample");
      const b = ctx.unitFor("sample", [a]);
      const cidA = await ctx.load(a);
      const sid = ctx.sampleId();
      const tid = ctx.task();
      eq((await ctx.start(a, "sample", { volume_ml: 0.05, sample_id: sid }, tid, cidA)).status, "Good", "first use");
      eq((await ctx.command(a, "Hold", tid)).status, "Good", "Hold the first sample");
      const cidB = await ctx.load(b);
      const params = { volume_ml: 0.05, sample_id: sid };
      await refused(ctx, b, ["sample", params, ctx.task(), cidB], "BadInvalidArgument", "re-use while active on another unit");
      await refused(ctx, a, ["sample", params, ctx.task(), "Nobody"], "BadInvalidArgument", "re-use before check 5");
      eq((await ctx.command(a, "Abort", tid)).status, "Good", "Abort the first sample");
      await refused(ctx, b, ["sample", params, ctx.task(), cidB], "BadInvalidArgument", "re-use after an Abort");
      const fresh = await ctx.start(b, "sample", { volume_ml: 0.05, sample_id: ctx.sampleId() }, ctx.task(), cidB);
      eq(fresh.status, "Good", "a fresh sample_id");
    },
  },
  {
    section: "1 StartProgram",
    text: "a start is allowed on a Complete unit holding the cartridge; TaskId and Program follow",
    async run(ctx) {
      const unit = ctx.unitFor("expansion");
      const { cid } = await ctx.completeSample(unit);
      eq(await ctx.read(unit, "State"), "Complete", "State after the sample");
      const tid = ctx.task();
      const r = await ctx.start(unit, ...LONG, tid, cid);
      eq(r.status, "Good", "start on a Complete unit");
      eq([await ctx.read(unit, "TaskId"), await ctx.read(unit, "Program")], [tid, "expansion"], "TaskId, Program");
      await ctx.command(unit, "Abort", tid);
    },
  },
];
