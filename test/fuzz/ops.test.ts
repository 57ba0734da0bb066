/**
 * Ops are findings' data and the bytes a case sends: each op is exactly one frame of its type (a W
 * none), parts split at W, binary parameters encoded as the server reads them, and one line each
 * for reports.
 */
import test from "node:test";
import assert from "node:assert/strict";
import { splitBackend } from "../lib/pg-frames.js";
import { encodeOp, encodeOps, paramForms, showOp, wireParam, writeParts, type Op } from "./ops.js";

/** every kind of op once */
const EVERY_OP: Op[] = [
  { t: "Q", sql: "SELECT 1" },
  { t: "P", name: "s1", sql: "SELECT $1::int", types: [23] },
  { t: "B", portal: "c1", stmt: "s1", params: ["1", null, { bin: "int4", v: "7" }], results: [1] },
  { t: "D", kind: "S", name: "s1" },
  { t: "E", portal: "c1", maxRows: 2 },
  { t: "C", kind: "P", name: "c1" },
  { t: "H" },
  { t: "W" },
  { t: "d", data: "1\tx\n" },
  { t: "c" },
  { t: "f", message: "no" },
  { t: "S" },
];

test("ops: each op is one frame of its own type code, a W is no bytes, and nothing is added between them", () => {
  const { messages, rest } = splitBackend(encodeOps(EVERY_OP));
  assert.equal(rest.length, 0);
  assert.deepEqual(messages.map((m) => m.code), ["Q", "P", "B", "D", "E", "C", "H", "d", "c", "f", "S"]);
  assert.equal(encodeOp({ t: "W" }).length, 0);
  // the Parse carries its parameter type, the Execute its row limit
  const parse = messages[1]!.raw;
  assert.equal(parse.readInt32BE(parse.length - 4), 23);
  const exec = messages[4]!.raw;
  assert.equal(exec.readInt32BE(exec.length - 4), 2);
});

test("ops: binary parameters are the bytes the server's receive functions read", () => {
  assert.deepEqual(wireParam({ bin: "int4", v: "7" }), { binary: Buffer.from([0, 0, 0, 7]) });
  assert.deepEqual(wireParam({ bin: "int4", v: "-1" }), { binary: Buffer.from([255, 255, 255, 255]) });
  assert.deepEqual(wireParam({ bin: "int8", v: "99999999999" }), { binary: Buffer.from("000000174876e7ff", "hex") });
  assert.deepEqual(wireParam({ bin: "text", v: "é" }), { binary: Buffer.from("c3a9", "hex") });
  assert.equal(wireParam(null), null);
  assert.equal(wireParam("x"), "x");
  // the audit renders binary as \x<hex>, the server logs the value as text
  assert.deepEqual(paramForms({ bin: "int4", v: "7" }), { audit: "\\x00000007", server: "7" });
  assert.deepEqual(paramForms({ bin: "text", v: "a@b" }), { audit: "\\x614062", server: "a@b" });
  assert.deepEqual(paramForms("5"), { audit: "5", server: "5" });
  assert.deepEqual(paramForms(null), { audit: null, server: null });
});

test("ops: a case is written in parts ending at each W, the W itself never sent", () => {
  const ops: Op[] = [{ t: "P", name: "", sql: "SELECT 1/0" }, { t: "H" }, { t: "W" }, { t: "Q", sql: "SELECT 1" }, { t: "W" }, { t: "S" }];
  const parts = writeParts(ops);
  assert.deepEqual(parts.map((p) => p.end), [2, 4, 6]);
  assert.deepEqual(parts.map((p) => splitBackend(p.bytes).messages.map((m) => m.code).join("")), ["PH", "Q", "S"]);
  assert.deepEqual(Buffer.concat(parts.map((p) => p.bytes)), encodeOps(ops));
  // no W: one part with everything
  assert.deepEqual(writeParts([{ t: "S" }]).map((p) => p.end), [1]);
});

test("ops: one line per op, with what a reader needs to replay it by hand", () => {
  const lines = EVERY_OP.map(showOp);
  assert.ok(lines.every((l) => l.length > 0 && !l.includes("\n")));
  assert.equal(lines[0], 'Query "SELECT 1"');
  assert.equal(lines[1], 'Parse "s1" "SELECT $1::int" types=23');
  assert.equal(lines[2], 'Bind portal="c1" stmt="s1" params=["1",null,{"bin":"int4","v":"7"}] results=1');
  assert.equal(showOp({ t: "d", data: "a\nb" }), 'CopyData "a\\nb"');
});
