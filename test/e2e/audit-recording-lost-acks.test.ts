/**
 * The publisher against a real nats-server through a proxy that loses PubAcks on purpose, delivers
 * others after the publish timed out (stored, but the publisher gave up waiting), and cuts the
 * connection in the middle of the load. Every event the lane took is on the stream exactly once, in
 * the order the lane took them (no gap, duplicate or reordering), and every statement whose
 * statement.allowed was confirmed is there. Then the same faults under the real proxy with real
 * clients (pg over TLS): every statement a client saw succeed is on the stream, in its order.
 */
import { test, type TestContext } from "node:test";
import assert from "node:assert/strict";
import { mkdtempSync, rmSync } from "node:fs";
import { tmpdir } from "node:os";
import { join } from "node:path";
import { setTimeout as sleep } from "node:timers/promises";
import { connect } from "@nats-io/transport-node";
import { SessionEventType, uuidv7, verifyChain, type StatementAllowedData } from "@sluice/shared/events";
import { ensureAuditStream, natsNames } from "@sluice/shared/nats";
import { startNatsServer } from "../../bin/lib/dev-nats-server.js";
import { AuditPublisher, SessionRecorder } from "../../data-plane/src/recorder/index.js";
import { isPubAck, startNatsInterposer } from "../lib/nats-interposer.js";
import { createAuditObserver } from "../../data-plane/src/recorder/index.js";
import { startProxyStack } from "./proxy-stack.js";
import { bySession, readStream, recorderOn } from "./audit-recording-support.js";

const allowed = (n: number): StatementAllowedData => ({
  statementId: n, sql: `SELECT ${n}`, protocol: "simple", class: "read", tables: { read: [], write: [] }, risks: [], statements: [], decision: "allow", rule: "r/allow:read",
});

/**
 * A private nats-server with a file-stored audit stream, a connection to it that reads what was
 * stored, and one through an interposer (which loses what its `decide` says) that reconnects forever.
 */
async function lossyAuditStream(t: TestContext, prefix: string) {
  const dir = mkdtempSync(join(tmpdir(), `sluice-${prefix}-`));
  const server = await startNatsServer({ storeDir: dir });
  t.after(async () => {
    await server.stop();
    rmSync(dir, { recursive: true, force: true });
  });
  const proxy = await startNatsInterposer(server.port);
  t.after(() => proxy.close());
  const names = natsNames(prefix);
  const reader = await connect({ servers: server.url });
  t.after(() => reader.close());
  await ensureAuditStream(reader, names);
  const nc = await connect({ servers: proxy.url, maxReconnectAttempts: -1, reconnectTimeWait: 50 });
  t.after(() => nc.close());
  return { proxy, names, reader, nc };
}

test("lost PubAcks, late PubAcks and a cut connection: the lane holds every event once, in order", async (t) => {
  const { proxy, names, reader, nc } = await lossyAuditStream(t, "lostacks");
  const publisher = new AuditPublisher(nc, {
    durability: "ack", names, region: "r1", node: "n1", bufferEvents: 10_000, publishTimeoutMs: 250, ackWaitMs: 10_000, retryMaxMs: 200,
  });
  t.after(() => publisher.close(5000).catch(() => undefined));
  // the order the lane took events in: what the stream must hold, exactly
  const taken: string[] = [];
  const enqueue = publisher.enqueue.bind(publisher);
  publisher.enqueue = (lane, events, mode) => {
    for (const e of events) taken.push((JSON.parse(e.json) as { id: string }).id);
    return enqueue(lane, events, mode);
  };

  let acks = 0;
  proxy.decide = (m) => {
    if (!isPubAck(m)) return "pass";
    acks++;
    if (acks % 13 === 4) return "drop";
    if (acks % 17 === 9) return { delayMs: 600 }; // stored, answered after the publish timed out
    return "pass";
  };

  const confirmed = new Map<string, number[]>();
  let stop = false;
  const loop = async () => {
    const rec = new SessionRecorder(publisher, { sessionId: uuidv7(), region: "r1", node: "n1" });
    const ok: number[] = [];
    confirmed.set(rec.sessionId, ok);
    rec.record("session.started", { clientAddress: "127.0.0.1", node: "n1", region: "r1", resource: "app", tls: { enabled: true } });
    for (let n = 1; !stop; n++) {
      await rec.record("statement.allowed", allowed(n));
      ok.push(n);
      rec.record("statement.completed", { durationMs: 0, rows: 1, statementId: n });
    }
  };
  const total = () => [...confirmed.values()].reduce((a, l) => a + l.length, 0);
  const loops = Array.from({ length: 8 }, () => loop());
  for (let i = 0; i < 600 && total() < 250; i++) await sleep(20);
  proxy.cut(); // a reconnect in the middle of the load (and of whatever batch was in flight)
  for (let i = 0; i < 1500 && total() < 600; i++) await sleep(20);
  stop = true;
  await Promise.all(loops);
  await publisher.flush(20_000);
  assert.ok(total() >= 600, `statements confirmed (${total()})`);
  assert.ok(proxy.dropped > 0 && proxy.delayed > 0, `acks lost ${proxy.dropped}, late ${proxy.delayed}`);
  assert.ok(publisher.stats.recovered > 0, "batches whose ack was lost were found stored");

  const stored = await readStream(reader, names.auditStream);
  assert.deepEqual(stored.map((s) => s.ev.id), taken, "every event the lane took: once, in order, no gap");
  assert.equal(new Set(stored.map((s) => s.subject)).size, 1, "one lane");
  const seqs = [...new Set(stored.map((s) => s.streamSeq))];
  assert.deepEqual(seqs, Array.from({ length: seqs.length }, (_, i) => i + 1), "contiguous stream sequences");
  const sessions = bySession(stored);
  for (const [sessionId, ids] of confirmed) {
    const evs = sessions.get(sessionId)!;
    assert.equal(verifyChain(evs), undefined, `chain of ${sessionId}`);
    const onStream = evs.filter((e) => e.type === SessionEventType["statement.allowed"]).map((e) => (e.data as StatementAllowedData).statementId);
    for (const n of ids) assert.ok(onStream.includes(n), `confirmed statement ${n} of ${sessionId} is on the stream`);
  }
  t.diagnostic(JSON.stringify({ confirmed: total(), dropped: proxy.dropped, delayed: proxy.delayed, stats: publisher.stats }));
});

test("through the proxy, ack durability: PubAcks lost and late and a cut connection; every statement a client saw succeed is on the stream, in order", async (t) => {
  const { proxy: nats, names, reader, nc } = await lossyAuditStream(t, "lostacksproxy");
  // the ack wait is long: a lost ack costs a look-up, never a refused statement
  const publisher = recorderOn(t, nc, names, "ack", { publishTimeoutMs: 250, ackWaitMs: 10_000 });
  const stack = await startProxyStack(t, { dp: { audit: createAuditObserver({ publisher, maxRowsPerStatement: 0, maxBytesPerStatement: 0 }) } });

  let acks = 0;
  nats.decide = (m) => {
    if (!isPubAck(m)) return "pass";
    acks++;
    if (acks % 11 === 3) return "drop";
    if (acks % 19 === 7) return { delayMs: 600 };
    return "pass";
  };
  const clients = 6;
  const succeeded: string[][] = Array.from({ length: clients }, () => []);
  let stop = false;
  const loop = async (c: number) => {
    const client = await stack.pgClient();
    for (let n = 1; !stop; n++) {
      const marker = `c${c}-${n}`;
      await client.query(`SELECT '${marker}' AS marker`); // must not fail: a lost ack is not an outage
      succeeded[c]!.push(marker);
    }
  };
  const total = () => succeeded.reduce((a, l) => a + l.length, 0);
  const loops = Array.from({ length: clients }, (_, c) => loop(c));
  t.after(async () => {
    stop = true;
    await Promise.allSettled(loops);
  });
  for (let i = 0; i < 1000 && total() < 150; i++) await sleep(20);
  nats.cut(); // mid-load, with a batch in flight
  for (let i = 0; i < 1500 && total() < 400; i++) await sleep(20);
  stop = true;
  await Promise.all(loops);
  assert.ok(total() >= 400, `statements succeeded (${total()})`);
  assert.ok(nats.dropped > 0 && nats.delayed > 0, `acks lost ${nats.dropped}, late ${nats.delayed}`);
  await publisher.flush(20_000);
  assert.ok(publisher.stats.recovered > 0, "batches whose ack was lost were found stored");

  const stored = await readStream(reader, names.auditStream);
  assert.equal(new Set(stored.map((s) => s.ev.id)).size, stored.length, "no event twice");
  const seqs = [...new Set(stored.map((s) => s.streamSeq))];
  assert.deepEqual(seqs, Array.from({ length: seqs.length }, (_, i) => i + 1), "contiguous stream sequences: no message lost or doubled");
  const byClient = new Map<number, string[]>();
  for (const [sessionId, evs] of bySession(stored)) {
    assert.equal(verifyChain(evs), undefined, `chain of ${sessionId}`);
    const markers = evs.filter((e) => e.type === SessionEventType["statement.allowed"])
      .map((e) => /'(c\d+-\d+)'/.exec((e.data as StatementAllowedData).sql)?.[1]).filter((m): m is string => m !== undefined);
    if (markers.length) byClient.set(Number(/^c(\d+)/.exec(markers[0]!)![1]), markers);
  }
  for (let c = 0; c < clients; c++) assert.deepEqual(byClient.get(c), succeeded[c], `client ${c}: every statement it saw succeed, once, in its order`);
  t.diagnostic(JSON.stringify({ succeeded: total(), dropped: nats.dropped, delayed: nats.delayed, stats: publisher.stats }));
});
