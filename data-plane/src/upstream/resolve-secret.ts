import { resolveSecretRef } from "@sluice/shared/config";

/**
 * Resolves a credential reference from the bundle on this data plane: `env:NAME` or `file:/path`
 * (trailing newline trimmed). The error names the reference, never the value.
 */
export function resolveSecret(ref: string): Promise<string> {
  return resolveSecretRef(ref, { what: "upstream credential", where: "on this data plane" });
}
