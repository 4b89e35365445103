"use strict";
/**
 * Process time of the node-opcua Cell Shuttle (ICD section 0: a twin's time scale, process
 * seconds per wall second, applies to every duration) and the one timer that drives it.
 *
 * Activities (a running program, a move) hold `done` and `total` process seconds; the
 * clock advances every running activity by the process time elapsed since it last looked,
 * fires the ones that are due, and sleeps until the next one is due (or PROGRESS_MS, so
 * that Progress and ProcessValues move while something runs).
 */

const PROGRESS_MS = 100;

class Clock {
  constructor(scale) {
    this.scale = scale;
    this.base = 0; // process seconds at wallBase
    this.wallBase = performance.now();
    this.activities = new Set();
    this.timer = null;
    this.onTick = () => {};
  }

  /** Process seconds since the instrument started. */
  now() {
    return this.base + ((performance.now() - this.wallBase) / 1000) * this.scale;
  }

  setScale(scale) {
    this.advance();
    this.base = this.now();
    this.wallBase = performance.now();
    this.scale = scale;
    this.schedule();
  }

  /** Start (or resume) counting an activity: { done, total, onDue }. */
  run(activity) {
    activity.lastProc = this.now();
    this.activities.add(activity);
    this.schedule();
  }

  /** Stop counting an activity (held, ended); its `done` is brought up to date first. */
  pause(activity) {
    if (!this.activities.has(activity)) return;
    this.advance();
    this.activities.delete(activity);
    this.schedule();
  }

  advance() {
    const now = this.now();
    for (const a of this.activities) {
      a.done = Math.min(a.total, a.done + Math.max(0, now - a.lastProc));
      a.lastProc = now;
    }
  }

  schedule() {
    if (this.timer) clearTimeout(this.timer);
    this.timer = null;
    if (this.activities.size === 0) return;
    let wait = PROGRESS_MS;
    for (const a of this.activities) {
      wait = Math.min(wait, ((a.total - a.done) / this.scale) * 1000);
    }
    this.timer = setTimeout(() => this.tick(), Math.max(0, wait));
  }

  tick() {
    this.timer = null;
    this.advance();
    for (const a of [...this.activities]) {
      if (a.done >= a.total - 1e-9) {
        this.activities.delete(a);
        a.onDue();
      }
    }
    this.onTick();
    this.schedule();
  }

  close() {
    if (this.timer) clearTimeout(this.timer);
    this.timer = null;
    this.activities.clear();
  }
}

module.exports = { Clock };
