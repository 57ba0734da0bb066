/**
 * The console's side of OIDC sign-in for people: authorization code flow with PKCE (S256) and a
 * nonce, against one configured issuer. The ID token is verified like any machine token (jose via
 * verifyToken: issuer, audience = client id, algorithm allow-list, expiry) and its claims are mapped
 * to groups by the issuer's rules. The tokens never leave this process and are not kept.
 */
import { createHash, randomBytes } from "node:crypto";
import { verifyToken, type JwksCache, type VerifiedToken } from "@sluice/shared/auth";
import type { ConsoleIssuer } from "@sluice/shared/config";
import { SluiceError } from "@sluice/shared/errors";
import type { IssuerSpec } from "@sluice/shared/policy";

export interface OidcEndpoints {
  authorization: string;
  token: string;
  jwksUrl?: string;
}

export interface PkcePair {
  verifier: string;
  challenge: string;
}

/** RFC 7636: 32 random bytes as the verifier (43 characters), its SHA-256 as the challenge. */
export function pkcePair(): PkcePair {
  const verifier = randomBytes(32).toString("base64url");
  return { verifier, challenge: createHash("sha256").update(verifier).digest("base64url") };
}

export function randomToken(bytes = 24): string {
  return randomBytes(bytes).toString("base64url");
}

export interface OidcClientOptions {
  fetch?: typeof fetch;
  jwksFetcher?: JwksCache;
  now?: () => Date;
  /** resolves `env:`/`file:` references (the client secret) */
  resolveSecret: (ref: string) => string;
}

const TIMEOUT_MS = 10_000;

export class OidcClient {
  private discovered: Promise<OidcEndpoints> | undefined;
  private readonly fetch: typeof fetch;

  constructor(readonly spec: ConsoleIssuer, private readonly o: OidcClientOptions) {
    this.fetch = o.fetch ?? fetch;
  }

  get name(): string {
    return this.spec.name;
  }

  /** Configured endpoints, else the issuer's discovery document (fetched once; a failure is retried next time). */
  endpoints(): Promise<OidcEndpoints> {
    const s = this.spec;
    if (s.authorizationEndpoint && s.tokenEndpoint && (s.jwks || s.jwksUrl)) {
      return Promise.resolve({ authorization: s.authorizationEndpoint, token: s.tokenEndpoint, jwksUrl: s.jwksUrl });
    }
    this.discovered ??= (async () => {
      const url = `${s.issuer.replace(/\/$/, "")}/.well-known/openid-configuration`;
      const res = await this.fetch(url, { signal: AbortSignal.timeout(TIMEOUT_MS), headers: { accept: "application/json" } });
      if (!res.ok) throw new SluiceError("unavailable", `issuer ${s.name}: discovery answered HTTP ${res.status}`);
      const d = (await res.json()) as Record<string, unknown>;
      if (d.issuer !== s.issuer) throw new SluiceError("failed_precondition", `issuer ${s.name}: discovery names another issuer`);
      const pick = (configured: string | undefined, key: string) => {
        const v = configured ?? d[key];
        if (typeof v !== "string" || !v) throw new SluiceError("failed_precondition", `issuer ${s.name}: discovery has no ${key}`);
        return v;
      };
      return {
        authorization: pick(s.authorizationEndpoint, "authorization_endpoint"),
        token: pick(s.tokenEndpoint, "token_endpoint"),
        jwksUrl: s.jwks ? undefined : pick(s.jwksUrl, "jwks_uri"),
      };
    })();
    this.discovered.catch(() => (this.discovered = undefined));
    return this.discovered;
  }

  async authorizationUrl(p: { redirectUri: string; state: string; nonce: string; challenge: string }): Promise<string> {
    const u = new URL((await this.endpoints()).authorization);
    u.searchParams.set("response_type", "code");
    u.searchParams.set("client_id", this.spec.clientId);
    u.searchParams.set("redirect_uri", p.redirectUri);
    u.searchParams.set("scope", this.spec.scopes ?? "openid profile email groups");
    u.searchParams.set("state", p.state);
    u.searchParams.set("nonce", p.nonce);
    u.searchParams.set("code_challenge", p.challenge);
    u.searchParams.set("code_challenge_method", "S256");
    return u.toString();
  }

  /** Redeems the code at the token endpoint and verifies the ID token (nonce included). */
  async signIn(p: { code: string; redirectUri: string; verifier: string; nonce: string }): Promise<VerifiedToken> {
    const ep = await this.endpoints();
    const form = new URLSearchParams({ grant_type: "authorization_code", code: p.code, redirect_uri: p.redirectUri, client_id: this.spec.clientId, code_verifier: p.verifier });
    const headers: Record<string, string> = { "content-type": "application/x-www-form-urlencoded", accept: "application/json" };
    if (this.spec.clientSecret) {
      const secret = this.o.resolveSecret(this.spec.clientSecret);
      headers.authorization = `Basic ${Buffer.from(`${encodeURIComponent(this.spec.clientId)}:${encodeURIComponent(secret)}`).toString("base64")}`;
    }
    let res: Response;
    try {
      res = await this.fetch(ep.token, { method: "POST", body: form, headers, signal: AbortSignal.timeout(TIMEOUT_MS) });
    } catch (e) {
      throw new SluiceError("unavailable", `issuer ${this.spec.name}: token endpoint unreachable (${(e as Error).message})`);
    }
    const body = (await res.json().catch(() => ({}))) as { id_token?: unknown; error?: unknown };
    if (!res.ok || typeof body.id_token !== "string") {
      // the issuer's error code only (RFC 6749 5.2): its description may echo request values
      const code = typeof body.error === "string" && /^[a-z_]{1,40}$/.test(body.error) ? body.error : `HTTP ${res.status}`;
      throw new SluiceError("unauthenticated", `sign-in refused by issuer ${this.spec.name}: ${code}`);
    }
    const verified = await verifyToken(body.id_token, [this.issuerSpec(ep)], {
      ...(this.o.jwksFetcher ? { jwksFetcher: this.o.jwksFetcher } : {}),
      ...(this.o.now ? { now: this.o.now() } : {}),
    });
    if (verified.claims.nonce !== p.nonce) throw new SluiceError("unauthenticated", "sign-in refused: the ID token's nonce does not match this sign-in");
    return verified;
  }

  private issuerSpec(ep: OidcEndpoints): IssuerSpec {
    const { clientId: _c, clientSecret: _s, authorizationEndpoint: _a, tokenEndpoint: _t, scopes: _sc, audience, jwksUrl: _j, ...rest } = this.spec;
    return { ...rest, audience: audience ?? this.spec.clientId, ...(this.spec.jwks ? {} : { jwksUrl: ep.jwksUrl }) };
  }
}
