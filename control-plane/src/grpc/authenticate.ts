/**
 * Caller authentication for every gRPC call: `authorization: Bearer <jwt>` metadata verified against
 * the trusted control-plane issuers. The token itself is never logged, stored or echoed.
 */
import type { Metadata } from "@grpc/grpc-js";
import { verifyToken, type JwksCache } from "@sluice/shared/auth";
import { SluiceError } from "@sluice/shared/errors";
import type { IssuerSpec } from "@sluice/shared/policy";
import type { Actor } from "../domain/command-meta.js";

export type Authenticator = (md: Metadata) => Promise<Actor>;

export interface AuthenticatorOptions {
  /** trusted issuers; a function so a composing process (sluice dev) can add its own at run time */
  issuers: () => readonly IssuerSpec[];
  jwksFetcher?: JwksCache;
  now?: () => Date;
}

export function bearerToken(md: Metadata): string {
  const v = md.get("authorization")[0];
  const s = typeof v === "string" ? v : v instanceof Buffer ? v.toString("utf8") : "";
  const m = /^Bearer\s+(\S+)$/i.exec(s.trim());
  if (!m) throw new SluiceError("unauthenticated", "missing bearer token: send `authorization: Bearer <token>`");
  return m[1]!;
}

export function createAuthenticator(o: AuthenticatorOptions): Authenticator {
  return async (md) => {
    const token = bearerToken(md);
    const issuers = o.issuers();
    if (issuers.length === 0) throw new SluiceError("unauthenticated", "token rejected: the control plane trusts no issuer (controlPlane.issuers is empty)");
    const v = await verifyToken(token, issuers, { ...(o.jwksFetcher ? { jwksFetcher: o.jwksFetcher } : {}), ...(o.now ? { now: o.now() } : {}) });
    return { subject: v.subject, issuer: v.issuer, groups: v.groups };
  };
}

/** PERMISSION_DENIED unless the caller is in one of `groups`. */
export function requireAnyGroup(actor: Actor, groups: readonly string[], what: string): void {
  if (!actor.groups.some((g) => groups.includes(g))) {
    throw new SluiceError("permission_denied", `${what} needs membership in one of: ${groups.join(", ") || "(no admin group configured)"}`);
  }
}
