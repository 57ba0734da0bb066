/**
 * Result masking through the real proxy with real clients: pg (text and binary), postgres.js,
 * psql, COPY TO STDOUT, a view, a join with aliases, expressions over masked columns and JSON.
 */
import { test, type TestContext } from "node:test";
import assert from "node:assert/strict";
import { readFileSync } from "node:fs";
import { execFile } from "node:child_process";
import { promisify } from "node:util";
import { pipeline } from "node:stream/promises";
import { Writable } from "node:stream";
import type pg from "pg";
import postgres from "postgres";
import copyStreams from "pg-copy-streams";
import type { MaskingSpec } from "@sluice/shared/policy";
import { startProxyStack, type ProxyStack } from "./proxy-stack.js";

const run = promisify(execFile);
const fixture = readFileSync(new URL("../fixtures/pii/customers.sql", import.meta.url), "utf8");
const RAW = ["alice@example.com", "bob@corp.io", "4111 1111 1111 1111", "5500-0000-0000-0004", "123-45-6789", "DE89 3704 0044 0532 0130 00", "4111111111111111"];

const MASKING: MaskingSpec[] = [
  { name: "pii", resources: ["app"], columns: ["customers.email", "customers.card_number"], classifiers: ["email", "us-ssn", "credit-card"], strategy: "partial" },
  { name: "bank", resources: ["app"], columns: ["public.customers.iban"], strategy: "hash" },
];

async function maskedStack(t: TestContext, masking = MASKING): Promise<ProxyStack> {
  const s = await startProxyStack(t, { bundle: (b) => ({ ...b, masking }), dp: { maskingHashKey: Buffer.from("e2e-hash-key") } });
  await s.direct(fixture);
  return s;
}

/**
 * pg's `binary: true` (results in binary format; not in its QueryConfig type) only applies to the
 * extended protocol, which pg uses when there are parameters.
 */
const binary = (text: string, values: unknown[]): pg.QueryConfig => ({ text, values, binary: true }) as pg.QueryConfig;

function noRaw(text: string, where: string): void {
  for (const r of RAW) assert.ok(!text.includes(r), `${where} leaked ${r}`);
}

test("pg text protocol: columns by rule, classifiers, hash, views, joins, expressions, JSON", async (t) => {
  const s = await maskedStack(t);
  const c = await s.pgClient();
  const all = await c.query("SELECT * FROM customers ORDER BY id");
  const [a, b, carol] = all.rows;
  assert.equal(a.email, "a****@example.com");
  assert.equal(a.card_number, "4111 11** **** 1111");
  assert.equal(a.ssn, "***-**-6789", "SSN found by the classifier");
  assert.match(a.iban, /^h:[A-Za-z0-9_-]{16}$/);
  assert.equal(a.notes, "prefers email a****@example.com");
  assert.equal(a.profile.email, "a****@example.com");
  assert.equal(a.profile.card.number, "411111******1111");
  assert.equal(a.profile.tier, "gold");
  assert.equal(a.name, "Alice");
  assert.equal(b.notes, "call after 5pm");
  assert.equal(carol.email, null);
  assert.equal(all.rows.length, 3);
  noRaw(JSON.stringify(all.rows), "SELECT *");

  // hash is deterministic: the same IBAN joins with itself
  const h = await c.query("SELECT iban FROM customers WHERE id = 1");
  assert.equal(h.rows[0].iban, a.iban);

  const view = await c.query("SELECT * FROM customer_view ORDER BY id");
  assert.equal(view.rows[0].contact, "a****@example.com");
  assert.equal(view.rows[1].card_number, "5500-00**-****-0004");
  assert.equal((await c.query("SELECT mail FROM customer_contacts WHERE id = 2")).rows[0].mail, "b**@corp.io");

  const join = await c.query("SELECT o.id AS order_id, c.email AS who, o.total FROM orders o JOIN customers c ON c.id = o.customer_id ORDER BY o.id");
  assert.deepEqual(join.rows.map((r) => r.who), ["a****@example.com", "b**@corp.io", "a****@example.com"]);
  assert.equal(join.rows[0].total, "99.50");

  const expr = await c.query(
    "SELECT lower(c.email) AS l, substring(c.card_number, 1, 6) AS bin, c.email || '' AS cat, length(email) AS n FROM customers c WHERE id = 1",
  );
  assert.equal(expr.rows[0].l, "a****@example.com");
  assert.equal(expr.rows[0].bin, "**** *", "separators kept, digits hidden");
  assert.equal(expr.rows[0].cat, "a****@example.com");
  assert.equal(expr.rows[0].n, 0, "a number computed from a masked column is masked too");

  const json = await c.query("SELECT row_to_json(c) AS r, json_build_object('e', c.email, 'n', c.name) AS o, profile->>'email' AS pe FROM customers c WHERE id = 1");
  assert.equal(json.rows[0].r.email, "a****@example.com");
  assert.equal(json.rows[0].r.card_number, "4111 11** **** 1111");
  assert.deepEqual(json.rows[0].o, { e: "a****@example.com", n: "Alice" });
  assert.equal(json.rows[0].pe, "a****@example.com");
  noRaw(JSON.stringify([view.rows, join.rows, expr.rows, json.rows]), "derived results");

  // extended protocol with parameters, a CTE and a UNION
  const p = await c.query("WITH x AS (SELECT email AS m FROM customers WHERE id = $1) SELECT m FROM x UNION ALL SELECT 'plain'", [2]);
  // masking is per column: every row of a column computed from a masked column is masked
  assert.deepEqual(p.rows.map((r) => r.m), ["b**@corp.io", "*****"]);
  noRaw(s.logs(), "data plane logs");
});

test("pg binary format: text, jsonb and int8 masked in their binary form; other binary types are refused with a clear message", async (t) => {
  const s = await maskedStack(t, [
    { name: "pii", resources: ["app"], columns: ["customers.email", "customers.profile", "customers.score"], strategy: "redact" },
  ]);
  const c = await s.pgClient();
  const r = await c.query(binary("SELECT id, email, profile, score, name FROM customers WHERE id > $1 ORDER BY id", [0]));
  assert.equal(r.rows[0].id, 1);
  assert.equal(r.rows[0].email, "[REDACTED]");
  const profile = typeof r.rows[0].profile === "string" ? r.rows[0].profile : JSON.stringify(r.rows[0].profile);
  assert.ok(!profile.includes("alice@example.com"), profile);
  assert.ok(profile.includes("[REDACTED]"), profile);
  assert.equal(String(r.rows[0].score), "0");
  assert.equal(r.rows[0].name, "Alice");
  assert.equal(r.rows[2].email, null);

  const d = await maskedStack(t, [{ name: "when", resources: ["app"], types: ["numeric"], strategy: "partial" }]);
  const c2 = await d.pgClient();
  await assert.rejects(c2.query(binary("SELECT total FROM orders WHERE id > $1", [0])), (e: Error & { code?: string }) => {
    assert.equal(e.code, "42501");
    assert.match(e.message, /cannot mask binary column public\.orders\.total of type numeric/);
    return true;
  });
  // a statement error (decided before the statement ran): the same session goes on, and in text
  // format the same column is masked
  assert.deepEqual((await c2.query("SELECT total FROM orders ORDER BY id")).rows.map((x) => x.total), ["0", "0", "0"]);
  // binary columns it can mask still come back in binary, in the same session
  assert.deepEqual((await c2.query(binary("SELECT id FROM orders WHERE id > $1 ORDER BY id", [0]))).rows.map((x) => x.id), [10, 11, 12]);
});

test("postgres.js and psql see masked values", async (t) => {
  const s = await maskedStack(t);
  const token = await s.token();
  const sql = postgres({ host: "127.0.0.1", port: s.dp.port, database: "app", username: "ci", password: token, ssl: { rejectUnauthorized: false }, max: 1 });
  t.after(() => sql.end());
  const rows = await sql`SELECT email, card_number, profile FROM customers WHERE id = ${1}`;
  assert.equal(rows[0]!.email, "a****@example.com");
  assert.equal(rows[0]!.card_number, "4111 11** **** 1111");
  noRaw(JSON.stringify(rows), "postgres.js");

  const env = { ...process.env, PGPASSWORD: token, PGSSLMODE: "require" };
  const conn = ["-h", "127.0.0.1", "-p", String(s.dp.port), "-U", "ci", "-d", "app", "-X", "-At"];
  const out = await run("psql", [...conn, "-c", "SELECT id, email, ssn FROM customers ORDER BY id"], { env });
  assert.equal(out.stdout, "1|a****@example.com|***-**-6789\n2|b**@corp.io|***-**-7890\n3||\n");
  const copy = await run("psql", [...conn, "-c", "COPY customers (id, email, notes) TO STDOUT"], { env });
  assert.equal(copy.stdout, "1\ta****@example.com\tprefers email a****@example.com\n2\tb**@corp.io\tcall after 5pm\n3\t\\N\t\\N\n");
});

test("COPY TO STDOUT: whole table and a query masked row by row; CSV and binary of masked columns refused as a statement error", async (t) => {
  const s = await maskedStack(t);
  const c = await s.pgClient();
  const copyOut = async (q: string): Promise<string> => {
    const chunks: Buffer[] = [];
    await pipeline(
      c.query(copyStreams.to(q)),
      new Writable({
        write(b, _e, cb) {
          chunks.push(b);
          cb();
        },
      }),
    );
    return Buffer.concat(chunks).toString();
  };
  const whole = await copyOut("COPY customers TO STDOUT");
  const line = whole.split("\n")[0]!.split("\t");
  assert.equal(line[2], "a****@example.com");
  assert.equal(line[3], "4111 11** **** 1111");
  assert.match(line[5]!, /^h:/);
  noRaw(whole, "COPY customers");
  const q = await copyOut("COPY (SELECT c.id, upper(c.email) FROM customers c ORDER BY id) TO STDOUT");
  assert.equal(q, "1\tA****@EXAMPLE.COM\n2\tB**@CORP.IO\n3\t\\N\n");
  for (const refused of ["COPY (SELECT email FROM customers) TO STDOUT WITH (FORMAT csv)", "COPY customers TO STDOUT (FORMAT binary)"]) {
    await assert.rejects(
      new Promise((resolve, reject) => {
        const st = c.query(copyStreams.to(refused));
        st.on("error", reject);
        st.on("data", () => undefined);
        st.on("end", resolve);
      }),
      (e: Error & { code?: string }) => {
        assert.equal(e.code, "42501", refused);
        assert.match(e.message, /COPY TO STDOUT of a result with masking rules is not allowed in (csv|binary) format/);
        return true;
      },
    );
    // refused before it ran, as a statement error: the same session goes on
    assert.equal((await c.query("SELECT count(*)::int AS n FROM customers")).rows[0].n, 3);
  }
});

test("without lineage (a function returning rows, a cursor) masked names and classifiers still apply", async (t) => {
  const s = await maskedStack(t);
  await s.direct("CREATE FUNCTION all_customers() RETURNS SETOF customers LANGUAGE sql AS 'SELECT * FROM customers ORDER BY id'");
  const c = await s.pgClient();
  const f = await c.query("SELECT * FROM all_customers()");
  assert.equal(f.rows[0].email, "a****@example.com");
  assert.equal(f.rows[0].card_number, "4111 11** **** 1111");
  assert.equal(f.rows[0].name, "Alice");
  await c.query("BEGIN");
  await c.query("DECLARE cur CURSOR FOR SELECT lower(email) AS contact, card_number FROM customers ORDER BY id");
  const r = await c.query("FETCH 2 FROM cur");
  await c.query("COMMIT");
  assert.deepEqual(r.rows.map((x) => x.contact), ["a****@example.com", "b**@corp.io"]);
  assert.equal(r.rows[0].card_number, "4111 11** **** 1111");
  noRaw(JSON.stringify([f.rows, r.rows]), "function and cursor results");
});

test("RETURNING of masked columns is masked like a SELECT", async (t) => {
  const s = await maskedStack(t);
  const c = await s.pgClient();
  const ins = await c.query("INSERT INTO customers (id, name, email) VALUES (4, 'Dan', 'dan@example.org') RETURNING id, email, upper(email) AS up");
  assert.deepEqual(ins.rows, [{ id: 4, email: "d**@example.org", up: "D**@EXAMPLE.ORG" }]);
  const upd = await c.query("UPDATE customers c SET name = 'Daniel' WHERE c.id = $1 RETURNING c.email, c.name", [4]);
  assert.deepEqual(upd.rows, [{ email: "d**@example.org", name: "Daniel" }]);
  // the upstream holds the real value: masking is on the wire only
  assert.equal((await s.direct("SELECT email FROM customers WHERE id = 4")).rows[0].email, "dan@example.org");
});

test("DDL through the proxy flushes the catalog cache: a column renamed to a masked name is masked at once", async (t) => {
  const s = await maskedStack(t);
  const c = await s.pgClient();
  assert.equal((await c.query("SELECT name FROM customers WHERE id = 1")).rows[0].name, "Alice");
  await c.query("ALTER TABLE customers RENAME COLUMN email TO old_email");
  await c.query("ALTER TABLE customers RENAME COLUMN name TO email");
  const r = await c.query("SELECT email, old_email FROM customers WHERE id = 1");
  assert.equal(r.rows[0].email, "*****", "the renamed column now falls under customers.email");
  // old_email lost its rule but the email classifier still catches the value
  assert.equal(r.rows[0].old_email, "a****@example.com");
});
