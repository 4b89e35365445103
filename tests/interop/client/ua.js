"use strict";
/**
 * A plain node-opcua client session for the third-party check of a Cell Shuttle: resolve
 * the ICD namespaces from the server's NamespaceArray, resolve nodes by browse path (never
 * by NodeId), read, write, call methods with typed Variants, and watch variables with
 * sampling interval 0, keeping every notification with the publish it came in.
 *
 * Written from the ICD 1.1 text alone; nothing here knows how the instrument is built.
 */

const os = require("node:os");
const path = require("node:path");
const { OPCUACertificateManager } = require("node-opcua-certificate-manager");
const {
  AttributeIds,
  ClientMonitoredItem,
  ClientSubscription,
  DataType,
  MessageSecurityMode,
  OPCUAClient,
  SecurityPolicy,
  StatusCodes,
  TimestampsToReturn,
  makeBrowsePath,
} = require("node-opcua-client");

const SHUTTLE_NS = "urn:cellfab:shuttle:v1";
const TWIN_NS = "urn:cellfab:twin:v1";
const OBJECTS = "i=85";

class Ua {
  static async connect(url, pkiDir) {
    const certificateManager = new OPCUACertificateManager({
      rootFolder: path.join(pkiDir || path.join(os.tmpdir(), "cellfab-node-check-pki"), "client"),
      automaticallyAcceptUnknownCertificate: true,
    });
    const client = OPCUAClient.create({
      applicationName: "cellfab-interop-check",
      endpointMustExist: false,
      securityMode: MessageSecurityMode.None,
      securityPolicy: SecurityPolicy.None,
      clientCertificateManager: certificateManager,
      connectionStrategy: { maxRetry: 3, initialDelay: 200, maxDelay: 1000 },
      requestedSessionTimeout: 60000,
    });
    await client.connect(url);
    const session = await client.createSession();
    const ua = new Ua(client, session);
    const nsArray = await ua.value("i=2255"); // Server_NamespaceArray
    ua.namespaces = nsArray;
    ua.ns = nsArray.indexOf(SHUTTLE_NS);
    ua.twinNs = nsArray.indexOf(TWIN_NS);
    return ua;
  }

  constructor(client, session) {
    this.client = client;
    this.session = session;
    this.cache = new Map();
    this.subscriptions = [];
  }

  async close() {
    for (const s of this.subscriptions) await s.terminate().catch(() => {});
    await this.session.close().catch(() => {});
    await this.client.disconnect();
  }

  /** NodeId of Objects/<names...>, names in the shuttle namespace (or `ns`). */
  async node(names, ns = this.ns) {
    const key = `${ns}|${names.join("/")}`;
    if (this.cache.has(key)) return this.cache.get(key);
    const relative = names.map((n) => `/${ns}:${n}`).join("");
    const [res] = await this.session.translateBrowsePath([makeBrowsePath(OBJECTS, relative)]);
    if (!res.statusCode.equals(StatusCodes.Good) || res.targets.length === 0) {
      throw new Error(`no node Objects${relative} (${res.statusCode.name})`);
    }
    const id = res.targets[0].targetId.toString();
    this.cache.set(key, id);
    return id;
  }

  async exists(names, ns = this.ns) {
    try {
      await this.node(names, ns);
      return true;
    } catch {
      return false;
    }
  }

  async read(nodeId, attributeId = AttributeIds.Value) {
    return this.session.read({ nodeId, attributeId });
  }

  async value(nodeId) {
    const dv = await this.read(nodeId);
    if (!dv.statusCode.equals(StatusCodes.Good)) {
      throw new Error(`read ${nodeId}: ${dv.statusCode.name}`);
    }
    return dv.value.value;
  }

  /** Value of Objects/Shuttle/<names...>. */
  async get(...names) {
    return this.value(await this.node(["Shuttle", ...names]));
  }

  async twinGet(name) {
    return this.value(await this.node(["Twin", name], this.twinNs));
  }

  /**
   * Write a Variant; answers the operation's status code name, or "service:<name>" when
   * the server failed the whole Write request instead (a service-level fault).
   */
  async write(nodeId, dataType, value, attributeId = AttributeIds.Value) {
    try {
      const sc = await this.session.write({
        nodeId,
        attributeId,
        value: { value: { dataType, value } },
      });
      return sc.name;
    } catch (err) {
      const m = /serviceResult = (\w+)/.exec(err.message);
      if (m) return `service:${m[1]}`;
      throw err;
    }
  }

  /**
   * Call `method` on `object` (both lists of browse names under Objects) with typed
   * arguments [[DataType, value], ...]; answers { status, outputs }.
   */
  async callOn(objectNames, method, args, ns = this.ns) {
    const objectId = await this.node(objectNames, ns);
    const methodId = await this.node([...objectNames, method], ns);
    const res = await this.session.call({
      objectId,
      methodId,
      inputArguments: args.map(([dataType, value]) => ({ dataType, value })),
    });
    return {
      status: res.statusCode.name,
      outputs: (res.outputArguments || []).map((v) => v.value),
    };
  }

  unit(unitId, method, args = []) {
    return this.callOn(["Shuttle", "Units", unitId], method, args);
  }

  transport(method, args = []) {
    return this.callOn(["Shuttle", "Transport"], method, args);
  }

  twin(method, args) {
    return this.callOn(["Twin"], method, args, this.twinNs);
  }

  /**
   * Watch variables (name -> NodeId) in one subscription with sampling interval 0 and
   * the given queue size. Answers a Watch collecting every publish in order.
   */
  async watch(items, { queueSize = 100, publishingInterval = 100 } = {}) {
    const sub = await ClientSubscription.create(this.session, {
      requestedPublishingInterval: publishingInterval,
      requestedLifetimeCount: 600,
      requestedMaxKeepAliveCount: 10,
      maxNotificationsPerPublish: 0,
      publishingEnabled: true,
      priority: 1,
    });
    this.subscriptions.push(sub);
    const watch = new Watch(sub);
    for (const [name, nodeId] of Object.entries(items)) {
      const item = await ClientMonitoredItem.create(
        sub,
        { nodeId, attributeId: AttributeIds.Value },
        { samplingInterval: 0, queueSize, discardOldest: true },
        TimestampsToReturn.Both,
      );
      watch.byNode.set(item.itemToMonitor.nodeId.toString(), name);
      watch.items.push(item);
    }
    return watch;
  }
}

/** Every DataChange of a subscription, grouped by publish (NotificationMessage). */
class Watch {
  constructor(sub) {
    this.sub = sub;
    this.byNode = new Map(); // NodeId -> name
    this.items = [];
    this.publishes = []; // [{ seq, changes: [{ name, value, status, source }] }]
    this.waiters = [];
    sub.on("raw_notification", (msg) => {
      const changes = [];
      for (const data of msg.notificationData || []) {
        for (const n of data.monitoredItems || []) {
          const item = sub.monitoredItems[n.clientHandle];
          changes.push({
            name: item && this.byNode.get(item.itemToMonitor.nodeId.toString()),
            value: n.value.value ? n.value.value.value : undefined,
            status: n.value.statusCode,
            source: n.value.sourceTimestamp,
          });
        }
      }
      if (changes.length === 0) return;
      this.publishes.push({ seq: msg.sequenceNumber, changes });
      for (const w of [...this.waiters]) w();
    });
  }

  /** All changes in arrival order, each with the index of its publish. */
  changes(name) {
    const out = [];
    this.publishes.forEach((p, i) => {
      for (const c of p.changes) if (!name || c.name === name) out.push({ ...c, publish: i });
    });
    return out;
  }

  values(name) {
    return this.changes(name).map((c) => c.value);
  }

  /** Wait (hang guard `limit` ms) until `pred()` holds after some publish. */
  async until(pred, what, limit = 20000) {
    if (pred()) return;
    await new Promise((resolve, reject) => {
      const timer = setTimeout(() => {
        this.waiters = this.waiters.filter((w) => w !== check);
        reject(new Error(`hang guard: ${what} not seen; saw ${JSON.stringify(this.summary())}`));
      }, limit);
      const check = () => {
        if (!pred()) return;
        clearTimeout(timer);
        this.waiters = this.waiters.filter((w) => w !== check);
        resolve();
      };
      this.waiters.push(check);
    });
  }

  /** Wait for the initial notification of every item. */
  async ready() {
    const names = [...this.byNode.values()];
    await this.until(() => names.every((n) => this.values(n).length >= 1), "initial values");
  }

  summary() {
    return this.publishes.map((p) => p.changes.map((c) => `${c.name}=${JSON.stringify(c.value)}`));
  }

  async close() {
    await this.sub.terminate().catch(() => {});
  }
}

module.exports = { Ua, Watch, DataType, StatusCodes, AttributeIds, SHUTTLE_NS, TWIN_NS };
