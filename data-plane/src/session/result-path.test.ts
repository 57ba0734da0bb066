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
});

test("a simple query's statements: tags summed, the completion recorded once at the end with the last tag", () => {
  const { rp, done } = path();
  const p: Pending = { ...execute(), kind: K.Query, mask: false };
  assert.equal(rp.complete(p, 0x43, cc("INSERT 0 2")), false);
  assert.equal(rp.complete(p, 0x43, cc("UPDATE 3")), false);
  assert.equal(p.stmtIndex, 2);
  rp.completed(p);
  rp.completed(p);
  assert.deepEqual(done.map((d) => [d.commandTag, d.rows]), [["UPDATE 3", 5]]);
});
