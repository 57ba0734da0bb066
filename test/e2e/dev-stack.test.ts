import { test, type TestContext } from "node:test";
import assert from "node:assert/strict";
import { execFile, spawn, type ChildProcess } from "node:child_process";
import { mkdtempSync, readFileSync, rmSync, statSync, writeFileSync } from "node:fs";
import { tmpdir } from "node:os";
import { join } from "node:path";
import { fileURLToPath } from "node:url";
import { promisify } from "node:util";
import pg from "pg";
import { connect } from "@nats-io/transport-node";
import { deleteAll } from "@sluice/shared/nats";
import { createDevIssuer } from "@sluice/shared/auth";
import type { CliContext } from "../../bin/lib/cli-kit.js";
import { readFleet } from "../../data-plane/src/fleet/index.js";

const run = promisify(execFile);
const sluice = fileURLToPath(new URL("../../bin/sluice.js", import.meta.url));
const PASSWORD = "dev-pw-" + Math.random().toString(36).slice(2);

async function testDatabase(t: TestContext): Promise<string> {
  const db = `sluice_t_dev_${Math.random().toString(36).slice(2, 10)}`;
  const admin = new pg.Client({ host: "127.0.0.1", port: 5432, user: "postgres", database: "postgres" });
  await admin.connect();
  await admin.query(`CREATE DATABASE ${db}`);
  await admin.end();
  t.after(async () => {
    const c = new pg.Client({ host: "127.0.0.1", port: 5432, user: "postgres", database: "postgres" });
    await c.connect();
    await c.query(`DROP DATABASE IF EXISTS ${db} WITH (FORCE)`);
    await c.end();
  });
  return db;
}

/** Children of a pid (e.g. the nats-server `sluice dev` started). */
async function childrenOf(pid: number): Promise<Array<{ pid: number; cmd: string }>> {
  const { stdout } = await run("ps", ["-o", "pid=,ppid=,args=", "-e"]);
  return stdout
    .split("\n")
    .map((l) => /^\s*(\d+)\s+(\d+)\s+(.*)$/.exec(l))
    .filter((m): m is RegExpExecArray => !!m && Number(m[2]) === pid)
    .map((m) => ({ pid: Number(m[1]), cmd: m[3]! }));
}

function alive(pid: number): boolean {
  try {
    process.kill(pid, 0);
    return true;
  } catch {
    return false;
  }
}

interface Dev {
  child: ChildProcess;
  env: NodeJS.ProcessEnv;
  out: () => string;
  ctx: () => CliContext;
  exited: Promise<number | null>;
}

async function startDev(t: TestContext, args: string[], extraEnv: NodeJS.ProcessEnv = {}): Promise<Dev> {
  const dir = mkdtempSync(join(tmpdir(), "sluice-dev-test-"));
  t.after(() => rmSync(dir, { recursive: true, force: true }));
  const env: NodeJS.ProcessEnv = { ...process.env, SLUICE_CONTEXT: join(dir, "context.json"), SLUICE_LOG_LEVEL: "warn", SLUICE_NATS_URL: "", ...extraEnv };
  delete env.SLUICE_TOKEN;
  delete env.SLUICE_CONTROL_PLANE;
  const child = spawn(process.execPath, [sluice, "dev", "--state-dir", join(dir, "state"), "--port", "0", "--http-port", "0", "--grpc-port", "0", "--cp-http-port", "0", ...args], {
    env,
    stdio: ["ignore", "pipe", "pipe"],
  });
  let out = "";
  let err = "";
  child.stdout!.on("data", (d: Buffer) => (out += d.toString()));
  child.stderr!.on("data", (d: Buffer) => (err += d.toString()));
  const exited = new Promise<number | null>((resolve) => child.once("exit", (code) => resolve(code)));
  t.after(async () => {
    if (child.exitCode === null && child.signalCode === null) {
      const kids = await childrenOf(child.pid!);
      child.kill("SIGKILL");
      for (const k of kids) if (alive(k.pid)) process.kill(k.pid, "SIGKILL");
    }
  });
  const end = Date.now() + 60_000;
  while (!out.includes("sluice dev ready")) {
    if (child.exitCode !== null) throw new Error(`sluice dev exited ${child.exitCode}: ${err}`);
    if (Date.now() > end) throw new Error(`sluice dev not ready in 60 s: ${out}${err}`);
    await new Promise((r) => setTimeout(r, 100));
  }
  return { child, env, out: () => out, ctx: () => JSON.parse(readFileSync(env.SLUICE_CONTEXT!, "utf8")) as CliContext, exited };
}

async function waitForOutput(dev: Dev, text: string, ms = 60_000): Promise<void> {
  const end = Date.now() + ms;
  while (!dev.out().includes(text)) {
    if (Date.now() > end) throw new Error(`no ${JSON.stringify(text)} in: ${dev.out()}`);
    await new Promise((r) => setTimeout(r, 100));
  }
}

test("sluice dev: ready line, psql with a minted token, policy get with no flags, demo, and SIGTERM stops the nats-server child", async (t) => {
  const db = await testDatabase(t);
  const dev = await startDev(t, ["--upstream", `postgres://postgres:${PASSWORD}@127.0.0.1:5432/${db}`, "--demo"]);
  const ready = dev.out().split("\n").find((l) => l.includes("sluice dev ready"))!;
  assert.match(ready, /psql .*sslmode=require/);
  assert.match(ready, /\$\(sluice token --sub me --groups dev\)/);

  const ctx = dev.ctx();
  assert.equal(statSync(dev.env.SLUICE_CONTEXT!).mode & 0o777, 0o600);
  assert.equal(statSync(ctx.devIssuerKeyFile!).mode & 0o777, 0o600);
  assert.ok(ctx.controlPlane && ctx.token && ctx.dataPlane && ctx.nats && ctx.caFile && ctx.devIssuer && ctx.devAudience);
  assert.equal(ctx.pid, dev.child.pid);
  // the nats-server runs under a guard shell (it stops the server should `sluice dev` die uncleanly)
  const guard = (await childrenOf(dev.child.pid!)).find((k) => k.cmd.includes("nats-server"));
  assert.ok(guard, "a nats-server guard child");
  const nats = (await childrenOf(guard.pid)).find((k) => k.cmd.startsWith("nats-server "));
  assert.ok(nats, "the nats-server process");

  // another shell: a token from the context's dev issuer, psql through the proxy
  const { stdout: token } = await run(process.execPath, [sluice, "token", "--sub", "me", "--groups", "dev"], { env: dev.env });
  const port = ctx.dataPlane!.split(":")[1]!;
  const { stdout } = await run("psql", [`host=127.0.0.1 port=${port} dbname=${db} user=me sslmode=require`, "-tAc", "SELECT current_database()"], {
    env: { ...dev.env, PGPASSWORD: token.trim() },
  });
  assert.equal(stdout.trim(), db);

  // the demo ran through the proxy: allowed read, blocked DROP, masked PII
  await waitForOutput(dev, "demo finished");
  const demo = dev.out();
  assert.match(demo, /ALLOWED {2}SELECT count\(\*\), sum\(total\) FROM orders -> 20 orders/);
  assert.match(demo, /BLOCKED {2}DROP TABLE customers -> 42501/);
  assert.match(demo, /MASKED {3}Ada Lovelace \| (?!ada@example\.com)\S*@example\.com \| (?!4111 1111 1111 1111)/);

  // policy get with no flags (the context), and the upstream password is only a reference
  const { stdout: policy } = await run(process.execPath, [sluice, "policy", "get"], { env: dev.env });
  assert.match(policy, /demo-pipeline/);
  assert.match(policy, /env:SLUICE_DEV_UPSTREAM_PASSWORD/);
  assert.ok(!policy.includes(PASSWORD), "the upstream password never appears in the bundle");
  assert.ok(!dev.out().includes(PASSWORD));

  // the demo's sessions are in the control plane's read model, listed with no flags (the context)
  const sessions = async () =>
    JSON.parse((await run(process.execPath, [sluice, "sessions", "list", "--json"], { env: dev.env })).stdout) as Array<{ identity: string; blocked: number; applicationName: string }>;
  let demoSession;
  for (let i = 0; i < 20 && !demoSession; i++) {
    demoSession = (await sessions()).find((s) => s.identity === "ci-deploy");
    if (!demoSession) await new Promise((r) => setTimeout(r, 500));
  }
  assert.ok(demoSession, "the demo pipeline's session is listed");
  assert.equal(demoSession.blocked, 1);
  assert.equal(demoSession.applicationName, "sluice-demo");

  dev.child.kill("SIGTERM");
  assert.equal(await dev.exited, 0);
  await new Promise((r) => setTimeout(r, 200));
  assert.equal(alive(nats.pid), false, "the nats-server is gone");
  assert.equal(alive(guard.pid), false, "its guard is gone");
  // the state the user needs stays: the issuer key and the certificate
  assert.ok(statSync(ctx.devIssuerKeyFile!).isFile());
  assert.ok(statSync(ctx.caFile!).isFile());
});

test("sluice dev --nats URL --policy FILE: uses the given NATS (no child) and applies the file with the dev issuer added", async (t) => {
  const db = await testDatabase(t);
  const prefix = "t" + Math.random().toString(36).slice(2, 10);
  const nc = await connect({ servers: "nats://127.0.0.1:4222" });
  t.after(async () => {
    await deleteAll(nc, prefix);
    await nc.close();
  });
  const dir = mkdtempSync(join(tmpdir(), "sluice-dev-policy-"));
  t.after(() => rmSync(dir, { recursive: true, force: true }));
  const policyFile = join(dir, "policy.yaml");
  writeFileSync(policyFile, `policies:\n  - name: ci-read\n    groups: [ci]\n    resources: [shop]\n    allow: [read]\n`);
  const dev = await startDev(t, ["--nats", "nats://127.0.0.1:4222", "--upstream", `postgres://postgres@127.0.0.1:5432/${db}`, "--resource", "shop", "--policy", policyFile], {
    SLUICE_NATS_PREFIX: prefix,
  });
  assert.deepEqual((await childrenOf(dev.child.pid!)).filter((k) => k.cmd.includes("nats-server")), []);
  const ctx = dev.ctx();
  assert.equal(ctx.natsPrefix, prefix);

  // mint in-process with the context's key file, as `sluice token` does (the CLI is covered above)
  const issuer = await createDevIssuer({ issuer: ctx.devIssuer!, audience: ctx.devAudience!, keyFile: ctx.devIssuerKeyFile!, create: false });
  const token = (groups: string) => issuer.mint({ sub: "ci", groups: [groups] });
  const port = Number(ctx.dataPlane!.split(":")[1]);
  const ci = new pg.Client({ host: "127.0.0.1", port, database: "shop", user: "ci", password: await token("ci"), ssl: { ca: readFileSync(ctx.caFile!), servername: "localhost" } });
  ci.on("error", () => undefined);
  await ci.connect();
  t.after(() => ci.end().catch(() => undefined));
  assert.equal((await ci.query("SELECT 1 AS one")).rows[0].one, 1);
  await assert.rejects(ci.query("CREATE TABLE x (y int)"), { code: "42501" });

  // the file gives group dev nothing: it cannot connect
  const devClient = new pg.Client({ host: "127.0.0.1", port, database: "shop", user: "me", password: await token("dev"), ssl: { rejectUnauthorized: false } });
  devClient.on("error", () => undefined);
  await assert.rejects(devClient.connect());

  assert.deepEqual((await readFleet(nc, prefix)).map((m) => m.node), ["dev-data-plane"]);

  dev.child.kill("SIGINT");
  assert.equal(await dev.exited, 0);
});
