/**
 * What every connected client may do without naming a class (contract: "Policy bundle", issue 13),
 * through the real proxy with real clients, under the contract's example bundle (ci-read allows
 * only `[read]`; deployers `[read, write, ddl]`; customers.email and card_number masked):
 *   - the JDBC driver's start-up statements (`SET extra_float_digits = 3`, `SET application_name`)
 *     over the extended protocol (postgres.js, pg with a named statement) and the simple one;
 *   - psql's `\copy … to` (COPY … TO STDOUT: a read, masked);
 *   - a libpq server-side cursor: psql's FETCH_COUNT (its own DECLARE/FETCH/CLOSE) and an
 *     explicit DECLARE/FETCH/MOVE/CLOSE in a transaction, masked like any result;
 *   - the replay naming the built-in allowance of each statement.
 */
import { test } from "node:test";
import assert from "node:assert/strict";
import { execFile } from "node:child_process";
import { mkdtempSync, readFileSync, rmSync, writeFileSync } from "node:fs";
import { tmpdir } from "node:os";
import { join } from "node:path";
import { promisify } from "node:util";
import postgres from "postgres";
import { parse as parseYaml } from "yaml";
import type { AuditApi } from "@sluice/control-plane";
import { startStack, type Stack } from "./harness.js";
import { runSluice } from "../lib/run-sluice.js";

const exec = promisify(execFile);
const CONTRACT = new URL("../fixtures/policies/valid-contract.yaml", import.meta.url);

/** The contract's example bundle; its `orders` resource is the harness's test database. */
function contractPolicy(): string {
  const raw = parseYaml(readFileSync(CONTRACT, "utf8")) as Record<string, unknown>;
  return JSON.stringify({ ...raw, resources: [] });
}

const SCHEMA = `
  CREATE TABLE orders (id int PRIMARY KEY, total numeric NOT NULL);
  INSERT INTO orders SELECT g, g * 10 FROM generate_series(1, 25) g;
  CREATE TABLE customers (id int PRIMARY KEY, name text, email text, card_number text);
  INSERT INTO customers VALUES (1, 'Ann', 'ann@example.com', '4111 1111 1111 1111'), (2, 'Bob', 'bob@corp.io', '5500-0000-0000-0004');
  CREATE TABLE secrets (id int, value text);
  INSERT INTO secrets VALUES (1, 's3cr3t');
`;
const RAW = ["ann@example.com", "bob@corp.io", "4111 1111 1111 1111", "5500-0000-0000-0004"];
const noRaw = (text: string, where: string) => {
  for (const r of RAW) assert.ok(!text.includes(r), `${where} leaked ${r}`);
};

const IDENTITIES = [
  { who: "ci", groups: ["ci"] },
  { who: "deployer", groups: ["deployers"] },
] as const;

async function psql(stack: Stack, groups: readonly string[], sub: string, args: string[], input?: string) {
  const url = await stack.connectionString({ sub, groups: [...groups] });
  const child = exec("psql", [url, "-X", "-q", "-At", "-v", "ON_ERROR_STOP=1", "-v", "VERBOSITY=verbose", ...args], { timeout: 120_000, env: { ...process.env, PGAPPNAME: "psql-e2e" } });
  if (input !== undefined) child.child.stdin?.end(input);
  else child.child.stdin?.end();
  return child;
}

async function until<T>(what: string, fn: () => Promise<T | undefined>, ms = 60_000): Promise<T> {
  const end = Date.now() + ms;
  for (;;) {
    const v = await fn();
    if (v !== undefined) return v;
    if (Date.now() > end) throw new Error(`timed out waiting for ${what}`);
    await new Promise((r) => setTimeout(r, 200));
  }
}

test("real clients live with allow: [read] and with the deployers' classes: start-up settings, \\copy to, cursors", { timeout: 600_000 }, async (t) => {
  const stack = await startStack(t, { policy: contractPolicy(), resource: "orders", setupSql: SCHEMA });
  const dir = mkdtempSync(join(tmpdir(), "sluice-client-baseline-"));
  t.after(() => rmSync(dir, { recursive: true, force: true }));

  await t.test("the JDBC driver's start-up statements over the extended protocol (postgres.js), then reads", async () => {
    for (const id of IDENTITIES) {
      const sql = postgres({
        host: stack.host, port: stack.port, database: "orders", username: `jdbc-${id.who}`,
        password: await stack.token({ sub: `jdbc-${id.who}`, groups: [...id.groups] }),
        ssl: { ca: readFileSync(stack.cert.certFile), servername: "localhost" }, max: 1, onnotice: () => undefined,
      });
      try {
        await sql.unsafe("SET extra_float_digits = 3");
        await sql.unsafe("SET application_name = 'PostgreSQL JDBC Driver'");
        await sql.unsafe("SET SESSION CHARACTERISTICS AS TRANSACTION ISOLATION LEVEL READ COMMITTED");
        assert.deepEqual([...(await sql.unsafe("SHOW application_name"))], [{ application_name: "PostgreSQL JDBC Driver" }]);
        const [row] = await sql.begin(async (tx) => tx`SELECT count(*)::int AS n FROM orders WHERE total > ${0}`);
        assert.equal(row!.n, 25, id.who);
        const [c] = await sql`SELECT email FROM customers WHERE id = ${1}`;
        assert.equal(c!.email, "a**@example.com", `${id.who}: masked like any result`);
        // the allowance is for what every client needs, not a way round the classes
        await assert.rejects(sql.unsafe("SET ROLE postgres"), { code: "42501" });
        if (id.who === "ci") await assert.rejects(sql`DELETE FROM orders WHERE id = ${1}`, { code: "42501" });
      } finally {
        await sql.end({ timeout: 5 });
      }
    }
  });

  await t.test("the same over pg: a named prepared statement (extended protocol) and the simple protocol", async () => {
    for (const id of IDENTITIES) {
      const c = await stack.connect({ sub: `pg-${id.who}`, groups: [...id.groups] });
      await c.query({ name: "jdbc-efd", text: "SET extra_float_digits = 3" });
      await c.query("SET application_name = 'PostgreSQL JDBC Driver'");
      await c.query("BEGIN; SET LOCAL statement_timeout = '30s'; SELECT 1; COMMIT");
      assert.equal((await c.query("SHOW extra_float_digits")).rows[0].extra_float_digits, "3");
      await c.query("DISCARD ALL");
      assert.equal((await c.query("SHOW extra_float_digits")).rows[0].extra_float_digits, "1", "DISCARD ALL reset the session");
      await c.end();
    }
  });

  await t.test("psql's \\copy … to: a read, masked; \\copy … from stays the copy class", async () => {
    for (const id of IDENTITIES) {
      const file = join(dir, `orders-${id.who}.tsv`);
      await psql(stack, id.groups, `copy-${id.who}`, ["-c", `\\copy orders to '${file}'`]);
      assert.equal(readFileSync(file, "utf8").trim().split("\n").length, 25, id.who);
      const out = await psql(stack, id.groups, `copy-${id.who}`, ["-c", "\\copy (SELECT id, name, email, card_number FROM customers ORDER BY id) to stdout"]);
      assert.equal(out.stdout, "1\tAnn\ta**@example.com\t4111 11** **** 1111\n2\tBob\tb**@corp.io\t5500-00**-****-0004\n", id.who);
      noRaw(out.stdout, `\\copy for ${id.who}`);
      const whole = await psql(stack, id.groups, `copy-${id.who}`, ["-c", "\\copy customers to stdout"]);
      noRaw(whole.stdout, `\\copy customers for ${id.who}`);
      if (id.who === "deployer") {
        // the deployers' table deny holds for COPY as for SELECT (ci-read denies no table in the contract's bundle)
        await assert.rejects(psql(stack, id.groups, `copy-${id.who}`, ["-c", "\\copy (SELECT * FROM secrets) to stdout"]), (e: { stderr: string }) =>
          /42501/.test(e.stderr) && /deployers\/tables\.deny:public\.secrets/.test(e.stderr),
        );
      }
      // loading rows is not a read: COPY … FROM STDIN is the copy class, which neither identity has
      writeFileSync(join(dir, "more.tsv"), "100\t1\n");
      await assert.rejects(psql(stack, id.groups, `copy-${id.who}`, ["-c", `\\copy orders from '${join(dir, "more.tsv")}'`]), /42501/);
    }
    const n = await stack.pgAdmin.query("SELECT count(*)::int AS n FROM orders");
    assert.equal(n.rows[0].n, 25, "nothing was loaded");
  });

  await t.test("a libpq server-side cursor: psql's FETCH_COUNT and an explicit DECLARE/FETCH/MOVE/CLOSE, masked", async () => {
    for (const id of IDENTITIES) {
      // psql sends BEGIN; DECLARE _psql_cursor NO SCROLL CURSOR FOR …; FETCH FORWARD 10; …; CLOSE; COMMIT
      const fc = await psql(stack, id.groups, `cursor-${id.who}`, ["-v", "FETCH_COUNT=10", "-c", "SELECT id FROM orders ORDER BY id"]);
      assert.equal(fc.stdout.trim().split("\n").length, 25, id.who);
      const explicit = await psql(stack, id.groups, `cursor-${id.who}`, [
        "-c", "BEGIN",
        "-c", "DECLARE c CURSOR FOR SELECT id, email FROM customers ORDER BY id",
        "-c", "FETCH 1 FROM c",
        "-c", "MOVE ABSOLUTE 0 IN c",
        "-c", "FETCH ALL FROM c",
        "-c", "CLOSE c",
        "-c", "COMMIT",
      ]);
      assert.equal(explicit.stdout, "1|a**@example.com\n1|a**@example.com\n2|b**@corp.io\n", id.who);
      noRaw(explicit.stdout, `cursor for ${id.who}`);
    }
    // a cursor over what the identity may not run is refused at its DECLARE
    await assert.rejects(
      psql(stack, ["deployers"], "cursor-deployer", ["-c", "BEGIN", "-c", "DECLARE s CURSOR FOR SELECT * FROM secrets"]),
      (e: { stderr: string }) => /42501/.test(e.stderr) && /deployers\/tables\.deny:public\.secrets/.test(e.stderr),
    );
    await assert.rejects(
      psql(stack, ["ci"], "cursor-ci", ["-c", "BEGIN", "-c", "DECLARE w CURSOR FOR SELECT * FROM orders FOR UPDATE"]),
      (e: { stderr: string }) => /42501/.test(e.stderr) && /default-deny/.test(e.stderr),
    );
  });

  await t.test("the replay names the built-in allowance of each statement", async () => {
    const audit = stack.controlPlane.api<AuditApi>("audit")!;
    const c = await stack.connect({ sub: "replay-ci", groups: ["ci"] });
    await c.query("SET extra_float_digits = 3");
    await c.query("BEGIN; SELECT count(*) FROM orders; COMMIT");
    await c.end();
    const session = await until("the ended session in the read model", async () => {
      await audit.projector.catchUp();
      const [row] = await audit.model.listSessions({ identity: "replay-ci" });
      return row?.status === "ended" ? row : undefined;
    });
    const replay = await runSluice(["sessions", "replay", session.session_id], {
      SLUICE_CONTEXT: join(dir, "no-context.json"),
      SLUICE_CONTROL_PLANE: stack.controlPlane.grpcAddress,
      SLUICE_TOKEN: stack.adminToken,
    });
    assert.equal(replay.code, 0, replay.stderr);
    assert.match(replay.stdout, /SET extra_float_digits = 3\n\s+allowed by implicit:session-setting \(built in: every connected identity may\)/);
    // each statement of the multi-statement Query is a statement of its own, with its own rule
    assert.match(replay.stdout, /statement 1 of 3 of one Query\]\n\s+BEGIN\n\s+allowed by implicit:transaction-control \(built in: every connected identity may\)/);
    assert.match(replay.stdout, /statement 2 of 3 of one Query\]\n\s+SELECT count\(\*\) FROM orders\n\s+allowed by ci-read\/allow:read/);
    assert.match(replay.stdout, /statement 3 of 3 of one Query\]\n\s+COMMIT\n\s+allowed by implicit:transaction-control/);
  });
});
