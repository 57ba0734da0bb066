import { test } from "node:test";
import assert from "node:assert/strict";
import { execFile } from "node:child_process";
import { mkdtempSync, readFileSync, rmSync, statSync, writeFileSync } from "node:fs";
import { tmpdir } from "node:os";
import { join } from "node:path";
import { promisify } from "node:util";
import pg from "pg";
import { connect } from "@nats-io/transport-node";
import { deleteAll } from "@sluice/shared/nats";
import { createDevIssuer } from "@sluice/shared/auth";
import { readFleet } from "../../data-plane/src/fleet/index.js";
import { alive, childrenOf, sluiceBin as sluice, startDev, testDatabase } from "../lib/dev-process.js";

const run = promisify(execFile);
const PASSWORD = "dev-pw-" + Math.random().toString(36).slice(2);

test("sluice dev: ready line, psql with a minted token, policy get with no flags, and SIGTERM stops the nats-server child", async (t) => {
  const db = await testDatabase(t);
  const dev = await startDev(t, ["--upstream", `postgres://postgres:${PASSWORD}@127.0.0.1:5432/${db}`]);
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

  // policy get with no flags (the context), and the upstream password is only a reference
  const { stdout: policy } = await run(process.execPath, [sluice, "policy", "get"], { env: dev.env });
  assert.match(policy, /dev-all/);
  assert.match(policy, /env:SLUICE_DEV_UPSTREAM_PASSWORD/);
  assert.ok(!policy.includes(PASSWORD), "the upstream password never appears in the bundle");
  assert.ok(!dev.out().includes(PASSWORD));

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
