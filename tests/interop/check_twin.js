#!/usr/bin/env node
"use strict";
/**
 * Third-party client check of a Cell Shuttle, written from the ICD 1.1 text alone, on
 * node-opcua's client: every rule of sections 1 and 4 it checks prints PASS or FAIL with
 * its ICD section, and the run ends with "N passed, M failed" (exit 1 on any failure).
 *
 *   node check_twin.js --cellfab .venv/bin/cellfab [--time-scale 3600]   # runs `cellfab sim`
 *   node check_twin.js --url opc.tcp://host:port/shuttle                 # any instrument
 *   ... [--only REGEX] [--list]
 *
 * With --cellfab it starts `cellfab sim --security none --shuttle-port 0 --cellq-port 0`
 * as a child, reads the shuttle endpoint it prints, and stops it at the end.
 */
require("./lib/quiet");
const { spawn } = require("node:child_process");
const readline = require("node:readline");
const { Ua, DataType } = require("./client/ua");
const { Context } = require("./client/context");

const RULES = [
  ...require("./client/rules/address"),
  ...require("./client/rules/start"),
  ...require("./client/rules/commands"),
  ...require("./client/rules/moves"),
  ...require("./client/rules/subscriptions"),
  ...require("./client/rules/twin"),
];
const STARTUP_MS = 120000;
const RULE_MS = 120000;

function parse(argv) {
  const opts = { scale: 3600 };
  for (let i = 0; i < argv.length; i++) {
    const a = argv[i];
    const next = () => argv[++i];
    if (a === "--url") opts.url = next();
    else if (a === "--cellfab") opts.cellfab = next();
    else if (a === "--time-scale") opts.scale = Number(next());
    else if (a === "--only") opts.only = new RegExp(next());
    else if (a === "--pki-dir") opts.pkiDir = next();
    else if (a === "--list") opts.list = true;
    else throw new Error(`unknown option ${a}`);
  }
  if (!opts.list && !opts.url === !opts.cellfab) throw new Error("give one of --url or --cellfab");
  return opts;
}

/** Start `cellfab sim` and answer { child, url } once it printed its shuttle endpoint. */
function startSim(cellfab, scale) {
  const args = ["sim", "--time-scale", String(scale), "--security", "none"];
  const child = spawn(cellfab, [...args, "--shuttle-port", "0", "--cellq-port", "0"], {
    stdio: ["pipe", "pipe", "inherit"],
  });
  return new Promise((resolve, reject) => {
    const timer = setTimeout(() => reject(new Error("hang guard: cellfab sim printed no endpoint")), STARTUP_MS);
    child.on("exit", (code) => reject(new Error(`cellfab sim exited ${code} before its endpoint`)));
    readline.createInterface({ input: child.stdout }).on("line", (line) => {
      process.stderr.write(`[sim] ${line}\n`);
      const m = line.match(/^\s*shuttle\s+(opc\.tcp:\/\/\S+)/);
      if (m) {
        clearTimeout(timer);
        resolve({ child, url: m[1] });
      }
    });
  });
}

function stopSim(child) {
  return new Promise((resolve) => {
    if (child.exitCode !== null) return resolve();
    const kill = setTimeout(() => child.kill("SIGKILL"), 30000);
    child.removeAllListeners("exit");
    child.on("exit", () => {
      clearTimeout(kill);
      resolve();
    });
    child.kill("SIGTERM");
  });
}

function withGuard(promise, ms) {
  let timer;
  const guard = new Promise((_, reject) => {
    timer = setTimeout(() => reject(new Error(`hang guard: rule still running after ${ms} ms`)), ms);
  });
  return Promise.race([promise, guard]).finally(() => clearTimeout(timer));
}

async function main() {
  const opts = parse(process.argv.slice(2));
  const rules = RULES.filter((r) => !opts.only || opts.only.test(`§${r.section} ${r.text}`));
  if (opts.list) {
    for (const r of rules) process.stdout.write(`§${r.section}: ${r.text}\n`);
    return 0;
  }
  let sim = null;
  let url = opts.url;
  if (opts.cellfab) {
    sim = await startSim(opts.cellfab, opts.scale);
    url = sim.url;
  }
  let failed = 0;
  let passed = 0;
  let ua = null;
  try {
    ua = await Ua.connect(url, opts.pkiDir);
    const twinScale = await ua.node(["Twin", "TimeScale"], ua.twinNs).catch(() => null);
    if (twinScale) await ua.write(twinScale, DataType.Double, opts.scale);
    const ctx = new Context(ua);
    await ctx.discover();
    process.stdout.write(`checking ${url} (ICD 1.1): ${rules.length} rules\n`);
    const sp = await ua.exists(["Twin", "StartedPrograms"], ua.twinNs);
    process.stdout.write(`twin controls: StartedPrograms ${sp ? "present" : "absent"}\n`);
    for (const rule of rules) {
      try {
        await withGuard(rule.run(ctx), RULE_MS);
        passed += 1;
        process.stdout.write(`PASS §${rule.section}: ${rule.text}\n`);
      } catch (err) {
        failed += 1;
        const why = err.constructor.name === "CheckFailed" ? err.message : err.stack;
        process.stdout.write(`FAIL §${rule.section}: ${rule.text}\n     ${why}\n`);
        await ctx.recover(opts.scale).catch((e) => process.stderr.write(`recover: ${e.message}\n`));
      }
    }
  } finally {
    if (ua) await ua.close().catch(() => {});
    if (sim) await stopSim(sim.child);
  }
  process.stdout.write(`${passed} passed, ${failed} failed\n`);
  return failed === 0 ? 0 : 1;
}

main().then(
  (code) => process.exit(code),
  (err) => {
    process.stderr.write(`check_twin: ${err.stack}\n`);
    process.exit(2);
  },
);
