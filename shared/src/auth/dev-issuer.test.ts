import { test } from "node:test";
import assert from "node:assert/strict";
import { mkdtempSync, rmSync, statSync, readFileSync } from "node:fs";
import { tmpdir } from "node:os";
import { join } from "node:path";
import { decodeProtectedHeader } from "jose";
import { SluiceError } from "../errors/index.js";
import { createDevIssuer, devIssuerSpec } from "./dev-issuer.js";
import { JwksCache, verifyToken } from "./verify-token.js";
import { validateBundle } from "../policy/validate-bundle.js";
import { createServer } from "node:http";
import type { AddressInfo } from "node:net";

test("a dev issuer persists its key (0600) and a second instance mints tokens the first one's JWKS accepts", async (t) => {
  const dir = mkdtempSync(join(tmpdir(), "sluice-dev-issuer-"));
  t.after(() => rmSync(dir, { recursive: true, force: true }));
  const keyFile = join(dir, "sub", "dev-issuer.jwk");
  const a = await createDevIssuer({ issuer: "http://127.0.0.1:7481/dev", audience: "sluice", keyFile });
  assert.equal(statSync(keyFile).mode & 0o777, 0o600);
  const saved = JSON.parse(readFileSync(keyFile, "utf8"));
  assert.equal(typeof saved.d, "string");
  assert.deepEqual(await a.exportPrivate(), saved);
  // the public JWKS holds no private material
  assert.ok(a.jwks.keys.every((k) => !("d" in k)));

  const b = await createDevIssuer({ issuer: "http://127.0.0.1:7481/dev", audience: "sluice", keyFile, create: false });
  assert.equal(b.kid, a.kid);
  const token = await b.mint({ sub: "ci-bot", groups: ["ci"], claims: { repository: "acme/orders", iss: "ignored" }, ttlSec: 120 });
  assert.equal(decodeProtectedHeader(token).kid, a.kid);
  const v = await verifyToken(token, [devIssuerSpec(a)]);
  assert.deepEqual([v.subject, v.issuer, v.groups, v.claims.repository], ["ci-bot", "dev", ["ci"], "acme/orders"]);
  assert.equal((v.expiresAt ?? 0) - (v.claims.iat as number), 120);
});

test("a corrupt or public-only key file is a clear error, and is not overwritten", async (t) => {
  const dir = mkdtempSync(join(tmpdir(), "sluice-dev-issuer-"));
  t.after(() => rmSync(dir, { recursive: true, force: true }));
  const { writeFileSync } = await import("node:fs");
  const a = await createDevIssuer({ issuer: "http://x", audience: "a" });
  for (const [name, text] of [["garbage.jwk", "not json"], ["public.jwk", JSON.stringify(a.jwks.keys[0])]] as const) {
    const keyFile = join(dir, name);
    writeFileSync(keyFile, text);
    await assert.rejects(createDevIssuer({ issuer: "http://x", audience: "a", keyFile }), (e: unknown) => SluiceError.is(e, "failed_precondition") && /not a private JWK/.test(e.message));
    assert.equal(readFileSync(keyFile, "utf8"), text);
  }
});

test("create: false with no key file is a clear error", async () => {
  await assert.rejects(createDevIssuer({ issuer: "http://x", audience: "a", keyFile: "/nonexistent/sluice/key.jwk", create: false }), (e: unknown) =>
    SluiceError.is(e, "failed_precondition"),
  );
});

test("devIssuerSpec is the contract's dev issuer: name dev, inline JWKS, groups from the groups claim", async () => {
  const d = await createDevIssuer({ issuer: "http://127.0.0.1:1/dev", audience: "sluice" });
  const s = devIssuerSpec(d);
  assert.equal(s.name, "dev");
  assert.deepEqual(s.groups, [{ claim: "groups" }]);
  assert.deepEqual(s.jwks, d.jwks);
  assert.deepEqual(s.algorithms, ["ES256"]);
});

test("devIssuerSpec with a jwksUrl verifies against the JWKS served over HTTP, and passes bundle validation", async (t) => {
  const d = await createDevIssuer({ issuer: "http://127.0.0.1:7481/dev", audience: "sluice" });
  const server = createServer((_req, res) => {
    res.writeHead(200, { "content-type": "application/json" });
    res.end(JSON.stringify(d.jwks));
  });
  await new Promise<void>((r) => server.listen(0, "127.0.0.1", r));
  t.after(() => server.close());
  const jwksUrl = `http://127.0.0.1:${(server.address() as AddressInfo).port}/.well-known/jwks.json`;
  const s = devIssuerSpec(d, { jwksUrl });
  assert.equal(s.jwks, undefined);
  const v = await verifyToken(await d.mint({ sub: "u", groups: ["ci"] }), [s], { jwksFetcher: new JwksCache() });
  assert.deepEqual(v.groups, ["ci"]);
  for (const spec of [s, devIssuerSpec(d)]) {
    assert.deepEqual(validateBundle({ issuers: [spec], groups: ["ci"], policies: [] }), []);
  }
});
