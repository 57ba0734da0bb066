// Public entry of @sluice/shared/auth: OIDC token verification, claim→group mapping, dev issuer.
export * from "./groups-from-claims.js";
export * from "./verify-token.js";
export * from "./dev-issuer.js";
export * from "./pick-issuer.js";
export * from "./dev-oidc-provider.js";
export * from "./oidc-discovery.js";
