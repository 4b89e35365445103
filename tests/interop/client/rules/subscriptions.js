"use strict";
/**
 * ICD 1.1 section 1 "Subscriptions" and the ordered start writes: to a monitored item with
 * sampling interval 0 and queue size >= 10, every change of the listed identity and state
 * variables arrives, none merged; a start's TaskId and Program arrive in the same or an
 * earlier publish than its State (the transport's TaskId before its State on a Move), each
 * with a SourceTimestamp.
 */

const { DataType } = require("../ua");
const { expect, eq, LONG } = require("../context");

async function unitItems(ctx, unit, names) {
  const items = {};
  for (const n of names) items[n] = await ctx.ua.node(["Shuttle", "Units", unit, n]);
  return items;
}

/** The values of `name` after the initial notification (the value when the item was made). */
function changesAfterFirst(watch, name) {
  return watch.values(name).slice(1);
}

/** Index of the publish of the first change of `name` satisfying pred, after the initial one. */
function publishOf(watch, name, pred) {
  const c = watch.changes(name).slice(1).find((x) => pred(x.value));
  return c ? c : null;
}

module.exports = [
  {
    section: "1 Subscriptions (1.1)",
    text: "rapid State transitions (start, 5x Hold/Unhold, Abort, Clear) all delivered, in order, none merged",
    async run(ctx) {
      const unit = ctx.unitFor("expansion");
      const cid = await ctx.load(unit);
      const w = await ctx.ua.watch(await unitItems(ctx, unit, ["State"]), { queueSize: 50 });
      await w.ready();
      const tid = ctx.task();
      eq((await ctx.start(unit, ...LONG, tid, cid)).status, "Good", "start");
      for (let i = 0; i < 5; i++) {
        await ctx.command(unit, "Hold", tid);
        await ctx.command(unit, "Unhold", tid);
      }
      await ctx.command(unit, "Abort", tid);
      await ctx.ua.unit(unit, "Clear");
      const want = ["Running", ...Array(5).fill(["Held", "Running"]).flat(), "Aborted", "Idle"];
      await w.until(() => changesAfterFirst(w, "State").length >= want.length, "every State change");
      eq(changesAfterFirst(w, "State"), want, "State changes seen");
      const overflow = w.changes("State").filter((c) => c.status && c.status.hasOverflowBit);
      eq(overflow.length, 0, "overflow bits");
      await w.close();
    },
  },
  {
    section: "1 StartProgram (1.1)",
    text: "start writes: TaskId and Program in the same or an earlier publish than State Running, each with a SourceTimestamp",
    async run(ctx) {
      for (let round = 0; round < 3; round++) {
        const unit = ctx.unitFor("expansion");
        const cid = await ctx.load(unit);
        const w = await ctx.ua.watch(await unitItems(ctx, unit, ["TaskId", "Program", "State"]));
        await w.ready();
        const program = round === 1 ? "sample" : "expansion";
        const params = round === 1 ? { volume_ml: 0.05, sample_id: ctx.sampleId() } : LONG[1];
        const tid = ctx.task();
        eq((await ctx.start(unit, program, params, tid, cid)).status, "Good", "start");
        await w.until(() => publishOf(w, "State", (v) => v === "Running"), "State Running");
        const running = publishOf(w, "State", (v) => v === "Running");
        const task = publishOf(w, "TaskId", (v) => v === tid);
        expect(task, "no TaskId change for the start");
        expect(task.publish <= running.publish, `TaskId in publish ${task.publish}, State in ${running.publish}`);
        const prog = publishOf(w, "Program", (v) => v === program);
        const before = w.values("Program")[0];
        if (before !== program) {
          expect(prog, "no Program change for the start");
          expect(prog.publish <= running.publish, `Program in publish ${prog.publish}, State in ${running.publish}`);
        }
        for (const c of [running, task, prog].filter(Boolean)) {
          expect(c.source instanceof Date && !Number.isNaN(c.source.getTime()), `${c.name} without SourceTimestamp`);
        }
        await ctx.command(unit, "Abort", tid);
        await w.close();
      }
    },
  },
  {
    section: "1 Moves (1.1)",
    text: "a Move's transport TaskId arrives in the same or an earlier publish than State Moving, with SourceTimestamps",
    async run(ctx) {
      await ctx.waitTransportIdle();
      const cid = await ctx.insertFresh();
      const items = {};
      for (const n of ["TaskId", "State"]) items[n] = await ctx.ua.node(["Shuttle", "Transport", n]);
      const w = await ctx.ua.watch(items);
      await w.ready();
      const mtid = ctx.task("M");
      eq((await ctx.move(cid, "OutputPort", mtid)).status, "Good", "Move");
      await w.until(() => publishOf(w, "State", (v) => v === "Idle"), "Moving then Idle");
      const moving = publishOf(w, "State", (v) => v === "Moving");
      const task = publishOf(w, "TaskId", (v) => v === mtid);
      expect(moving && task, `changes ${JSON.stringify(w.summary())}`);
      expect(task.publish <= moving.publish, `TaskId in publish ${task.publish}, Moving in ${moving.publish}`);
      for (const c of [moving, task]) expect(c.source instanceof Date, `${c.name} without SourceTimestamp`);
      eq(changesAfterFirst(w, "State"), ["Moving", "Idle"], "transport State changes");
      await w.close();
      await ctx.ua.twin("RemoveCartridge", [[DataType.String, cid]]);
    },
  },
  {
    section: "1 Subscriptions (1.1)",
    text: "every change of FaultCode, FaultText, CartridgeId, LoadPort, OutputPort and transport variables is delivered",
    async run(ctx) {
      const unit = ctx.unitFor("expansion");
      await ctx.empty(unit);
      await ctx.waitTransportIdle();
      const items = await unitItems(ctx, unit, ["FaultCode", "FaultText", "CartridgeId", "State"]);
      items.LoadPort = await ctx.ua.node(["Shuttle", "LoadPort", "CartridgeId"]);
      items.OutputPort = await ctx.ua.node(["Shuttle", "OutputPort", "CartridgeIds"]);
      for (const n of ["State", "FaultCode", "FaultText"]) {
        items[`T.${n}`] = await ctx.ua.node(["Shuttle", "Transport", n]);
      }
      const w = await ctx.ua.watch(items, { queueSize: 20 });
      await w.ready();
      // a fault raised and cleared at once: both changes of each variable
      await ctx.fault(unit, 7, "first");
      await ctx.ua.unit(unit, "Clear");
      await ctx.fault(unit, 8, "second");
      await ctx.ua.unit(unit, "Clear");
      await ctx.fault("Transport", 9, "t-fault");
      await ctx.ua.transport("Clear");
      // a cartridge through the LoadPort, into the unit, out to the OutputPort
      const cid = await ctx.insertFresh();
      await ctx.moveAndWait(cid, unit);
      await ctx.moveAndWait(cid, "OutputPort");
      await w.until(() => changesAfterFirst(w, "OutputPort").length >= 1, "OutputPort change");
      await w.until(() => changesAfterFirst(w, "T.State").length >= 6, "transport State changes");
      eq(changesAfterFirst(w, "FaultCode"), [7, 0, 8, 0], "unit FaultCode changes");
      eq(changesAfterFirst(w, "FaultText"), ["first", "", "second", ""], "unit FaultText changes");
      eq(changesAfterFirst(w, "State"), ["Faulted", "Idle", "Faulted", "Idle"], "unit State changes");
      eq(changesAfterFirst(w, "T.FaultCode"), [9, 0], "transport FaultCode changes");
      eq(changesAfterFirst(w, "T.FaultText"), ["t-fault", ""], "transport FaultText changes");
      eq(changesAfterFirst(w, "T.State"), ["Faulted", "Idle", "Moving", "Idle", "Moving", "Idle"], "transport State");
      eq(changesAfterFirst(w, "LoadPort"), [cid, ""], "LoadPort changes");
      eq(changesAfterFirst(w, "CartridgeId"), [cid, ""], "unit CartridgeId changes");
      const out = changesAfterFirst(w, "OutputPort").map((v) => Array.from(v));
      expect(out.length === 1 && out[0].at(-1) === cid, `OutputPort changes ${JSON.stringify(out)}`);
      await w.close();
      await ctx.ua.twin("RemoveCartridge", [[DataType.String, cid]]);
    },
  },
];
