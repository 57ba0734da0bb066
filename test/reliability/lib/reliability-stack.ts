/**
 * The room a reliability scenario runs in, every part a real process on loopback: a private
 * nats-server (private-nats.ts) or a 3-server cluster (test/lib/nats-cluster.ts), a control plane and a data plane started through bin/sluice.js
 * with config files (sluice-process.ts), a database of its own on the machine's PostgreSQL or on a
 * private cluster (test/lib/pg-cluster.ts), and a dev OIDC issuer whose tokens the clients use.
 * The policy is applied through the control plane's API as an operator would. Everything is torn
 * down in t.after, whatever the scenario did to it.
 *
 * The data plane listens on fixed ports (chosen free at the start) so a restarted node is where its
 * clients look for it; the control plane likewise, so the node's controlPlaneUrl stays right.
 */
import type { TestContext } from "node:test";
import { mkdtempSync, readFileSync, rmSync, writeFileSync } from "node:fs";
import { tmpdir } from "node:os";
import { join } from "node:path";
import { randomBytes } from "node:crypto";
import pg from "pg";
import { connect, type NatsConnection } from "@nats-io/transport-node";
import { jetstreamManager } from "@nats-io/jetstream";
import { createDevIssuer, devIssuerSpec, type DevIssuer } from "@sluice/shared/auth";
import { defaultConfig, type SluiceConfig } from "@sluice/shared/config";
import { natsNames, type NatsNames } from "@sluice/shared/nats";
import type { Bundle, PolicySpec } from "@sluice/shared/policy";
import { applyBundleText } from "../../../bin/lib/dev-policy-client.js";
import { runSluice, type CliResult } from "../../lib/run-sluice.js";
import { selfSignedCert } from "../../lib/self-signed.js";
import type { CloudEvent } from "@sluice/shared/events";
import { scanAudit, type ScanFigures } from "./audit-scan.js";
import { startNatsCluster, type NatsCluster } from "../../lib/nats-cluster.js";
import { startPrivateNats, type PrivateNats } from "./private-nats.js";
import { SluiceProcess } from "./sluice-process.js";
import { stablePort } from "./stable-port.js";

export const ADMIN_GROUP = "sluice-admins";
const SHARED_PG = { host: "127.0.0.1", port: 5432 };

export interface UpstreamServer {
  host: string;
  port: number;
}

export interface ReliabilityStackOptions {
  label: string;
  durability?: "ack" | "async";
  /** dataPlane.audit.bufferEvents (default the config's 10,000) */
  bufferEvents?: number;
  /** where the resource points: default the machine's PostgreSQL (a private cluster or a relay for upstream faults) */
  upstream?: UpstreamServer;
  /** where the harness itself creates, reads and drops the database (default `upstream`) */
  adminServer?: UpstreamServer;
  /** without a control plane the harness writes nothing: the node then has no snapshot (default true) */
  controlPlane?: boolean;
  /** a 3-server NATS cluster (test/lib/nats-cluster.ts; every stream and bucket with 3 replicas) instead of one server */
  natsCluster?: boolean;
  /** lines inside the nats-server jetstream block, and its store directory (one server only) */
  natsJetstream?: string[];
  natsStoreDir?: string;
  /** extra policies (group `ci` may read, write and run utility statements already) */
  policies?: PolicySpec[];
  /** last word on the data plane's config */
  dataPlane?: (c: SluiceConfig) => void;
}

export interface ReliabilityStack {
  dir: string;
  /** the one nats-server (unless natsCluster) */
  nats: PrivateNats;
  /** the cluster (natsCluster) */
  cluster: NatsCluster | undefined;
  /** the scenario's own connection to NATS (reconnects forever) */
  nc: NatsConnection;
  names: NatsNames;
  database: string;
  upstream: UpstreamServer;
  dev: DevIssuer;
  adminToken: string;
  cp: SluiceProcess | undefined;
  cpAddress: string;
  dp: SluiceProcess;
  dpPort: number;
  dpHttpPort: number;
  token(o?: { sub?: string; groups?: string[] }): Promise<string>;
  pgConfig(token: string): pg.ClientConfig;
  /** a connected client through the data plane (its errors are caught: a fault may end it) */
  client(o?: { sub?: string; groups?: string[]; token?: string }): Promise<pg.Client>;
  /** SQL on the scenario's database, bypassing the proxy */
  direct(sql: string, params?: unknown[]): Promise<pg.QueryResult>;
  /** applies `policies` (plus the harness's own) through the control plane's API */
  apply(policies: PolicySpec[]): Promise<number>;
  /** the bundle `apply` would apply, as a file's text (JSON, which YAML reads) */
  bundleText(policies: PolicySpec[]): string;
  /** `sluice <args>` against this stack's control plane as the admin */
  cli(args: string[], env?: Record<string, string>): Promise<CliResult>;
  /** every event on the audit stream to `visit`, in stream order, read in bounded fetches (audit-scan.ts) */
  scanAudit(visit: (ev: CloudEvent) => void): Promise<ScanFigures>;
  /** /readyz of the data plane: its status code, or 0 when it does not answer */
  readyz(): Promise<number>;
  /**
   * How quickly the control plane and the NATS server answer now: the control plane's /healthz (its
   * event loop) and a JetStream API request of the scenario's own (the server's API queue). Tells a
   * control plane starved by the machine's load from one that is stuck. -1: no answer within 30 s.
   */
  probe(): Promise<{ controlPlaneHealthzMs: number; natsApiMs: number }>;
  /** the data plane's /metrics: name → value (labelled series summed), and `name{labels}` → value */
  metrics(): Promise<Record<string, number>>;
}

/** The ci group's policy: the load of every scenario. */
const CI_POLICY: PolicySpec = { name: "ci-load", groups: ["ci"], resources: ["app"], allow: ["read", "write", "utility"] };

async function httpStatus(url: string, ms = 2000): Promise<number> {
  try {
    const r = await fetch(url, { signal: AbortSignal.timeout(ms) });
    await r.text();
    return r.status;
  } catch {
    return 0;
  }
}

export async function startReliabilityStack(t: TestContext, o: ReliabilityStackOptions): Promise<ReliabilityStack> {
  const dir = mkdtempSync(join(tmpdir(), `sluice-rel-${o.label}-`));
  const cleanups: Array<() => Promise<unknown>> = [];
  t.after(async () => {
    for (const c of cleanups.reverse()) await c().catch(() => undefined);
    rmSync(dir, { recursive: true, force: true });
  });

  let nats: PrivateNats | undefined;
  let cluster: NatsCluster | undefined;
  if (o.natsCluster) {
    cluster = await startNatsCluster(undefined, { clusters: [{ name: "rel", size: 3 }], timeoutMs: 90_000 });
    cleanups.push(() => cluster!.stop());
    await cluster.waitForJetStream();
  } else {
    nats = await startPrivateNats(join(dir, "nats"), { storeDir: o.natsStoreDir, jetstream: o.natsJetstream });
    cleanups.push(() => nats!.kill());
  }
  const natsUrl = cluster ? cluster.urls() : nats!.url;
  const replicas = cluster ? 3 : 1;
  const nc = await connect({ servers: natsUrl.split(","), maxReconnectAttempts: -1, reconnectTimeWait: 250 });
  cleanups.push(() => nc.close());
  const names = natsNames("");

  // the database, dropped afterwards (a private cluster that is gone by then goes as a whole)
  const upstream = o.upstream ?? SHARED_PG;
  const adminServer = o.adminServer ?? upstream;
  const database = `sluice_rel_${o.label.replace(/\W/g, "_")}_${randomBytes(3).toString("hex")}`;
  const adminCfg = { host: adminServer.host, port: adminServer.port, user: "postgres", database: "postgres", connectionTimeoutMillis: 10_000 };
  const admin = new pg.Client(adminCfg);
  await admin.connect();
  await admin.query(`CREATE DATABASE ${database}`);
  await admin.end();
  cleanups.push(async () => {
    const c = new pg.Client(adminCfg);
    c.on("error", () => undefined);
    await c.connect();
    await c.query(`DROP DATABASE IF EXISTS ${database} WITH (FORCE)`).finally(() => c.end());
  });

  const dev = await createDevIssuer({ issuer: `https://dev.sluice.test/rel-${o.label}`, audience: "sluice" });
  const issuer = devIssuerSpec(dev);
  const adminToken = await dev.mint({ sub: "rel-admin", groups: [ADMIN_GROUP], ttlSec: 6 * 3600 });
  const resource = {
    name: "app",
    upstream: { host: upstream.host, port: upstream.port, database, user: "postgres", auth: "trust" as const, tls: "disable" as const },
  };
  const bundleOf = (policies: PolicySpec[]): Bundle => ({
    issuers: [issuer],
    resources: [resource],
    policies: [CI_POLICY, ...policies],
    masking: [],
    groups: ["ci", "deployers", "dba", ADMIN_GROUP],
  });

  const env = { SLUICE_LOG_LEVEL: process.env.SLUICE_RELIABILITY_LOG_LEVEL ?? "info", STATE_DIRECTORY: join(dir, "state") };
  const cpGrpcPort = await stablePort();
  const cpAddress = `127.0.0.1:${cpGrpcPort}`;
  let cp: SluiceProcess | undefined;
  let cpHttpPort = 0;
  if (o.controlPlane !== false) {
    const cfg = defaultConfig();
    cfg.node = "cp-1";
    cfg.region = "rel";
    cfg.nats = { ...cfg.nats, url: natsUrl, replicas };
    cfg.controlPlane.grpcListen = cpAddress;
    cpHttpPort = await stablePort();
    cfg.controlPlane.httpListen = `127.0.0.1:${cpHttpPort}`;
    cfg.controlPlane.adminGroups = [ADMIN_GROUP];
    cfg.controlPlane.issuers = [issuer];
    cfg.controlPlane.readModel = { dialect: "sqlite", url: join(dir, "read-model.sqlite") };
    cfg.controlPlane.console.enabled = false;
    const file = join(dir, "control-plane.json");
    writeFileSync(file, JSON.stringify(cfg));
    cp = new SluiceProcess({
      label: "control plane",
      args: ["control-plane", "--config", file],
      env,
      cwd: dir,
      ready: async (p) => p.runOutput().includes("sluice control-plane ready"),
    });
    await cp.start();
    cleanups.push(() => cp!.stop());
    await applyBundleText(cpAddress, adminToken, JSON.stringify(bundleOf(o.policies ?? [])), "<reliability>");
  }

  const cert = selfSignedCert(dir);
  const dpPort = await stablePort();
  const dpHttpPort = await stablePort();
  const dcfg = defaultConfig();
  dcfg.node = "dp-1";
  dcfg.region = "rel";
  dcfg.nats = { ...dcfg.nats, url: natsUrl, replicas };
  dcfg.dataPlane.listen = `127.0.0.1:${dpPort}`;
  dcfg.dataPlane.httpListen = `127.0.0.1:${dpHttpPort}`;
  dcfg.dataPlane.tls = { mode: "required", certFile: cert.certFile, keyFile: cert.keyFile };
  dcfg.dataPlane.controlPlaneUrl = cpAddress;
  dcfg.dataPlane.heartbeatSeconds = 1;
  dcfg.dataPlane.audit.durability = o.durability ?? "ack";
  if (o.bufferEvents !== undefined) dcfg.dataPlane.audit.bufferEvents = o.bufferEvents;
  o.dataPlane?.(dcfg);
  const dpFile = join(dir, "data-plane.json");
  writeFileSync(dpFile, JSON.stringify(dcfg));
  const dp = new SluiceProcess({
    label: "data plane",
    args: ["data-plane", "--config", dpFile, "--grace", "2"],
    env,
    cwd: dir,
    // ready = serving with a policy snapshot (503 "no policy snapshot" before)
    ready: async () => (await httpStatus(`http://127.0.0.1:${dpHttpPort}/readyz`)) === 200,
  });
  await dp.start();
  cleanups.push(() => dp.stop(5000));

  const clients = new Set<pg.Client>();
  cleanups.push(() => Promise.all([...clients].map((c) => c.end().catch(() => undefined))));
  const token = (w: { sub?: string; groups?: string[] } = {}) => dev.mint({ sub: w.sub ?? "repo:acme/load", groups: w.groups ?? ["ci"], ttlSec: 6 * 3600 });
  const pgConfig = (tok: string): pg.ClientConfig => ({
    host: "127.0.0.1",
    port: dpPort,
    database: "app",
    user: "ci",
    password: tok,
    ssl: { ca: readFileSync(cert.certFile), servername: "localhost" },
    connectionTimeoutMillis: 30_000,
  });

  return {
    dir,
    // (a cluster stack has no single server: touching `nats` there is a scenario's mistake)
    nats: nats ?? (undefined as unknown as PrivateNats),
    cluster,
    nc,
    names,
    database,
    upstream,
    dev,
    adminToken,
    cp,
    cpAddress,
    dp,
    dpPort,
    dpHttpPort,
    token,
    pgConfig,
    async client(w = {}) {
      const c = new pg.Client(pgConfig(w.token ?? (await token(w))));
      c.on("error", () => undefined);
      await c.connect();
      clients.add(c);
      c.once("end", () => clients.delete(c));
      return c;
    },
    async direct(sql, params) {
      const c = new pg.Client({ ...adminCfg, database });
      c.on("error", () => undefined);
      await c.connect();
      try {
        return await c.query(sql, params);
      } finally {
        await c.end().catch(() => undefined);
      }
    },
    async apply(policies) {
      const r = await applyBundleText(cpAddress, adminToken, JSON.stringify(bundleOf(policies)), "<reliability>");
      return r.revision;
    },
    bundleText: (policies) => JSON.stringify(bundleOf(policies), null, 2),
    cli(args, extra = {}) {
      return runSluice(args, { SLUICE_CONTROL_PLANE: cpAddress, SLUICE_TOKEN: adminToken, SLUICE_CONTEXT: join(dir, "no-context.json"), ...extra });
    },
    scanAudit: (visit) => scanAudit(nc, names.auditStream, visit),
    readyz: () => httpStatus(`http://127.0.0.1:${dpHttpPort}/readyz`),
    async probe() {
      const timed = async (f: () => Promise<unknown>) => {
        const t0 = Date.now();
        try {
          await f();
          return Date.now() - t0;
        } catch {
          return -1;
        }
      };
      const controlPlaneHealthzMs = cpHttpPort
        ? await timed(async () => {
            const r = await fetch(`http://127.0.0.1:${cpHttpPort}/healthz`, { signal: AbortSignal.timeout(30_000) });
            await r.text();
          })
        : -1;
      const jsm = await jetstreamManager(nc, { timeout: 30_000 });
      const natsApiMs = await timed(() => jsm.streams.info(names.controlStream));
      return { controlPlaneHealthzMs, natsApiMs };
    },
    async metrics() {
      const text = await (await fetch(`http://127.0.0.1:${dpHttpPort}/metrics`, { signal: AbortSignal.timeout(5000) })).text();
      const out: Record<string, number> = {};
      for (const line of text.split("\n")) {
        const m = /^([a-zA-Z_:][\w:]*)(?:\{[^}]*\})? ([\d.eE+-]+|NaN)$/.exec(line.trim());
        if (!m) continue;
        out[m[1]!] = (out[m[1]!] ?? 0) + Number(m[2]);
        const labels = /\{([^}]*)\}/.exec(line)?.[1];
        if (labels) out[`${m[1]}{${labels}}`] = Number(m[2]);
      }
      return out;
    },
  };
}
