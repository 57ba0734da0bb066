export * from "./sluice-error.js";
export * from "./translate.js";
export * from "./listen-error.js";
export * from "./scrub-secrets.js";
