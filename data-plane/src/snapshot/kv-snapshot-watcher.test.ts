import { test } from "node:test";
import assert from "node:assert/strict";
import { mkdtempSync, rmSync, statSync } from "node:fs";
import { tmpdir } from "node:os";
import { join } from "node:path";
import { connect } from "@nats-io/transport-node";
import { Kvm } from "@nats-io/kv";
import { deleteAll, natsNames } from "@sluice/shared/nats";
import type { PolicySnapshot } from "@sluice/shared/policy";
import { startNatsServer } from "../../../bin/lib/dev-nats-server.js";
import { startKvSnapshotWatcher } from "./kv-snapshot-watcher.js";
import { staticSnapshotSource } from "./snapshot-source.js";

function snap(revision: number, policyName = `p${revision}`): PolicySnapshot {
  return {
    revision,
    bundle: {
      issuers: [],
      resources: [{ name: "db", upstream: { host: "127.0.0.1", port: 5432, database: "db", user: "u" } }],
      policies: [{ name: policyName, groups: ["g"], resources: ["db"], allow: ["read"] }],
      masking: [],
    },
    hash: `h${revision}`,
    appliedBy: "test",
    appliedAt: new Date(0).toISOString(),
  };
}

async function eventually<T>(fn: () => T | undefined, what: string, timeoutMs = 15_000): Promise<T> {
  const end = Date.now() + timeoutMs;
  for (;;) {
    const v = fn();
    if (v !== undefined && v !== false) return v;
    if (Date.now() > end) throw new Error(`timed out waiting for ${what}`);
    await new Promise((r) => setTimeout(r, 50));
  }
}

test("KV snapshot watcher: applies new revisions, ignores older ones, survives a NATS outage", async (t) => {
  const dir = mkdtempSync(join(tmpdir(), "sluice-snap-"));
  let server = await startNatsServer({ storeDir: join(dir, "js") });
  const port = server.port;
  t.after(async () => {
    await server.stop();
    rmSync(dir, { recursive: true, force: true });
  });
  const nc = await connect({ servers: server.url, maxReconnectAttempts: -1, reconnectTimeWait: 200 });
  t.after(() => nc.close());
  const names = natsNames("t" + Math.random().toString(36).slice(2, 8));
  const kv = await new Kvm(nc).create(names.snapshotBucket, { history: 5 });
  await kv.put(names.snapshotKey, JSON.stringify(snap(1)));

  const cacheFile = join(dir, "cache", "snapshot.json");
  const w = startKvSnapshotWatcher({ nc, prefix: names.prefix, cacheFile, retryMs: 100, pollMs: 0 });
  t.after(() => w.stop());
  const seen: number[] = [];
  w.onChange((s) => seen.push(s.revision));

  assert.equal((await w.ready(10_000)).revision, 1);
  assert.equal(w.status().origin, "kv");

  await kv.put(names.snapshotKey, JSON.stringify(snap(2)));
  await w.waitForRevision(2, 10_000);
  assert.equal(w.current()?.bundle.policies[0]?.name, "p2");

  // A lower revision (e.g. a stale writer) never rolls policy back.
  await kv.put(names.snapshotKey, JSON.stringify(snap(1, "stale")));
  await kv.put(names.snapshotKey, JSON.stringify(snap(3)));
  await w.waitForRevision(3, 10_000);
  assert.deepEqual(seen, [1, 2, 3]);
  assert.equal(statSync(cacheFile).mode & 0o777, 0o600);

  // NATS goes away: the last snapshot is still served.
  await server.stop();
  await eventually(() => !w.status().watching || undefined, "watch to notice the outage");
  assert.equal(w.current()?.revision, 3);
  assert.equal(w.revision(), 3);

  // The server comes back (same port, same store): new snapshots flow again without any help.
  server = await startNatsServer({ storeDir: join(dir, "js"), port });
  await eventually(() => w.status().watching || undefined, "watch to be re-established");
  const kvm2 = await connect({ servers: server.url });
  t.after(() => kvm2.close());
  const kv2 = await new Kvm(kvm2).open(names.snapshotBucket);
  await kv2.put(names.snapshotKey, JSON.stringify(snap(4)));
  await w.waitForRevision(4, 15_000);
  assert.deepEqual(seen, [1, 2, 3, 4]);
});

test("a malformed snapshot is ignored and the applied one kept", async (t) => {
  const nc = await connect({ servers: "nats://127.0.0.1:4222" });
  const names = natsNames("t" + Math.random().toString(36).slice(2, 8));
  const kv = await new Kvm(nc).create(names.snapshotBucket, { history: 5 });
  t.after(async () => {
    await kv.destroy();
    await nc.close();
  });
  await kv.put(names.snapshotKey, JSON.stringify(snap(1)));
  const w = startKvSnapshotWatcher({ nc, prefix: names.prefix, retryMs: 100, pollMs: 0 });
  t.after(() => w.stop());
  await w.ready(10_000);
  await kv.put(names.snapshotKey, "{not json");
  await kv.put(names.snapshotKey, JSON.stringify({ revision: 7, bundle: "nope" }));
  await kv.put(names.snapshotKey, JSON.stringify(snap(2)));
  await w.waitForRevision(2, 10_000);
  assert.equal(w.revision(), 2);
  assert.match(w.status().lastError ?? "", /bad snapshot/);
});

test("a restart while the bucket is unreachable serves the cached snapshot", async (t) => {
  const dir = mkdtempSync(join(tmpdir(), "sluice-snapcache-"));
  t.after(() => rmSync(dir, { recursive: true, force: true }));
  const cacheFile = join(dir, "snapshot.json");
  const nc = await connect({ servers: "nats://127.0.0.1:4222" });
  const names = natsNames("t" + Math.random().toString(36).slice(2, 8));
  // one hook, in this order: the watchers below may recreate the bucket after the test destroyed it,
  // so delete whatever exists under the prefix, then close the connection
  t.after(async () => {
    await deleteAll(nc, names).catch(() => undefined);
    await nc.close();
  });
  const kv = await new Kvm(nc).create(names.snapshotBucket, { history: 5 });
  await kv.put(names.snapshotKey, JSON.stringify(snap(5)));
  const w1 = startKvSnapshotWatcher({ nc, prefix: names.prefix, cacheFile, retryMs: 100, pollMs: 0 });
  await w1.waitForRevision(5, 10_000);
  await w1.stop();
  // a normal restart: the KV confirms the cached snapshot without a change notification
  const w1b = startKvSnapshotWatcher({ nc, prefix: names.prefix, cacheFile, retryMs: 100, pollMs: 0 });
  let changes = 0;
  w1b.onChange(() => changes++);
  assert.equal(w1b.status().origin, "cache");
  await eventually(() => (w1b.status().origin === "kv" ? true : undefined), "the KV to confirm the cache");
  assert.equal(changes, 0);
  await w1b.stop();
  // The bucket is gone (as good as NATS being unreachable for this node): the cache still serves.
  await kv.destroy();
  const w2 = startKvSnapshotWatcher({ nc, prefix: names.prefix, cacheFile, retryMs: 100, pollMs: 0 });
  assert.equal(w2.current()?.revision, 5);
  assert.equal(w2.status().origin, "cache");
  assert.equal((await w2.ready(1000)).revision, 5);
  await w2.stop();

  // A fresh bucket (streams reset) with a lower revision: the KV is authoritative over the cache.
  const kvNew = await new Kvm(nc).create(names.snapshotBucket, { history: 5 });
  await kvNew.put(names.snapshotKey, JSON.stringify(snap(2, "after-reset")));
  const w3 = startKvSnapshotWatcher({ nc, prefix: names.prefix, cacheFile, retryMs: 100, pollMs: 0 });
  t.after(() => w3.stop());
  assert.equal(w3.current()?.revision, 5);
  await eventually(() => (w3.status().origin === "kv" ? true : undefined), "the KV snapshot to replace the cached one");
  assert.equal(w3.current()?.bundle.policies[0]?.name, "after-reset");
  // from then on the usual rule holds: older KV values are ignored
  await kvNew.put(names.snapshotKey, JSON.stringify(snap(1, "older")));
  await kvNew.put(names.snapshotKey, JSON.stringify(snap(3)));
  await w3.waitForRevision(3, 10_000);
  assert.equal(w3.current()?.bundle.policies[0]?.name, "p3");
});

test("staticSnapshotSource serves a fixed snapshot and notifies on set", () => {
  const s = staticSnapshotSource(snap(1));
  const got: number[] = [];
  const off = s.onChange((x) => got.push(x.revision));
  s.set(snap(2));
  off();
  s.set(snap(3));
  assert.equal(s.current()?.revision, 3);
  assert.deepEqual(got, [2]);
});
