/**
 * The recorder against the real NATS on this machine (own prefix, memory stream): order, hash
 * chain, durability modes and chunking, driving SessionRecorder directly.
 */
import { test } from "node:test";
import assert from "node:assert/strict";
import {
  verifyChain, joinChunks, isChunkData, dataBytes, MAX_EVENT_DATA_BYTES, SessionEventType, uuidv7,
  type StatementAllowedData,
} from "@sluice/shared/events";
import { AuditPublisher, SessionRecorder, type AuditDurability } from "../../data-plane/src/recorder/index.js";
import { readStream, bySession, sharedAuditStream } from "./audit-recording-support.js";


async function setup(t: import("node:test").TestContext, durability: AuditDurability, bufferEvents = 50_000) {
  const { nc, names } = await sharedAuditStream(t);
  const publisher = new AuditPublisher(nc, { durability, bufferEvents, names, region: "eu-1", node: "node-a" });
  t.after(() => publisher.close(5000).catch(() => undefined));
  const session = (id = uuidv7()) => new SessionRecorder(publisher, { sessionId: id, region: "eu-1", node: "node-a", policyRev: 3 });
  return { nc, names, publisher, session };
}

const allowed = (n: number, sql: string): StatementAllowedData => ({
  statementId: n, sql, protocol: "simple", class: "read", tables: { read: ["public.orders"], write: [] }, risks: [],
  statements: [{ kind: "SelectStmt", class: "read", tables: { read: ["public.orders"], write: [] }, functions: [], risks: [] }],
  decision: "allow", rule: "ci-read/allow:read", policy: "ci-read",
});

test("ack durability: a session of 10,000 statements lands in order with a valid chain", async (t) => {
  const { nc, names, publisher, session } = await setup(t, "ack");
  const rec = session();
  rec.record("session.started", { clientAddress: "127.0.0.1", resource: "orders", node: "node-a", region: "eu-1", tls: { enabled: true } });
  const N = 10_000;
  for (let i = 1; i <= N; i++) {
    const p = rec.record("statement.allowed", allowed(i, `SELECT ${i} FROM orders`));
    assert.ok(p instanceof Promise, "ack mode gives the session something to wait on");
    await p;
    rec.record("statement.completed", { statementId: i, commandTag: "SELECT 1", rows: 1, durationMs: 0.1 });
  }
  rec.record("session.ended", { reason: "client_terminate", durationMs: 1, statements: N, bytesIn: 0, bytesOut: 0 });
  await publisher.flush(10_000);
  const stored = (await readStream(nc, names.auditStream, rec.subject)).filter((s) => s.ev.subject === rec.sessionId);
  assert.equal(stored.length, 2 * N + 2);
  const events = stored.map((s) => s.ev);
  assert.equal(verifyChain(events), undefined);
  // exactly once and in order: statement ids of the allowed events are 1..N
  const ids = events.filter((e) => e.type === SessionEventType["statement.allowed"]).map((e) => (e.data as StatementAllowedData).statementId);
  assert.deepEqual(ids, Array.from({ length: N }, (_, i) => i + 1));
  assert.equal(events[0]!.source, "sluice://eu-1/node-a");
  assert.ok(events.every((e) => e.subject === rec.sessionId && e.sluicepolicyrev === 3));
  assert.equal(publisher.stats.pending, 0);
});

test("ack durability: many concurrent sessions are pipelined and each stays in order", async (t) => {
  const { nc, names, publisher, session } = await setup(t, "ack");
  const S = 40, N = 150;
  const recs = Array.from({ length: S }, () => session());
  await Promise.all(recs.map(async (rec) => {
    for (let i = 1; i <= N; i++) {
      await rec.record("statement.allowed", allowed(i, `SELECT ${i}`));
      rec.record("statement.completed", { statementId: i, rows: 1, durationMs: 0 });
    }
  }));
  await publisher.flush(10_000);
  const sessions = bySession(await readStream(nc, names.auditStream));
  assert.equal(sessions.size, S);
  for (const rec of recs) {
    const evs = sessions.get(rec.sessionId)!;
    assert.equal(evs.length, 2 * N);
    assert.equal(verifyChain(evs), undefined);
  }
});

test("async durability: record returns synchronously and flush publishes everything in order", async (t) => {
  const { nc, names, publisher, session } = await setup(t, "async");
  const recs = [session(), session(), session()];
  const N = 3000;
  for (let i = 1; i <= N; i++) {
    for (const rec of recs) {
      assert.equal(rec.record("statement.allowed", allowed(i, `SELECT ${i}`)), undefined);
      rec.record("statement.completed", { statementId: i, rows: 0, durationMs: 0 });
    }
  }
  assert.ok(publisher.pending > 0, "events are queued, not published inline");
  await publisher.flush(20_000);
  const sessions = bySession(await readStream(nc, names.auditStream));
  for (const rec of recs) {
    const evs = sessions.get(rec.sessionId)!;
    assert.equal(evs.length, 2 * N);
    assert.equal(verifyChain(evs), undefined);
  }
});

test("a payload above 512 KiB is split into chunk events that reassemble and keep the chain", async (t) => {
  const { nc, names, publisher, session } = await setup(t, "ack");
  const rec = session();
  const big = "SELECT '" + "x\"y\\".repeat(300_000) + "'"; // ~1.2 MB, worst-case escaping
  await rec.record("statement.allowed", allowed(1, "SELECT 1"));
  await rec.record("statement.allowed", allowed(2, big));
  rec.record("statement.completed", { statementId: 2, rows: 1, durationMs: 1 });
  await publisher.flush();
  const stored = (await readStream(nc, names.auditStream, rec.subject)).filter((s) => s.ev.subject === rec.sessionId);
  const events = stored.map((s) => s.ev);
  assert.equal(verifyChain(events), undefined);
  const chunks = events.filter((e) => isChunkData(e.data));
  assert.ok(chunks.length >= 3, `expected chunks, got ${chunks.length}`);
  for (const c of chunks) {
    assert.ok(dataBytes(c.data) < MAX_EVENT_DATA_BYTES, `chunk data is ${dataBytes(c.data)} bytes`);
    assert.equal(c.type, SessionEventType["statement.allowed"]);
  }
  const logical = joinChunks(events);
  assert.equal(logical.length, 3);
  assert.equal((logical[1]!.data as StatementAllowedData).sql, big);
  assert.equal(publisher.stats.pending, 0);
});

test("async, a full buffer: a statement beyond it waits for its batch while NATS takes batches; beyond 1.5 times it, new work is refused before it takes a sequence number", async (t) => {
  const { nc, names, publisher, session } = await setup(t, "async", 10);
  const rec = session();
  for (let i = 1; i <= 10; i++) assert.equal(rec.record("statement.allowed", allowed(i, "SELECT 1")), undefined);
  // beyond the buffer: each waits for its own batch, as with ack (the statement is forwarded once stored)
  const waiting: Array<Promise<void> | undefined> = [];
  for (let i = 11; i <= 15; i++) waiting.push(rec.record("statement.allowed", allowed(i, "SELECT 1")));
  assert.ok(waiting.every((p) => p instanceof Promise), "a statement beyond the buffer waits");
  assert.throws(() => rec.record("statement.allowed", allowed(16, "SELECT 1")), (e: Error & { code?: string }) =>
    e.code === "unavailable" && /fail closed/.test(e.message));
  assert.equal(rec.lastSeq, 15, "the refused statement took no sequence number");
  // follow-up records of admitted work still have room
  rec.record("statement.completed", { statementId: 15, rows: 0, durationMs: 0 });
  assert.equal(rec.lastSeq, 16);
  await Promise.all(waiting);
  await publisher.flush();
  assert.equal(publisher.stats.refused, 1);
  const stored = (await readStream(nc, names.auditStream)).map((s) => s.ev).filter((e) => e.subject === rec.sessionId);
  assert.deepEqual(stored.map((e) => e.sluicesessionseq), Array.from({ length: 16 }, (_, i) => i + 1));
  assert.equal(verifyChain(stored), undefined);
});
