import type { Bundle } from "@sluice/shared/policy";

/**
 * Default deny at connect: an identity may open a session to a resource only when at least one
 * policy names that resource and one of the identity's groups. Statement-level rules decide later. Pure.
 */
export function mayConnect(bundle: Bundle, resource: string, groups: readonly string[]): boolean {
  return bundle.policies.some(
    (p) => (p.resources.includes(resource) || p.resources.includes("*")) && p.groups.some((g) => groups.includes(g)),
  );
}
