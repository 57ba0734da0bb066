/**
 * A result that cannot be masked is refused before the statement runs, as a statement error: the
 * client gets 42501 for that statement, the session goes on, the server never ran it, and the audit
 * records it as blocked (findings 017 and 018, issue 13). Cases: COPY TO STDOUT in CSV or binary of
 * masked columns (simple and extended protocol, alone and among other statements), a binary-format
 * result column of a type the masker cannot rewrite (a Bind asking for binary results has its
 * portal described first), a BINARY cursor; and the orderings that once let such a COPY through
 * raw: after a failed Describe, with the Query sent before and after the error arrived (the
 * server skips the Query until Sync), after a server error earlier in the pipeline.
 *
 * Raw protocol frames through the real proxy to a private PostgreSQL cluster that logs every
 * statement it runs.
 */
import { test, type TestContext } from "node:test";
import assert from "node:assert/strict";
import { readFileSync } from "node:fs";
import { join } from "node:path";
import type { Bundle } from "@sluice/shared/policy";
import { noopAudit, type AuditSink, type StatementCompletion, type StatementRecord } from "@sluice/data-plane";
import { bind, describe, execute, flush, parse, query, sync } from "../../data-plane/src/wire/encode.js";
import { startPgCluster, type PgCluster } from "../lib/pg-cluster.js";
import { firstError, rawConnect, shown, type RawClient, type RawMessage } from "../lib/raw-pg-client.js";
import { startProxyStack } from "./proxy-stack.js";

const EMAIL = "carol.private@example.com";
const BORN = "1971-02-03";
const BINARY_COPY = "COPY (SELECT email FROM customers) TO STDOUT (FORMAT binary)";
const CSV_COPY = "COPY customers TO STDOUT (FORMAT csv)";

test("masking refusals are statement errors decided before the statement runs", { timeout: 240_000 }, async (t) => {
  const cluster = await startPgCluster({ conf: ["log_statement = 'all'", "log_line_prefix = '[%d] '", "log_min_messages = warning"] });
  t.after(() => cluster.stop());
  await t.test("through the proxy", (t2) => refusals(t2, cluster));
});

async function refusals(t: TestContext, cluster: PgCluster): Promise<void> {
  const allowed: StatementRecord[] = [];
  const blocked: StatementRecord[] = [];
  const completions: StatementCompletion[] = [];
  const audit: AuditSink = {
    ...noopAudit,
    statementAllowed: (_s, r) => void allowed.push(r),
    statementBlocked: (_s, r) => void blocked.push(r),
    statementCompleted: (_s, d) => void completions.push(d),
  };
  const s = await startProxyStack(t, {
    adminUrl: cluster.url(),
    upstream: { port: cluster.port },
    dp: { enforcer: undefined, audit, auditFeatures: { decodeParams: true, captureRows: 0 }, maskingHashKey: Buffer.from("refusal-key") },
    bundle: (b): Bundle => ({
      ...b,
      policies: [{ name: "loaders", groups: ["loaders"], resources: ["app"], allow: ["read", "write", "copy", "utility"] }],
      masking: [{ resources: ["app"], columns: ["customers.email", "customers.born"], classifiers: ["email"], strategy: "redact" }],
    }),
  });
  await s.direct(`
    CREATE TABLE customers (id int PRIMARY KEY, email text, born date);
    INSERT INTO customers VALUES (1, '${EMAIL}', '${BORN}');
    CREATE TABLE items (id int PRIMARY KEY);
    INSERT INTO items SELECT generate_series(1, 3);`);
  const log = serverLog(cluster, s.database);
  const connect = async (): Promise<RawClient> => {
    const c = await rawConnect({ port: s.dp.port, database: "app", user: "loader", password: await s.token({ sub: "loader", groups: ["loaders"] }), tls: true });
    t.after(() => c.end());
    return c;
  };
  const raw = (ms: RawMessage[]) => Buffer.concat(ms.map((m) => m.raw)).toString("latin1");
  const noRaw = (ms: RawMessage[]) => {
    const text = raw(ms);
    assert.ok(!text.includes(EMAIL), `a raw masked value reached the client: ${shown(ms).join(" ")}`);
  };
  /** the session goes on: a statement after the refusal is answered on the same connection */
  const goesOn = async (c: RawClient) => {
    c.send(query("SELECT count(*) FROM items"));
    assert.deepEqual(shown(await c.untilReady()), ["T:count", "D:3", "C:SELECT 1", "Z:I"]);
  };
  /** the refusal of the last blocked statement names masking and the reason */
  const lastRefusal = (sql: string | RegExp, reason: RegExp) => {
    const b = blocked.at(-1)!;
    if (typeof sql === "string") assert.equal(b.sql, sql);
    else assert.match(b.sql, sql);
    assert.equal(b.decision.rule, "masking");
    assert.match(b.decision.reason, reason);
  };
  const refusedMessage = (ms: RawMessage[], reason: RegExp) => {
    const e = firstError(ms)!;
    assert.equal(e.C, "42501");
    assert.equal(e.S, "ERROR", "a statement error, never FATAL");
    assert.equal(e.D, "sluice rule: masking");
    assert.match(e.M!, reason);
  };

  await t.test("COPY TO STDOUT in binary or CSV of masked columns: 42501, nothing ran, recorded as blocked, the session goes on", async () => {
    const c = await connect();
    for (const [sql, format] of [[BINARY_COPY, "binary"], [CSV_COPY, "csv"]] as const) {
      const allowedBefore = allowed.length;
      c.send(query(sql));
      const got = await c.untilReady();
      assert.deepEqual(shown(got), ["E:42501", "Z:I"], sql);
      refusedMessage(got, new RegExp(`COPY TO STDOUT of a result with masking rules is not allowed in ${format} format`));
      lastRefusal(sql, /only the text format can be masked/);
      assert.equal(allowed.length, allowedBefore, "a refused statement is not recorded as allowed");
      await goesOn(c);
    }
    assert.deepEqual(log.ran(/^COPY/), []);
    // the text format is masked, row by row
    c.send(query("COPY (SELECT id, email FROM customers) TO STDOUT"));
    const text = await c.untilReady();
    assert.deepEqual(shown(text), ["H", "d:1\t[REDACTED]", "c", "C:COPY 1", "Z:I"]);
  });

  await t.test("a refused COPY among other statements of one Query refuses the Query: none of it runs", async () => {
    const c = await connect();
    const sql = `INSERT INTO items VALUES (4); ${CSV_COPY}`;
    c.send(query(sql));
    const got = await c.untilReady();
    assert.deepEqual(shown(got), ["E:42501", "Z:I"]);
    lastRefusal(sql, /in csv format/);
    assert.deepEqual(log.ran(/INSERT INTO items VALUES \(4\)/), []);
    assert.equal((await s.direct("SELECT count(*)::int AS n FROM items")).rows[0].n, 3);
    await goesOn(c);
  });

  await t.test("finding 018's orderings: after a failed Describe the COPY is skipped by the server and the proxy, and refused when it runs", async () => {
    // all in one write: the proxy refuses the Describe (26000), the server skips to Sync
    const a = await connect();
    a.send(describe("S", "nope"), query(BINARY_COPY), sync(), query(BINARY_COPY));
    const gotA = await a.untilReady(2);
    assert.deepEqual(shown(gotA), ["E:26000", "Z:I", "E:42501", "Z:I"]);
    noRaw(gotA);
    await goesOn(a);
    // the Query sent after the error arrived, before the Sync (finding 005's W)
    const b = await connect();
    b.send(describe("S", "nope"), flush());
    assert.deepEqual(shown(await b.until((m) => m.type === "E")), ["E:26000"]);
    b.send(query(BINARY_COPY), sync(), query(BINARY_COPY));
    const gotB = await b.untilReady(2);
    assert.deepEqual(shown(gotB), ["Z:I", "E:42501", "Z:I"]);
    noRaw(gotB);
    await goesOn(b);
    // the server's own error earlier in the pipeline, with a COPY and a binary Execute behind it
    const c = await connect();
    c.send(
      parse("", "SELECT 1 / (id - id) FROM items"), bind("", ""), execute(""),
      query(BINARY_COPY),
      parse("", "SELECT born FROM customers"), bind("", "", [], [], [1]), execute(""),
      sync(), query(BINARY_COPY),
    );
    const gotC = await c.untilReady(2);
    assert.deepEqual(shown(gotC), ["1", "2", "E:22012", "Z:I", "E:42501", "Z:I"]);
    noRaw(gotC);
    await goesOn(c);
    assert.deepEqual(log.ran(/FORMAT binary/), []);
  });

  await t.test("extended protocol: a COPY in CSV or binary is refused at its Execute; the server skips to Sync", async () => {
    const c = await connect();
    c.send(parse("", BINARY_COPY), bind("", ""), execute(""), query("INSERT INTO items VALUES (5)"), sync());
    const got = await c.untilReady();
    assert.deepEqual(shown(got), ["1", "2", "E:42501", "Z:I"]);
    refusedMessage(got, /in binary format/);
    lastRefusal(BINARY_COPY, /in binary format/);
    assert.deepEqual(log.ran(/FORMAT binary|INSERT INTO items VALUES \(5\)/), []);
    await goesOn(c);
  });

  await t.test("binary results: a column the masker cannot rewrite is refused before the Execute runs, one it can is masked", async () => {
    const c = await connect();
    const before = completions.length;
    c.send(parse("", "SELECT id, born FROM customers"), bind("", "", [], [], [1]), execute(""), sync());
    const got = await c.untilReady();
    assert.deepEqual(shown(got), ["1", "2", "E:42501", "Z:I"]);
    refusedMessage(got, /cannot mask binary column public\.customers\.born of type date: request it in text format/);
    lastRefusal("SELECT id, born FROM customers", /cannot mask binary column/);
    assert.deepEqual(log.ran(/born/), [], "the Execute never reached the server");
    // the client's own Describe first: it gets the description, then the refusal
    c.send(parse("", "SELECT born FROM customers"), bind("", "", [], [], [1]), describe("P", ""), execute(""), sync());
    assert.deepEqual(shown(await c.untilReady()), ["1", "2", "T:born", "E:42501", "Z:I"]);
    // per-column formats: the date in text, the email in binary: both masked, nothing refused
    c.send(parse("", "SELECT email, born FROM customers"), bind("", "", [], [], [1, 0]), execute(""), sync());
    const ok = await c.untilReady();
    assert.deepEqual(shown(ok), ["1", "2", "D:[REDACTED]|[REDACTED]", "C:SELECT 1", "Z:I"]);
    noRaw(ok);
    assert.ok(!raw(ok).includes(BORN));
    // a suspended binary portal is described before each of its Executes, and stays masked
    c.send(query("BEGIN"), parse("", "SELECT email FROM customers UNION ALL SELECT 'x@y.io'"), bind("p", "", [], [], [1]), execute("p", 1), execute("p", 1), sync());
    const susp = await c.untilReady(2);
    assert.deepEqual(shown(susp), ["C:BEGIN", "Z:T", "1", "2", "D:[REDACTED]", "s", "D:[REDACTED]", "s", "Z:T"]);
    noRaw(susp);
    c.send(query("COMMIT"));
    await c.untilReady();
    // every statement allowed since has its completion, the refused ones none
    const mine = completions.slice(before).map((d) => d.error?.sqlstate ?? d.commandTag);
    assert.deepEqual(mine, ["SELECT 1", "BEGIN", undefined, undefined, "COMMIT"]);
    await goesOn(c);
  });

  await t.test("a BINARY cursor on a resource with masking rules is refused; without BINARY it is masked", async () => {
    const c = await connect();
    c.send(query("BEGIN"), query("DECLARE cb BINARY CURSOR FOR SELECT born FROM customers"), query("ROLLBACK"));
    const got = await c.untilReady(3);
    assert.deepEqual(shown(got), ["C:BEGIN", "Z:T", "E:42501", "Z:E", "C:ROLLBACK", "Z:I"]);
    refusedMessage(got, /BINARY cursor/);
    c.send(query("BEGIN"), query("DECLARE ct CURSOR FOR SELECT born FROM customers"), query("FETCH ct"), query("COMMIT"));
    const f = await c.untilReady(4);
    assert.deepEqual(shown(f), ["C:BEGIN", "Z:T", "C:DECLARE CURSOR", "Z:T", "T:born", "D:[REDACTED]", "C:FETCH 1", "Z:T", "C:COMMIT", "Z:I"]);
    assert.deepEqual(log.ran(/BINARY CURSOR/), []);
  });
}

/** what the server ran in `database` (log_statement = all) */
function serverLog(cluster: PgCluster, database: string) {
  const file = join(cluster.dataDir, "server.log");
  const line = new RegExp(`^\\[${database}\\] LOG:  (?:statement|execute [^:]*): (.*)$`);
  return {
    ran(pattern: RegExp): string[] {
      const out: string[] = [];
      for (const l of readFileSync(file, "utf8").split("\n")) {
        const m = line.exec(l);
        if (m && pattern.test(m[1]!)) out.push(m[1]!);
      }
      return out;
    },
  };
}
