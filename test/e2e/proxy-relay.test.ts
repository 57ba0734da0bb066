/**
 * The whole protocol through the proxy against the real PostgreSQL, with psql, `pg` and `postgres`:
 * simple and extended queries, binary parameters, transactions, pipelined errors, policy denials in
 * and out of transaction blocks, COPY both ways, LISTEN/NOTIFY, cancel, a 100 MB result.
 */
import { test } from "node:test";
import assert from "node:assert/strict";
import { execFile } from "node:child_process";
import { promisify } from "node:util";
import { pipeline } from "node:stream/promises";
import { Readable, Writable } from "node:stream";
import pg from "pg";
import postgres from "postgres";
import copyStreams from "pg-copy-streams";
import { startProxyStack } from "./proxy-stack.js";

const execFileP = promisify(execFile);

test("proxy relay against the real PostgreSQL", { timeout: 180_000 }, async (t) => {
  const s = await startProxyStack(t);
  const token = await s.token();
  const c = await s.pgClient(token);
  await c.query("CREATE TABLE items (id int PRIMARY KEY, name text, data bytea)");
  await s.direct("CREATE TABLE forbidden_table (x int)");

  const sql = postgres({
    host: "127.0.0.1",
    port: s.dp.port,
    database: "app",
    username: "ci",
    password: token,
    ssl: { rejectUnauthorized: false },
    max: 4,
    onnotice: () => undefined,
  });
  t.after(() => sql.end({ timeout: 1 }));

  await t.test("psql with sslmode=require and the token as PGPASSWORD", async () => {
    const { stdout } = await execFileP(
      "psql",
      ["-X", "-At", "-h", "127.0.0.1", "-p", String(s.dp.port), "-U", "ci", "-d", "app", "-c", "SELECT 40 + 2", "-c", "SHOW ssl"],
      { env: { ...process.env, PGPASSWORD: token, PGSSLMODE: "require" } },
    );
    assert.equal(stdout.trim().split("\n")[0], "42");
  });

  await t.test("psql sees a denial and keeps going", async () => {
    const { stdout, stderr } = await execFileP(
      "psql",
      ["-X", "-At", "-h", "127.0.0.1", "-p", String(s.dp.port), "-U", "ci", "-d", "app", "-c", "SELECT * FROM forbidden_table", "-c", "SELECT 'still here'"],
      { env: { ...process.env, PGPASSWORD: token, PGSSLMODE: "require" } },
    ).catch((e: { stdout: string; stderr: string }) => e);
    assert.match(stderr, /permission denied by sluice policy: rule "test\/deny:forbidden_table"/);
    assert.match(stdout, /still here/);
  });

  await t.test("simple and prepared statements, text and binary parameters", async () => {
    await c.query("INSERT INTO items VALUES (1, 'one', '\\x0102'), (2, 'two', NULL)");
    const r = await c.query("SELECT id, name FROM items ORDER BY id");
    assert.deepEqual(r.rows, [{ id: 1, name: "one" }, { id: 2, name: "two" }]);
    // named prepared statement used twice
    const q = { name: "by-id", text: "SELECT name FROM items WHERE id = $1" };
    assert.equal((await c.query({ ...q, values: [1] })).rows[0].name, "one");
    assert.equal((await c.query({ ...q, values: [2] })).rows[0].name, "two");
    // a Buffer parameter goes in binary format
    const bin = Buffer.from([0, 1, 2, 254, 255]);
    await c.query("INSERT INTO items VALUES ($1, $2, $3)", [3, "three", bin]);
    const back = await c.query("SELECT data FROM items WHERE id = $1", [3]);
    assert.deepEqual(back.rows[0].data, bin);
    // binary result format
    const br = await c.query({ text: "SELECT 7::int4 AS n", binary: true, rowMode: "array" } as pg.QueryConfig);
    assert.equal(br.rows.length, 1);
    // postgres.js: unnamed statements, describe first, then execute
    const rows = await sql`SELECT id, name FROM items WHERE id = ${2}`;
    assert.deepEqual([...rows], [{ id: 2, name: "two" }]);
    const multi = await c.query("SELECT 1 AS a; SELECT 2 AS b");
    assert.equal((multi as unknown as pg.QueryResult[]).length, 2);
  });

  await t.test("transactions and rollback", async () => {
    await c.query("BEGIN");
    await c.query("INSERT INTO items VALUES (10, 'ten', NULL)");
    await c.query("ROLLBACK");
    assert.equal((await c.query("SELECT count(*)::int AS n FROM items WHERE id = 10")).rows[0].n, 0);
    await sql.begin(async (tx) => {
      await tx`INSERT INTO items VALUES (11, 'eleven', NULL)`;
    });
    assert.equal((await c.query("SELECT count(*)::int AS n FROM items WHERE id = 11")).rows[0].n, 1);
  });

  await t.test("a denial outside a transaction leaves the connection usable", async () => {
    await assert.rejects(c.query("SELECT * FROM forbidden_table"), (e: pg.DatabaseError) => {
      assert.equal(e.code, "42501");
      assert.match(e.message, /rule "test\/deny:forbidden_table" \(read\)/);
      return true;
    });
    // extended protocol denial (decided at Parse)
    await assert.rejects(c.query("SELECT * FROM forbidden_table WHERE x = $1", [1]), { code: "42501" });
    // multi-statement: one denial denies the whole message before anything runs
    await assert.rejects(c.query("INSERT INTO items VALUES (20, 'x', NULL); SELECT * FROM forbidden_table"), { code: "42501" });
    assert.equal((await c.query("SELECT count(*)::int AS n FROM items WHERE id = 20")).rows[0].n, 0);
    assert.equal((await c.query("SELECT 1 AS ok")).rows[0].ok, 1);
  });

  await t.test("a denial inside a transaction fails it as Postgres would; COMMIT rolls back", async () => {
    await c.query("BEGIN");
    await c.query("INSERT INTO items VALUES (30, 'thirty', NULL)");
    await assert.rejects(c.query("SELECT * FROM forbidden_table"), { code: "42501" });
    await assert.rejects(c.query("SELECT 1"), { code: "25P02" });
    const commit = await c.query("COMMIT");
    assert.equal(commit.command, "ROLLBACK");
    assert.equal((await c.query("SELECT count(*)::int AS n FROM items WHERE id = 30")).rows[0].n, 0);
    // the same with the extended protocol
    await c.query("BEGIN");
    await c.query("INSERT INTO items VALUES ($1, 'x', NULL)", [31]);
    await assert.rejects(c.query("SELECT * FROM forbidden_table WHERE x = $1", [1]), { code: "42501" });
    await assert.rejects(c.query("SELECT $1::int", [1]), { code: "25P02" });
    await c.query("ROLLBACK");
    assert.equal((await c.query("SELECT count(*)::int AS n FROM items WHERE id = 31")).rows[0].n, 0);
    // and the session is fine afterwards
    await c.query("BEGIN");
    await c.query("INSERT INTO items VALUES (32, 'ok', NULL)");
    await c.query("COMMIT");
    assert.equal((await c.query("SELECT count(*)::int AS n FROM items WHERE id = 32")).rows[0].n, 1);
  });

  await t.test("pipelined extended queries with an error and a denial in the middle", async () => {
    const results = await Promise.allSettled([
      sql`SELECT 1::int AS a`,
      sql`SELECT 1/0 AS boom`,
      sql`SELECT * FROM forbidden_table`,
      sql`SELECT 3::int AS c`,
    ]);
    assert.equal(results[0].status, "fulfilled");
    assert.equal(results[1].status, "rejected");
    assert.equal((results[1] as PromiseRejectedResult).reason.code, "22012");
    assert.equal(results[2].status, "rejected");
    assert.equal((results[2] as PromiseRejectedResult).reason.code, "42501");
    assert.equal(results[3].status, "fulfilled");
    assert.deepEqual([...(results[3] as PromiseFulfilledResult<postgres.RowList<postgres.Row[]>>).value], [{ c: 3 }]);
  });

  await t.test("COPY FROM STDIN and TO STDOUT of 100k rows", async () => {
    await c.query("CREATE TABLE bulk (id int, label text)");
    const N = 100_000;
    async function* rows() {
      const batch = 5000;
      for (let i = 0; i < N; i += batch) {
        let s = "";
        for (let k = i; k < i + batch; k++) s += `${k}\tlabel-${k}\n`;
        yield s;
      }
    }
    await pipeline(Readable.from(rows()), c.query(copyStreams.from("COPY bulk FROM STDIN")));
    assert.equal((await c.query("SELECT count(*)::int AS n, sum(id)::bigint AS s FROM bulk")).rows[0].n, N);
    let bytes = 0;
    let lines = 0;
    await pipeline(
      c.query(copyStreams.to("COPY bulk TO STDOUT")),
      new Writable({
        write(chunk: Buffer, _e, cb) {
          bytes += chunk.length;
          for (const b of chunk) if (b === 10) lines++;
          cb();
        },
      }),
    );
    assert.equal(lines, N);
    assert.ok(bytes > N * 8);
    // CopyFail: the client aborts, the connection stays usable
    const failing = c.query(copyStreams.from("COPY bulk FROM STDIN"));
    const aborted = new Promise((_res, rej) => failing.on("error", rej));
    failing.write("1\tx\n");
    failing.destroy(new Error("client gave up"));
    await assert.rejects(aborted);
    assert.equal((await c.query("SELECT count(*)::int AS n FROM bulk")).rows[0].n, N);
  });

  await t.test("LISTEN/NOTIFY through the proxy", async () => {
    const listener = await s.pgClient(token);
    const got = new Promise<pg.Notification>((resolve) => listener.on("notification", resolve));
    await listener.query("LISTEN sluice_test");
    await c.query("SELECT pg_notify('sluice_test', 'hello')");
    const n = await got;
    assert.equal(n.channel, "sluice_test");
    assert.equal(n.payload, "hello");
  });

  await t.test("a cancel of pg_sleep(30) returns quickly", async () => {
    const victim = await s.pgClient(token);
    const started = Date.now();
    const sleeping = victim.query("SELECT pg_sleep(30)");
    await new Promise((r) => setTimeout(r, 300));
    // pg's cancel opens a second connection with the BackendKeyData the proxy handed out
    const canceller = new pg.Client(s.pgConfig(token));
    await (canceller as unknown as { cancel(target: pg.Client, q: unknown): void }).cancel(victim, (victim as unknown as { activeQuery: unknown }).activeQuery);
    await assert.rejects(sleeping, { code: "57014" });
    assert.ok(Date.now() - started < 10_000, "the cancel took effect well before pg_sleep ended");
    assert.equal((await victim.query("SELECT 1 AS ok")).rows[0].ok, 1);
  });

  await t.test("a 100 MB result streams through", async () => {
    let bytes = 0;
    let rowsSeen = 0;
    // 100k rows of 1000 characters, consumed in batches without buffering the result
    await sql`SELECT repeat('x', 1000) AS payload FROM generate_series(1, 100000)`.cursor(1000, (batch) => {
      for (const r of batch) {
        bytes += (r.payload as string).length;
        rowsSeen++;
      }
    });
    assert.equal(rowsSeen, 100_000);
    assert.equal(bytes, 100_000_000);
  });

  await t.test("nothing secret in the logs", () => {
    const logs = s.logs();
    assert.ok(logs.includes("session authenticated"));
    assert.ok(!logs.includes(token), "the JWT never appears in a log line");
    assert.ok(!logs.includes(token.split(".")[2]!), "not even its signature");
  });
});
