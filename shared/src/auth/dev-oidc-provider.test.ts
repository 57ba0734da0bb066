import { test } from "node:test";
import assert from "node:assert/strict";
import { createHash, randomBytes } from "node:crypto";
import { createServer } from "node:http";
import type { AddressInfo } from "node:net";
import { createDevIssuer } from "./dev-issuer.js";
import { createDevOidcProvider, devConsoleIssuer } from "./dev-oidc-provider.js";
import { verifyToken } from "./verify-token.js";

const CLIENT = "sluice-console";

/** A dev issuer whose sign-in pages are served over real HTTP on a free port. */
async function served(t: { after(fn: () => unknown): void }) {
  const server = createServer();
  await new Promise<void>((r) => server.listen(0, "127.0.0.1", r));
  const base = `http://127.0.0.1:${(server.address() as AddressInfo).port}`;
  const issuer = await createDevIssuer({ issuer: `${base}/dev`, audience: "sluice" });
  const redirectUri = `${base}/console/auth/callback`;
  const provider = createDevOidcProvider({ issuer, clients: [{ clientId: CLIENT, redirectUris: [redirectUri] }] });
  server.on("request", (req, res) => {
    if ((req.url ?? "").startsWith(provider.prefix)) void provider.handle(req, res);
    else res.writeHead(404).end();
  });
  t.after(() => new Promise<void>((r) => server.close(() => r())));
  return { base, issuer, redirectUri, provider };
}

function pkce() {
  const verifier = randomBytes(32).toString("base64url");
  return { verifier, challenge: createHash("sha256").update(verifier).digest("base64url") };
}

function authorizeParams(redirectUri: string, challenge: string, extra: Record<string, string> = {}) {
  return new URLSearchParams({ response_type: "code", client_id: CLIENT, redirect_uri: redirectUri, scope: "openid groups", state: "st-1", nonce: "n-1", code_challenge: challenge, code_challenge_method: "S256", ...extra });
}

/** Posts the login form as a browser would; returns the redirect it answers with. */
async function signIn(base: string, params: URLSearchParams, sub: string, groups: string): Promise<URL> {
  const body = new URLSearchParams(params);
  body.set("sub", sub);
  body.set("groups", groups);
  const res = await fetch(`${base}/dev/authorize`, { method: "POST", body, redirect: "manual" });
  assert.equal(res.status, 303);
  return new URL(res.headers.get("location")!);
}

function redeem(base: string, form: Record<string, string>) {
  return fetch(`${base}/dev/token`, { method: "POST", body: new URLSearchParams({ grant_type: "authorization_code", client_id: CLIENT, ...form }) });
}

test("dev sign-in: discovery, login page, code + PKCE → an ID token the console verifies, with the chosen groups and nonce", async (t) => {
  const s = await served(t);
  const disc = (await (await fetch(`${s.base}/dev/.well-known/openid-configuration`)).json()) as Record<string, unknown>;
  assert.equal(disc.issuer, `${s.base}/dev`);
  assert.equal(disc.authorization_endpoint, `${s.base}/dev/authorize`);
  assert.deepEqual(disc.code_challenge_methods_supported, ["S256"]);

  const { verifier, challenge } = pkce();
  const params = authorizeParams(s.redirectUri, challenge);
  const page = await fetch(`${s.base}/dev/authorize?${params}`);
  assert.equal(page.status, 200);
  const html = await page.text();
  assert.match(html, /<label for="sub">Subject<\/label>/);
  assert.match(page.headers.get("content-security-policy") ?? "", /default-src 'none'/);
  // the PKCE challenge travels in the form; the verifier never does
  assert.ok(html.includes(challenge) && !html.includes(verifier));

  const back = await signIn(s.base, params, "carol", "dba, sluice-admins");
  assert.equal(`${back.origin}${back.pathname}`, s.redirectUri);
  assert.equal(back.searchParams.get("state"), "st-1");
  const code = back.searchParams.get("code")!;

  const res = await redeem(s.base, { code, redirect_uri: s.redirectUri, code_verifier: verifier });
  assert.equal(res.status, 200);
  const body = (await res.json()) as { id_token: string };
  const v = await verifyToken(body.id_token, [{ ...devConsoleIssuer(s.issuer, CLIENT), audience: CLIENT }]);
  assert.equal(v.subject, "carol");
  assert.equal(v.issuer, "dev");
  assert.deepEqual(v.groups, ["dba", "sluice-admins"]);
  assert.equal(v.claims.nonce, "n-1");
  assert.equal(v.claims.aud, CLIENT);
});

test("dev sign-in: a code is single-use and bound to its verifier, client and redirect URI", async (t) => {
  const s = await served(t);
  const { verifier, challenge } = pkce();
  const params = authorizeParams(s.redirectUri, challenge);

  // wrong verifier: refused, and the code is spent by that attempt
  let code = (await signIn(s.base, params, "carol", "dba")).searchParams.get("code")!;
  let r = await redeem(s.base, { code, redirect_uri: s.redirectUri, code_verifier: pkce().verifier });
  assert.deepEqual([r.status, ((await r.json()) as { error: string }).error], [400, "invalid_grant"]);
  r = await redeem(s.base, { code, redirect_uri: s.redirectUri, code_verifier: verifier });
  assert.equal(r.status, 400, "a code cannot be retried after a failed redemption");

  // replay of a redeemed code
  code = (await signIn(s.base, params, "carol", "dba")).searchParams.get("code")!;
  assert.equal((await redeem(s.base, { code, redirect_uri: s.redirectUri, code_verifier: verifier })).status, 200);
  assert.equal((await redeem(s.base, { code, redirect_uri: s.redirectUri, code_verifier: verifier })).status, 400);

  // another redirect URI or client than the code was issued for
  code = (await signIn(s.base, params, "carol", "dba")).searchParams.get("code")!;
  assert.equal((await redeem(s.base, { code, redirect_uri: `${s.base}/elsewhere`, code_verifier: verifier })).status, 400);
  code = (await signIn(s.base, params, "carol", "dba")).searchParams.get("code")!;
  r = await fetch(`${s.base}/dev/token`, { method: "POST", body: new URLSearchParams({ grant_type: "authorization_code", client_id: "other", code, redirect_uri: s.redirectUri, code_verifier: verifier }) });
  assert.equal(r.status, 400);
  // a verifier that is not one (too short) is refused before hashing
  code = (await signIn(s.base, params, "carol", "dba")).searchParams.get("code")!;
  assert.equal((await redeem(s.base, { code, redirect_uri: s.redirectUri, code_verifier: "short" })).status, 400);
});

test("dev sign-in: unknown clients and unregistered redirect URIs get no redirect; other bad requests go back with an error", async (t) => {
  const s = await served(t);
  const { challenge } = pkce();
  let r = await fetch(`${s.base}/dev/authorize?${authorizeParams(s.redirectUri, challenge, { client_id: "evil" })}`, { redirect: "manual" });
  assert.equal(r.status, 400);
  r = await fetch(`${s.base}/dev/authorize?${authorizeParams("https://evil.example/cb", challenge)}`, { redirect: "manual" });
  assert.equal(r.status, 400, "never redirect to an unregistered URI");
  r = await fetch(`${s.base}/dev/authorize?${authorizeParams(s.redirectUri, challenge, { code_challenge_method: "plain" })}`, { redirect: "manual" });
  assert.equal(r.status, 303);
  const back = new URL(r.headers.get("location")!);
  assert.equal(back.searchParams.get("error"), "invalid_request");
  assert.equal(back.searchParams.get("state"), "st-1");
  // a subject with markup is refused on the page, escaped
  const body = authorizeParams(s.redirectUri, challenge);
  body.set("sub", "<script>x</script>");
  r = await fetch(`${s.base}/dev/authorize`, { method: "POST", body, redirect: "manual" });
  assert.equal(r.status, 400);
  const html = await r.text();
  assert.ok(!html.includes("<script>x</script>") && html.includes("&lt;script&gt;"));
});
