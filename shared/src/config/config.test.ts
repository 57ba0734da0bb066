import { test } from "node:test";
import assert from "node:assert/strict";
import { mkdtempSync, writeFileSync } from "node:fs";
import { tmpdir } from "node:os";
import { join } from "node:path";
import { loadConfig } from "./config.js";

function file(text: string): string {
  const p = join(mkdtempSync(join(tmpdir(), "sluice-config-")), "c.yaml");
  writeFileSync(p, text);
  return p;
}

test("nats cluster settings: replicas, credentials, TLS and placement from the file, replicas and creds from the environment", () => {
  const c = loadConfig(file(`nats:\n  url: nats://a:4222,nats://b:4222\n  replicas: 3\n  credsFile: /etc/sluice/nats.creds\n  tls: { caFile: /etc/sluice/nats-ca.pem }\n  auditPlacement: { cluster: eu, tags: [] }\n  manageStreams: false\n`), {});
  assert.equal(c.nats.replicas, 3);
  assert.equal(c.nats.credsFile, "/etc/sluice/nats.creds");
  assert.equal(c.nats.tls.caFile, "/etc/sluice/nats-ca.pem");
  assert.deepEqual(c.nats.auditPlacement, { cluster: "eu", tags: [] });
  assert.deepEqual(c.nats.placement, { cluster: "", tags: [] });
  assert.equal(c.nats.manageStreams, false);
  const e = loadConfig(undefined, { SLUICE_NATS_REPLICAS: "5", SLUICE_NATS_CREDS: "/x.creds", SLUICE_PUBLIC_ADDRESS: "db.eu.example.com:7432" });
  assert.equal(e.nats.replicas, 5);
  assert.equal(e.nats.credsFile, "/x.creds");
  assert.equal(e.dataPlane.publicAddress, "db.eu.example.com:7432");
  assert.equal(loadConfig(undefined, {}).nats.replicas, 1);
});

test("a replica count JetStream cannot use is refused with the key named", () => {
  assert.throws(() => loadConfig(file("nats: { replicas: 2 }\n"), {}), /nats\.replicas must be 1, 3 or 5, got 2/);
  assert.throws(() => loadConfig(undefined, { SLUICE_NATS_REPLICAS: "three" }), /SLUICE_NATS_REPLICAS must be 1, 3 or 5/);
  assert.throws(() => loadConfig(file("nats: { replicas: '3' }\n"), {}), /nats\.replicas must be number/);
});

test("dataPlane.upstreamPool: reuse on by default, each key settable, negative or zero time-outs refused with the key named", () => {
  const d = loadConfig(undefined, {}).dataPlane.upstreamPool;
  assert.equal(d.reuse, true);
  assert.equal(d.healthCheckAfterSeconds, 5);
  const c = loadConfig(file("dataPlane:\n  upstreamPool: { reuse: false, spares: 0, maxIdlePerResource: 5 }\n"), {}).dataPlane.upstreamPool;
  assert.deepEqual([c.reuse, c.spares, c.maxIdlePerResource, c.maxIdle], [false, 0, 5, d.maxIdle]);
  assert.throws(() => loadConfig(file("dataPlane:\n  upstreamPool: { maxIdle: -1 }\n"), {}), /dataPlane\.upstreamPool\.maxIdle must be a number ≥ 0/);
  assert.throws(() => loadConfig(file("dataPlane:\n  upstreamPool: { idleSeconds: 0 }\n"), {}), /dataPlane\.upstreamPool\.idleSeconds must be > 0/);
  assert.throws(() => loadConfig(file("dataPlane:\n  upstreamSpares: { max: 0 }\n"), {}), /unknown key dataPlane\.upstreamSpares/);
});
