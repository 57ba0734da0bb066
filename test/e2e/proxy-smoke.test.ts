import { test } from "node:test";
import assert from "node:assert/strict";
import { startProxyStack } from "./proxy-stack.js";

test("smoke: a pg client through the proxy", async (t) => {
  const s = await startProxyStack(t);
  const c = await s.pgClient();
  const r = await c.query("SELECT 1::int AS one, current_database() AS db");
  assert.deepEqual(r.rows, [{ one: 1, db: s.database }]);
  const p = await c.query("SELECT $1::int + 1 AS n", [41]);
  assert.equal(p.rows[0].n, 42);
  await assert.rejects(c.query("SELECT * FROM forbidden_table"), { code: "42501" });
  assert.equal((await c.query("SELECT 2 AS two")).rows[0].two, 2);
});

test("tls: disabled serves plaintext and answers SSLRequest with 'N'", async (t) => {
  const s = await startProxyStack(t, { dp: { tls: "disabled" } });
  const c = await s.pgClient(undefined, { ssl: false });
  assert.equal((await c.query("SELECT 'plain' AS v")).rows[0].v, "plain");
  // a client that insists on TLS is told the server has none
  await assert.rejects(s.pgClient(undefined, { ssl: { rejectUnauthorized: false } }), /does not support SSL/);
});
