/**
 * Warnings about a valid bundle: things it says that do not do what they look like they do. Pure.
 * Unlike validation problems they never refuse a bundle; `sluice policy apply` prints them (the
 * control plane returns them as notes) and `sluice policy simulate` shows them.
 */
import { STATEMENT_CLASSES, type Bundle } from "./bundle.js";

export interface BundleWarning {
  /** JSON pointer of the item, e.g. /policies/0/allow/2 */
  pointer: string;
  message: string;
}

/**
 * What `utility` still covers once the built-in allowances are taken out (sql/client-baseline.ts):
 * a policy that lists it for a driver's start-up statements grants these too, for nothing.
 */
const UTILITY_REMAINDER =
  "LISTEN/NOTIFY/UNLISTEN, pg_notify(), two-phase commit and settings outside sluice's harmless list (custom x.y settings, session_replication_role)";
const BASELINE =
  "transaction control, SHOW, settings that change no privilege, FETCH/MOVE/CLOSE, DEALLOCATE and DISCARD are allowed to every connected identity without it";

export function bundleWarnings(bundle: Bundle): BundleWarning[] {
  const out: BundleWarning[] = [];
  bundle.policies.forEach((p, i) => {
    // a policy that allows every class lists utility because it lists everything (a development bundle)
    if (STATEMENT_CLASSES.every((c) => p.allow.includes(c))) return;
    const at = (field: string, list: readonly string[] | undefined) => {
      const j = list?.indexOf("utility") ?? -1;
      return j < 0 ? undefined : `/policies/${i}/${field}/${j}`;
    };
    const allow = at("allow", p.allow);
    if (allow) {
      out.push({
        pointer: allow,
        message: `policy ${p.name} allows utility: ${BASELINE}; utility now allows only ${UTILITY_REMAINDER}. Remove it unless the clients need those`,
      });
    }
    const approve = at("requireApproval", p.requireApproval);
    if (approve) {
      out.push({
        pointer: approve,
        message: `policy ${p.name} requires approval for utility: ${BASELINE}, so this holds only ${UTILITY_REMAINDER}`,
      });
    }
    const deny = at("deny", p.deny);
    if (deny) {
      out.push({
        pointer: deny,
        message: `policy ${p.name} denies utility: ${BASELINE}, so this denies only ${UTILITY_REMAINDER}; deny a named risk (role-change, search-path, session-replication-role) to refuse a setting`,
      });
    }
  });
  return out;
}

/** `warning: /policies/0/allow/2: …`: one line a CLI can print. */
export function formatWarning(w: BundleWarning): string {
  return `warning: ${w.pointer}: ${w.message}`;
}
