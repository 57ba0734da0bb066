import { test } from "node:test";
import assert from "node:assert/strict";
import { renderReport } from "./report-render.js";
import type { ScenarioResult } from "./scenario-report.js";
import { compareAcked, streamEvidence } from "./evidence.js";
import { codeOf, percentile } from "./load.js";

const result = (over: Partial<ScenarioResult>): ScenarioResult => ({
  id: "x", title: "X", budget: "full", status: "passed", startedAt: "2026-12-01T00:00:00Z", seconds: 1,
  injected: ["a fault"], checks: [{ what: "held", ok: true }], figures: { "statements acknowledged to clients": 10 }, clientErrors: {}, notes: [], ...over,
});
const info = { commit: "abc", machine: "m", versions: "v", command: "npm run reliability", seconds: 3 };

test("a failing scenario is shown as failing, in the summary and its section, with the failed check", () => {
  const md = renderReport(
    [result({ id: "ok-one", title: "Fine" }), result({ id: "bad-one", title: "Broken", status: "failed", checks: [{ what: "nothing lost", ok: false, detail: "3: w1-1, w1-2, w1-3" }], clientErrors: { "57P03": 4 } })],
    info,
  );
  assert.match(md, /1 of 2 scenarios passed; failing: bad-one/);
  assert.match(md, /\| \[Broken\]\(#bad-one\) \| full \| \*\*FAILED\*\* \| 10 \| – \| – \| 57P03 ×4 \|/);
  assert.match(md, /## Broken: \*\*FAILED\*\*/);
  assert.match(md, /- ✘ FAILED: nothing lost \(3: w1-1, w1-2, w1-3\)/);
  assert.match(md, /## Fine: passed[\s\S]*- ✔ held/);
});

test("a scenario that broke says so and shows where", () => {
  const md = renderReport([result({ status: "error", error: "Error: boom\n at x", injected: [] })], info);
  assert.match(md, /\*\*ERROR\*\* \(did not finish\)/);
  assert.match(md, /```\nError: boom\n at x\n```/);
  assert.match(md, /stopped before its fault/);
});

test("acknowledged statements are looked for on the stream and in the database; duplicates are named", () => {
  const ev = (sql: string, id: string) => ({ streamSeq: 1, subject: "s", raw: "", ev: { id, type: "dev.sluice.statement.allowed.v1", subject: "sess", data: { sql } } as never });
  const stream = streamEvidence([ev("INSERT INTO ledger (marker) VALUES ('w0-1')", "e1"), ev("INSERT INTO ledger (marker) VALUES ('w0-2')", "e2"), ev("INSERT INTO ledger (marker) VALUES ('w0-2')", "e3")]);
  const cmp = compareAcked([["w0-1", "w0-2", "w0-3"]], stream, new Set(["w0-1", "w0-3"]));
  assert.deepEqual(cmp.lostFromStream, ["w0-3"]);
  assert.deepEqual(cmp.lostFromDatabase, ["w0-2"]);
  assert.deepEqual(cmp.duplicated, ["w0-2"]);
  assert.equal(cmp.acknowledged, 3);
});

test("client errors are counted by SQLSTATE, else by what happened to the connection", () => {
  assert.equal(codeOf({ code: "57P03", message: "audit stream unavailable" }), "57P03");
  assert.equal(codeOf({ code: "ECONNREFUSED", message: "connect ECONNREFUSED" }), "connection: ECONNREFUSED");
  assert.equal(codeOf(new Error("Connection terminated unexpectedly")), "connection: closed");
  assert.equal(codeOf(new Error("Query read timeout")), "connection: query timeout");
  assert.equal(percentile([5, 1, 3, 2, 4], 50), 3);
  assert.equal(percentile([5, 1, 3, 2, 4], 99), 5);
});

test("a person's reading of a failure is shown only with the run it reads, never with a later one", () => {
  const failed = result({ id: "slow-one", title: "Slow", status: "failed", startedAt: "2026-12-01T19:40:00Z", checks: [{ what: "fast enough", ok: false }] });
  const reading = { "slow-one": { run: "2026-12-01T19:40:00Z", verdict: "load" as const, text: "the load generator could not keep its rate at load 20" } };
  const md = renderReport([failed], info, reading);
  assert.match(md, /failing: slow-one \(load: see its section\)/);
  assert.match(md, /\*\*Reading of this failure\*\* \(written after the run, test\/reliability\/assessment\.json\): \*\*the machine's load\*\* — the load generator could not keep its rate at load 20/);
  const later = renderReport([{ ...failed, startedAt: "2026-12-01T21:00:00Z" }], info, reading);
  assert.doesNotMatch(later, /Reading of this failure/);
  assert.match(later, /failing: slow-one\n/);
  // a passing scenario carries no reading even if one is left over
  assert.doesNotMatch(renderReport([{ ...failed, status: "passed" }], info, reading), /Reading of this failure/);
});
