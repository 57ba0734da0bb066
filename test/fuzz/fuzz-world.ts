/**
 * The world a fuzz run happens in: a private PostgreSQL cluster that logs every statement it runs
 * (pg-cluster.ts `logStatements`), a whole sluice stack in front of it (harness.ts: own NATS prefix,
 * control plane, data plane with TLS), the fuzz policy, two databases with the same schema and seed
 * (the proxy's, and a reference that the same sequences reach directly), an audit collector on the
 * stack's stream and an approver.
 *
 * How the server's log is told apart (by design, never by loosening an oracle):
 *  - the resource's upstream role is `fuzz_app`; the world's own set-up, resets and log markers run
 *    as `postgres` on other connections;
 *  - each fuzz session connects with a unique application_name, which the proxy passes upstream;
 *    the log's `connection authorized` line gives the backend pid of each, so the proxy's masking
 *    catalog (application_name `sluice-masking-catalog`, its own connection) and the reference
 *    sessions (`fz-ref-…`) are other pids;
 *  - the proxy's poison statements for denials are syntax errors (and Execute of a portal that does
 *    not exist), which the server never logs as statements.
 */
import { randomBytes, randomUUID } from "node:crypto";
import { readFileSync } from "node:fs";
import { join } from "node:path";
import type { TestContext } from "node:test";
import pg from "pg";
import { ApprovalServiceClient, type GetApprovalResponse } from "@sluice/proto";
import { loadSqlParser } from "@sluice/shared/sql";
import { connectClient } from "../../bin/lib/grpc-client.js";
import { startStack, type Stack } from "../e2e/harness.js";
import { startPgCluster, STATEMENT_LOG_FILE, type PgCluster } from "../lib/pg-cluster.js";
import { StatementLog } from "../lib/statement-log.js";
import { PgWireClient } from "../lib/pg-wire-client.js";
import { startAuditCollector, type AuditCollector } from "./audit-collector.js";
import { FUZZ_POLICY, IDENTITIES, type IdentityName } from "./fuzz-policy.js";

export const UPSTREAM_ROLE = "fuzz_app";
export const REFERENCE_DB = "fuzz_reference";

/** The recognisable values the seed puts where a client must never see them raw. */
export interface Secrets {
  /** customers.email (masked) */
  emails: string[];
  /** customers.card (masked) */
  cards: string[];
  /** secrets.token (a denied table) */
  tokens: string[];
}

export interface FuzzWorld {
  cluster: PgCluster;
  stack: Stack;
  log: StatementLog;
  audit: AuditCollector;
  secrets: Secrets;
  /** the key of the `hash` masking strategy (a hook), so the oracles can compute masked parameters */
  hashKey: Buffer;
  /** a unique application_name for the next session */
  nextAppName(prefix: string): string;
  /** restores schema and seed in both databases */
  reset(): Promise<void>;
  /** a raw-frame session through the proxy (TLS) as one of the fuzz identities */
  connectProxy(identity: IdentityName, applicationName: string, timeoutMs?: number): Promise<PgWireClient>;
  /** a raw-frame session straight to the reference database, as the upstream role */
  connectReference(applicationName: string, timeoutMs?: number): Promise<PgWireClient>;
  /** waits until everything logged before now is in the statement log */
  syncLog(timeoutMs?: number): Promise<void>;
  approve(id: string): Promise<void>;
  reject(id: string): Promise<void>;
  /** the statement text the control plane holds for an approval request */
  approvalSql(id: string): Promise<string>;
  /** applies a policy (YAML) unless it is the one in force; resolves once the data plane serves it */
  usePolicy(yaml: string): Promise<void>;
  /** a pg session through the proxy that is never fuzzed: the node is still healthy if it answers */
  health: pg.Client;
  stop(): Promise<void>;
}

function luhnCard(): string {
  const digits = [4, ...Array.from(randomBytes(14), (b) => b % 10)];
  let sum = 0;
  for (let i = 0; i < 15; i++) {
    let d = digits[14 - i]!;
    if (i % 2 === 0) {
      d *= 2;
      if (d > 9) d -= 9;
    }
    sum += d;
  }
  return [...digits, (10 - (sum % 10)) % 10].join("");
}

const ALPHABET = "abcdefghijkmnpqrstuvwxyz23456789";
const token = (n: number): string => Array.from(randomBytes(n), (b) => ALPHABET[b % ALPHABET.length]).join("");

export function makeSecrets(): Secrets {
  return {
    emails: [1, 2, 3].map(() => `fzm${token(12)}@example.com`),
    cards: [1, 2, 3].map(luhnCard),
    tokens: [1, 2].map(() => `fzs${token(16)}`),
  };
}

const SCHEMA = `
CREATE TABLE items (id int PRIMARY KEY, name text NOT NULL, qty int NOT NULL CHECK (qty >= 0));
CREATE TABLE customers (id int PRIMARY KEY, email text, card text, note text);
CREATE TABLE secrets (id int PRIMARY KEY, token text);
ALTER TABLE items OWNER TO ${UPSTREAM_ROLE};
ALTER TABLE customers OWNER TO ${UPSTREAM_ROLE};
ALTER TABLE secrets OWNER TO ${UPSTREAM_ROLE};
GRANT CREATE ON SCHEMA public TO ${UPSTREAM_ROLE};
`;

function seedSql(s: Secrets): string {
  const q = (v: string) => `'${v.replace(/'/g, "''")}'`;
  return `
DROP TABLE IF EXISTS fz_tmp;
TRUNCATE items, customers, secrets;
INSERT INTO items VALUES (1, 'one', 3), (2, 'two', 7), (3, 'three', 0);
INSERT INTO customers VALUES ${s.emails.map((e, i) => `(${i + 1}, ${q(e)}, ${q(s.cards[i]!)}, 'note ${i + 1}')`).join(", ")};
INSERT INTO secrets VALUES ${s.tokens.map((t, i) => `(${i + 1}, ${q(t)})`).join(", ")};
`;
}

/** A TestContext stand-in for runs outside node:test (`npm run fuzz`): cleanups run at stop(). */
export function standaloneContext(): { t: TestContext; cleanup(): Promise<void> } {
  const fns: Array<() => unknown> = [];
  const t = { after: (fn: () => unknown) => void fns.push(fn), diagnostic: () => undefined } as unknown as TestContext;
  return {
    t,
    async cleanup() {
      for (const f of fns.reverse()) await f();
    },
  };
}

export async function startFuzzWorld(t: TestContext): Promise<FuzzWorld> {
  await loadSqlParser();
  const cluster = await startPgCluster({ logStatements: true, logPlans: true, maxConnections: 60, conf: ["lc_messages = 'C'"] });
  // one after-hook, in reverse order of start (the cluster last, once nothing uses it)
  const cleanups: Array<() => unknown> = [() => cluster.stop()];
  let stopping: Promise<void> | undefined;
  const stopAll = () => {
    stopping ??= (async () => {
      for (const c of cleanups.reverse()) {
        try {
          await c();
        } catch {
          // keep stopping the rest
        }
      }
    })();
    return stopping;
  };
  t.after(stopAll);
  const admin = new pg.Client({ connectionString: cluster.url() });
  await admin.connect();
  try {
    await admin.query(`CREATE ROLE ${UPSTREAM_ROLE} LOGIN`);
    await admin.query(`CREATE DATABASE ${REFERENCE_DB}`);
  } finally {
    await admin.end();
  }
  const secrets = makeSecrets();
  const hashKey = randomBytes(32);
  const stack = await startStack(t, {
    policy: FUZZ_POLICY,
    postgres: { host: cluster.host, port: cluster.port },
    upstreamUser: UPSTREAM_ROLE,
    setupSql: SCHEMA + seedSql(secrets),
    hooks: { maskingHashKey: hashKey },
    configure: (c) => {
      // a pooled connection is keyed by application_name, which is unique per fuzz session: none
      // would be reused, and the reset of one (DISCARD ALL) would be logged as the ended session's
      c.dataPlane.upstreamPool.spares = 0;
      c.dataPlane.upstreamPool.reuse = false;
      // room for captures above the 64 KiB that ride inside statement.completed, so the suite
      // meets result.rows events too (the default cap is those 64 KiB)
      c.dataPlane.audit.maxBytesPerStatement = 256 * 1024;
    },
  });
  cleanups.push(() => stack.stop());
  const ref = new pg.Client({ connectionString: cluster.url(REFERENCE_DB) });
  ref.on("error", () => undefined);
  await ref.connect();
  cleanups.push(() => ref.end());
  await ref.query(SCHEMA + seedSql(secrets));
  const marker = new pg.Client({ connectionString: cluster.url() });
  marker.on("error", () => undefined);
  await marker.connect();
  cleanups.push(() => marker.end());

  const log = new StatementLog(join(cluster.dataDir, STATEMENT_LOG_FILE));
  const audit = await startAuditCollector(stack.nc, stack.names.auditStream);
  cleanups.push(() => audit.stop());
  const dbaToken = await stack.token({ sub: "fz-approver", groups: ["fz-dba"] });
  const approvals = connectClient(ApprovalServiceClient, { server: stack.controlPlane.grpcAddress, token: dbaToken });
  cleanups.push(() => approvals.close());
  const health = await stack.connect({ sub: "fz-health", groups: [...IDENTITIES.reader.groups] });

  const runId = randomBytes(3).toString("hex");
  let n = 0;
  const tokens = new Map<IdentityName, string>();
  const tokenFor = async (id: IdentityName) => {
    let tk = tokens.get(id);
    if (!tk) {
      tk = await stack.token({ sub: IDENTITIES[id].sub, groups: [...IDENTITIES[id].groups], ttlSec: 6 * 3600 });
      tokens.set(id, tk);
    }
    return tk;
  };
  const ca = readFileSync(stack.cert.certFile);
  const seed = seedSql(secrets);
  let policy = FUZZ_POLICY;
  const world: FuzzWorld = {
    cluster,
    stack,
    log,
    audit,
    secrets,
    hashKey,
    health,
    nextAppName: (prefix) => `${prefix}-${runId}-${++n}`,
    async reset() {
      await Promise.all([stack.pgAdmin.query(seed), ref.query(seed)]);
    },
    async connectProxy(identity, applicationName, timeoutMs) {
      return PgWireClient.connect({
        timeoutMs,
        port: stack.port,
        tls: { ca, servername: "localhost" },
        params: { user: IDENTITIES[identity].sub, database: stack.resource, application_name: applicationName },
        password: await tokenFor(identity),
      });
    },
    connectReference(applicationName, timeoutMs) {
      return PgWireClient.connect({ timeoutMs, port: cluster.port, params: { user: UPSTREAM_ROLE, database: REFERENCE_DB, application_name: applicationName } });
    },
    syncLog: (timeoutMs) => log.sync((tok) => marker.query(`SELECT '${tok}'`), timeoutMs),
    async usePolicy(yaml) {
      if (yaml === policy) return;
      await stack.apply(yaml);
      policy = yaml;
    },
    async approve(id) {
      await approvals.call("approve", { id, reason: "fuzz", commandId: randomUUID() });
    },
    async reject(id) {
      await approvals.call("reject", { id, reason: "fuzz", commandId: randomUUID() });
    },
    async approvalSql(id) {
      const r = await approvals.call<unknown, GetApprovalResponse>("get", { id });
      return r.approval?.sql ?? "";
    },
    stop: stopAll,
  };
  return world;
}
