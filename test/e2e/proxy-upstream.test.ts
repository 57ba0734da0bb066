/**
 * Upstream side on a private cluster (pg_hba needs scram/md5/password entries, TLS, and more than
 * 100 connections): each auth method with the credential resolved from env:/file:, upstream TLS
 * require and verify-full, a wrong upstream password, and 200 concurrent sessions through the proxy.
 */
import { test } from "node:test";
import assert from "node:assert/strict";
import { copyFileSync, chownSync, chmodSync, mkdtempSync, writeFileSync } from "node:fs";
import { execFileSync } from "node:child_process";
import { tmpdir } from "node:os";
import { join } from "node:path";
import { randomBytes } from "node:crypto";
import pg from "pg";
import type { TestContext } from "node:test";
import { startPgCluster, type PgCluster } from "../lib/pg-cluster.js";
import { selfSignedCert } from "../lib/self-signed.js";
import { startProxyStack } from "./proxy-stack.js";

test("upstream authentication methods, TLS modes and 200 concurrent sessions", { timeout: 180_000 }, async (t) => {
  const cluster = await startPgCluster({
    maxConnections: 300,
    hba: [
      "hostssl all scram_user 127.0.0.1/32 scram-sha-256",
      "host all scram_user 127.0.0.1/32 scram-sha-256",
      "host all md5_user 127.0.0.1/32 md5",
      "host all clear_user 127.0.0.1/32 password",
    ],
  });
  t.after(() => cluster.stop());
  const admin = new pg.Client({ connectionString: cluster.url() });
  admin.on("error", () => undefined);
  await admin.connect();
  t.after(() => admin.end().catch(() => undefined));
  // the proxy stack lives in a subtest so its cleanup (sessions, database) runs before the cluster stops
  await t.test("through the proxy", (t2) => throughTheProxy(t2, cluster, admin));
});

async function throughTheProxy(t: TestContext, cluster: PgCluster, admin: pg.Client): Promise<void> {

  // server TLS on the private cluster (reloadable since PG 10); the key must belong to postgres, mode 0600
  const { certFile, keyFile } = selfSignedCert();
  const srvCert = join(cluster.dataDir, "server.crt");
  const srvKey = join(cluster.dataDir, "server.key");
  copyFileSync(certFile, srvCert);
  copyFileSync(keyFile, srvKey);
  chmodSync(srvKey, 0o600);
  if (process.getuid?.() === 0) {
    const uid = Number(execFileSync("id", ["-u", "postgres"], { encoding: "utf8" }).trim());
    const gid = Number(execFileSync("id", ["-g", "postgres"], { encoding: "utf8" }).trim());
    chownSync(srvCert, uid, gid);
    chownSync(srvKey, uid, gid);
  }
  await admin.query(`ALTER SYSTEM SET ssl = on`);
  await admin.query(`ALTER SYSTEM SET ssl_cert_file = '${srvCert}'`);
  await admin.query(`ALTER SYSTEM SET ssl_key_file = '${srvKey}'`);
  await admin.query(`SELECT pg_reload_conf()`);

  const pw = { scram: randomBytes(12).toString("hex"), md5: randomBytes(12).toString("hex"), clear: randomBytes(12).toString("hex") };
  await admin.query(`SET password_encryption = 'scram-sha-256'`);
  await admin.query(`CREATE ROLE scram_user LOGIN SUPERUSER PASSWORD '${pw.scram}'`);
  await admin.query(`CREATE ROLE clear_user LOGIN PASSWORD '${pw.clear}'`);
  await admin.query(`SET password_encryption = 'md5'`);
  await admin.query(`CREATE ROLE md5_user LOGIN PASSWORD '${pw.md5}'`);
  const envScram = `SLUICE_TEST_SCRAM_${randomBytes(4).toString("hex")}`;
  const envMd5 = `SLUICE_TEST_MD5_${randomBytes(4).toString("hex")}`;
  process.env[envScram] = pw.scram;
  process.env[envMd5] = pw.md5;
  t.after(() => {
    delete process.env[envScram];
    delete process.env[envMd5];
  });
  const secretDir = mkdtempSync(join(tmpdir(), "sluice-secret-"));
  writeFileSync(join(secretDir, "clear"), pw.clear + "\n", { mode: 0o600 });

  const s = await startProxyStack(t, {
    adminUrl: cluster.url(),
    upstream: { host: "127.0.0.1", port: cluster.port, user: "scram_user", password: `env:${envScram}` },
    bundle: (b) => {
      const base = b.resources[0]!.upstream;
      b.resources.push(
        { name: "app_md5", upstream: { ...base, user: "md5_user", password: `env:${envMd5}` } },
        { name: "app_clear", upstream: { ...base, user: "clear_user", password: `file:${join(secretDir, "clear")}` } },
        { name: "app_tls", upstream: { ...base, tls: "require" } },
        { name: "app_verify", upstream: { ...base, tls: "verify-full", ca: `file:${certFile}` } },
        { name: "app_trust", upstream: { ...base, user: "postgres", password: undefined } },
        { name: "app_badpw", upstream: { ...base, password: "env:SLUICE_TEST_NOT_THE_PASSWORD" } },
      );
      b.policies[0]!.resources = b.resources.map((r) => r.name);
      return b;
    },
  });
  process.env.SLUICE_TEST_NOT_THE_PASSWORD = "definitely-wrong-" + randomBytes(4).toString("hex");
  t.after(() => delete process.env.SLUICE_TEST_NOT_THE_PASSWORD);
  const token = await s.token();

  const whoami = async (database: string) => {
    const c = await s.pgClient(token, { database });
    const r = await c.query("SELECT current_user AS u, ssl FROM pg_stat_ssl WHERE pid = pg_backend_pid()");
    await c.end();
    return r.rows[0] as { u: string; ssl: boolean };
  };

  await t.test("SCRAM-SHA-256 with an env: credential", async () => {
    assert.deepEqual(await whoami("app"), { u: "scram_user", ssl: false });
  });
  await t.test("md5", async () => {
    assert.deepEqual(await whoami("app_md5"), { u: "md5_user", ssl: false });
  });
  await t.test("cleartext password from a file: credential", async () => {
    assert.deepEqual(await whoami("app_clear"), { u: "clear_user", ssl: false });
  });
  await t.test("trust", async () => {
    assert.equal((await whoami("app_trust")).u, "postgres");
  });
  await t.test("upstream TLS require and verify-full", async () => {
    assert.deepEqual(await whoami("app_tls"), { u: "scram_user", ssl: true });
    assert.deepEqual(await whoami("app_verify"), { u: "scram_user", ssl: true });
  });
  await t.test("a wrong upstream password is an 08006 for the client, with no password anywhere", async () => {
    const bad = new pg.Client({ ...s.pgConfig(token), database: "app_badpw" });
    bad.on("error", () => undefined);
    await assert.rejects(bad.connect(), (e: Error & { code?: string }) => {
      assert.equal(e.code, "08006");
      assert.ok(!e.message.includes(process.env.SLUICE_TEST_NOT_THE_PASSWORD!));
      return true;
    });
  });

  await t.test("200 concurrent sessions", async () => {
    const N = 200;
    const clients = await Promise.all(
      Array.from({ length: N }, async () => {
        const c = new pg.Client(s.pgConfig(token));
        c.on("error", () => undefined);
        await c.connect();
        return c;
      }),
    );
    try {
      const results = await Promise.all(clients.map((c, i) => c.query("SELECT $1::int AS i, pg_backend_pid() AS pid", [i])));
      assert.deepEqual(results.map((r) => r.rows[0].i), Array.from({ length: N }, (_, i) => i));
      assert.equal(new Set(results.map((r) => r.rows[0].pid)).size, N, "one upstream backend per session");
      assert.ok(s.dp.stats().sessions >= N);
    } finally {
      await Promise.all(clients.map((c) => c.end().catch(() => undefined)));
    }
  });

  await t.test("no JWT or upstream password in the logs", () => {
    const logs = s.logs();
    assert.ok(!logs.includes(token));
    for (const p of [pw.scram, pw.md5, pw.clear, process.env.SLUICE_TEST_NOT_THE_PASSWORD!]) assert.ok(!logs.includes(p), "an upstream password leaked into the logs");
  });
}
