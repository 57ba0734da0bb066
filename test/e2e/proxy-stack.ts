/**
 * Test fixture for the proxy e2e tests: a data plane on an ephemeral port with client TLS on a fresh
 * self-signed certificate, a dev OIDC issuer (inline JWKS), its own database on the shared PostgreSQL
 * (or a given upstream), and a captured log stream to check that no secret is ever logged.
 */
import type { TestContext } from "node:test";
import { Writable } from "node:stream";
import { randomBytes } from "node:crypto";
import pg from "pg";
import { createLogger } from "@sluice/shared/logging";
import { createDevIssuer, devIssuerSpec, type DevIssuer } from "@sluice/shared/auth";
import type { Bundle, PolicySnapshot, UpstreamSpec } from "@sluice/shared/policy";
import { startDataPlane, staticSnapshots, type DataPlane, type DataPlaneOptions, type Enforcer } from "@sluice/data-plane";
import { selfSignedCert } from "../lib/self-signed.js";

export const ADMIN_URL = process.env.SLUICE_TEST_PG_URL ?? "postgres://postgres@127.0.0.1:5432/postgres";

/** Allows everything except statements naming `forbidden_table` (the proxy's own protocol tests). */
export const testEnforcer: Enforcer = {
  decide(sql) {
    const denied = /forbidden_table/i.test(sql);
    return {
      action: denied ? "deny" : "allow",
      rule: denied ? "test/deny:forbidden_table" : "test/allow",
      policy: "test",
      reason: denied ? "forbidden_table is off limits" : "allowed",
      statementClass: denied ? "read" : "unknown",
      statementIndex: 0,
      statements: [],
    };
  },
};

export interface ProxyStack {
  dp: DataPlane;
  dev: DevIssuer;
  database: string;
  resource: string;
  certFile: string;
  logs: () => string;
  token(opts?: { sub?: string; groups?: string[] }): Promise<string>;
  /** a connected pg client through the proxy (TLS) */
  pgClient(token?: string, extra?: Partial<pg.ClientConfig>): Promise<pg.Client>;
  pgConfig(token: string): pg.ClientConfig;
  admin: pg.Client;
  /** runs SQL directly on the test database (bypassing the proxy) */
  direct(sql: string): Promise<pg.QueryResult>;
}

export async function createDatabase(t: TestContext, adminUrl = ADMIN_URL): Promise<{ name: string; admin: pg.Client }> {
  const name = `t_proxy_${randomBytes(5).toString("hex")}`;
  const admin = new pg.Client({ connectionString: adminUrl });
  await admin.connect();
  await admin.query(`CREATE DATABASE ${name}`);
  t.after(async () => {
    await admin.query(`DROP DATABASE IF EXISTS ${name} WITH (FORCE)`).catch(() => undefined);
    await admin.end().catch(() => undefined);
  });
  return { name, admin };
}

export async function startProxyStack(
  t: TestContext,
  opts: { upstream?: Partial<UpstreamSpec>; adminUrl?: string; dp?: Partial<DataPlaneOptions>; bundle?: (b: Bundle) => Bundle } = {},
): Promise<ProxyStack> {
  const { name, admin } = await createDatabase(t, opts.adminUrl);
  const { cert, key, certFile } = selfSignedCert();
  const dev = await createDevIssuer({ issuer: "http://127.0.0.1:9/proxy-test", audience: "sluice" });
  let bundle: Bundle = {
    issuers: [devIssuerSpec(dev)],
    resources: [{ name: "app", upstream: { host: "127.0.0.1", port: 5432, database: name, user: "postgres", tls: "disable", ...opts.upstream } }],
    policies: [{ name: "ci-all", groups: ["ci"], resources: ["app"], allow: ["read", "write", "ddl", "admin", "utility", "copy"] }],
    masking: [],
  };
  if (opts.bundle) bundle = opts.bundle(bundle);
  const snap: PolicySnapshot = { revision: 1, bundle, hash: "test", appliedBy: "test", appliedAt: new Date().toISOString() };
  const chunks: string[] = [];
  const sink = new Writable({
    write(c, _e, cb) {
      chunks.push(String(c));
      cb();
    },
  });
  const logger = createLogger({ level: "debug", destination: sink, name: "dp-test" });
  const dp = await startDataPlane({
    snapshots: staticSnapshots(snap),
    port: 0,
    httpPort: 0,
    tls: { cert, key },
    nodeId: "test-node",
    enforcer: testEnforcer,
    logger,
    ...opts.dp,
  });
  t.after(() => dp.stop());
  const pgConfig = (token: string): pg.ClientConfig => ({
    host: "127.0.0.1",
    port: dp.port,
    database: "app",
    user: "ci",
    password: token,
    ssl: { rejectUnauthorized: false },
  });
  const clients: pg.Client[] = [];
  t.after(async () => {
    await Promise.all(clients.map((c) => c.end().catch(() => undefined)));
  });
  const stack: ProxyStack = {
    dp,
    dev,
    database: name,
    resource: "app",
    certFile,
    logs: () => chunks.join(""),
    token: (o = {}) => dev.mint({ sub: o.sub ?? "repo:acme/orders", groups: o.groups ?? ["ci"] }),
    pgConfig,
    async pgClient(token, extra) {
      const c = new pg.Client({ ...pgConfig(token ?? (await stack.token())), ...extra });
      c.on("error", () => undefined);
      await c.connect();
      clients.push(c);
      return c;
    },
    admin,
    async direct(text) {
      const u = new URL(opts.adminUrl ?? ADMIN_URL);
      u.pathname = `/${name}`;
      const d = new pg.Client({ connectionString: u.toString() });
      await d.connect();
      try {
        return await d.query(text);
      } finally {
        await d.end();
      }
    },
  };
  return stack;
}
