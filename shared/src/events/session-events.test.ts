import { test } from "node:test";
import assert from "node:assert/strict";
import fc from "fast-check";
import { HashChain, MAX_EVENT_DATA_BYTES, canonicalJson, dataPlaneSource, verifyChain, uuidv7 } from "./index.js";
import {
  SessionEventType, buildSessionEvent, chunkDataTexts, chunkSessionEvent, joinChunks, sessionEventName, dataBytes, isChunkData,
} from "./session-events.js";

const ctx = { sessionId: "s-1", region: "eu", node: "n1" };
const time = new Date(1_700_000_000_000);

test("session event types are dev.sluice.<name>.v1 and map back to their names", () => {
  assert.equal(SessionEventType["statement.allowed"], "dev.sluice.statement.allowed.v1");
  assert.equal(SessionEventType["session.started"], "dev.sluice.session.started.v1");
  assert.equal(sessionEventName("dev.sluice.result.rows.v1"), "result.rows");
  assert.equal(sessionEventName("dev.sluice.policy.applied.v1"), undefined);
});

test("a built event carries the session as subject, the node as source and the policy revision", () => {
  const ev = buildSessionEvent(ctx, "statement.completed", { statementId: 1, commandTag: "SELECT 1", rows: 1, durationMs: 2 }, { time, policyRev: 7 });
  assert.equal(ev.subject, "s-1");
  assert.equal(ev.source, "sluice://eu/n1");
  assert.equal(ev.sluicepolicyrev, 7);
  assert.equal(ev.time, time.toISOString());
});

test("a payload above 512 KiB splits into chained chunks that reassemble exactly", () => {
  // quotes and backslashes double under JSON escaping: the worst case for a chunk's size
  const sql = "SELECT '" + "\"\\é".repeat(400_000) + "'";
  const ev = buildSessionEvent(ctx, "statement.allowed", {
    statementId: 3, sql, protocol: "simple", class: "read", tables: { read: [], write: [] }, risks: [],
    statements: [], decision: "allow", rule: "r/allow:read",
  }, { time, policyRev: 1 });
  const parts = chunkSessionEvent(ev, () => uuidv7(time.getTime()));
  assert.ok(parts.length > 2);
  const chain = new HashChain();
  for (const p of parts) {
    assert.ok(isChunkData(p.data));
    assert.equal(p.data.statementId, 3);
    assert.ok(dataBytes(p.data) < MAX_EVENT_DATA_BYTES, `chunk of ${dataBytes(p.data)} bytes`);
    chain.link(p);
  }
  assert.equal(verifyChain(parts), undefined);
  assert.equal(new Set(parts.map((p) => p.id)).size, parts.length);
  const [joined] = joinChunks(parts);
  assert.deepEqual(joined!.data, ev.data);
  assert.deepEqual(chunkSessionEvent({ ...ev, data: { ...ev.data, sql: "SELECT 1" } }, () => "x").length, 1);
});

test("chunks cut from a payload's canonical text are chunkSessionEvent's chunks, linked to the same hashes", () => {
  // a unit of any UTF-16 (lone surrogates, quotes, backslashes, controls) repeated past the cap
  fc.assert(
    fc.property(fc.string({ unit: "binary", minLength: 1, maxLength: 8 }), fc.integer({ min: 0, max: 3 }), fc.option(fc.integer({ min: 1, max: 2 ** 31 }), { nil: undefined }), (unit, extra, statementId) => {
      const sql = unit.repeat(Math.ceil((MAX_EVENT_DATA_BYTES * (1 + extra / 2)) / unit.length));
      const data: Record<string, unknown> = { decision: "deny", rule: "default-deny", sql, sqlstate: "42501" };
      if (statementId !== undefined) data.statementId = statementId;
      const ev = buildSessionEvent(ctx, "statement.blocked", data as never, { time, policyRev: 4 });
      const ids: string[] = [];
      const chunked = chunkSessionEvent(ev, () => (ids.push(uuidv7(time.getTime())), ids.at(-1)!));
      const texts = chunkDataTexts(canonicalJson(ev.data), statementId);
      assert.deepEqual(texts, chunked.map((c) => canonicalJson(c.data)));
      // linked as the recorder links them: the same hashes as linking the chunk events themselves
      const a = new HashChain(), b = new HashChain();
      const env = { time: ev.time, policyRev: 4, sourceJson: JSON.stringify(dataPlaneSource(ctx.region, ctx.node)), subjectJson: JSON.stringify(ctx.sessionId), typeJson: JSON.stringify(SessionEventType["statement.blocked"]) };
      texts.forEach((text, i) => {
        const linked = a.linkCanonical({ ...env, id: chunked[i]!.id }, text);
        assert.equal(linked.json, b.linkJson(chunked[i]!));
      });
      assert.equal((joinChunks(chunked)[0]!.data as { sql: string }).sql, sql);
    }),
    { numRuns: 12 },
  );
});

test("payloads are the proto3 JSON mapping of proto/sluice/v1/events.proto", async () => {
  const pb = await import("@sluice/proto");
  const allowed = {
    statementId: 7, sql: "SELECT * FROM orders WHERE id = $1", params: ["[REDACTED]", null], protocol: "extended",
    class: "read", tables: { read: ["public.orders"], write: ["audit.log"] }, risks: ["dynamic-sql"],
    statements: [{ kind: "SelectStmt", class: "read", tables: { read: ["public.orders"], write: ["x"] }, functions: ["now"], risks: ["grant"] }],
    decision: "allow", rule: "ci-read/allow:read", policy: "ci-read", reason: "allowed",
  };
  assert.deepEqual(pb.StatementEventData.toJSON(pb.StatementEventData.fromJSON(allowed)), allowed);
  const rows = { statementId: 7, columns: [{ name: "email", typeOid: 25, masked: true }], values: [["a***@x.com", null]], rows: 12, recorded: 1, truncated: true, recordedBytes: 10 };
  assert.deepEqual(pb.ResultRowsData.toJSON(pb.ResultRowsData.fromJSON(rows)), rows);
  const auth = { subject: "repo:acme/orders", issuer: "github", groups: ["ci"], claims: { repository: "acme/orders", run: 3, tags: ["a"] } };
  assert.deepEqual(pb.SessionAuthenticatedData.toJSON(pb.SessionAuthenticatedData.fromJSON(auth)), auth);
  const done = { statementId: 7, commandTag: "SELECT 12", rows: 12, durationMs: 1.5, error: { sqlstate: "57P03", message: "m" } };
  assert.deepEqual(pb.StatementCompletedData.toJSON(pb.StatementCompletedData.fromJSON(done)), done);
  // a completion carrying its captured rows (the two-events-per-statement form)
  const withRows = { statementId: 8, commandTag: "SELECT 1", rows: 1, durationMs: 0.2,
    results: [{ columns: [{ name: "email", typeOid: 25, masked: true, maskRule: "m", maskStrategy: "partial" }], values: [["a***@x.com"]], rows: 3, recorded: 1, truncated: true, recordedBytes: 10 }] };
  assert.deepEqual(pb.StatementCompletedData.toJSON(pb.StatementCompletedData.fromJSON(withRows)), withRows);
});
