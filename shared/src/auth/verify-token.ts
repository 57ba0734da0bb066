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
import { SluiceError } from "../errors/index.js";
import type { IssuerSpec, Jwks } from "../policy/bundle.js";
import { groupsFromClaims } from "./groups-from-claims.js";

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
  constructor(private readonly opts: JwksCacheOptions = {}) {}

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
    throw authFailure("jwks");
  }
}

const defaultCache = new JwksCache();

export interface VerifyTokenOptions {
  /** evaluation time for exp/nbf (default: now) */
  now?: Date;
  /** allowed clock skew for exp/nbf in seconds (default 30) */
  clockToleranceSec?: number;
  /** key resolver cache (default: one per process) */
  jwksFetcher?: JwksCache;
}

const MAX_TOKEN_LENGTH = 16 * 1024;
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
        clockTolerance: opts.clockToleranceSec ?? 30,
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
