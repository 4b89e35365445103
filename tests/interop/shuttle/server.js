"use strict";
/**
 * The node-opcua face of the Cell Shuttle: ICD 1.1 section 1's address space in namespace
 * urn:cellfab:shuttle:v1 and section 4's Objects/Twin in urn:cellfab:twin:v1, bound to the
 * rules in model.js.
 *
 * Every variable is read-only except Twin/TimeScale; every listed identity and state
 * variable has MinimumSamplingInterval 0 and the server advertises MinSupportedSampleRate 0,
 * so node-opcua serves sampling-interval-0 items exception-based without coalescing (its
 * default would fold changes inside a 100 ms window, against "every change, none merged").
 * Each model write becomes setValueFromSource with a SourceTimestamp.
 *
 * Security: one endpoint, policy None (development mode; ICD section 1 allows it only so).
 */

const os = require("node:os");
const path = require("node:path");
const { OPCUAServer } = require("node-opcua-server");
const { OPCUACertificateManager } = require("node-opcua-certificate-manager");
const {
  DataType,
  MessageSecurityMode,
  SecurityPolicy,
  StatusCodes,
  Variant,
  VariantArrayType,
} = require("node-opcua-client");
const icd = require("./icd");
const { Shuttle } = require("./model");

const READ = "CurrentRead";
const PROCESS_VALUES = ["Temperature_C", "pH", "DO_pct", "ViableCells"];
const S = DataType.String;

const arg = (name, dataType) => ({ name, dataType });

class NodeShuttle {
  /** options: host, port (0 = ephemeral), scale, pkiDir */
  constructor({ host = "127.0.0.1", port = 4840, scale = 1, pkiDir } = {}) {
    this.host = host;
    this.port = port;
    this.pkiDir = pkiDir || path.join(os.tmpdir(), "cellfab-node-shuttle-pki");
    this.vars = new Map(); // path -> { node, dataType, array }
    this.heartbeat = 0;
    this.model = new Shuttle({ scale, out: (p, v) => this.write(p, v) });
  }

  get url() {
    return `opc.tcp://${this.host}:${this.server.endpoints[0].port}/shuttle`;
  }

  async start() {
    const certificateManager = new OPCUACertificateManager({
      rootFolder: path.join(this.pkiDir, "server"),
      automaticallyAcceptUnknownCertificate: false,
    });
    this.server = new OPCUAServer({
      host: this.host,
      hostname: this.host,
      port: this.port,
      resourcePath: "/shuttle",
      securityPolicies: [SecurityPolicy.None],
      securityModes: [MessageSecurityMode.None],
      allowAnonymous: true,
      disableDiscovery: true,
      serverCertificateManager: certificateManager,
      userCertificateManager: certificateManager,
      serverCapabilities: { minSupportedSampleRate: 0 },
      buildInfo: {
        productName: "cellfab node-opcua Cell Shuttle (interop)",
        manufacturerName: "cellfab interop",
        softwareVersion: "1.1",
      },
    });
    await this.server.initialize();
    this.build(this.server.engine.addressSpace);
    await this.server.start();
    this.beat = setInterval(() => {
      this.heartbeat = (this.heartbeat + 1) >>> 0;
      this.write("Heartbeat", this.heartbeat);
    }, 1000);
  }

  async stop() {
    clearInterval(this.beat);
    this.model.close();
    await this.server.shutdown(0);
  }

  // ---- writes from the model -----------------------------------------------------------

  write(p, value) {
    const v = this.vars.get(p);
    if (!v) throw new Error(`no variable ${p}`);
    v.node.setValueFromSource(this.variant(v, value), StatusCodes.Good, new Date());
  }

  variant(v, value) {
    return new Variant({
      dataType: v.dataType,
      arrayType: v.array ? VariantArrayType.Array : VariantArrayType.Scalar,
      value,
    });
  }

  // ---- address space -------------------------------------------------------------------

  variable(ns, parent, p, dataType, value, { array = false, sampling = 0 } = {}) {
    const browseName = p.split("/").at(-1);
    const spec = { dataType, array };
    spec.node = ns.addVariable({
      componentOf: parent,
      browseName,
      nodeId: `s=${p}`,
      dataType,
      valueRank: array ? 1 : -1,
      arrayDimensions: array ? [0] : null,
      accessLevel: READ,
      userAccessLevel: READ,
      minimumSamplingInterval: sampling,
      value: this.variant(spec, value),
    });
    this.vars.set(p, spec);
    return spec.node;
  }

  object(ns, parent, p, { organizedBy = false } = {}) {
    const browseName = p.split("/").at(-1);
    const where = organizedBy ? { organizedBy: parent } : { componentOf: parent };
    return ns.addObject({ browseName, nodeId: `s=${p}`, ...where });
  }

  /**
   * A method whose handler answers the model's { status, ... } as a CallMethodResult;
   * outputs are [ICD argument name, DataType, key of the model's answer].
   */
  method(ns, parent, p, inputs, outputs, handler) {
    const browseName = p.split("/").at(-1);
    const m = ns.addMethod(parent, {
      browseName,
      nodeId: `s=${p}`,
      inputArguments: inputs,
      outputArguments: outputs.map(([name, dataType]) => arg(name, dataType)),
    });
    // node-opcua tells a promise-returning method from a callback one by its arity (2)
    m.bindMethod(async (inputArguments, _context) => {
      let r;
      try {
        r = handler(...inputArguments.map((a) => a.value));
      } catch (err) {
        process.stderr.write(`node-shuttle: ${p} failed: ${err.stack}\n`);
        return { statusCode: StatusCodes.BadInternalError };
      }
      if (r.status !== "Good") return { statusCode: StatusCodes[r.status] };
      return {
        statusCode: StatusCodes.Good,
        outputArguments: outputs.map(([, dataType, key]) => ({ dataType, value: r[key] })),
      };
    });
    return m;
  }

  build(addressSpace) {
    // a vendor namespace first, so that neither ICD namespace has the index 2 that a
    // client tested only against our twin might have hard-coded
    addressSpace.registerNamespace("urn:cellfab:interop:node-shuttle:vendor");
    const twinNs = addressSpace.registerNamespace(icd.TWIN_NS);
    const ns = addressSpace.registerNamespace(icd.SHUTTLE_NS);
    const m = this.model;
    const shuttle = this.object(ns, addressSpace.rootFolder.objects, "Shuttle", {
      organizedBy: true,
    });
    const ident = this.object(ns, shuttle, "Shuttle/Identification");
    for (const [name, value] of [
      ["Manufacturer", "cellfab interop"],
      ["Model", "Cell Shuttle (node-opcua)"],
      ["SerialNumber", "NODE-0001"],
      ["SoftwareRevision", "ICD 1.1"],
    ]) {
      this.variable(ns, ident, `Shuttle/Identification/${name}`, S, value);
    }
    this.variable(ns, shuttle, "DeviceState", S, "Operate");
    this.variable(ns, shuttle, "Heartbeat", DataType.UInt32, 0);
    const load = this.object(ns, shuttle, "Shuttle/LoadPort");
    this.variable(ns, load, "LoadPort/CartridgeId", S, "");
    const output = this.object(ns, shuttle, "Shuttle/OutputPort");
    this.variable(ns, output, "OutputPort/CartridgeIds", S, [], { array: true });

    const tr = this.object(ns, shuttle, "Shuttle/Transport");
    this.variable(ns, tr, "Transport/State", S, "Idle");
    this.variable(ns, tr, "Transport/TaskId", S, "");
    this.variable(ns, tr, "Transport/FaultCode", DataType.UInt32, 0);
    this.variable(ns, tr, "Transport/FaultText", S, "");
    const moveIn = [arg("CartridgeId", S), arg("ToUnit", S), arg("TaskId", S)];
    this.method(ns, tr, "Transport/Move", moveIn, [["RunId", S, "runId"]], (c, to, t) =>
      m.moveCartridge(c, to, t),
    );
    this.method(ns, tr, "Transport/Clear", [], [], () => m.clearTransport());

    const units = this.object(ns, shuttle, "Shuttle/Units");
    for (const u of m.units.values()) this.buildUnit(ns, units, u);
    this.buildTwin(twinNs, addressSpace.rootFolder.objects);
  }

  buildUnit(ns, units, u) {
    const m = this.model;
    const base = `Units/${u.id}`;
    const node = this.object(ns, units, base);
    const D = DataType.Double;
    this.variable(ns, node, `${base}/Capabilities`, S, u.caps, { array: true });
    this.variable(ns, node, `${base}/State`, S, u.state);
    this.variable(ns, node, `${base}/CartridgeId`, S, u.cartridgeId);
    this.variable(ns, node, `${base}/TaskId`, S, u.taskId);
    this.variable(ns, node, `${base}/Program`, S, u.program);
    this.variable(ns, node, `${base}/Progress`, D, 0);
    this.variable(ns, node, `${base}/RemainingSeconds`, D, 0);
    this.variable(ns, node, `${base}/FaultCode`, DataType.UInt32, 0);
    this.variable(ns, node, `${base}/FaultText`, S, "");
    const pv = this.object(ns, node, `${base}/ProcessValues`);
    for (const name of PROCESS_VALUES) {
      this.variable(ns, pv, `${base}/ProcessValues/${name}`, D, name === "pH" ? 7.2 : 0);
    }
    const start = ["Program", "Parameters", "TaskId", "CartridgeId"].map((n) => arg(n, S));
    this.method(ns, node, `${base}/StartProgram`, start, [["RunId", S, "runId"]], (p, params, t, c) =>
      m.startProgram(u.id, p, params, t, c),
    );
    for (const name of ["Hold", "Unhold", "Stop", "Abort"]) {
      this.method(ns, node, `${base}/${name}`, [arg("TaskId", S)], [], (t) =>
        m.command(u.id, name, t),
      );
    }
    this.method(ns, node, `${base}/Clear`, [], [], () => m.clearUnit(u.id));
    const result = [
      ["Status", S, "result"],
      ["Outputs", S, "outputs"],
    ];
    this.method(ns, node, `${base}/GetResult`, [arg("TaskId", S)], result, (t) =>
      m.getResult(u.id, t),
    );
  }

  buildTwin(ns, objects) {
    const m = this.model;
    const twin = this.object(ns, objects, "Twin", { organizedBy: true });
    const D = DataType.Double;
    const insert = [arg("CartridgeId", S), arg("Cells", D), arg("ViabilityPct", D)];
    this.method(ns, twin, "Twin/InsertCartridge", insert, [], (c, cells, v) =>
      m.insertCartridge(c, cells, v),
    );
    this.method(ns, twin, "Twin/RemoveCartridge", [arg("CartridgeId", S)], [], (c) =>
      m.removeCartridge(c),
    );
    const fault = [arg("UnitId", S), arg("FaultCode", DataType.UInt32), arg("FaultText", S)];
    this.method(ns, twin, "Twin/InjectFault", fault, [], (u, code, text) =>
      m.injectFault(u, code, text),
    );
    ns.addVariable({
      componentOf: twin,
      browseName: "TimeScale",
      nodeId: "s=Twin/TimeScale",
      dataType: D,
      accessLevel: "CurrentRead | CurrentWrite",
      userAccessLevel: "CurrentRead | CurrentWrite",
      minimumSamplingInterval: 100, // bound to a getter; not a variable of "every change"
      value: {
        get: () => new Variant({ dataType: D, value: m.clock.scale }),
        set: (variant) => StatusCodes[m.setTimeScale(variant.value).status],
      },
    });
    this.variable(ns, twin, "Twin/StartedPrograms", S, "[]");
  }
}

module.exports = { NodeShuttle, PROCESS_VALUES };
