import { test } from "node:test";
import assert from "node:assert/strict";
import { natsFixture, publishEvents, SessionWriter, waitFor } from "../audit/testing.js";
import { readAuditMessages, readCheckpoints } from "../audit/stream-reader.js";
import { CHECKPOINT_GENESIS, checkpointHash, checkpointSignatureValid } from "./checkpoint.js";
import { lastCheckpoint, Sealer } from "./sealer.js";
import { generateSigningKey } from "./signing-key.js";
import { STREAM_GENESIS, messageDigest, streamChainStep } from "./stream-chain.js";

function traffic(n: number, writers: SessionWriter[]) {
  return Array.from({ length: n }, (_, i) => {
    const w = writers[i % writers.length]!;
    return { w, ev: w.event("session.statement.allowed", { i }) };
  });
}

test("one leader seals the audit stream; a standby takes over and continues the same chains", async (t) => {
  const f = await natsFixture(t, { leaseTtlMs: 1500 });
  const key = generateSigningKey();
  const mk = (holder: string) =>
    new Sealer({ nc: f.nc, names: f.names, leases: f.leases, key, everyEvents: 10, everySeconds: 0.3, holder, leaseTtlMs: 1500 });
  const a = mk("a").start();
  const b = mk("b").start();
  t.after(async () => {
    await a.stop();
    await b.stop();
  });
  const writers = [new SessionWriter("s-1"), new SessionWriter("s-2")];
  // batches of 3 events of both sessions: 25 events in 9 messages
  assert.equal(await publishEvents(f.nc, f.names, traffic(25, writers), 3), 9);
  await waitFor("checkpoint through 9", async () => ((await lastCheckpoint(f.nc, f.names))?.cp.lastSeq === 9 ? true : undefined));
  assert.equal([a, b].filter((s) => s.isLeader).length, 1, "exactly one leader");

  const [leader, standby] = a.isLeader ? [a, b] : [b, a];
  await leader.stop();
  assert.equal(await publishEvents(f.nc, f.names, traffic(7, writers), 3), 3);
  await waitFor("standby seals through 12", async () => ((await lastCheckpoint(f.nc, f.names))?.cp.lastSeq === 12 ? true : undefined));
  assert.equal(standby.isLeader, true);

  // the checkpoints form one chain over the whole stream, signed by the key, matching the events
  const cps = await readCheckpoints(f.nc, f.names);
  let prev = CHECKPOINT_GENESIS;
  let next = 1;
  let h = STREAM_GENESIS;
  const messages = [];
  for await (const m of readAuditMessages(f.nc, f.names)) messages.push(m);
  assert.equal(messages.length, 12);
  assert.equal(messages.reduce((n, m) => n + m.events!.length, 0), 32);
  for (const cp of cps) {
    assert.equal(cp.firstSeq, next);
    assert.equal(cp.count, cp.lastSeq - cp.firstSeq + 1);
    assert.equal(cp.prevCheckpointHash, prev);
    assert.equal(cp.keyId, key.keyId);
    assert.ok(checkpointSignatureValid(cp, key.publicKey));
    for (let s = cp.firstSeq; s <= cp.lastSeq; s++) h = streamChainStep(h, s, messageDigest(messages[s - 1]!.events));
    assert.equal(cp.chainHash, h, `chain hash at ${cp.lastSeq}`);
    prev = checkpointHash(cp);
    next = cp.lastSeq + 1;
  }
  assert.equal(next, 13);
});

test("a restarted sealer resumes after the last checkpoint", async (t) => {
  const f = await natsFixture(t);
  const key = generateSigningKey();
  const writers = [new SessionWriter("s-9")];
  await publishEvents(f.nc, f.names, traffic(12, writers));
  const first = new Sealer({ nc: f.nc, names: f.names, leases: f.leases, key, everyEvents: 5, everySeconds: 60, holder: "x", leaseTtlMs: 1500 }).start();
  await waitFor("two checkpoints", async () => ((await lastCheckpoint(f.nc, f.names))?.cp.lastSeq === 10 ? true : undefined));
  await first.stop(); // seals the 2 pending events on the way out
  assert.equal((await lastCheckpoint(f.nc, f.names))?.cp.lastSeq, 12);
  await publishEvents(f.nc, f.names, traffic(3, writers));
  const second = new Sealer({ nc: f.nc, names: f.names, leases: f.leases, key, everyEvents: 3, everySeconds: 60, holder: "y", leaseTtlMs: 1500 }).start();
  t.after(() => second.stop());
  await waitFor("resumed checkpoint", async () => ((await lastCheckpoint(f.nc, f.names))?.cp.lastSeq === 15 ? true : undefined));
  const cps = await readCheckpoints(f.nc, f.names);
  assert.deepEqual(cps.map((c) => [c.firstSeq, c.lastSeq]), [[1, 5], [6, 10], [11, 12], [13, 15]]);
});

test("a sealer never extends the chain from a checkpoint its key did not sign", async (t) => {
  const f = await natsFixture(t);
  const key = generateSigningKey();
  const writers = [new SessionWriter("s-f")];
  await publishEvents(f.nc, f.names, traffic(4, writers));
  const honest = new Sealer({ nc: f.nc, names: f.names, leases: f.leases, key, everyEvents: 2, everySeconds: 60, holder: "h", leaseTtlMs: 1500 }).start();
  await waitFor("sealed 4", async () => ((await lastCheckpoint(f.nc, f.names))?.cp.lastSeq === 4 ? true : undefined));
  await honest.stop();
  // someone with NATS access appends a checkpoint signed by another key
  const mallory = generateSigningKey();
  const prev = (await lastCheckpoint(f.nc, f.names))!;
  const { signCheckpoint } = await import("./checkpoint.js");
  const forged = signCheckpoint({ ...prev.cp, firstSeq: 5, lastSeq: 6, count: 2, prevCheckpointHash: checkpointHash(prev.cp), keyId: mallory.keyId }, mallory.privateKey);
  const { jetstream } = await import("@nats-io/jetstream");
  await jetstream(f.nc).publish(f.names.checkpointSubject("SLUICE_AUDIT"), JSON.stringify(forged));
  await publishEvents(f.nc, f.names, traffic(4, writers));
  const again = new Sealer({ nc: f.nc, names: f.names, leases: f.leases, key, everyEvents: 2, everySeconds: 60, holder: "h2", leaseTtlMs: 1500 }).start();
  t.after(() => again.stop());
  await waitFor("leadership", () => (again.isLeader ? true : undefined));
  await new Promise((r) => setTimeout(r, 1500));
  const cps = await readCheckpoints(f.nc, f.names);
  assert.equal(cps.length, 3, "nothing sealed on top of the forged checkpoint");
  assert.equal(cps.at(-1)!.keyId, mallory.keyId);
});
