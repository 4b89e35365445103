"use strict";
/**
 * ICD 1.1 section 1 (address space) and section 4 (Objects/Twin): namespaces resolved at
 * run time, every BrowseName in its namespace, the DataTypes and ValueRanks written, the
 * methods' argument DataTypes, and the default set of units.
 */

const { AttributeIds } = require("node-opcua-client");
const { expect, eq } = require("../context");

const DT = { String: "ns=0;i=12", Double: "ns=0;i=11", UInt32: "ns=0;i=7" };
const PROGRAMS = [
  "cell_selection",
  "activation",
  "transduction",
  "electroporation",
  "expansion",
  "sample",
  "harvest_wash",
  "formulation",
  "fill_finish",
];
const UNIT_STATES = ["Idle", "Running", "Held", "Complete", "Aborted", "Faulted"];

/** [path under Shuttle, DataType, array] */
const SHUTTLE_VARS = [
  [["Identification", "Manufacturer"], "String"],
  [["Identification", "Model"], "String"],
  [["Identification", "SerialNumber"], "String"],
  [["Identification", "SoftwareRevision"], "String"],
  [["DeviceState"], "String"],
  [["Heartbeat"], "UInt32"],
  [["LoadPort", "CartridgeId"], "String"],
  [["OutputPort", "CartridgeIds"], "String", true],
  [["Transport", "State"], "String"],
  [["Transport", "TaskId"], "String"],
  [["Transport", "FaultCode"], "UInt32"],
  [["Transport", "FaultText"], "String"],
];
const UNIT_VARS = [
  ["Capabilities", "String", true],
  ["State", "String"],
  ["CartridgeId", "String"],
  ["TaskId", "String"],
  ["Program", "String"],
  ["Progress", "Double"],
  ["RemainingSeconds", "Double"],
  ["FaultCode", "UInt32"],
  ["FaultText", "String"],
];
/** method -> [[input DataTypes], [output DataTypes], [input names], [output names]] */
const UNIT_METHODS = {
  StartProgram: [
    ["String", "String", "String", "String"],
    ["String"],
    ["Program", "Parameters", "TaskId", "CartridgeId"],
    ["RunId"],
  ],
  Hold: [["String"], [], ["TaskId"], []],
  Unhold: [["String"], [], ["TaskId"], []],
  Stop: [["String"], [], ["TaskId"], []],
  Abort: [["String"], [], ["TaskId"], []],
  Clear: [[], [], [], []],
  GetResult: [["String"], ["String", "String"], ["TaskId"], ["Status", "Outputs"]],
};
const TRANSPORT_METHODS = {
  Move: [["String", "String", "String"], ["String"], ["CartridgeId", "ToUnit", "TaskId"], ["RunId"]],
  Clear: [[], [], [], []],
};
const TWIN_METHODS = {
  InsertCartridge: [["String", "Double", "Double"], [], ["CartridgeId", "Cells", "ViabilityPct"], []],
  RemoveCartridge: [["String"], [], ["CartridgeId"], []],
  InjectFault: [["String", "UInt32", "String"], [], ["UnitId", "FaultCode", "FaultText"], []],
};

async function checkVariable(ua, nodeId, type, array, what) {
  const dt = await ua.read(nodeId, AttributeIds.DataType);
  eq(dt.value.value.toString(), DT[type], `${what} DataType`);
  const rank = await ua.read(nodeId, AttributeIds.ValueRank);
  eq(rank.value.value, array ? 1 : -1, `${what} ValueRank`);
  const v = await ua.read(nodeId);
  expect(v.statusCode.name === "Good", `${what} reads ${v.statusCode.name}`);
  const isArray = Array.isArray(v.value.value) || ArrayBuffer.isView(v.value.value);
  expect(isArray === !!array, `${what} ${array ? "is not" : "is"} an array`);
  return array ? Array.from(v.value.value) : v.value.value;
}

async function checkMethod(ua, objectNames, name, [ins, outs, inNames, outNames], ns, what, names) {
  const id = await ua.node([...objectNames, name], ns);
  const def = await ua.session.getArgumentDefinition(id);
  if (names) {
    const named = (args) => (args || []).map((a) => a.name);
    eq(named(def.inputArguments), inNames, `${what}.${name} input argument names`);
    eq(named(def.outputArguments), outNames, `${what}.${name} output argument names`);
    return;
  }
  const types = (args) => (args || []).map((a) => a.dataType.toString());
  eq(types(def.inputArguments), ins.map((t) => DT[t]), `${what}.${name} input DataTypes`);
  eq(types(def.outputArguments), outs.map((t) => DT[t]), `${what}.${name} output DataTypes`);
}

module.exports = [
  {
    section: "1",
    text: "namespace urn:cellfab:shuttle:v1 (and urn:cellfab:twin:v1) resolved from NamespaceArray",
    async run({ ua }) {
      expect(ua.ns > 0, `shuttle namespace not in NamespaceArray ${JSON.stringify(ua.namespaces)}`);
      expect(ua.twinNs > 0, "twin namespace not in NamespaceArray");
      expect(await ua.exists(["Shuttle"]), "Objects/Shuttle not found in the shuttle namespace");
      expect(await ua.exists(["Twin"], ua.twinNs), "Objects/Twin not found in the twin namespace");
    },
  },
  {
    section: "1",
    text: "Shuttle variables: BrowseNames, DataTypes and ValueRanks as written",
    async run({ ua }) {
      for (const [names, type, array] of SHUTTLE_VARS) {
        await checkVariable(ua, await ua.node(["Shuttle", ...names]), type, array, names.join("/"));
      }
      const ds = await ua.get("DeviceState");
      expect(["Initialization", "Operate", "Sleep", "Shutdown"].includes(ds), `DeviceState ${ds}`);
      const ts = await ua.get("Transport", "State");
      expect(["Idle", "Moving", "Faulted"].includes(ts), `Transport.State ${ts}`);
    },
  },
  {
    section: "1",
    text: "Heartbeat counts up (UInt32, +1 per wall second)",
    async run(ctx) {
      const a = await ctx.ua.get("Heartbeat");
      const b = await ctx.eventually(async () => {
        const now = await ctx.ua.get("Heartbeat");
        return now !== a && now;
      }, "Heartbeat advancing");
      expect(b === a + 1 || b === a + 2, `Heartbeat jumped from ${a} to ${b}`);
    },
  },
  {
    section: "1",
    text: "default units SEL1, EP1, INC01..INC16, CFC1, FIN1, each with every variable, DataType and method",
    async run(ctx) {
      const { ua } = ctx;
      const want = ["SEL1", "EP1", "CFC1", "FIN1"];
      for (let i = 1; i <= 16; i++) want.push(`INC${String(i).padStart(2, "0")}`);
      const missing = want.filter((u) => !ctx.units.has(u));
      eq(missing, [], "units missing");
      for (const [unit, caps] of ctx.units) {
        for (const [name, type, array] of UNIT_VARS) {
          await checkVariable(ua, await ua.node(["Shuttle", "Units", unit, name]), type, array, `${unit}.${name}`);
        }
        expect(caps.length > 0 && caps.every((p) => PROGRAMS.includes(p)), `${unit} Capabilities ${caps}`);
        const state = await ctx.read(unit, "State");
        expect(UNIT_STATES.includes(state), `${unit} State ${state}`);
        const progress = await ctx.read(unit, "Progress");
        expect(progress >= 0 && progress <= 1, `${unit} Progress ${progress}`);
        expect(await ua.exists(["Shuttle", "Units", unit, "ProcessValues"]), `${unit} has no ProcessValues`);
      }
    },
  },
  {
    section: "1",
    text: "ProcessValues are Double variables",
    async run(ctx) {
      const { ua } = ctx;
      for (const unit of ctx.units.keys()) {
        const pv = await ua.node(["Shuttle", "Units", unit, "ProcessValues"]);
        const res = await ua.session.browse({ nodeId: pv, resultMask: 63 });
        const vars = res.references.filter((r) => r.nodeClass === 2); // Variable
        for (const ref of vars) {
          const dt = await ua.read(ref.nodeId, AttributeIds.DataType);
          eq(dt.value.value.toString(), DT.Double, `${unit}.ProcessValues.${ref.browseName.name} DataType`);
        }
      }
    },
  },
  {
    section: "1",
    text: "methods: unit, transport argument DataTypes exactly as written",
    async run(ctx) {
      const { ua } = ctx;
      for (const unit of ctx.units.keys()) {
        for (const [name, sig] of Object.entries(UNIT_METHODS)) {
          await checkMethod(ua, ["Shuttle", "Units", unit], name, sig, ua.ns, unit);
        }
      }
      for (const [name, sig] of Object.entries(TRANSPORT_METHODS)) {
        await checkMethod(ua, ["Shuttle", "Transport"], name, sig, ua.ns, "Transport");
      }
    },
  },
  {
    section: "1, 4",
    text: "methods' argument names as written (unit, transport, twin)",
    async run(ctx) {
      const { ua } = ctx;
      const unit = [...ctx.units.keys()][0];
      for (const [name, sig] of Object.entries(UNIT_METHODS)) {
        await checkMethod(ua, ["Shuttle", "Units", unit], name, sig, ua.ns, unit, true);
      }
      for (const [name, sig] of Object.entries(TRANSPORT_METHODS)) {
        await checkMethod(ua, ["Shuttle", "Transport"], name, sig, ua.ns, "Transport", true);
      }
      for (const [name, sig] of Object.entries(TWIN_METHODS)) {
        await checkMethod(ua, ["Twin"], name, sig, ua.twinNs, "Twin", true);
      }
    },
  },
  {
    section: "4",
    text: "twin controls: methods' argument DataTypes, TimeScale Double, StartedPrograms String",
    async run({ ua }) {
      for (const [name, sig] of Object.entries(TWIN_METHODS)) {
        await checkMethod(ua, ["Twin"], name, sig, ua.twinNs, "Twin");
      }
      await checkVariable(ua, await ua.node(["Twin", "TimeScale"], ua.twinNs), "Double", false, "TimeScale");
      const sp = await ua.node(["Twin", "StartedPrograms"], ua.twinNs);
      await checkVariable(ua, sp, "String", false, "StartedPrograms");
      const list = JSON.parse(await ua.value(sp));
      expect(Array.isArray(list), "StartedPrograms is not a JSON array");
    },
  },
];
