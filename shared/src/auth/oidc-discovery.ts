/**
 * OIDC discovery for issuers given by URL alone (`discovery: true`): where an issuer publishes its
 * keys is read from `<issuer>/.well-known/openid-configuration` (OpenID Connect Discovery 1.0 §4),
 * as any relying party finds them. The document is trusted only for the issuer it names: its
 * `issuer` must equal the configured one exactly (§4.3, so a document served for another issuer
 * cannot redirect keys), and its `jwks_uri` must be https (plain http only on loopback), the same
 * rule the bundle applies to a `jwksUrl`.
 */
import type { FetchImplementation } from "jose";

export interface DiscoveryOptions {
  /** a discovered jwks_uri is used this long before the document is read again (default 10 min) */
  maxAgeMs?: number;
  /** after a failed read, the next attempt waits this long (default 30 s): a dead issuer is not hammered */
  cooldownMs?: number;
  /** HTTP timeout of one read (default 5 s) */
  timeoutMs?: number;
  fetch?: FetchImplementation;
  now?: () => number;
}

/** A failure to discover; verify-token maps it to reason `jwks` ("issuer keys unavailable"). */
export class DiscoveryError extends Error {
  override readonly name = "DiscoveryError";
}

const MAX_DOCUMENT_BYTES = 64 * 1024;

interface Entry {
  jwksUri?: string;
  at: number;
  failedAt?: number;
  failure?: DiscoveryError;
  pending?: Promise<string>;
}

/** The discovery document's URL for an issuer URL (a trailing slash is not doubled). */
export function discoveryUrl(issuer: string): string {
  return `${issuer.replace(/\/+$/, "")}/.well-known/openid-configuration`;
}

function isLoopback(u: URL): boolean {
  return ["127.0.0.1", "localhost", "[::1]", "::1"].includes(u.hostname);
}

/** Reads and caches each issuer's jwks_uri. One read in flight per issuer. */
export class DiscoveryCache {
  private readonly entries = new Map<string, Entry>();
  constructor(private readonly o: DiscoveryOptions = {}) {}

  private now(): number {
    return this.o.now?.() ?? Date.now();
  }

  /** The issuer's jwks_uri, read from its discovery document (cached). Throws DiscoveryError. */
  jwksUri(issuer: string): Promise<string> {
    const t = this.now();
    const e = this.entries.get(issuer);
    if (e?.jwksUri && t - e.at < (this.o.maxAgeMs ?? 600_000)) return Promise.resolve(e.jwksUri);
    if (e?.pending) return e.pending;
    if (e?.failure && e.failedAt !== undefined && t - e.failedAt < (this.o.cooldownMs ?? 30_000)) {
      // a stale but once-good answer is better than none while the issuer is briefly away
      return e.jwksUri ? Promise.resolve(e.jwksUri) : Promise.reject(e.failure);
    }
    const entry: Entry = e ?? { at: 0 };
    entry.pending = this.read(issuer).then(
      (uri) => {
        Object.assign(entry, { jwksUri: uri, at: this.now(), failure: undefined, failedAt: undefined, pending: undefined });
        return uri;
      },
      (err: unknown) => {
        const failure = err instanceof DiscoveryError ? err : new DiscoveryError(`OIDC discovery for ${issuer} failed: ${(err as Error).message}`);
        Object.assign(entry, { failure, failedAt: this.now(), pending: undefined });
        if (entry.jwksUri) return entry.jwksUri;
        throw failure;
      },
    );
    this.entries.set(issuer, entry);
    return entry.pending;
  }

  private async read(issuer: string): Promise<string> {
    const url = discoveryUrl(issuer);
    const f = this.o.fetch ?? (fetch as unknown as FetchImplementation);
    const res = await f(url, {
      headers: new Headers({ accept: "application/json" }),
      method: "GET",
      // a redirect could lead to a document for another issuer: the configured URL answers, or nothing
      redirect: "manual",
      signal: AbortSignal.timeout(this.o.timeoutMs ?? 5_000),
    });
    if (res.status !== 200) throw new DiscoveryError(`OIDC discovery for ${issuer}: ${url} answered HTTP ${res.status}`);
    const text = await res.text();
    if (text.length > MAX_DOCUMENT_BYTES) throw new DiscoveryError(`OIDC discovery for ${issuer}: the document is larger than ${MAX_DOCUMENT_BYTES} bytes`);
    let doc: unknown;
    try {
      doc = JSON.parse(text);
    } catch {
      throw new DiscoveryError(`OIDC discovery for ${issuer}: ${url} is not JSON`);
    }
    if (!doc || typeof doc !== "object" || Array.isArray(doc)) throw new DiscoveryError(`OIDC discovery for ${issuer}: the document is not a JSON object`);
    const d = doc as Record<string, unknown>;
    if (d.issuer !== issuer) throw new DiscoveryError(`OIDC discovery for ${issuer}: the document names another issuer`);
    if (typeof d.jwks_uri !== "string") throw new DiscoveryError(`OIDC discovery for ${issuer}: the document has no jwks_uri`);
    let u: URL;
    try {
      u = new URL(d.jwks_uri);
    } catch {
      throw new DiscoveryError(`OIDC discovery for ${issuer}: jwks_uri is not a URL`);
    }
    if (!(u.protocol === "https:" || (u.protocol === "http:" && isLoopback(u)))) {
      throw new DiscoveryError(`OIDC discovery for ${issuer}: jwks_uri must be https (plain http only on loopback)`);
    }
    return u.toString();
  }
}
