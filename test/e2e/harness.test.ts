import { test } from "node:test";
import assert from "node:assert/strict";
import { execFile } from "node:child_process";
import { promisify } from "node:util";
import { jetstreamManager } from "@nats-io/jetstream";
import { readFleet } from "../../data-plane/src/fleet/index.js";
import { startStack } from "./harness.js";

const run = promisify(execFile);

const readOnly = `
policies:
  - name: ci-read
    groups: [ci]
    resources: [app]
    allow: [read]
`;

test("startStack: a client connects through the proxy over TLS and reaches the test database", async (t) => {
  const stack = await startStack(t, { setupSql: "CREATE TABLE orders (id int primary key, total numeric); INSERT INTO orders SELECT g, g * 1.5 FROM generate_series(1, 50) g" });
  const client = await stack.connect({ groups: ["dev"] });
  const r = await client.query("SELECT count(*)::int AS n, current_database() AS db FROM orders");
  assert.deepEqual(r.rows[0], { n: 50, db: stack.database });
  const ssl = await client.query("SELECT 1 AS one");
  assert.equal(ssl.rows[0].one, 1);

  // psql with the connection string (token as password, sslmode=require)
  const url = await stack.connectionString({ sub: "psql-user", groups: ["dev"] });
  const out = await run("psql", [url, "-tAc", "SELECT count(*) FROM orders"]);
  assert.equal(out.stdout.trim(), "50");

  // sessions are recorded on the stack's own audit stream (durability ack: before forwarding)
  const jsm = await jetstreamManager(stack.nc);
  const info = await jsm.streams.info(stack.names.auditStream);
  assert.ok(info.state.messages > 0, "audit events recorded");
  const subjects = await jsm.streams.info(stack.names.auditStream, { subjects_filter: ">" });
  assert.ok(Object.keys(subjects.state.subjects ?? {}).every((s) => s.startsWith(`${stack.natsPrefix}.sluice.audit.`)));

  // the node heartbeats with the applied revision
  const fleet = await readFleet(stack.nc, stack.natsPrefix);
  assert.equal(fleet.length, 1);
  assert.equal(fleet[0]!.node, stack.dataPlane.config.node);
});

test("apply: a new policy reaches live sessions at their next statement; identities without a policy cannot connect", async (t) => {
  const stack = await startStack(t, { setupSql: "CREATE TABLE t (x int); INSERT INTO t VALUES (1), (2)" });
  const dev = await stack.connect({ groups: ["dev"] });
  await dev.query("CREATE TABLE made_by_dev (y int)");

  const rev = await stack.apply(readOnly);
  assert.ok(rev >= 2);
  // the same connection, now without any policy for `dev`: statements are denied, the session stays usable
  await assert.rejects(dev.query("CREATE TABLE again (y int)"), { code: "42501" });
  await assert.rejects(stack.connect({ groups: ["dev"] }), (e: { code?: string }) => ["28000", "42501", "28P01"].includes(e.code ?? ""));

  const ci = await stack.connect({ sub: "pipeline", groups: ["ci"] });
  assert.equal((await ci.query("SELECT count(*)::int AS n FROM t")).rows[0].n, 2);
  await assert.rejects(ci.query("DELETE FROM t"), { code: "42501" });
  assert.equal((await ci.query("SELECT count(*)::int AS n FROM t")).rows[0].n, 2);
  assert.equal((await stack.pgAdmin.query("SELECT count(*)::int AS n FROM t")).rows[0].n, 2);
});

test("dataPlane.maxStatementBytes from the node's config bounds the statements it parses", async (t) => {
  const stack = await startStack(t, { configure: (c) => void (c.dataPlane.maxStatementBytes = 2048) });
  const client = await stack.connect({ groups: ["dev"] });
  await assert.rejects(client.query(`SELECT 1 /* ${"x".repeat(2048)} */`), (e: { code?: string; message: string }) => {
    assert.equal(e.code, "42501");
    assert.match(e.message, /statement-too-large/);
    assert.match(e.message, /at most 2048 bytes/);
    return true;
  });
  assert.equal((await client.query(`SELECT 1 AS one /* ${"x".repeat(1900)} */`)).rows[0].one, 1);
});

test("a graceful stop refuses new connections and answers /readyz 503 while open sessions finish", async (t) => {
  const stack = await startStack(t);
  const dp = stack.dataPlane;
  const readyz = async () => {
    const r = await fetch(`http://127.0.0.1:${dp.httpPort}/readyz`);
    return { status: r.status, body: (await r.text()).trim() };
  };
  assert.equal((await readyz()).status, 200);
  const open = await stack.connect({ groups: ["dev"] });
  const stopped = dp.stop(30_000);
  // the grace period: the open session keeps working, nobody new gets in, readiness says draining
  await new Promise((r) => setTimeout(r, 200));
  assert.deepEqual(await readyz(), { status: 503, body: "draining" });
  await assert.rejects(stack.connect({ groups: ["dev"] }), (e: { code?: string }) => e.code === "ECONNREFUSED");
  assert.equal((await open.query("SELECT 41 + 1 AS n")).rows[0].n, 42);
  // the last session ending ends the grace period well before its 30 s
  const t0 = Date.now();
  await open.end();
  await stopped;
  assert.ok(Date.now() - t0 < 10_000, `stopped ${Date.now() - t0} ms after the last session ended`);
});

test("dataPlane.upstreamPool from the node's config: spares 0 and reuse false open nothing ahead and keep nothing", async (t) => {
  const off = await startStack(t, { configure: (c) => void Object.assign(c.dataPlane.upstreamPool, { spares: 0, reuse: false }) });
  const on = await startStack(t);
  for (const s of [off, on]) {
    const c = await s.connect({ groups: ["dev"] });
    await c.query("SELECT 1");
    await c.end();
  }
  // the default: the spare opened after the session, and the session's own connection once reset
  for (let i = 0; i < 400 && on.dataPlane.proxy.stats().upstreamIdle < 2; i++) await new Promise((r) => setTimeout(r, 25));
  assert.equal(on.dataPlane.proxy.stats().upstreamIdle, 2, "the default keeps a spare and the reset connection");
  assert.equal(off.dataPlane.proxy.stats().upstreamIdle, 0);
  assert.equal(off.dataPlane.proxy.poolStats().closed.reuse_off, 1);
});
