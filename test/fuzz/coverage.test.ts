/**
 * coverage.ts on hand-made server answers: a class counts only where the server answered the
 * message that reaches it, never where it skipped it after an error.
 */
import test from "node:test";
import assert from "node:assert/strict";
import { backend as b, type BackendMessage } from "../lib/pg-frames.js";
import { coverageOf, type CoverageClass } from "./coverage.js";
import { walkResponses } from "./response-walk.js";
import type { Op } from "./ops.js";

const cover = (ops: Op[], msgs: BackendMessage[], denied: number[] = []) => {
  const walk = walkResponses(ops, msgs);
  assert.ok(walk.complete && !walk.violation, `the stream fits: ${walk.violation}`);
  return coverageOf(ops, walk.perOp, denied);
};
const has = (m: Map<CoverageClass, number>, c: CoverageClass) => (m.get(c) ?? 0) > 0;

test("coverage: the unnamed portal executed after a Sync inside a transaction block, suspended and resumed", () => {
  const ops: Op[] = [
    { t: "Q", sql: "BEGIN" }, { t: "P", name: "", sql: "SELECT generate_series(1, 5) AS n" }, { t: "B", portal: "", stmt: "", params: [] },
    { t: "E", portal: "", maxRows: 2 }, { t: "S" }, { t: "E", portal: "", maxRows: 0 }, { t: "S" }, { t: "Q", sql: "COMMIT" },
  ];
  const m = cover(ops, [
    b.commandComplete("BEGIN"), b.ready("T"), b.parseComplete(), b.bindComplete(), b.dataRow(["1"]), b.dataRow(["2"]), b.portalSuspended(), b.ready("T"),
    b.dataRow(["3"]), b.dataRow(["4"]), b.dataRow(["5"]), b.commandComplete("SELECT 3"), b.ready("T"), b.commandComplete("COMMIT"), b.ready("I"),
  ]);
  for (const c of ["transaction block", "unnamed statement", "unnamed portal", "portal suspended (max rows)", "suspended portal resumed", "unnamed portal survives Sync in a transaction", "simple Query", "extended Execute"] as const) {
    assert.ok(has(m, c), c);
  }
  assert.ok(!has(m, "named portal survives Sync in a transaction"));
  assert.ok(!has(m, "pipelined without Sync"), "one Execute per Sync");
});

test("coverage: an error mid-pipeline counts, and what the server skipped after it reaches nothing", () => {
  const ops: Op[] = [
    { t: "P", name: "", sql: "SELECT 1/0" }, { t: "B", portal: "", stmt: "", params: [] }, { t: "E", portal: "", maxRows: 0 },
    { t: "P", name: "s1", sql: "SELECT 1" }, { t: "B", portal: "c1", stmt: "s1", params: [] }, { t: "E", portal: "c1", maxRows: 1 }, { t: "S" },
  ];
  const m = cover(ops, [b.parseComplete(), b.bindComplete(), b.error("22012", "division by zero"), b.ready("E")]);
  assert.ok(has(m, "error mid-pipeline"));
  assert.ok(has(m, "failed transaction block"));
  assert.ok(!has(m, "named statement") && !has(m, "named portal"), "the skipped Parse and Bind reach nothing");
  assert.equal(m.get("extended Execute"), 1);
});

test("coverage: SQL PREPARE bound by the protocol, a Parse's name used by SQL EXECUTE and DEALLOCATE, pipelining, Flush", () => {
  const ops: Op[] = [
    { t: "Q", sql: "PREPARE p1 AS SELECT 1" }, { t: "B", portal: "", stmt: "p1", params: [] }, { t: "E", portal: "", maxRows: 0 },
    { t: "H" }, { t: "W" },
    { t: "P", name: "s1", sql: "SELECT 2" }, { t: "B", portal: "", stmt: "s1", params: [] }, { t: "E", portal: "", maxRows: 0 }, { t: "S" },
    { t: "Q", sql: "EXECUTE s1; DEALLOCATE s1" },
  ];
  const m = cover(ops, [
    b.commandComplete("PREPARE"), b.ready("I"), b.bindComplete(), b.dataRow(["1"]), b.commandComplete("SELECT 1"),
    b.parseComplete(), b.bindComplete(), b.dataRow(["2"]), b.commandComplete("SELECT 1"), b.ready("I"),
    b.dataRow(["2"]), b.commandComplete("SELECT 1"), b.commandComplete("DEALLOCATE"), b.ready("I"),
  ]);
  for (const c of ["SQL PREPARE, protocol Bind", "protocol Parse, SQL EXECUTE", "protocol Parse, SQL DEALLOCATE", "pipelined without Sync", "Flush", "Flush then wait", "multi-statement Query", "SQL PREPARE/EXECUTE", "named statement"] as const) {
    assert.ok(has(m, c), c);
  }
});

test("coverage: COPY FROM STDIN in a pipeline, a reading setting sent and denied", () => {
  const ops: Op[] = [
    { t: "P", name: "", sql: "COPY items FROM STDIN" }, { t: "B", portal: "", stmt: "", params: [] }, { t: "E", portal: "", maxRows: 0 },
    { t: "d", data: "30\tx\t1\n" }, { t: "c" }, { t: "Q", sql: "SET client_encoding = 'SJIS'" }, { t: "S" },
  ];
  const m = cover(ops, [b.parseComplete(), b.bindComplete(), b.copyInResponse(3), b.commandComplete("COPY 1"), b.commandComplete("SET"), b.ready("I"), b.ready("I")], [5]);
  assert.ok(has(m, "COPY FROM STDIN in a pipeline"));
  assert.ok(has(m, "setting that changes how SQL is read"));
  assert.ok(has(m, "setting that changes how SQL is read, run by the server"));
  assert.equal(m.get("statement denied by the proxy"), 1);
  assert.equal(coverageOf(ops, undefined).get("extended Execute"), undefined, "no direct run, nothing reached");
});
