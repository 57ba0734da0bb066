/**
 * The fuzz's waits and its re-run for time, without a clock: a time-out of a loaded machine must
 * not be reported as a finding, and a case that still fails with long waits (a real hang, a real
 * difference) must be.
 */
import test from "node:test";
import assert from "node:assert/strict";
import { newTally, patientCheck, referenceIncomplete, type Checked } from "./fuzz-check.js";
import { BASE_PATIENCE, firstRunPatience, loadFactor, MAX_LOAD_FACTOR, needsRerunForTime, RERUN_FACTOR, rerunPatience, scaled, type Patience, type Wait } from "./patience.js";
import { walkResponses } from "./response-walk.js";
import type { Evidence } from "./run-case.js";
import type { Failure, Verdicts } from "./oracles.js";
import { backend } from "../lib/pg-frames.js";
import type { Op } from "./ops.js";

test("loadFactor: runnable tasks per core, never below 1, capped; nonsense reads as an idle machine", () => {
  assert.equal(loadFactor(0.4, 2), 1);
  assert.equal(loadFactor(2, 2), 1);
  assert.equal(loadFactor(5, 2), 2.5);
  assert.equal(loadFactor(20, 2), MAX_LOAD_FACTOR);
  assert.equal(loadFactor(Number.NaN, 2), 1);
  assert.equal(loadFactor(10, 0), 1);
});

test("scaled and rerunPatience: every wait grows; a re-run waits RERUN_FACTOR times the first run, and at least that times the base", () => {
  assert.deepEqual(scaled(BASE_PATIENCE, 1), BASE_PATIENCE);
  assert.deepEqual(scaled(BASE_PATIENCE, 0.5), BASE_PATIENCE, "load never shortens a wait");
  const s = scaled(BASE_PATIENCE, 2.5);
  for (const k of Object.keys(BASE_PATIENCE) as Array<keyof Patience>) assert.equal(s[k], Math.round(BASE_PATIENCE[k] * 2.5), k);
  const r = rerunPatience(s);
  for (const k of Object.keys(BASE_PATIENCE) as Array<keyof Patience>) {
    assert.equal(r[k], s[k] * RERUN_FACTOR, k);
    assert.ok(r[k] >= BASE_PATIENCE[k] * RERUN_FACTOR, k);
  }
  // a first run with waits below the base (a caller's choice) still gets a long re-run
  const short: Patience = { idleMs: 100, waitOpMs: 100, connectMs: 100, logMs: 100, auditMs: 100 };
  assert.equal(rerunPatience(short).idleMs, BASE_PATIENCE.idleMs * RERUN_FACTOR);
});

test("firstRunPatience: a loaded machine stretches every wait but a W's, which a re-run still stretches", () => {
  const p = firstRunPatience(20, 2);
  assert.equal(p.idleMs, BASE_PATIENCE.idleMs * MAX_LOAD_FACTOR);
  assert.equal(p.auditMs, BASE_PATIENCE.auditMs * MAX_LOAD_FACTOR);
  assert.equal(p.waitOpMs, BASE_PATIENCE.waitOpMs);
  assert.equal(rerunPatience(p).waitOpMs, BASE_PATIENCE.waitOpMs * RERUN_FACTOR);
  assert.deepEqual(firstRunPatience(0.3, 2), BASE_PATIENCE);
});

test("needsRerunForTime: only a failure (or an incomplete direct run) while a wait ran out", () => {
  const f = [{ oracle: 4, kind: "no-answer", message: "" }];
  assert.equal(needsRerunForTime(["proxy-idle"], { failures: f, referenceIncomplete: false }), true);
  assert.equal(needsRerunForTime(["reference-idle"], { failures: [], referenceIncomplete: true }), true);
  assert.equal(needsRerunForTime([], { failures: f, referenceIncomplete: true }), false, "no wait ran out: waiting longer would change nothing");
  assert.equal(needsRerunForTime(["proxy-wait-op"], { failures: [], referenceIncomplete: false }), false, "a W that ran out in a passing case is by design");
});

const ops: Op[] = [{ t: "Q", sql: "SELECT 1" }, { t: "S" }];
const complete = [backend.commandComplete("SELECT 1"), backend.ready("I"), backend.ready("I")];
function checked(ranOut: Wait[], failures: Failure[], refMsgs = complete): Checked {
  const stream = (msgs: typeof complete) => ({ ops, messages: msgs, bytes: Buffer.alloc(0), walk: walkResponses(ops, msgs), stalled: false });
  const ev = { proxy: stream(complete), reference: stream(refMsgs), ranOut } as unknown as Evidence;
  const v: Verdicts = { failures, inconclusive: [], checks: { 1: 0, 2: 0, 3: 0, 4: 0, 5: 0 }, refused: false };
  return { ev, v };
}
const hang: Failure = { oracle: 4, kind: "no-answer", message: "op 0 (Q) was never answered" };

test("patientCheck: a case that timed out under load and passes with long waits is not a finding, and is counted as re-run", async () => {
  const tally = newTally();
  const seen: Patience[] = [];
  const p = scaled(BASE_PATIENCE, 3);
  const r = await patientCheck(async (q) => (seen.push(q), q.idleMs < 100_000 ? checked(["proxy-idle"], [hang]) : checked([], [])), p, tally);
  assert.deepEqual(seen, [p, rerunPatience(p)]);
  assert.equal(r.v.failures.length, 0);
  assert.equal(tally.rerunForTime, 1);
  assert.equal(tally.rerunStillFailing, 0);
  assert.equal(tally.ranOut.get("proxy-idle"), 1);
  assert.equal(tally.maxLoadFactor, 3);
  assert.equal(tally.maxIdleMs, rerunPatience(p).idleMs);
});

test("patientCheck: a real hang hangs through the long waits too and is the verdict", async () => {
  const tally = newTally();
  let runs = 0;
  const r = await patientCheck(async () => (runs++, checked(["proxy-idle"], [hang])), BASE_PATIENCE, tally);
  assert.equal(runs, 2);
  assert.deepEqual(r.v.failures, [hang]);
  assert.equal(tally.rerunStillFailing, 1);
});

test("patientCheck: a difference with no wait run out is judged at once; a passing case runs once", async () => {
  const tally = newTally();
  let runs = 0;
  const diff: Failure = { oracle: 4, kind: "differs-from-server@Q", message: "" };
  const r = await patientCheck(async () => (runs++, checked([], [diff])), BASE_PATIENCE, tally);
  assert.equal(runs, 1);
  assert.deepEqual(r.v.failures, [diff]);
  await patientCheck(async () => (runs++, checked(["proxy-wait-op"], [])), BASE_PATIENCE, tally);
  assert.equal(runs, 2);
  assert.equal(tally.rerunForTime, 0);
});

test("patientCheck: a direct run that stalled (oracle 4 inconclusive) is re-run too", async () => {
  const tally = newTally();
  let runs = 0;
  const stalledRef = [backend.commandComplete("SELECT 1")];
  await patientCheck(async () => (runs++, checked(["reference-idle"], [], runs === 1 ? stalledRef : complete)), BASE_PATIENCE, tally);
  assert.equal(runs, 2);
  assert.equal(tally.rerunForTime, 1);
  assert.equal(referenceIncomplete(checked([], [], stalledRef).ev), true);
  assert.equal(referenceIncomplete(checked([], []).ev), false);
});
