import { test } from "node:test";
import assert from "node:assert/strict";
import fc from "fast-check";
import { canonicalJson, INLINE_RESULT_BYTES, type StatementCompletedData } from "@sluice/shared/events";
import type { Decision } from "@sluice/shared/policy";
import type { SessionInfo, StatementRecord } from "../session/session-hooks.js";
import type { RowField } from "../session/session-hooks.js";
import { WireError } from "../wire/frame-scanner.js";
import { captureRows, completionEvents, completionJson, completionText, statementEventData, statementEventJson, type ResultCapture } from "./audit-event-data.js";
import type { InputMasker } from "./input-masker.js";

const session: SessionInfo = {
  sessionId: "s", nodeId: "n", region: "r", resource: "app", clientUser: "u", clientAddress: "127.0.0.1", subject: "x", issuer: "i", groups: [], claims: {}, policyRevision: 1,
};
// a masker that changes what it sees, so the test notices if a path skipped it
const masker: InputMasker = {
  params: (_s, ps) => ps.map((p) => (p === null ? null : `m(${p})`)),
  text: (_s, t) => t.replace(/secret/g, "******"),
};

const text = fc.string({ unit: "binary", maxLength: 16 });
const part = fc.record({
  kind: fc.constantFrom("SelectStmt", "InsertStmt", "DropStmt"),
  class: fc.constantFrom("read", "write", "ddl"),
  tables: fc.record({ read: fc.array(text, { maxLength: 3 }), write: fc.array(text, { maxLength: 3 }) }),
  functions: fc.array(text, { maxLength: 2 }),
  risks: fc.array(fc.constantFrom("delete-without-where", "grant", "dynamic-sql"), { maxLength: 2 }),
});
const decision = fc.record({
  action: fc.constantFrom("allow", "deny", "approve"),
  rule: text,
  policy: fc.option(text, { nil: undefined }),
  reason: fc.option(text, { nil: undefined }),
  statementClass: fc.constantFrom("read", "write", "unknown"),
  statementIndex: fc.constant(0),
  statements: fc.array(part, { maxLength: 3 }),
}, { requiredKeys: ["action", "rule", "statementClass", "statementIndex", "statements"] });
const record = fc.record({
  seq: fc.integer({ min: 1, max: 2 ** 40 }),
  protocol: fc.constantFrom("simple", "parse"),
  sql: text,
  statementName: fc.option(text, { nil: undefined }),
  portalName: fc.option(text, { nil: undefined }),
  params: fc.option(fc.array(fc.record({ format: fc.constantFrom("text", "binary"), value: fc.option(fc.uint8Array({ maxLength: 8 }).map((u) => Buffer.from(u)), { nil: null }) }), { maxLength: 4 }), { nil: undefined }),
  part: fc.option(fc.integer({ min: 1, max: 9 }), { nil: undefined }),
  parts: fc.option(fc.integer({ min: 2, max: 9 }), { nil: undefined }),
  decision,
}, { requiredKeys: ["seq", "protocol", "sql", "decision"] });

test("statementEventJson writes exactly the canonical JSON of statementEventData, whatever the statement", () => {
  fc.assert(
    fc.property(record, (r) => {
      const stmt = r as unknown as StatementRecord;
      const expected = canonicalJson(statementEventData(masker, session, stmt));
      assert.equal(statementEventJson(masker, session, stmt), expected);
      // a second execution of the same decision takes the cached parts: still exact
      const again = { ...stmt, seq: stmt.seq + 1, sql: stmt.sql + " secret" } as StatementRecord;
      assert.equal(statementEventJson(masker, session, again), canonicalJson(statementEventData(masker, session, again)));
    }),
    { numRuns: 500 },
  );
});

const column = fc.record({
  name: text, typeOid: fc.integer({ min: 0, max: 2 ** 32 - 1 }), masked: fc.option(fc.boolean(), { nil: undefined }),
  maskRule: fc.option(text, { nil: undefined }), maskStrategy: fc.option(text, { nil: undefined }), classifiers: fc.option(fc.array(text, { maxLength: 2 }), { nil: undefined }),
}, { requiredKeys: ["name", "typeOid"] });
const captured = fc.record({
  columns: fc.array(column, { maxLength: 3 }),
  values: fc.array(fc.array(fc.option(text, { nil: null }), { maxLength: 3 }), { maxLength: 3 }),
  rows: fc.nat(), recorded: fc.nat(), truncated: fc.boolean(), recordedBytes: fc.nat(),
});
const completed = fc.record({
  statementId: fc.integer({ min: 1, max: 2 ** 40 }),
  commandTag: fc.option(text, { nil: undefined }),
  rows: fc.nat(),
  durationMs: fc.double({ noNaN: true, noDefaultInfinity: true, min: -1e9, max: 1e9 }),
  error: fc.option(fc.record({ sqlstate: text, message: text }), { nil: undefined }),
  results: fc.option(fc.array(captured, { maxLength: 2 }), { nil: undefined }),
}, { requiredKeys: ["statementId", "rows", "durationMs"] });

test("completionJson writes exactly the canonical JSON of a statement.completed payload", () => {
  fc.assert(
    fc.property(completed, (d) => {
      // canonicalJson drops undefined members: so does the writer
      const clean = JSON.parse(JSON.stringify(d)) as StatementCompletedData;
      assert.equal(completionJson(d as StatementCompletedData), canonicalJson(clean));
    }),
    { numRuns: 500 },
  );
});

test("a statement's captured rows ride inside statement.completed up to 64 KiB, above that as result.rows", () => {
  const set = (bytes: number): ResultCapture => ({ columns: [{ name: "v", typeOid: 25 }], values: [["x"]], recordedBytes: bytes });
  const small = completionEvents(masker, session, { seq: 4, commandTag: "SELECT 1", rows: 1, durationMs: 0.5 }, [set(100)]);
  assert.deepEqual(small.rows, []);
  assert.deepEqual(small.completed.results, [{ columns: [{ name: "v", typeOid: 25 }], recorded: 1, recordedBytes: 100, rows: 1, truncated: false, values: [["x"]] }]);
  const big = completionEvents(masker, session, { seq: 5, commandTag: "SELECT 900", rows: 900, durationMs: 2 }, [set(INLINE_RESULT_BYTES), set(1)]);
  assert.equal(big.completed.results, undefined);
  assert.deepEqual(big.rows.map((r) => [r.statementId, r.recordedBytes, r.rows]), [[5, INLINE_RESULT_BYTES, 1], [5, 1, 1]]);
  // the error message of a failed statement passes the masker (it can quote values)
  const failed = completionEvents(masker, session, { seq: 6, rows: 0, durationMs: 1, error: { sqlstate: "23505", message: "duplicate secret" } }, undefined);
  assert.deepEqual(failed.completed.error, { message: "duplicate ******", sqlstate: "23505" });
});

const capture = fc.record({
  columns: fc.array(column, { maxLength: 3 }),
  values: fc.array(fc.array(fc.option(text, { nil: null }), { maxLength: 3 }), { maxLength: 3 }),
  recordedBytes: fc.oneof(fc.nat({ max: 100 }), fc.constant(INLINE_RESULT_BYTES), fc.constant(INLINE_RESULT_BYTES + 1)),
}) as fc.Arbitrary<ResultCapture>;
const completion = fc.record({
  seq: fc.integer({ min: 1, max: 2 ** 40 }),
  commandTag: fc.option(text, { nil: undefined }),
  rows: fc.nat(),
  durationMs: fc.double({ noNaN: true, noDefaultInfinity: true, min: -1e9, max: 1e9 }),
  error: fc.option(fc.record({ sqlstate: text, message: text }), { nil: undefined }),
}, { requiredKeys: ["seq", "rows", "durationMs"] });

test("completionText writes exactly completionJson of completionEvents' payload, with the same result.rows", () => {
  fc.assert(
    fc.property(completion, fc.option(fc.array(capture, { maxLength: 3 }), { nil: undefined }), (done, sets) => {
      const expected = completionEvents(masker, session, done, sets);
      const got = completionText(masker, session, done, sets);
      assert.equal(got.json, completionJson(expected.completed));
      assert.deepEqual(got.rows, expected.rows);
    }),
    { numRuns: 500 },
  );
});

/** A DataRow frame (B 'D') of these values; null is the SQL NULL (length -1). */
function dataRow(values: ReadonlyArray<Buffer | null>): Buffer {
  const parts = values.map((v) => {
    const len = Buffer.alloc(4);
    len.writeInt32BE(v === null ? -1 : v.length);
    return v === null ? len : Buffer.concat([len, v]);
  });
  const body = Buffer.concat(parts);
  const head = Buffer.alloc(7);
  head[0] = 0x44;
  head.writeInt32BE(6 + body.length, 1);
  head.writeInt16BE(values.length, 5);
  return Buffer.concat([head, body]);
}

test("captureRows renders each value as the decoded row would, text as UTF-8 and binary as \\x hex, within the budget", () => {
  const value = fc.option(fc.uint8Array({ maxLength: 12 }).map((u) => Buffer.from(u)), { nil: null });
  fc.assert(
    fc.property(fc.array(fc.array(value, { minLength: 2, maxLength: 2 }), { maxLength: 5 }), fc.constantFrom(0, 1), fc.nat({ max: 60 }), (rows, format, budget) => {
      const fields = [{ name: "a", format: 0 }, { name: "b", format }] as unknown as RowField[];
      const into: ResultCapture = { columns: [], values: [], recordedBytes: 0 };
      const left = captureRows(into, fields, rows.map(dataRow), budget);
      // the reference: rows in order while their value bytes fit what is left
      const want: Array<Array<string | null>> = [];
      let room = budget;
      for (const r of rows) {
        const size = r.reduce((n, v) => n + (v ? v.length : 0), 0);
        if (size > room) break;
        room -= size;
        want.push(r.map((v, i) => (v === null ? null : (i === 1 && format === 1) ? "\\x" + v.toString("hex") : v.toString("utf8"))));
      }
      assert.deepEqual(into.values, want);
      assert.equal(left, room);
      assert.equal(into.recordedBytes, budget - room);
    }),
    { numRuns: 300 },
  );
});

test("captureRows refuses a DataRow that does not hold together, as the wire decoder does", () => {
  const good = dataRow([Buffer.from("abc"), null]);
  const fields = [{ name: "a", format: 0 }, { name: "b", format: 0 }] as unknown as RowField[];
  const bad = [
    good.subarray(0, good.length - 1), // shorter than its length says
    Buffer.concat([good.subarray(0, 1), Buffer.from([0, 0, 0, 99]), good.subarray(5)]), // length word wrong
    (() => { const b = Buffer.from(good); b.writeInt32BE(50, 7); return b; })(), // a value longer than the frame
    (() => { const b = Buffer.from(good); b.writeInt16BE(1, 5); return b; })(), // trailing bytes
    (() => { const b = Buffer.from(good); b[0] = 0x43; return b; })(), // not a DataRow
  ];
  for (const f of bad) assert.throws(() => captureRows({ columns: [], values: [], recordedBytes: 0 }, fields, [f], 1000), WireError);
  const ok: ResultCapture = { columns: [], values: [], recordedBytes: 0 };
  captureRows(ok, fields, [good], 1000);
  assert.deepEqual(ok.values, [["abc", null]]);
});
