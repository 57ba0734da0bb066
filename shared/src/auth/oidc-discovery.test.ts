import { test } from "node:test";
import assert from "node:assert/strict";
import { createServer, type IncomingMessage, type ServerResponse } from "node:http";
import type { AddressInfo } from "node:net";
import type { TestContext } from "node:test";
import { SluiceError } from "../errors/index.js";
import type { IssuerSpec } from "../policy/bundle.js";
import { createDevIssuer } from "./dev-issuer.js";
import { createDevOidcProvider } from "./dev-oidc-provider.js";
import { DiscoveryCache, discoveryUrl } from "./oidc-discovery.js";
import { JwksCache, verifyToken } from "./verify-token.js";

async function serve(t: TestContext, handle: (req: IncomingMessage, res: ServerResponse) => void): Promise<string> {
  const server = createServer(handle);
  await new Promise<void>((r) => server.listen(0, "127.0.0.1", r));
  t.after(() => new Promise<void>((r) => server.close(() => r())));
  return `http://127.0.0.1:${(server.address() as AddressInfo).port}`;
}

const reason = (e: unknown) => (SluiceError.is(e, "unauthenticated") ? (e.details as { reason: string }).reason : String(e));

test("given an issuer by URL and discovery: true, when its token arrives, then the keys are found through its discovery document", async (t) => {
  let docs = 0;
  let jwks: unknown = { keys: [] };
  let base = "";
  base = await serve(t, (req, res) => {
    if (req.url === "/tenant/.well-known/openid-configuration") {
      docs++;
      res.writeHead(200, { "content-type": "application/json" }).end(JSON.stringify({ issuer: `${base}/tenant`, jwks_uri: `${base}/tenant/keys` }));
    } else if (req.url === "/tenant/keys") res.writeHead(200, { "content-type": "application/json" }).end(JSON.stringify(jwks));
    else res.writeHead(404).end();
  });
  const issuer = await createDevIssuer({ issuer: `${base}/tenant`, audience: "sluice" });
  jwks = issuer.jwks;

  const spec: IssuerSpec = { name: "tenant", issuer: `${base}/tenant`, audience: "sluice", discovery: true, groups: [{ claim: "groups" }] };
  const cache = new JwksCache();
  const token = await issuer.mint({ sub: "job-1", groups: ["ci"] });
  const v = await verifyToken(token, [spec], { jwksFetcher: cache });
  assert.deepEqual([v.subject, v.issuer, v.groups], ["job-1", "tenant", ["ci"]]);
  await verifyToken(await issuer.mint({ sub: "job-2" }), [spec], { jwksFetcher: cache });
  assert.equal(docs, 1, "the document is read once and cached");

  // the issuer URL alone (a bundle that was not normalized) means the same
  const bare: IssuerSpec = { name: "tenant", issuer: `${base}/tenant`, audience: "sluice", groups: [] };
  assert.equal((await verifyToken(token, [bare], { jwksFetcher: new JwksCache() })).subject, "job-1");
  // and `discovery: false` without keys is no key source at all
  await assert.rejects(verifyToken(token, [{ ...bare, discovery: false }], { jwksFetcher: new JwksCache() }), (e) => reason(e) === "jwks");
});

test("given a discovery document that is not the issuer's own, then no key is taken from it (fail closed)", async (t) => {
  let jwks: unknown = { keys: [] };
  let mode = "other-issuer";
  let base = "";
  base = await serve(t, (req, res) => {
    if (req.url?.endsWith("/.well-known/openid-configuration")) {
      if (mode === "404") return void res.writeHead(404).end();
      if (mode === "redirect") return void res.writeHead(302, { location: `${base}/elsewhere/.well-known/openid-configuration` }).end();
      if (mode === "garbage") return void res.writeHead(200).end("<html>");
      const doc =
        mode === "other-issuer" ? { issuer: "https://evil.example", jwks_uri: `${base}/keys` }
        : mode === "plain-http" ? { issuer: `${base}/t`, jwks_uri: "http://keys.example/jwks" }
        : { issuer: `${base}/t` };
      return void res.writeHead(200, { "content-type": "application/json" }).end(JSON.stringify(doc));
    }
    res.writeHead(200, { "content-type": "application/json" }).end(JSON.stringify(jwks));
  });
  const signer = await createDevIssuer({ issuer: `${base}/t`, audience: "sluice" });
  jwks = signer.jwks;
  const spec: IssuerSpec = { name: "t", issuer: `${base}/t`, audience: "sluice", discovery: true, groups: [] };
  const token = await signer.mint({ sub: "a" });
  for (mode of ["other-issuer", "plain-http", "no-jwks-uri", "404", "redirect", "garbage"]) {
    await assert.rejects(verifyToken(token, [spec], { jwksFetcher: new JwksCache() }), (e) => reason(e) === "jwks", mode);
  }
});

test("given a failed discovery, then the next attempt waits for the cooldown; a once-good answer outlives a brief outage", async (t) => {
  let up = false;
  let reads = 0;
  let base = "";
  base = await serve(t, (_req, res) => {
    reads++;
    if (!up) return void res.writeHead(503).end();
    res.writeHead(200, { "content-type": "application/json" }).end(JSON.stringify({ issuer: `${base}/i`, jwks_uri: `${base}/i/jwks` }));
  });
  let now = 1_000;
  const d = new DiscoveryCache({ cooldownMs: 30_000, maxAgeMs: 60_000, now: () => now });
  await assert.rejects(d.jwksUri(`${base}/i`), /HTTP 503/);
  await assert.rejects(d.jwksUri(`${base}/i`), /HTTP 503/);
  assert.equal(reads, 1, "no second read within the cooldown");
  up = true;
  now += 31_000;
  assert.equal(await d.jwksUri(`${base}/i`), `${base}/i/jwks`);
  up = false;
  now += 61_000; // stale: read again, fails, the good answer is kept
  assert.equal(await d.jwksUri(`${base}/i`), `${base}/i/jwks`);
  assert.equal(reads, 3);
  assert.equal(discoveryUrl("https://a.example/x/"), "https://a.example/x/.well-known/openid-configuration");
});

test("given the development issuer's HTTP endpoints, then a relying party finds its keys at its issuer URL, as with a real issuer", async (t) => {
  let base = "";
  let provider: ReturnType<typeof createDevOidcProvider> | undefined;
  base = await serve(t, (req, res) => void provider!.handle(req, res));
  const issuer = await createDevIssuer({ issuer: `${base}/dev`, audience: "sluice" });
  provider = createDevOidcProvider({ issuer, clients: [] });
  const doc = (await (await fetch(discoveryUrl(issuer.issuer))).json()) as { issuer: string; jwks_uri: string };
  assert.equal(doc.issuer, issuer.issuer);
  const spec: IssuerSpec = { name: "dev", issuer: issuer.issuer, audience: "sluice", discovery: true, groups: [{ claim: "groups" }] };
  const v = await verifyToken(await issuer.mint({ sub: "me", groups: ["dev"] }), [spec], { jwksFetcher: new JwksCache() });
  assert.deepEqual([v.subject, v.groups], ["me", ["dev"]]);
});
