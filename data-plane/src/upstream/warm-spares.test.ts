import { after, before, test } from "node:test";
import assert from "node:assert/strict";
import { randomBytes } from "node:crypto";
import pg from "pg";
import type { UpstreamSpec } from "@sluice/shared/policy";
import { connectUpstream, type UpstreamConnection } from "./connect-upstream.js";
import { WarmSpares, spareKey } from "./warm-spares.js";
import { query } from "../wire/encode.js";

// the shared local Postgres (trust); each test tells its backends apart by a unique application_name
const spec: UpstreamSpec = { host: "127.0.0.1", port: 5432, database: "postgres", user: "postgres", auth: "trust", tls: "disable" };
let admin: pg.Client;

before(async () => {
  admin = new pg.Client({ host: "127.0.0.1", port: 5432, user: "postgres", database: "postgres" });
  await admin.connect();
});
after(() => admin?.end());

const appName = () => `t_spare_${randomBytes(5).toString("hex")}`;

async function waitFor<T>(f: () => Promise<T | undefined> | T | undefined, what: string): Promise<T> {
  for (let i = 0; i < 400; i++) {
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

/** Runs SELECT 1 on a handed-out connection: it must be a working, idle session. */
async function selectOne(up: UpstreamConnection): Promise<void> {
  const sock = up.socket;
  let got = Buffer.alloc(0);
  await new Promise<void>((resolve, reject) => {
    sock.on("data", (d: Buffer) => {
      got = Buffer.concat([got, d]);
      // ReadyForQuery 'Z' after a DataRow 'D'
      if (got.includes(Buffer.from("D")) && got.at(-6) === 0x5a) resolve();
    });
    sock.once("close", () => reject(new Error("closed")));
    sock.resume();
    sock.write(query("SELECT 1"));
  });
}

// every handed-out connection, so that a failed assertion leaves no socket keeping the run alive
const handedOut = new Set<UpstreamConnection>();
function track(spares: WarmSpares): WarmSpares {
  const connect = spares.connect.bind(spares);
  spares.connect = async (s, p) => {
    const up = await connect(s, p);
    handedOut.add(up);
    return up;
  };
  return spares;
}
function close(up: UpstreamConnection): void {
  up.socket.destroy();
  handedOut.delete(up);
}
after(() => {
  for (const up of handedOut) up.socket.destroy();
});

test("after a session starts, the next one for the same resource and settings gets a spare opened beforehand", async () => {
  const app = appName();
  const c = counting();
  const spares = track(new WarmSpares({ connect: (s, p) => c.connect(s, p) }));
  try {
    const first = await spares.connect(spec, { application_name: app });
    await waitFor(() => spares.ready === 1, "a ready spare");
    assert.equal(c.connects, 2);
    const existing = await backends(app);
    assert.equal(existing.length, 2);
    const second = await spares.connect(spec, { application_name: app });
    // the spare: a backend that existed before this connect, not the first session's
    assert.ok(existing.includes(second.key.pid));
    assert.notEqual(second.key.pid, first.key.pid);
    assert.ok(second.parameterStatus.length > 0, "the spare's ParameterStatus frames are handed on");
    await selectOne(second);
    // and the one after that is being prepared
    await waitFor(() => spares.ready === 1, "the next spare");
    assert.equal(c.connects, 3);
    close(first);
    close(second);
  } finally {
    spares.close();
  }
  // close() ends the ready spare's backend
  await waitFor(async () => (await backends(app)).length === 0, "every backend to end");
});

test("different startup settings never share a spare", async () => {
  const [a, b] = [appName(), appName()];
  const c = counting();
  const spares = track(new WarmSpares({ connect: (s, p) => c.connect(s, p) }));
  try {
    close(await spares.connect(spec, { application_name: a }));
    await waitFor(() => spares.ready === 1, "a ready spare for a");
    const other = await spares.connect(spec, { application_name: b });
    assert.equal(c.connects, 4, "b connected itself and then got its own spare opened");
    assert.deepEqual(await backends(b).then((p) => p.includes(other.key.pid)), true);
    assert.ok(!(await backends(a)).includes(other.key.pid));
    assert.notEqual(spareKey(spec, { application_name: a }), spareKey(spec, { application_name: b }));
    assert.equal(spareKey(spec, { a: "1", b: "2" }), spareKey(spec, { b: "2", a: "1" }));
    assert.notEqual(spareKey(spec, {}), spareKey({ ...spec, database: "other" }, {}));
    close(other);
  } finally {
    spares.close();
  }
});

test("a spare whose backend is terminated is dropped; the next session connects itself", async () => {
  const app = appName();
  const c = counting();
  const spares = track(new WarmSpares({ connect: (s, p) => c.connect(s, p) }));
  try {
    const first = await spares.connect(spec, { application_name: app });
    await waitFor(() => spares.ready === 1, "a ready spare");
    const sparePid = (await backends(app)).find((p) => p !== first.key.pid)!;
    await admin.query("SELECT pg_terminate_backend($1)", [sparePid]);
    await waitFor(() => spares.ready === 0, "the terminated spare to be dropped");
    const next = await spares.connect(spec, { application_name: app });
    assert.notEqual(next.key.pid, sparePid);
    await selectOne(next);
    close(first);
    close(next);
  } finally {
    spares.close();
  }
});

test("a spare unused for idleMs is closed, and limits hold per key and per node", async () => {
  const [a, b] = [appName(), appName()];
  const c = counting();
  const spares = track(new WarmSpares({ connect: (s, p) => c.connect(s, p), idleMs: 200, max: 1 }));
  try {
    close(await spares.connect(spec, { application_name: a }));
    close(await spares.connect(spec, { application_name: b }));
    // max 1 per node: only a's spare was opened
    await waitFor(() => spares.ready === 1, "a ready spare");
    assert.equal(c.connects, 3);
    await waitFor(() => spares.ready === 0, "the idle spare to be closed");
    await waitFor(async () => (await backends(a)).length === 0, "its backend to end");
  } finally {
    spares.close();
  }
});

test("a failed upstream connect fails the session and opens no spare", async () => {
  const c = counting();
  const spares = track(new WarmSpares({ connect: (s, p) => c.connect(s, p) }));
  try {
    await assert.rejects(spares.connect({ ...spec, database: `no_such_db_${randomBytes(4).toString("hex")}` }, {}), /does not exist/);
    assert.equal(c.connects, 1);
    assert.equal(spares.ready, 0);
  } finally {
    spares.close();
  }
});

test("a session that finds its spare still opening takes that one, and the key keeps one more spare", async () => {
  const app = appName();
  const c = counting();
  let release!: () => void;
  const gate = new Promise<void>((r) => (release = r));
  const opened: UpstreamConnection[] = [];
  // the second connection (the first spare) is held until the test lets it finish
  const spares = track(new WarmSpares({
    connect: async (s, p) => {
      const n = c.connects + 1;
      const up = c.connect(s, p);
      if (n === 2) await gate;
      const u = await up;
      opened.push(u);
      return u;
    },
  }));
  try {
    close(await spares.connect(spec, { application_name: app }));
    assert.equal(c.connects, 2, "the spare is opening");
    const pending = spares.connect(spec, { application_name: app });
    await new Promise((r) => setImmediate(r));
    assert.equal(c.connects, 2, "no new connection while the spare is on its way");
    release();
    const second = await pending;
    assert.equal(second.key.pid, opened[1]!.key.pid);
    await selectOne(second);
    // this session had to wait for a backend start: the key now keeps two spares
    await waitFor(() => spares.ready === 2, "two spares");
    assert.equal(c.connects, 4);
    close(second);
  } finally {
    spares.close();
  }
});
