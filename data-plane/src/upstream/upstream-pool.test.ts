import { after, before, test } from "node:test";
import assert from "node:assert/strict";
import net from "node:net";
import { randomBytes } from "node:crypto";
import pg from "pg";
import type { UpstreamSpec } from "@sluice/shared/policy";
import { connectUpstream, type UpstreamConnection } from "./connect-upstream.js";
import { UpstreamPool, poolKey, resetSql, type UpstreamLease } from "./upstream-pool.js";
import { query } from "../wire/encode.js";
import { splitFrames } from "../wire/frame-scanner.js";
import { decodeParameterStatus } from "../wire/decode.js";

// the shared local Postgres (trust); each test tells its backends apart by a unique application_name
const spec: UpstreamSpec = { host: "127.0.0.1", port: 5432, database: "postgres", user: "postgres", auth: "trust", tls: "disable" };
let admin: pg.Client;

before(async () => {
  admin = new pg.Client({ host: "127.0.0.1", port: 5432, user: "postgres", database: "postgres" });
  await admin.connect();
});
after(() => admin?.end());

const appName = () => `t_pool_${randomBytes(5).toString("hex")}`;

async function waitFor<T>(f: () => Promise<T | undefined | false> | T | undefined | false, what: string): Promise<T> {
  for (let i = 0; i < 600; i++) {
    const v = await f();
    if (v !== undefined && v !== false) return v;
    await new Promise((r) => setTimeout(r, 25));
  }
  throw new Error(`timed out waiting for ${what}`);
}

async function backends(app: string): Promise<number[]> {
  const r = await admin.query<{ pid: number }>("SELECT pid FROM pg_stat_activity WHERE application_name = $1 ORDER BY pid", [app]);
  return r.rows.map((x) => x.pid);
}

function counting(): { connects: number; connect(s: UpstreamSpec, p: Record<string, string>): Promise<UpstreamConnection> } {
  const c = {
    connects: 0,
    connect(s: UpstreamSpec, p: Record<string, string>) {
      c.connects++;
      return connectUpstream(s, { startupParams: p, timeoutMs: 10_000 });
    },
  };
  return c;
}

/** Runs one simple query on a leased connection as the relay would; returns the text of the first column of each row. */
async function run(up: UpstreamConnection, sql: string): Promise<{ rows: string[]; error?: string; status: string }> {
  const sock = up.socket;
  let buf: Buffer = Buffer.alloc(0);
  const rows: string[] = [];
  let error: string | undefined;
  return new Promise((resolve, reject) => {
    const onData = (d: Buffer) => {
      buf = Buffer.concat([buf, d]);
      const { frames, rest } = splitFrames(buf, 1 << 20);
      buf = rest;
      for (const f of frames) {
        if (f.code === 0x44 /* D */) {
          const len = f.raw.readInt32BE(7);
          rows.push(len < 0 ? "NULL" : f.raw.toString("utf8", 11, 11 + len));
        } else if (f.code === 0x45 /* E */) error = /C([0-9A-Z]{5})\0/.exec(f.raw.toString("latin1"))?.[1];
        else if (f.code === 0x5a /* Z */) {
          sock.removeListener("data", onData);
          sock.pause();
          resolve({ rows, error, status: String.fromCharCode(f.raw[5]!) });
        }
      }
    };
    sock.on("data", onData);
    sock.once("close", () => reject(new Error("closed")));
    sock.resume();
    sock.write(query(sql));
  });
}

// every lease handed out, so that a failed assertion leaves no socket keeping the run alive
const leased = new Set<UpstreamLease>();
async function take(pool: UpstreamPool, app: string, s: UpstreamSpec = spec, resource = "r"): Promise<UpstreamLease> {
  const l = await pool.checkout(resource, s, { application_name: app });
  leased.add(l);
  return l;
}
after(() => {
  for (const l of leased) l.up.socket.destroy();
});

test("a cleanly released connection is reset and handed to the next session of its key; nothing of the first session remains", async () => {
  const app = appName();
  const c = counting();
  const pool = new UpstreamPool({ connect: (s, p) => c.connect(s, p), spares: 0 });
  try {
    const first = await take(pool, app);
    assert.equal(first.reused, false);
    const pid = first.up.key.pid;
    await run(first.up, "CREATE TEMP TABLE t_secret AS SELECT 'first-session' AS v");
    await run(first.up, "SET TimeZone = 'Pacific/Chatham'");
    await run(first.up, "PREPARE p1 AS SELECT 1");
    await run(first.up, "SELECT pg_advisory_lock(4242)");
    assert.ok(first.reusable());
    first.release(true);
    await waitFor(() => pool.stats().idle === 1, "the reset connection to be idle");
    assert.equal(pool.stats().resets, 1);

    const second = await take(pool, app);
    assert.equal(second.reused, true);
    assert.equal(second.up.key.pid, pid, "the same backend");
    assert.equal(c.connects, 1);
    assert.equal((await run(second.up, "SELECT * FROM pg_temp.t_secret")).error, "42P01");
    assert.deepEqual((await run(second.up, "SELECT count(*) FROM pg_prepared_statements")).rows, ["0"]);
    assert.deepEqual((await run(second.up, "SELECT count(*) FROM pg_locks WHERE locktype = 'advisory' AND pid = pg_backend_pid()")).rows, ["0"]);
    const tz = (await run(second.up, "SHOW TimeZone")).rows[0];
    assert.notEqual(tz, "Pacific/Chatham");
    // what the next session is told at its start is what the server has now, not what it had
    const reported = second.up.parameterStatus.map(decodeParameterStatus).find((p) => p.name === "TimeZone")?.value;
    assert.equal(reported, tz);
    second.release(true);
    await waitFor(() => pool.stats().idle === 1, "idle again");
    assert.equal(pool.stats().reused, 1);
  } finally {
    pool.close();
  }
  await waitFor(async () => (await backends(app)).length === 0, "close() to end the idle backend");
  assert.equal(pool.stats().closed.stopped, 1);
});

test("a connection released unclean, or clean but in a transaction, is closed and never handed out again", async () => {
  const app = appName();
  const c = counting();
  const pool = new UpstreamPool({ connect: (s, p) => c.connect(s, p), spares: 0 });
  try {
    const a = await take(pool, app);
    const aPid = a.up.key.pid;
    a.release(false);
    // a connection the relay wrongly called clean: DISCARD ALL fails inside a transaction (25001)
    const b = await take(pool, app);
    assert.equal((await run(b.up, "BEGIN")).status, "T");
    const bPid = b.up.key.pid;
    b.release(true);
    await waitFor(() => pool.stats().closed.reset_failed === 1, "the failed reset");
    assert.equal(pool.stats().closed.not_clean, 1);
    await waitFor(async () => (await backends(app)).length === 0, "both backends to end");
    const n = await take(pool, app);
    assert.ok(![aPid, bPid].includes(n.up.key.pid));
    assert.equal(n.reused, false);
    n.release(false);
  } finally {
    pool.close();
  }
});

test("reuse off: a clean release closes the connection (one backend per session, warm spares still opened)", async () => {
  const app = appName();
  const c = counting();
  const pool = new UpstreamPool({ connect: (s, p) => c.connect(s, p), reuse: false });
  try {
    const a = await take(pool, app);
    assert.equal(a.reusable(), false);
    a.release(true);
    await waitFor(() => pool.stats().idle === 1, "the warm spare");
    assert.equal(pool.stats().closed.reuse_off, 1);
    const b = await take(pool, app);
    assert.notEqual(b.up.key.pid, a.up.key.pid);
    assert.equal(b.reused, false);
    b.release(false);
  } finally {
    pool.close();
  }
});

test("the resource's resetQuery replaces DISCARD ALL (the proxy's statements are still deallocated); one that fails closes the connection", async () => {
  assert.equal(resetSql(spec), "DISCARD ALL");
  assert.equal(resetSql({ ...spec, resetQuery: "RESET ALL;" }), "RESET ALL; DEALLOCATE ALL");
  const app = appName();
  const c = counting();
  const pool = new UpstreamPool({ connect: (s, p) => c.connect(s, p), spares: 0 });
  const own = { ...spec, resetQuery: "SELECT pg_advisory_unlock_all(); RESET ALL" };
  try {
    const a = await take(pool, app, own);
    await run(a.up, "PREPARE p1 AS SELECT 1");
    await run(a.up, "CREATE TEMP TABLE kept_by_weak_reset (x int)");
    a.release(true);
    await waitFor(() => pool.stats().idle === 1, "idle after the resource's reset");
    const b = await take(pool, app, own);
    assert.equal(b.up.key.pid, a.up.key.pid);
    assert.deepEqual((await run(b.up, "SELECT count(*) FROM pg_prepared_statements")).rows, ["0"]);
    // a weaker reset keeps what it does not reset: the operator's choice, documented
    assert.equal((await run(b.up, "SELECT count(*) FROM pg_temp.kept_by_weak_reset")).error, undefined);
    b.release(false);

    const broken = { ...spec, resetQuery: "SELECT no_such_function()" };
    const x = await take(pool, app, broken);
    x.release(true);
    await waitFor(() => pool.stats().closed.reset_failed === 1, "the failed reset");
    assert.equal(pool.stats().idle, 0);
  } finally {
    pool.close();
  }
});

test("limits: idle connections per resource and per node; the maximum lifetime; the idle time-out", async () => {
  const app = appName();
  const c = counting();
  const pool = new UpstreamPool({ connect: (s, p) => c.connect(s, p), spares: 0, maxIdlePerResource: 1, maxIdle: 2, idleMs: 400 });
  try {
    const [a, b] = [await take(pool, app), await take(pool, app)];
    a.release(true);
    b.release(true);
    await waitFor(() => pool.stats().closed.limit === 1, "the second to be over the resource's limit");
    await waitFor(() => pool.stats().idle === 1, "one idle");
    // another resource has room until the node's limit
    const [x, y] = [await take(pool, app, spec, "r2"), await take(pool, app, spec, "r3")];
    x.release(true);
    y.release(true);
    await waitFor(() => pool.stats().closed.limit === 2, "the node's limit");
    await waitFor(() => pool.stats().idle === 0, "the idle time-out");
    await waitFor(() => pool.stats().closed.idle_timeout === 2, "both closed for being idle");
  } finally {
    pool.close();
  }
  const old = new UpstreamPool({ connect: (s, p) => c.connect(s, p), spares: 0, maxLifetimeMs: 1 });
  try {
    const a = await take(old, app);
    await new Promise((r) => setTimeout(r, 5));
    assert.equal(a.reusable(), false);
    a.release(true);
    assert.equal(old.stats().closed.lifetime, 1);
  } finally {
    old.close();
  }
  await waitFor(async () => (await backends(app)).length === 0, "every backend to end");
});

test("an idle connection whose backend is terminated is dropped; the next session connects itself", async () => {
  const app = appName();
  const c = counting();
  const pool = new UpstreamPool({ connect: (s, p) => c.connect(s, p), spares: 0 });
  try {
    const a = await take(pool, app);
    const pid = a.up.key.pid;
    a.release(true);
    await waitFor(() => pool.stats().idle === 1, "idle");
    await admin.query("SELECT pg_terminate_backend($1)", [pid]);
    await waitFor(() => pool.stats().idle === 0, "the terminated connection to be dropped");
    assert.equal(pool.stats().closed.backend_closed, 1);
    const b = await take(pool, app);
    assert.notEqual(b.up.key.pid, pid);
    assert.deepEqual((await run(b.up, "SELECT 1")).rows, ["1"]);
    b.release(false);
  } finally {
    pool.close();
  }
});

/**
 * A fake server for what a real one does not do on demand: it answers the reset as Postgres does
 * and then answers the health check's empty query with an error.
 */
async function fakeUpstream(): Promise<{ connection(): Promise<UpstreamConnection>; close(): void }> {
  const server = net.createServer((s) => {
    s.on("data", (d) => {
      const sql = d.toString("utf8", 5, d.length - 1);
      const z = Buffer.from([0x5a, 0, 0, 0, 5, 0x49]);
      if (sql === "DISCARD ALL") {
        const tag = Buffer.from("DISCARD ALL\0");
        const cc = Buffer.alloc(5);
        cc[0] = 0x43;
        cc.writeInt32BE(4 + tag.length, 1);
        s.write(Buffer.concat([cc, tag, z]));
      } else {
        const body = Buffer.from("SERROR\0C57P01\0Mterminating\0\0");
        const e = Buffer.alloc(5);
        e[0] = 0x45;
        e.writeInt32BE(4 + body.length, 1);
        s.write(Buffer.concat([e, body, z]));
      }
    });
  });
  await new Promise<void>((r) => server.listen(0, "127.0.0.1", () => r()));
  const port = (server.address() as net.AddressInfo).port;
  return {
    async connection() {
      const socket = net.connect(port, "127.0.0.1");
      await new Promise((r) => socket.once("connect", r));
      socket.pause();
      return { socket, parameterStatus: [], key: { pid: 1, secret: 2 }, txStatus: "I", rest: Buffer.alloc(0) };
    },
    close: () => server.close(),
  };
}

test("a connection that fails its health check before reuse is closed and the session gets another", async () => {
  const fake = await fakeUpstream();
  let opened = 0;
  const pool = new UpstreamPool({ connect: () => (opened++, fake.connection()), spares: 0, healthCheckAfterMs: 0 });
  try {
    const a = await pool.checkout("r", spec, {});
    a.release(true);
    await waitFor(() => pool.stats().idle === 1, "idle after the reset");
    const b = await pool.checkout("r", spec, {});
    assert.equal(pool.stats().healthChecks, 1);
    assert.equal(pool.stats().closed.health_check_failed, 1);
    assert.equal(b.reused, false);
    assert.equal(opened, 2);
    b.release(false);
  } finally {
    pool.close();
    fake.close();
  }
});

test("after a session takes a connection, a warm spare is opened for its key; keys are the whole definition", async () => {
  const [a, b] = [appName(), appName()];
  const c = counting();
  const pool = new UpstreamPool({ connect: (s, p) => c.connect(s, p) });
  try {
    const first = await take(pool, a);
    await waitFor(() => pool.stats().idle === 1, "a ready spare");
    assert.equal(c.connects, 2);
    const existing = await backends(a);
    const second = await take(pool, a);
    assert.ok(existing.includes(second.up.key.pid));
    assert.notEqual(second.up.key.pid, first.up.key.pid);
    assert.equal(second.reused, false, "a spare never served anyone");
    assert.deepEqual((await run(second.up, "SELECT 1")).rows, ["1"]);
    const other = await take(pool, b);
    assert.ok((await backends(b)).includes(other.up.key.pid));
    assert.notEqual(poolKey("r", spec, { application_name: a }), poolKey("r", spec, { application_name: b }));
    assert.equal(poolKey("r", spec, { a: "1", b: "2" }), poolKey("r", spec, { b: "2", a: "1" }));
    assert.notEqual(poolKey("r", spec, {}), poolKey("r", { ...spec, database: "other" }, {}));
    assert.notEqual(poolKey("r", spec, {}), poolKey("r2", spec, {}));
    assert.notEqual(poolKey("r", spec, {}), poolKey("r", { ...spec, resetQuery: "RESET ALL" }, {}));
    for (const l of [first, second, other]) l.release(false);
  } finally {
    pool.close();
  }
  await waitFor(async () => (await backends(a)).length + (await backends(b)).length === 0, "every backend to end");
});

test("a failed upstream connect fails the session and opens no spare", async () => {
  const c = counting();
  const pool = new UpstreamPool({ connect: (s, p) => c.connect(s, p) });
  try {
    await assert.rejects(pool.checkout("r", { ...spec, database: `no_such_db_${randomBytes(4).toString("hex")}` }, {}), /does not exist/);
    assert.equal(c.connects, 1);
    assert.equal(pool.stats().idle + pool.stats().opening, 0);
  } finally {
    pool.close();
  }
});

test("a session that finds its spare still opening takes that one, and the key keeps one more spare", async () => {
  const app = appName();
  const c = counting();
  let release!: () => void;
  const gate = new Promise<void>((r) => (release = r));
  const opened: UpstreamConnection[] = [];
  // the second connection (the first spare) is held until the test lets it finish
  const pool = new UpstreamPool({
    connect: async (s, p) => {
      const n = c.connects + 1;
      const up = c.connect(s, p);
      if (n === 2) await gate;
      const u = await up;
      opened.push(u);
      return u;
    },
  });
  try {
    (await take(pool, app)).release(false);
    assert.equal(c.connects, 2, "the spare is opening");
    const pending = take(pool, app);
    await new Promise((r) => setImmediate(r));
    assert.equal(c.connects, 2, "no new connection while the spare is on its way");
    release();
    const second = await pending;
    assert.equal(second.up.key.pid, opened[1]!.key.pid);
    // this session had to wait for a backend start: the key now keeps two spares
    await waitFor(() => pool.stats().idle === 2, "two spares");
    assert.equal(c.connects, 4);
    second.release(false);
  } finally {
    pool.close();
  }
});
