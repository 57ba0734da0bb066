/**
 * Upstream connection reuse through the proxy, tried as an attacker would (issue 15): one identity
 * leaves state on its backend and ends cleanly; the next identity gets that same backend (each test
 * checks it did, so none passes vacuously) and looks for what was left, with real clients and raw
 * protocol frames. And the sessions whose connection must never be handed on: an error, a cancel,
 * an unfinished COPY, a transaction, a client that vanished mid-statement.
 */
import { test, type TestContext } from "node:test";
import assert from "node:assert/strict";
import net from "node:net";
import type pg from "pg";
import { startProxyStack, type ProxyStack } from "./proxy-stack.js";
import { rawConnect, shown, firstError, type RawClient } from "../lib/raw-pg-client.js";
import { bind, copyData, describe as describeMsg, execute, parse, query, sync } from "../../data-plane/src/wire/encode.js";

async function waitFor<T>(f: () => Promise<T | undefined | false> | T | undefined | false, what: string, ms = 30_000): Promise<T> {
  const until = Date.now() + ms;
  for (;;) {
    const v = await f();
    if (v !== undefined && v !== false) return v;
    if (Date.now() > until) throw new Error(`timed out waiting for ${what}`);
    await new Promise((r) => setTimeout(r, 25));
  }
}

/** no warm spares: the only idle connection is the one the previous session left */
async function stack(t: TestContext): Promise<ProxyStack> {
  return startProxyStack(t, { dp: { httpPort: 0, upstreamPool: { spares: 0 } } });
}

const first = (s: ProxyStack) => s.token({ sub: "repo:acme/first-identity" });
const second = (s: ProxyStack) => s.token({ sub: "repo:mallory/second-identity" });
const pidOf = async (c: pg.Client): Promise<number> => (await c.query("SELECT pg_backend_pid() AS pid")).rows[0].pid;

/** the previous session's connection is reset and idle in the pool */
async function parked(s: ProxyStack, resets: number): Promise<void> {
  await waitFor(() => (s.dp.poolStats().resets === resets && s.dp.poolStats().resetting === 0 && s.dp.poolStats().idle === 1) || undefined, `reset #${resets} to finish`);
}

/** A (first identity) leaves state behind and ends cleanly; B (second identity) gets its backend. */
async function handOver(s: ProxyStack, leave: (a: pg.Client) => Promise<void>): Promise<{ b: pg.Client; pid: number }> {
  const a = await s.pgClient(await first(s));
  const pid = await pidOf(a);
  await leave(a);
  await a.end();
  await parked(s, 1);
  const b = await s.pgClient(await second(s));
  assert.equal(await pidOf(b), pid, "the second identity runs on the first one's backend (else this test proves nothing)");
  assert.equal(s.dp.poolStats().reused, 1);
  return { b, pid };
}

async function rawAs(s: ProxyStack, token: string): Promise<RawClient> {
  return rawConnect({ port: s.dp.port, database: "app", user: "ci", password: token, tls: true });
}

test("temp tables of one identity are gone for the next", async (t) => {
  const s = await stack(t);
  const { b } = await handOver(s, async (a) => {
    await a.query("CREATE TEMP TABLE a_secret AS SELECT 'first-identity-secret'::text AS v");
    await a.query("CREATE TEMP SEQUENCE a_seq");
    await a.query("SELECT nextval('a_seq')");
  });
  await assert.rejects(b.query("SELECT v FROM pg_temp.a_secret"), { code: "42P01" });
  assert.equal((await b.query("SELECT count(*)::int AS n FROM pg_class WHERE relname IN ('a_secret', 'a_seq')")).rows[0].n, 0);
  assert.equal((await b.query("SELECT count(*)::int AS n FROM pg_class WHERE relnamespace = pg_my_temp_schema()")).rows[0].n, 0);
});

test("prepared statements (protocol Parse under the proxy's names, and SQL PREPARE) are gone for the next identity", async (t) => {
  const s = await stack(t);
  const a = await s.pgClient(await first(s));
  const pid = await pidOf(a);
  await a.query({ name: "leak", text: "SELECT 'first-identity-secret'::text AS v" });
  await a.query("PREPARE sqlleak AS SELECT 'first-identity-secret'::text AS v");
  const serverNames = (await a.query<{ name: string }>("SELECT name FROM pg_prepared_statements")).rows.map((r) => r.name);
  assert.equal(serverNames.length, 2, "the first identity saw its two statements on the server");
  const protocolName = serverNames.find((n) => n !== "sqlleak")!;
  await a.end();
  await parked(s, 1);

  // the second identity, with raw frames, on the same backend
  const b = await rawAs(s, await second(s));
  b.send(query("SELECT pg_backend_pid()"));
  assert.equal(Number(shown(await b.untilReady()).find((m) => m.startsWith("D:"))!.slice(2)), pid, "the same backend");
  b.send(query("SELECT count(*) FROM pg_prepared_statements"));
  assert.deepEqual(shown(await b.untilReady()), ["T:count", "D:0", "C:SELECT 1", "Z:I"]);
  // Bind straight to the names the server had, without a Parse of one's own
  for (const name of [protocolName, "leak", "sqlleak", ""]) {
    b.send(bind("", name), execute(""), sync());
    const got = await b.untilReady();
    assert.equal(firstError(got)?.C, "26000", `Bind to ${JSON.stringify(name)}: ${shown(got).join(" ")}`);
    assert.ok(!shown(got).some((m) => m.includes("first-identity-secret")));
  }
  for (const sql of [`EXECUTE "${protocolName}"`, "EXECUTE sqlleak"]) {
    b.send(query(sql));
    const got = await b.untilReady();
    assert.ok(firstError(got), `${sql} is refused: ${shown(got).join(" ")}`);
    assert.ok(!shown(got).some((m) => m.includes("first-identity-secret")));
  }
  b.end();
});

test("an unnamed statement and portal Parsed but never run are gone for the next identity", async (t) => {
  const s = await stack(t);
  const a = await rawAs(s, await first(s));
  a.send(query("SELECT pg_backend_pid()"));
  const pid = shown(await a.untilReady()).find((m) => m.startsWith("D:"))!.slice(2);
  // an unnamed statement and a bound unnamed portal are left behind, then a clean Terminate
  a.send(parse("", "SELECT 'first-identity-secret'::text AS v"), bind("", ""), describeMsg("P", ""), sync());
  assert.deepEqual(shown(await a.untilReady()), ["1", "2", "T:v", "Z:I"]);
  a.send(Buffer.from([0x58, 0, 0, 0, 4]));
  await a.closed;
  await parked(s, 1);
  const b = await rawAs(s, await second(s));
  b.send(query("SELECT pg_backend_pid()"));
  assert.equal(shown(await b.untilReady()).find((m) => m.startsWith("D:"))!.slice(2), pid, "the same backend");
  b.send(execute(""), sync());
  const e1 = await b.untilReady();
  assert.equal(firstError(e1)?.C, "34000", shown(e1).join(" "));
  b.send(bind("", ""), execute(""), sync());
  const e2 = await b.untilReady();
  assert.equal(firstError(e2)?.C, "26000", shown(e2).join(" "));
  b.end();
});

test("advisory locks held by one identity are released before the next gets the backend", async (t) => {
  const s = await stack(t);
  const { b } = await handOver(s, async (a) => {
    await a.query("SELECT pg_advisory_lock(915001)");
    await a.query("SELECT pg_advisory_lock_shared(915002)");
  });
  assert.equal((await b.query("SELECT count(*)::int AS n FROM pg_locks WHERE locktype = 'advisory' AND pid = pg_backend_pid()")).rows[0].n, 0);
  // B cannot release what A took (it holds nothing), and anyone else can take the locks now
  assert.equal((await b.query("SELECT pg_advisory_unlock(915001) AS ok")).rows[0].ok, false);
  const other = await s.direct("SELECT pg_try_advisory_lock(915001) AS a, pg_try_advisory_lock(915002) AS b");
  assert.deepEqual(other.rows[0], { a: true, b: true });
});

test("LISTEN of one identity does not deliver notifications to the next", async (t) => {
  const s = await stack(t);
  const { b } = await handOver(s, async (a) => {
    await a.query("LISTEN first_identity_channel");
  });
  const got: string[] = [];
  b.on("notification", (n) => got.push(`${n.channel}:${n.payload}`));
  assert.deepEqual((await b.query("SELECT pg_listening_channels() AS c")).rows, []);
  await s.direct("NOTIFY first_identity_channel, 'for-the-first-identity-only'");
  // a notification would arrive with the next message the server sends
  await new Promise((r) => setTimeout(r, 300));
  await b.query("SELECT 1");
  assert.deepEqual(got, []);
});

test("settings (GUCs, custom ones, the role) of one identity are reset for the next", async (t) => {
  const s = await stack(t);
  let defaults: Record<string, string> = {};
  const { b } = await handOver(s, async (a) => {
    defaults = (await a.query("SELECT current_setting('search_path') AS sp, current_setting('TimeZone') AS tz, current_setting('statement_timeout') AS st, current_user AS u")).rows[0];
    await a.query("SET search_path = pg_catalog, evil");
    await a.query("SET TimeZone = 'Pacific/Chatham'");
    await a.query("SELECT set_config('app.tenant', 'first-identity-secret', false)");
    await a.query("SET ROLE pg_read_all_settings");
    // last: anything after it could time out (an error would rightly keep the backend from reuse)
    await a.query("SET statement_timeout = '1ms'");
  });
  const now = (await b.query("SELECT current_setting('search_path') AS sp, current_setting('TimeZone') AS tz, current_setting('statement_timeout') AS st, current_user AS u")).rows[0];
  assert.deepEqual(now, defaults);
  const custom = (await b.query("SELECT current_setting('app.tenant', true) AS v")).rows[0].v;
  assert.ok(custom === null || custom === "", `custom setting after reset: ${custom}`);
  // what B was told at its start is the reset value, not A's (ParameterStatus of the reused connection)
  const raw = await (async () => {
    await b.end();
    await parked(s, 2);
    return rawAs(s, await second(s));
  })();
  assert.equal(raw.parameters.TimeZone, defaults.tz);
  raw.end();
});

test("cursors WITH HOLD of one identity are closed for the next", async (t) => {
  const s = await stack(t);
  const { b } = await handOver(s, async (a) => {
    await a.query("DECLARE held CURSOR WITH HOLD FOR SELECT 'first-identity-secret'::text AS v FROM generate_series(1, 3)");
    await a.query("FETCH 1 FROM held");
  });
  assert.equal((await b.query("SELECT count(*)::int AS n FROM pg_cursors")).rows[0].n, 0);
  await assert.rejects(b.query("FETCH ALL FROM held"), { code: "34000" });
});

/** A session that ended as `how`; the next session must get a new backend. */
async function neverReused(t: TestContext, how: (s: ProxyStack) => Promise<number>, reason = "not_clean"): Promise<void> {
  const s = await stack(t);
  const pid = await how(s);
  await waitFor(() => (s.dp.poolStats().closed as Record<string, number>)[reason]! >= 1 || undefined, `a close for ${reason}`);
  assert.equal(s.dp.poolStats().resets, 0, "no reset was even tried");
  assert.equal(s.dp.poolStats().idle, 0);
  const b = await s.pgClient(await second(s));
  assert.notEqual(await pidOf(b), pid);
  assert.equal(s.dp.poolStats().reused, 0);
  // and the backend is gone
  await waitFor(async () => (await s.direct(`SELECT count(*)::int AS n FROM pg_stat_activity WHERE pid = ${pid}`)).rows[0].n === 0 || undefined, "the backend to end");
}

test("never reused: a session that met an error", async (t) => {
  await neverReused(t, async (s) => {
    const a = await s.pgClient(await first(s));
    const pid = await pidOf(a);
    await assert.rejects(a.query("SELECT 1/0"), { code: "22012" });
    await a.query("SELECT 1");
    await a.end();
    return pid;
  });
});

test("never reused: a session a cancel was sent for (even one that found nothing running)", async (t) => {
  await neverReused(t, async (s) => {
    const a = await s.pgClient(await first(s));
    const pid = await pidOf(a);
    const { processID, secretKey } = a as unknown as { processID: number; secretKey: number };
    const cancel = Buffer.alloc(16);
    cancel.writeInt32BE(16, 0);
    cancel.writeInt32BE(80877102, 4);
    cancel.writeInt32BE(processID, 8);
    cancel.writeInt32BE(secretKey, 12);
    await new Promise<void>((resolve) => {
      const c = net.connect(s.dp.port, "127.0.0.1", () => c.end(cancel));
      c.on("close", () => resolve());
      c.on("error", () => resolve());
    });
    await waitFor(() => s.dp.stats().cancels === 1 || undefined, "the cancel to be sent upstream");
    // it may still reach the backend later: a late signal must not hit another identity's statement
    await a.query("SELECT 1").catch(() => undefined);
    await a.end();
    return pid;
  });
});

test("never reused: an unfinished COPY FROM STDIN ended by Terminate", async (t) => {
  await neverReused(t, async (s) => {
    await s.direct("CREATE TABLE copy_target (v text)");
    const a = await rawAs(s, await first(s));
    a.send(query("SELECT pg_backend_pid()"));
    const pid = Number(shown(await a.untilReady()).find((m) => m.startsWith("D:"))!.slice(2));
    a.send(query("COPY copy_target FROM STDIN"));
    await a.until((m) => m.type === "G");
    a.send(copyData("half a row"), Buffer.from([0x58, 0, 0, 0, 4]));
    await a.closed;
    return pid;
  });
});

test("never reused: a session that ended inside a transaction", async (t) => {
  await neverReused(t, async (s) => {
    const a = await s.pgClient(await first(s));
    const pid = await pidOf(a);
    await a.query("BEGIN");
    await a.query("CREATE TEMP TABLE in_tx (v text)");
    await a.end();
    return pid;
  });
});

test("never reused: a client that vanished mid-statement, and one that pipelined Terminate behind a query", async (t) => {
  await neverReused(t, async (s) => {
    const a = await rawAs(s, await first(s));
    a.send(query("SELECT pg_backend_pid()"));
    const pid = Number(shown(await a.untilReady()).find((m) => m.startsWith("D:"))!.slice(2));
    a.send(query("SELECT pg_sleep(0.5)"));
    await new Promise((r) => setTimeout(r, 50));
    a.end(); // FIN without Terminate while the statement runs
    return pid;
  });
  await neverReused(t, async (s) => {
    const a = await rawAs(s, await first(s));
    a.send(query("SELECT pg_backend_pid()"));
    const pid = Number(shown(await a.untilReady()).find((m) => m.startsWith("D:"))!.slice(2));
    // Terminate right behind a Query whose answer has not come: something is still pending
    a.send(query("SELECT pg_sleep(0.2)"), Buffer.from([0x58, 0, 0, 0, 4]));
    await a.closed;
    return pid;
  });
});

test("the pool's figures are on /metrics", async (t) => {
  const s = await stack(t);
  const a = await s.pgClient(await first(s));
  await a.end();
  await parked(s, 1);
  const b = await s.pgClient(await second(s));
  await b.query("SELECT 1");
  const text = await (await fetch(`http://127.0.0.1:${s.dp.httpPort}/metrics`)).text();
  const metric = (re: RegExp) => Number(re.exec(text)?.[1]);
  assert.equal(metric(/^sluice_dp_upstream_connections\{state="in_use"\} (\d+)$/m), 1);
  assert.equal(metric(/^sluice_dp_upstream_connections_opened_total (\d+)$/m), 1);
  assert.equal(metric(/^sluice_dp_upstream_connections_reused_total (\d+)$/m), 1);
  assert.equal(metric(/^sluice_dp_upstream_resets_total (\d+)$/m), 1);
  // reused within 5 s of its reset: no health check by default (upstream-pool.test.ts has the check itself)
  assert.equal(metric(/^sluice_dp_upstream_health_checks_total (\d+)$/m), 0);
  assert.match(text, /^sluice_dp_upstream_connections_closed_total\{reason="not_clean"\} 0$/m);
});
