import { test } from "node:test";
import assert from "node:assert/strict";
import { spawn, execFile } from "node:child_process";
import { mkdtempSync, rmSync, writeFileSync, readFileSync } from "node:fs";
import net from "node:net";
import { tmpdir } from "node:os";
import { join } from "node:path";
import { fileURLToPath } from "node:url";
import { promisify } from "node:util";
import pg from "pg";
import { connect } from "@nats-io/transport-node";
import { createDevIssuer, devIssuerSpec } from "@sluice/shared/auth";
import { defaultConfig } from "@sluice/shared/config";
import { createLogger } from "@sluice/shared/logging";
import { deleteAll, ensureSnapshotBucket, natsNames } from "@sluice/shared/nats";
import { readFleet } from "../../data-plane/src/fleet/index.js";
import { startDataPlaneNode } from "@sluice/data-plane";
import { devBundle, devResource } from "../../bin/lib/dev-bundle.js";
import { freePort } from "../../bin/lib/dev-nats-server.js";
import { ensureDevCertificate } from "../../bin/lib/dev-tls.js";

const execFileP = promisify(execFile);
const sluice = fileURLToPath(new URL("../../bin/sluice.js", import.meta.url));

/** A prefix with a snapshot written straight into the KV bucket (no control plane needed here). */
async function prepare(t: import("node:test").TestContext) {
  const prefix = "t" + Math.random().toString(36).slice(2, 10);
  const nc = await connect({ servers: "nats://127.0.0.1:4222" });
  t.after(async () => {
    await deleteAll(nc, prefix);
    await nc.close();
  });
  const issuer = await createDevIssuer({ issuer: `https://dev.sluice.test/${prefix}`, audience: "sluice" });
  const bundle = devBundle(
    devIssuerSpec(issuer),
    devResource("pgdb", { host: "127.0.0.1", port: 5432, database: "postgres", user: "postgres" }),
    "sluice-admins",
  );
  const kv = await ensureSnapshotBucket(nc, natsNames(prefix));
  await kv.put("policy", JSON.stringify({ revision: 1, bundle, hash: "test", appliedBy: "test", appliedAt: new Date().toISOString() }));
  const dir = mkdtempSync(join(tmpdir(), "sluice-dp-"));
  t.after(() => rmSync(dir, { recursive: true, force: true }));
  const cert = await ensureDevCertificate(dir);
  return { prefix, nc, issuer, dir, cert };
}

async function waitFor<T>(fn: () => Promise<T | undefined>, what: string, ms = 20_000): Promise<T> {
  const end = Date.now() + ms;
  for (;;) {
    const v = await fn().catch(() => undefined);
    if (v !== undefined) return v;
    if (Date.now() > end) throw new Error(`timed out waiting for ${what}`);
    await new Promise((r) => setTimeout(r, 150));
  }
}

test("sluice data-plane --config: serves psql over TLS, heartbeats, and leaves the fleet on SIGTERM", async (t) => {
  const { prefix, nc, issuer, dir, cert } = await prepare(t);
  const [port, httpPort] = [await freePort(), await freePort()];
  const cfgFile = join(dir, "dp.yaml");
  writeFileSync(
    cfgFile,
    `node: dp-cli-${prefix}\nregion: test\nnats: { url: "nats://127.0.0.1:4222", prefix: ${prefix} }\n` +
      `dataPlane:\n  listen: 127.0.0.1:${port}\n  httpListen: 127.0.0.1:${httpPort}\n  heartbeatSeconds: 1\n` +
      `  tls: { certFile: ${cert.certFile}, keyFile: ${cert.keyFile} }\n`,
  );
  const child = spawn(process.execPath, [sluice, "data-plane", "--config", cfgFile, "--grace", "30"], {
    env: { ...process.env, SLUICE_LOG_LEVEL: "warn", STATE_DIRECTORY: dir },
    stdio: ["ignore", "pipe", "pipe"],
  });
  let stderr = "";
  child.stderr.on("data", (d: Buffer) => (stderr += d.toString()));
  const exited = new Promise<number | null>((resolve) => child.once("exit", (code) => resolve(code)));
  t.after(() => {
    if (child.exitCode === null) child.kill("SIGKILL");
  });

  await waitFor(async () => {
    const r = await fetch(`http://127.0.0.1:${httpPort}/readyz`);
    return r.status === 200 ? true : undefined;
  }, "the data plane to be ready");

  const token = await issuer.mint({ sub: "me", groups: ["dev"] });
  const { stdout } = await execFileP("psql", [`host=127.0.0.1 port=${port} dbname=pgdb user=me sslmode=require`, "-tAc", "SELECT 40 + 2"], {
    env: { ...process.env, PGPASSWORD: token },
  });
  assert.equal(stdout.trim(), "42");

  const member = await waitFor(async () => (await readFleet(nc, prefix)).find((m) => m.node === `dp-cli-${prefix}` && m.snapshotRevision === 1), "a heartbeat with revision 1");
  assert.equal(member.region, "test");
  assert.equal(member.listen, `127.0.0.1:${port}`);

  // the snapshot cache was written where systemd's StateDirectory points
  const cached = JSON.parse(readFileSync(join(dir, `snapshot-${prefix}.json`), "utf8")) as { revision: number };
  assert.equal(cached.revision, 1);

  // an open session is drained on SIGTERM: it may finish its work within the grace period
  const client = new pg.Client({ host: "127.0.0.1", port, database: "pgdb", user: "me", password: token, ssl: { rejectUnauthorized: false } });
  client.on("error", () => undefined);
  await client.connect();
  child.kill("SIGTERM");
  await new Promise((r) => setTimeout(r, 300));
  assert.equal((await client.query("SELECT 'still here' AS s")).rows[0].s, "still here");
  await client.end();
  assert.equal(await exited, 0, stderr);
  assert.deepEqual((await readFleet(nc, prefix)).map((m) => m.node), []);
});

/** Sends a (F) CancelRequest (untyped startup packet) to host:port, like libpq does. */
function sendCancel(port: number, pid: number, secret: number): Promise<void> {
  return new Promise((resolve, reject) => {
    const s = net.connect(port, "127.0.0.1", () => {
      const b = Buffer.alloc(16);
      b.writeInt32BE(16, 0);
      b.writeInt32BE(80877102, 4);
      b.writeInt32BE(pid, 8);
      b.writeInt32BE(secret, 12);
      s.end(b);
    });
    s.on("error", reject);
    s.on("close", () => resolve());
  });
}

test("a cancel sent to another node is routed over NATS to the node that holds the session", async (t) => {
  const { prefix, nc, issuer, cert } = await prepare(t);
  const logger = createLogger({ level: "warn" });
  const tls = { cert: readFileSync(cert.certFile), key: readFileSync(cert.keyFile) };
  const nodes = [];
  for (const name of ["a", "b"]) {
    const cfg = defaultConfig();
    cfg.node = `dp-${name}-${prefix}`;
    cfg.nats = { ...cfg.nats, url: "nats://127.0.0.1:4222", prefix };
    cfg.dataPlane.listen = "127.0.0.1:0";
    cfg.dataPlane.httpListen = "127.0.0.1:0";
    const node = await startDataPlaneNode({ config: cfg, nc, logger, tls });
    t.after(() => node.stop());
    await node.snapshots.ready(10_000);
    nodes.push(node);
  }
  const [a, b] = nodes as [NonNullable<(typeof nodes)[0]>, NonNullable<(typeof nodes)[0]>];
  assert.notEqual(a.proxy.nodeNumber, b.proxy.nodeNumber);

  const token = await issuer.mint({ sub: "me", groups: ["dev"] });
  const client = new pg.Client({ host: "127.0.0.1", port: a.port, database: "pgdb", user: "me", password: token, ssl: { rejectUnauthorized: false } });
  client.on("error", () => undefined);
  await client.connect();
  t.after(() => client.end().catch(() => undefined));
  const { processID, secretKey } = client as unknown as { processID: number; secretKey: number };

  const started = Date.now();
  const sleeping = client.query("SELECT pg_sleep(30) AS marker_cancel_route");
  // a cancel only acts on a running statement: wait until the upstream runs it (the audit ack comes first)
  const admin = new pg.Client({ host: "127.0.0.1", port: 5432, user: "postgres", database: "postgres" });
  await admin.connect();
  t.after(() => admin.end());
  await waitFor(async () => {
    const r = await admin.query("SELECT 1 FROM pg_stat_activity WHERE state = 'active' AND query LIKE '%marker_cancel_route%' AND pid <> pg_backend_pid()");
    return r.rowCount ? true : undefined;
  }, "pg_sleep to run upstream");
  // the load balancer picked node b for the cancel
  await sendCancel(b.port, processID, secretKey);
  await assert.rejects(sleeping, { code: "57014" });
  assert.ok(Date.now() - started < 25_000, "the cancel took effect long before pg_sleep(30) ended");
  assert.equal(b.proxy.stats().cancels, 0);
  assert.equal(a.proxy.stats().cancels, 1);
  // the session survives a cancel
  assert.equal((await client.query("SELECT 1 AS one")).rows[0].one, 1);

  // a wrong secret routed the same way cancels nothing
  const again = client.query("SELECT pg_sleep(0.8) AS slept");
  await new Promise((r) => setTimeout(r, 100));
  await sendCancel(b.port, processID, secretKey ^ 1);
  assert.equal((await again).rows.length, 1);
});
