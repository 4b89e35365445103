#!/usr/bin/env node
"use strict";
/**
 * A Cell Shuttle instrument on node-opcua, written from ICD 1.1 alone (sections 1 and 4).
 *
 *   node node_shuttle.js [--port P] [--host H] [--time-scale N] [--pki-dir DIR] [--watch-stdin]
 *
 * --port 0 takes an ephemeral port. Once listening it prints the endpoint URL, alone on
 * one line, on stdout (everything else goes to stderr). --watch-stdin stops it when its
 * stdin closes (so a test's crash never leaves it running). SIGINT/SIGTERM stop it cleanly.
 */
require("./lib/quiet");
const { NodeShuttle } = require("./shuttle/server");

function parse(argv) {
  const opts = { host: "127.0.0.1", port: 4840, scale: 1, watchStdin: false };
  for (let i = 0; i < argv.length; i++) {
    const a = argv[i];
    const value = () => {
      if (i + 1 >= argv.length) throw new Error(`${a} needs a value`);
      return argv[++i];
    };
    if (a === "--port") opts.port = Number.parseInt(value(), 10);
    else if (a === "--host") opts.host = value();
    else if (a === "--time-scale") opts.scale = Number(value());
    else if (a === "--pki-dir") opts.pkiDir = value();
    else if (a === "--watch-stdin") opts.watchStdin = true;
    else throw new Error(`unknown option ${a}`);
  }
  if (!(Number.isInteger(opts.port) && opts.port >= 0 && opts.port < 65536)) {
    throw new Error("--port must be 0..65535");
  }
  if (!(Number.isFinite(opts.scale) && opts.scale >= 0.001 && opts.scale <= 1e7)) {
    throw new Error("--time-scale must be 0.001..1e7");
  }
  return opts;
}

async function main() {
  let opts;
  try {
    opts = parse(process.argv.slice(2));
  } catch (err) {
    process.stderr.write(`node_shuttle: ${err.message}\n`);
    process.exit(2);
  }
  const shuttle = new NodeShuttle(opts);
  await shuttle.start();
  process.stdout.write(`${shuttle.url}\n`);
  let stopping = false;
  const stop = async () => {
    if (stopping) return;
    stopping = true;
    await shuttle.stop();
    process.exit(0);
  };
  process.on("SIGINT", stop);
  process.on("SIGTERM", stop);
  if (opts.watchStdin) {
    process.stdin.on("end", stop);
    process.stdin.on("close", stop);
    process.stdin.resume();
  }
}

main().catch((err) => {
  process.stderr.write(`node_shuttle: ${err.stack}\n`);
  process.exit(1);
});
