/**
 * The end-to-end harness: a whole sluice stack per test, isolated from every other test.
 *
 *   const stack = await startStack(t, { policy: yamlText });
 *   const client = await stack.connect({ groups: ["ci"] });   // pg.Client through the proxy, over TLS
 *
 * Each stack has its own NATS prefix on the shared server (127.0.0.1:4222), its own PostgreSQL database
 * (created, then dropped with FORCE), an in-process control plane and data plane on ephemeral ports,
 * and a dev OIDC issuer (`dev`, groups from the `groups` claim) that is always added to the bundle.
 * Everything is torn down in `t.after`, also when the test fails.
 *
 * Policy: the bundle's resources may refer to the test database through the resource name
 * `stack.resource` (default `app`): when the bundle has no resource by that name, the harness adds it
 * (upstream = the test database). Without `policy`, a permissive bundle allows every statement class
 * to the group `dev` (and the admin group).
 */
import { randomBytes } from "node:crypto";
import { mkdtempSync, readFileSync, rmSync } from "node:fs";
import { tmpdir } from "node:os";
import { join } from "node:path";
import type { TestContext } from "node:test";
import pg from "pg";
import { connect, type NatsConnection } from "@nats-io/transport-node";
import { startControlPlane, type RunningControlPlane } from "@sluice/control-plane";
import { createDevIssuer, devIssuerSpec, type DevIssuer } from "@sluice/shared/auth";
import { defaultConfig, type SluiceConfig } from "@sluice/shared/config";
import { createLogger } from "@sluice/shared/logging";
import { deleteAll, natsNames, type NatsNames } from "@sluice/shared/nats";
import type { Bundle } from "@sluice/shared/policy";
import { parse as parseYaml } from "yaml";
import { startDataPlaneNode, type DataPlaneHooks, type DataPlaneNode } from "@sluice/data-plane";
import { devBundle, devResource, withDevParts } from "../../bin/lib/dev-bundle.js";
import { applyBundleText } from "../../bin/lib/dev-policy-client.js";
import { ensureDevCertificate, type DevCertificate } from "../../bin/lib/dev-tls.js";

export const NATS_URL = process.env.SLUICE_TEST_NATS_URL ?? "nats://127.0.0.1:4222";
export const PG_ADMIN = { host: "127.0.0.1", port: 5432, user: "postgres" } as const;
export const ADMIN_GROUP = "sluice-admins";

export interface StackOptions {
  /** the bundle (object, or YAML/JSON text). The dev issuer and the test-database resource are added. */
  policy?: Bundle | string;
  /** TLS on the client listener (default true; false = plaintext loopback listener) */
  tls?: boolean;
  /** audit durability of the data plane (default "ack") */
  durability?: "ack" | "async";
  /** the resource name clients connect to (StartupMessage `database`); default "app" */
  resource?: string;
  /** SQL run on the test database (directly, as postgres) before the stack starts */
  setupSql?: string;
  /** replace proxy hooks (enforcer, audit, masker, approvals, verify, resolveSecret) */
  hooks?: DataPlaneHooks;
  /** change the data plane's config before it starts (e.g. maxFrameBytes, audit buffer) */
  configure?: (config: SluiceConfig) => void;
  /** node id of the data plane (default: random `dp-…`) */
  node?: string;
  /** the PostgreSQL server that holds the test database (superuser `postgres`, trust); default the machine's 127.0.0.1:5432 */
  postgres?: { host: string; port: number };
  /** the role the resource's upstream connects as, with trust auth (default `postgres`); it must exist on that server */
  upstreamUser?: string;
}

export interface Identity {
  /** JWT `sub` (default "tester") */
  sub?: string;
  /** groups claim (default ["dev"]) */
  groups?: string[];
  /** extra claims */
  claims?: Record<string, unknown>;
  /** token lifetime in seconds (default 600) */
  ttlSec?: number;
  /** resource to connect to (default the stack's resource) */
  database?: string;
  /** StartupMessage user (informational; default the sub) */
  user?: string;
  application_name?: string;
}

export interface Stack {
  /** the real PostgreSQL database behind the resource */
  database: string;
  /** the resource name clients connect to */
  resource: string;
  natsPrefix: string;
  names: NatsNames;
  /** a NATS connection of the harness (shared by both planes) */
  nc: NatsConnection;
  /** direct pool (as postgres) to the test database, bypassing sluice */
  pgAdmin: pg.Pool;
  issuer: DevIssuer;
  /** data plane: proxy, snapshot watcher, heartbeat, cancel router */
  dataPlane: DataPlaneNode;
  controlPlane: RunningControlPlane;
  /** a token of the admin group, for the control plane's gRPC API */
  adminToken: string;
  /** the self-signed certificate of the client listener (also its CA) */
  cert: DevCertificate;
  host: string;
  port: number;
  /** a JWT of the dev issuer */
  token(id?: Identity): Promise<string>;
  /** libpq URL (token as password, sslmode=require), e.g. for psql */
  connectionString(id?: Identity): Promise<string>;
  /** pg.ClientConfig for the proxy (TLS verified against the stack's certificate) */
  clientConfig(id?: Identity): Promise<pg.ClientConfig>;
  /** a connected pg.Client through the proxy; ended in t.after */
  connect(id?: Identity): Promise<pg.Client>;
  /** applies a bundle through the control plane (dev parts added); resolves with its revision once the data plane serves it */
  apply(policy: Bundle | string): Promise<number>;
  /** the bundle as applied last (with the dev parts) */
  bundle(): Bundle;
  /** stops everything (also done in t.after); idempotent */
  stop(): Promise<void>;
}

let certPromise: Promise<DevCertificate> | undefined;
function sharedCert(): Promise<DevCertificate> {
  certPromise ??= ensureDevCertificate(mkdtempSync(join(tmpdir(), "sluice-harness-tls-")));
  return certPromise;
}

/** A random lowercase id for prefixes, databases and nodes. */
export function randomId(n = 5): string {
  return randomBytes(n).toString("hex");
}

/**
 * The test's bundle, loosely read (the control plane validates the final document): missing lists are
 * empty, and every group a policy names is declared, since the dev issuer's `groups` claim can carry any.
 */
function toBundle(policy: Bundle | string): Bundle {
  const raw = (typeof policy === "string" ? parseYaml(policy) ?? {} : policy) as Partial<Bundle>;
  const b: Bundle = {
    ...raw,
    issuers: raw.issuers ?? [],
    resources: raw.resources ?? [],
    policies: raw.policies ?? [],
    masking: raw.masking ?? [],
  };
  const groups = new Set(b.groups ?? []);
  for (const p of b.policies) {
    for (const g of p.groups ?? []) groups.add(g);
    for (const g of p.approval?.approvers ?? []) groups.add(g);
  }
  groups.add(ADMIN_GROUP);
  b.groups = [...groups];
  return b;
}

export async function startStack(t: TestContext, o: StackOptions = {}): Promise<Stack> {
  const id = randomId();
  const natsPrefix = `t${id}`;
  const names = natsNames(natsPrefix);
  const database = `sluice_t_${id}`;
  const resource = o.resource ?? "app";
  const logger = createLogger({ level: process.env.SLUICE_LOG_LEVEL ?? "warn", name: `stack-${id}` });
  const cleanups: Array<() => Promise<unknown>> = [];
  let stopped: Promise<void> | undefined;
  const stop = () => {
    stopped ??= (async () => {
      for (const c of cleanups.reverse()) {
        try {
          await c();
        } catch (e) {
          logger.warn({ err: (e as Error).message }, "stack cleanup step failed");
        }
      }
    })();
    return stopped;
  };
  t.after(stop);

  // the test database
  const server = { ...PG_ADMIN, ...o.postgres };
  const admin = new pg.Client({ ...server, database: "postgres" });
  await admin.connect();
  try {
    await admin.query(`CREATE DATABASE ${database}`);
  } finally {
    await admin.end();
  }
  cleanups.push(async () => {
    const c = new pg.Client({ ...server, database: "postgres" });
    await c.connect();
    try {
      await c.query(`DROP DATABASE IF EXISTS ${database} WITH (FORCE)`);
    } finally {
      await c.end();
    }
  });
  const pgAdmin = new pg.Pool({ ...server, database, max: 4 });
  cleanups.push(() => pgAdmin.end());
  if (o.setupSql) await pgAdmin.query(o.setupSql);

  // NATS: one connection for both planes, a prefix of our own
  const nc = await connect({ servers: NATS_URL, name: `sluice-harness-${id}` });
  cleanups.push(() => nc.close());
  cleanups.push(() => deleteAll(nc, names));

  const issuer = await createDevIssuer({ issuer: `https://dev.sluice.test/${id}`, audience: "sluice" });
  const issuerSpec = devIssuerSpec(issuer);
  const res = devResource(resource, { host: server.host, port: server.port, database, user: o.upstreamUser ?? server.user });

  const cpConfig = defaultConfig();
  cpConfig.node = `cp-${id}`;
  cpConfig.nats = { ...cpConfig.nats, url: NATS_URL, prefix: natsPrefix };
  cpConfig.controlPlane.grpcListen = "127.0.0.1:0";
  cpConfig.controlPlane.httpListen = "127.0.0.1:0";
  cpConfig.controlPlane.adminGroups = [ADMIN_GROUP];
  cpConfig.controlPlane.issuers = [issuerSpec];
  const rmDir = mkdtempSync(join(tmpdir(), "sluice-harness-rm-"));
  cleanups.push(async () => rmSync(rmDir, { recursive: true, force: true }));
  cpConfig.controlPlane.readModel = { dialect: "sqlite", url: join(rmDir, "read-model.sqlite") };
  const controlPlane = await startControlPlane(cpConfig, { logger, nc, jetstream: { storage: "memory" } });
  cleanups.push(() => controlPlane.stop());
  const adminToken = await issuer.mint({ sub: "harness-admin", groups: [ADMIN_GROUP], ttlSec: 3600 });

  const cert = await sharedCert();
  const dpConfig = defaultConfig();
  dpConfig.node = o.node ?? `dp-${id}`;
  dpConfig.nats = { ...dpConfig.nats, url: NATS_URL, prefix: natsPrefix };
  dpConfig.dataPlane.listen = "127.0.0.1:0";
  dpConfig.dataPlane.httpListen = "127.0.0.1:0";
  dpConfig.dataPlane.tls = o.tls === false ? { mode: "disabled" } : { mode: "required", certFile: cert.certFile, keyFile: cert.keyFile };
  dpConfig.dataPlane.audit.durability = o.durability ?? "ack";
  dpConfig.dataPlane.controlPlaneUrl = controlPlane.grpcAddress;
  dpConfig.dataPlane.heartbeatSeconds = 2;
  o.configure?.(dpConfig);
  const dataPlane = await startDataPlaneNode({
    config: dpConfig,
    nc,
    logger,
    tls: o.tls === false ? "disabled" : { cert: readFileSync(cert.certFile), key: readFileSync(cert.keyFile) },
    hooks: o.hooks,
  });
  cleanups.push(() => dataPlane.stop());

  let current: Bundle = devBundle(issuerSpec, res, ADMIN_GROUP);
  const apply = async (policy: Bundle | string): Promise<number> => {
    const b = withDevParts(toBundle(policy), issuerSpec, res);
    const r = await applyBundleText(controlPlane.grpcAddress, adminToken, JSON.stringify(b), "<test policy>");
    current = b;
    await dataPlane.snapshots.waitForRevision(r.revision, 15_000);
    return r.revision;
  };
  await apply(o.policy ?? current);

  const token = (i: Identity = {}) =>
    issuer.mint({ sub: i.sub ?? "tester", groups: i.groups ?? ["dev"], claims: i.claims, ttlSec: i.ttlSec ?? 600 });
  const host = "127.0.0.1";
  const port = dataPlane.port;
  const clientConfig = async (i: Identity = {}): Promise<pg.ClientConfig> => ({
    host,
    port,
    database: i.database ?? resource,
    user: i.user ?? i.sub ?? "tester",
    password: await token(i),
    application_name: i.application_name,
    ssl: o.tls === false ? false : { ca: readFileSync(cert.certFile), servername: "localhost" },
  });
  const clients = new Set<pg.Client>();
  cleanups.push(async () => {
    await Promise.all([...clients].map((c) => c.end().catch(() => undefined)));
  });

  return {
    database,
    resource,
    natsPrefix,
    names,
    nc,
    pgAdmin,
    issuer,
    dataPlane,
    controlPlane,
    adminToken,
    cert,
    host,
    port,
    token,
    async connectionString(i: Identity = {}) {
      const tok = await token(i);
      const user = encodeURIComponent(i.user ?? i.sub ?? "tester");
      const q = new URLSearchParams({ sslmode: o.tls === false ? "disable" : "require" });
      if (i.application_name) q.set("application_name", i.application_name);
      return `postgresql://${user}:${tok}@${host}:${port}/${encodeURIComponent(i.database ?? resource)}?${q}`;
    },
    clientConfig,
    async connect(i: Identity = {}) {
      const c = new pg.Client(await clientConfig(i));
      // a proxy-side error on an idle client must not crash the test process
      c.on("error", () => undefined);
      await c.connect();
      clients.add(c);
      c.once("end", () => clients.delete(c));
      return c;
    },
    apply,
    bundle: () => current,
    stop,
  };
}
