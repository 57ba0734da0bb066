import { canConnect, type Bundle } from "@sluice/shared/policy";

/**
 * Default deny at connect: an identity may open a session to a resource only when at least one
 * policy applies to it there (resource, groups incl. `*`, and the policy's `issuers` when it lists
 * some). Delegates to `canConnect` so the connect check and statement evaluation share one rule.
 * `issuer` is the NAME of the verifying issuer (VerifiedIdentity.issuer); without it, policies
 * scoped to issuers do not count (fail closed). Pure.
 */
export function mayConnect(bundle: Bundle, resource: string, groups: readonly string[], issuer?: string): boolean {
  return canConnect(bundle, { resource, groups, issuer });
}
