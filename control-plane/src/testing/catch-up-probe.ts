/**
 * Measures what a control plane that starts on a large audit stream does to its command path
 * (issue 17): fills SLUICE_AUDIT of a private prefix with N events as a data plane records pgbench
 * (two events per statement, many sessions per message), starts the control plane on it, and while
 * the read model and the sealer catch up, times /healthz, PolicyService/Apply and an approval request
 * the way a data plane files one. Not a test: it prints figures.
 *
 *   nice node --import tsx control-plane/src/testing/catch-up-probe.ts [--events 1000000] [--prefix P --keep]
 *
 * --prefix reuses a filled prefix (with --keep it is not deleted afterwards).
 */
import { randomBytes, randomUUID } from "node:crypto";
import { mkdtempSync, rmSync } from "node:fs";
import { tmpdir } from "node:os";
import { join } from "node:path";
import { parseArgs } from "node:util";
import { connect } from "@nats-io/transport-node";
import { jetstream, jetstreamManager } from "@nats-io/jetstream";
import { credentials, Metadata, type ServiceError } from "@grpc/grpc-js";
import { NatsApprovalReply, NatsApprovalRequest, PolicyServiceClient } from "@sluice/proto";
import { createDevIssuer, devIssuerSpec } from "@sluice/shared/auth";
import { defaultConfig } from "@sluice/shared/config";
import { encodeBatch, uuidv7 } from "@sluice/shared/events";
import { createLogger } from "@sluice/shared/logging";
import { deleteAll, ensureAll, natsNames } from "@sluice/shared/nats";
import { startControlPlane } from "../control-plane.js";
import type { AuditApi } from "../audit/audit-component.js";
import { SessionScript, interleave } from "../audit/testing.js";
import { bundleYaml } from "./test-control-plane.js";

const { values: a } = parseArgs({ options: { events: { type: "string", default: "1000000" }, prefix: { type: "string" }, keep: { type: "boolean", default: false }, every: { type: "string", default: "500" } } });
const NATS_URL = process.env.SLUICE_TEST_NATS_URL ?? "nats://127.0.0.1:4222";
const prefix = a.prefix ?? "t" + randomBytes(5).toString("hex");
const names = natsNames(prefix);
const nc = await connect({ servers: NATS_URL, name: `catch-up-probe-${prefix}` });
const jsm = await jetstreamManager(nc);
console.log(`prefix ${prefix}`);

async function fill(total: number): Promise<void> {
  await ensureAll(nc, names, {});
  const js = jetstream(nc);
  const sessions = 16;
  const perMessage = 24;
  const t0 = Date.now();
  let published = 0;
  // in slices of sessions' statements so the whole run never sits in memory
  const perSlice = 2_000;
  let clock = Date.parse("2026-12-01T00:00:00Z");
  const scripts = Array.from({ length: sessions }, (_, i) => new SessionScript(randomUUID(), clock, "local", `node-${i % 2}`));
  for (const s of scripts) s.start(`repo:acme/bench-${s.sessionId.slice(0, 4)}`);
  let inFlight: Promise<unknown>[] = [];
  while (published < total) {
    for (const s of scripts) for (let k = 0; k < perSlice / sessions; k++) s.allowed(`SELECT abalance FROM pgbench_accounts WHERE aid = ${(k * 7919) % 100000}`, 1);
    const evs = interleave(scripts);
    for (const s of scripts) s.events.length = 0;
    for (let i = 0; i < evs.length && published < total; i += perMessage) {
      const batch = evs.slice(i, i + perMessage);
      inFlight.push(js.publish(names.auditSubject("local", "node-0", "probe-0"), encodeBatch(batch.map((e) => JSON.stringify(e))), { timeout: 60_000 }));
      published += batch.length;
      if (inFlight.length >= 64) {
        await Promise.all(inFlight);
        inFlight = [];
      }
    }
    clock += 1000;
  }
  await Promise.all(inFlight);
  const info = await jsm.streams.info(names.auditStream);
  console.log(`filled ${published} events in ${info.state.messages} messages (${(info.state.bytes / 1e6).toFixed(0)} MB) in ${((Date.now() - t0) / 1000).toFixed(1)} s`);
}

if (!a.prefix) await fill(Number(a.events));
const lastSeq = (await jsm.streams.info(names.auditStream)).state.last_seq;

const stateDir = mkdtempSync(join(tmpdir(), "sluice-catch-up-"));
const dev = await createDevIssuer({ issuer: `http://127.0.0.1/${prefix}`, audience: "sluice-control-plane" });
const config = defaultConfig();
config.nats = { ...config.nats, url: NATS_URL, prefix };
config.controlPlane.grpcListen = "127.0.0.1:0";
config.controlPlane.httpListen = "127.0.0.1:0";
config.controlPlane.adminGroups = ["sluice-admins"];
config.controlPlane.issuers = [devIssuerSpec(dev)];
config.controlPlane.readModel = { dialect: "sqlite", url: join(stateDir, "read-model.sqlite") };
const token = await dev.mint({ sub: "alice", groups: ["sluice-admins"] });
const logger = createLogger({ level: process.env.PROBE_LOG ?? "warn", name: "control-plane" });

const t0 = Date.now();
const cp = await startControlPlane(config, { logger });
console.log(`control plane started in ${Date.now() - t0} ms; audit stream last seq ${lastSeq}`);
const audit = cp.api<AuditApi>("audit");
const client = new PolicyServiceClient(cp.grpcAddress, credentials.createInsecure());
const probeNc = await connect({ servers: NATS_URL, name: `catch-up-probe-dp-${prefix}` });

const timed = async <T>(f: () => Promise<T>): Promise<{ ms: number; ok: boolean; err?: string }> => {
  const s = performance.now();
  try {
    await f();
    return { ms: performance.now() - s, ok: true };
  } catch (e) {
    return { ms: performance.now() - s, ok: false, err: String((e as Error).message).split("\n")[0] };
  }
};
let revision = 0;
const apply = () =>
  new Promise<void>((resolve, reject) => {
    const md = new Metadata();
    md.set("authorization", `Bearer ${token}`);
    const text = bundleYaml({ issuerUrl: dev.issuer, jwks: dev.jwks }).replace("masking: []", `masking: []\n# ${randomUUID()}\n`);
    client.apply({ bundleYaml: text, sourcePath: "p.yaml", expectedRevision: revision, commandId: uuidv7() }, md, { deadline: Date.now() + 30_000 }, (e: ServiceError | null, r: { revision: number }) => {
      if (e) reject(e);
      else {
        revision = r.revision;
        resolve();
      }
    });
  });
const approval = async () => {
  const req: NatsApprovalRequest = {
    idempotencyKey: randomUUID(), requester: { subject: "repo:acme/deploy", issuer: "dev", groups: ["deployers"] },
    binding: { fingerprint: "fp01", paramsHash: "ph01", sessionId: randomUUID(), resource: "orders" }, sql: "CREATE TABLE t (id int)",
    statementClass: "ddl", rule: "deployers/approve:ddl", policy: "deployers", approvers: ["dba"], timeoutMs: 600_000, node: "dp-probe", region: "local", statementId: 1, nodeStartedAt: "",
  };
  const r = NatsApprovalReply.decode((await probeNc.request(names.approvalRequestSubject, NatsApprovalRequest.encode(req).finish(), { timeout: 30_000 })).data);
  if (r.errorCode) throw new Error(r.errorMessage);
};
const healthz = async () => {
  const res = await fetch(`http://127.0.0.1:${cp.httpPort}/healthz`, { signal: AbortSignal.timeout(30_000) });
  await res.text();
};

const rows: string[] = [];
const every = Number(a.every);
let caughtUp = 0;
let sealed = 0;
for (let round = 0; ; round++) {
  const at = Date.now() - t0;
  const [h, p, ap] = [await timed(healthz), await timed(apply), await timed(approval)];
  const pos = audit?.projector.position ?? 0;
  const seal = audit?.sealer.status().sealedThrough ?? 0;
  rows.push(`${(at / 1000).toFixed(1).padStart(6)} s  read model ${String(pos).padStart(7)}/${lastSeq}  sealed ${String(seal).padStart(7)}  healthz ${h.ms.toFixed(0).padStart(6)} ms  apply ${p.ms.toFixed(0).padStart(6)} ms${p.ok ? "" : ` (${p.err})`}  approval ${ap.ms.toFixed(0).padStart(6)} ms${ap.ok ? "" : ` (${ap.err})`}`);
  console.log(rows.at(-1));
  if (!caughtUp && pos >= lastSeq) caughtUp = Date.now() - t0;
  if (!sealed && seal >= lastSeq) sealed = Date.now() - t0;
  if ((caughtUp && sealed) || at > 600_000) break;
  await new Promise((r) => setTimeout(r, every));
}
console.log(`read model caught up at ${caughtUp} ms, sealer at ${sealed} ms (from start)`);
client.close();
await cp.stop();
await probeNc.close();
if (!a.keep) await deleteAll(nc, prefix);
else console.log(`kept prefix ${prefix}`);
await nc.close();
rmSync(stateDir, { recursive: true, force: true });
