/**
 * Child process of the benchmark: one real sluice data-plane node (the same composition as
 * `sluice data-plane`: KV snapshot watcher, policy enforcer on every statement, audit recorder to
 * JetStream, masking) in front of the bench's Postgres. Its policy snapshot is written straight into
 * the KV bucket under a private NATS prefix, as the control plane's projection would.
 *
 * Input: env SLUICE_BENCH_NODE (JSON of SluiceNodeOptions + prefix + readyFile). Output: readyFile
 * with { port, token, httpPort } (the token is a bench-only dev token). SIGTERM stops the node and
 * deletes the prefix's streams and buckets; the audit crash test kills it with SIGKILL instead.
 */
import { readFileSync, writeFileSync } from "node:fs";
import { connect } from "@nats-io/transport-node";
import { createDevIssuer, devIssuerSpec } from "@sluice/shared/auth";
import { defaultConfig } from "@sluice/shared/config";
import { canonicalJson } from "@sluice/shared/events";
import { createLogger } from "@sluice/shared/logging";
import { deleteAll, ensureSnapshotBucket, natsNames } from "@sluice/shared/nats";
import type { Bundle, PolicySnapshot } from "@sluice/shared/policy";
import { createHash } from "node:crypto";
import { startDataPlaneNode } from "@sluice/data-plane";
import type { SluiceNodeOptions } from "./sluice-node.js";

const o = JSON.parse(process.env.SLUICE_BENCH_NODE ?? "{}") as SluiceNodeOptions & { prefix: string; readyFile: string; natsUrl: string };
const log = createLogger({ level: "warn", name: o.name });

const dev = await createDevIssuer({ issuer: "http://127.0.0.1/sluice-bench", audience: "sluice" });
const token = await dev.mint({ sub: "bench-pipeline", groups: ["bench"], ttlSec: 6 * 3600 });
const bundle: Bundle = {
  issuers: [devIssuerSpec(dev)],
  groups: ["bench"],
  resources: [{ name: o.database, upstream: { host: "127.0.0.1", port: o.upstreamPort, database: o.database, user: "postgres", auth: "trust", tls: "disable" } }],
  policies: [{ name: "bench-read", groups: ["bench"], resources: [o.database], allow: ["read", "utility"] }],
  masking: o.masked
    ? [{ name: "bench-mask", resources: [o.database], columns: ["pgbench_accounts.filler", "pgbench_accounts.abalance"], strategy: "partial" }]
    : [],
};
const snapshot: PolicySnapshot = {
  revision: 1,
  bundle,
  hash: createHash("sha256").update(canonicalJson(bundle)).digest("hex"),
  appliedBy: "bench",
  appliedAt: new Date().toISOString(),
};

const nc = await connect({ servers: o.natsUrl });
const names = natsNames(o.prefix);
const kv = await ensureSnapshotBucket(nc, names);
await kv.put(names.snapshotKey, JSON.stringify(snapshot));

const config = defaultConfig();
config.nats = { ...config.nats, url: o.natsUrl, prefix: o.prefix };
config.node = o.name;
config.region = "bench";
config.logLevel = "warn";
config.dataPlane.listen = "127.0.0.1:0";
config.dataPlane.httpListen = "127.0.0.1:0";
config.dataPlane.audit.durability = o.durability;
if (o.bufferEvents !== undefined) config.dataPlane.audit.bufferEvents = o.bufferEvents;
if (o.reuse !== undefined) config.dataPlane.upstreamPool.reuse = o.reuse;
const node = await startDataPlaneNode({
  config,
  nc,
  logger: log,
  tls: { cert: readFileSync(o.cert.certFile), key: readFileSync(o.cert.keyFile) },
});
for (let i = 0; i < 100 && !node.snapshots.current(); i++) await new Promise((r) => setTimeout(r, 50));
if (!node.snapshots.current()) throw new Error("the node never saw its policy snapshot");
writeFileSync(o.readyFile, JSON.stringify({ port: node.port, token, httpPort: node.httpPort }), { mode: 0o600 });

let stopping = false;
async function stop() {
  if (stopping) return;
  stopping = true;
  await node.stop(0).catch(() => undefined);
  await deleteAll(nc, o.prefix).catch(() => undefined);
  await nc.close().catch(() => undefined);
  process.exit(0);
}
process.on("SIGTERM", () => void stop());
process.on("SIGINT", () => void stop());
