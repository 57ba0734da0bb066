/**
 * `sluice dev` starting, failing to start, stopping and restarting, as a user meets it (issue 13):
 * every start-up failure exits 1 quickly with one line naming what and where; a stop while NATS is
 * gone stays within the grace period plus 5 s and says what could not be delivered; a restart on a
 * fresh NATS server with the same state directory shows the new sessions; `sluice policy apply`
 * from another shell keeps the dev issuer and resource.
 */
import { test, type TestContext } from "node:test";
import assert from "node:assert/strict";
import { mkdtempSync, readFileSync, rmSync, writeFileSync } from "node:fs";
import { createServer, type Server, type Socket } from "node:net";
import { tmpdir } from "node:os";
import { join } from "node:path";
import pg from "pg";
import { connect } from "@nats-io/transport-node";
import { deleteAll } from "@sluice/shared/nats";
import { createDevIssuer } from "@sluice/shared/auth";
import { startNatsServer, type NatsServerProcess } from "../../bin/lib/dev-nats-server.js";
import { spawnDev, startDev, testDatabase, type Dev } from "../lib/dev-process.js";
import { runSluice } from "../lib/run-sluice.js";
import { freePort } from "../lib/free-port.js";
import { selfSignedCert } from "../lib/self-signed.js";
import { startDataPlane, staticSnapshots } from "@sluice/data-plane";

/** A listener that accepts connections and never says a word (a hung server, or a port taken by something else). */
async function silentListener(t: TestContext): Promise<{ port: number; accepted: () => number }> {
  const sockets = new Set<Socket>();
  let accepted = 0;
  const server: Server = createServer((s) => {
    accepted++;
    sockets.add(s);
    s.on("error", () => undefined);
  });
  await new Promise<void>((r) => server.listen(0, "127.0.0.1", () => r()));
  t.after(async () => {
    for (const s of sockets) s.destroy();
    await new Promise<void>((r) => server.close(() => r()));
  });
  return { port: (server.address() as { port: number }).port, accepted: () => accepted };
}

/** A NATS prefix of the test's own on the shared server, deleted after it. */
async function ownPrefix(t: TestContext): Promise<string> {
  const prefix = "t" + Math.random().toString(36).slice(2, 10);
  t.after(async () => {
    const nc = await connect({ servers: "nats://127.0.0.1:4222" });
    await deleteAll(nc, prefix).catch(() => undefined);
    await nc.close();
  });
  return prefix;
}

async function privateNats(t: TestContext): Promise<NatsServerProcess> {
  const dir = mkdtempSync(join(tmpdir(), "sluice-dev-nats-"));
  const nats = await startNatsServer({ storeDir: join(dir, "js") });
  t.after(async () => {
    await nats.kill();
    rmSync(dir, { recursive: true, force: true });
  });
  return nats;
}

/** Waits for the process to exit; returns its code, how long it took and what it printed on stderr. */
async function exitOf(dev: Dev, withinMs: number): Promise<{ code: number | null; ms: number; lines: string[] }> {
  const t0 = Date.now();
  const timer = new Promise<"timeout">((r) => setTimeout(() => r("timeout"), withinMs + 20_000).unref());
  const r = await Promise.race([dev.exited, timer]);
  assert.notEqual(r, "timeout", `sluice dev still running after ${withinMs + 20_000} ms: ${dev.out()}${dev.err()}`);
  return { code: r as number | null, ms: Date.now() - t0, lines: dev.err().split("\n").filter((l) => l.trim() !== "") };
}

/** The contract's bound for a failed start, measured from the spawn; the process's own start-up (tsx, imports) counts. */
const FAILED_START_MS = 10_000;

async function failsToStart(t: TestContext, args: string[], env: NodeJS.ProcessEnv, pattern: RegExp): Promise<void> {
  const dev = spawnDev(t, args, env);
  const r = await exitOf(dev, FAILED_START_MS);
  assert.equal(r.code, 1, `exit code for ${args.join(" ")}: ${dev.err()}`);
  assert.ok(r.ms < FAILED_START_MS, `exited after ${r.ms} ms: ${args.join(" ")}`);
  assert.equal(r.lines.length, 1, `one line on stderr, got: ${JSON.stringify(r.lines)}`);
  assert.match(r.lines[0]!, pattern);
  assert.ok(!dev.out().includes("sluice dev ready"));
}

test("sluice dev --nats URL with a port in use: exits 1 within 10 s with one line naming the listener and the address, for each port", async (t) => {
  const prefix = await ownPrefix(t);
  const taken = await silentListener(t);
  for (const [flag, what] of [
    ["--port", "data plane Postgres listener"],
    ["--http-port", "data plane HTTP listener"],
    ["--grpc-port", "control plane gRPC listener"],
    ["--cp-http-port", "control plane HTTP listener"],
  ] as const) {
    await failsToStart(t, ["--nats", "nats://127.0.0.1:4222", flag, String(taken.port)], { SLUICE_NATS_PREFIX: prefix },
      new RegExp(`^sluice: ${what} \\(${flag}\\) 127\\.0\\.0\\.1:${taken.port}: address already in use$`));
  }
});

test("sluice dev: NATS unreachable, NATS silent, upstream unreachable or silent, bad config: exit 1 within 10 s, one line naming what and where", async (t) => {
  const prefix = await ownPrefix(t);
  const env = { SLUICE_NATS_PREFIX: prefix };
  const silent = await silentListener(t);
  const closed = await freePort();
  await failsToStart(t, ["--nats", `nats://127.0.0.1:${closed}`], env, new RegExp(`^sluice: NATS nats://127\\.0\\.0\\.1:${closed}: .*refused`));
  await failsToStart(t, ["--nats", `nats://127.0.0.1:${silent.port}`], env, new RegExp(`^sluice: NATS nats://127\\.0\\.0\\.1:${silent.port}: `));
  await failsToStart(t, ["--nats", "nats://127.0.0.1:4222", "--upstream", `postgres://postgres@127.0.0.1:${closed}/x`], env,
    new RegExp(`^sluice: cannot connect to upstream postgres@127\\.0\\.0\\.1:${closed}/x: .*ECONNREFUSED`));
  await failsToStart(t, ["--nats", "nats://127.0.0.1:4222", "--upstream", `postgres://postgres@127.0.0.1:${silent.port}/x`], env,
    new RegExp(`^sluice: cannot connect to upstream postgres@127\\.0\\.0\\.1:${silent.port}/x: `));

  const dir = mkdtempSync(join(tmpdir(), "sluice-dev-bad-"));
  t.after(() => rmSync(dir, { recursive: true, force: true }));
  await failsToStart(t, ["--nats", "nats://127.0.0.1:4222", "--policy", join(dir, "absent.yaml")], env, /^sluice: --policy .*absent\.yaml: ENOENT/);
  writeFileSync(join(dir, "bad.yaml"), "policies:\n  - name: x\n    allow: [bogus]\n");
  await failsToStart(t, ["--nats", "nats://127.0.0.1:4222", "--policy", join(dir, "bad.yaml")], env, /^sluice: \/.*bad\.yaml:2:5: policies\[0\] is missing "groups"/);
  await failsToStart(t, ["--nats", "nats://127.0.0.1:4222", "--upstream", "mysql://x"], env, /^sluice: --upstream must start with postgres:\/\//);
});

test("sluice dev: SIGTERM while start-up waits for a NATS that never answers stops within the grace period plus 5 s", async (t) => {
  const silent = await silentListener(t);
  const dev = spawnDev(t, ["--nats", `nats://127.0.0.1:${silent.port}`]);
  // until the connection attempt is under way (the process has loaded and is waiting)
  const until = Date.now() + 20_000;
  while (silent.accepted() === 0) {
    assert.ok(Date.now() < until, "sluice dev connects to the silent NATS");
    await new Promise((r) => setTimeout(r, 50));
  }
  dev.child.kill("SIGTERM");
  const r = await exitOf(dev, 7000);
  assert.ok(r.ms < 7000, `stopped after ${r.ms} ms`);
  assert.notEqual(r.code, null);
});

async function devToken(dev: Dev, sub: string, groups: string[]): Promise<string> {
  const ctx = dev.ctx();
  const issuer = await createDevIssuer({ issuer: ctx.devIssuer!, audience: ctx.devAudience!, keyFile: ctx.devIssuerKeyFile!, create: false });
  return issuer.mint({ sub, groups });
}

async function devClient(dev: Dev, db: string, sub: string, groups = ["dev"]): Promise<pg.Client> {
  const ctx = dev.ctx();
  const c = new pg.Client({
    host: "127.0.0.1", port: Number(ctx.dataPlane!.split(":")[1]), database: db, user: sub,
    password: await devToken(dev, sub, groups), ssl: { ca: readFileSync(ctx.caFile!), servername: "localhost" },
  });
  c.on("error", () => undefined);
  await c.connect();
  return c;
}

test("sluice dev: SIGTERM while its NATS server is gone stops within the grace period plus 5 s and says how many audit events were not delivered", async (t) => {
  const db = await testDatabase(t);
  const nats = await privateNats(t);
  const dev = await startDev(t, ["--nats", nats.url, "--upstream", `postgres://postgres@127.0.0.1:5432/${db}`]);
  const c = await devClient(dev, db, "me");
  assert.equal((await c.query("SELECT 1 AS one")).rows[0].one, 1);
  await nats.kill();
  // the session's end is recorded with NATS gone: its events cannot be delivered
  await c.end();
  await new Promise((r) => setTimeout(r, 300));
  dev.child.kill("SIGTERM");
  const r = await exitOf(dev, 7000);
  assert.equal(r.code, 0, dev.err());
  assert.ok(r.ms < 7000, `stopped after ${r.ms} ms (grace 2 s + 5 s)`);
  const said = r.lines.find((l) => /audit event\(s\) could not be delivered to NATS|every audit event had been delivered/.test(l));
  assert.ok(said, `the stop says what became of the audit events: ${JSON.stringify(r.lines)}`);
  assert.match(said, /^sluice dev: [1-9]\d* audit event\(s\) could not be delivered to NATS nats:\/\/127\.0\.0\.1:\d+ before stopping$/);
});

test("sluice dev: a clean stop with NATS up stays quiet about audit events and well within the budget", async (t) => {
  const db = await testDatabase(t);
  const nats = await privateNats(t);
  const dev = await startDev(t, ["--nats", nats.url, "--upstream", `postgres://postgres@127.0.0.1:5432/${db}`]);
  const c = await devClient(dev, db, "me");
  await c.query("SELECT 1");
  await c.end();
  dev.child.kill("SIGTERM");
  const r = await exitOf(dev, 7000);
  assert.equal(r.code, 0);
  assert.ok(r.ms < 7000);
  assert.deepEqual(r.lines.filter((l) => l.includes("audit event")), []);
});

test("sluice dev restarted with --nats on a fresh server and the same state directory: new sessions are listed and replayed", async (t) => {
  const db = await testDatabase(t);
  const dir = mkdtempSync(join(tmpdir(), "sluice-dev-restart-"));
  t.after(() => rmSync(dir, { recursive: true, force: true }));
  const stateArgs = ["--state-dir", join(dir, "state"), "--upstream", `postgres://postgres@127.0.0.1:5432/${db}`];

  const listed = async (dev: Dev): Promise<Array<{ sessionId: string; identity: string }>> => {
    const r = await runSluice(["sessions", "list", "--json"], { SLUICE_CONTEXT: dev.env.SLUICE_CONTEXT! });
    assert.equal(r.code, 0, r.stderr);
    return JSON.parse(r.stdout) as Array<{ sessionId: string; identity: string }>;
  };
  const sessionOf = async (dev: Dev, who: string): Promise<string | undefined> => {
    const until = Date.now() + 20_000;
    for (;;) {
      const s = (await listed(dev)).find((x) => x.identity === who);
      if (s || Date.now() > until) return s?.sessionId;
      await new Promise((r) => setTimeout(r, 250));
    }
  };

  // first run: enough traffic that the read model's position is beyond what the new stream will hold
  const first = await privateNats(t);
  const dev1 = await startDev(t, ["--nats", first.url, ...stateArgs]);
  for (let i = 0; i < 3; i++) {
    const c = await devClient(dev1, db, `before-${i}`);
    for (let j = 0; j < 5; j++) await c.query("SELECT $1::int AS n", [j]);
    await c.end();
  }
  assert.ok(await sessionOf(dev1, "before-2"));
  dev1.child.kill("SIGTERM");
  assert.equal(await dev1.exited, 0);
  await first.kill();

  // second run: a fresh server, the same state directory (read model, issuer key, certificate)
  const second = await privateNats(t);
  const dev2 = await startDev(t, ["--nats", second.url, ...stateArgs]);
  const c = await devClient(dev2, db, "after-restart");
  await c.query("SELECT 42 AS answer");
  await c.end();
  const id = await sessionOf(dev2, "after-restart");
  assert.ok(id, "the new session is listed");
  assert.deepEqual((await listed(dev2)).map((s) => s.identity), ["after-restart"], "the old stream's sessions are gone with it");
  const replay = await runSluice(["sessions", "replay", id], { SLUICE_CONTEXT: dev2.env.SLUICE_CONTEXT! });
  assert.equal(replay.code, 0, replay.stderr);
  assert.match(replay.stdout, /SELECT 42 AS answer/);
  dev2.child.kill("SIGTERM");
  assert.equal(await dev2.exited, 0);
});

test("sluice policy apply against the dev stack keeps the dev issuer and the dev resource unless the file replaces them, and says so", async (t) => {
  const db = await testDatabase(t);
  const prefix = await ownPrefix(t);
  const dev = await startDev(t, ["--nats", "nats://127.0.0.1:4222", "--upstream", `postgres://postgres@127.0.0.1:5432/${db}`], { SLUICE_NATS_PREFIX: prefix });
  const dir = mkdtempSync(join(tmpdir(), "sluice-dev-apply-"));
  t.after(() => rmSync(dir, { recursive: true, force: true }));
  const env = { SLUICE_CONTEXT: dev.env.SLUICE_CONTEXT! };

  // the contract's example policy, as a user would try it first: other issuers, another resource
  const contract = join(dir, "contract.yaml");
  // plus one policy for the dev resource, which the file does not define (the dev stack's is kept)
  const text = readFileSync(new URL("../fixtures/policies/valid-contract.yaml", import.meta.url), "utf8");
  writeFileSync(contract, text.replace("\nmasking:", `\n  - name: ci-dev\n    groups: [ci]\n    resources: [${db}]\n    allow: [read]\nmasking:`));
  const applied = await runSluice(["policy", "apply", contract], env);
  assert.equal(applied.code, 0, applied.stderr);
  assert.match(applied.stdout, /^applied revision 2 /);
  assert.match(applied.stdout, /sluice dev kept its issuer "dev" \(the file defines no issuer of that name\)/);
  assert.match(applied.stdout, new RegExp(`sluice dev kept its resource "${db}" \\(the file defines no resource of that name\\)`));
  const got = await runSluice(["policy", "get", "--json"], env);
  const bundle = (JSON.parse(got.stdout) as { bundle: { issuers: Array<{ name: string }>; resources: Array<{ name: string }> } }).bundle;
  assert.deepEqual(bundle.issuers.map((i) => i.name).sort(), ["dev", "github"]);
  assert.deepEqual(bundle.resources.map((r) => r.name).sort(), [db, "orders"].sort());

  // a dev token still connects (the failure was "unknown issuer"), under the file's rules
  const until = Date.now() + 15_000;
  let c: pg.Client | undefined;
  while (!c) {
    try {
      c = await devClient(dev, db, "ci-job", ["ci"]);
    } catch (e) {
      // the data plane takes the new revision from KV: until then group ci has no policy
      if (Date.now() > until) throw e;
      await new Promise((r) => setTimeout(r, 200));
    }
  }
  assert.equal((await c.query("SELECT 1 AS one")).rows[0].one, 1);
  await c.end();

  // a file that defines its own `dev` issuer replaces the dev stack's: nothing is kept, nothing said
  const own = join(dir, "own.yaml");
  const devIssuer = bundle.issuers.find((i) => i.name === "dev")!;
  writeFileSync(own, JSON.stringify({
    issuers: [devIssuer],
    resources: [{ name: "elsewhere", upstream: { host: "127.0.0.1", port: 5432, database: db, user: "postgres", auth: "trust", tls: "disable" } }, { name: db, upstream: { host: "127.0.0.1", port: 5432, database: db, user: "postgres", auth: "trust", tls: "disable" } }],
    policies: [{ name: "dev-read", groups: ["dev"], resources: [db, "elsewhere"], allow: ["read"] }],
    groups: ["dev"],
  }));
  const replaced = await runSluice(["policy", "apply", own], env);
  assert.equal(replaced.code, 0, replaced.stderr);
  assert.ok(!replaced.stdout.includes("kept"), replaced.stdout);
});

test("data plane: a health port in use is named, and the Postgres listener it had opened is closed again (nothing keeps the process alive)", async (t) => {
  const taken = await silentListener(t);
  const pgPort = await freePort();
  const { cert, key } = selfSignedCert();
  const snap = { revision: 1, bundle: { issuers: [], resources: [], policies: [], masking: [] }, hash: "x", appliedBy: "test", appliedAt: new Date().toISOString() };
  await assert.rejects(
    startDataPlane({ snapshots: staticSnapshots(snap), host: "127.0.0.1", port: pgPort, httpPort: taken.port, tls: { cert, key }, nodeId: "t" }),
    { message: `data plane HTTP listener 127.0.0.1:${taken.port}: address already in use` },
  );
  // the Postgres port is free again: the failed start left no listener behind
  const again = createServer();
  await new Promise<void>((resolve, reject) => {
    again.once("error", reject);
    again.listen(pgPort, "127.0.0.1", () => resolve());
  });
  await new Promise<void>((r) => again.close(() => r()));
});
