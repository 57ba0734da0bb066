/**
 * Real drivers through the real proxy under the contract's example bundle (issue 13): psycopg 3,
 * ruby-pg, PHP's pgsql and the PostgreSQL JDBC driver (besides psql, pg and postgres.js, covered
 * elsewhere), each as the read-only `ci` identity (allow: [read]) and as a deployer
 * ([read, write, ddl], every DDL held for a dba).
 *   read:   the driver's own start-up, a parameterised read, a transaction, a server-side cursor,
 *           COPY … TO STDOUT, masked values, a refused write (42501) and the session going on;
 *   deploy: CREATE TABLE, ALTER TABLE and CREATE INDEX inside a transaction, each held until an
 *           approver in another process approves it while the driver waits, plus the writes.
 * The tools are Debian's packages (scripts/ensure-client-tools.sh); in CI a missing one fails.
 */
import { test, type TestContext } from "node:test";
import assert from "node:assert/strict";
import { FIXTURES, contractStack, libpqEnv, run, startApprover, tool, type ToolName } from "./client-tools.js";
import type { Stack } from "./harness.js";

const SCHEMA = `
  CREATE TABLE orders (id int PRIMARY KEY, total numeric NOT NULL);
  INSERT INTO orders SELECT g, g * 10 FROM generate_series(1, 25) g;
  CREATE TABLE customers (id int PRIMARY KEY, name text, email text, card_number text);
  INSERT INTO customers VALUES (1, 'Ann', 'ann@example.com', '4111 1111 1111 1111'), (2, 'Bob', 'bob@corp.io', '5500-0000-0000-0004');
  CREATE TABLE secrets (id int, value text);
`;
const MASKED_COPY = "1\ta**@example.com\t4111 11** **** 1111\n2\tb**@corp.io\t5500-00**-****-0004\n";
const RAW = ["ann@example.com", "bob@corp.io", "4111 1111 1111 1111", "5500-0000-0000-0004"];

interface Driver {
  tool: ToolName;
  cmd: string;
  args: (mode: "read" | "deploy", table?: string) => string[];
}

/** CLIENTS_ONLY=<tool> runs only that driver (development aid). */
const only = (d: Driver) => !process.env.CLIENTS_ONLY || process.env.CLIENTS_ONLY === d.tool;

const ALL_DRIVERS: Driver[] = [
  { tool: "psycopg", cmd: "/usr/bin/python3", args: (m, t) => [`${FIXTURES}psycopg_client.py`, m, ...(t ? [t] : [])] },
  { tool: "ruby-pg", cmd: "ruby", args: (m, t) => [`${FIXTURES}ruby_pg_client.rb`, m, ...(t ? [t] : [])] },
  { tool: "php-pgsql", cmd: "php", args: (m, t) => [`${FIXTURES}php_pgsql_client.php`, m, ...(t ? [t] : [])] },
  { tool: "pgjdbc", cmd: "java", args: (m, t) => ["-cp", "/usr/share/java/postgresql.jar", `${FIXTURES}JdbcClient.java`, m, ...(t ? [t] : [])] },
];
const DRIVERS = ALL_DRIVERS.filter(only);

async function drive(stack: Stack, d: Driver, sub: string, groups: string[], mode: "read" | "deploy", table?: string): Promise<Record<string, any>> {
  const r = await run(d.cmd, d.args(mode, table), { env: await libpqEnv(stack, { sub, groups }), timeoutMs: 240_000 });
  assert.equal(r.code, 0, `${d.tool} ${mode} exited ${r.code}: ${r.stderr.slice(-1500)}`);
  const line = r.stdout.trim().split("\n").at(-1) ?? "";
  try {
    return JSON.parse(line) as Record<string, any>;
  } catch {
    throw new Error(`${d.tool} ${mode} printed no result: ${r.stdout.slice(-800)} ${r.stderr.slice(-800)}`);
  }
}

test("real drivers with the contract's example policy: read-only and deployer identities", { timeout: 900_000 }, async (t) => {
  const stack = await contractStack(t, SCHEMA);
  const deployers = DRIVERS.map((d) => `deployer-${d.tool}`);
  const approver = await startApprover(t, stack, deployers);

  for (const d of DRIVERS) {
    await t.test(`${d.tool}: read-only (allow: [read]) — start-up, parameters, transaction, cursor, COPY TO STDOUT, masking`, async (tt: TestContext) => {
      if (!(await tool(tt, d.tool))) return;
      const r = await drive(stack, d, `ci-${d.tool}`, ["ci"], "read");
      if (d.tool === "pgjdbc") {
        assert.equal(r.connected, true, `the JDBC driver finishes connecting: ${r.connect_error}`);
        assert.equal(r.startup_sets, "jdbc-e2e");
      }
      assert.equal(r.count, 25, JSON.stringify(r));
      assert.equal(r.transaction, 3250);
      assert.ok(Array.isArray(r.cursor), `${d.tool} cursor: ${JSON.stringify(r.cursor)}`);
      assert.deepEqual(r.cursor.slice(0, 25), Array.from({ length: 25 }, (_, i) => i + 1), JSON.stringify(r.cursor));
      assert.equal(r.copy, MASKED_COPY, `${d.tool} COPY TO STDOUT, masked`);
      assert.equal(r.masked, "a**@example.com");
      for (const raw of RAW) assert.ok(!JSON.stringify(r).includes(raw), `${d.tool} saw ${raw}`);
      assert.equal(r.denied_write?.error, "42501", JSON.stringify(r.denied_write));
      assert.match(r.denied_write.message, /permission denied by sluice policy: rule "default-deny"/);
      assert.equal(r.after_denial, 1, "the session goes on after a denial");
    });
  }

  for (const d of DRIVERS) {
    await t.test(`${d.tool}: deployer ([read, write, ddl]) — a migration whose DDL waits for an approver in another process`, async (tt: TestContext) => {
      if (!(await tool(tt, d.tool))) return;
      const table = `widgets_${d.tool.replace(/-/g, "_")}`;
      const sub = `deployer-${d.tool}`;
      const r = await drive(stack, d, sub, ["deployers"], "deploy", table);
      for (const k of ["create", "insert", "alter", "update", "index"]) assert.ok(!r[k]?.error, `${d.tool} ${k}: ${JSON.stringify(r[k])}`);
      assert.equal(r.insert, 2);
      assert.equal(r.update, 1);
      assert.equal(r.index, 2);
      const cols = await stack.pgAdmin.query("SELECT column_name FROM information_schema.columns WHERE table_name = $1 ORDER BY ordinal_position", [table]);
      assert.deepEqual(cols.rows.map((x) => x.column_name), ["id", "name", "note"]);
      const idx = await stack.pgAdmin.query("SELECT count(*)::int AS n FROM pg_indexes WHERE tablename = $1 AND indexname = $2", [table, `${table}_name`]);
      assert.equal(idx.rows[0].n, 1);
      // each DDL was held until the other process approved it (the driver waited)
      const mine = approver.approvals().filter((a) => a.requester === sub);
      assert.deepEqual(mine.map((a) => a.sql.split(" ").slice(0, 2).join(" ")).sort(), ["ALTER TABLE", "CREATE INDEX", "CREATE TABLE"], JSON.stringify(mine));
      for (const a of mine) {
        assert.equal(a.rule, "deployers/requireApproval:ddl");
        assert.equal(a.status, "approved");
      }
    });
  }
});
