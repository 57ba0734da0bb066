import { test, after } from "node:test";
import assert from "node:assert/strict";
import { createServer } from "node:http";
import type { AddressInfo } from "node:net";
import { SignJWT, exportJWK, exportSPKI, generateKeyPair, calculateJwkThumbprint, base64url } from "jose";
import { SluiceError } from "../errors/index.js";
import type { IssuerSpec } from "../policy/bundle.js";
import { createDevIssuer, devIssuerSpec } from "./dev-issuer.js";
import { JwksCache, VerifiedTokenCache, verifyToken } from "./verify-token.js";

const ISS = "https://issuer.test";
const AUD = "sluice";

async function rejectsWith(p: Promise<unknown>, reason: string, token?: string) {
  await assert.rejects(p, (e: unknown) => {
    assert.ok(SluiceError.is(e, "unauthenticated"), `expected unauthenticated, got ${String(e)}`);
    assert.equal((e.details as { reason: string }).reason, reason);
    assert.match(e.message, /^token rejected: /);
    if (token) {
      assert.ok(!e.message.includes(token), "message must not contain the token");
      assert.ok(!JSON.stringify(e.details).includes(token.split(".")[1]!), "details must not contain the token");
    }
    return true;
  });
}

const dev = await createDevIssuer({ issuer: ISS, audience: AUD });
const spec: IssuerSpec = { ...devIssuerSpec(dev), name: "test" };

test("a good token verifies and maps groups", async () => {
  const token = await dev.mint({ sub: "alice", groups: ["ci", "dba"], claims: { repository: "acme/orders" } });
  const v = await verifyToken(token, [spec]);
  assert.equal(v.subject, "alice");
  assert.equal(v.issuer, "test");
  assert.equal(v.issuerUrl, ISS);
  assert.deepEqual(v.groups, ["ci", "dba"]);
  assert.equal(v.claims.repository, "acme/orders");
  assert.equal(typeof v.expiresAt, "number");
});

test("an expired token is rejected (beyond the clock tolerance)", async () => {
  const token = await dev.mint({ sub: "alice", ttlSec: 60, now: new Date(Date.now() - 10 * 60_000) });
  await rejectsWith(verifyToken(token, [spec]), "expired", token);
  // the same token is fine at a time when it was valid: time is an argument
  await verifyToken(token, [spec], { now: new Date(Date.now() - 9.5 * 60_000) });
  // and within the tolerance just after expiry
  const fresh = await dev.mint({ sub: "alice", ttlSec: 60 });
  await verifyToken(fresh, [spec], { now: new Date(Date.now() + 70_000), clockToleranceSec: 30 });
  await rejectsWith(verifyToken(fresh, [spec], { now: new Date(Date.now() + 70_000), clockToleranceSec: 0 }), "expired");
});

test("a wrong audience is rejected", async () => {
  const token = await dev.mint({ sub: "alice", audience: "someone-else" });
  await rejectsWith(verifyToken(token, [spec]), "audience", token);
  // an issuer with several audiences accepts any of them
  await verifyToken(token, [{ ...spec, audience: ["x", "someone-else"] }]);
});

test("an unknown issuer is rejected", async () => {
  const other = await createDevIssuer({ issuer: "https://evil.test", audience: AUD });
  const token = await other.mint({ sub: "mallory" });
  await rejectsWith(verifyToken(token, [spec]), "issuer", token);
  await rejectsWith(verifyToken(token, []), "issuer", token);
});

test("an unknown kid (a key the issuer never published) is rejected", async () => {
  const impostor = await createDevIssuer({ issuer: ISS, audience: AUD });
  const token = await impostor.mint({ sub: "mallory", groups: ["dba"] });
  await rejectsWith(verifyToken(token, [spec]), "kid", token);
});

test("a token whose signature does not match is rejected", async () => {
  const token = await dev.mint({ sub: "alice", groups: ["ci"] });
  const [h, , s] = token.split(".");
  const forged = `${h}.${base64url.encode(JSON.stringify({ iss: ISS, aud: AUD, sub: "alice", groups: ["dba"], exp: Math.floor(Date.now() / 1000) + 600 }))}.${s}`;
  await rejectsWith(verifyToken(forged, [spec]), "signature", forged);
});

test("alg: none is rejected", async () => {
  const now = Math.floor(Date.now() / 1000);
  const token =
    base64url.encode(JSON.stringify({ alg: "none", typ: "JWT" })) +
    "." +
    base64url.encode(JSON.stringify({ iss: ISS, aud: AUD, sub: "mallory", iat: now, exp: now + 600 })) +
    ".";
  await rejectsWith(verifyToken(token, [spec]), "alg", token);
  // even if an issuer (wrongly) lists it
  await rejectsWith(verifyToken(token, [{ ...spec, algorithms: ["none", "ES256"] }]), "alg", token);
});

test("an HS256 token signed with the issuer's public key material is rejected", async () => {
  const { publicKey, privateKey } = await generateKeyPair("RS256", { extractable: true });
  const pubJwk = await exportJWK(publicKey);
  const kid = await calculateJwkThumbprint(pubJwk);
  const rsa: IssuerSpec = { name: "rsa", issuer: ISS, audience: AUD, jwks: { keys: [{ ...pubJwk, kid, alg: "RS256" }] }, groups: [{ claim: "groups" }] };
  const good = await new SignJWT({ groups: ["ci"] }).setProtectedHeader({ alg: "RS256", kid }).setIssuer(ISS).setAudience(AUD).setSubject("alice").setExpirationTime("5m").sign(privateKey);
  assert.deepEqual((await verifyToken(good, [rsa])).groups, ["ci"]);

  const pem = await exportSPKI(publicKey);
  for (const secret of [new TextEncoder().encode(pem), new TextEncoder().encode(JSON.stringify(pubJwk))]) {
    const forged = await new SignJWT({ groups: ["dba"] }).setProtectedHeader({ alg: "HS256", kid }).setIssuer(ISS).setAudience(AUD).setSubject("mallory").setExpirationTime("5m").sign(secret);
    await rejectsWith(verifyToken(forged, [rsa]), "alg", forged);
    await rejectsWith(verifyToken(forged, [{ ...rsa, algorithms: ["HS256", "RS256"] }]), "alg", forged);
  }
});

test("an algorithm outside the issuer's allow-list is rejected", async () => {
  const token = await dev.mint({ sub: "alice" }); // ES256
  await rejectsWith(verifyToken(token, [{ ...spec, algorithms: ["RS256"] }]), "alg", token);
});

test("something that is not a JWT is rejected as malformed", async () => {
  for (const bad of ["", "hunter2", "a.b", "a.b.c.d", "eyJhbGciOiJFUzI1NiJ9.@@@.x", "x".repeat(20000), "bm90.anNvbg.c2ln"]) {
    await rejectsWith(verifyToken(bad, [spec]), "malformed");
  }
});

test("a token that is not yet valid (nbf in the future) is rejected", async () => {
  const token = await dev.mint({ sub: "alice", nbf: Math.floor(Date.now() / 1000) + 3600 });
  await rejectsWith(verifyToken(token, [spec]), "nbf", token);
});

test("a token without exp (it would never expire) is rejected", async () => {
  const { privateKey, publicKey } = await generateKeyPair("ES256", { extractable: true });
  const jwk = { ...(await exportJWK(publicKey)), kid: "k", alg: "ES256" };
  const s: IssuerSpec = { name: "x", issuer: ISS, audience: AUD, jwks: { keys: [jwk] }, groups: [] };
  const token = await new SignJWT({}).setProtectedHeader({ alg: "ES256", kid: "k" }).setIssuer(ISS).setAudience(AUD).setSubject("alice").setIssuedAt().sign(privateKey);
  await rejectsWith(verifyToken(token, [s]), "claims", token);
});

test("a token without sub is rejected", async () => {
  const token = await dev.mint({ sub: "" });
  await rejectsWith(verifyToken(token, [spec]), "claims", token);
});

test("remote JWKS: cached, refetched for a new kid so key rotation works, cooldown limits refetches", async () => {
  let served: { keys: unknown[] } = { keys: [] };
  let fetches = 0;
  const server = createServer((req, res) => {
    fetches++;
    res.writeHead(200, { "content-type": "application/json" });
    res.end(JSON.stringify(served));
  });
  await new Promise<void>((r) => server.listen(0, "127.0.0.1", r));
  after(() => server.close());
  const url = `http://127.0.0.1:${(server.address() as AddressInfo).port}/jwks`;

  const k1 = await createDevIssuer({ issuer: ISS, audience: AUD });
  const k2 = await createDevIssuer({ issuer: ISS, audience: AUD });
  const remote: IssuerSpec = { name: "remote", issuer: ISS, audience: AUD, jwksUrl: url, groups: [{ claim: "groups" }] };
  served = { keys: [...k1.jwks.keys] };

  const cache = new JwksCache({ cooldownMs: 0 });
  const t1 = await k1.mint({ sub: "a", groups: ["ci"] });
  assert.deepEqual((await verifyToken(t1, [remote], { jwksFetcher: cache })).groups, ["ci"]);
  await verifyToken(t1, [remote], { jwksFetcher: cache });
  assert.equal(fetches, 1, "keys are cached");

  // rotation: the issuer publishes a new key; a token signed with it triggers one refetch
  served = { keys: [...k2.jwks.keys, ...k1.jwks.keys] };
  const t2 = await k2.mint({ sub: "b" });
  assert.equal((await verifyToken(t2, [remote], { jwksFetcher: cache })).subject, "b");
  assert.equal(fetches, 2);

  // with a cooldown, an unknown kid does not hammer the issuer: rejected without a refetch
  const slow = new JwksCache({ cooldownMs: 60_000 });
  served = { keys: [...k1.jwks.keys] };
  await verifyToken(t1, [remote], { jwksFetcher: slow });
  const before = fetches;
  await rejectsWith(verifyToken(t2, [remote], { jwksFetcher: slow }), "kid", t2);
  assert.equal(fetches, before);
});

test("an unreachable JWKS URL fails closed", async () => {
  const server = createServer();
  await new Promise<void>((r) => server.listen(0, "127.0.0.1", r));
  const port = (server.address() as AddressInfo).port;
  await new Promise<void>((r) => server.close(() => r()));
  const remote: IssuerSpec = { name: "remote", issuer: ISS, audience: AUD, jwksUrl: `http://127.0.0.1:${port}/jwks`, groups: [] };
  const token = await dev.mint({ sub: "alice" });
  await rejectsWith(verifyToken(token, [remote], { jwksFetcher: new JwksCache({ timeoutMs: 2000 }) }), "jwks", token);
});

test("several issuers may share an iss: the first that verifies wins", async () => {
  const token = await dev.mint({ sub: "alice", audience: "second" });
  const v = await verifyToken(token, [{ ...spec, name: "one", audience: "first" }, { ...spec, name: "two", audience: "second", groups: [] }]);
  assert.equal(v.issuer, "two");
});

test("a JWKS endpoint answering 500 or garbage fails closed", async (t) => {
  let mode = "500";
  const server = createServer((_req, res) => {
    if (mode === "500") {
      res.writeHead(500);
      res.end("oops");
    } else {
      res.writeHead(200, { "content-type": "application/json" });
      res.end(mode === "json" ? JSON.stringify({ keys: "nope" }) : "<html>");
    }
  });
  await new Promise<void>((r) => server.listen(0, "127.0.0.1", r));
  t.after(() => server.close());
  const url = `http://127.0.0.1:${(server.address() as AddressInfo).port}/jwks`;
  const remote: IssuerSpec = { name: "remote", issuer: ISS, audience: AUD, jwksUrl: url, groups: [] };
  const token = await dev.mint({ sub: "alice" });
  for (mode of ["500", "json", "html"]) {
    await rejectsWith(verifyToken(token, [remote], { jwksFetcher: new JwksCache() }), "jwks", token);
  }
});

/** A key resolver cache that counts full verifications (each resolves the issuer's keys once). */
class CountingJwks extends JwksCache {
  resolutions = 0;
  override resolver(s: IssuerSpec) {
    this.resolutions++;
    return super.resolver(s);
  }
}

test("verified-token cache: the same token against the same issuers is verified once", async () => {
  const jwks = new CountingJwks();
  const verifiedCache = new VerifiedTokenCache();
  const issuers = [spec];
  const token = await dev.mint({ sub: "ci-job", groups: ["ci"] });
  const a = await verifyToken(token, issuers, { jwksFetcher: jwks, verifiedCache });
  const b = await verifyToken(token, issuers, { jwksFetcher: jwks, verifiedCache });
  assert.equal(jwks.resolutions, 1);
  assert.deepEqual(b, a);
  // each caller has its own copy
  b.groups.push("admin");
  (b.claims as Record<string, unknown>).extra = 1;
  const c = await verifyToken(token, issuers, { jwksFetcher: jwks, verifiedCache });
  assert.deepEqual(c.groups, ["ci"]);
  assert.equal(c.claims.extra, undefined);
  // a different token is verified on its own
  await verifyToken(await dev.mint({ sub: "other-job" }), issuers, { jwksFetcher: jwks, verifiedCache });
  assert.equal(jwks.resolutions, 2);
});

test("verified-token cache: a new issuer configuration (policy snapshot) verifies afresh", async () => {
  const verifiedCache = new VerifiedTokenCache();
  const token = await dev.mint({ sub: "ci-job" });
  await verifyToken(token, [spec], { verifiedCache });
  // the next snapshot wants another audience: the earlier success does not carry over
  await rejectsWith(verifyToken(token, [{ ...spec, audience: "other" }], { verifiedCache }), "audience", token);
});

test("verified-token cache: never past the token's expiry, nor past maxAgeMs", async () => {
  const jwks = new CountingJwks();
  const verifiedCache = new VerifiedTokenCache({ maxAgeMs: 60_000 });
  const issuers = [spec];
  const t0 = new Date();
  const token = await dev.mint({ sub: "ci-job", ttlSec: 600, now: t0 });
  await verifyToken(token, issuers, { jwksFetcher: jwks, verifiedCache, now: t0 });
  await verifyToken(token, issuers, { jwksFetcher: jwks, verifiedCache, now: new Date(t0.getTime() + 30_000) });
  assert.equal(jwks.resolutions, 1);
  // a minute later the signature is checked again
  await verifyToken(token, issuers, { jwksFetcher: jwks, verifiedCache, now: new Date(t0.getTime() + 61_000) });
  assert.equal(jwks.resolutions, 2);
  // beyond exp + tolerance the cached success does not count: the token is expired
  const short = await dev.mint({ sub: "ci-job", ttlSec: 5, now: t0 });
  await verifyToken(short, issuers, { jwksFetcher: jwks, verifiedCache, now: t0 });
  await rejectsWith(verifyToken(short, issuers, { jwksFetcher: jwks, verifiedCache, now: new Date(t0.getTime() + 36_000) }), "expired", short);
});

test("verified-token cache: failures are not kept, keys are hashes, size is bounded", async () => {
  const verifiedCache = new VerifiedTokenCache({ maxEntries: 2 });
  const forged = (await dev.mint({ sub: "x" })).replace(/\.[^.]+$/, ".AAAA");
  await rejectsWith(verifyToken(forged, [spec], { verifiedCache }), "signature", forged);
  await rejectsWith(verifyToken(forged, [spec], { verifiedCache }), "signature", forged);
  assert.equal(verifiedCache.size, 0);
  const tokens = await Promise.all(["a", "b", "c"].map((sub) => dev.mint({ sub })));
  for (const t of tokens) await verifyToken(t, [spec], { verifiedCache });
  assert.equal(verifiedCache.size, 2);
  assert.ok(!VerifiedTokenCache.keyOf(tokens[0]!).includes(tokens[0]!.split(".")[1]!));
});
