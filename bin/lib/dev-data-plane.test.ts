import { test } from "node:test";
import assert from "node:assert/strict";
import { mkdtempSync, rmSync } from "node:fs";
import { tmpdir } from "node:os";
import { join } from "node:path";
import { connect } from "@nats-io/transport-node";
import { defaultConfig } from "@sluice/shared/config";
import { SluiceError } from "@sluice/shared/errors";
import { deleteAll, ensureSnapshotBucket, natsNames } from "@sluice/shared/nats";
import { DevDataPlane } from "./dev-data-plane.js";
import { ensureDevCertificate } from "./dev-tls.js";

const NATS_URL = process.env.SLUICE_TEST_NATS_URL ?? "nats://127.0.0.1:4222";

function devConfig(prefix: string, tls: { certFile: string; keyFile: string }) {
  const cfg = defaultConfig();
  cfg.node = `dev-dp-${prefix}`;
  cfg.nats = { ...cfg.nats, url: NATS_URL, prefix };
  cfg.dataPlane.listen = "127.0.0.1:0";
  cfg.dataPlane.httpListen = "127.0.0.1:0";
  cfg.dataPlane.tls = { mode: "required", ...tls };
  return cfg;
}

test("the dev data plane's thread: a start failure crosses with its code and message, and the thread ends", async (t) => {
  const dir = mkdtempSync(join(tmpdir(), "sluice-dev-dp-"));
  t.after(() => rmSync(dir, { recursive: true, force: true }));
  const logs: string[] = [];
  const dp = new DevDataPlane({
    config: devConfig("unused", { certFile: join(dir, "absent.pem"), keyFile: join(dir, "absent.key") }),
    logLevel: "warn",
    snapshotCacheFile: join(dir, "snapshot.json"),
    log: (c) => logs.push(c),
  });
  await assert.rejects(dp.ready, (e: unknown) => SluiceError.is(e, "invalid_argument") && /cannot read TLS certificate or key/.test((e as Error).message));
  // the thread ended on its own account: a stop is no work and no error, and it was not "lost"
  assert.deepEqual(await dp.stop(1000, { flushMs: 1000 }), { undeliveredAuditEvents: 0 });
  const lost = await Promise.race([dp.lost.then(() => "lost"), new Promise((r) => setTimeout(() => r("not lost"), 200))]);
  assert.equal(lost, "not lost");
});

test("the dev data plane's thread serves, answers waitForRevision across the boundary, and stops", async (t) => {
  const dir = mkdtempSync(join(tmpdir(), "sluice-dev-dp-"));
  const prefix = "t" + Math.random().toString(36).slice(2, 10);
  const nc = await connect({ servers: NATS_URL });
  t.after(async () => {
    await deleteAll(nc, prefix).catch(() => undefined);
    await nc.close();
    rmSync(dir, { recursive: true, force: true });
  });
  const cert = await ensureDevCertificate(join(dir, "tls"));
  const dp = new DevDataPlane({ config: devConfig(prefix, cert), logLevel: "warn", snapshotCacheFile: join(dir, "snapshot.json"), log: () => undefined });
  t.after(() => dp.kill());
  const { port } = await dp.ready;
  assert.ok(port > 0 && dp.port === port);
  assert.equal(dp.auditPending(), 0);
  // no snapshot yet: the thread's timeout comes back as an error here
  await assert.rejects(dp.waitForRevision(1, 300), /no policy snapshot at revision 1/);
  // a snapshot written as the control plane's projection would: the thread sees it
  const kv = await ensureSnapshotBucket(nc, natsNames(prefix));
  await kv.put(natsNames(prefix).snapshotKey, JSON.stringify({ revision: 1, bundle: { issuers: [], resources: [], policies: [], masking: [] }, hash: "x", appliedBy: "t", appliedAt: new Date().toISOString() }));
  await dp.waitForRevision(1, 20_000);
  assert.deepEqual(await dp.stop(1000, { flushMs: 2000 }), { undeliveredAuditEvents: 0 });
  await assert.rejects(dp.waitForRevision(1, 100), (e: unknown) => SluiceError.is(e, "unavailable"));
});
