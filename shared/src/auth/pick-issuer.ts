import { SluiceError } from "../errors/index.js";
import type { Bundle, IssuerSpec } from "../policy/bundle.js";

/**
 * Which bundle issuer verified a token with these claims, for simulating a decision from claims
 * (`sluice policy simulate --claims`, the console's Policy page): the one named, else the one whose
 * `issuer` equals the claims' `iss`, else the bundle's only issuer.
 */
export function pickIssuer(bundle: Bundle, claims: Record<string, unknown>, name?: string): IssuerSpec {
  if (name !== undefined) {
    const byName = bundle.issuers.find((i) => i.name === name);
    if (!byName) throw new SluiceError("not_found", `no issuer named ${JSON.stringify(name)} in the bundle`);
    return byName;
  }
  const iss = typeof claims.iss === "string" ? claims.iss : undefined;
  const byIss = iss === undefined ? undefined : bundle.issuers.find((i) => i.issuer === iss);
  if (byIss) return byIss;
  if (bundle.issuers.length === 1) return bundle.issuers[0];
  throw new SluiceError(
    "failed_precondition",
    iss === undefined
      ? `the claims carry no iss and the bundle has ${bundle.issuers.length} issuers: pass --issuer NAME or --groups`
      : `no issuer in the bundle has issuer ${JSON.stringify(iss)}: pass --issuer NAME or --groups`,
  );
}
