/**
 * What a client sent (bound parameters, SQL text, error messages) masked before it is recorded:
 * the audit trail never holds a value its masking rules would hide from a client.
 */
import type { MaskStrategy } from "@sluice/shared/policy";
import type { SessionInfo, SnapshotSource } from "../session/session-hooks.js";
import { compileMasking, maskLooseText, type CompiledMasking } from "../masking/mask-rules.js";
import { maskWhole } from "../masking/mask-strategies.js";

export interface InputMasker {
  params(session: SessionInfo, params: Array<string | null>): Array<string | null>;
  text(session: SessionInfo, text: string): string;
}

const REDACTED = "[REDACTED]";

/**
 * The default InputMasker: for a resource with masking rules every bound parameter is masked whole
 * with the rules' strongest strategy (a parameter's target column is not known, so it is treated as
 * masked), and SQL text / error messages are scanned with every classifier and matches masked.
 * Resources without masking rules are recorded as sent; before any snapshot, parameters are redacted.
 */
export function rulesInputMasker(snapshots: SnapshotSource | undefined, hashKey: Buffer): InputMasker {
  let cachedRev = -1;
  const cache = new Map<string, CompiledMasking | null>();
  const compiled = (resource: string): CompiledMasking | null | "unknown" => {
    const snap = snapshots?.current();
    if (!snap) return "unknown";
    if (snap.revision !== cachedRev) {
      cache.clear();
      cachedRev = snap.revision;
    }
    if (!cache.has(resource)) cache.set(resource, compileMasking(snap.bundle.masking ?? [], resource, hashKey));
    return cache.get(resource)!;
  };
  return {
    params(session, params) {
      const c = compiled(session.resource);
      if (c === null) return params;
      const strategy: MaskStrategy = c === "unknown" ? "redact" : c.defaultStrategy;
      return params.map((p) => (p === null ? null : strategy === "redact" ? REDACTED : maskWhole(p, strategy, hashKey)));
    },
    text(session, text) {
      const c = compiled(session.resource);
      if (c === null || c === "unknown") return text;
      // the masker's own loose-text scan: every classifier, each with its entry's strategy
      return maskLooseText(c, text);
    },
  };
}
