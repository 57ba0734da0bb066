import test from "node:test";
import assert from "node:assert/strict";
import { randomBytes } from "node:crypto";
import { connect } from "@nats-io/transport-node";
import { DiscardPolicy, StorageType, jetstreamManager, jetstream } from "@nats-io/jetstream";
import { kvStreamName, natsNames } from "./nats-names.js";
import { deleteAll, ensureAll, ensureControlStream } from "./jetstream-setup.js";

const NATS_URL = process.env.SLUICE_TEST_NATS_URL ?? "nats://127.0.0.1:4222";

test("ensureAll creates the contract's streams and buckets, idempotently, and deleteAll removes them", async (t) => {
  const prefix = "t" + randomBytes(5).toString("hex");
  const names = natsNames(prefix);
  const nc = await connect({ servers: NATS_URL });
  t.after(async () => {
    await deleteAll(nc, prefix).catch(() => undefined);
    await nc.close();
  });
  const first = await ensureAll(nc, prefix, { fleetTtlMs: 30_000 });
  await first.snapshots.put("policy", "{}");
  const again = await ensureAll(nc, prefix, { fleetTtlMs: 30_000 });
  // idempotent: the existing bucket kept its value
  assert.equal((await again.snapshots.get("policy"))?.string(), "{}");

  const jsm = await jetstreamManager(nc);
  const control = (await jsm.streams.info(names.controlStream)).config;
  assert.deepEqual(control.subjects, [`${prefix}.sluice.control.>`]);
  assert.equal(control.deny_delete, true);
  assert.equal(control.deny_purge, true);
  assert.equal(control.storage, StorageType.File);
  assert.ok(control.duplicate_window >= 60e9, "a duplicate window for msg-id de-duplication");

  const audit = (await jsm.streams.info(names.auditStream)).config;
  assert.equal(audit.deny_delete, true);
  assert.equal(audit.deny_purge, true);
  assert.equal(audit.discard, DiscardPolicy.New);
  assert.equal(audit.storage, StorageType.File);
  assert.equal(audit.max_age, 0);

  const cps = (await jsm.streams.info(names.checkpointStream)).config;
  assert.equal(cps.deny_delete, true);
  assert.equal(cps.deny_purge, true);

  assert.ok((await first.snapshots.status()).history >= 10);
  assert.equal((await first.fleet.status()).ttl, 30_000);
  assert.ok((await first.leases.status()).ttl > 0);

  // evidence cannot be removed message by message or purged
  const ack = await jetstream(nc).publish(names.controlSubject("policy", "bundle"), "x");
  await assert.rejects(jsm.streams.deleteMessage(names.controlStream, ack.seq));
  await assert.rejects(jsm.streams.purge(names.controlStream));
  await assert.rejects(jsm.streams.purge(names.auditStream));

  // settings that drifted are brought back
  await jsm.streams.update(names.controlStream, { ...control, duplicate_window: 1e9 });
  await ensureControlStream(nc, names);
  assert.equal((await jsm.streams.info(names.controlStream)).config.duplicate_window, control.duplicate_window);

  await deleteAll(nc, prefix);
  const left = [];
  for await (const s of jsm.streams.list()) {
    if ([names.controlStream, names.auditStream, names.checkpointStream, kvStreamName(names.snapshotBucket)].includes(s.config.name)) left.push(s.config.name);
  }
  assert.deepEqual(left, []);
  await assert.rejects(deleteAll(nc, ""), /refuses/);
});
