/**
 * Warm spare upstream connections through the proxy (issue 7, connection set-up; part of the
 * upstream pool since issue 15): the next session gets a backend opened before it connected, with
 * exactly its own startup settings; a client that does not authenticate never makes the proxy open
 * an upstream connection; sessions that end cleanly leave their backends idle in the pool; stop()
 * closes them all.
 */
import { test } from "node:test";
import assert from "node:assert/strict";
import { startProxyStack } from "./proxy-stack.js";

async function waitFor<T>(f: () => Promise<T | undefined | false> | T | undefined | false, what: string): Promise<T> {
  for (let i = 0; i < 400; i++) {
    const v = await f();
    if (v !== undefined && v !== false) return v;
    await new Promise((r) => setTimeout(r, 25));
  }
  throw new Error(`timed out waiting for ${what}`);
}

test("the next session gets a warm spare with its own startup settings; no spare for unauthenticated clients", async (t) => {
  const s = await startProxyStack(t, { dp: { httpPort: 0 } });
  const backends = async () =>
    (await s.admin.query<{ pid: number }>("SELECT pid FROM pg_stat_activity WHERE datname = $1 ORDER BY pid", [s.database])).rows.map((r) => r.pid);
  const metric = async () => {
    const text = await (await fetch(`http://127.0.0.1:${s.dp.httpPort}/metrics`)).text();
    return Number(/^sluice_dp_upstream_connections\{state="idle"\} (\d+)$/m.exec(text)?.[1]);
  };

  const first = await s.pgClient(undefined, { application_name: "spare-test" });
  await waitFor(() => s.dp.stats().upstreamIdle === 1, "a warm spare");
  assert.equal(await metric(), 1);
  const before = await backends();
  assert.equal(before.length, 2, "the first session's backend and the spare");

  const second = await s.pgClient(undefined, { application_name: "spare-test" });
  const r = await second.query("SELECT pg_backend_pid() AS pid, current_setting('application_name') AS app");
  assert.ok(before.includes(r.rows[0].pid), "the second session runs on the backend opened before it connected");
  assert.notEqual(r.rows[0].pid, (await first.query("SELECT pg_backend_pid() AS pid")).rows[0].pid);
  assert.equal(r.rows[0].app, "spare-test");

  // other startup settings: a backend of its own, started with them
  const other = await s.pgClient(undefined, { application_name: "other-app" });
  const o = await other.query("SELECT pg_backend_pid() AS pid, current_setting('application_name') AS app");
  assert.ok(!before.includes(o.rows[0].pid));
  assert.equal(o.rows[0].app, "other-app");

  // a forged token is refused before anything is opened upstream
  await waitFor(async () => (await backends()).length === 5 || undefined, "both keys' spares");
  const settled = await backends();
  const forged = (await s.token()).replace(/\.[^.]+$/, ".AAAA");
  for (let i = 0; i < 5; i++) await assert.rejects(s.pgClient(forged, { application_name: "spare-test" }), { code: "28P01" });
  assert.deepEqual(await backends(), settled);
  assert.equal(s.dp.stats().upstreamIdle, 2);

  for (const c of [first, second, other]) await c.end();
  // the three sessions ended cleanly: their backends are reset and kept (the spares too)
  await waitFor(() => s.dp.poolStats().resets === 3 && s.dp.poolStats().resetting === 0 || undefined, "the three resets");
  assert.equal(s.dp.stats().upstreamIdle, 5);
  assert.equal((await backends()).length, 5);
  await s.dp.stop();
  // stop() ends the spares' backends too
  await waitFor(async () => (await backends()).length === 0 || undefined, "every backend of the test database to end");
});
