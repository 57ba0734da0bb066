/**
 * The guardrails corpus (test/fixtures/corpus) through the real proxy against the real PostgreSQL:
 * every statement gets the decision the classifier test expects, from psql, from `pg` (simple
 * protocol, in and out of transaction blocks) and from `postgres` (pipelined extended protocol).
 * After every denial the same connection runs an allowed statement; inside a transaction block the
 * client sees the transaction as failed (25P02) until ROLLBACK, as Postgres would. Finally the
 * database is checked directly: nothing a denial refused reached it.
 *
 * Entries expecting `approve` are decided by the approval flow (its own tests); here they are only
 * covered by the unit corpus test. `e2e: skip` entries say why in the corpus.
 */
import { test, type TestContext } from "node:test";
import assert from "node:assert/strict";
import { spawn } from "node:child_process";
import { readFileSync } from "node:fs";
import postgres from "postgres";
import type pg from "pg";
import type { Bundle } from "@sluice/shared/policy";
import { classifySql, loadSqlParser } from "@sluice/shared/sql";
import { startStack, type Stack } from "./harness.js";
import { corpusSchemaSql, loadCorpus, loadCorpusPolicy, corpusResource, type CorpusEntry } from "../fixtures/corpus/load-corpus.js";

/** psql with stdin closed (a COPY FROM STDIN that slipped through would end, not hang) and a deadline. */
function runPsql(args: string[], timeoutMs = 120_000): Promise<{ code: number | null; stdout: string; stderr: string }> {
  return new Promise((resolve, reject) => {
    const child = spawn("psql", args, { stdio: ["ignore", "pipe", "pipe"] });
    let stdout = "";
    let stderr = "";
    child.stdout.setEncoding("utf8").on("data", (d: string) => (stdout += d));
    child.stderr.setEncoding("utf8").on("data", (d: string) => (stderr += d));
    const timer = setTimeout(() => {
      child.kill("SIGKILL");
      reject(new Error(`psql timed out; stderr so far: ${stderr.slice(-800)}`));
    }, timeoutMs);
    child.on("error", reject);
    child.on("close", (code) => {
      clearTimeout(timer);
      resolve({ code, stdout, stderr });
    });
  });
}
const DENIAL = "permission denied by sluice policy";

interface PgError {
  code?: string;
  message?: string;
}

/** The 42501 the proxy answers (not a permission error of Postgres itself). */
function isSluiceDenial(e: PgError, rule?: string): boolean {
  if (e.code !== "42501" || !e.message?.startsWith(DENIAL)) return false;
  return rule === undefined || e.message.includes(`rule "${rule}"`);
}

function describe(e: CorpusEntry): string {
  return `${JSON.stringify(e.sql)} [${e.groups.join(",")}]`;
}

/** Single-statement entries can go through Parse (the extended protocol refuses several commands). */
function singleStatement(sql: string): boolean {
  const c = classifySql(sql);
  return !c.ok || c.statements.length === 1;
}

/**
 * Reads that leave no session state behind: safe to run one after another on a shared connection.
 * DEALLOCATE and DISCARD (allowed to every identity since the contract's built-in allowances) would
 * drop a driver's own prepared statements.
 */
function statelessAllow(e: CorpusEntry): boolean {
  return e.expect === "allow" && (e.groups[0] === "ci" || e.groups[0] === "reports") && !/^\s*(prepare|set|listen|deallocate|discard)/i.test(e.sql);
}

/** GUARDRAILS_ONLY=<substring> runs only the matching subtests (development aid). */
function sub(t: TestContext, name: string, fn: () => Promise<void>): Promise<void> {
  const only = process.env.GUARDRAILS_ONLY;
  return t.test(name, { skip: only !== undefined && !name.includes(only) }, fn);
}

test("the guardrails corpus through the proxy: psql, pg and pipelined postgres", { timeout: 480_000 }, async (t) => {
  await loadSqlParser();
  const policy: Bundle = { ...loadCorpusPolicy(), resources: [] }; // the harness adds `corpus` → the test database
  const stack: Stack = await startStack(t, { policy, resource: corpusResource, setupSql: corpusSchemaSql() });
  const corpus = loadCorpus().filter((e) => e.e2e !== "skip");
  const denies = corpus.filter((e) => e.expect === "deny");
  const allows = corpus.filter((e) => e.expect === "allow");
  const groups = [...new Set(corpus.map((e) => e.groups[0]))];
  assert.ok(denies.length >= 100 && allows.length >= 50, `${denies.length} denies, ${allows.length} allows`);

  const byGroup = new Map<string, pg.Client>();
  for (const g of groups) byGroup.set(g, await stack.connect({ sub: `corpus-${g}`, groups: [g] }));
  const forEachGroup = (entries: CorpusEntry[], fn: (c: pg.Client, e: CorpusEntry) => Promise<void>) =>
    Promise.all(
      groups.map(async (g) => {
        const c = byGroup.get(g)!;
        for (const e of entries) if (e.groups[0] === g) await fn(c, e);
      }),
    );

  await sub(t, "pg, simple protocol: each denial is a 42501 naming the rule, and the connection goes on", async () => {
    const wrong: string[] = [];
    // one connection per identity, the identities in parallel; each connection's entries in order
    await forEachGroup(denies, async (c, e) => {
      try {
        await c.query(e.sql);
        wrong.push(`${describe(e)} was forwarded`);
      } catch (err) {
        if (!isSluiceDenial(err as PgError, e.rule)) wrong.push(`${describe(e)}: ${(err as PgError).code} ${(err as PgError).message}`);
      }
      const after = await c.query("SELECT 1 AS ok");
      if (after.rows[0]?.ok !== 1) wrong.push(`${describe(e)}: connection unusable after the denial`);
    });
    assert.deepEqual(wrong, []);
  });

  await sub(t, "pg, inside a transaction block: the denial fails the transaction (25P02) until ROLLBACK", async () => {
    const wrong: string[] = [];
    // one entry per distinct rule and identity keeps this affordable on a busy CI machine
    const seen = new Set<string>();
    const sample = denies.filter((e) => {
      const k = `${e.groups[0]} ${e.rule ?? e.sql}`;
      if (seen.has(k)) return false;
      seen.add(k);
      return true;
    });
    assert.ok(sample.length >= 30, `${sample.length} distinct denials`);
    await forEachGroup(sample, async (c, e) => {
      await c.query("BEGIN");
      await c.query("SELECT 1");
      await c.query(e.sql).then(
        () => wrong.push(`${describe(e)} was forwarded in a transaction`),
        (err: PgError) => {
          if (!isSluiceDenial(err, e.rule)) wrong.push(`${describe(e)} in a transaction: ${err.code} ${err.message}`);
        },
      );
      await c.query("SELECT 1").then(
        () => wrong.push(`${describe(e)}: the transaction was not failed`),
        (err: PgError) => {
          if (err.code !== "25P02") wrong.push(`${describe(e)}: after the denial got ${err.code} ${err.message}`);
        },
      );
      await c.query("ROLLBACK");
      const after = await c.query("SELECT count(*)::int AS n FROM orders WHERE id = 1");
      if (after.rows[0]?.n !== 1) wrong.push(`${describe(e)}: not usable after ROLLBACK`);
    });
    assert.deepEqual(wrong, []);
  });

  await sub(t, "pg, allowed statements run for real (a fresh session for those that change session state)", async () => {
    const wrong: string[] = [];
    // COPY TO STDOUT needs a COPY-aware client: psql covers those below
    const runnable = allows.filter((e) => !/^\s*copy\b/i.test(e.sql));
    const check = (e: CorpusEntry, p: Promise<unknown>) =>
      p.then(
        () => e.e2e === "upstream-error" && wrong.push(`${describe(e)}: expected Postgres to refuse it`),
        (err: PgError) => (e.e2e !== "upstream-error" || isSluiceDenial(err)) && wrong.push(`${describe(e)}: ${err.code} ${err.message}`),
      );
    // reads that leave no session state run on the identity's shared session, in order
    await forEachGroup(runnable.filter(statelessAllow), (c, e) => check(e, c.query(e.sql)).then(() => undefined));
    const queue = runnable.filter((e) => !statelessAllow(e));
    const worker = async () => {
      for (let e = queue.shift(); e; e = queue.shift()) {
        const c = await stack.connect({ sub: `corpus-${e.groups[0]}`, groups: e.groups });
        try {
          await c.query(e.sql);
          if (e.e2e === "upstream-error") wrong.push(`${describe(e)}: expected Postgres to refuse it`);
        } catch (err) {
          const pe = err as PgError;
          if (e.e2e !== "upstream-error" || isSluiceDenial(pe)) wrong.push(`${describe(e)}: ${pe.code} ${pe.message}`);
        } finally {
          await c.end();
        }
      }
    };
    await Promise.all([worker(), worker(), worker(), worker()]);
    assert.deepEqual(wrong, []);
  });

  await sub(t, "psql: one process per identity, one message per -c, markers between them", async () => {
    const wrong: string[] = [];
    for (const g of groups) {
      const entries = corpus.filter((e) => e.groups[0] === g && (e.expect === "deny" || statelessAllow(e) || (e.expect === "allow" && /^\s*copy\b.*\bto stdout\s*$/i.test(e.sql))));
      if (entries.length === 0) continue;
      const args = [await stack.connectionString({ sub: `psql-${g}`, groups: [g] }), "-X", "-q", "-v", "VERBOSITY=verbose"];
      entries.forEach((e, i) => args.push("-c", `\\warn @@${i}`, "-c", e.sql, "-c", `SELECT 'still-ok-${i}'`));
      const r = await runPsql(args);
      const segments = r.stderr.split(/^@@\d+$/m).slice(1);
      assert.equal(segments.length, entries.length, `psql for ${g} stopped early: ${r.stderr.slice(-500)}`);
      entries.forEach((e, i) => {
        const seg = segments[i];
        if (e.expect === "deny") {
          if (!seg.includes(`42501: ${DENIAL}`) || (e.rule && !seg.includes(`rule "${e.rule}"`))) wrong.push(`psql ${describe(e)}: ${seg.trim()}`);
        } else if (e.e2e === "upstream-error" ? seg.includes(DENIAL) || !seg.includes("ERROR") : seg.includes("ERROR")) {
          wrong.push(`psql ${describe(e)}: ${seg.trim()}`);
        }
        if (!r.stdout.includes(`still-ok-${i}\n`)) wrong.push(`psql ${describe(e)}: session unusable afterwards`);
      });
    }
    assert.deepEqual(wrong, []);
  });

  await sub(t, "postgres.js: pipelined extended-protocol batches (Parse/Bind/Execute), denials in the middle", async () => {
    const wrong: string[] = [];
    for (const g of groups) {
      const sql = postgres({
        host: stack.host,
        port: stack.port,
        database: corpusResource,
        username: `pipe-${g}`,
        password: await stack.token({ sub: `pipe-${g}`, groups: [g] }),
        ssl: { ca: readFileSync(stack.cert.certFile), servername: "localhost" },
        max: 1, // one connection: the queries below are pipelined on it
        onnotice: () => undefined,
      });
      try {
        const entries = corpus.filter(
          (e) => e.groups[0] === g && singleStatement(e.sql) && !/^\s*copy\b/i.test(e.sql) && (e.expect === "deny" || statelessAllow(e)),
        );
        const results = await Promise.allSettled(entries.flatMap((e) => [sql.unsafe(e.sql), sql`SELECT 1::int AS ok`]));
        entries.forEach((e, i) => {
          const r = results[2 * i];
          const next = results[2 * i + 1];
          if (e.expect === "deny") {
            if (r.status !== "rejected" || !isSluiceDenial(r.reason as PgError, e.rule)) {
              wrong.push(`pipelined ${describe(e)}: ${r.status === "rejected" ? `${r.reason.code} ${r.reason.message}` : "forwarded"}`);
            }
          } else if (e.e2e === "upstream-error" ? r.status !== "rejected" || isSluiceDenial(r.reason as PgError) : r.status !== "fulfilled") {
            wrong.push(`pipelined ${describe(e)}: ${r.status === "rejected" ? `${r.reason.code} ${r.reason.message}` : "forwarded"}`);
          }
          if (next.status !== "fulfilled") wrong.push(`pipelined ${describe(e)}: the next query failed: ${(next.reason as PgError).message}`);
        });
      } finally {
        await sql.end({ timeout: 5 });
      }
    }
    assert.deepEqual(wrong, []);
  });

  await sub(t, "SQL-level PREPARE/EXECUTE across messages: EXECUTE runs what was allowed to be prepared", async () => {
    const app = await stack.connect({ sub: "prep-app", groups: ["app"] });
    await app.query("PREPARE one_order(int) AS SELECT id FROM orders WHERE id = $1");
    assert.deepEqual((await app.query("EXECUTE one_order(7)")).rows, [{ id: 7 }]);
    assert.deepEqual((await app.query("EXECUTE one_order(8)")).rows, [{ id: 8 }]); // not served from the text cache blindly
    // a denied PREPARE never reaches Postgres, so its EXECUTE is unknown to the gateway
    await assert.rejects(app.query("PREPARE wipe AS DELETE FROM audit_log"), (e: PgError) => isSluiceDenial(e, "writers/deny:delete-without-where"));
    await assert.rejects(app.query("EXECUTE wipe"), (e: PgError) => isSluiceDenial(e, "unknown-prepared-statement"));
    await app.query("DEALLOCATE one_order");
    await assert.rejects(app.query("EXECUTE one_order(7)"), (e: PgError) => isSluiceDenial(e, "unknown-prepared-statement"));
    // another session does not see this session's prepared statements
    await app.query("PREPARE mine AS SELECT 1 AS x");
    const other = await stack.connect({ sub: "prep-other", groups: ["app"] });
    await assert.rejects(other.query("EXECUTE mine"), (e: PgError) => isSluiceDenial(e, "unknown-prepared-statement"));
    assert.deepEqual((await app.query("EXECUTE mine")).rows, [{ x: 1 }]);
  });

  await sub(t, "a new policy revision decides the very next statement of a live session (cached decisions dropped)", async () => {
    const c = byGroup.get("ci")!;
    const sqlText = "SELECT count(*)::int AS n FROM orders WHERE id <= 100";
    assert.deepEqual((await c.query(sqlText)).rows, [{ n: 100 }]);
    const tightened: Bundle = structuredClone(policy);
    tightened.policies.find((p) => p.name === "ci-read")!.tables = { deny: ["public.secrets", "vault.*", "orders"] };
    await stack.apply(tightened);
    await assert.rejects(c.query(sqlText), (e: PgError) => isSluiceDenial(e, "ci-read/tables.deny:orders"));
    await stack.apply(policy);
    assert.deepEqual((await c.query(sqlText)).rows, [{ n: 100 }]);
  });

  await sub(t, "an identity without a policy cannot connect", async () => {
    await assert.rejects(stack.connect({ sub: "nobody", groups: ["nobody"] }), (e: PgError) => e.code !== undefined);
  });

  await sub(t, "nothing a denial refused reached the database", async () => {
    const q = async (s: string) => (await stack.pgAdmin.query(s)).rows[0];
    assert.deepEqual(await q("SELECT count(*)::int AS n FROM secrets"), { n: 2 });
    assert.deepEqual(await q("SELECT count(*)::int AS n FROM vault.keys"), { n: 1 });
    assert.deepEqual(await q("SELECT count(*)::int AS n FROM orders WHERE id <= 100"), { n: 100 });
    assert.deepEqual(await q("SELECT count(*)::int AS n FROM orders WHERE id = 1000"), { n: 0 });
    assert.deepEqual(await q("SELECT count(*)::int AS n FROM orders WHERE total = 0"), { n: 0 });
    assert.deepEqual(await q("SELECT to_regclass('orders_copy') IS NULL AS gone, to_regclass('t_ci') IS NULL AS t"), { gone: true, t: true });
    assert.deepEqual(await q("SELECT count(*)::int AS n FROM pg_proc WHERE proname IN ('f1','f2','f4','f5','f6','f7')"), { n: 0 });
    // the denied side effects and setting changes did not happen either
    assert.deepEqual(await q("SELECT last_value < 1000 AS untouched FROM audit_log_id_seq"), { untouched: true });
    assert.deepEqual(await q("SELECT count(*)::int AS n FROM pg_db_role_setting s JOIN pg_database d ON d.oid = s.setdatabase WHERE d.datname = current_database()"), { n: 0 });
    assert.deepEqual(await q("SELECT count(*)::int AS n FROM pg_db_role_setting s JOIN pg_roles r ON r.oid = s.setrole WHERE r.rolname = 'postgres' AND s.setconfig::text LIKE '%standard_conforming_strings%'"), { n: 0 });
    assert.deepEqual(await q("SELECT count(*)::int AS n FROM pg_locks l JOIN pg_database d ON d.oid = l.database WHERE l.locktype = 'advisory' AND d.datname = current_database()"), { n: 0 });
  });
});
