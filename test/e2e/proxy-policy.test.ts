/**
 * The proxy's default Enforcer (classifier + policy evaluation over the snapshot) end to end:
 * denials name the rule and class, never FATAL, the connection and transactions behave as Postgres.
 */
import { test } from "node:test";
import assert from "node:assert/strict";
import { execFile } from "node:child_process";
import { promisify } from "node:util";
import pg from "pg";
import { startProxyStack } from "./proxy-stack.js";

const execFileP = promisify(execFile);

test("policy enforcement with the default snapshot enforcer", { timeout: 60_000 }, async (t) => {
  const s = await startProxyStack(t, {
    dp: { enforcer: undefined },
    bundle: (b) => ({
      ...b,
      policies: [
        {
          name: "ci-rw",
          groups: ["ci"],
          resources: ["app"],
          allow: ["read", "write"],
          deny: ["delete-without-where", "update-without-where", "truncate"],
          tables: { deny: ["public.secrets"] },
        },
      ],
    }),
  });
  await s.direct("CREATE TABLE items (id int PRIMARY KEY, name text); INSERT INTO items VALUES (1,'a'),(2,'b'),(3,'c'); CREATE TABLE secrets (v text)");
  const c = await s.pgClient();
  const denied = async (q: string | pg.QueryConfig, rule?: RegExp) =>
    assert.rejects(c.query(q as string), (e: pg.DatabaseError) => {
      assert.equal(e.code, "42501", `${JSON.stringify(q)}: ${e.message}`);
      if (rule) assert.match(e.message, rule);
      return true;
    });

  await t.test("reads and scoped writes pass, risky ones are denied with the rule", async () => {
    assert.equal((await c.query("SELECT count(*)::int AS n FROM items")).rows[0].n, 3);
    await c.query("UPDATE items SET name = 'A' WHERE id = 1");
    await denied("DELETE FROM items", /delete-without-where/);
    await denied("update items set name = 'x'", /update-without-where/);
    await denied("SELECT * FROM public.secrets");
    await denied("/* hidden */ select * from SECRETS");
    await denied("CREATE TABLE t2 (x int)", /\(ddl\)/);
    await denied("SELECT 1; DROP TABLE items");
    await denied("SELEC garbage", /parse/);
    assert.equal((await c.query("SELECT count(*)::int AS n FROM items")).rows[0].n, 3);
  });

  await t.test("a statement above the size limit is denied unparsed; the session stays usable", async () => {
    const huge = `SELECT 1 /* ${"x".repeat(1024 * 1024)} */`;
    await denied(huge, /statement-too-large/);
    await denied({ text: `SELECT $1::int /* ${"x".repeat(1024 * 1024)} */`, values: [1] } as pg.QueryConfig, /at most 1048576 bytes \(dataPlane.maxStatementBytes\)/);
    assert.equal((await c.query("SELECT count(*)::int AS n FROM items")).rows[0].n, 3);
  });

  await t.test("extended protocol is decided at Parse", async () => {
    await denied({ text: "DELETE FROM items WHERE $1::int IS NOT NULL OR true", values: [1] } as pg.QueryConfig);
    await denied({ text: "SELECT * FROM secrets WHERE v = $1", values: ["x"] } as pg.QueryConfig);
    assert.equal((await c.query("SELECT name FROM items WHERE id = $1", [1])).rows[0].name, "A");
  });

  await t.test("SQL-level PREPARE/EXECUTE cannot launder a denied statement", async () => {
    await c.query("PREPARE ok_sel AS SELECT count(*)::int AS n FROM items");
    const direct = (await c.query("SELECT count(*)::int AS n FROM items")).rows[0].n as number;
    assert.equal((await c.query("EXECUTE ok_sel")).rows[0].n, direct, "an allowed prepared statement runs");
    await assert.rejects(
      (async () => {
        await c.query("PREPARE bad_del AS DELETE FROM items");
        await c.query("EXECUTE bad_del");
      })(),
      { code: "42501" },
    );
    assert.equal((await c.query("SELECT count(*)::int AS n FROM items")).rows[0].n, 3);
  });

  await t.test("inside a transaction the denial fails the transaction", async () => {
    await c.query("BEGIN");
    await c.query("INSERT INTO items VALUES (10, 'ten')");
    await denied("DELETE FROM items");
    await assert.rejects(c.query("SELECT 1"), { code: "25P02" });
    assert.equal((await c.query("COMMIT")).command, "ROLLBACK");
    assert.equal((await c.query("SELECT count(*)::int AS n FROM items WHERE id = 10")).rows[0].n, 0);
  });

  await t.test("psql: a denial then an allowed statement on the same connection", async () => {
    const { stdout, stderr } = await execFileP(
      "psql",
      ["-X", "-At", "-h", "127.0.0.1", "-p", String(s.dp.port), "-U", "ci", "-d", "app", "-c", "TRUNCATE items", "-c", "SELECT count(*) FROM items"],
      { env: { ...process.env, PGPASSWORD: await s.token(), PGSSLMODE: "require" } },
    ).catch((e: { stdout: string; stderr: string }) => e);
    assert.match(stderr, /ERROR:\s+permission denied by sluice policy/);
    assert.equal(stdout.trim(), "3");
  });
});
