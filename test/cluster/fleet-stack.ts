/**
 * A sluice fleet on a real NATS JetStream cluster (or supercluster), the way deploy/ runs one:
 * operator-mode NATS with the least-privilege roles (nats-auth.ts), every stream and bucket with 3
 * replicas, control-plane replicas as real `sluice control-plane` processes (each with its own read
 * model, one shared credentials file), data planes in this process with their own node
 * credentials, `manageStreams: false` and 1-second heartbeats, and a real PostgreSQL database.
 *
 *   const fleet = await startFleet(t, { clusters: [{ name: "eu" }], controlPlanes: ["eu", "eu"],
 *                                       dataPlanes: [{ node: "dp-eu-1", region: "eu" }, …] });
 */
import { spawn, type ChildProcess } from "node:child_process";
import { mkdtempSync, readFileSync, rmSync, writeFileSync } from "node:fs";
import { tmpdir } from "node:os";
import { join } from "node:path";
import type { TestContext } from "node:test";
import pg from "pg";
import { connect, credsAuthenticator, type NatsConnection } from "@nats-io/transport-node";
import { DeliverPolicy, jetstream } from "@nats-io/jetstream";
import { ApprovalServiceClient } from "@sluice/proto";
import { createDevIssuer, devIssuerSpec, type DevIssuer } from "@sluice/shared/auth";
import { defaultConfig, type SluiceConfig } from "@sluice/shared/config";
import { createLogger } from "@sluice/shared/logging";
import { createNatsAuth, natsNames, type NatsAuth } from "@sluice/shared/nats";
import type { Bundle } from "@sluice/shared/policy";
import { nodeNumberFromId, startDataPlaneNode, type DataPlaneNode } from "@sluice/data-plane";
import { devBundle, devResource, withDevParts } from "../../bin/lib/dev-bundle.js";
import { applyBundleText } from "../../bin/lib/dev-policy-client.js";
import { connectClient } from "../../bin/lib/grpc-client.js";
import { ensureDevCertificate, type DevCertificate } from "../../bin/lib/dev-tls.js";
import { startNatsCluster, type ClusterSpec, type NatsCluster } from "../lib/nats-cluster.js";
import { repoRoot, runSluice, type CliResult } from "../lib/run-sluice.js";

export const ADMIN_GROUP = "sluice-admins";
const PG_ADMIN = { host: "127.0.0.1", port: 5432, user: "postgres" } as const;

export interface FleetOptions {
  clusters: ClusterSpec[];
  /** one entry per control-plane replica: the NATS cluster whose servers it dials */
  controlPlanes: string[];
  /** `region` is the sluice region (subjects, fleet); `cluster` the NATS cluster it dials (default the first) */
  dataPlanes: Array<{ node: string; region: string; cluster?: string }>;
  /** where SLUICE_AUDIT (and the other streams and buckets) live; default the first cluster */
  home?: string;
  /** the bundle applied at start (dev issuer and the `app` resource are added) */
  policy?: Bundle;
}

export interface ControlPlaneProcess {
  readonly region: string;
  readonly grpcAddress: string;
  /** its HTTP listener (/healthz, /metrics) on 127.0.0.1 */
  readonly httpPort: number;
  readonly child: ChildProcess;
  /** SIGKILL: a crash */
  kill(): Promise<void>;
}

export interface Fleet {
  auth: NatsAuth;
  nats: NatsCluster;
  database: string;
  resource: string;
  issuer: DevIssuer;
  cert: DevCertificate;
  controlPlanes: ControlPlaneProcess[];
  dataPlanes: Map<string, DataPlaneNode>;
  /** an admin token of the dev issuer */
  adminToken: string;
  credsFile(who: "control-plane" | "auditor" | "fleet-reader" | string): string;
  /** a pg client through one data plane (TLS against the fleet's certificate) */
  connect(node: string, id?: { sub?: string; groups?: string[] }): Promise<pg.Client>;
  /** applies a bundle (dev parts added) through a live control plane; resolves with its revision */
  apply(policy: Bundle, via?: ControlPlaneProcess): Promise<number>;
  /** the applied bundle */
  bundle(): Bundle;
  /** an ApprovalService gRPC client against a control plane */
  approvals(cp: ControlPlaneProcess, token: string): ReturnType<typeof connectClient<ApprovalServiceClient>>;
  /** `sluice <args>` with the fleet's NATS (URL of `region`) and fleet-reader credentials in the environment */
  cli(args: string[], region?: string): Promise<CliResult>;
  /** every session event on SLUICE_AUDIT, read with the auditor's credentials */
  auditEvents(): Promise<Array<{ type: string; data: Record<string, unknown>; source: string }>>;
  /** a data plane crashes: its NATS connection and listener go without a goodbye (no fleet key removal) */
  crashDataPlane(node: string): Promise<void>;
  stop(): Promise<void>;
}

/** Auditor events may come one per message or as a batch (a JSON array): both are read. */
function eventsOf(data: Uint8Array): Array<{ type: string; data: Record<string, unknown>; source: string }> {
  const v = JSON.parse(new TextDecoder().decode(data)) as unknown;
  return (Array.isArray(v) ? v : [v]) as Array<{ type: string; data: Record<string, unknown>; source: string }>;
}

export async function startFleet(t: TestContext, o: FleetOptions): Promise<Fleet> {
  const id = Math.random().toString(36).slice(2, 8);
  const names = natsNames("");
  const home = o.home ?? o.clusters[0]!.name;
  const dir = mkdtempSync(join(tmpdir(), "sluice-fleet-"));
  const cleanups: Array<() => Promise<unknown>> = [];
  let stopped: Promise<void> | undefined;
  const stop = () => {
    stopped ??= (async () => {
      for (const c of cleanups.reverse()) await c().catch(() => undefined);
    })();
    return stopped;
  };
  t.after(stop);
  cleanups.push(async () => rmSync(dir, { recursive: true, force: true }));

  // NATS: operator mode with the sluice roles; one credentials file per process
  const auth = await createNatsAuth(names);
  const nats = await startNatsCluster(undefined, { clusters: o.clusters, authConfig: auth.serverConfig() });
  cleanups.push(() => nats.stop());
  const credsPath = (n: string) => join(dir, `${n}.creds`);
  writeFileSync(credsPath("control-plane"), await auth.issueUser({ role: "control-plane", name: "cp" }), { mode: 0o600 });
  writeFileSync(credsPath("auditor"), await auth.issueUser({ role: "auditor", name: "auditor" }), { mode: 0o600 });
  writeFileSync(credsPath("fleet-reader"), await auth.issueUser({ role: "fleet-reader", name: "pipeline" }), { mode: 0o600 });
  for (const d of o.dataPlanes) {
    writeFileSync(credsPath(d.node), await auth.issueUser({ role: "data-plane", name: d.node, region: d.region, node: d.node, cancel: nodeNumberFromId(d.node) }), { mode: 0o600 });
  }
  const dbg = (m: string) => process.env.SLUICE_FLEET_DEBUG && process.stderr.write(`[fleet ${new Date().toISOString()}] ${m}\n`);
  dbg("nats up");
  const cpAuth = { authenticator: credsAuthenticator(readFileSync(credsPath("control-plane"))), inboxPrefix: names.controlPlaneInbox("probe") };
  await Promise.all(o.clusters.map((c) => nats.waitForJetStream(c.name, cpAuth)));

  dbg("jetstream ready");
  // PostgreSQL
  const database = `sluice_fleet_${id}`;
  const admin = new pg.Client({ ...PG_ADMIN, database: "postgres" });
  await admin.connect();
  await admin.query(`CREATE DATABASE ${database}`).finally(() => admin.end());
  cleanups.push(async () => {
    const c = new pg.Client({ ...PG_ADMIN, database: "postgres" });
    await c.connect();
    await c.query(`DROP DATABASE IF EXISTS ${database} WITH (FORCE)`).finally(() => c.end());
  });

  const issuer = await createDevIssuer({ issuer: `https://dev.sluice.test/fleet-${id}`, audience: "sluice" });
  const issuerSpec = devIssuerSpec(issuer);
  const resource = "app";
  const res = devResource(resource, { host: PG_ADMIN.host, port: PG_ADMIN.port, database, user: PG_ADMIN.user });
  const adminToken = await issuer.mint({ sub: "fleet-admin", groups: [ADMIN_GROUP], ttlSec: 3600 });

  const natsFor = (cluster: string, credsFile: string): SluiceConfig["nats"] => ({
    ...defaultConfig().nats,
    url: nats.urls(cluster),
    replicas: 3,
    credsFile,
    placement: { cluster: home, tags: [] },
    auditPlacement: { cluster: home, tags: [] },
  });

  // control planes: real processes, as deployed
  const controlPlanes: ControlPlaneProcess[] = await Promise.all(
    o.controlPlanes.map(async (region, i) => {
      const cfg = defaultConfig();
      cfg.node = `cp-${i + 1}`;
      cfg.region = region;
      cfg.logLevel = process.env.SLUICE_LOG_LEVEL ?? "warn";
      cfg.nats = { ...natsFor(region, credsPath("control-plane")), manageStreams: true };
      cfg.controlPlane.grpcListen = "127.0.0.1:0";
      cfg.controlPlane.httpListen = "127.0.0.1:0";
      cfg.controlPlane.adminGroups = [ADMIN_GROUP];
      cfg.controlPlane.issuers = [issuerSpec];
      cfg.controlPlane.readModel = { dialect: "sqlite", url: join(dir, `read-model-${i + 1}.sqlite`) };
      const file = join(dir, `cp-${i + 1}.yaml`);
      writeFileSync(file, JSON.stringify(cfg));
      const child = spawn(process.execPath, [join(repoRoot, "bin/sluice.js"), "control-plane", "--config", file], {
        cwd: dir,
        env: { PATH: process.env.PATH ?? "", HOME: process.env.HOME ?? "/tmp" },
        stdio: ["ignore", "pipe", "pipe"],
      });
      let err = "";
      child.stderr!.on("data", (d: Buffer) => {
        if (err.length < 20_000) err += d.toString();
        if (process.env.SLUICE_FLEET_DEBUG) process.stderr.write(d.toString().replace(/^(?=.)/gm, `[cp-${i + 1}] `));
      });
      const exited = new Promise<void>((r) => child.once("exit", () => r()));
      cleanups.push(async () => {
        if (child.exitCode === null && child.signalCode === null) {
          child.kill("SIGTERM");
          const k = setTimeout(() => child.kill("SIGKILL"), 10_000);
          await exited;
          clearTimeout(k);
        }
      });
      const ready = await new Promise<{ grpc: string; http: number }>((resolve, reject) => {
        let out = "";
        const timer = setTimeout(() => reject(new Error(`control plane ${i + 1} not ready: ${err.slice(-800)}`)), 120_000);
        child.stdout!.on("data", (d: Buffer) => {
          out += d.toString();
          const m = /sluice control-plane ready grpc=(\S+) http=(\d+)/.exec(out);
          if (m) {
            clearTimeout(timer);
            resolve({ grpc: m[1]!, http: Number(m[2]) });
          }
        });
        child.once("exit", (code) => {
          clearTimeout(timer);
          reject(new Error(`control plane ${i + 1} exited with ${code}: ${err.slice(-800)}`));
        });
      });
      child.stdout!.resume();
      return {
        region,
        grpcAddress: ready.grpc,
        httpPort: ready.http,
        child,
        async kill() {
          child.kill("SIGKILL");
          await exited;
        },
      };
    }),
  );

  let current: Bundle = o.policy ? withDevParts(o.policy, issuerSpec, res) : devBundle(issuerSpec, res, ADMIN_GROUP);
  const liveCp = () => {
    const cp = controlPlanes.find((c) => c.child.exitCode === null && c.child.signalCode === null);
    if (!cp) throw new Error("no control plane is running");
    return cp;
  };
  dbg("control planes ready");
  const first = await applyBundleText(liveCp().grpcAddress, adminToken, JSON.stringify(current), "<fleet policy>");

  // data planes: least-privilege node credentials, they create nothing
  const cert = await ensureDevCertificate(join(dir, "tls"));
  const logger = createLogger({ level: process.env.SLUICE_LOG_LEVEL ?? "warn", name: `fleet-${id}` });
  const dataPlanes = new Map<string, DataPlaneNode>();
  await Promise.all(
    o.dataPlanes.map(async (d) => {
      const cfg = defaultConfig();
      cfg.node = d.node;
      cfg.region = d.region;
      cfg.nats = { ...natsFor(d.cluster ?? o.clusters[0]!.name, credsPath(d.node)), manageStreams: false };
      cfg.dataPlane.listen = "127.0.0.1:0";
      cfg.dataPlane.httpListen = "127.0.0.1:0";
      cfg.dataPlane.tls = { mode: "required", certFile: cert.certFile, keyFile: cert.keyFile };
      cfg.dataPlane.heartbeatSeconds = 1;
      cfg.dataPlane.controlPlaneUrl = controlPlanes[0]!.grpcAddress;
      const node = await startDataPlaneNode({ config: cfg, logger: logger.child({ node: d.node }) });
      dataPlanes.set(d.node, node);
      cleanups.push(() => node.stop());
      await node.snapshots.waitForRevision(first.revision, 90_000);
    }),
  );

  dbg("data planes ready");
  const clients = new Set<pg.Client>();
  cleanups.push(() => Promise.all([...clients].map((c) => c.end().catch(() => undefined))));
  const grpcClients: Array<{ close(): void }> = [];
  cleanups.push(async () => grpcClients.forEach((c) => c.close()));

  const auditorNc = async (): Promise<NatsConnection> =>
    connect({
      servers: nats.urls(home).split(","),
      authenticator: credsAuthenticator(readFileSync(credsPath("auditor"))),
      inboxPrefix: names.auditorInbox("auditor"),
    });

  return {
    auth,
    nats,
    database,
    resource,
    issuer,
    cert,
    controlPlanes,
    dataPlanes,
    adminToken,
    credsFile: credsPath,
    async connect(nodeId, who = {}) {
      const node = dataPlanes.get(nodeId);
      if (!node) throw new Error(`no data plane ${nodeId}`);
      const c = new pg.Client({
        host: node.host,
        port: node.port,
        database: resource,
        user: who.sub ?? "tester",
        password: await issuer.mint({ sub: who.sub ?? "tester", groups: who.groups ?? ["dev"], ttlSec: 600 }),
        ssl: { ca: readFileSync(cert.certFile), servername: "localhost" },
      });
      c.on("error", () => undefined);
      await c.connect();
      clients.add(c);
      c.once("end", () => clients.delete(c));
      return c;
    },
    async apply(policy, via) {
      const b = withDevParts(policy, issuerSpec, res);
      const r = await applyBundleText((via ?? liveCp()).grpcAddress, adminToken, JSON.stringify(b), "<fleet policy>");
      current = b;
      return r.revision;
    },
    bundle: () => current,
    approvals(cp, token) {
      const c = connectClient(ApprovalServiceClient, { server: cp.grpcAddress, token });
      grpcClients.push(c);
      return c;
    },
    cli(args, region = home) {
      return runSluice(args, { SLUICE_NATS_URL: nats.urls(region), SLUICE_NATS_CREDS: credsPath("fleet-reader"), SLUICE_CONTEXT: join(dir, "no-context.json") });
    },
    async auditEvents() {
      const nc = await auditorNc();
      try {
        const js = jetstream(nc);
        const jsm = await js.jetstreamManager();
        const last = (await jsm.streams.info(names.auditStream)).state.last_seq;
        const out: Array<{ type: string; data: Record<string, unknown>; source: string }> = [];
        if (last === 0) return out;
        const c = await js.consumers.get(names.auditStream, { deliver_policy: DeliverPolicy.All });
        const it = await c.consume();
        for await (const m of it) {
          out.push(...eventsOf(m.data));
          if (m.seq >= last) break;
        }
        return out;
      } finally {
        await nc.close();
      }
    },
    async crashDataPlane(nodeId) {
      const node = dataPlanes.get(nodeId);
      if (!node) throw new Error(`no data plane ${nodeId}`);
      // no heartbeat.stop (it would delete the key): the connection just goes away, like a SIGKILL
      await node.nc.close();
      await node.proxy.stop();
    },
    stop,
  };
}
