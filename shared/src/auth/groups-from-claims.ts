import type { GroupRule } from "../policy/bundle.js";

/** A claim value compared as text: OIDC providers mix strings, numbers and booleans. */
function scalarText(v: unknown): string | undefined {
  if (typeof v === "string") return v;
  if (typeof v === "number" || typeof v === "boolean") return String(v);
  return undefined;
}

/**
 * A claim by name; a dotted name not present as such walks nested objects, so providers that nest
 * roles (Keycloak `realm_access.roles`) can be used. Own properties only: never the prototype.
 */
export function claimValue(claims: Record<string, unknown>, name: string): unknown {
  if (Object.hasOwn(claims, name)) return claims[name];
  if (!name.includes(".")) return undefined;
  let cur: unknown = claims;
  for (const part of name.split(".")) {
    if (typeof cur !== "object" || cur === null || Array.isArray(cur) || !Object.hasOwn(cur, part)) return undefined;
    cur = (cur as Record<string, unknown>)[part];
  }
  return cur;
}

/** True when the claim holds (or, when it is an array, includes) one of the expected values. */
function claimMatches(claim: unknown, expected: string | string[]): boolean {
  const wanted = Array.isArray(expected) ? expected : [expected];
  const have = Array.isArray(claim) ? claim.map(scalarText) : [scalarText(claim)];
  return have.some((h) => h !== undefined && wanted.includes(h));
}

/**
 * Maps verified token claims to groups with a bundle's rules (pure). Claim names may be dotted paths.
 * - `{ group, when }`: the group is granted when EVERY listed claim matches; a rule with no
 *   conditions grants nothing (validation rejects it, this is the fail-closed backstop).
 * - `{ claim, prefix? }`: every string in the claim (a string or an array of strings) becomes a group.
 * Order of first appearance is kept; duplicates are dropped.
 */
export function groupsFromClaims(claims: Record<string, unknown>, rules: readonly GroupRule[]): string[] {
  const out = new Set<string>();
  for (const rule of rules) {
    if ("when" in rule && typeof rule.group === "string") {
      const conds = Object.entries(rule.when ?? {});
      if (conds.length === 0) continue;
      if (conds.every(([name, expected]) => claimMatches(claimValue(claims, name), expected))) {
        out.add(rule.group);
      }
    } else if ("claim" in rule && typeof rule.claim === "string") {
      const v = claimValue(claims, rule.claim);
      const values = Array.isArray(v) ? v : v === undefined ? [] : [v];
      for (const x of values) {
        if (typeof x === "string" && x.length > 0) out.add((rule.prefix ?? "") + x);
      }
    }
  }
  return [...out];
}
