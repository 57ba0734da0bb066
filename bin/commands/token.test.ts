import { test } from "node:test";
import assert from "node:assert/strict";
import { execFile } from "node:child_process";
import { mkdtempSync, rmSync, writeFileSync } from "node:fs";
import { tmpdir } from "node:os";
import { join } from "node:path";
import { fileURLToPath } from "node:url";
import { createDevIssuer, devIssuerSpec, verifyToken } from "@sluice/shared/auth";
import { UsageError } from "../lib/cli-kit.js";
import { run as tokenRun } from "./token.js";

const sluice = fileURLToPath(new URL("../sluice.js", import.meta.url));

function run(args: string[], env: Record<string, string>): Promise<{ code: number; stdout: string; stderr: string }> {
  return new Promise((resolve) => {
    execFile(process.execPath, [sluice, ...args], { env: { ...process.env, ...env }, timeout: 120_000 }, (err, stdout, stderr) => {
      resolve({ code: err ? ((err as { code?: number }).code ?? 1) : 0, stdout, stderr });
    });
  });
}

test("sluice token mints with the dev context's key; the token verifies against the dev issuer", async (t) => {
  const dir = mkdtempSync(join(tmpdir(), "sluice-token-"));
  t.after(() => rmSync(dir, { recursive: true, force: true }));
  const keyFile = join(dir, "dev-issuer.jwk");
  const dev = await createDevIssuer({ issuer: "http://127.0.0.1:7481/dev", audience: "sluice", keyFile });
  const ctxFile = join(dir, "context.json");
  writeFileSync(ctxFile, JSON.stringify({ controlPlane: "127.0.0.1:7400", token: "x", devIssuerKeyFile: keyFile, devIssuer: dev.issuer, devAudience: dev.audience }));
  const env = { SLUICE_CONTEXT: ctxFile };

  const r = await run(["token", "--sub", "ci-bot", "--groups", "ci, dba", "--claim", "repository=acme/orders", "--claim", "roles=a", "--claim", "roles=b", "--ttl", "5m"], env);
  assert.equal(r.code, 0, r.stderr);
  assert.equal(r.stderr, "");
  assert.match(r.stdout, /^[\w-]+\.[\w-]+\.[\w-]+\n$/, "only the token on stdout");
  const v = await verifyToken(r.stdout.trim(), [devIssuerSpec(dev)]);
  assert.equal(v.subject, "ci-bot");
  assert.deepEqual(v.groups, ["ci", "dba"]);
  assert.equal(v.claims.repository, "acme/orders");
  assert.deepEqual(v.claims.roles, ["a", "b"]);
  assert.equal((v.expiresAt ?? 0) - (v.claims.iat as number), 300);

  // --aud changes the audience: the dev issuer (audience sluice) rejects it
  const other = await run(["token", "--sub", "x", "--aud", "elsewhere"], env);
  assert.equal(other.code, 0, other.stderr);
  await assert.rejects(verifyToken(other.stdout.trim(), [devIssuerSpec(dev)]), /token rejected: wrong audience/);
});

test("sluice token without a dev context fails with a one-line reason (exit 1); --help exits 0, a usage error 2", async (t) => {
  const dir = mkdtempSync(join(tmpdir(), "sluice-token-"));
  t.after(() => rmSync(dir, { recursive: true, force: true }));
  const env = { SLUICE_CONTEXT: join(dir, "missing.json") };
  // a context whose key file is gone
  const runGone = () => {
    const ctxFile = join(dir, "context.json");
    writeFileSync(ctxFile, JSON.stringify({ controlPlane: "x", token: "x", devIssuerKeyFile: join(dir, "gone.jwk"), devIssuer: "http://127.0.0.1:1/dev", devAudience: "sluice" }));
    return run(["token", "--sub", "x"], { SLUICE_CONTEXT: ctxFile });
  };
  const [r, gone] = await Promise.all([run(["token", "--sub", "x"], env), runGone()]);
  assert.equal(r.code, 1);
  assert.equal(r.stdout, "");
  assert.equal(r.stderr, "sluice: no dev issuer: start `sluice dev` first\n");

  assert.equal(gone.code, 1);
  assert.match(gone.stderr, /^sluice: no dev issuer key .*start `sluice dev` first\n$/);

  const [help, usage] = await Promise.all([run(["token", "--help"], env), run(["token", "--ttl", "1m"], env)]);
  assert.equal(help.code, 0);
  assert.match(help.stdout, /^usage: sluice token --sub SUB/);
  assert.equal(usage.code, 2);
  assert.match(usage.stderr, /^sluice: --sub is required/);
});

test("bad flags are usage errors (the dispatcher turns UsageError into exit 2)", async () => {
  // in-process: each spawn costs a node + tsx start, and the dispatcher's mapping is tested above via --help/exit codes
  for (const args of [[], ["--sub", "x", "--ttl", "soon"], ["--sub", "x", "--ttl", "0s"], ["--sub", "x", "--claim", "novalue"], ["--sub", "x", "--claim", "iss=https://evil"], ["--sub", "x", "--claim", "groups=dba"], ["--sub", "x", "--bogus"], ["--sub", "x", "extra"]]) {
    await assert.rejects(tokenRun(args), UsageError, JSON.stringify(args));
  }
});
