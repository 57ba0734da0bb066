/**
 * The development issuer behaves like a real one for a relying party (issue 13): `sluice dev`
 * serves OIDC discovery at its issuer URL, and a bundle may name an issuer by URL with
 * `discovery: true` (or by the URL alone) instead of `jwksUrl`: the data plane then finds the
 * keys through the discovery document, and a dev token connects.
 */
import { test, type TestContext } from "node:test";
import assert from "node:assert/strict";
import { mkdtempSync, readFileSync, rmSync, writeFileSync } from "node:fs";
import { tmpdir } from "node:os";
import { join } from "node:path";
import { createRemoteJWKSet, jwtVerify } from "jose";
import pg from "pg";
import { connect } from "@nats-io/transport-node";
import { deleteAll } from "@sluice/shared/nats";
import { startDev, testDatabase, type Dev } from "../lib/dev-process.js";
import { runSluice } from "../lib/run-sluice.js";

async function ownPrefix(t: TestContext): Promise<string> {
  const prefix = "t" + Math.random().toString(36).slice(2, 10);
  t.after(async () => {
    const nc = await connect({ servers: "nats://127.0.0.1:4222" });
    await deleteAll(nc, prefix).catch(() => undefined);
    await nc.close();
  });
  return prefix;
}

/** Connects as `sub` in `groups`, retrying while the data plane has not yet taken the new revision. */
async function connectWhenServed(dev: Dev, db: string, sub: string, groups: string[]): Promise<pg.Client> {
  const ctx = dev.ctx();
  const until = Date.now() + 30_000;
  for (;;) {
    const token = (await runSluice(["token", "--sub", sub, "--groups", groups.join(",")], { SLUICE_CONTEXT: dev.env.SLUICE_CONTEXT! })).stdout.trim();
    const c = new pg.Client({
      host: "127.0.0.1", port: Number(ctx.dataPlane!.split(":")[1]), database: db, user: sub, password: token,
      ssl: { ca: readFileSync(ctx.caFile!), servername: "localhost" },
    });
    c.on("error", () => undefined);
    try {
      await c.connect();
      return c;
    } catch (e) {
      await c.end().catch(() => undefined);
      if (Date.now() > until) throw e;
      await new Promise((r) => setTimeout(r, 300));
    }
  }
}

test("sluice dev serves OIDC discovery at its issuer URL, and an issuer block with discovery: true (or the URL alone) verifies its tokens", { timeout: 240_000 }, async (t) => {
  const db = await testDatabase(t);
  const prefix = await ownPrefix(t);
  const dev = await startDev(t, ["--nats", "nats://127.0.0.1:4222", "--upstream", `postgres://postgres@127.0.0.1:5432/${db}`], { SLUICE_NATS_PREFIX: prefix });
  const ctx = dev.ctx();
  const env = { SLUICE_CONTEXT: dev.env.SLUICE_CONTEXT! };
  const dir = mkdtempSync(join(tmpdir(), "sluice-dev-discovery-"));
  t.after(() => rmSync(dir, { recursive: true, force: true }));

  // a relying party's view: the discovery document at <issuer>/.well-known/openid-configuration
  const res = await fetch(`${ctx.devIssuer}/.well-known/openid-configuration`);
  assert.equal(res.status, 200);
  const doc = (await res.json()) as { issuer: string; jwks_uri: string; id_token_signing_alg_values_supported: string[] };
  assert.equal(doc.issuer, ctx.devIssuer, "the document names the issuer its tokens carry");
  const token = (await runSluice(["token", "--sub", "rp-check", "--groups", "ci"], env)).stdout.trim();
  const { payload } = await jwtVerify(token, createRemoteJWKSet(new URL(doc.jwks_uri)), { issuer: doc.issuer, audience: ctx.devAudience });
  assert.equal(payload.sub, "rp-check");
  assert.ok(doc.id_token_signing_alg_values_supported.includes("ES256"));

  // the dev issuer replaced by a block that names only its URL and discovery: true
  const bundle = (issuer: Record<string, unknown>) => JSON.stringify({
    issuers: [{ name: "dev", issuer: ctx.devIssuer, audience: ctx.devAudience, groups: [{ claim: "groups" }], ...issuer }],
    groups: ["ci"],
    policies: [{ name: "ci-read", groups: ["ci"], resources: [db], allow: ["read"] }],
  });
  const discovery = join(dir, "discovery.yaml");
  writeFileSync(discovery, bundle({ discovery: true }));
  const applied = await runSluice(["policy", "apply", discovery], env);
  assert.equal(applied.code, 0, applied.stderr);
  assert.ok(!applied.stdout.includes('kept its issuer "dev"'), applied.stdout);
  const got = JSON.parse((await runSluice(["policy", "get", "--json"], env)).stdout) as { bundle: { issuers: Array<Record<string, unknown>> } };
  assert.deepEqual(got.bundle.issuers.map((i) => [i.name, i.discovery, i.jwksUrl, i.jwks]), [["dev", true, undefined, undefined]]);
  const c = await connectWhenServed(dev, db, "ci-job", ["ci"]);
  assert.equal((await c.query("SELECT current_database() AS db")).rows[0].db, db);
  await assert.rejects(c.query("CREATE TABLE t (id int)"), { code: "42501" }, "under the file's rules");
  await c.end();

  // the issuer URL alone means the same (normalized to discovery: true)
  const bare = join(dir, "bare.yaml");
  writeFileSync(bare, bundle({}).replace('"policies":[{"name":"ci-read"', '"policies":[{"name":"ci-read2"'));
  const again = await runSluice(["policy", "apply", bare], env);
  assert.equal(again.code, 0, again.stderr);
  const got2 = JSON.parse((await runSluice(["policy", "get", "--json"], env)).stdout) as { revision: number; bundle: { issuers: Array<Record<string, unknown>>; policies: Array<{ name: string }> } };
  assert.equal(got2.bundle.issuers[0]!.discovery, true);
  assert.ok(got2.bundle.policies.some((p) => p.name === "ci-read2"));
  const c2 = await connectWhenServed(dev, db, "ci-job-2", ["ci"]);
  assert.equal((await c2.query("SELECT 1 AS one")).rows[0].one, 1);
  await c2.end();

});
