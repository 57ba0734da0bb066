/**
 * Fail closed and recovery: a private nats-server is stopped in the middle of a load of record()
 * calls and started again on the same port and store. Every record() that the recorder confirmed
 * (ack: the promise resolved; async: the call returned) is on the stream afterwards, exactly once and
 * in chain order; while the server was down, new records were refused with `unavailable` once the
 * buffer was full.
 */
import { test } from "node:test";
import assert from "node:assert/strict";
import { setTimeout as sleep } from "node:timers/promises";
import { verifyChain, uuidv7, SessionEventType, type StatementAllowedData } from "@sluice/shared/events";
import { SluiceError } from "@sluice/shared/errors";
import { AuditPublisher, SessionRecorder, type AuditDurability } from "../../data-plane/src/recorder/index.js";
import { readStream, bySession, restartableAuditStream } from "./audit-recording-support.js";

const allowed = (n: number): StatementAllowedData => ({
  statementId: n, sql: `UPDATE orders SET n = n + 1 WHERE id = ${n}`, protocol: "simple", class: "write",
  tables: { read: [], write: ["orders"] }, risks: [], statements: [], decision: "allow", rule: "w/allow:write",
});

async function outageRun(t: import("node:test").TestContext, durability: AuditDurability) {
  // file storage: the stream survives the restart
  const nats = await restartableAuditStream(t, "outage");
  const { nc, names } = nats;
  // async queues a linger's worth of events (8 sessions × 2 events/ms × 5 ms) in normal operation
  const bufferEvents = durability === "ack" ? 60 : 600;
  const publisher = new AuditPublisher(nc, { durability, bufferEvents, names, region: "r1", node: "n1", publishTimeoutMs: 1000, ackWaitMs: 1000, retryMaxMs: 300 });
  t.after(() => publisher.close(2000).catch(() => undefined));

  /** statements a client would have seen succeed: sessionId → statement ids */
  const confirmed = new Map<string, number[]>();
  let refusedFull = 0, refusedAck = 0, pendingAtFirstRefusal = -1, refusedWhileUp = 0;
  let down = false, stop = false;

  const loop = async () => {
    const rec = new SessionRecorder(publisher, { sessionId: uuidv7(), region: "r1", node: "n1" });
    const ok: number[] = [];
    confirmed.set(rec.sessionId, ok);
    rec.record("session.started", { clientAddress: "127.0.0.1", resource: "orders", node: "n1", region: "r1", tls: { enabled: false } });
    for (let n = 1; !stop; n++) {
      let p: Promise<void> | undefined;
      try {
        p = rec.record("statement.allowed", allowed(n));
      } catch (e) {
        assert.ok(SluiceError.is(e, "unavailable"), String(e));
        assert.match((e as Error).message, /audit stream unavailable: statement refused \(fail closed\)/);
        if (refusedFull === 0) pendingAtFirstRefusal = publisher.pending;
        if (!down) refusedWhileUp++;
        refusedFull++;
        await sleep(20);
        continue;
      }
      try {
        if (p) await p;
      } catch (e) {
        // ack mode: no ack in time; the event stays queued and the statement is refused (57P03)
        assert.ok(SluiceError.is(e, "unavailable"), String(e));
        refusedAck++;
        rec.record("statement.completed", { statementId: n, rows: 0, durationMs: 0, error: { sqlstate: "57P03", message: (e as Error).message } });
        continue;
      }
      ok.push(n);
      rec.record("statement.completed", { statementId: n, commandTag: "UPDATE 1", rows: 1, durationMs: 0 });
      if (durability === "async") await sleep(1); // a client's round trip; keeps the loop from spinning
    }
  };

  const loops = Array.from({ length: 8 }, () => loop());
  t.after(async () => {
    stop = true;
    await Promise.allSettled(loops);
  });
  await sleep(400);
  const before = [...confirmed.values()].reduce((a, l) => a + l.length, 0);
  assert.ok(before > 0, "statements were recorded before the outage");

  down = true;
  await nats.stop();
  // keep loading until the buffer is full and records are being refused
  for (let i = 0; i < 400 && refusedFull < 5; i++) await sleep(50);
  assert.ok(refusedFull >= 5, `records were refused while NATS was down (full: ${refusedFull}, ack timeouts: ${refusedAck})`);
  // (async: a burst beyond the buffer waits for its batch while NATS is up: backpressure, not a refusal)
  assert.equal(refusedWhileUp, 0, "nothing was refused while NATS was up");
  assert.ok(pendingAtFirstRefusal >= bufferEvents - 1, `refused only once the buffer was full (pending ${pendingAtFirstRefusal})`);
  const confirmedWhileDown = [...confirmed.values()].reduce((a, l) => a + l.length, 0);

  await nats.restart();
  down = false;
  // recovers by itself: new statements succeed again
  for (let i = 0; i < 200 && [...confirmed.values()].reduce((a, l) => a + l.length, 0) < confirmedWhileDown + 50; i++) await sleep(50);
  stop = true;
  await Promise.all(loops);
  const after = [...confirmed.values()].reduce((a, l) => a + l.length, 0);
  assert.ok(after >= confirmedWhileDown + 50, `recording resumed after NATS came back (${confirmedWhileDown} → ${after})`);
  await publisher.flush(20_000);

  const stored = await readStream(nc, names.auditStream);
  assert.equal(new Set(stored.map((s) => s.ev.id)).size, stored.length, "every event exactly once");
  const sessions = bySession(stored);
  for (const [sessionId, ids] of confirmed) {
    const evs = sessions.get(sessionId) ?? [];
    assert.equal(verifyChain(evs), undefined, `session ${sessionId} chain`);
    const onStream = new Set(evs.filter((e) => e.type === SessionEventType["statement.allowed"]).map((e) => (e.data as StatementAllowedData).statementId));
    for (const n of ids) assert.ok(onStream.has(n), `confirmed statement ${n} of ${sessionId} is on the stream`);
  }
  return { before, confirmedWhileDown, after, refusedFull, refusedAck, stats: publisher.stats };
}

test("ack durability: NATS stops mid-load; confirmed statements all land, new ones are refused once the buffer is full, recovery is automatic", async (t) => {
  const r = await outageRun(t, "ack");
  assert.ok(r.refusedAck > 0, "statements waiting for an ack during the outage were refused");
  t.diagnostic(JSON.stringify(r));
});

test("async durability: NATS stops mid-load; every accepted record lands after the restart", async (t) => {
  const r = await outageRun(t, "async");
  assert.ok(r.confirmedWhileDown > r.before, "async mode accepted records while NATS was down (buffered, not refused)");
  // async waits for an ack only beyond the buffer while NATS is up: at most the one statement per
  // session that was waiting when NATS stopped is refused after its wait
  assert.ok(r.refusedAck <= 8, `async: ${r.refusedAck} statements refused after waiting`);
  t.diagnostic(JSON.stringify(r));
});
