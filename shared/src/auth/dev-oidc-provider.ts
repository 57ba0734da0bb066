/**
 * The development issuer's sign-in for people (`sluice dev`, tests): the OIDC authorization code flow
 * with PKCE, just enough of it for the console. The login page lets a developer pick any subject and
 * groups: it is a development tool with no passwords, never an identity provider for production.
 *
 * Under the issuer URL's path (e.g. http://127.0.0.1:7481/dev):
 *   GET  /.well-known/openid-configuration   discovery
 *   GET  /jwks                               the public keys
 *   GET  /authorize                          the login page (client and redirect URI checked first)
 *   POST /authorize                          the chosen identity → 303 to the redirect URI with a code
 *   POST /token                              code + code_verifier (S256) → ID token (aud = client id)
 * Codes are single-use, live 60 s, and are bound to client, redirect URI, PKCE challenge and nonce.
 */
import { createHash, randomBytes, timingSafeEqual } from "node:crypto";
import type { IncomingMessage, ServerResponse } from "node:http";
import type { ConsoleIssuer } from "../config/config.js";
import { devIssuerSpec, type DevIssuer } from "./dev-issuer.js";

export interface DevOidcClient {
  clientId: string;
  /** exact redirect URIs this client may use */
  redirectUris: string[];
}

export interface DevOidcProviderOptions {
  issuer: DevIssuer;
  clients: DevOidcClient[];
  /** offered on the login page as quick picks */
  suggestions?: Array<{ sub: string; groups: string[] }>;
  /** ID token lifetime (default 600 s) */
  idTokenTtlSec?: number;
  now?: () => Date;
}

export interface DevOidcProvider {
  /** the issuer URL's path, e.g. `/dev/`: mount the handler there */
  prefix: string;
  handle(req: IncomingMessage, res: ServerResponse): Promise<void>;
}

interface PendingCode {
  clientId: string;
  redirectUri: string;
  challenge: string;
  nonce?: string;
  sub: string;
  groups: string[];
  expiresAt: number;
}

const CODE_TTL_MS = 60_000;
const MAX_CODES = 1000;
const SUBJECT = /^[A-Za-z0-9._@:+-]{1,128}$/;
const GROUP = /^[A-Za-z0-9._:/-]{1,128}$/;

function esc(s: string): string {
  return s.replace(/[&<>"']/g, (c) => ({ "&": "&amp;", "<": "&lt;", ">": "&gt;", '"': "&quot;", "'": "&#39;" })[c]!);
}

async function formBody(req: IncomingMessage): Promise<URLSearchParams> {
  const chunks: Buffer[] = [];
  let size = 0;
  for await (const c of req as AsyncIterable<Buffer>) {
    size += c.length;
    if (size > 16 * 1024) throw new Error("body too large");
    chunks.push(c);
  }
  return new URLSearchParams(Buffer.concat(chunks).toString("utf8"));
}

function json(res: ServerResponse, status: number, body: unknown): void {
  res.writeHead(status, { "content-type": "application/json", "cache-control": "no-store", pragma: "no-cache" });
  res.end(JSON.stringify(body));
}

function s256(verifier: string): string {
  return createHash("sha256").update(verifier).digest("base64url");
}

function sameText(a: string, b: string): boolean {
  const x = Buffer.from(a);
  const y = Buffer.from(b);
  return x.length === y.length && timingSafeEqual(x, y);
}

export function createDevOidcProvider(o: DevOidcProviderOptions): DevOidcProvider {
  const base = new URL(o.issuer.issuer);
  const prefix = base.pathname.replace(/\/?$/, "/");
  const url = (p: string) => `${o.issuer.issuer.replace(/\/$/, "")}/${p}`;
  const now = o.now ?? (() => new Date());
  const codes = new Map<string, PendingCode>();

  const discovery = {
    issuer: o.issuer.issuer,
    authorization_endpoint: url("authorize"),
    token_endpoint: url("token"),
    jwks_uri: url("jwks"),
    response_types_supported: ["code"],
    grant_types_supported: ["authorization_code"],
    subject_types_supported: ["public"],
    id_token_signing_alg_values_supported: [...new Set(o.issuer.jwks.keys.map((k) => String(k.alg ?? "ES256")))],
    code_challenge_methods_supported: ["S256"],
    token_endpoint_auth_methods_supported: ["none"],
    scopes_supported: ["openid", "profile", "email", "groups"],
    claims_supported: ["sub", "groups", "name", "nonce"],
  };

  /** The authorization request's parameters, or a reason it cannot even be redirected back. */
  function authRequest(p: URLSearchParams): { ok: true; clientId: string; redirectUri: string; state: string; nonce?: string; challenge: string } | { ok: false; status: number; why: string; redirect?: string } {
    const clientId = p.get("client_id") ?? "";
    const redirectUri = p.get("redirect_uri") ?? "";
    const client = o.clients.find((c) => c.clientId === clientId);
    if (!client) return { ok: false, status: 400, why: "unknown client_id" };
    if (!client.redirectUris.includes(redirectUri)) return { ok: false, status: 400, why: "redirect_uri is not registered for this client" };
    const state = p.get("state") ?? "";
    const back = (error: string) => {
      const u = new URL(redirectUri);
      u.searchParams.set("error", error);
      if (state) u.searchParams.set("state", state);
      return { ok: false as const, status: 303, why: error, redirect: u.toString() };
    };
    if (p.get("response_type") !== "code") return back("unsupported_response_type");
    if (!(p.get("scope") ?? "").split(" ").includes("openid")) return back("invalid_scope");
    const challenge = p.get("code_challenge") ?? "";
    if (p.get("code_challenge_method") !== "S256" || !/^[A-Za-z0-9_-]{43}$/.test(challenge)) return back("invalid_request");
    const nonce = p.get("nonce") ?? undefined;
    return { ok: true, clientId, redirectUri, state, challenge, ...(nonce ? { nonce } : {}) };
  }

  function loginPage(res: ServerResponse, p: URLSearchParams, redirectUri: string, error?: string): void {
    const nonce = randomBytes(16).toString("base64");
    const hidden = ["response_type", "client_id", "redirect_uri", "scope", "state", "nonce", "code_challenge", "code_challenge_method"]
      .map((k) => `<input type="hidden" name="${k}" value="${esc(p.get(k) ?? "")}">`)
      .join("");
    const picks = (o.suggestions ?? [])
      .map((s) => `<li><code>${esc(s.sub)}</code> in <code>${esc(s.groups.join(", ") || "(no group)")}</code></li>`)
      .join("");
    const html = `<!doctype html><html lang="en"><head><meta charset="utf-8"><meta name="viewport" content="width=device-width, initial-scale=1">
<title>Sign in · sluice development issuer</title><style nonce="${nonce}">
body{font:16px/1.5 system-ui,sans-serif;background:#f4f5f7;color:#1b1f24;margin:0}main{max-width:28rem;margin:4rem auto;background:#fff;padding:2rem;border-radius:8px;border:1px solid #d0d5dc}
h1{font-size:1.3rem;margin-top:0}label{display:block;font-weight:600;margin-top:1rem}input[type=text]{width:100%;box-sizing:border-box;padding:.5rem;font:inherit;border:1px solid #6b7280;border-radius:4px}
button{margin-top:1.5rem;padding:.6rem 1.2rem;font:inherit;font-weight:600;background:#1d4ed8;color:#fff;border:0;border-radius:4px;cursor:pointer}button:focus-visible,input:focus-visible{outline:3px solid #f59e0b;outline-offset:2px}
.hint{color:#4b5563;font-size:.9rem}.error{color:#b91c1c;font-weight:600}code{background:#eef0f3;padding:0 .25rem;border-radius:3px}</style></head>
<body><main><h1>Sign in to the sluice development issuer</h1>
<p class="hint">Development only: pick any identity. The console maps the <code>groups</code> you enter to its rules exactly as for a real issuer.</p>
${error ? `<p class="error" role="alert">${esc(error)}</p>` : ""}
<form method="post" action="${esc(prefix)}authorize">${hidden}
<label for="sub">Subject</label><input type="text" id="sub" name="sub" required autocomplete="username" value="${esc(p.get("sub") ?? "")}">
<label for="groups">Groups (comma-separated)</label><input type="text" id="groups" name="groups" value="${esc(p.get("groups") ?? "")}" aria-describedby="groups-hint">
<p id="groups-hint" class="hint">e.g. <code>dba</code> to approve, <code>sluice-admins</code> to see sessions, policy and evidence.</p>
<button type="submit">Sign in</button></form>${picks ? `<p class="hint">Identities in this stack:</p><ul class="hint">${picks}</ul>` : ""}</main></body></html>`;
    res.writeHead(error ? 400 : 200, {
      "content-type": "text/html; charset=utf-8",
      "cache-control": "no-store",
      // the form posts here and its answer redirects to the client: both must be allowed targets
      "content-security-policy": `default-src 'none'; style-src 'nonce-${nonce}'; form-action 'self' ${new URL(redirectUri).origin}; base-uri 'none'; frame-ancestors 'none'`,
      "x-content-type-options": "nosniff",
      "referrer-policy": "no-referrer",
      "x-frame-options": "DENY",
    });
    res.end(html);
  }

  function prune(t: number): void {
    for (const [k, c] of codes) if (c.expiresAt <= t) codes.delete(k);
    while (codes.size >= MAX_CODES) codes.delete(codes.keys().next().value!);
  }

  async function authorize(req: IncomingMessage, res: ServerResponse, query: URLSearchParams): Promise<void> {
    const p = req.method === "POST" ? await formBody(req) : query;
    const ar = authRequest(p);
    if (!ar.ok) {
      if (ar.redirect) return void res.writeHead(303, { location: ar.redirect, "cache-control": "no-store" }).end();
      res.writeHead(ar.status, { "content-type": "text/plain; charset=utf-8", "cache-control": "no-store" });
      return void res.end(`sign-in refused: ${ar.why}\n`);
    }
    if (req.method !== "POST") return loginPage(res, p, ar.redirectUri);
    const sub = (p.get("sub") ?? "").trim();
    const groups = (p.get("groups") ?? "").split(",").map((g) => g.trim()).filter(Boolean);
    if (!SUBJECT.test(sub)) return loginPage(res, p, ar.redirectUri, "The subject may hold letters, digits and . _ @ : + - (at most 128).");
    if (!groups.every((g) => GROUP.test(g))) return loginPage(res, p, ar.redirectUri, "A group may hold letters, digits and . _ : / - (at most 128).");
    const t = now().getTime();
    prune(t);
    const code = randomBytes(32).toString("base64url");
    codes.set(code, { clientId: ar.clientId, redirectUri: ar.redirectUri, challenge: ar.challenge, nonce: ar.nonce, sub, groups, expiresAt: t + CODE_TTL_MS });
    const back = new URL(ar.redirectUri);
    back.searchParams.set("code", code);
    if (ar.state) back.searchParams.set("state", ar.state);
    res.writeHead(303, { location: back.toString(), "cache-control": "no-store" }).end();
  }

  async function token(req: IncomingMessage, res: ServerResponse): Promise<void> {
    const p = await formBody(req);
    if (p.get("grant_type") !== "authorization_code") return json(res, 400, { error: "unsupported_grant_type" });
    const code = p.get("code") ?? "";
    const pending = codes.get(code);
    // single use: a code is spent by its first redemption, whether or not that one succeeds
    codes.delete(code);
    if (!pending || pending.expiresAt <= now().getTime()) return json(res, 400, { error: "invalid_grant" });
    if (pending.clientId !== (p.get("client_id") ?? "") || pending.redirectUri !== (p.get("redirect_uri") ?? "")) return json(res, 400, { error: "invalid_grant" });
    const verifier = p.get("code_verifier") ?? "";
    if (!/^[A-Za-z0-9._~-]{43,128}$/.test(verifier) || !sameText(s256(verifier), pending.challenge)) return json(res, 400, { error: "invalid_grant" });
    const ttl = o.idTokenTtlSec ?? 600;
    const idToken = await o.issuer.mint({
      sub: pending.sub,
      groups: pending.groups,
      audience: pending.clientId,
      ttlSec: ttl,
      now: now(),
      claims: { name: pending.sub, ...(pending.nonce ? { nonce: pending.nonce } : {}) },
    });
    json(res, 200, { access_token: randomBytes(24).toString("base64url"), token_type: "Bearer", expires_in: ttl, id_token: idToken, scope: "openid" });
  }

  return {
    prefix,
    async handle(req, res) {
      const u = new URL(req.url ?? "/", "http://issuer.invalid");
      const rest = u.pathname.slice(prefix.length);
      try {
        if (rest === ".well-known/openid-configuration" && req.method === "GET") return json(res, 200, discovery);
        if (rest === "jwks" && req.method === "GET") return json(res, 200, o.issuer.jwks);
        if (rest === "authorize" && (req.method === "GET" || req.method === "POST")) return await authorize(req, res, u.searchParams);
        if (rest === "token" && req.method === "POST") return await token(req, res);
        res.writeHead(404, { "content-type": "text/plain", "cache-control": "no-store" }).end("not found\n");
      } catch {
        if (!res.headersSent) json(res, 400, { error: "invalid_request" });
        else res.end();
      }
    },
  };
}

/**
 * The console issuer entry for a dev issuer: named like its bundle entry (`dev`), so a person signed
 * in as `me` and a pipeline token for `me` are one identity to the no-self-approval rule.
 */
export function devConsoleIssuer(dev: Pick<DevIssuer, "issuer" | "jwks">, clientId: string): ConsoleIssuer {
  const spec = devIssuerSpec({ ...dev, audience: clientId });
  return { ...spec, clientId, audience: clientId, authorizationEndpoint: `${dev.issuer.replace(/\/$/, "")}/authorize`, tokenEndpoint: `${dev.issuer.replace(/\/$/, "")}/token` };
}
