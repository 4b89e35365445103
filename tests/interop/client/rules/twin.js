"use strict";
/**
 * ICD 1.1 section 4, shuttle twin controls: InsertCartridge / RemoveCartridge / InjectFault
 * refusals and argument ranges (arguments before the port), TimeScale's range, write
 * protection of everything else (values, attributes, nodes), and StartedPrograms.
 */

const { AttributeIds } = require("node-opcua-client");
const { AddNodesRequest, DeleteNodesRequest } = require("node-opcua-types");
const { DataType } = require("../ua");
const { expect, eq } = require("../context");

const S = DataType.String;
const D = DataType.Double;

async function timeScaleNode(ctx) {
  return ctx.ua.node(["Twin", "TimeScale"], ctx.ua.twinNs);
}

function transaction(session, request) {
  return new Promise((resolve) => {
    session.performMessageTransaction(request, (err, response) => resolve({ err, response }));
  });
}

module.exports = [
  {
    section: "4 (1.1)",
    text: "InsertCartridge: malformed or used id BadInvalidArgument, Cells/ViabilityPct out of range BadOutOfRange, checked before the port",
    async run(ctx) {
      await ctx.waitTransportIdle();
      const taken = await ctx.insertFresh(); // the port is taken from here on
      const cases = [
        ["bad id!", 2e8, 95, "BadInvalidArgument", "malformed id"],
        ["", 2e8, 95, "BadInvalidArgument", "empty id"],
        [taken, 2e8, 95, "BadInvalidArgument", "an id in use"],
        [ctx.fresh(), 999, 95, "BadOutOfRange", "Cells 999"],
        [ctx.fresh(), 1.1e11, 95, "BadOutOfRange", "Cells 1.1e11"],
        [ctx.fresh(), Number.NaN, 95, "BadOutOfRange", "Cells NaN"],
        [ctx.fresh(), Number.POSITIVE_INFINITY, 95, "BadOutOfRange", "Cells +inf"],
        [ctx.fresh(), 2e8, -0.1, "BadOutOfRange", "ViabilityPct -0.1"],
        [ctx.fresh(), 2e8, 100.1, "BadOutOfRange", "ViabilityPct 100.1"],
        [ctx.fresh(), 2e8, Number.NaN, "BadOutOfRange", "ViabilityPct NaN"],
        [ctx.fresh(), 1e3, 0, "BadInvalidState", "range ends accepted, then the port is taken"],
        [ctx.fresh(), 1e11, 100, "BadInvalidState", "range ends accepted, then the port is taken"],
      ];
      const wrong = [];
      for (const [cid, cells, viab, want, what] of cases) {
        const r = await ctx.insert(cid, cells, viab);
        if (r.status !== want) wrong.push(`${what}: expected ${want}, got ${r.status}`);
      }
      eq(await ctx.ua.get("LoadPort", "CartridgeId"), taken, "LoadPort after refusals");
      await ctx.moveAndWait(taken, "OutputPort");
      eq((await ctx.ua.twin("RemoveCartridge", [[S, taken]])).status, "Good", "RemoveCartridge");
      const r = await ctx.insert(taken, 2e8, 95);
      if (r.status !== "BadInvalidArgument") wrong.push(`an id used before (removed since): ${r.status}`);
      eq(wrong, [], "InsertCartridge answers");
    },
  },
  {
    section: "4",
    text: "InsertCartridge is BadInvalidState while a move out of the LoadPort is under way",
    async run(ctx) {
      await ctx.waitTransportIdle();
      const cid = await ctx.insertFresh();
      const node = await timeScaleNode(ctx);
      eq(await ctx.ua.write(node, D, 1), "Good", "TimeScale 1");
      try {
        eq((await ctx.move(cid, "OutputPort", ctx.task("M"))).status, "Good", "Move out of the LoadPort");
        eq(await ctx.ua.get("LoadPort", "CartridgeId"), "", "LoadPort during the move");
        const r = await ctx.insert(ctx.fresh(), 2e8, 95);
        eq(r.status, "BadInvalidState", "InsertCartridge during the move out of the LoadPort");
      } finally {
        await ctx.ua.write(node, D, 3600);
      }
      await ctx.waitTransportIdle();
      await ctx.ua.twin("RemoveCartridge", [[S, cid]]);
    },
  },
  {
    section: "4",
    text: "RemoveCartridge: malformed id BadInvalidArgument, not at the OutputPort BadNoMatch",
    async run(ctx) {
      eq((await ctx.ua.twin("RemoveCartridge", [[S, "bad id!"]])).status, "BadInvalidArgument", "malformed");
      eq((await ctx.ua.twin("RemoveCartridge", [[S, ctx.fresh()]])).status, "BadNoMatch", "unknown id");
      await ctx.waitTransportIdle();
      const cid = await ctx.insertFresh();
      eq((await ctx.ua.twin("RemoveCartridge", [[S, cid]])).status, "BadNoMatch", "a cartridge at the LoadPort");
      await ctx.moveAndWait(cid, "OutputPort");
      eq((await ctx.ua.twin("RemoveCartridge", [[S, cid]])).status, "Good", "at the OutputPort");
      eq((await ctx.ua.twin("RemoveCartridge", [[S, cid]])).status, "BadNoMatch", "removed twice");
    },
  },
  {
    section: "4",
    text: "InjectFault: unknown unit or FaultCode 0 is BadInvalidArgument",
    async run(ctx) {
      eq((await ctx.fault("NO_SUCH_UNIT", 3, "x")).status, "BadInvalidArgument", "unknown unit");
      const unit = [...ctx.units.keys()][0];
      const before = await ctx.snapshot(unit);
      eq((await ctx.fault(unit, 0, "x")).status, "BadInvalidArgument", "FaultCode 0");
      eq(await ctx.snapshot(unit), before, "unit after a refused InjectFault");
      eq((await ctx.fault("Transport", 0, "x")).status, "BadInvalidArgument", "FaultCode 0 on Transport");
    },
  },
  {
    section: "4 (1.1)",
    text: "TimeScale: writable Double within 0.001..1e7, else BadOutOfRange and unchanged",
    async run(ctx) {
      const node = await timeScaleNode(ctx);
      const original = await ctx.ua.value(node);
      try {
        const wrong = [];
        for (const bad of [0.0009, 0, -1, 1.1e7, Number.NaN, Number.POSITIVE_INFINITY]) {
          const sc = await ctx.ua.write(node, D, bad);
          if (sc !== "BadOutOfRange") wrong.push(`${bad}: ${sc}`);
          await ctx.ua.write(node, D, original);
        }
        eq(wrong, [], "TimeScale writes out of range");
        for (const good of [0.001, 1e7, 3600]) {
          eq(await ctx.ua.write(node, D, good), "Good", `TimeScale ${good}`);
          eq(await ctx.ua.value(node), good, "TimeScale read back");
        }
      } finally {
        await ctx.ua.write(node, D, 3600);
      }
    },
  },
  {
    section: "4 (1.1)",
    text: "write protection: no other variable is writable (values, AccessLevel), no attribute, no AddNodes/DeleteNodes",
    async run(ctx) {
      const { ua } = ctx;
      const unit = [...ctx.units.keys()][0];
      const targets = [
        [["Shuttle", "Units", unit, "State"], S, "Running"],
        [["Shuttle", "Units", unit, "TaskId"], S, "forged"],
        [["Shuttle", "Units", unit, "CartridgeId"], S, "forged"],
        [["Shuttle", "Units", unit, "FaultCode"], DataType.UInt32, 1],
        [["Shuttle", "Units", unit, "Progress"], D, 0.5],
        [["Shuttle", "Units", unit, "Capabilities"], S, ["expansion"]],
        [["Shuttle", "LoadPort", "CartridgeId"], S, "forged"],
        [["Shuttle", "Transport", "State"], S, "Idle"],
        [["Shuttle", "Heartbeat"], DataType.UInt32, 1],
        [["Shuttle", "DeviceState"], S, "Shutdown"],
        [["Shuttle", "Identification", "SerialNumber"], S, "forged"],
      ];
      for (const [names, type, value] of targets) {
        const id = await ua.node(names);
        const before = await ua.value(id);
        const sc = await ua.session.write({
          nodeId: id,
          attributeId: AttributeIds.Value,
          value: { value: { dataType: type, arrayType: Array.isArray(value) ? 1 : 0, value } },
        });
        expect(sc.name !== "Good", `write to ${names.join("/")} answered Good`);
        eq(await ua.value(id), before, `${names.join("/")} after a refused write`);
        const access = (await ua.read(id, AttributeIds.AccessLevel)).value.value;
        expect((access & 2) === 0, `${names.join("/")} AccessLevel has CurrentWrite`);
      }
      const ts = await ua.node(["Twin", "TimeScale"], ua.twinNs);
      expect(((await ua.read(ts, AttributeIds.AccessLevel)).value.value & 2) === 2, "TimeScale not writable");
      const state = await ua.node(["Shuttle", "Units", unit, "State"]);
      const dn = await ua.session.write({
        nodeId: state,
        attributeId: AttributeIds.DisplayName,
        value: { value: { dataType: DataType.LocalizedText, value: { text: "forged" } } },
      });
      expect(dn.name !== "Good", "write of a DisplayName answered Good");
      const shuttle = await ua.node(["Shuttle"]);
      const add = await transaction(
        ua.session,
        new AddNodesRequest({
          nodesToAdd: [
            {
              parentNodeId: shuttle,
              referenceTypeId: "i=47",
              requestedNewNodeId: `ns=${ua.ns};s=Forged`,
              browseName: { namespaceIndex: ua.ns, name: "Forged" },
              nodeClass: 1,
              typeDefinition: "i=58",
            },
          ],
        }),
      );
      const addOk = !add.err && add.response.results?.every((r) => r.statusCode.name === "Good");
      expect(!addOk, "AddNodes answered Good");
      expect(!(await ua.exists(["Shuttle", "Forged"])), "a node was added");
      const del = await transaction(
        ua.session,
        new DeleteNodesRequest({ nodesToDelete: [{ nodeId: state, deleteTargetReferences: true }] }),
      );
      const delOk = !del.err && del.response.results?.every((r) => r.name === "Good");
      expect(!delOk, "DeleteNodes answered Good");
      eq(typeof (await ua.value(state)), "string", "State still there after DeleteNodes");
      const sp = await ua.node(["Twin", "StartedPrograms"], ua.twinNs);
      expect((await ua.write(sp, S, "[]")) !== "Good", "write to StartedPrograms answered Good");
    },
  },
  {
    section: "4 (1.1)",
    text: "StartedPrograms: one object per program or move started, oldest first, with unit/task_id/program/cartridge_id/at",
    async run(ctx) {
      const unit = ctx.unitFor("expansion");
      const n0 = (await ctx.started()).length;
      const { cid, tid } = await ctx.startLong(unit);
      await ctx.start(unit, "expansion", {}, tid, cid); // an idempotent repeat: not listed
      const list = await ctx.started();
      const mine = list.slice(n0);
      const prog = mine.filter((e) => e.task_id === tid);
      eq(prog.length, 1, "entries for the program");
      eq([prog[0].unit, prog[0].program, prog[0].cartridge_id], [unit, "expansion", cid], "program entry");
      const moves = mine.filter((e) => e.unit === "Transport");
      expect(moves.length >= 1 && moves.every((e) => e.program === "move"), `move entries ${JSON.stringify(moves)}`);
      for (const e of list) {
        eq(Object.keys(e).sort(), ["at", "cartridge_id", "program", "task_id", "unit"], "entry keys");
        expect(typeof e.at === "number" && Number.isFinite(e.at), `at ${e.at}`);
      }
      const ats = list.map((e) => e.at);
      expect(ats.every((a, i) => i === 0 || a >= ats[i - 1]), "StartedPrograms not oldest first");
      await ctx.command(unit, "Abort", tid);
    },
  },
];
