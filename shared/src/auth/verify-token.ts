/**
 * OIDC bearer-token verification shared by both planes: the control plane's gRPC auth and the data
 * plane's cleartext-password (JWT) authentication. Failures are always SluiceError("unauthenticated")
 * with a short, safe message; the token text never appears in a message or in `details`.
 */
import {
  createLocalJWKSet,
  createRemoteJWKSet,
  customFetch,
  decodeJwt,
  decodeProtectedHeader,
  errors as joseErrors,
  jwtVerify,
  type FetchImplementation,
  type JWTVerifyGetKey,
  type JSONWebKeySet,
} from "jose";
import { createHash } from "node:crypto";
import { SluiceError } from "../errors/index.js";
import type { IssuerSpec, Jwks } from "../policy/bundle.js";
import { groupsFromClaims } from "./groups-from-claims.js";
import { DiscoveryCache } from "./oidc-discovery.js";

/** Accepted when an issuer lists no `algorithms`. Symmetric (HS*) and `none` are never accepted. */
export const DEFAULT_ALGORITHMS: readonly string[] = ["RS256", "ES256", "EdDSA"];

/** Internal reason codes carried in SluiceError.details.reason (for logs/metrics; not secret). */
export type AuthFailureReason =
  | "malformed" // not a compact JWS / JWT
  | "issuer" // `iss` missing or names no configured issuer
  | "audience"
  | "expired"
  | "nbf" // not yet valid
  | "alg" // algorithm outside the allow-list (incl. none, HS*)
  | "kid" // no key in the issuer's JWKS matches
  | "signature"
  | "claims" // another required claim missing or invalid (e.g. sub)
  | "jwks"; // the issuer's JWKS could not be fetched or is invalid

/** What the message says for each reason: enough for a pipeline author, nothing about keys. */
const SAFE_TEXT: Record<AuthFailureReason, string> = {
  malformed: "not a JWT",
  issuer: "unknown issuer",
  audience: "wrong audience",
  expired: "expired",
  nbf: "not yet valid",
  alg: "unverifiable",
  kid: "unverifiable",
  signature: "unverifiable",
  claims: "missing required claims",
  jwks: "issuer keys unavailable",
};

export function authFailure(reason: AuthFailureReason, cause?: unknown): SluiceError {
  // The cause is kept for debugging in-process but is not part of details (which may be logged/sent).
  return new SluiceError("unauthenticated", `token rejected: ${SAFE_TEXT[reason]}`, { reason }, cause ? { cause } : undefined);
}

export interface VerifiedToken {
  subject: string;
  /** the issuer's NAME in the bundle (e.g. `github`), not its URL */
  issuer: string;
  /** the token's `iss` URL */
  issuerUrl: string;
  claims: Record<string, unknown>;
  groups: string[];
  /** expiry (seconds since epoch) when the token has one */
  expiresAt?: number;
}

export interface JwksCacheOptions {
  /** minimum time between refetches triggered by an unknown `kid` (default 30 s) */
  cooldownMs?: number;
  /** keys older than this are refetched on next use (default 10 min) */
  cacheMaxAgeMs?: number;
  /** HTTP timeout of one JWKS fetch (default 5 s) */
  timeoutMs?: number;
  /** replaces global fetch (tests, proxies) */
  fetch?: FetchImplementation;
}

/**
 * Key resolvers per JWKS source. Remote sets are cached per URL (jose refetches when a token names an
 * unknown `kid` and the cooldown has passed, so issuer key rotation works without a restart); inline
 * sets are cached per JWKS object so a policy snapshot's keys are imported once.
 */
export class JwksCache {
  private readonly remote = new Map<string, JWTVerifyGetKey>();
  private readonly local = new WeakMap<object, JWTVerifyGetKey>();
  private readonly discovered = new Map<string, JWTVerifyGetKey>();
  private readonly discovery: DiscoveryCache;
  constructor(private readonly opts: JwksCacheOptions = {}) {
    this.discovery = new DiscoveryCache({
      maxAgeMs: opts.cacheMaxAgeMs,
      cooldownMs: opts.cooldownMs,
      timeoutMs: opts.timeoutMs,
      ...(opts.fetch ? { fetch: opts.fetch } : {}),
    });
  }

  /** Keys of an issuer given by URL alone: its discovery document's jwks_uri, then that set. */
  forDiscovery(issuer: string): JWTVerifyGetKey {
    let r = this.discovered.get(issuer);
    if (!r) {
      r = async (header, token) => {
        let uri: string;
        try {
          uri = await this.discovery.jwksUri(issuer);
        } catch (e) {
          throw authFailure("jwks", e);
        }
        return this.forRemote(uri)(header, token);
      };
      this.discovered.set(issuer, r);
    }
    return r;
  }

  forRemote(url: string): JWTVerifyGetKey {
    let r = this.remote.get(url);
    if (!r) {
      r = createRemoteJWKSet(new URL(url), {
        cooldownDuration: this.opts.cooldownMs ?? 30_000,
        cacheMaxAge: this.opts.cacheMaxAgeMs ?? 600_000,
        timeoutDuration: this.opts.timeoutMs ?? 5_000,
        ...(this.opts.fetch ? { [customFetch]: this.opts.fetch } : {}),
      });
      this.remote.set(url, r);
    }
    return r;
  }

  forInline(jwks: Jwks): JWTVerifyGetKey {
    let r = this.local.get(jwks);
    if (!r) {
      r = createLocalJWKSet(jwks as unknown as JSONWebKeySet);
      this.local.set(jwks, r);
    }
    return r;
  }

  resolver(spec: IssuerSpec): JWTVerifyGetKey {
    if (spec.jwks) return this.forInline(spec.jwks);
    if (spec.jwksUrl) return this.forRemote(spec.jwksUrl);
    // `discovery: true`, or the issuer URL alone (a bundle that skipped normalizeBundle)
    if (spec.discovery !== false) return this.forDiscovery(spec.issuer);
    throw authFailure("jwks");
  }
}

const defaultCache = new JwksCache();

export interface VerifiedTokenCacheOptions {
  /** how long one verification is reused at most, expiry permitting (default 60 s) */
  maxAgeMs?: number;
  /** entries kept; the oldest goes first (default 1024) */
  maxEntries?: number;
}

interface VerifiedEntry {
  issuers: readonly IssuerSpec[];
  result: VerifiedToken;
  verifiedAt: number;
  until: number;
}

/**
 * Tokens that verified recently. A CI job presents the same token on each of its connections; the
 * signature check (and its JWKS lookup) need not run again for each. An entry is used only
 *   - for the very same issuer configuration it was verified against (the `issuers` array of one
 *     policy snapshot: any policy change verifies afresh, including key, audience and group rules),
 *   - before the token's `exp` (with the same clock tolerance) and at most `maxAgeMs` after the
 *     full verification, so a key an issuer withdraws stops counting within that bound,
 *   - never for a token that failed: only successes are kept, so nothing an unauthenticated client
 *     sends can enter it.
 * Entries are keyed by the token's SHA-256, so the cache holds no usable credential.
 */
export class VerifiedTokenCache {
  private readonly entries = new Map<string, VerifiedEntry>();
  private readonly maxAgeMs: number;
  private readonly maxEntries: number;
  constructor(opts: VerifiedTokenCacheOptions = {}) {
    this.maxAgeMs = opts.maxAgeMs ?? 60_000;
    this.maxEntries = opts.maxEntries ?? 1024;
  }

  get size(): number {
    return this.entries.size;
  }

  static keyOf(token: string): string {
    return createHash("sha256").update(token).digest("base64url");
  }

  get(key: string, issuers: readonly IssuerSpec[], nowMs: number): VerifiedToken | undefined {
    const e = this.entries.get(key);
    if (!e) return undefined;
    // a clock that went back could put us before the token's nbf again: verify afresh
    if (e.issuers !== issuers || nowMs >= e.until || nowMs < e.verifiedAt) {
      this.entries.delete(key);
      return undefined;
    }
    // callers get their own copies: one session's handling never shows in another's identity
    return { ...e.result, claims: { ...e.result.claims }, groups: [...e.result.groups] };
  }

  set(key: string, issuers: readonly IssuerSpec[], result: VerifiedToken, nowMs: number, clockToleranceSec: number): void {
    let until = nowMs + this.maxAgeMs;
    // jose treats the token as expired once now >= exp + tolerance
    if (result.expiresAt !== undefined) until = Math.min(until, (result.expiresAt + clockToleranceSec) * 1000);
    if (until <= nowMs) return;
    this.entries.delete(key);
    while (this.entries.size >= this.maxEntries) this.entries.delete(this.entries.keys().next().value!);
    this.entries.set(key, { issuers, result: { ...result, claims: { ...result.claims }, groups: [...result.groups] }, verifiedAt: nowMs, until });
  }
}

export interface VerifyTokenOptions {
  /** evaluation time for exp/nbf (default: now) */
  now?: Date;
  /** allowed clock skew for exp/nbf in seconds (default DEFAULT_CLOCK_TOLERANCE_SEC, 30) */
  clockToleranceSec?: number;
  /** key resolver cache (default: one per process) */
  jwksFetcher?: JwksCache;
  /** reuse recent successful verifications against the same `issuers` array (default: none) */
  verifiedCache?: VerifiedTokenCache;
}

const MAX_TOKEN_LENGTH = 16 * 1024;
/** clock skew allowed for exp/nbf, in both the verification and the verified-token cache's expiry */
const DEFAULT_CLOCK_TOLERANCE_SEC = 30;
const COMPACT_JWS = /^[A-Za-z0-9_-]+\.[A-Za-z0-9_-]+\.[A-Za-z0-9_-]*$/;

/** Never `none`, never a symmetric algorithm: the issuer's public key must not double as an HMAC secret. */
export function isForbiddenAlgorithm(alg: string): boolean {
  return alg.toLowerCase() === "none" || /^HS\d+$/i.test(alg);
}

export function allowedAlgorithms(spec: Pick<IssuerSpec, "algorithms">): string[] {
  return (spec.algorithms?.length ? spec.algorithms : DEFAULT_ALGORITHMS).filter((a) => !isForbiddenAlgorithm(a));
}

function reasonOf(err: unknown): AuthFailureReason {
  if (err instanceof SluiceError) {
    const r = (err.details as { reason?: AuthFailureReason } | undefined)?.reason;
    return r ?? "signature";
  }
  if (err instanceof joseErrors.JWTExpired) return "expired";
  if (err instanceof joseErrors.JWTClaimValidationFailed) {
    if (err.reason === "missing" && err.claim !== "aud" && err.claim !== "iss") return "claims";
    if (err.claim === "aud") return "audience";
    if (err.claim === "nbf") return "nbf";
    if (err.claim === "iss") return "issuer";
    if (err.claim === "exp") return "expired";
    return "claims";
  }
  if (err instanceof joseErrors.JOSEAlgNotAllowed || err instanceof joseErrors.JOSENotSupported) return "alg";
  if (err instanceof joseErrors.JWKSNoMatchingKey || err instanceof joseErrors.JWKSMultipleMatchingKeys) return "kid";
  if (err instanceof joseErrors.JWSSignatureVerificationFailed) return "signature";
  if (err instanceof joseErrors.JWSInvalid || err instanceof joseErrors.JWTInvalid) return "malformed";
  if (err instanceof joseErrors.JWKSTimeout || err instanceof joseErrors.JWKSInvalid || err instanceof joseErrors.JWKInvalid) return "jwks";
  // fetch() network errors and anything unexpected while resolving keys
  return "jwks";
}

/**
 * Verifies a bearer JWT against the configured issuers: selects the issuer by `iss`, checks the
 * signature with its JWKS (inline or remote), `aud`, `exp`, `nbf` (with clock tolerance) and the
 * algorithm allow-list, then maps claims to groups with the issuer's rules.
 * Throws SluiceError("unauthenticated", "token rejected: …", { reason }).
 */
export async function verifyToken(token: string, issuers: readonly IssuerSpec[], opts: VerifyTokenOptions = {}): Promise<VerifiedToken> {
  if (typeof token !== "string" || token.length > MAX_TOKEN_LENGTH || !COMPACT_JWS.test(token)) throw authFailure("malformed");
  const cache = opts.verifiedCache;
  if (!cache) return verifyFully(token, issuers, opts);
  const key = VerifiedTokenCache.keyOf(token);
  const hit = cache.get(key, issuers, (opts.now ?? new Date()).getTime());
  if (hit) return hit;
  const v = await verifyFully(token, issuers, opts);
  // the time of this verification, not of the lookup: the async check above may have taken a while
  cache.set(key, issuers, v, (opts.now ?? new Date()).getTime(), opts.clockToleranceSec ?? DEFAULT_CLOCK_TOLERANCE_SEC);
  return v;
}

async function verifyFully(token: string, issuers: readonly IssuerSpec[], opts: VerifyTokenOptions): Promise<VerifiedToken> {
  let alg: string | undefined;
  let iss: unknown;
  try {
    alg = decodeProtectedHeader(token).alg;
    iss = decodeJwt(token).iss;
  } catch (e) {
    throw authFailure("malformed", e);
  }
  if (typeof alg !== "string" || isForbiddenAlgorithm(alg)) throw authFailure("alg");
  if (typeof iss !== "string") throw authFailure("issuer");
  const candidates = issuers.filter((s) => s.issuer === iss);
  if (candidates.length === 0) throw authFailure("issuer");

  const cache = opts.jwksFetcher ?? defaultCache;
  let firstFailure: SluiceError | undefined;
  // Several bundle issuers may share one `iss` (e.g. different audiences): the first that verifies wins.
  for (const spec of candidates) {
    try {
      const algorithms = allowedAlgorithms(spec);
      if (algorithms.length === 0 || !algorithms.includes(alg)) throw authFailure("alg");
      const { payload } = await jwtVerify(token, cache.resolver(spec), {
        issuer: spec.issuer,
        audience: spec.audience,
        algorithms,
        clockTolerance: opts.clockToleranceSec ?? DEFAULT_CLOCK_TOLERANCE_SEC,
        currentDate: opts.now,
        // a token without exp would never expire
        requiredClaims: ["exp", "sub"],
      });
      if (typeof payload.sub !== "string" || payload.sub.length === 0) throw authFailure("claims");
      const claims = payload as Record<string, unknown>;
      return {
        subject: payload.sub,
        issuer: spec.name,
        issuerUrl: iss,
        claims,
        groups: groupsFromClaims(claims, spec.groups ?? []),
        ...(typeof payload.exp === "number" ? { expiresAt: payload.exp } : {}),
      };
    } catch (e) {
      firstFailure ??= e instanceof SluiceError && e.code === "unauthenticated" ? e : authFailure(reasonOf(e), e);
    }
  }
  throw firstFailure ?? authFailure("issuer");
}
