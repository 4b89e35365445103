"use strict";
/**
 * Route node-opcua's own log lines to stderr, before any other node-opcua module loads
 * (some warn at load time, on stdout by default). Our programs keep stdout for what a
 * caller parses: the instrument's endpoint line, the client check's PASS/FAIL lines.
 */
const debug = require("node-opcua-debug");

const { format } = require("node:util");

// node-opcua passes its caller context (an object) first, then the message
const toStderr = (...args) => {
  const message = typeof args[0] === "object" ? args.slice(1) : args;
  process.stderr.write(`${format(...message)}\n`);
};
debug.setWarningLogger(toStderr);
debug.setErrorLogger(toStderr);
debug.setTraceLogger(toStderr);
debug.setDebugLogger(toStderr);
