"use strict";
/**
 * ICD 1.1 section 1 "Moves": idempotency by the transport's TaskIds, the refusals in the
 * order written, a move's 60 s (the cartridge in no bay meanwhile), a Complete unit going
 * Idle when its cartridge leaves, the OutputPort, transport faults and Transport.Clear.
 * Slow moves are made by writing the twin's TimeScale (ICD section 4) down for a while.
 */

const { DataType } = require("../ua");
const { expect, eq } = require("../context");

const FAST = 3600;

async function setScale(ctx, scale) {
  const node = await ctx.ua.node(["Twin", "TimeScale"], ctx.ua.twinNs);
  eq(await ctx.ua.write(node, DataType.Double, scale), "Good", `write TimeScale ${scale}`);
}

async function transport(ctx) {
  const names = ["State", "TaskId", "FaultCode", "FaultText"];
  const out = {};
  for (const n of names) out[n] = await ctx.ua.get("Transport", n);
  return out;
}

async function refusedMove(ctx, args, want, what) {
  const before = await transport(ctx);
  const startedBefore = await ctx.startedIfAny();
  const r = await ctx.move(...args);
  eq(r.status, want, what);
  eq(await transport(ctx), before, `${what}: transport changed`);
  if (startedBefore) eq((await ctx.started()).length, startedBefore.length, `${what}: StartedPrograms grew`);
}

module.exports = [
  {
    section: "1 Moves",
    text: "refusals: BadInvalidArgument (malformed id, unknown ToUnit), BadNoMatch (no such cartridge), in that order",
    async run(ctx) {
      await ctx.waitTransportIdle();
      const unit = ctx.unitFor("expansion");
      await ctx.empty(unit);
      const ghost = ctx.fresh("GHOST");
      await refusedMove(ctx, ["bad id!", unit, ctx.task("M")], "BadInvalidArgument", "malformed CartridgeId");
      await refusedMove(ctx, [ghost, unit, "bad task"], "BadInvalidArgument", "malformed TaskId");
      await refusedMove(ctx, [ghost, "NOWHERE", ctx.task("M")], "BadInvalidArgument", "unknown ToUnit");
      await refusedMove(ctx, [ghost, "Transport", ctx.task("M")], "BadInvalidArgument", "ToUnit Transport");
      await refusedMove(ctx, [ghost, unit, ctx.task("M")], "BadNoMatch", "no such cartridge");
    },
  },
  {
    section: "1 Moves",
    text: "BadInvalidState: destination holds a cartridge, source unit Running or Held",
    async run(ctx) {
      const a = ctx.unitFor("expansion");
      const b = ctx.unitFor("expansion", [a]);
      const { cid, tid } = await ctx.startLong(a);
      const other = await ctx.load(b);
      await ctx.waitTransportIdle();
      await refusedMove(ctx, [cid, "OutputPort", ctx.task("M")], "BadInvalidState", "source unit Running");
      await ctx.command(a, "Hold", tid);
      await refusedMove(ctx, [cid, "OutputPort", ctx.task("M")], "BadInvalidState", "source unit Held");
      await ctx.command(a, "Abort", tid);
      await refusedMove(ctx, [other, a, ctx.task("M")], "BadInvalidState", "destination unit holds a cartridge");
      await refusedMove(ctx, [other, b, ctx.task("M")], "BadInvalidState", "destination is where it is");
      // an Aborted unit may let its cartridge go
      await ctx.moveAndWait(cid, "OutputPort");
      eq(await ctx.read(a, "CartridgeId"), "", "Aborted unit after its cartridge left");
      eq(await ctx.read(a, "State"), "Aborted", "an Aborted unit stays Aborted when emptied");
      await ctx.ua.unit(a, "Clear");
      await ctx.ua.twin("RemoveCartridge", [[DataType.String, cid]]);
    },
  },
  {
    section: "1 Moves",
    text: "a move: TaskId then Moving, source empty at once, destination on arrival; idempotent; transport busy is BadInvalidState",
    async run(ctx) {
      const a = ctx.unitFor("expansion");
      const b = ctx.unitFor("expansion", [a]);
      const cid = await ctx.load(a);
      await ctx.empty(b);
      await ctx.waitTransportIdle();
      const second = await ctx.insertFresh();
      await setScale(ctx, 1); // a 60 s move takes 60 wall seconds now
      try {
        const mtid = ctx.task("M");
        const r = await ctx.move(cid, b, mtid);
        eq(r.status, "Good", "Move");
        const t = await transport(ctx);
        eq([t.State, t.TaskId], ["Moving", mtid], "transport during the move");
        eq(await ctx.read(a, "CartridgeId"), "", "source during the move");
        eq(await ctx.read(b, "CartridgeId"), "", "destination during the move");
        const again = await ctx.move(cid, b, mtid);
        eq([again.status, again.outputs[0]], ["Good", r.outputs[0]], "repeat of the Move (same RunId)");
        const other = await ctx.move(second, a, ctx.task("M"));
        eq(other.status, "BadInvalidState", "a second move while Moving");
        const bogus = await ctx.move(ctx.fresh("GHOST"), a, ctx.task("M"));
        eq(bogus.status, "BadNoMatch", "no such cartridge while Moving (BadNoMatch before BadInvalidState)");
        const started = await ctx.startedIfAny();
        if (started) {
          const moves = started.filter((e) => e.task_id === mtid);
          eq(moves.length, 1, "StartedPrograms entries of the move");
          const entry = [moves[0].unit, moves[0].program, moves[0].cartridge_id];
          eq(entry, ["Transport", "move", cid], "StartedPrograms move entry");
        }
      } finally {
        await setScale(ctx, FAST);
      }
      await ctx.waitTransportIdle();
      eq(await ctx.read(b, "CartridgeId"), cid, "destination after arrival");
      await ctx.moveAndWait(second, "OutputPort");
      await ctx.ua.twin("RemoveCartridge", [[DataType.String, second]]);
    },
  },
  {
    section: "1 Moves",
    text: "a Complete unit becomes Idle when its cartridge leaves",
    async run(ctx) {
      const unit = ctx.unitFor("sample");
      const { cid } = await ctx.completeSample(unit);
      await ctx.moveAndWait(cid, "OutputPort");
      eq([await ctx.read(unit, "State"), await ctx.read(unit, "CartridgeId")], ["Idle", ""], "unit after its cartridge left");
      await ctx.ua.twin("RemoveCartridge", [[DataType.String, cid]]);
    },
  },
  {
    section: "1 Moves",
    text: "OutputPort: cartridges oldest first; one there has left the shuttle (Move is BadNoMatch)",
    async run(ctx) {
      const c1 = await ctx.insertFresh();
      await ctx.moveAndWait(c1, "OutputPort");
      const c2 = await ctx.insertFresh();
      await ctx.moveAndWait(c2, "OutputPort");
      const ids = Array.from(await ctx.ua.get("OutputPort", "CartridgeIds"));
      expect(ids.indexOf(c1) >= 0 && ids.indexOf(c1) < ids.indexOf(c2), `OutputPort order ${ids}`);
      await refusedMove(ctx, [c1, "LoadPort", ctx.task("M")], "BadNoMatch", "Move of a cartridge at the OutputPort");
      for (const c of [c1, c2]) {
        eq((await ctx.ua.twin("RemoveCartridge", [[DataType.String, c]])).status, "Good", "RemoveCartridge");
      }
      const left = Array.from(await ctx.ua.get("OutputPort", "CartridgeIds"));
      expect(!left.includes(c1) && !left.includes(c2), `OutputPort after RemoveCartridge ${left}`);
    },
  },
  {
    section: "1 Moves",
    text: "a transport fault during a move leaves the cartridge where it was (a Complete source stays Idle); Clear not repeatable",
    async run(ctx) {
      const unit = ctx.unitFor("sample");
      const dest = ctx.unitFor("expansion", [unit]);
      const { cid } = await ctx.completeSample(unit);
      await ctx.empty(dest);
      await ctx.waitTransportIdle();
      await setScale(ctx, 1);
      try {
        eq((await ctx.move(cid, dest, ctx.task("M"))).status, "Good", "Move");
        eq(await ctx.read(unit, "State"), "Idle", "the Complete source became Idle");
        eq((await ctx.fault("Transport", 5, "gripper")).status, "Good", "InjectFault Transport");
      } finally {
        await setScale(ctx, FAST);
      }
      const t = await transport(ctx);
      eq([t.State, t.FaultCode, t.FaultText], ["Faulted", 5, "gripper"], "transport after the fault");
      eq(await ctx.read(unit, "CartridgeId"), cid, "the cartridge is back where it was");
      eq(await ctx.read(unit, "State"), "Idle", "the source stays Idle");
      eq(await ctx.read(dest, "CartridgeId"), "", "the destination stays empty");
      await refusedMove(ctx, [cid, dest, ctx.task("M")], "BadInvalidState", "Move while Faulted");
      eq((await ctx.ua.transport("Clear")).status, "Good", "Transport.Clear from Faulted");
      const after = await transport(ctx);
      eq([after.State, after.FaultCode, after.FaultText], ["Idle", 0, ""], "transport after Clear");
      eq((await ctx.ua.transport("Clear")).status, "BadInvalidState", "a second Transport.Clear");
    },
  },
];
