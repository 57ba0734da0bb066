import { test } from "node:test";
import assert from "node:assert/strict";
import { decodeDataRow } from "../wire/decode.js";
import { encodeDataRow } from "../wire/encode.js";
import { splitFrames } from "../wire/frame-scanner.js";
import { Outbox } from "./outbox.js";
import { K, type Pending } from "./response-queue.js";
import { ResultPath } from "./result-path.js";
import { noopAudit, type AuditSink, type ResultMasker, type RowField, type SessionInfo, type StatementCompletion } from "./session-hooks.js";

const info = { sessionId: "s", resource: "app" } as SessionInfo;
const field = (name: string): RowField => ({ name, tableOid: 1, columnAttr: 1, typeOid: 25, typeSize: -1, typeMod: -1, format: 0 });
const row = (...v: string[]) => encodeDataRow(v.map((x) => Buffer.from(x)));
const cc = (tag: string) => Buffer.concat([Buffer.from([0x43, 0, 0, 0, 4 + tag.length + 1]), Buffer.from(tag + "\0")]);

/** masks every field named `secret` as `***` */
const masker: ResultMasker = {
  planFor: (fields) => (fields.some((f) => f.name === "secret") ? fields.map((f) => f.name === "secret") : null),
  maskDataRow: (plan, f) => encodeDataRow(decodeDataRow(f).map((v, i) => ((plan as boolean[])[i] ? Buffer.from("***") : v))),
  describe: () => [{ index: 1, rule: "r" }],
};

function path(o: { audit?: AuditSink; captureRows?: number; masker?: ResultMasker } = {}) {
  const out: Buffer[] = [];
  const held: Promise<void>[] = [];
  const done: StatementCompletion[] = [];
  const toClient = new Outbox((b) => void out.push(b));
  const rp = new ResultPath({
    info, audit: o.audit ?? noopAudit, listeners: [(_s, d) => void done.push(d)], masker: o.masker, captureRows: o.captureRows ?? 0,
    now: () => 5, toClient, holdUpstream: (p) => void held.push(p),
  });
  const sent = () => {
    toClient.flush();
    return splitFrames(Buffer.concat(out.splice(0)), 1 << 20).frames.map((f) => (f.code === 0x44 ? decodeDataRow(f.raw).map((v) => v?.toString()).join("|") : String.fromCharCode(f.code)));
  };
  return { rp, sent, held, done };
}

const execute = (): Pending => ({ kind: K.Execute, rec: { seq: 7, protocol: "parse", sql: "SELECT id, secret FROM t", decision: { action: "allow", rule: "r", reason: "", statementClass: "read", statementIndex: 0, statements: [] } }, rows: 0, startedAt: 1, mask: true });

test("rows of a result with masked columns are rewritten; the completion is recorded with its tag and told to the listeners", () => {
  const { rp, sent, done } = path({ masker });
  const p = execute();
  assert.equal(rp.planFor(p, [field("id"), field("secret")], null), true);
  assert.equal(rp.rowWhole(p), true, "a masked row is read whole");
  rp.dataRow(p, row("1", "hunter2"));
  assert.equal(rp.complete(p, 0x43, cc("SELECT 1")), true);
  assert.deepEqual(sent(), ["1|***", "C"]);
  assert.deepEqual(done, [{ seq: 7, commandTag: "SELECT 1", rows: 1, durationMs: 4, error: undefined }]);
});

test("a result without masked columns takes the raw path; capture copies at most captureRows rows, as sent", () => {
  const captured: string[][] = [];
  const audit: AuditSink = { ...noopAudit, resultRows: (_s, _seq, _f, rows) => void captured.push(rows.map((r) => decodeDataRow(r).map(String).join("|"))) };
  const { rp, sent } = path({ masker, audit, captureRows: 2 });
  const p = execute();
  rp.planFor(p, [field("id"), field("name")], null);
  assert.equal(p.plan, null);
  for (const v of ["a", "b", "c"]) {
    const whole = rp.rowWhole(p);
    assert.equal(whole, v !== "c", "rows past the cap pass raw");
    rp.dataRow(p, row(v));
  }
  rp.complete(p, 0x43, cc("SELECT 3"));
  assert.deepEqual(captured, [["a", "b"]]);
  assert.deepEqual(sent(), ["a", "b", "c", "C"]);
});

test("rows before any row description while masking is configured fail closed", () => {
  const { rp } = path({ masker });
  assert.throws(() => rp.dataRow(execute(), row("x")), /without a row description/);
});

test("a mask plan that asks the catalog holds the upstream; the row description goes on once the plan is known", async () => {
  const slow: ResultMasker = { ...masker, planFor: async (fields) => fields.map((f) => f.name === "secret") };
  const { rp, sent, held } = path({ masker: slow });
  const p: Pending = { ...execute(), kind: K.Query };
  const rd = Buffer.from([0x54, 0, 0, 0, 6, 0, 0]);
  assert.equal(rp.planFor(p, [field("secret")], rd), false);
  assert.equal(held.length, 1);
  await held[0];
  assert.deepEqual(sent(), ["T"]);
  assert.deepEqual(p.plan, [true]);
});

test("COPY TO STDOUT of a masked result is refused unless the masker can mask CopyData", () => {
  const { rp } = path({ masker });
  assert.throws(() => rp.copyOut(execute(), Buffer.from([0x48, 0, 0, 0, 7, 0, 0, 0])), { code: "permission_denied" });
  const copying: ResultMasker = { ...masker, planForCopyOut: () => "plan", maskCopyData: () => Buffer.from([0x64, 0, 0, 0, 4]) };
  const c = path({ masker: copying });
  assert.equal(c.rp.copyOut(execute(), Buffer.from([0x48, 0, 0, 0, 7, 0, 0, 0])), true);
  assert.equal(c.rp.copyWhole, true);
  c.rp.copyData(Buffer.from([0x64, 0, 0, 0, 6, 0x41, 0x0a]));
  assert.deepEqual(c.sent(), ["H", "d"]);
  // binary CopyData (the response's format byte) is never masked, whatever the statement text said
  assert.throws(() => path({ masker: copying }).rp.copyOut(execute(), Buffer.from([0x48, 0, 0, 0, 7, 1, 0, 0])), { code: "permission_denied" });
});

test("what cannot be masked is known before the statement runs: the masker's refusal of COPY/DECLARE statements, a described binary result", async () => {
  const refusing: ResultMasker = {
    ...masker,
    planFor: (fields) => {
      if (fields.some((f) => f.format === 1)) throw Object.assign(new Error("x"), {});
      return null;
    },
    refusal: (ctx) => (ctx.statementIndex === 1 ? Promise.resolve("no CSV") : undefined),
  };
  const { rp } = path({ masker: refusing });
  const d = (kinds: string[]) => ({ action: "allow" as const, rule: "r", reason: "", statementClass: "read" as const, statementIndex: 0, statements: kinds.map((kind, i) => ({ ...stmt(`s${i}`), kind })) });
  assert.equal(rp.refusal("SELECT 1", d(["SelectStmt"])), undefined, "only COPY and DECLARE are asked");
  assert.equal(await rp.refusal("x", d(["CopyStmt", "CopyStmt"])), "no CSV", "each of a Query's statements");
  assert.equal(rp.refusal("x", d(["CopyStmt"])), undefined);
  assert.deepEqual(rp.described(undefined, "UPDATE t SET a = 1", d(["UpdateStmt"])), { fields: undefined, plan: null }, "NoData");
  assert.match((rp.described([{ ...field("n"), format: 1 }], "SELECT n", d(["SelectStmt"])) as { refused: string }).refused, /could not be checked against the masking rules: x/);
  const plain = path({ masker: { ...masker, masks: () => false, refusal: () => "never asked" } });
  assert.equal(plain.rp.refusal("x", d(["CopyStmt"])), undefined, "a resource without masking rules is not asked");
});

test("a simple Query's statements each get their own completion, tag, exact rows and captured rows; after a failed one the rest did not run", () => {
  const captured: Array<[number, number]> = [];
  const audit: AuditSink = { ...noopAudit, resultRows: (_s, seq, _f, rows) => void captured.push([seq, rows.length]) };
  const { rp, done } = path({ audit, captureRows: 2 });
  const rec = execute().rec!;
  const part = (seq: number, text: string) => ({ ...rec, seq, sql: text });
  const p: Pending = { kind: K.Query, rec, parts: [part(7, "SELECT a"), part(8, "INSERT"), part(9, "EXPLAIN"), part(10, "SELECT b"), part(11, "SELECT c")], rows: 0, startedAt: 1, mask: false };
  for (const v of ["a", "b", "c"]) {
    rp.rowWhole(p);
    rp.dataRow(p, row(v));
  }
  rp.complete(p, 0x43, cc("SELECT 3"));
  rp.complete(p, 0x43, cc("INSERT 0 2"));
  // a statement whose tag counts no rows: the rows the client got
  for (const v of ["plan", "cost"]) {
    rp.rowWhole(p);
    rp.dataRow(p, row(v));
  }
  rp.complete(p, 0x43, cc("EXPLAIN"));
  rp.rowWhole(p);
  rp.dataRow(p, row("x"));
  rp.error(p, { sqlstate: "22012", message: "division by zero" });
  rp.completed(p);
  rp.completed(p);
  assert.deepEqual(done.map((d) => [d.seq, d.commandTag, d.rows, d.error?.sqlstate]), [
    [7, "SELECT 3", 3, undefined], [8, "INSERT 0 2", 2, undefined], [9, "EXPLAIN", 2, undefined], [10, undefined, 1, "22012"], [11, undefined, 0, "08P01"],
  ]);
  assert.match(done[4]!.error!.message, /an earlier statement of its Query failed/);
  assert.deepEqual(captured, [[7, 2], [9, 2]], "each statement's rows under its own number, capped per statement");
});

test("a simple query whose decision does not name its statements: tags summed, the completion recorded once at the end with the last tag", () => {
  const { rp, done } = path();
  const p: Pending = { ...execute(), kind: K.Query, mask: false };
  assert.equal(rp.complete(p, 0x43, cc("INSERT 0 2")), false);
  assert.equal(rp.complete(p, 0x43, cc("UPDATE 3")), false);
  assert.equal(p.stmtIndex, 2);
  rp.completed(p);
  rp.completed(p);
  assert.deepEqual(done.map((d) => [d.commandTag, d.rows]), [["UPDATE 3", 5]]);
});

/** a ParameterStatus frame, and its name and value as a test reads them back */
const ps = (name: string, value: string) => Buffer.concat([Buffer.from([0x53, 0, 0, 0, 4 + name.length + value.length + 2]), Buffer.from(`${name}\0${value}\0`)]);
const psText = (f: Buffer) => f.toString("utf8", 5, f.length - 1).split("\0");
const stmt = (text: string) => ({ text, kind: "SelectStmt", class: "read" as const, tables: { read: [], write: [] }, functions: [], risks: [] });
const executeOf = (...texts: string[]): Pending => {
  const p = execute();
  p.rec!.decision.statements = texts.map(stmt);
  return p;
};

test("a reported setting (ParameterStatus) goes through the masker with the statement that ran; its answer replaces the value", () => {
  const seen: Array<[string, string, string, string[]]> = [];
  const screening: ResultMasker = {
    ...masker,
    screenParameter: (name, value, ctx) => {
      seen.push([name, value, ctx.source, (ctx.statements ?? []).map((s) => s.text)]);
      return name === "application_name" ? "" : null;
    },
  };
  const out: Buffer[] = [];
  const { rp } = path({ masker: screening });
  const q: Pending = { ...executeOf("SELECT set_config('application_name', email, false) FROM t"), kind: K.Query };
  assert.equal(rp.screenParameter(q, ps("application_name", "zq@x.io"), (f) => void out.push(f)), true);
  assert.equal(rp.screenParameter(q, ps("TimeZone", "UTC"), (f) => void out.push(f)), true);
  assert.deepEqual(out.map(psText), [["application_name", ""], ["TimeZone", "UTC"]]);
  assert.deepEqual(seen[0], ["application_name", "zq@x.io", "statement", ["SELECT set_config('application_name', email, false) FROM t"]]);
  // no masker for it, or a resource without rules: the frame passes as it came
  const plain = path({ masker });
  const f = ps("application_name", "zq@x.io");
  plain.rp.screenParameter(q, f, (g) => assert.equal(g, f));
});

test("at a Sync, a reported setting is attributed to the Executes completed since the last ReadyForQuery; past the bound, to none", () => {
  const ctxs: Array<{ source: string; texts: string[] }> = [];
  const screening: ResultMasker = {
    ...masker,
    screenParameter: (_n, _v, ctx) => {
      ctxs.push({ source: ctx.source, texts: (ctx.statements ?? []).map((s) => s.text) });
      return null;
    },
  };
  const { rp } = path({ masker: screening });
  const sync: Pending = { kind: K.Sync };
  const noop = () => {};
  rp.screenParameter(sync, ps("application_name", "a"), noop);
  for (const sql of ["SELECT 1", "SELECT set_config('application_name', email, false) FROM t", "SELECT 1"]) {
    const p = executeOf(sql);
    rp.planFor(p, [field("id")], null);
    rp.complete(p, 0x43, cc("SELECT 1"));
  }
  rp.screenParameter(sync, ps("application_name", "b"), noop);
  rp.ready();
  rp.screenParameter(sync, ps("application_name", "c"), noop);
  for (let i = 0; i < 70; i++) {
    const p = executeOf(`SELECT ${i}`);
    rp.complete(p, 0x43, cc("SELECT 1"));
  }
  rp.screenParameter(sync, ps("application_name", "d"), noop);
  assert.deepEqual(ctxs, [
    { source: "unattributed", texts: [] },
    { source: "statement", texts: ["SELECT 1", "SELECT set_config('application_name', email, false) FROM t"] },
    { source: "unattributed", texts: [] },
    { source: "unattributed", texts: [] },
  ]);
});

test("a reported setting whose screening asks the catalog holds the upstream and goes on in order", async () => {
  const slow: ResultMasker = { ...masker, screenParameter: async () => "" };
  const { rp, held } = path({ masker: slow });
  const out: Buffer[] = [];
  assert.equal(rp.screenParameter(execute(), ps("application_name", "zq@x.io"), (f) => void out.push(f)), false);
  assert.equal(out.length, 0);
  await held[0];
  assert.deepEqual(out.map(psText), [["application_name", ""]]);
});
